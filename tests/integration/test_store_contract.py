"""The AssetStore contract, run against every store: SQLite (sqlite-vec), AtlasStore on mongomock,
AtlasStore on a live MongoDB Atlas / atlas-local when MONGODB_URI is set (`-m live`), and the
FakeStore the unit tests use (so that a fake that drifts from the real stores turns this suite red).

mongomock has no `$vectorSearch` and no search-index commands, so on that backend the search cases
are skipped and only `ensure_btree_indexes` runs. Known defects of a backend are
marked `xfail(strict=True)` on that backend only, so the suite turns red the day they are fixed
without the marker being removed.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from allthethings import ports
from allthethings.adapters.atlas_store import AtlasStore, vector_search_pipeline
from allthethings.adapters.sqlite_store import SqliteStore
from allthethings.domain import cursor as cursors
from allthethings.domain.assets import TRANSITIONS, Chunk, Kind, Location, Status
from allthethings.domain.errors import InvalidInput
from allthethings.domain.listing import AssetFilter
from allthethings.domain.search import SearchFilter
from allthethings.services.search import MAX_CHUNKS
from tests.fakes import FakeStore
from tests.integration.store_contract import (
    DIMENSIONS,
    Backend,
    at,
    axis,
    make_asset,
    make_chunks,
    new_source,
    replay_bulk_writes,
    unit,
)

INDEX = "chunk_vectors"
MODEL = "contract-test-model"



# -- backends ------------------------------------------------------------------------------------

def _one_write_at_a_time(collection, lock) -> None:
    """Make each of a mongomock collection's writes atomic, as each is on a real server.

    mongomock is not thread-safe: its update_one reads the document, then writes it, so two
    threads racing a conditional update can both see the old status and both "win" (the race
    tests then failed about one run in many). A real MongoDB applies one single-document
    update at a time; one lock around each write gives mongomock that guarantee, which is the
    one the race tests are about. SQLite and a live cluster race for real."""
    for name in ("insert_one", "insert_many", "update_one", "update_many", "replace_one", "delete_one",
                 "delete_many", "bulk_write", "find_one_and_update"):
        write = getattr(collection, name)

        def locked(*args, _write=write, **kwargs):
            with lock:
                return _write(*args, **kwargs)

        setattr(collection, name, locked)


def _wait_for_queryable(collection, name: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        info = list(collection.list_search_indexes(name))
        if info and info[0].get("queryable") and info[0].get("status") == "READY":
            return
        if time.monotonic() > deadline:
            pytest.fail(f"search index {name} not queryable after {timeout_s:.0f} s: {info}")
        time.sleep(2)


def _settle_live(db, timeout_s: float = 60) -> None:
    """Wait until `$vectorSearch` sees exactly the chunks that hold an embedding (Atlas indexes asynchronously)."""
    probe = unit(*[1.0] * DIMENSIONS)
    deadline = time.monotonic() + timeout_s
    while True:
        expected = {(d["asset_id"], d["index"])
                    for d in db.chunks.find({"embedding": {"$exists": True}}, {"asset_id": 1, "index": 1})}
        seen = {(h["asset_id"], h["index"]) for h in db.chunks.aggregate(vector_search_pipeline(INDEX, probe, 1000))}
        if seen == expected:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"vector index did not catch up within {timeout_s:.0f} s: "
                        f"{len(seen)} seen, {len(expected)} stored")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def live_database():
    uri = os.environ.get("MONGODB_URI")
    if not uri:
        pytest.skip("MONGODB_URI is not set: the live backend needs MongoDB Atlas or atlas-local")
    import pymongo

    client = pymongo.MongoClient(uri, tz_aware=True)
    name = f"allthethings_contract_{uuid.uuid4().hex[:12]}"
    try:
        AtlasStore(lambda: client, name, INDEX).ensure_indexes(DIMENSIONS)
        _wait_for_queryable(client[name].chunks, INDEX, 120)
        yield client, name
    finally:
        client.drop_database(name)
        client.close()


@pytest.fixture(params=["sqlite", "mongomock", "fake", pytest.param("live", marks=pytest.mark.live)])
def backend(request, tmp_path):
    if request.param == "sqlite":
        store = SqliteStore(str(tmp_path / "store.db"), DIMENSIONS, MODEL)
        yield Backend("sqlite", store)
        store.close()
    elif request.param == "mongomock":
        import mongomock

        store = AtlasStore(lambda: mongomock.MongoClient(tz_aware=True), "test_db", INDEX)
        # mongomock 4.3 has no search-index commands; the B-tree indexes are all the non-search contract needs.
        store.ensure_btree_indexes()
        store.db.chunks.bulk_write = replay_bulk_writes(store.db.chunks)
        lock = threading.RLock()
        for collection in (store.db.assets, store.db.chunks):
            _one_write_at_a_time(collection, lock)
        yield Backend("mongomock", store, can_search=False)
    elif request.param == "fake":
        yield Backend("fake", FakeStore())
    else:
        client, name = request.getfixturevalue("live_database")
        db = client[name]
        db.assets.delete_many({})
        db.chunks.delete_many({})
        yield Backend("live", AtlasStore(lambda: client, name, INDEX), settle=lambda: _settle_live(db))


def needs_search(backend: Backend) -> None:
    if not backend.can_search:
        pytest.skip(f"{backend.name} does not implement $vectorSearch")


def known_bug(request, backend: Backend, names: tuple[str, ...], reason: str, raises: type[BaseException]) -> None:
    """Expect this backend to fail the case with exactly `raises` (anything else is a real failure)."""
    if backend.name in names:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason, raises=raises))


def same_asset(got, want) -> None:
    """Equal in every field; timestamps timezone-aware, UTC, and equal to the second."""
    assert got is not None
    for stamp in (got.created_at, got.updated_at):
        assert stamp.tzinfo is not None and stamp.utcoffset() == timedelta(0)
    assert got.created_at.replace(microsecond=0) == want.created_at.replace(microsecond=0)
    assert got.updated_at.replace(microsecond=0) == want.updated_at.replace(microsecond=0)
    strip = {"created_at": None, "updated_at": None}
    assert dataclasses.replace(got, **strip) == dataclasses.replace(want, **strip)


def put_searchable(store, texts_and_vectors, timed=False):
    """An asset waiting for embeddings, then made SEARCHABLE with these vectors."""
    asset = store.add(make_asset(status=Status.GENERATING_EMBEDDINGS))
    store.put_chunks(asset.id, make_chunks(asset.id, [t for t, _ in texts_and_vectors], timed=timed))
    assert store.make_searchable(asset.id, [v for _, v in texts_and_vectors])
    return asset


def put_unsearchable(store, texts_and_vectors, status):
    """An asset with chunks in `status`; its vectors are offered, and refused where the status forbids."""
    asset = store.add(make_asset(status=status))
    store.put_chunks(asset.id, make_chunks(asset.id, [t for t, _ in texts_and_vectors]))
    if status not in (Status.PROCESSED, Status.GENERATING_EMBEDDINGS):
        assert not store.make_searchable(asset.id, [v for _, v in texts_and_vectors])
    return asset


# -- the contract --------------------------------------------------------------------------------

class TestAssetStoreContract:
    # adding and reading
    def test_an_added_asset_is_returned_and_found_by_id_and_by_url_with_equal_fields(self, backend):
        asset = make_asset(title="A title", chunk_count=3, prediction_id="p-1")
        assert backend.store.add(asset) == asset
        same_asset(backend.store.get(asset.id), asset)
        same_asset(backend.store.get_by_url(asset.url), asset)

    def test_stored_timestamps_come_back_timezone_aware_and_equal_to_the_second(self, backend):
        asset = make_asset(created_at=at(0).replace(microsecond=987_654))
        backend.store.add(asset)
        got = backend.store.get(asset.id)
        assert got.created_at.tzinfo is not None
        assert got.created_at.replace(microsecond=0) == at(0)

    def test_every_field_round_trips_a_metadata_document_and_empty_fields_included(self, backend):
        documented = make_asset(status=Status.SEARCHABLE, title="Doc", sha256="ab" * 32, chunk_count=2,
                                metadata={"author": "Ada", "tags": ["x", "y"], "pages": 3, "draft": False})
        bare = dataclasses.replace(make_asset(), kind=None, content_type=None, staged_key=None, size_bytes=None)
        for asset in (documented, bare):
            backend.store.add(asset)
        listed = {a.id: a for a in backend.store.list(10, None)[0]}
        for asset in (documented, bare):
            same_asset(backend.store.get(asset.id), asset)
            same_asset(listed[asset.id], asset)

    @pytest.mark.parametrize("field", ["id", "status", "updated_at"])
    def test_a_move_may_not_set_the_id_the_status_or_the_time_of_the_change_itself(self, backend, field):
        asset = backend.store.add(make_asset(status=Status.SUBMITTED))
        with pytest.raises(ValueError):
            backend.store.move(asset.id, Status.PROCESSING, **{field: "whatever"})
        same_asset(backend.store.get(asset.id), asset)

    def test_get_many_returns_the_stored_assets_by_id_and_leaves_unknown_ids_out(self, backend):
        first, second = backend.store.add(make_asset(title="one")), backend.store.add(make_asset(title="two"))
        backend.store.add(make_asset())  # stored but not asked for
        unknown = uuid.uuid4().hex
        found = backend.store.get_many([second.id, unknown, first.id, second.id])
        assert list(found) == [second.id, first.id]
        same_asset(found[first.id], first)
        same_asset(found[second.id], second)

    def test_get_many_of_no_ids_is_empty_without_asking_the_database(self, backend, monkeypatch):
        def no_query(*_):
            raise AssertionError("get_many of no ids queried the store")

        monkeypatch.setattr(backend.store, "_fetch", no_query)
        assert backend.store.get_many([]) == {}
        assert backend.store.get_many(iter(())) == {}

    def test_get_many_of_ids_none_of_which_is_stored_is_empty(self, backend):
        backend.store.add(make_asset())
        assert backend.store.get_many([uuid.uuid4().hex, uuid.uuid4().hex]) == {}

    def test_get_many_reads_all_the_ids_in_one_query(self, backend, monkeypatch):
        added = [backend.store.add(make_asset()) for _ in range(5)]
        fetch, calls = backend.store._fetch, []

        def counted(ids):
            calls.append(list(ids))
            return fetch(ids)

        monkeypatch.setattr(backend.store, "_fetch", counted)
        assert set(backend.store.get_many([a.id for a in added])) == {a.id for a in added}
        assert len(calls) == 1

    def test_an_unknown_id_or_url_finds_nothing(self, backend):
        backend.store.add(make_asset())
        assert backend.store.get(uuid.uuid4().hex) is None
        assert backend.store.get_by_url("https://example.com/never-added") is None

    def test_adding_a_known_url_returns_the_first_asset_and_stores_nothing_new(self, request, backend):
        first = backend.store.add(make_asset(url="https://example.com/same", title="first"))
        second = make_asset(url="https://example.com/same", title="second")
        again = backend.store.add(second)
        assert (again.id, again.title) == (first.id, "first")
        assert backend.store.get(second.id) is None
        page, _ = backend.store.list(10, None)
        assert [a.id for a in page] == [first.id]

    # listing
    def test_list_pages_newest_first_with_limit_and_cursor_without_gaps_or_duplicates(self, backend):
        added = [backend.store.add(make_asset(created_at=at(i))) for i in range(7)]
        seen, cursor, pages = [], None, []
        while True:
            page, cursor = backend.store.list(3, cursor)
            pages.append(len(page))
            seen += [a.id for a in page]
            if cursor is None:
                break
            assert len(pages) < 10, "the cursor never ran out"
        assert pages == [3, 3, 1]
        assert seen == [a.id for a in reversed(added)]

    def test_a_page_that_ends_exactly_at_the_last_asset_has_no_next_cursor(self, backend):
        for i in range(6):
            backend.store.add(make_asset(created_at=at(i)))
        first, cursor = backend.store.list(3, None)
        second, after = backend.store.list(3, cursor)
        assert len(first) == len(second) == 3 and cursor is not None
        assert after is None

    def test_an_empty_store_lists_an_empty_page_without_a_cursor(self, backend):
        assert backend.store.list(5, None) == ([], None)

    @pytest.mark.parametrize("bad", ["not a cursor", "%%%%", "A" * 600, cursors.encode({"nope": 1}),
                                     base64.urlsafe_b64encode(b"[1, 2]").decode()])
    def test_a_malformed_cursor_is_rejected_as_invalid_input(self, backend, bad):
        backend.store.add(make_asset())
        with pytest.raises(InvalidInput):
            backend.store.list(3, bad)

    def test_a_well_formed_cursor_holding_values_of_the_wrong_type_is_rejected_as_invalid_input(
            self, request, backend):
        for i in range(3):
            backend.store.add(make_asset(created_at=at(i)))
        _, cursor = backend.store.list(1, None)
        position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        forged = cursors.encode({key: "garbage" for key in position})
        with pytest.raises(InvalidInput):
            backend.store.list(1, forged)

    # listing under a filter
    def _listed(self, store, listing_filter, limit=50):
        return [a.url for a in store.list(limit, None, listing_filter)[0]]

    def test_a_listing_filter_admits_the_statuses_and_kinds_asked_for_and_they_combine(self, backend):
        store = backend.store
        for i, (status, kind) in enumerate([(Status.SEARCHABLE, Kind.TEXT), (Status.SEARCHABLE, Kind.PDF),
                                            (Status.PROCESSING_ERROR, Kind.PDF), (Status.SUBMITTED, Kind.HTML)]):
            store.add(dataclasses.replace(make_asset(url=f"https://example.com/{i}", created_at=at(i), status=status),
                                          kind=kind))
        assert self._listed(store, AssetFilter(statuses=(Status.SEARCHABLE,))) == [
            "https://example.com/1", "https://example.com/0"]
        assert self._listed(store, AssetFilter(kinds=(Kind.PDF,))) == ["https://example.com/2", "https://example.com/1"]
        assert self._listed(store, AssetFilter(statuses=(Status.SEARCHABLE, Status.SUBMITTED),
                                               kinds=(Kind.PDF, Kind.HTML))) == [
            "https://example.com/3", "https://example.com/1"]
        assert self._listed(store, AssetFilter(statuses=(Status.EMBEDDINGS_ERROR,))) == []
        assert len(self._listed(store, AssetFilter())) == 4, "an empty filter admits everything"

    def test_the_listing_text_is_a_case_insensitive_substring_of_the_url_or_the_title(self, backend):
        store = backend.store
        store.add(make_asset(url="https://Example.com/Lighthouses", created_at=at(0)))
        store.add(make_asset(url="document:note-161", title="Keeper's LOG", created_at=at(1)))
        store.add(make_asset(url="https://other.test/a", title=None, created_at=at(2)))
        assert self._listed(store, AssetFilter(text="lighthouse")) == ["https://Example.com/Lighthouses"]
        assert self._listed(store, AssetFilter(text="keeper's log")) == ["document:note-161"]
        assert self._listed(store, AssetFilter(text="NOTE-16")) == ["document:note-161"]
        assert self._listed(store, AssetFilter(text="EXAMPLE.COM")) == ["https://Example.com/Lighthouses"]
        assert self._listed(store, AssetFilter(text="nowhere")) == []
        assert self._listed(store, AssetFilter(text="log", kinds=(Kind.PDF,))) == [], "text and kind combine"

    def test_non_ascii_listing_text_is_compared_without_regard_to_case(self, backend):
        backend.store.add(make_asset(title="Über Leuchttürme", created_at=at(0)))
        assert len(self._listed(backend.store, AssetFilter(text="über leuchttürme"))) == 1

    @pytest.mark.parametrize("text", ["%", "_", "50%", "a_b", "\\", ".*", "(", "[x]", "a+", "^h", "$", "?", "|"])
    def test_wildcards_and_regex_metacharacters_in_the_listing_text_match_only_themselves(self, backend, text):
        store = backend.store
        store.add(make_asset(url="https://example.com/plain-abc", title="Plain words", created_at=at(0)))
        store.add(make_asset(url="https://example.com/holder", title=f"has {text} inside", created_at=at(1)))
        assert self._listed(store, AssetFilter(text=text)) == ["https://example.com/holder"]

    def test_cursor_paging_under_a_filter_visits_every_match_once_in_order(self, backend):
        store = backend.store
        wanted = []
        for i in range(11):
            status = Status.SEARCHABLE if i % 3 else Status.PROCESSING_ERROR
            asset = store.add(make_asset(url=f"https://example.com/{i}", created_at=at(i), status=status))
            if status is Status.SEARCHABLE:
                wanted.append(asset.id)
        searchable = AssetFilter(statuses=(Status.SEARCHABLE,))
        seen, cursor, pages = [], None, []
        while True:
            page, cursor = store.list(3, cursor, searchable)
            pages.append(len(page))
            seen += [a.id for a in page]
            if cursor is None:
                break
            assert len(pages) < 10, "the cursor never ran out"
        assert seen == list(reversed(wanted)) and pages == [3, 3, 1]

    def test_a_listing_filtered_by_source_shows_only_that_sources_assets_and_pages_under_it(self, backend):
        store, mine, other = backend.store, new_source(), new_source()
        wanted = []
        for i in range(7):
            owner = (mine, other, None)[i % 3]
            status = Status.SEARCHABLE if i % 2 else Status.SUBMITTED
            asset = store.add(make_asset(url=f"https://example.com/{i}", created_at=at(i), status=status,
                                         source_id=owner))
            if owner == mine:
                wanted.append(asset.url)
        linked = store.add(make_asset(url="https://example.com/linked", created_at=at(10)))
        assert store.link_source(linked.id, mine)
        wanted.append(linked.url)
        assert self._listed(store, AssetFilter(source=mine)) == list(reversed(wanted))
        assert self._listed(store, AssetFilter(source=mine, statuses=(Status.SEARCHABLE,))) == [
            "https://example.com/3"], "source and status combine"
        assert self._listed(store, AssetFilter(source=new_source())) == []
        first, cursor = store.list(2, None, AssetFilter(source=mine))
        rest, after = store.list(2, cursor, AssetFilter(source=mine))
        assert [a.url for a in first + rest] == list(reversed(wanted)) and after is None

    def test_chunks_may_be_read_up_to_a_limit(self, backend):
        asset = backend.store.add(make_asset())
        backend.store.put_chunks(asset.id, make_chunks(asset.id, ["one", "two", "three"]))
        assert [c.text for c in backend.store.chunks(asset.id, 2)] == ["one", "two"]
        assert [c.text for c in backend.store.chunks(asset.id)] == ["one", "two", "three"]

    # moving between statuses
    @pytest.mark.parametrize("start", list(Status), ids=lambda s: s.value)
    def test_move_succeeds_exactly_for_the_transitions_the_table_allows(self, backend, start):
        wrong = []
        for target in Status:
            asset = backend.store.add(make_asset(status=start, created_at=at(0)))
            moved = backend.store.move(asset.id, target)
            stored = backend.store.get(asset.id)
            allowed = target in TRANSITIONS[start]
            if moved != allowed:
                wrong.append(f"{start.value} -> {target.value}: move returned {moved}")
            if stored.status != (target if allowed else start):
                wrong.append(f"{start.value} -> {target.value}: stored status is {stored.status.value}")
            if allowed and not stored.updated_at > at(0):
                wrong.append(f"{start.value} -> {target.value}: updated_at not advanced")
            if not allowed and stored.updated_at != at(0):
                wrong.append(f"{start.value} -> {target.value}: updated_at changed by a refused move")
        assert wrong == []

    def test_move_sets_the_given_fields_together_with_the_status(self, backend):
        store = backend.store
        done = store.add(make_asset(status=Status.PROCESSING))
        assert store.move(done.id, Status.PROCESSED, title="Readable", chunk_count=4)
        assert store.move(done.id, Status.GENERATING_EMBEDDINGS, prediction_id="pred-42")
        got = store.get(done.id)
        assert (got.status, got.title, got.chunk_count, got.prediction_id) == (
            Status.GENERATING_EMBEDDINGS, "Readable", 4, "pred-42")
        failed = store.add(make_asset(status=Status.SUBMITTED))
        assert store.move(failed.id, Status.PROCESSING_ERROR, error="could not fetch")
        got = store.get(failed.id)
        assert (got.status, got.error) == (Status.PROCESSING_ERROR, "could not fetch")

    def test_a_refused_move_sets_none_of_the_given_fields(self, backend):
        asset = backend.store.add(make_asset(status=Status.SEARCHABLE, title="kept"))
        assert backend.store.move(asset.id, Status.EMBEDDINGS_ERROR, error="late failure", title="lost") is False
        got = backend.store.get(asset.id)
        assert (got.status, got.error, got.title) == (Status.SEARCHABLE, None, "kept")

    def test_moving_an_unknown_asset_returns_false(self, backend):
        assert backend.store.move(uuid.uuid4().hex, Status.PROCESSING) is False

    def test_a_move_with_an_unknown_field_raises_value_error_and_changes_nothing(self, backend):
        asset = backend.store.add(make_asset(status=Status.SUBMITTED))
        with pytest.raises(ValueError):
            backend.store.move(asset.id, Status.PROCESSING, colour="blue")
        assert backend.store.get(asset.id).status is Status.SUBMITTED

    def test_of_eight_threads_racing_the_same_move_exactly_one_wins(self, backend):
        for _ in range(5):
            asset = backend.store.add(make_asset(status=Status.GENERATING_EMBEDDINGS))
            barrier = threading.Barrier(8)

            def attempt(_, asset_id=asset.id, barrier=barrier):
                barrier.wait()
                return backend.store.move(asset_id, Status.SEARCHABLE)

            with ThreadPoolExecutor(8) as pool:
                results = list(pool.map(attempt, range(8)))
            assert results.count(True) == 1
            assert backend.store.get(asset.id).status is Status.SEARCHABLE

    def test_racing_moves_to_different_final_statuses_leave_exactly_the_winners_status(self, backend):
        for _ in range(5):
            asset = backend.store.add(make_asset(status=Status.GENERATING_EMBEDDINGS))
            targets = [Status.SEARCHABLE, Status.EMBEDDINGS_ERROR] * 4
            barrier = threading.Barrier(len(targets))

            def attempt(target, asset_id=asset.id, barrier=barrier):
                barrier.wait()
                return target, backend.store.move(asset_id, target)

            with ThreadPoolExecutor(len(targets)) as pool:
                winners = [t for t, won in pool.map(attempt, targets) if won]
            assert len(winners) == 1
            assert backend.store.get(asset.id).status is winners[0]

    def test_reclaiming_processing_twice_within_one_millisecond_still_succeeds(self, request, backend, monkeypatch):
        # Every store's move stamps the time in the port's template method, which reads the clock through
        # the ports module's `now`; freezing it is the only deterministic way to make two moves land in
        # the same millisecond.
        frozen = at(60)
        monkeypatch.setattr(ports, "now", lambda: frozen)
        asset = backend.store.add(make_asset(status=Status.PROCESSING))
        assert backend.store.move(asset.id, Status.PROCESSING) is True
        assert backend.store.move(asset.id, Status.PROCESSING) is True

    # chunks and vectors
    def test_put_chunks_then_chunks_returns_them_in_index_order(self, backend):
        asset = backend.store.add(make_asset(status=Status.PROCESSING))
        chunks = make_chunks(asset.id, ["zero", "one", "two", "three"], timed=True)
        backend.store.put_chunks(asset.id, list(reversed(chunks)))
        assert backend.store.chunks(asset.id) == chunks

    def test_put_chunks_again_replaces_the_old_chunks_and_leaves_other_assets_alone(self, backend):
        store = backend.store
        mine, other = store.add(make_asset()), store.add(make_asset())
        store.put_chunks(mine.id, make_chunks(mine.id, ["a", "b", "c", "d", "e"]))
        store.put_chunks(other.id, make_chunks(other.id, ["x", "y"]))
        store.put_chunks(mine.id, make_chunks(mine.id, ["new a", "new b"]))
        assert store.chunks(mine.id) == make_chunks(mine.id, ["new a", "new b"])
        assert store.chunks(other.id) == make_chunks(other.id, ["x", "y"])

    @pytest.mark.parametrize("count", [2, 4])
    def test_make_searchable_with_the_wrong_count_raises_value_error_and_moves_nothing(self, backend, count):
        asset = backend.store.add(make_asset(status=Status.GENERATING_EMBEDDINGS))
        backend.store.put_chunks(asset.id, make_chunks(asset.id, ["a", "b", "c"]))
        with pytest.raises(ValueError):
            backend.store.make_searchable(asset.id, [axis(i) for i in range(count)])
        assert len(backend.store.chunks(asset.id)) == 3
        assert backend.store.get(asset.id).status is Status.GENERATING_EMBEDDINGS

    def test_a_rejected_make_searchable_writes_nothing(self, backend):
        needs_search(backend)
        asset = backend.store.add(make_asset(status=Status.GENERATING_EMBEDDINGS))
        backend.store.put_chunks(asset.id, make_chunks(asset.id, ["a", "b", "c"]))
        with pytest.raises(ValueError):
            backend.store.make_searchable(asset.id, [axis(0), axis(1)])
        backend.settle()
        assert backend.store.search(axis(0), 10) == []

    def test_a_rejected_make_searchable_keeps_the_vectors_already_there(self, backend):
        needs_search(backend)
        asset = put_searchable(backend.store, [("a", axis(0)), ("b", axis(1))])
        with pytest.raises(ValueError):
            backend.store.make_searchable(asset.id, [axis(2)])
        backend.settle()
        assert [h.index for h in backend.store.search(axis(1), 1)] == [1]

    @pytest.mark.parametrize("status", [Status.SEARCHABLE, Status.EMBEDDINGS_ERROR, Status.PROCESSING_ERROR,
                                        Status.SUBMITTED, Status.PROCESSING])
    def test_make_searchable_is_refused_unless_the_asset_waits_for_embeddings(self, backend, status):
        asset = backend.store.add(make_asset(status=status))
        backend.store.put_chunks(asset.id, make_chunks(asset.id, ["a"]))
        assert backend.store.make_searchable(asset.id, [axis(0)]) is False
        assert backend.store.get(asset.id).status is status

    def test_delete_removes_the_asset_and_its_chunks_and_frees_its_url(self, backend):
        store = backend.store
        gone = put_searchable(store, [("a", axis(0)), ("b", axis(1))])
        kept = store.add(make_asset())
        store.delete(gone.id)
        assert store.get(gone.id) is None and store.get_by_url(gone.url) is None
        assert store.chunks(gone.id) == []
        assert [a.id for a in store.list(10, None)[0]] == [kept.id]
        readded = store.add(make_asset(url=gone.url))
        assert readded.id != gone.id and store.get_by_url(gone.url).id == readded.id
        if backend.can_search:
            backend.settle()
            assert store.search(axis(0), 10) == []

    # search
    def test_search_returns_only_chunks_of_searchable_assets(self, backend):
        needs_search(backend)
        store = backend.store
        found = put_searchable(store, [("found", axis(0, 0.5))])
        for status in (Status.PROCESSED, Status.GENERATING_EMBEDDINGS, Status.EMBEDDINGS_ERROR):
            put_unsearchable(store, [(status.value, axis(0, 0.4))], status=status)
        backend.settle()
        hits = store.search(axis(0), 10)
        assert [(h.asset_id, h.text) for h in hits] == [(found.id, "found")]

    def test_search_ranks_nearer_chunks_first_with_higher_scores(self, backend):
        needs_search(backend)
        asset = put_searchable(backend.store, [("far", axis(1)), ("exact", axis(0)), ("near", unit(1, 0.3)),
                                               ("middle", unit(1, 1))])
        backend.settle()
        hits = backend.store.search(axis(0), 10)
        assert [h.text for h in hits] == ["exact", "near", "middle", "far"]
        assert all(h.asset_id == asset.id for h in hits)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True) and len(set(scores)) == 4
        assert scores[0] == pytest.approx(1.0, abs=1e-4)

    @pytest.mark.parametrize("limit", [1, 2, 3])
    def test_search_returns_the_limit_nearest_chunks_and_no_more(self, backend, limit):
        needs_search(backend)
        put_searchable(backend.store, [(f"c{i}", axis(0, tilt=0.2 * i)) for i in range(5)])
        backend.settle()
        hits = backend.store.search(axis(0), limit)
        assert [h.text for h in hits] == [f"c{i}" for i in range(limit)]

    def test_search_accepts_the_largest_limit_the_search_service_asks_for(self, backend):
        needs_search(backend)
        put_searchable(backend.store, [("only", axis(3))])
        backend.settle()
        assert [h.text for h in backend.store.search(axis(3), MAX_CHUNKS)] == ["only"]

    def test_nearer_chunks_of_unsearchable_assets_do_not_crowd_searchable_ones_out(self, request, backend):
        needs_search(backend)
        store = backend.store
        wanted = put_searchable(store, [("s0", axis(0, 0.6)), ("s1", axis(0, 0.8))])
        for status in (Status.PROCESSED, Status.EMBEDDINGS_ERROR):
            put_unsearchable(store, [(f"p{i}", axis(0, 0.05 * (i + 1))) for i in range(3)], status=status)
        backend.settle()
        hits = store.search(axis(0), 2)
        assert [(h.asset_id, h.text) for h in hits] == [(wanted.id, "s0"), (wanted.id, "s1")]

    def test_an_asset_is_findable_as_soon_as_it_is_moved_to_searchable(self, backend):
        needs_search(backend)
        asset = put_unsearchable(backend.store, [("fresh", axis(2))], status=Status.GENERATING_EMBEDDINGS)
        backend.settle()
        assert backend.store.search(axis(2), 5) == []
        assert backend.store.make_searchable(asset.id, [axis(2)])
        assert [(h.asset_id, h.text) for h in backend.store.search(axis(2), 5)] == [(asset.id, "fresh")]

    def test_a_search_hit_carries_the_chunks_asset_id_index_text_and_times(self, backend):
        needs_search(backend)
        asset = put_searchable(backend.store, [("first", axis(4)), ("second", axis(5))], timed=True)
        backend.settle()
        (hit,) = backend.store.search(axis(5), 1)
        assert (hit.asset_id, hit.index, hit.text, hit.start_s, hit.end_s) == (asset.id, 1, "second", 10.0, 19.5)
        assert isinstance(hit.score, float)

    def test_a_chunks_location_is_kept_read_back_and_carried_by_every_search_and_copy(self, backend):
        store = backend.store
        asset = store.add(make_asset(status=Status.GENERATING_EMBEDDINGS))
        where = [Location(page=3), Location(slide=2, section="Pricing › Team tier"), Location(sheet="Stock"), None]
        texts = ["harbour wall granite", "twelve euros per seat", "brass compass shelf", "no place at all"]
        store.put_chunks(asset.id, [Chunk(asset_id=asset.id, index=i, text=t, location=w)
                                    for i, (t, w) in enumerate(zip(texts, where))])
        assert [c.location for c in store.chunks(asset.id)] == where
        if not backend.can_search:
            return
        assert store.make_searchable(asset.id, [axis(i) for i in range(4)])
        backend.settle()
        assert [h.location for h in store.search(axis(1), 1)] == [where[1]]
        assert [h.location for h in store.keyword_search("brass compass", 1)] == [where[2]]
        assert [h.location for h in store.search(axis(3), 1)] == [None]
        copy = store.get(asset.id).copied_to("https://mirror.example/located", size_bytes=1, content_type="text/plain")
        store.add_copy(copy, asset.id)
        assert [c.location for c in store.chunks(copy.id)] == where

    def test_replacing_chunks_discards_their_old_vectors(self, backend):
        needs_search(backend)
        asset = put_searchable(backend.store, [("old0", axis(0)), ("old1", axis(1)), ("old2", axis(2))])
        backend.store.put_chunks(asset.id, make_chunks(asset.id, ["new0"]))
        backend.settle()
        assert backend.store.search(axis(0), 10) == []


# -- SQLite only: the file remembers which vectors it holds --------------------------------------

def test_a_sqlite_file_made_for_another_vector_size_is_refused_naming_the_model(tmp_path):
    path = str(tmp_path / "store.db")
    SqliteStore(path, DIMENSIONS, MODEL).add(make_asset())
    other = SqliteStore(path, 16, "bigger-model")
    with pytest.raises(RuntimeError) as refused:
        other.list(1, None)
    assert MODEL in str(refused.value) and "bigger-model" in str(refused.value)


def test_a_refused_sqlite_file_stays_refused_on_later_calls(tmp_path):
    path = str(tmp_path / "store.db")
    SqliteStore(path, DIMENSIONS, MODEL).add(make_asset())
    other = SqliteStore(path, 16, "bigger-model")
    with pytest.raises(RuntimeError):
        other.list(1, None)
    with pytest.raises(RuntimeError):
        other.list(1, None)


def test_sqlite_data_persists_across_store_instances_on_one_file(tmp_path):
    path = str(tmp_path / "nested" / "store.db")
    first = SqliteStore(path, DIMENSIONS, MODEL)
    asset = first.get(put_searchable(first, [("kept", axis(6))]).id)
    first.close()
    second = SqliteStore(path, DIMENSIONS, MODEL)
    same_asset(second.get(asset.id), asset)
    assert second.chunks(asset.id) == make_chunks(asset.id, ["kept"])
    assert [(h.asset_id, h.text) for h in second.search(axis(6), 3)] == [(asset.id, "kept")]


# -- search semantics: modes and filters (issue 4) -----------------------------------------------

def searchable(store, texts_and_vectors, **asset_fields):
    """A SEARCHABLE asset with these chunks; asset fields (kind, url, created_at) as given."""
    asset = store.add(make_asset(status=Status.GENERATING_EMBEDDINGS, **asset_fields))
    store.put_chunks(asset.id, make_chunks(asset.id, [t for t, _ in texts_and_vectors]))
    assert store.make_searchable(asset.id, [v for _, v in texts_and_vectors])
    return asset


class TestSearchContract:
    def test_keyword_search_ranks_chunks_by_their_words(self, backend):
        needs_search(backend)
        store = backend.store
        both = searchable(store, [("lighthouse keepers trimmed the lighthouse wicks", axis(0))])
        one = searchable(store, [("the keepers of bees", axis(1))])
        searchable(store, [("sourdough starter feeding", axis(2))])
        backend.settle()
        hits = store.keyword_search("lighthouse keepers", 10)
        assert [h.asset_id for h in hits] == [both.id, one.id]
        assert hits[0].score > hits[1].score

    def test_keyword_search_of_only_stopwords_finds_nothing(self, backend):
        needs_search(backend)
        searchable(backend.store, [("the and of", axis(0))])
        backend.settle()
        assert backend.store.keyword_search("the of and", 10) == []

    def test_hybrid_search_finds_what_either_mode_finds(self, backend):
        needs_search(backend)
        store = backend.store
        by_meaning = searchable(store, [("a tall tower with a lamp on the coast", axis(0))])
        by_words = searchable(store, [("lighthouse inventory list", axis(3))])
        backend.settle()
        ids = [h.asset_id for h in store.hybrid_search(axis(0), "lighthouse", 10)]
        assert by_meaning.id in ids and by_words.id in ids

    @pytest.mark.parametrize("mode", ["vector", "keyword"])
    def test_a_filter_applies_before_ranking_so_no_match_is_crowded_out(self, backend, mode):
        needs_search(backend)
        store = backend.store
        for i in range(12):  # nearer and wordier chunks of assets the filter excludes
            searchable(store, [(f"lighthouse lighthouse keepers {i}", axis(0, 0.01 * i))],
                       url=f"https://noise.example/{i}")
        wanted = [searchable(store, [(f"lighthouse {i}", axis(0, 0.5 + 0.1 * i))], url=f"https://wanted.example/{i}")
                  for i in range(3)]
        backend.settle()
        only = SearchFilter(host="wanted.example")
        hits = store.search(axis(0), 3, only) if mode == "vector" else store.keyword_search("lighthouse", 3, only)
        assert sorted(h.asset_id for h in hits) == sorted(a.id for a in wanted)

    def test_filters_by_kind_host_and_creation_time_combine(self, backend):
        needs_search(backend)
        store = backend.store
        old_a = searchable(store, [("report", axis(0))], url="https://a.example/x", created_at=at(0))
        new_a = searchable(store, [("report", axis(0, 0.05))], url="https://a.example/y", created_at=at(100))
        new_b = searchable(store, [("report", axis(0, 0.1))], url="https://b.example/z", created_at=at(200))
        backend.settle()
        everything = {h.asset_id for h in store.search(axis(0), 10)}
        assert everything == {old_a.id, new_a.id, new_b.id}
        assert {h.asset_id for h in store.search(axis(0), 10, SearchFilter(host="a.example"))} == {old_a.id, new_a.id}
        assert {h.asset_id for h in store.search(axis(0), 10, SearchFilter(after=at(50)))} == {new_a.id, new_b.id}
        window = SearchFilter(host="a.example", after=at(50), before=at(150))
        assert {h.asset_id for h in store.keyword_search("report", 10, window)} == {new_a.id}
        assert store.search(axis(0), 10, SearchFilter(kinds=(Kind.AUDIO,))) == []
        assert {h.asset_id for h in store.search(axis(0), 10, SearchFilter(kinds=(Kind.TEXT, Kind.AUDIO)))} \
            == everything


def test_a_sqlite_file_from_before_filters_is_upgraded_in_place(tmp_path):
    import sqlean
    import sqlite_vec
    from sqlite_vec import serialize_float32

    path = str(tmp_path / "old.db")
    store = SqliteStore(path, DIMENSIONS, MODEL)
    asset = searchable(store, [("lighthouse keepers", axis(2))])
    store.close()
    conn = sqlean.connect(path)  # rebuild the vector table as the first release made it
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.execute("DROP TABLE chunk_vectors")
    conn.execute(f"CREATE VIRTUAL TABLE chunk_vectors USING vec0(embedding float[{DIMENSIONS}] distance_metric=cosine)")
    rowid = conn.execute("SELECT rowid FROM chunks").fetchone()[0]
    conn.execute("INSERT INTO chunk_vectors (rowid, embedding) VALUES (?, ?)", (rowid, serialize_float32(axis(2))))
    conn.execute("DROP TABLE chunk_fts")
    conn.commit()
    conn.close()
    upgraded = SqliteStore(path, DIMENSIONS, MODEL)
    assert [h.asset_id for h in upgraded.search(axis(2), 5, SearchFilter(kinds=(Kind.TEXT,)))] == [asset.id]
    assert [h.asset_id for h in upgraded.keyword_search("keepers", 5)] == [asset.id]


# -- sources: the assets a feed or sitemap listed (issue 17) -------------------------------------

def _found(store, mode, search_filter, limit, vector=None, query="lighthouse"):
    """The asset ids a search in `mode` finds under the filter (vector and hybrid search near `vector`)."""
    vector = vector or axis(0)
    if mode == "vector":
        hits = store.search(vector, limit, search_filter)
    elif mode == "keyword":
        hits = store.keyword_search(query, limit, search_filter)
    else:
        hits = store.hybrid_search(vector, query, limit, search_filter)
    return {h.asset_id for h in hits}


MODES = ["vector", "keyword", "hybrid"]


class TestSourcesContract:
    def test_link_source_gives_an_asset_of_no_source_its_source_and_the_items_fields(self, backend):
        store, source = backend.store, new_source()
        asset = store.add(make_asset())
        item = {"published_at": at(30), "author": "Ada", "description": "An episode about lighthouses.",
                "title": "Episode 1", "transcript": {"url": "https://example.com/t.vtt", "type": "text/vtt"}}
        assert store.link_source(asset.id, source, **item)
        got = store.get(asset.id)
        assert (got.source_id, got.published_at, got.author, got.description, got.title, got.transcript) == (
            source, at(30), "Ada", "An episode about lighthouses.", "Episode 1", item["transcript"])
        assert got.status is asset.status

    def test_an_assets_own_title_is_kept_and_the_items_taken_only_where_it_has_none(self, backend):
        store = backend.store
        titled = store.add(make_asset(title="Its own title"))
        assert store.link_source(titled.id, new_source(), title="The item's title", author="Ada")
        assert (store.get(titled.id).title, store.get(titled.id).author) == ("Its own title", "Ada")

    def test_an_asset_is_linked_to_one_source_only_and_a_second_link_changes_nothing(self, backend):
        store, first, second = backend.store, new_source(), new_source()
        asset = store.add(make_asset())
        assert store.link_source(asset.id, first, author="first")
        assert store.link_source(asset.id, second, author="second") is False
        got = store.get(asset.id)
        assert (got.source_id, got.author) == (first, "first")
        listed_by = store.add(make_asset(source_id=second))  # a source's own submission carries it already
        assert store.link_source(listed_by.id, first) is False and store.get(listed_by.id).source_id == second

    def test_linking_an_unknown_asset_returns_false_and_an_unknown_field_is_a_value_error(self, backend):
        store = backend.store
        assert store.link_source(uuid.uuid4().hex, new_source()) is False
        asset = store.add(make_asset())
        with pytest.raises(ValueError):
            store.link_source(asset.id, new_source(), colour="blue")
        assert store.get(asset.id).source_id is None

    def test_source_counts_count_a_sources_assets_by_status_in_one_answer(self, backend):
        store, source, other = backend.store, new_source(), new_source()
        for status in (Status.SEARCHABLE, Status.SEARCHABLE, Status.FETCHING, Status.PROCESSING_ERROR):
            store.add(make_asset(status=status, source_id=source))
        store.add(make_asset(status=Status.SEARCHABLE, source_id=other))
        store.add(make_asset(status=Status.SEARCHABLE))
        linked = store.add(make_asset(status=Status.SUBMITTED))
        assert store.link_source(linked.id, source)
        assert store.source_counts(source) == {Status.SEARCHABLE: 2, Status.FETCHING: 1,
                                               Status.PROCESSING_ERROR: 1, Status.SUBMITTED: 1}
        assert store.move(linked.id, Status.PROCESSING)
        assert store.source_counts(source)[Status.PROCESSING] == 1 and Status.SUBMITTED not in store.source_counts(
            source)
        assert store.source_counts(new_source()) == {}

    @pytest.mark.parametrize("mode", MODES)
    def test_a_search_filtered_by_source_finds_only_its_assets_and_never_fewer(self, backend, mode):
        needs_search(backend)
        store, source = backend.store, new_source()
        for i in range(12):  # nearer and wordier chunks of assets of no source or of another
            searchable(store, [(f"lighthouse lighthouse keepers {i}", axis(0, 0.01 * i))],
                       source_id=new_source() if i % 2 else None)
        wanted = {searchable(store, [(f"lighthouse {i}", axis(0, 0.5 + 0.1 * i))], source_id=source).id
                  for i in range(3)}
        backend.settle()
        assert _found(store, mode, SearchFilter(source=source), 3) == wanted
        assert _found(store, mode, SearchFilter(source=new_source()), 3) == set()

    @pytest.mark.parametrize("mode", MODES)
    def test_publication_bounds_find_the_assets_published_in_them_and_never_an_undated_one(self, backend, mode):
        needs_search(backend)
        store, source = backend.store, new_source()
        for i in range(6):  # the nearest and wordiest: no publication date at all
            searchable(store, [(f"lighthouse lighthouse keepers {i}", axis(0, 0.01 * i))])
        dated = {t: searchable(store, [(f"lighthouse {t}", axis(0, 0.5 + 0.001 * t))], source_id=source,
                               published_at=at(t)).id for t in (0, 100, 200)}
        backend.settle()
        assert _found(store, mode, SearchFilter(published_after=at(100)), 2) == {dated[100], dated[200]}
        assert _found(store, mode, SearchFilter(published_before=at(100)), 1) == {dated[0]}
        window = SearchFilter(published_after=at(50), published_before=at(200))
        assert _found(store, mode, window, 1) == {dated[100]}
        assert _found(store, mode, SearchFilter(published_before=at(10_000)), 3) == set(dated.values())
        assert _found(store, mode, SearchFilter(published_after=at(201)), 3) == set()
        created = SearchFilter(after=at(0) - timedelta(days=365 * 50))  # the creation date is another filter
        assert len(_found(store, mode, created, 20)) == 9

    @pytest.mark.parametrize("mode", MODES)
    def test_linking_a_searchable_asset_makes_it_found_under_the_source_filter_at_once(self, backend, mode):
        needs_search(backend)
        store, source = backend.store, new_source()
        asset = searchable(store, [("lighthouse keepers log", axis(0)), ("a lighthouse lamp", axis(1))])
        searchable(store, [("lighthouse of another source", axis(0, 0.1))], source_id=new_source())
        backend.settle()
        assert _found(store, mode, SearchFilter(source=source), 5) == set()
        assert store.link_source(asset.id, source, published_at=at(500))
        backend.settle()
        assert _found(store, mode, SearchFilter(source=source), 5) == {asset.id}
        assert _found(store, mode, SearchFilter(source=source, published_after=at(400)), 5) == {asset.id}
        assert _found(store, mode, SearchFilter(published_before=at(400)), 5) == set()
        assert {h.index for h in store.search(axis(1), 5, SearchFilter(source=source))} == {0, 1}, \
            "every chunk of the asset carries its source"

    def test_an_asset_linked_before_its_vectors_are_written_is_found_under_the_source_filter(self, backend):
        needs_search(backend)
        store, source = backend.store, new_source()
        asset = store.add(make_asset(status=Status.GENERATING_EMBEDDINGS))
        store.put_chunks(asset.id, make_chunks(asset.id, ["lighthouse keepers"]))
        assert store.link_source(asset.id, source, published_at=at(5))
        assert store.make_searchable(asset.id, [axis(3)])
        backend.settle()
        assert _found(store, "vector", SearchFilter(source=source, published_after=at(0)), 5, axis(3)) == {asset.id}
        copy = store.get(asset.id).copied_to("https://mirror.example/linked", size_bytes=1, content_type="text/plain")
        store.add_copy(copy, asset.id)
        backend.settle()
        assert _found(store, "vector", SearchFilter(source=source), 5, axis(3)) == {asset.id}, \
            "a copy belongs to the source only if it is linked itself"


def test_a_sqlite_file_from_before_sources_is_upgraded_in_place(tmp_path):
    import sqlean
    import sqlite_vec

    path = str(tmp_path / "before-sources.db")
    store = SqliteStore(path, DIMENSIONS, MODEL)
    asset = store.get(searchable(store, [("lighthouse keepers", axis(2))], created_at=at(0)).id)
    store.close()
    # Make the file as the release before sources did: no source columns on assets, and search
    # tables whose metadata stops at the creation time.
    conn = sqlean.connect(path)
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    rowid, embedding = conn.execute("SELECT rowid, embedding FROM chunk_vectors").fetchone()
    conn.execute("DROP TABLE chunk_vectors")
    conn.execute(f"CREATE VIRTUAL TABLE chunk_vectors USING vec0(embedding float[{DIMENSIONS}] "
                 "distance_metric=cosine, kind text, host text, created_at float)")
    conn.execute("INSERT INTO chunk_vectors (rowid, embedding, kind, host, created_at) VALUES (?, ?, ?, ?, ?)",
                 (rowid, embedding, "text", "example.com", at(0).timestamp()))
    conn.execute("DROP TABLE chunk_fts")
    conn.execute("CREATE VIRTUAL TABLE chunk_fts USING fts5(text, kind UNINDEXED, host UNINDEXED, "
                 "created_at UNINDEXED, tokenize='porter unicode61')")
    conn.execute("INSERT INTO chunk_fts (rowid, text, kind, host, created_at) VALUES (?, ?, ?, ?, ?)",
                 (rowid, "lighthouse keepers", "text", "example.com", at(0).timestamp()))
    conn.execute("DROP INDEX assets_source")
    for column in ("source_id", "published_at", "author", "description", "transcript"):
        conn.execute(f"ALTER TABLE assets DROP COLUMN {column}")
    conn.commit()
    conn.close()

    upgraded = SqliteStore(path, DIMENSIONS, MODEL)
    same_asset(upgraded.get(asset.id), asset)
    assert [h.asset_id for h in upgraded.search(axis(2), 5, SearchFilter(kinds=(Kind.TEXT,)))] == [asset.id]
    assert [h.asset_id for h in upgraded.keyword_search("keepers", 5, SearchFilter(before=at(1)))] == [asset.id]
    source = new_source()
    assert upgraded.search(axis(2), 5, SearchFilter(source=source)) == []
    assert upgraded.link_source(asset.id, source, published_at=at(60), author="Ada")
    assert [h.asset_id for h in upgraded.search(axis(2), 5, SearchFilter(source=source))] == [asset.id]
    assert [h.asset_id for h in upgraded.keyword_search("keepers", 5, SearchFilter(published_after=at(60)))] \
        == [asset.id]
    assert upgraded.source_counts(source) == {Status.SEARCHABLE: 1}
    assert upgraded.list(5, None, AssetFilter(source=source))[0][0].author == "Ada"
    upgraded.close()
    again = SqliteStore(path, DIMENSIONS, MODEL)  # upgraded once: opened again, nothing is rebuilt
    assert [h.asset_id for h in again.search(axis(2), 5, SearchFilter(source=source))] == [asset.id]
    again.close()


# -- the same bytes behind another URL (issue 5) -------------------------------------------------

class TestSameBytesContract:
    def test_only_a_searchable_asset_is_found_by_the_digest_of_its_body(self, backend):
        store, digest = backend.store, uuid.uuid4().hex * 2
        store.add(make_asset(sha256=digest))  # still waiting: nothing to reuse yet
        assert store.find_by_digest(digest) is None
        done = searchable(store, [("alpha", axis(0))], sha256=digest)
        assert store.find_by_digest(digest).id == done.id
        assert store.find_by_digest(uuid.uuid4().hex * 2) is None

    def test_a_copy_is_searchable_at_once_with_the_source_chunks_under_its_own_url(self, backend):
        store, digest = backend.store, uuid.uuid4().hex * 2
        source = searchable(store, [("alpha particles", axis(0)), ("beta decay", axis(1))], sha256=digest,
                            url=f"https://origin.example/{digest[:8]}")
        copy = store.get(source.id).copied_to(f"https://mirror.example/{digest[:8]}", size_bytes=99,
                                              content_type="text/plain")
        stored = store.add_copy(copy, source.id)
        assert stored.id == copy.id
        kept = store.get(copy.id)
        assert kept.status is Status.SEARCHABLE and kept.sha256 == digest and kept.chunk_count == source.chunk_count
        assert [c.text for c in store.chunks(copy.id)] == ["alpha particles", "beta decay"]
        if backend.can_search:
            backend.settle()
            assert {h.asset_id for h in store.search(axis(1), 10) if h.text == "beta decay"} >= {source.id, copy.id}
            mirror = SearchFilter(host="mirror.example")
            assert {h.asset_id for h in store.search(axis(1), 10, mirror)} == {copy.id}
            assert {h.asset_id for h in store.keyword_search("decay", 10, mirror)} == {copy.id}

    def test_a_copy_for_a_url_already_known_returns_the_known_asset_and_copies_nothing(self, backend):
        store, digest = backend.store, uuid.uuid4().hex * 2
        source = searchable(store, [("gamma", axis(2))], sha256=digest)
        known = store.add(make_asset(url=f"https://known.example/{digest[:8]}"))
        copy = store.get(source.id).copied_to(known.url, size_bytes=1, content_type="text/plain")
        assert store.add_copy(copy, source.id).id == known.id
        assert store.get(copy.id) is None and store.chunks(copy.id) == []

    def test_nothing_is_copied_from_an_asset_that_is_not_searchable(self, backend):
        store = backend.store
        waiting = store.add(make_asset(status=Status.GENERATING_EMBEDDINGS))
        store.put_chunks(waiting.id, make_chunks(waiting.id, ["delta"]))
        copy = searchable(store, [("x", axis(3))]).copied_to("https://mirror.example/none", size_bytes=1,
                                                              content_type="text/plain")
        assert store.add_copy(copy, waiting.id) is None
        assert store.get_by_url("https://mirror.example/none") is None and store.chunks(copy.id) == []

    def test_a_fetched_asset_whose_body_is_known_becomes_a_searchable_copy_in_place(self, backend):
        store, digest = backend.store, uuid.uuid4().hex * 2
        source = searchable(store, [("epsilon waves", axis(4)), ("zeta function", axis(5))], sha256=digest)
        fetching = store.add(make_asset(status=Status.FETCHING, url=f"https://slow.example/{digest[:8]}",
                                        fetched_bytes=0))
        assert store.move(fetching.id, Status.FETCHING, fetched_bytes=8 * 1024 * 1024)
        assert store.get(fetching.id).fetched_bytes == 8 * 1024 * 1024
        assert store.become_copy(fetching.id, source.id, sha256=digest, size_bytes=123)
        kept = store.get(fetching.id)
        assert kept.status is Status.SEARCHABLE and kept.sha256 == digest and kept.size_bytes == 123
        assert kept.chunk_count == 2 and [c.text for c in store.chunks(kept.id)] == ["epsilon waves", "zeta function"]
        assert not store.become_copy(fetching.id, source.id), "only a FETCHING asset becomes a copy"
        assert [c.text for c in store.chunks(kept.id)] == ["epsilon waves", "zeta function"]
        if backend.can_search:
            backend.settle()
            slow = SearchFilter(host="slow.example")
            assert {h.asset_id for h in store.search(axis(5), 10, slow)} == {fetching.id}

    def test_nothing_becomes_a_copy_of_an_asset_that_is_not_searchable(self, backend):
        store = backend.store
        waiting = store.add(make_asset(status=Status.GENERATING_EMBEDDINGS))
        store.put_chunks(waiting.id, make_chunks(waiting.id, ["eta"]))
        fetching = store.add(make_asset(status=Status.FETCHING))
        assert not store.become_copy(fetching.id, waiting.id)
        assert store.get(fetching.id).status is Status.FETCHING and store.chunks(fetching.id) == []


# -- assets stuck in a step (issue 5's sweeper) --------------------------------------------------

class TestStaleContract:
    LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)

    def old(self, store, status: Status, days: int, **fields):
        stamp = self.LONG_AGO + timedelta(days=days)
        asset = make_asset(status=status, created_at=stamp, **fields)
        return store.add(asset)

    def test_stale_finds_the_assets_in_the_given_statuses_not_updated_since_the_cutoff_oldest_first(self, backend):
        store = backend.store
        second = self.old(store, Status.GENERATING_EMBEDDINGS, 2, prediction_id="p-2")
        first = self.old(store, Status.PROCESSING, 1)
        self.old(store, Status.SEARCHABLE, 0)  # finished: not stuck
        self.old(store, Status.PROCESSING, 200)  # after the cutoff
        cutoff = self.LONG_AGO + timedelta(days=100)
        found = store.stale([Status.PROCESSING, Status.GENERATING_EMBEDDINGS], cutoff, 10)
        assert [a.id for a in found] == [first.id, second.id]
        assert found[1].prediction_id == "p-2" and found[1].updated_at == second.updated_at
        assert [a.id for a in store.stale([Status.PROCESSING, Status.GENERATING_EMBEDDINGS], cutoff, 1)] == [first.id]
        assert store.stale([Status.PROCESSED], cutoff, 10) == []

    def test_an_asset_that_moves_is_no_longer_stale(self, backend):
        store = backend.store
        asset = self.old(store, Status.PROCESSING, 3)
        cutoff = self.LONG_AGO + timedelta(days=100)
        assert asset.id in {a.id for a in store.stale([Status.PROCESSING], cutoff, 100)}
        assert store.move(asset.id, Status.PROCESSED, chunk_count=0)
        assert asset.id not in {a.id for a in store.stale([Status.PROCESSING, Status.PROCESSED], cutoff, 100)}
