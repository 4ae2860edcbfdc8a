"""The embedded store's vector search reads a copy of `chunk_vectors` held in memory: it must
answer what the table answers (sqlite-vec's own nearest-neighbour query is the oracle), stay
current through every write that changes the table (attach, copy, re-chunk, delete, link to a
source), follow
writes made by another store on the same file (another process), and never keep a row whose
write was rolled back."""

from __future__ import annotations

import dataclasses
import random
from datetime import timedelta

import numpy as np
import pytest
from sqlite_vec import serialize_float32

from allthethings.adapters.sqlite_store import SqliteStore, _filter_sql
from allthethings.adapters.vector_index import NO_DATE, IndexedRow, VectorIndex
from allthethings.domain.assets import Kind, Status
from allthethings.domain.search import SearchFilter
from tests.integration.store_contract import at, make_asset, make_chunks, new_source

DIMENSIONS = 16


def random_unit(rng) -> list[float]:
    v = rng.normal(size=DIMENSIONS)
    return (v / np.linalg.norm(v)).tolist()


def searchable(store: SqliteStore, rng, *, chunks: int = 3, kind: Kind = Kind.TEXT, host: str = "a.example",
               minute: int = 0, source_id: str | None = None, published_minute: int | None = None):
    published_at = at(published_minute * 60) if published_minute is not None else None
    asset = dataclasses.replace(make_asset(status=Status.PROCESSED, created_at=at(minute * 60),
                                           url=f"https://{host}/{rng.random()}", chunk_count=chunks,
                                           source_id=source_id, published_at=published_at), kind=kind)
    asset = store.add(asset)
    store.put_chunks(asset.id, make_chunks(asset.id, [f"chunk {i} of {asset.id}" for i in range(chunks)]))
    assert store.make_searchable(asset.id, [random_unit(rng) for _ in range(chunks)])
    return asset


def table_answer(store: SqliteStore, vector, k: int, search_filter: SearchFilter | None = None):
    """sqlite-vec's own k-nearest-neighbour query on the table: (asset id, chunk index) best first."""
    where, args = _filter_sql(search_filter, "v")
    rows = store._conn().execute(
        f"SELECT c.asset_id, c.idx, v.distance FROM chunk_vectors v JOIN chunks c ON c.rowid = v.rowid "
        f"WHERE v.embedding MATCH ? AND k = ? {where} ORDER BY v.distance",
        (serialize_float32(list(vector)), k, *args)).fetchall()
    return [(r[0], r[1]) for r in rows], [1.0 - r[2] for r in rows]


def index_answer(store: SqliteStore, vector, k: int, search_filter: SearchFilter | None = None):
    hits = store.search(vector, k, search_filter)
    return [(h.asset_id, h.index) for h in hits], [h.similarity for h in hits]


@pytest.fixture
def store(tmp_path):
    made = SqliteStore(str(tmp_path / "index.db"), DIMENSIONS, "index-test-model")
    yield made
    made.close()


SOURCES = [new_source(), new_source()]
FILTERS = [None, SearchFilter(kinds=(Kind.AUDIO,)), SearchFilter(host="b.example"),
           SearchFilter(kinds=(Kind.TEXT, Kind.VIDEO), after=at(20 * 60)),
           SearchFilter(before=at(10 * 60)), SearchFilter(host="nowhere.example"),
           SearchFilter(source=SOURCES[0]), SearchFilter(source=new_source()),
           SearchFilter(published_after=at(15 * 60)), SearchFilter(published_before=at(15 * 60)),
           SearchFilter(source=SOURCES[1], published_after=at(5 * 60), published_before=at(30 * 60))]


def test_the_copy_answers_what_the_table_answers_through_every_kind_of_write(store):
    rng = np.random.default_rng(3)
    random.seed(3)
    kinds, hosts = [Kind.TEXT, Kind.AUDIO, Kind.VIDEO], ["a.example", "b.example", "c.example"]
    sources = [SOURCES[0], SOURCES[1], None, None]  # half the assets of no source, and undated
    assets = [searchable(store, rng, chunks=1 + n % 4, kind=kinds[n % 3], host=hosts[n % 3], minute=n,
                         source_id=sources[n % 4], published_minute=n if sources[n % 4] else None)
              for n in range(40)]
    queries = [random_unit(rng) for _ in range(5)]

    def agree():
        for vector in queries:
            for search_filter in FILTERS:
                for k in (1, 7, 200):
                    expected, expected_sims = table_answer(store, vector, k, search_filter)
                    got, sims = index_answer(store, vector, k, search_filter)
                    assert got == expected, (search_filter, k)
                    assert sims == pytest.approx(expected_sims, abs=1e-5)

    agree()
    # Deleting, re-chunking (put_chunks drops the old vectors), copying, linking to a source: each
    # is a write of the table.
    for asset in assets[:10]:
        store.delete(asset.id)
    for n, asset in enumerate(assets[30:40:4]):  # of no source (n % 4 == 2): linked, dated or not
        assert store.link_source(asset.id, SOURCES[n % 2], published_at=at(n * 7 * 60) if n % 3 else None)
    for asset in assets[10:15]:
        store.put_chunks(asset.id, make_chunks(asset.id, ["a new chunk"]))
    twin = assets[20]
    copy = store.add_copy(twin.copied_to("https://c.example/the-copy", size_bytes=1, content_type="text/plain"),
                          twin.id)
    assert copy is not None and copy.status is Status.SEARCHABLE
    searchable(store, rng, chunks=5, kind=Kind.AUDIO, host="b.example", minute=30)
    agree()
    assert len(store._index) == store._conn().execute("SELECT count(*) FROM chunk_vectors").fetchone()[0]


def test_writes_by_another_store_on_the_same_file_are_seen_and_deletes_leave(tmp_path):
    rng = np.random.default_rng(5)
    mine = SqliteStore(str(tmp_path / "shared.db"), DIMENSIONS, "index-test-model")
    other = SqliteStore(str(tmp_path / "shared.db"), DIMENSIONS, "index-test-model")  # another process
    first = searchable(mine, rng)
    query = random_unit(rng)
    assert {h.asset_id for h in mine.search(query, 10)} == {first.id}

    second = searchable(other, rng)
    assert {h.asset_id for h in mine.search(query, 10)} == {first.id, second.id}
    other.delete(first.id)
    assert {h.asset_id for h in mine.search(query, 10)} == {second.id}
    mine.close()
    other.close()


def test_a_write_rolled_back_leaves_nothing_in_the_copy(store):
    rng = np.random.default_rng(7)
    kept = searchable(store, rng)
    query = random_unit(rng)
    assert len(store.search(query, 10)) == 3
    asset = store.add(make_asset(status=Status.PROCESSED, chunk_count=2))
    store.put_chunks(asset.id, make_chunks(asset.id, ["one", "two"]))
    with pytest.raises(RuntimeError), store._write():
        store._attach_vectors(asset, [random_unit(rng), random_unit(rng)])
        raise RuntimeError("the status move failed after the vectors were written")
    assert {h.asset_id for h in store.search(query, 10)} == {kept.id}
    assert len(store._index) == 3


def test_a_copy_read_before_a_write_that_races_it_is_read_again(store):
    """A write applied to an index whose version is not the one before it marks the copy for a
    full read instead of guessing: the next search finds the version differs and reads the table."""
    rng = np.random.default_rng(11)
    searchable(store, rng)
    query = random_unit(rng)
    store.search(query, 10)
    store._index.apply([], [], version=store._index.version + 5)  # a change out of order
    assert store._index.version == -1
    added = searchable(store, rng)
    assert added.id in {h.asset_id for h in store.search(query, 10)}
    assert store._index.version >= 0


def test_the_index_ranks_by_cosine_and_breaks_ties_by_rowid():
    index = VectorIndex(2)
    index.load([IndexedRow(1, [1.0, 0.0], "text", "h", 0.0), IndexedRow(2, [0.0, 3.0], "text", "h", 0.0, "s", 9.0),
                IndexedRow(3, [2.0, 0.0], "audio", "h", 0.0, "s", NO_DATE),
                IndexedRow(4, [1.0, 1.0], "text", "g", 5.0, "t", 2.0)], version=1)
    assert [r for r, _ in index.search([1.0, 0.0], 4)] == [1, 3, 4, 2]  # 1 and 3 tie (unnormalised 3)
    assert index.search([1.0, 0.0], 1)[0][1] == pytest.approx(1.0)
    assert [r for r, _ in index.search([1.0, 0.0], 4, SearchFilter(kinds=(Kind.AUDIO,)))] == [3]
    assert [r for r, _ in index.search([1.0, 0.0], 4, SearchFilter(host="g"))] == [4]
    after = SearchFilter(after=at(0) - timedelta(seconds=at(0).timestamp() - 1))
    assert [r for r, _ in index.search([1.0, 0.0], 4, after)] == [4]
    assert [r for r, _ in index.search([1.0, 0.0], 4, SearchFilter(source="s"))] == [3, 2]
    assert index.search([1.0, 0.0], 4, SearchFilter(source="u")) == []
    published_before = SearchFilter(published_before=at(0) - timedelta(seconds=at(0).timestamp() - 5))
    assert [r for r, _ in index.search([1.0, 0.0], 4, published_before)] == [4], "an undated row is never before"
    published_after = SearchFilter(published_after=at(0) - timedelta(seconds=at(0).timestamp() - 2))
    assert [r for r, _ in index.search([1.0, 0.0], 4, published_after)] == [4, 2]
    index.apply([], [1], version=2)  # the last row takes the removed row's place
    assert sorted(r for r, _ in index.search([0.0, 1.0], 10)) == [2, 3, 4]
    assert index.version == 2


def test_a_finished_thread_leaves_its_connection_to_the_next(store):
    """The local gateway runs each request in a thread of its own: the store's connection outlives
    it, so a request does not pay for opening one."""
    import threading

    store.search([1.0] + [0.0] * (DIMENSIONS - 1), 1)
    opened = []
    open_connection = store._connections._open
    store._connections._open = lambda: opened.append(1) or open_connection()

    def request():
        store.search([1.0] + [0.0] * (DIMENSIONS - 1), 1)

    for _ in range(3):
        thread = threading.Thread(target=request)
        thread.start()
        thread.join()
    assert len(opened) == 1, "each thread opened a connection of its own"
    assert store._connections.idle, "the last thread's connection is idle, ready for the next"
