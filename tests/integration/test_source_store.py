"""The SourceStore contract, run against every store: SQLite (a file in tmp_path), MongoDB on
mongomock, and the FakeSourceStore the unit tests use (so that a fake that drifts from the real
stores turns this suite red). After the contract, the few things only one store can show: the
MongoDB store's lazy indexes and single bulk insert, the SQLite store sharing the asset store's file.

Times here have whole milliseconds: BSON dates keep no finer ones.
"""

from __future__ import annotations

import dataclasses
import os
import random
import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from allthethings.adapters.source_store import MongoSourceStore, SqliteSourceStore
from allthethings.domain.errors import InvalidInput
from allthethings.domain.sources import Entry, EntryState, Source, SourceKind, Transcript, new_source_id
from allthethings.ports import SourceStore
from tests.fake_sources import FakeSourceStore

EPOCH = datetime(2024, 5, 1, 12, 0, 0, 123_000, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def make_source(*, url: str | None = None, created_at: datetime = EPOCH, next_refresh_at: datetime | None = None,
                interval_s: int = 3600, **fields) -> Source:
    source_id = new_source_id()
    url = url or f"https://example.com/{source_id}/feed.xml"
    return Source(id=source_id, url=url, feed_url=url, kind=SourceKind.RSS, created_at=created_at,
                  updated_at=created_at, interval_s=interval_s,
                  next_refresh_at=next_refresh_at or created_at + timedelta(seconds=interval_s), **fields)


def make_entry(source_id: str, n: int, **fields) -> Entry:
    return Entry(source_id=source_id, url=f"https://example.com/items/{n}", state=EntryState.PENDING,
                 created_at=EPOCH, **{"title": f"item {n}", **fields})


def urls(entries) -> list[str]:
    return [e.url for e in entries]


def _one_write_at_a_time(collection, lock) -> None:
    """Make each of a mongomock collection's writes atomic, as each is on a real server (mongomock
    reads a document, then writes it: two racing conditional updates could both match)."""
    for name in ("insert_one", "insert_many", "update_one", "find_one_and_update", "delete_one", "delete_many"):
        write = getattr(collection, name)

        def locked(*args, _write=write, **kwargs):
            with lock:
                return _write(*args, **kwargs)

        setattr(collection, name, locked)


def _mongomock_database():
    import mongomock

    db = mongomock.MongoClient(tz_aware=True)["sources_test"]
    lock = threading.RLock()
    for collection in (db.sources, db.source_entries):
        _one_write_at_a_time(collection, lock)
    return db


@pytest.fixture
def live_sources():
    """A throwaway database on the MongoDB at MONGODB_URI (Atlas or atlas-local), dropped after."""
    uri = os.environ.get("MONGODB_URI")
    if not uri:
        pytest.skip("MONGODB_URI is not set: the live backend needs MongoDB Atlas or atlas-local")
    import pymongo

    client = pymongo.MongoClient(uri, tz_aware=True)
    name = f"allthethings_sources_{uuid.uuid4().hex[:12]}"
    try:
        yield MongoSourceStore(client[name])
    finally:
        client.drop_database(name)
        client.close()


@pytest.fixture(params=["sqlite", "mongomock", "fake", pytest.param("live", marks=pytest.mark.live)])
def store(request, tmp_path) -> SourceStore:
    if request.param == "sqlite":
        sqlite = SqliteSourceStore(str(tmp_path / "store.db"))
        yield sqlite
        sqlite.close()
    elif request.param == "mongomock":
        yield MongoSourceStore(_mongomock_database())
    elif request.param == "live":
        yield request.getfixturevalue("live_sources")
    else:
        yield FakeSourceStore()


# -- the contract --------------------------------------------------------------------------------

class TestSourceStoreContract:
    # adding and reading
    def test_adding_a_known_url_returns_the_source_already_stored(self, store):
        first = store.add(make_source(url="https://example.com/feed.xml", title="first"))
        again = store.add(make_source(url="https://example.com/feed.xml", title="second"))
        assert again.id == first.id and again.title == "first"
        assert store.get_by_url("https://example.com/feed.xml").id == first.id

    def test_a_stored_source_reads_back_by_id_and_by_url_with_every_field(self, store):
        source = make_source(
            title="A feed", interval_s=900, etag='"abc"', last_modified="Wed, 01 May 2024 12:00:00 GMT",
            last_refresh_at=at(30), last_error="the feed answered 503",
            skipped={"no_url": 1, "duplicate": 2, "over_limit": 0, "bad_url": 3})
        source = dataclasses.replace(source, kind=SourceKind.SITEMAP_INDEX, feed_url="https://example.com/sitemap.xml",
                                     updated_at=at(60))
        assert store.add(source) is source
        for got in (store.get(source.id), store.get_by_url(source.url)):
            assert got == source
            for stamp in (got.created_at, got.updated_at, got.last_refresh_at, got.next_refresh_at):
                assert stamp.tzinfo is not None and stamp.utcoffset() == timedelta(0)

    def test_a_time_given_in_another_zone_reads_back_as_the_same_instant_in_utc(self, store):
        paris = timezone(timedelta(hours=2))
        source = store.add(make_source(created_at=EPOCH.astimezone(paris)))
        got = store.get(source.id)
        assert got.created_at == EPOCH and got.created_at.utcoffset() == timedelta(0)

    def test_an_unknown_id_or_url_reads_as_none(self, store):
        assert store.get(new_source_id()) is None
        assert store.get_by_url("https://example.com/nothing.xml") is None

    # listing
    def test_listing_pages_through_the_sources_newest_first_and_the_last_page_has_no_cursor(self, store):
        made = [make_source(created_at=at(i)) for i in range(5)]
        for source in random.Random(7).sample(made, len(made)):
            store.add(source)
        seen, cursor, pages = [], None, 0
        while True:
            page, cursor = store.list(2, cursor)
            seen += [s.id for s in page]
            pages += 1
            if cursor is None:
                break
        assert seen == [s.id for s in reversed(made)]
        assert pages == 3

    def test_a_full_last_page_ends_the_listing_and_sources_made_at_one_instant_are_all_listed(self, store):
        made = [store.add(make_source(created_at=EPOCH)) for _ in range(4)]
        first, cursor = store.list(2, None)
        second, end = store.list(2, cursor)
        assert end is None
        assert [s.id for s in first + second] == sorted((s.id for s in made), reverse=True)

    def test_listing_no_sources_is_an_empty_page_without_a_cursor(self, store):
        assert store.list(10, None) == ([], None)

    def test_a_cursor_not_made_by_list_is_refused(self, store):
        with pytest.raises(InvalidInput):
            store.list(10, "not-a-cursor")

    # updating
    def test_update_sets_the_fields_and_the_time_of_the_change(self, store):
        source = store.add(make_source())
        assert store.update(source.id, title="Renamed", etag='W/"2"', last_refresh_at=at(5), last_error=None,
                            skipped={"no_url": 4}, interval_s=600)
        got = store.get(source.id)
        assert (got.title, got.etag, got.last_refresh_at, got.skipped, got.interval_s) == \
            ("Renamed", 'W/"2"', at(5), {"no_url": 4}, 600)
        assert got.updated_at > source.updated_at
        assert (got.url, got.created_at) == (source.url, source.created_at)

    def test_update_clears_a_field_set_to_none(self, store):
        source = store.add(make_source(last_error="it failed", skipped={"no_url": 1}))
        assert store.update(source.id, last_error=None, skipped=None)
        got = store.get(source.id)
        assert got.last_error is None and got.skipped is None

    def test_updating_an_unknown_source_returns_false(self, store):
        assert store.update(new_source_id(), title="nobody") is False

    def test_updating_the_id_url_or_creation_time_is_refused(self, store):
        source = store.add(make_source())
        for field, value in (("id", new_source_id()), ("url", "https://example.com/other"), ("created_at", at(9))):
            with pytest.raises(ValueError):
                store.update(source.id, **{field: value})
        assert store.get(source.id) == source

    # claiming
    def test_claim_due_claims_only_due_sources_soonest_first_as_they_were_before(self, store):
        late = store.add(make_source(next_refresh_at=at(0), interval_s=600))
        early = store.add(make_source(next_refresh_at=at(-10), interval_s=300))
        future = store.add(make_source(next_refresh_at=at(1)))
        claimed = store.claim_due(at(0), 10)
        assert [s.id for s in claimed] == [early.id, late.id]
        assert [s.next_refresh_at for s in claimed] == [at(-10), at(0)]
        assert store.get(early.id).next_refresh_at == at(300)
        assert store.get(late.id).next_refresh_at == at(600)
        assert store.get(future.id) == future

    def test_a_second_claim_at_the_same_instant_claims_nothing(self, store):
        store.add(make_source(next_refresh_at=at(0)))
        assert len(store.claim_due(at(0), 10)) == 1
        assert store.claim_due(at(0), 10) == []

    def test_claim_due_claims_at_most_the_limit_and_leaves_the_rest_due(self, store):
        sources = [store.add(make_source(next_refresh_at=at(-i))) for i in range(3)]
        assert [s.id for s in store.claim_due(at(0), 2)] == [sources[2].id, sources[1].id]
        assert [s.id for s in store.claim_due(at(0), 2)] == [sources[0].id]
        assert store.claim_due(at(0), 0) == []

    def test_schedulers_claiming_at_once_never_claim_one_source_twice(self, store):
        due = {store.add(make_source(next_refresh_at=at(-i))).id for i in range(20)}
        start = threading.Barrier(4)
        claims: list[list[str]] = [[] for _ in range(4)]

        def scheduler(n):
            start.wait()
            for _ in range(10):
                claims[n] += [s.id for s in store.claim_due(at(0), 3)]

        threads = [threading.Thread(target=scheduler, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        every = [i for claim in claims for i in claim]
        assert sorted(every) == sorted(due)

    # deleting
    def test_delete_removes_the_source_and_its_entries_and_no_other(self, store):
        gone = store.add(make_source())
        kept = store.add(make_source())
        store.add_entries([make_entry(gone.id, n) for n in range(3)] + [make_entry(kept.id, n) for n in range(2)])
        store.delete(gone.id)
        assert store.get(gone.id) is None and store.get_by_url(gone.url) is None
        assert store.entries(gone.id, None, 10) == [] and store.entry_counts(gone.id) == {}
        assert len(store.entries(kept.id, None, 10)) == 2
        again = store.add(make_source(url=gone.url))
        assert store.entries(again.id, None, 10) == []
        store.delete(new_source_id())  # an unknown source: nothing happens

    # entries
    def test_add_entries_stores_only_unknown_urls_counts_them_and_keeps_the_first_listed_order(self, store):
        source = store.add(make_source())
        assert store.add_entries([make_entry(source.id, n) for n in range(600)]) == 600
        # 1,000 entries: the 600 known in another order, 350 new, and 50 of those new listed twice.
        known = [make_entry(source.id, n, title="relisted") for n in random.Random(3).sample(range(600), 600)]
        new = [make_entry(source.id, n) for n in range(600, 950)]
        twice = [make_entry(source.id, n, title="listed again") for n in range(600, 650)]
        batch = known[:300] + new[:200] + twice + known[300:] + new[200:]
        assert len(batch) == 1000
        assert store.add_entries(batch) == 350
        stored = store.entries(source.id, None, 2000)
        assert urls(stored) == [f"https://example.com/items/{n}" for n in range(950)]
        assert {e.title for e in stored} == {f"item {n}" for n in range(950)}
        assert store.add_entries(batch) == 0

    def test_an_entry_reads_back_with_every_field(self, store):
        source = store.add(make_source())
        entry = make_entry(source.id, 1, published_at=at(-3600), author="A. Writer", description="What it is about",
                           transcripts=[Transcript("https://example.com/1.vtt", "text/vtt", "en", "captions"),
                                        Transcript("https://example.com/1.json", "application/json")])
        store.add_entries([entry])
        assert store.entries(source.id, None, 10) == [entry]

    def test_entries_of_one_url_in_two_sources_are_two_entries(self, store):
        one, other = store.add(make_source()), store.add(make_source())
        assert store.add_entries([make_entry(one.id, 1), make_entry(other.id, 1)]) == 2
        assert urls(store.entries(one.id, None, 10)) == urls(store.entries(other.id, None, 10))

    def test_entries_of_an_unknown_source_are_not_stored(self, store):
        missing = new_source_id()
        assert store.add_entries([make_entry(missing, 1)]) == 0
        assert store.entries(missing, None, 10) == []
        assert store.add_entries([]) == 0

    def test_entries_are_filtered_by_state_and_limited_in_the_first_listed_order(self, store):
        source = store.add(make_source())
        store.add_entries([make_entry(source.id, n) for n in range(10)])
        for n in (1, 4, 7):
            store.finish_entry(source.id, f"https://example.com/items/{n}", EntryState.SUBMITTED, asset_id=f"a{n}")
        store.finish_entry(source.id, "https://example.com/items/2", EntryState.REFUSED, reason="private address")
        assert urls(store.entries(source.id, EntryState.PENDING, 3)) == \
            [f"https://example.com/items/{n}" for n in (0, 3, 5)]
        assert urls(store.entries(source.id, EntryState.SUBMITTED, 10)) == \
            [f"https://example.com/items/{n}" for n in (1, 4, 7)]
        assert urls(store.entries(source.id, EntryState.REFUSED, 10)) == ["https://example.com/items/2"]
        assert len(store.entries(source.id, None, 4)) == 4
        assert store.entries(source.id, None, 0) == []

    def test_finish_entry_moves_a_pending_entry_to_submitted_or_refused(self, store):
        source = store.add(make_source())
        store.add_entries([make_entry(source.id, 1), make_entry(source.id, 2)])
        store.finish_entry(source.id, "https://example.com/items/1", EntryState.SUBMITTED, asset_id="asset-1")
        store.finish_entry(source.id, "https://example.com/items/2", EntryState.REFUSED, reason="unreachable")
        submitted, refused = store.entries(source.id, None, 10)
        assert (submitted.state, submitted.asset_id, submitted.reason) == (EntryState.SUBMITTED, "asset-1", None)
        assert (refused.state, refused.asset_id, refused.reason) == (EntryState.REFUSED, None, "unreachable")

    def test_retry_refused_makes_only_refused_entries_pending_again_without_their_reasons(self, store):
        source = store.add(make_source())
        store.add_entries([make_entry(source.id, n) for n in (1, 2, 3)])
        store.finish_entry(source.id, "https://example.com/items/1", EntryState.SUBMITTED, asset_id="asset-1")
        store.finish_entry(source.id, "https://example.com/items/2", EntryState.REFUSED, reason="unreachable")
        assert store.retry_refused(source.id) == 1
        assert store.entry_counts(source.id) == {EntryState.SUBMITTED: 1, EntryState.PENDING: 2}
        again = [e for e in store.entries(source.id, EntryState.PENDING, 10) if e.url.endswith("/2")]
        assert again[0].reason is None
        assert store.retry_refused(source.id) == 0

    def test_a_finished_entry_is_not_finished_again(self, store):
        source = store.add(make_source())
        store.add_entries([make_entry(source.id, 1)])
        store.finish_entry(source.id, "https://example.com/items/1", EntryState.SUBMITTED, asset_id="asset-1")
        store.finish_entry(source.id, "https://example.com/items/1", EntryState.REFUSED, reason="late")
        [entry] = store.entries(source.id, None, 10)
        assert (entry.state, entry.asset_id, entry.reason) == (EntryState.SUBMITTED, "asset-1", None)
        store.finish_entry(source.id, "https://example.com/items/9", EntryState.SUBMITTED, asset_id="x")  # unknown

    def test_an_entry_cannot_be_finished_as_pending(self, store):
        source = store.add(make_source())
        store.add_entries([make_entry(source.id, 1)])
        with pytest.raises(ValueError):
            store.finish_entry(source.id, "https://example.com/items/1", EntryState.PENDING)

    def test_entry_counts_counts_each_state_and_leaves_out_the_empty_ones(self, store):
        source = store.add(make_source())
        store.add_entries([make_entry(source.id, n) for n in range(6)])
        assert store.entry_counts(source.id) == {EntryState.PENDING: 6}
        for n in (0, 1):
            store.finish_entry(source.id, f"https://example.com/items/{n}", EntryState.SUBMITTED, asset_id=f"a{n}")
        store.finish_entry(source.id, "https://example.com/items/2", EntryState.REFUSED, reason="no")
        assert store.entry_counts(source.id) == {EntryState.PENDING: 3, EntryState.SUBMITTED: 2,
                                                 EntryState.REFUSED: 1}
        assert store.entry_counts(new_source_id()) == {}


# -- what only one store shows -------------------------------------------------------------------

def test_the_mongodb_store_asks_for_its_database_on_first_use_and_creates_its_indexes_then():
    import mongomock

    client = mongomock.MongoClient(tz_aware=True)
    opened = []

    def database():
        opened.append(1)
        return client["lazy"]

    store = MongoSourceStore(database)
    assert opened == [] and client["lazy"].list_collection_names() == []
    assert store.get(new_source_id()) is None
    store.add(make_source())
    assert opened == [1]
    sources, entries = client["lazy"].sources.index_information(), client["lazy"].source_entries.index_information()
    assert sources["url_unique"]["unique"] and sources["url_unique"]["key"] == [("url", 1)]
    assert entries["source_url_unique"]["unique"]
    assert entries["source_url_unique"]["key"] == [("source_id", 1), ("url", 1)]


def test_the_mongodb_store_inserts_a_thousand_entries_in_one_insert_many():
    db = _mongomock_database()
    store = MongoSourceStore(db)
    source = store.add(make_source())
    calls = []
    insert_many, insert_one = db.source_entries.insert_many, db.source_entries.insert_one
    db.source_entries.insert_many = lambda docs, **kw: calls.append(("many", kw)) or insert_many(docs, **kw)
    db.source_entries.insert_one = lambda doc, **kw: calls.append(("one", kw)) or insert_one(doc, **kw)
    assert store.add_entries([make_entry(source.id, n) for n in range(1000)]) == 1000
    assert calls == [("many", {"ordered": False})]


def test_the_mongodb_store_counts_entries_another_reader_inserted_first_as_not_new():
    db = _mongomock_database()
    store = MongoSourceStore(db)
    source = store.add(make_source())
    store.add_entries([make_entry(source.id, n) for n in range(5)])
    # The other reader's inserts land between this one's look-up of known URLs and its insert.
    db.source_entries.find = lambda *args, **kwargs: iter(())
    assert store.add_entries([make_entry(source.id, n) for n in range(8)]) == 3
    del db.source_entries.find
    assert urls(store.entries(source.id, None, 20)) == [f"https://example.com/items/{n}" for n in range(8)]


def test_the_sqlite_store_keeps_its_tables_in_the_asset_stores_file(tmp_path):
    from allthethings.adapters.sqlite_store import SqliteStore
    from tests.integration.store_contract import make_asset

    path = str(tmp_path / "store.db")
    assets = SqliteStore(path, 8, "contract-test-model")
    asset = assets.add(make_asset())
    sources = SqliteSourceStore(path)
    source = sources.add(make_source())
    sources.add_entries([make_entry(source.id, 1)])
    sources.close()
    assets.close()
    reopened = SqliteSourceStore(path)
    assert reopened.get(source.id) == source and len(reopened.entries(source.id, None, 10)) == 1
    assert SqliteStore(path, 8, "contract-test-model").get(asset.id).url == asset.url
    reopened.close()


def test_the_source_store_and_the_asset_store_open_their_file_with_one_sqlite_library(tmp_path):
    """Two copies of SQLite in one process do not see each other's locks on one file: rows
    written through one vanished under the other (found by the sources benchmark)."""
    from allthethings.adapters.sqlite_store import SqliteStore

    path = str(tmp_path / "store.db")
    assets, sources = SqliteStore(path, 8, "contract-test-model"), SqliteSourceStore(path)
    assert type(sources._conn()) is type(assets._conn())
    assert sources._conn().execute("SELECT sqlite_version()").fetchone() == \
        assets._conn().execute("SELECT sqlite_version()").fetchone()


def test_assets_and_entries_written_at_once_from_many_threads_are_all_kept(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from allthethings.adapters.sqlite_store import SqliteStore
    from tests.integration.store_contract import make_asset

    path = str(tmp_path / "store.db")
    assets, sources = SqliteStore(path, 8, "contract-test-model"), SqliteSourceStore(path)
    source = sources.add(make_source())
    sources.add_entries([make_entry(source.id, n) for n in range(200)])

    def one(n: int) -> str:
        asset = assets.add(make_asset(url=f"https://example.com/items/{n}"))
        sources.finish_entry(source.id, f"https://example.com/items/{n}", EntryState.SUBMITTED, asset_id=asset.id)
        return asset.id

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(one, range(200)))
    assert len(assets.get_many(ids)) == 200
    assert sources.entry_counts(source.id) == {EntryState.SUBMITTED: 200}
