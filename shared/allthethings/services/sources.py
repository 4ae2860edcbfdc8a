"""Sources: add a feed or a sitemap, read it now and on a schedule, submit the items it lists as
assets, show where it stands, and delete it (with its assets, if asked).

Adding a source reads it in the request, so that a URL that is no feed or sitemap (415), cannot
be reached (422) or is not a URL (400) is refused at once, with the same SSRF, size and type rules
as an asset. The items it lists (at most SOURCE_MAX_ITEMS a read) are remembered as the source's
entries (one per URL) and submitted behind the source queue by the source worker, through the same
submission service as `POST /api/assets` (so the same dedupe: a URL already indexed is linked to
the source, not fetched again). A sitemap index's sitemaps are read by the worker too.

Reading again (the schedule, or `POST /api/sources/{id}/refresh`) is a conditional GET with the
validators of the version last read: an unchanged feed costs one request and submits nothing.
A changed one adds only the URLs it did not list before. A feed that disappears or turns invalid
marks the source with `last_error` and keeps its assets.

Politeness: the worker submits with at most SOURCE_HOST_CONCURRENCY requests at once to one host
and SOURCE_HOST_DELAY_S between the starts of two of them, and honours robots.txt for the pages
and sitemaps of a sitemap. It submits for SOURCE_SLICE_S, then queues the rest for the next
invocation; an entry is PENDING until its submission is recorded, so a crash loses none.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import email.utils
import threading
import time
import urllib.robotparser
from collections.abc import Iterator
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from allthethings.domain.assets import Status, host_of, normalise_url, now
from allthethings.domain.errors import (
    DomainError,
    NotFound,
    UnsupportedContentType,
    UpstreamUnavailable,
)
from allthethings.domain.listing import AssetFilter
from allthethings.domain.sources import (
    Entry,
    EntryState,
    ParsedSource,
    Source,
    SourceItem,
    SourceKind,
    SourceLimits,
    check_interval,
    check_source_id,
)
from allthethings.domain.tasks import DeleteSourceAssets, ReadSource, SourceTask, SubmitEntries, to_message
from allthethings.ports import Validator
from allthethings.services import Deps
from allthethings.services.lifecycle import delete_asset
from allthethings.services.submit_asset import submit_asset

USER_AGENT = "allthethings"  # the robots.txt group we obey (and the `*` group)
WORKERS = 8  # submissions in flight at once, across hosts (each host has its own limit)
BATCH = 50  # PENDING entries read at a time (a deleted source is noticed between batches)
SHOWN_REFUSED = 20  # refused entries a source's view lists
MAX_INDEX_DEPTH = 3  # sitemap indexes within sitemap indexes
ROBOTS_BYTES = 512 * 1024


@dataclasses.dataclass(frozen=True)
class Listing:
    """What one read of a source found."""

    feed_url: str
    kind: SourceKind
    title: str | None
    items: list[SourceItem]
    skipped: dict[str, int]
    validator: Validator


@dataclasses.dataclass(frozen=True)
class SourceView:
    """A source with its progress: its entries by state, its assets by status, and the first
    refused entries with their reasons."""

    source: Source
    entries: dict[EntryState, int]
    assets: dict[Status, int]
    refused: list[Entry]

    def to_public(self) -> dict:
        total = sum(self.entries.values())
        return {**self.source.to_public(),
                "item_count": total,
                "items": {"total": total, **{s.value.lower(): self.entries.get(s, 0) for s in EntryState}},
                "assets": {s.value: n for s, n in self.assets.items() if n},
                "searchable": self.assets.get(Status.SEARCHABLE, 0),
                "refused": [e.to_public() for e in self.refused]}


# --- the API's use cases --------------------------------------------------------------------

def add_source(raw_url: object, deps: Deps, *, interval_s: object = None,
               webhook_base: str | None = None) -> tuple[SourceView, bool]:
    """Read the URL as a feed or sitemap and keep it as a source; its items are submitted behind
    the queue. A URL already added answers with its source (False: nothing new)."""
    url = normalise_url(raw_url)
    interval = deps.settings.source_refresh_s if interval_s is None else check_interval(interval_s)
    existing = deps.sources.get_by_url(url)
    if existing is not None:
        return view(existing, deps), False
    # A sitemap index's sitemaps are read by the worker: there may be many.
    listing = _list(url, deps, unless=None, robots=_Robots(deps), crawl=False)
    assert listing is not None  # an unconditional GET is never "not modified"
    source = Source.new(url, listing.feed_url, listing.kind, title=listing.title, interval_s=interval)
    source.etag, source.last_modified = listing.validator.etag, listing.validator.last_modified
    source.last_refresh_at, source.skipped = source.created_at, listing.skipped
    stored = deps.sources.add(source)
    if stored.id != source.id:  # the same URL added at the same moment
        return view(stored, deps), False
    try:
        if listing.kind is SourceKind.SITEMAP_INDEX:
            deps.source_queue.send(to_message(ReadSource(stored.id, webhook_base, force=True)))
        else:
            _remember(stored, listing, deps)
            deps.source_queue.send(to_message(SubmitEntries(stored.id, webhook_base)))
    except BaseException:
        deps.sources.delete(stored.id)
        raise
    deps.metrics.count("sources_added")
    return view(stored, deps), True


def get_source(source_id: str, deps: Deps) -> SourceView:
    source = deps.sources.get(check_source_id(source_id))
    if source is None:
        raise NotFound(f"no source with id {source_id}")
    return view(source, deps)


def view(source: Source, deps: Deps) -> SourceView:
    return SourceView(source, deps.sources.entry_counts(source.id), deps.store.source_counts(source.id),
                      deps.sources.entries(source.id, EntryState.REFUSED, SHOWN_REFUSED))


def list_sources(limit: int, cursor: str | None, deps: Deps) -> tuple[list[SourceView], str | None]:
    sources, next_cursor = deps.sources.list(limit, cursor)
    return [view(s, deps) for s in sources], next_cursor


def refresh_source(source_id: str, deps: Deps, *, webhook_base: str | None = None) -> SourceView:
    """Read the source again now (behind the queue): a conditional GET, new items submitted, and
    the items refused before tried again (the host that was down may be up)."""
    current = get_source(source_id, deps)
    deps.source_queue.send(to_message(ReadSource(current.source.id, webhook_base, retry=True)))
    return current


def delete_source(source_id: str, deps: Deps, *, with_assets: bool, budget_s: float = 10.0,
                  webhook_base: str | None = None) -> bool:
    """Stop reading the source and forget its entries; with `with_assets`, delete its assets too
    (for `budget_s` in the request, the rest behind the queue). Return whether everything asked
    for is done (False: assets are still being deleted)."""
    source = get_source(source_id, deps).source
    deps.sources.delete(source.id)
    if not with_assets:
        return True
    if delete_source_assets(source.id, deps, until=time.monotonic() + budget_s):
        return True
    deps.source_queue.send(to_message(DeleteSourceAssets(source.id, webhook_base)))
    return False


def delete_source_assets(source_id: str, deps: Deps, *, until: float) -> bool:
    """Delete the assets that carry `source_id`, until `until`; return whether none is left."""
    only = AssetFilter(source=source_id)
    while time.monotonic() < until:
        assets, _ = deps.store.list(100, None, only)
        if not assets:
            return True
        for asset in assets:
            with contextlib.suppress(NotFound):  # deleted by someone else meanwhile
                delete_asset(asset.id, deps)
    return False


def schedule_due(deps: Deps, *, at: datetime | None = None, limit: int = 500) -> list[str]:
    """Queue a read of every source whose refresh is due (the sweeper's schedule calls this);
    each is claimed first, so two runs at once read a source once. Return their ids."""
    due = deps.sources.claim_due(at or now(), limit)
    base = deps.settings.public_base_url or deps.settings.api_url
    for source in due:
        deps.source_queue.send(to_message(ReadSource(source.id, base)))
    return [source.id for source in due]


# --- the worker's use cases -----------------------------------------------------------------

def run_task(task: SourceTask, deps: Deps, *, until: float) -> str:
    """Do what a source-queue message asks until `until`, queueing a continuation for what is left;
    return what happened (read_source's outcomes, submitted, deleted or continued)."""
    if isinstance(task, ReadSource):
        return read_source(task, deps, until=until)
    if isinstance(task, SubmitEntries):
        done = submit_entries(task.source_id, deps, until=until, webhook_base=task.webhook_base)
    else:
        done = delete_source_assets(task.source_id, deps, until=until)
    if not done:
        deps.source_queue.send(to_message(task))
    return ("submitted" if isinstance(task, SubmitEntries) else "deleted") if done else "continued"


def read_source(task: ReadSource, deps: Deps, *, until: float) -> str:
    """Read the source (conditionally unless `force`), remember its new items and submit what is
    pending. Return what happened: deleted, failed, not_modified or read."""
    source = deps.sources.get(task.source_id)
    if source is None:
        return "deleted"
    started = now()
    timing = {"last_refresh_at": started, "next_refresh_at": started + timedelta(seconds=source.interval_s)}
    unless = None if task.force or not (source.etag or source.last_modified) else \
        Validator(source.etag, source.last_modified)
    try:
        listing = _list(source.feed_url, deps, unless=unless, robots=_Robots(deps))
    except UpstreamUnavailable:
        raise
    except DomainError as exc:
        deps.sources.update(source.id, last_error=exc.message, **timing)
        deps.metrics.count("source_reads_failed")
        return "failed"
    if task.retry:
        deps.sources.retry_refused(source.id)
    if listing is None:
        deps.sources.update(source.id, last_error=None, **timing)
        deps.metrics.count("source_reads_unchanged")
        outcome = "not_modified"
    else:
        new = _remember(source, listing, deps)
        deps.sources.update(source.id, title=listing.title or source.title, kind=listing.kind,
                            etag=listing.validator.etag, last_modified=listing.validator.last_modified,
                            skipped=listing.skipped, last_error=None, **timing)
        deps.metrics.count("source_items_new", new)
        outcome = "read"
    if not submit_entries(source.id, deps, until=until, webhook_base=task.webhook_base):
        deps.source_queue.send(to_message(SubmitEntries(source.id, task.webhook_base)))
    return outcome


def submit_entries(source_id: str, deps: Deps, *, until: float, webhook_base: str | None) -> bool:
    """Submit the source's PENDING entries until `until`, politely; return whether none is left.
    An entry the submission refuses (a private address, an unreachable URL, a type we cannot
    index, robots.txt) is recorded REFUSED with the reason; a failure of our own (the store, a
    queue) raises, and the entry stays PENDING for the message's retry."""
    source = deps.sources.get(source_id)
    if source is None:
        return True
    settings = deps.settings
    gate = HostGate(settings.source_host_concurrency, settings.source_host_delay_s)
    robots = _Robots(deps) if source.kind in (SourceKind.SITEMAP, SourceKind.SITEMAP_INDEX) else None
    with concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="source-item") as pool:
        while time.monotonic() < until:
            batch = deps.sources.entries(source_id, EntryState.PENDING, BATCH)
            if not batch:
                return True
            futures = [pool.submit(_submit_entry, entry, deps, gate, robots, until, webhook_base)
                       for entry in batch]
            failures = [f.exception() for f in futures if f.exception() is not None]
            if failures:
                raise failures[0]
            if deps.sources.get(source_id) is None:  # deleted meanwhile
                return True
    return not deps.sources.entries(source_id, EntryState.PENDING, 1)


def _submit_entry(entry: Entry, deps: Deps, gate: HostGate, robots: _Robots | None, until: float,
                  webhook_base: str | None) -> None:
    if time.monotonic() >= until:
        return  # left PENDING for the next invocation
    host = host_of(entry.url)
    try:
        if robots is not None and not robots.allows(entry.url, gate):
            raise UnsupportedContentType(f"robots.txt of {host} disallows fetching it")
        with gate.slot(host):
            asset, _ = submit_asset(entry.url, deps, webhook_base=webhook_base, item=entry.asset_fields())
    except UpstreamUnavailable:
        raise
    except DomainError as exc:
        deps.sources.finish_entry(entry.source_id, entry.url, EntryState.REFUSED, reason=exc.message)
        deps.metrics.count("source_items_refused")
        return
    deps.sources.finish_entry(entry.source_id, entry.url, EntryState.SUBMITTED, asset_id=asset.id)


# --- reading a source -------------------------------------------------------------------------

def _limits(deps: Deps) -> SourceLimits:
    return SourceLimits(max_items=deps.settings.source_max_items, max_bytes=deps.settings.source_max_bytes)


def _fetch(url: str, deps: Deps, *, unless: Validator | None = None,
           limit: int | None = None) -> tuple[bytes, str, str | None, Validator] | None:
    """The body at `url` (its final URL, declared type and validators), or None when a
    conditional GET says it has not changed."""
    settings = deps.settings
    fetched = deps.fetcher.fetch(url, settings.size_limits, limit=limit or settings.source_max_bytes,
                                 within_s=settings.fetch_timeout_s * 3, unless=unless)
    if fetched is None:
        return None
    with fetched.body:
        return fetched.body.read(), fetched.final_url, fetched.declared_type, fetched.validator or Validator()


def _list(url: str, deps: Deps, *, unless: Validator | None, robots: _Robots, crawl: bool = True) -> Listing | None:
    """Read what the source at `url` lists (following an HTML page's feed link once, and a sitemap
    index's sitemaps); None when it has not changed since `unless`."""
    page = _fetch(url, deps, unless=unless)
    if page is None:
        return None
    body, final_url, declared, validator = page
    parsed = deps.source_reader.parse(body, final_url, declared, _limits(deps))
    feed_url = url
    if parsed.kind is None:  # an HTML page that links a feed
        feed_url = normalise_url(parsed.feed_link)
        body, final_url, declared, validator = _fetch(feed_url, deps)
        parsed = deps.source_reader.parse(body, final_url, declared, _limits(deps))
        if parsed.kind is None:
            raise UnsupportedContentType(f"the page links {feed_url} as its feed, which is a page, not a feed")
    items, skipped = list(parsed.items), dict(parsed.skipped)
    if parsed.kind is SourceKind.SITEMAP_INDEX and crawl:
        items, skipped = _crawl(feed_url, parsed, deps, robots)
    return Listing(feed_url, parsed.kind, parsed.title, items, skipped, _trusted(validator))


# A Last-Modified this close to now may name a file still being written within the same second
# (HTTP dates have one-second resolution), so a change made in that second would answer 304.
LAST_MODIFIED_MARGIN_S = 2.0


def _trusted(validator: Validator) -> Validator:
    """The validators a later conditional GET may send: the ETag, and the Last-Modified only when
    it is at least LAST_MODIFIED_MARGIN_S old (RFC 9110 8.8.2.2 calls a date within a second of
    the response weak). Without one, the next read is a full GET whose items are compared."""
    last_modified = validator.last_modified
    if last_modified:
        try:
            stamp = email.utils.parsedate_to_datetime(last_modified)
        except (TypeError, ValueError):
            stamp = None
        if stamp is None or stamp.tzinfo is None or (now() - stamp).total_seconds() < LAST_MODIFIED_MARGIN_S:
            last_modified = None
    return Validator(validator.etag, last_modified)


def _crawl(index_url: str, index: ParsedSource, deps: Deps, robots: _Robots) -> tuple[list[SourceItem], dict]:
    """The pages of a sitemap index's sitemaps (and of indexes within it, MAX_INDEX_DEPTH deep),
    up to the item limit. A sitemap listed twice, or one that lists an index already read (a
    loop), is read once; one that cannot be read is counted and skipped."""
    limits = _limits(deps)
    skipped = dict(index.skipped)
    for reason in ("loop", "unreadable_sitemap", "disallowed_sitemap"):
        skipped.setdefault(reason, 0)
    seen_urls: set[str] = set()
    items: list[SourceItem] = []
    visited = {index_url}
    frontier = [(child, 1) for child in index.children]
    gate = HostGate(deps.settings.source_host_concurrency, deps.settings.source_host_delay_s)
    while frontier:
        child, depth = frontier.pop(0)
        if child in visited:
            skipped["loop"] += 1
            continue
        visited.add(child)
        if len(items) >= limits.max_items:
            skipped["over_limit"] += 1
            continue
        if not robots.allows(child, gate):
            skipped["disallowed_sitemap"] += 1
            continue
        try:
            with gate.slot(host_of(child)):
                body, final_url, declared, _ = _fetch(child, deps)
            parsed = deps.source_reader.parse(body, final_url, declared, limits)
        except UpstreamUnavailable:
            raise
        except DomainError:
            skipped["unreadable_sitemap"] += 1
            continue
        if parsed.kind is SourceKind.SITEMAP_INDEX:
            if depth >= MAX_INDEX_DEPTH:
                skipped["loop"] += 1
            else:
                frontier.extend((c, depth + 1) for c in parsed.children)
            continue
        for key, count in parsed.skipped.items():
            skipped[key] = skipped.get(key, 0) + count
        for item in parsed.items:
            if item.url in seen_urls:
                skipped["duplicate"] += 1
            elif len(items) >= limits.max_items:
                skipped["over_limit"] += 1
            else:
                seen_urls.add(item.url)
                items.append(item)
    return items, skipped


def _remember(source: Source, listing: Listing, deps: Deps) -> int:
    """Keep the items the source had not listed before as PENDING entries; return how many were
    new. A read lists at most SOURCE_MAX_ITEMS (the rest are counted `over_limit` as it is read),
    so a feed that keeps publishing keeps adding its new items."""
    if not listing.items:
        return 0
    return deps.sources.add_entries([Entry.of(source.id, item) for item in listing.items])


# --- politeness -------------------------------------------------------------------------------

class HostGate:
    """At most `concurrency` requests at once to one host, and `delay_s` between the starts of
    two requests to it (the first goes at once)."""

    def __init__(self, concurrency: int, delay_s: float):
        self.concurrency = concurrency
        self.delay_s = delay_s
        self._lock = threading.Lock()
        self._slots: dict[str, threading.Semaphore] = {}
        self._next: dict[str, float] = {}

    @contextlib.contextmanager
    def slot(self, host: str) -> Iterator[None]:
        with self._lock:
            slots = self._slots.setdefault(host, threading.Semaphore(self.concurrency))
        with slots:
            with self._lock:
                start = max(time.monotonic(), self._next.get(host, 0.0))
                self._next[host] = start + self.delay_s
            wait = start - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            yield


class _Robots:
    """robots.txt, read once per host (through the fetcher: the same SSRF rules). A host without
    one, or whose robots.txt cannot be read, allows everything (RFC 9309: an unreachable one
    would disallow, but a 4xx allows; a host that fails here fails its pages' fetches anyway)."""

    def __init__(self, deps: Deps):
        self.deps = deps
        self._lock = threading.Lock()
        self._origin_locks: dict[str, threading.Lock] = {}
        self._parsers: dict[str, urllib.robotparser.RobotFileParser | None] = {}

    def allows(self, url: str, gate: HostGate | None = None) -> bool:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        with self._lock:
            origin_lock = self._origin_locks.setdefault(origin, threading.Lock())
        with origin_lock:  # the first thread reads it; the others wait for its answer, not fetch it too
            if origin not in self._parsers:
                self._parsers[origin] = self._read(origin, gate)
        parser = self._parsers[origin]
        return parser is None or parser.can_fetch(USER_AGENT, url)

    def _read(self, origin: str, gate: HostGate | None) -> urllib.robotparser.RobotFileParser | None:
        try:
            with gate.slot(host_of(origin)) if gate else contextlib.nullcontext():
                page = _fetch(f"{origin}/robots.txt", self.deps, limit=ROBOTS_BYTES)
        except DomainError:
            return None
        if page is None:
            return None
        parser = urllib.robotparser.RobotFileParser()
        parser.parse(page[0].decode("utf-8", "replace").splitlines())
        return parser
