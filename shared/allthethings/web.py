"""The server-rendered pages: plain HTML, no JavaScript needed, every value escaped."""

from __future__ import annotations

from html import escape

from allthethings.domain.assets import Asset

_STYLE = """
body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1 a{color:inherit;text-decoration:none} form{display:flex;gap:.5rem;margin:1rem 0}
input[type=text],input[type=url]{flex:1;padding:.5rem;font:inherit} button{padding:.5rem 1rem;font:inherit}
table{width:100%;border-collapse:collapse} td,th{text-align:left;padding:.35rem;border-bottom:1px solid #ddd}
.status{font:12px monospace;padding:.1rem .4rem;border-radius:.3rem;background:#eee}
.SEARCHABLE{background:#d4f7d4}.PROCESSING_ERROR,.EMBEDDINGS_ERROR{background:#fdd}
.error{color:#a00} .result{margin:1.2rem 0} .result p{margin:.3rem 0;color:#444} .muted{color:#777;font-size:.9em}
"""


def _page(title: str, body: str, refresh: bool = False) -> str:
    meta = '<meta http-equiv="refresh" content="3">' if refresh else ""
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            f'<meta name="viewport" content="width=device-width,initial-scale=1">{meta}<style>{_STYLE}</style>'
            f'</head><body><h1><a href="/">allthethings</a></h1>'
            f'<form action="/search" method="get"><input type="text" name="query" placeholder="Search by meaning" '
            f'aria-label="Search"><button>Search</button></form>{body}</body></html>')


def home(assets: list[Asset], error: str | None = None) -> str:
    rows = "".join(
        f"<tr><td><a href=\"{escape(a.url)}\">{escape(a.title or a.url)}</a>"
        f"<div class=muted>{escape(a.content_type or '')}</div></td>"
        f"<td><span class=\"status {a.status.value}\">{a.status.value}</span>"
        + (f"<div class=error>{escape(a.error)}</div>" if a.error else "")
        + f"</td><td class=muted>{a.created_at:%Y-%m-%d %H:%M}</td></tr>"
        for a in assets)
    pending = any(not a.status.is_final for a in assets)
    notice = f"<p class=error role=alert>{escape(error)}</p>" if error else ""
    body = (f"{notice}<form action=\"/process\" method=\"post\"><input type=\"url\" name=\"url\" required "
            f"placeholder=\"https://example.com/article.html\" aria-label=\"URL to index\">"
            f"<button>Index</button></form>"
            f"<table><thead><tr><th>Asset</th><th>Status</th><th>Submitted</th></tr></thead>"
            f"<tbody>{rows or '<tr><td colspan=3>Nothing indexed yet.</td></tr>'}</tbody></table>")
    return _page("allthethings", body, refresh=pending)


def results(query: str, found: list[dict], error: str | None = None) -> str:
    items = "".join(
        f"<div class=result><a href=\"{escape(r['asset']['url'])}\">"
        f"{escape(r['asset'].get('title') or r['asset']['url'])}</a>"
        f" <span class=muted>{escape(r['asset'].get('content_type') or '')} · score {r['score']:.3f}</span>"
        f"<p>{escape(r['snippet'][:400])}{'…' if len(r['snippet']) > 400 else ''}</p></div>"
        for r in found)
    if not query:
        return _page("Search · allthethings", "<p>Type a question or a few words: results are found by meaning.</p>")
    if error:
        body = f"<p class=error role=alert>{escape(error)}</p>"
    else:
        body = items or f"<p>No results for “{escape(query)}”.</p>"
    return _page(f"{query} · allthethings", f"<h2>Results for “{escape(query)}”</h2>{body}")
