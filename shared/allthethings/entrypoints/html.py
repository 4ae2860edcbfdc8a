"""The server-rendered pages: plain HTML, no JavaScript needed, every value escaped."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from html import escape
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from allthethings.domain.assets import RETRY_FROM, Asset, Chunk, Kind, Status
from allthethings.domain.documents import document_id, shown_metadata
from allthethings.domain.search import SearchResult
from allthethings.domain.sources import EntryState

if TYPE_CHECKING:
    from allthethings.services.sources import SourceView

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
nav{margin:-.5rem 0 .5rem} nav a{margin-right:1rem} nav a[aria-current]{font-weight:600;color:inherit}
.notice{background:#eef7ee;padding:.5rem} .actions label{font-size:.85em;align-self:center}
#sources td{vertical-align:top} #sources progress{width:100%} #sources ul{margin:.3rem 0;padding-left:1.2rem}
"""


_NAV = (("/", "Assets"), ("/search", "Search"), ("/sources", "Sources"))


def _page(title: str, body: str, refresh: bool = False, search_box: bool = True, here: str | None = None,
          nav: bool = True) -> str:
    meta = '<noscript><meta http-equiv="refresh" content="3"></noscript>' if refresh else ""
    links = "".join(f'<a href="{path}"{" aria-current=page" if path == here else ""}>{name}</a>'
                    for path, name in _NAV)
    menu = f"<nav>{links}</nav>" if nav else ""
    box = ('<form action="/search" method="get"><input type="text" name="query" placeholder="Search by meaning" '
           'aria-label="Search"><button>Search</button></form>') if search_box else ""
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            f'<meta name="viewport" content="width=device-width,initial-scale=1">{meta}<style>{_STYLE}</style>'
            f'</head><body><h1><a href="/">allthethings</a></h1>{menu}{box}{body}</body></html>')


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
    return _page("Sign in · allthethings", body, search_box=False, nav=False)


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
    return _page("allthethings", body + (_LIVE_STATUS if pending else ""), refresh=pending, here="/")


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


def _result(r: SearchResult, sources: dict[str, str]) -> str:
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
            f"<div class=muted>{escape(asset.url)}{where}{_from_source(asset, sources)}{_relevance(r)}</div>"
            f"<p>{_marked(shown, spans)}</p>{player}</div>")


def _from_source(asset: Asset, sources: dict[str, str]) -> str:
    """The source that listed the asset, by its title (nothing for an asset no source listed, or
    whose source is gone)."""
    title = sources.get(asset.source_id) if asset.source_id else None
    if title is None:
        return ""
    return f" · from <a class=source href=\"/sources#{escape(asset.source_id)}\">{escape(title)}</a>"


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


def results(params: dict, found: list[SearchResult], next_cursor: str | None, error: str | None = None,
            sources: dict[str, str] | None = None) -> str:
    """The search page: the query with its mode and filters, and a page of results (each from a
    source named by its title in `sources`, by source id)."""
    from urllib.parse import urlencode

    query = (params.get("query") or "").strip()
    controls = _controls(params)
    if not query:
        return _page("Search · allthethings",
                     controls + "<p>Type a question or a few words: results are found by meaning.</p>",
                     search_box=False, here="/search")
    if error:
        body = f"<p class=error role=alert>{escape(error)}</p>"
    else:
        body = "".join(_result(r, sources or {}) for r in found) or _nothing_matched(query, params)
        if next_cursor:
            keep = {k: v for k, v in params.items() if k != "cursor" and v}
            more = escape(urlencode({**keep, "cursor": next_cursor}))
            body += f"<p><a rel=next href=\"/search?{more}\">More results</a></p>"
    return _page(f"{query} · allthethings", controls + f"<h2>Results for “{escape(query)}”</h2>{body}",
                 search_box=False, here="/search")


# --- sources ----------------------------------------------------------------------------------

_KINDS = {"rss": "RSS feed", "atom": "Atom feed", "sitemap": "sitemap", "sitemap_index": "sitemap index"}
_SKIPPED = {"no_url": "without a URL", "duplicate": "listed twice", "over_limit": "over the item limit",
            "bad_url": "with a bad URL", "loop": "sitemaps in a loop", "unreadable_sitemap": "unreadable sitemaps",
            "disallowed_sitemap": "sitemaps robots.txt disallows"}
# What a form's redirect asks the sources page to say (fixed words: the address names a case,
# never the text, so a link cannot make the page say anything else).
NOTICES = {"added": "Added {title}: its items are being indexed.",
           "known": "{title} was already added.",
           "refreshing": "{title} is being read again: new items will appear below.",
           "deleted": "The source is deleted.",
           "deleting": "The source is deleted; its assets are still being deleted."}
# A source just added with nothing listed yet is still being read (a sitemap index's sitemaps).
_FIRST_READ = timedelta(minutes=2)


def sources(views: list[SourceView], *, now: datetime, error: str | None = None,
            notice: tuple[str, str] | None = None, params: dict | None = None, next_cursor: str | None = None,
            url: str = "") -> str:
    """The sources page: a form to add a feed or sitemap, and a table of sources with their
    progress, refreshes, problems and buttons. While any is still being indexed the table
    updates itself (or, without JavaScript, the page reloads)."""
    params = params or {}
    said = ""
    if notice is not None and notice[0] in NOTICES:
        said = f"<p class=notice role=status>{escape(NOTICES[notice[0]].format(title=f'“{notice[1]}”'))}</p>"
    alert = f"<p class=error role=alert>{escape(error)}</p>" if error else ""
    busy = any(_busy(v, now) for v in views)
    rows = "".join(_source_row(v, now) for v in views)
    empty = "No sources yet: add a feed or a sitemap above." if not params.get("cursor") else "No older sources."
    paging = ""
    if params.get("cursor") or next_cursor:
        links = ['<a href="/sources">Newest</a>'] if params.get("cursor") else []
        if next_cursor:
            links.append(f'<a rel=next href="{escape("/sources?" + urlencode({"cursor": next_cursor}))}">Older</a>')
        paging = f"<p class=paging>{' · '.join(links)}</p>"
    body = (f"<h2>Sources</h2>{said}{alert}<p class=muted>An RSS or Atom feed (a podcast's too), a sitemap or a "
            f"sitemap index: what it lists is indexed, and it is read again on a schedule for new items.</p>"
            f"<form action=\"/sources\" method=\"post\"><input type=\"url\" name=\"url\" required "
            f"value=\"{escape(url)}\" placeholder=\"https://example.com/feed.xml\" "
            f"aria-label=\"Feed or sitemap URL\"><button>Add source</button></form>"
            f"<table id=sources data-pending={'true' if busy else 'false'}><thead><tr><th>Source</th>"
            f"<th>Progress</th><th>Refresh</th><th>Problems</th><th></th></tr></thead>"
            f"<tbody>{rows or f'<tr><td colspan=5>{empty}</td></tr>'}</tbody></table>{paging}")
    return _page("Sources · allthethings", body + (_LIVE_SOURCES if busy else ""), refresh=busy, here="/sources")


def _busy(v: SourceView, now: datetime) -> bool:
    """Whether the source is still being indexed: items not yet submitted, assets not yet final,
    or a source just added that lists nothing yet."""
    if v.entries.get(EntryState.PENDING):
        return True
    if any(n and not status.is_final for status, n in v.assets.items()):
        return True
    return not sum(v.entries.values()) and not v.source.last_error and now - v.source.created_at < _FIRST_READ


def _source_row(v: SourceView, now: datetime) -> str:
    s = v.source
    sid = escape(s.id)
    name = (f"<a href=\"{escape(s.url)}\">{escape(s.title or s.url)}</a>"
            + (f"<div class=muted>{escape(s.url)}</div>" if s.title else "")
            + (f"<div class=muted>reads {escape(s.feed_url)}</div>" if s.feed_url != s.url else "")
            + f"<div><span class=badge>{escape(_KINDS.get(s.kind.value, s.kind.value))}</span></div>")
    actions = (f"<form class=inline method=post action=\"/sources/{sid}/refresh\"><button>Refresh</button></form>"
               f"<form class=inline method=post action=\"/sources/{sid}/delete\" onsubmit=\"return confirm("
               f"this.assets.checked ? 'Delete this source and its assets?' : 'Delete this source? Its assets are "
               f"kept.')\"><label><input type=checkbox name=assets value=true> also delete its assets</label>"
               f"<button>Delete</button></form>")
    return (f"<tr id=\"{sid}\" data-id=\"{sid}\"><td class=live>{name}</td><td class=live>{_source_progress(v, now)}"
            f"</td><td class=live>{_source_refresh(v, now)}</td><td class=live>{_source_problems(v)}</td>"
            f"<td class=actions>{actions}</td></tr>")


def _source_progress(v: SourceView, now: datetime) -> str:
    total = sum(v.entries.values())
    searchable = v.assets.get(Status.SEARCHABLE, 0)
    if not total:
        waiting = not v.source.last_error and now - v.source.created_at < _FIRST_READ
        return "<strong>Reading it…</strong>" if waiting else "<strong>No items</strong>"
    states = " · ".join(f"{v.entries.get(state, 0):,} {state.value.lower()}" for state in EntryState)
    assets = ", ".join(f"<span class=\"status {status.value}\">{status.value}</span> {n:,}"
                       for status, n in sorted(v.assets.items(), key=lambda item: item[0].value) if n)
    skipped = ", ".join(f"{n:,} {escape(_SKIPPED.get(reason, reason.replace('_', ' ')))}"
                        for reason, n in (v.source.skipped or {}).items() if n)
    return (f"<strong class=searchable>{searchable:,} of {total:,} searchable</strong>"
            f"<progress max={total} value={min(searchable, total)}></progress>"
            f"<div class=muted>items: {states}</div>"
            + (f"<div class=muted>assets: {assets}</div>" if assets else "")
            + (f"<div class=muted>skipped: {skipped}</div>" if skipped else ""))


def _source_refresh(v: SourceView, now: datetime) -> str:
    s = v.source
    last = f"read {_moment(s.last_refresh_at, now)}" if s.last_refresh_at else "not read yet"
    if s.next_refresh_at is None:
        upcoming = ""
    elif s.next_refresh_at <= now:
        upcoming = f"<div>next: due {_moment(s.next_refresh_at, now)}</div>"
    else:
        upcoming = f"<div>next {_moment(s.next_refresh_at, now)}</div>"
    return f"<div>{last}</div>{upcoming}<div class=muted>every {_duration(s.interval_s)}</div>"


def _source_problems(v: SourceView) -> str:
    error = f"<div class=error>{escape(v.source.last_error)}</div>" if v.source.last_error else ""
    refused = v.entries.get(EntryState.REFUSED, 0)
    if not refused:
        return error or "<span class=muted>none</span>"
    shown = "".join(f"<li><a href=\"{escape(e.url)}\">{escape(e.url)}</a>: {escape(e.reason or 'refused')}</li>"
                    for e in v.refused)
    more = f"<div class=muted>the first {len(v.refused)} of {refused:,}</div>" if refused > len(v.refused) else ""
    return f"{error}<details><summary>{refused:,} refused</summary><ul>{shown}</ul>{more}</details>"


def _moment(at: datetime, now: datetime) -> str:
    """A time as people say it ("5 min ago", "in 2 h"), with the exact time on hover."""
    seconds = (at - now).total_seconds()
    span = abs(seconds)
    if span < 60:
        words = "just now"
    else:
        amount = (f"{int(span // 60)} min" if span < 3600 else f"{int(span // 3600)} h" if span < 86400
                  else f"{int(span // 86400)} d")
        words = f"in {amount}" if seconds > 0 else f"{amount} ago"
    return f"<time datetime=\"{at.isoformat()}\" title=\"{at:%Y-%m-%d %H:%M} UTC\">{words}</time>"


def _duration(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400} d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min"


# With JavaScript, the table re-renders from the page itself, cell by cell, so that a half-typed
# URL, a ticked box or an open list of refused items survives (without it, the page reloads).
_LIVE_SOURCES = """<script>
(function () {
  function ids(table) {
    return Array.prototype.map.call(table.querySelectorAll("tbody tr"),
                                    function (r) { return r.getAttribute("data-id"); }).join();
  }
  function poll() {
    fetch(location.pathname + location.search, {credentials: "same-origin"}).then(function (r) {
      return r.text();
    }).then(function (text) {
      var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("sources");
      var table = document.getElementById("sources");
      if (!fresh || !table) return;  // signed out meanwhile: leave the page as it is
      if (ids(fresh) !== ids(table)) {
        table.replaceWith(document.importNode(fresh, true));
      } else {
        fresh.querySelectorAll("tbody tr[data-id]").forEach(function (row) {
          var mine = table.querySelector("tr[data-id='" + row.getAttribute("data-id") + "']")
            .querySelectorAll("td.live");
          row.querySelectorAll("td.live").forEach(function (cell, i) {
            if (mine[i].innerHTML === cell.innerHTML) return;
            var open = mine[i].querySelector("details[open]");
            mine[i].innerHTML = cell.innerHTML;
            if (open && mine[i].querySelector("details")) mine[i].querySelector("details").open = true;
          });
        });
        table.setAttribute("data-pending", fresh.getAttribute("data-pending"));
      }
      if (fresh.getAttribute("data-pending") === "true") setTimeout(poll, 2000);
    }).catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 2000);
})();
</script>"""
