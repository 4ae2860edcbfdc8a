"""The server-rendered pages: plain HTML, no JavaScript needed, every value escaped."""

from __future__ import annotations

import json
from html import escape
from urllib.parse import urlencode

from allthethings.domain.assets import RETRY_FROM, Asset, Chunk, Kind, Status
from allthethings.domain.documents import document_id, shown_metadata
from allthethings.domain.search import SearchResult

_STYLE = """
body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1 a{color:inherit;text-decoration:none} form{display:flex;gap:.5rem;margin:1rem 0}
input[type=text],input[type=url],input[type=search]{flex:1;padding:.5rem;font:inherit}
button{padding:.5rem 1rem;font:inherit}
table{width:100%;border-collapse:collapse} td,th{text-align:left;padding:.35rem;border-bottom:1px solid #ddd}
.status{font:12px monospace;padding:.1rem .4rem;border-radius:.3rem;background:#eee}
.SEARCHABLE{background:#d4f7d4}.PROCESSING_ERROR,.EMBEDDINGS_ERROR{background:#fdd}
.error{color:#a00} .result{margin:1.2rem 0} .result p{margin:.3rem 0;color:#444} .muted{color:#777;font-size:.9em}
mark{background:#fff3a8} .badge{font:12px monospace;padding:.1rem .4rem;border-radius:.3rem;background:#e6eefc}
.badge.audio,.badge.video{background:#f6e3fb} .badge.pdf{background:#fde8e0}
.player{display:block;margin:.3rem 0;max-width:100%}
.badge.image{background:#e0f5ec} .badge.document,.badge.presentation,.badge.spreadsheet,.badge.ebook{background:#fbf3d9}
.thumb{float:right;max-height:96px;margin:0 0 .5rem .8rem;border-radius:.3rem;object-fit:cover} .result{overflow:auto}
.chunk p{margin:.2rem 0 .8rem;white-space:pre-wrap} .facts{width:auto} .facts th{padding-right:1.5rem}
pre{background:#f6f6f6;padding:.5rem;overflow:auto}
.controls{flex-wrap:wrap} form.inline{display:inline-flex;margin:0 .2rem 0 0}
.actions button{padding:.2rem .5rem;font-size:.85em} details{width:100%} details label{margin-right:1rem}
"""


def _page(title: str, body: str, refresh: bool = False, search_box: bool = True) -> str:
    meta = '<noscript><meta http-equiv="refresh" content="3"></noscript>' if refresh else ""
    box = ('<form action="/search" method="get"><input type="text" name="query" placeholder="Search by meaning" '
           'aria-label="Search"><button>Search</button></form>') if search_box else ""
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            f'<meta name="viewport" content="width=device-width,initial-scale=1">{meta}<style>{_STYLE}</style>'
            f'</head><body><h1><a href="/">allthethings</a></h1>{box}{body}</body></html>')


def signin(next_path: str = "/", error: str | None = None) -> str:
    """The sign-in page: an API key, kept by the browser in an HttpOnly cookie."""
    notice = f"<p class=error role=alert>{escape(error)}</p>" if error else ""
    body = (f"<h2>Sign in</h2>{notice}<p>This index needs an API key. Ask whoever runs it; "
            f"<code>make run</code> prints the local one.</p>"
            f"<p class=muted>From a program, send it as <code>x-api-key: KEY</code> or <code>Authorization: "
            f"Bearer KEY</code>; without it the API answers "
            f"<code>403 {{&quot;message&quot;: &quot;Forbidden&quot;}}</code>.</p>"
            f"<form action=/session method=post><input type=password name=key required autocomplete=current-password "
            f"aria-label=\"API key\" placeholder=\"API key\">"
            f"<input type=hidden name=next value=\"{escape(next_path)}\">"
            f"<button>Sign in</button></form>")
    return _page("Sign in · allthethings", body, search_box=False)


def _actions(a: Asset) -> str:
    """Buttons that work without JavaScript: plain forms posting to the page routes."""
    buttons = ""
    if a.status in RETRY_FROM:
        buttons += f"<form class=inline method=post action=\"/assets/{a.id}/retry\"><button>Retry</button></form>"
    buttons += (f"<form class=inline method=post action=\"/assets/{a.id}/delete\" "
                f"onsubmit=\"return confirm('Delete this asset and its chunks?')\"><button>Delete</button></form>")
    return buttons


def _label(a: Asset) -> str:
    """What a row or a page calls the asset: its title, else a document's id, else its URL."""
    return a.title or document_id(a.url) or a.url


def _origin(a: Asset) -> str:
    """Where the asset came from: a link to a web URL's source, or the document's id."""
    doc = document_id(a.url)
    if doc is not None:
        return f"<span class=muted>document {escape(doc)}</span>"
    return f"<a class=muted href=\"{escape(a.url)}\">{escape(a.url)}</a>"


def _listing_form(params: dict) -> str:
    """The home page's filters: a GET form whose parameters are GET /api/assets's own."""
    status, kind = (params.get("status") or "").upper(), (params.get("kind") or "").lower()
    statuses = "".join(f"<option value={s.value}{' selected' if s.value == status else ''}>{s.value}</option>"
                       for s in Status)
    kinds = "".join(f"<option value={k.value}{' selected' if k.value == kind else ''}>{k.value}</option>"
                    for k in Kind)
    return (f'<form action="/" method="get" class=controls><input type=search name=q '
            f'value="{escape(params.get("q") or "")}" placeholder="Find by URL or title" '
            f'aria-label="Find by URL or title"><select name=status aria-label=Status>'
            f'<option value="">any status</option>{statuses}</select><select name=kind aria-label=Kind>'
            f'<option value="">any kind</option>{kinds}</select><button>Filter</button></form>')


def _paging(params: dict, next_cursor: str | None) -> str:
    keep = {k: params[k] for k in ("q", "status", "kind") if params.get(k)}
    links = []
    if params.get("cursor"):
        links.append(f'<a href="{escape("/?" + urlencode(keep) if keep else "/")}">Newest</a>')
    if next_cursor:
        links.append(f'<a rel=next href="{escape("/?" + urlencode({**keep, "cursor": next_cursor}))}">Older</a>')
    return f"<p class=paging>{' · '.join(links)}</p>" if links else ""


def home(assets: list[Asset], error: str | None = None, params: dict | None = None,
         next_cursor: str | None = None) -> str:
    """The submission form, the filters, and a page of assets, each linked to its own page."""
    params = params or {}
    filtered = any(params.get(k) for k in ("q", "status", "kind", "cursor"))
    rows = "".join(
        f"<tr data-id={a.id}><td><a href=\"/assets/{a.id}\">{escape(_label(a))}</a>"
        f"<div>{_origin(a)} <span class=muted>{escape(a.content_type or '')}</span></div></td>"
        f"<td class=state><span class=\"status {a.status.value}\">{a.status.value}</span>{_progress(a)}"
        + (f"<div class=error>{escape(a.error)}</div>" if a.error else "")
        + f"</td><td class=muted>{a.created_at:%Y-%m-%d %H:%M}</td><td class=actions>{_actions(a)}</td></tr>"
        for a in assets)
    empty = "No assets match these filters." if filtered else "Nothing indexed yet."
    pending = any(not a.status.is_final for a in assets)
    notice = f"<p class=error role=alert>{escape(error)}</p>" if error else ""
    body = (f"{notice}<form action=\"/process\" method=\"post\"><input type=\"url\" name=\"url\" required "
            f"placeholder=\"https://example.com/article.html\" aria-label=\"URL to index\">"
            f"<button>Index</button></form>{_listing_form(params)}"
            f"<table><thead><tr><th>Asset</th><th>Status</th><th>Submitted</th><th></th></tr></thead>"
            f"<tbody>{rows or f'<tr><td colspan=4>{empty}</td></tr>'}</tbody></table>{_paging(params, next_cursor)}"
            f"<form action=/signout method=post class=inline><button>Sign out</button></form>"
            f" <a class=muted href=/api/docs>API</a>")
    return _page("allthethings", body + (_LIVE_STATUS if pending else ""), refresh=pending)


def _megabytes(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _progress(a: Asset) -> str:
    """How far a long step has got: the bytes of a body being fetched, the chunks of one being embedded."""
    if a.status is Status.FETCHING and a.fetched_bytes is not None:
        if a.size_bytes:
            return (f"<div class=muted><progress max={a.size_bytes} value={a.fetched_bytes}></progress> "
                    f"{_megabytes(a.fetched_bytes)} of {_megabytes(a.size_bytes)}</div>")
        return f"<div class=muted>{_megabytes(a.fetched_bytes)} fetched</div>"
    if a.status is Status.GENERATING_EMBEDDINGS and a.embedded_chunks is not None and a.chunk_count:
        return f"<div class=muted>{a.embedded_chunks:,} of {a.chunk_count:,} chunks embedded</div>"
    return ""


def _span(chunk: Chunk) -> str:
    if chunk.location is not None:
        return f" · {escape(chunk.location.label())}"
    if chunk.start_s is None:
        return ""
    return f" · {_clock(chunk.start_s)}–{_clock(chunk.end_s if chunk.end_s is not None else chunk.start_s)}"


def asset(a: Asset, chunks: list[Chunk]) -> str:
    """One asset's page: what is known of it, its first chunks' text, and its buttons."""
    facts = [("Status", f"<span class=\"status {a.status.value}\">{a.status.value}</span>{_progress(a)}"),
             ("Kind", escape(a.kind.value if a.kind else "")), ("Content type", escape(a.content_type or "")),
             ("Size", f"{a.size_bytes:,} bytes" if a.size_bytes is not None else ""),
             ("Chunks", str(a.chunk_count) if a.chunk_count is not None else ""),
             ("Submitted", f"{a.created_at:%Y-%m-%d %H:%M}"), ("Updated", f"{a.updated_at:%Y-%m-%d %H:%M}")]
    table = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in facts if value)
    error = f"<p class=error role=alert>{escape(a.error)}</p>" if a.error else ""
    metadata = shown_metadata(a.metadata)
    meta = (f"<h3>Metadata</h3><pre>{escape(json.dumps(metadata, indent=2, ensure_ascii=False))}</pre>"
            if metadata is not None else "")
    total = a.chunk_count if a.chunk_count is not None else len(chunks)
    texts = "".join(f"<div class=chunk><div class=muted>chunk {c.index + 1}{_span(c)}</div>"
                    f"<p>{escape(c.text)}</p></div>" for c in chunks)
    shown = ("<h3>Text</h3>" + (f"<p class=muted>The first {len(chunks)} of {total} chunks.</p>"
                                 if total > len(chunks) else "") + texts) if chunks else "<p>No text yet.</p>"
    thumb = (f"<img class=thumb src=\"{escape(a.thumbnail_url)}\" alt=\"thumbnail\" width=160>"
             if a.thumbnail_key else "")
    body = (f"<h2>{escape(_label(a))}</h2>{thumb}<p>{_origin(a)}</p>{error}<table class=facts>{table}</table>"
            f"<p class=actions>{_actions(a)}</p>{meta}{shown}")
    return _page(f"{_label(a)} · allthethings", body, refresh=not a.status.is_final)


def message(title: str, text: str) -> str:
    """A page that only says what went wrong (an unknown or malformed asset id)."""
    return _page(f"{title} · allthethings", f"<h2>{escape(title)}</h2><p class=error role=alert>{escape(text)}</p>")


# With JavaScript, statuses update in place (without it, the page refreshes itself every 3 s).
_LIVE_STATUS = """<script>
(function () {
  function esc(s) { var d = document.createElement("div"); d.textContent = s; return d.innerHTML; }
  function mb(n) { return (n / 1e6).toFixed(1) + " MB"; }
  function progress(a) {  // as _progress draws it
    if (a.status === "FETCHING" && typeof a.fetched_bytes === "number") {
      if (a.size_bytes) return "<div class=muted><progress max=" + a.size_bytes + " value=" + a.fetched_bytes +
        "></progress> " + mb(a.fetched_bytes) + " of " + mb(a.size_bytes) + "</div>";
      return "<div class=muted>" + mb(a.fetched_bytes) + " fetched</div>";
    }
    if (a.status === "GENERATING_EMBEDDINGS" && typeof a.embedded_chunks === "number" && a.chunk_count)
      return "<div class=muted>" + a.embedded_chunks + " of " + a.chunk_count + " chunks embedded</div>";
    return "";
  }
  function poll() {
    var params = new URLSearchParams(location.search);  // the page's own filters and cursor
    params.set("limit", "50");
    fetch("/api/assets?" + params.toString()).then(function (r) { return r.json(); }).then(function (page) {
      var pending = false;
      page.assets.forEach(function (a) {
        var row = document.querySelector("tr[data-id='" + a.id + "'] td.state");
        if (row) row.innerHTML = '<span class="status ' + esc(a.status) + '">' + esc(a.status) + "</span>" +
          progress(a) + (a.error ? '<div class=error>' + esc(a.error) + "</div>" : "");
        if (["SEARCHABLE", "PROCESSING_ERROR", "EMBEDDINGS_ERROR"].indexOf(a.status) < 0) pending = true;
      });
      if (pending) setTimeout(poll, 1500);
    }).catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 1000);
})();
</script>"""


def _marked(text: str, spans: list) -> str:
    """The snippet, escaped, with the query's words in <mark>."""
    out, last = [], 0
    for a, b in spans:
        out.append(escape(text[last:a]))
        out.append(f"<mark>{escape(text[a:b])}</mark>")
        last = b
    out.append(escape(text[last:]))
    return "".join(out)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def _result(r: SearchResult) -> str:
    asset = r.asset
    kind = asset.kind.value if asset.kind else "text"
    spans = [s for s in r.highlights if s[1] <= 600]
    shown = r.snippet[:600] + ("…" if len(r.snippet) > 600 else "")
    player = ""
    if kind in ("audio", "video") and r.start_s is not None:
        # A media fragment starts playback at the matching second, with or without JavaScript.
        src = escape(f"{asset.url}#t={int(r.start_s)}")
        player = (f"<{kind} controls preload=none src=\"{src}\" class=player></{kind}>"
                  f"<div class=muted>from {_clock(r.start_s)} to {_clock(r.end_s or r.start_s)}</div>")
    where = ""
    if r.location is not None:
        label = escape(r.location.label())
        # A PDF viewer opens a `#page=N` fragment at that page (RFC 8118).
        where = (f" · <a class=where href=\"{escape(f'{asset.url}#page={r.location.page}')}\">{label}</a>"
                 if kind == "pdf" and r.location.page else f" · <span class=where>{label}</span>")
    thumb = (f"<img class=thumb src=\"{escape(asset.thumbnail_url)}\" alt=\"\" loading=lazy width=96>"
             if asset.thumbnail_key else "")
    return (f"<div class=result>{thumb}<span class=\"badge {escape(kind)}\">{escape(kind)}</span> "
            f"<a href=\"{escape(asset.url)}\">{escape(asset.title or asset.url)}</a>"
            f"<div class=muted>{escape(asset.url)}{where}{_relevance(r)}</div>"
            f"<p>{_marked(shown, spans)}</p>{player}</div>")


_LEVELS = {"weak": 1, "good": 2, "strong": 3}


def _relevance(r: SearchResult) -> str:
    """The result's relevance in words and a three-step bar (a fused score means nothing to a
    reader); nothing when the model is not calibrated and no word matched."""
    if r.relevance is None:
        return ""
    level = r.relevance.level.value
    why = [w for w, on in (("close in meaning", r.relevance.similarity is not None), ("has your words",
                                                                                       r.relevance.keyword)) if on]
    return (f" · <span class=\"relevance {level}\" title=\"{escape(', '.join(why))}\">"
            f"<meter min=0 max=3 low=1.5 high=2.5 optimum=3 value={_LEVELS[level]}></meter> {level} match</span>")


def _nothing_matched(query: str, params: dict) -> str:
    """What to say when nothing matched, with what to try next given the mode and filters."""
    mode = params.get("mode") or "hybrid"
    tries = []
    if any(params.get(f) for f in ("kind", "host", "after", "before")):
        tries.append("fewer filters")
    tries.append({"keyword": "hybrid or vector mode, which also search by meaning",
                  "vector": "hybrid or keyword mode, which also match your words"}.get(mode, "other words"))
    if mode != "hybrid":
        tries.append("other words")
    tries.append("a question in plain words" if len(query.split()) < 3 else "fewer, plainer words")
    return (f"<p class=empty role=status><strong>Nothing matched “{escape(query)}”.</strong> No text in the index "
            f"is close enough in meaning{'' if mode == 'vector' else ' or holds these words'}. "
            f"Try {', or '.join(tries)}.</p>")


def _controls(params: dict) -> str:
    mode = params.get("mode") or "hybrid"
    kinds = set((params.get("kind") or "").split(","))
    options = "".join(f"<option value={m}{' selected' if m == mode else ''}>{m}</option>"
                      for m in ("hybrid", "vector", "keyword"))
    boxes = "".join(f"<label><input type=checkbox name=kind value={k}{' checked' if k in kinds else ''}> {k}</label>"
                    for k in (kind.value for kind in Kind))
    return (f"<form action=/search method=get class=controls><input type=text name=query required "
            f"value=\"{escape(params.get('query') or '')}\" aria-label=Search placeholder=\"Search by meaning\">"
            f"<select name=mode aria-label=Mode>{options}</select><button>Search</button>"
            f"<details{' open' if kinds - {''} or params.get('host') or params.get('after') else ''}>"
            f"<summary>Filters</summary>{boxes}"
            f"<label>host <input type=text name=host value=\"{escape(params.get('host') or '')}\"></label>"
            f"<label>after <input type=date name=after value=\"{escape(params.get('after') or '')}\"></label>"
            f"<label>before <input type=date name=before value=\"{escape(params.get('before') or '')}\"></label>"
            f"</details></form>")


def results(params: dict, found: list[SearchResult], next_cursor: str | None, error: str | None = None) -> str:
    """The search page: the query with its mode and filters, and a page of results."""
    from urllib.parse import urlencode

    query = (params.get("query") or "").strip()
    controls = _controls(params)
    if not query:
        return _page("Search · allthethings",
                     controls + "<p>Type a question or a few words: results are found by meaning.</p>",
                     search_box=False)
    if error:
        body = f"<p class=error role=alert>{escape(error)}</p>"
    else:
        body = "".join(_result(r) for r in found) or _nothing_matched(query, params)
        if next_cursor:
            keep = {k: v for k, v in params.items() if k != "cursor" and v}
            more = escape(urlencode({**keep, "cursor": next_cursor}))
            body += f"<p><a rel=next href=\"/search?{more}\">More results</a></p>"
    return _page(f"{query} · allthethings", controls + f"<h2>Results for “{escape(query)}”</h2>{body}",
                 search_box=False)
