"""The `$vectorSearch` pipeline and the vector index AtlasStore sends to Atlas, checked against the rules
MongoDB documents for Atlas Vector Search, without a cluster.

Sources (MongoDB manual): "Run Vector Search Queries" (atlas-vector-search/vector-search-stage) and
"How to Index Fields for Vector Search" (atlas-vector-search/vector-search-type). The validators below
encode those rules; each rule is also shown to reject a pipeline or index that breaks it, so a
validator that accepted everything would turn this file red.
"""

from __future__ import annotations

import copy
import math

import pytest

from allthethings.adapters.atlas_store import AtlasStore, vector_index_definition, vector_search_pipeline
from allthethings.domain.assets import ChunkHit, Status
from allthethings.domain.embedding import CATALOG
from allthethings.services.search import CHUNKS_PER_RESULT, MAX_CHUNKS, MAX_LIMIT
from tests.integration.store_contract import DIMENSIONS, axis, make_asset

INDEX = "chunk_vectors"

# -- the documented rules ------------------------------------------------------------------------

STAGE_FIELDS = {"index", "path", "queryVector", "numCandidates", "limit", "filter", "exact"}
MAX_CANDIDATES = 10_000
MAX_DIMENSIONS = 8192
SIMILARITIES = {"euclidean", "cosine", "dotProduct"}
FILTER_OPERATORS = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$not", "$exists"}
FILTER_COMBINATORS = {"$and", "$or", "$nor"}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _metas(node):
    """Every `{"$meta": ...}` value anywhere in `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$meta":
                yield value
            else:
                yield from _metas(value)
    elif isinstance(node, list):
        for item in node:
            yield from _metas(item)


def filter_fields(spec) -> set[str]:
    """The document fields a `$vectorSearch` filter reads (through $and / $or / $nor)."""
    fields: set[str] = set()
    for key, value in spec.items():
        if key in FILTER_COMBINATORS:
            for clause in value:
                fields |= filter_fields(clause)
        else:
            fields.add(key)
    return fields


def _filter_problems(spec) -> list[str]:
    if not isinstance(spec, dict) or not spec:
        return ["filter must be a non-empty document"]
    problems = []
    for key, value in spec.items():
        if key in FILTER_COMBINATORS:
            if not isinstance(value, list) or not value:
                problems.append(f"{key} takes a non-empty array of filters")
            else:
                for clause in value:
                    problems += _filter_problems(clause)
        elif key.startswith("$"):
            problems.append(f"{key} is not a filter combinator")
        elif isinstance(value, dict):
            problems += [f"{op} on {key} is not a supported filter operator"
                         for op in value if op not in FILTER_OPERATORS]
    return problems


def pipeline_problems(pipeline) -> list[str]:
    """What breaks the documented `$vectorSearch` syntax in `pipeline` (empty when none)."""
    if not isinstance(pipeline, list) or not pipeline:
        return ["a pipeline is a non-empty array of stages"]
    problems = []
    for i, stage in enumerate(pipeline):
        if not isinstance(stage, dict) or len(stage) != 1 or not next(iter(stage)).startswith("$"):
            problems.append(f"stage {i} is not a document with exactly one $operator")
        elif i > 0 and "$vectorSearch" in stage:
            problems.append(f"$vectorSearch is stage {i}: it must be the first stage")
    if problems:
        return problems
    spec = pipeline[0].get("$vectorSearch")
    if not isinstance(spec, dict):
        return ["$vectorSearch must be the first stage of the pipeline"]
    problems += [f"{name} is not a $vectorSearch field" for name in sorted(set(spec) - STAGE_FIELDS)]
    for name in ("index", "path"):
        if not isinstance(spec.get(name), str) or not spec[name]:
            problems.append(f"{name} must be a non-empty string")
    vector = spec.get("queryVector")
    if not isinstance(vector, list) or not vector or not all(_is_number(x) for x in vector):
        problems.append("queryVector must be a non-empty array of numbers")
    limit = spec.get("limit")
    if not _is_int(limit) or limit < 1:
        problems.append("limit must be a positive int")
    if "exact" in spec and not isinstance(spec["exact"], bool):
        problems.append("exact must be a boolean")
    if spec.get("exact") is True:
        if "numCandidates" in spec:
            problems.append("numCandidates must be omitted when exact is true")
    else:
        candidates = spec.get("numCandidates")
        if not _is_int(candidates):
            problems.append("numCandidates (an int) is required unless exact is true")
        elif candidates > MAX_CANDIDATES:
            problems.append(f"numCandidates must be at most {MAX_CANDIDATES}")
        elif _is_int(limit) and candidates < limit:
            problems.append("numCandidates must be at least limit")
    if "filter" in spec:
        problems += _filter_problems(spec["filter"])
    metas = list(_metas(pipeline[1:]))
    if "vectorSearchScore" not in metas:
        problems.append('the score is not exposed with {"$meta": "vectorSearchScore"}')
    problems += [f'{{"$meta": {m!r}}} is not the $vectorSearch score' for m in metas if m != "vectorSearchScore"]
    return problems


def index_problems(definition) -> list[str]:
    """What breaks the documented `vectorSearch` index syntax in `definition` (empty when none)."""
    if not isinstance(definition, dict) or set(definition) != {"fields"}:
        return ['a vectorSearch index definition is {"fields": [...]}']
    fields = definition["fields"]
    if not isinstance(fields, list) or not fields:
        return ["fields must be a non-empty array"]
    problems, paths = [], []
    for i, field in enumerate(fields):
        if not isinstance(field, dict):
            problems.append(f"fields[{i}] is not a document")
            continue
        kind, path = field.get("type"), field.get("path")
        if not isinstance(path, str) or not path:
            problems.append(f"fields[{i}].path must be a non-empty string")
        paths.append(path)
        if kind == "vector":
            extra = set(field) - {"type", "path", "numDimensions", "similarity", "quantization"}
            dims = field.get("numDimensions")
            if not _is_int(dims) or not 1 <= dims <= MAX_DIMENSIONS:
                problems.append(f"fields[{i}].numDimensions must be an int from 1 to {MAX_DIMENSIONS}")
            if field.get("similarity") not in SIMILARITIES:
                problems.append(f"fields[{i}].similarity must be one of {sorted(SIMILARITIES)}")
        elif kind == "filter":
            extra = set(field) - {"type", "path"}
        else:
            problems.append(f"fields[{i}].type must be vector or filter, not {kind!r}")
            extra = set()
        problems += [f"fields[{i}].{name} is not a {kind} field option" for name in sorted(extra)]
    if not any(isinstance(f, dict) and f.get("type") == "vector" for f in fields):
        problems.append("at least one field must be of type vector")
    if len(paths) != len(set(map(str, paths))):
        problems.append("a path is indexed twice")
    return problems


def mismatches(pipeline, definition) -> list[str]:
    """Where the pipeline asks for something the index does not declare."""
    spec = pipeline[0]["$vectorSearch"]
    vectors = {f["path"]: f for f in definition["fields"] if f["type"] == "vector"}
    filters = {f["path"] for f in definition["fields"] if f["type"] == "filter"}
    problems = []
    if spec["path"] not in vectors:
        problems.append(f"path {spec['path']} is not a vector field of the index")
    elif len(spec["queryVector"]) != vectors[spec["path"]]["numDimensions"]:
        problems.append("queryVector does not have the index's numDimensions")
    problems += [f"filter on {name} which the index does not declare as a filter"
                 for name in sorted(filter_fields(spec.get("filter", {})) - filters)]
    return problems


# -- our pipeline and index follow them ----------------------------------------------------------

# The limits the search service really asks for: its first k (limit x 8, up to MAX_LIMIT) and its widest.
LIMITS = sorted({1, 10, 50, 1000, CHUNKS_PER_RESULT, MAX_LIMIT * CHUNKS_PER_RESULT, MAX_CHUNKS})


@pytest.mark.parametrize("limit", LIMITS)
def test_our_pipeline_follows_the_documented_vector_search_syntax(limit):
    pipeline = vector_search_pipeline(INDEX, axis(0), limit)
    assert pipeline_problems(pipeline) == []
    assert pipeline[0]["$vectorSearch"]["limit"] == limit


@pytest.mark.parametrize("dimensions", sorted({DIMENSIONS, *(spec.dimensions for spec in CATALOG.values())}))
def test_our_index_definition_follows_the_documented_vector_search_syntax(dimensions):
    assert index_problems(vector_index_definition(dimensions)) == []


@pytest.mark.parametrize("limit", LIMITS)
def test_the_pipeline_asks_only_for_what_the_index_declares(limit):
    pipeline = vector_search_pipeline(INDEX, axis(1), limit)
    assert mismatches(pipeline, vector_index_definition(DIMENSIONS)) == []


def test_the_pipeline_projects_every_field_atlas_store_search_reads():
    project = vector_search_pipeline(INDEX, axis(0), 5)[1]["$project"]
    assert {"asset_id", "index", "text", "start_s", "end_s", "score"} <= set(project)
    assert project["score"] == {"$meta": "vectorSearchScore"}
    assert "embedding" not in project


# -- the validators can fail ---------------------------------------------------------------------

def _broken_pipelines():
    def vs(p):
        return p[0]["$vectorSearch"]

    def second(p):
        p.insert(0, {"$match": {}})

    def pop(name):
        return lambda p: vs(p).pop(name)

    def put(name, value):
        return lambda p: vs(p).__setitem__(name, value)

    def exact_with_candidates(p):
        vs(p)["exact"] = True

    def search_score(p):
        p[1]["$project"]["score"] = {"$meta": "searchScore"}

    def no_score(p):
        del p[1]["$project"]["score"]

    return {
        "vectorSearch is not the first stage": second,
        "index missing": pop("index"),
        "path missing": pop("path"),
        "queryVector missing": pop("queryVector"),
        "limit missing": pop("limit"),
        "numCandidates missing without exact": pop("numCandidates"),
        "index not a string": put("index", 7),
        "queryVector of strings": put("queryVector", ["0.1", "0.2"]),
        "queryVector empty": put("queryVector", []),
        "limit a float": put("limit", 10.0),
        "limit zero": put("limit", 0),
        "numCandidates below limit": put("numCandidates", 5),
        "numCandidates above 10000": put("numCandidates", 10_001),
        "numCandidates with exact true": exact_with_candidates,
        "exact not a boolean": put("exact", "yes"),
        "unknown field": put("k", 10),
        "filter not a document": put("filter", "status"),
        "filter with an unsupported operator": put("filter", {"status": {"$regex": "S"}}),
        "score from searchScore": search_score,
        "score not exposed": no_score,
    }


BROKEN_PIPELINES = _broken_pipelines()


@pytest.mark.parametrize("breakage", list(BROKEN_PIPELINES))
def test_the_pipeline_validator_rejects_a_pipeline_that_breaks_a_documented_rule(breakage):
    pipeline = copy.deepcopy(vector_search_pipeline(INDEX, axis(0), 10))
    BROKEN_PIPELINES[breakage](pipeline)
    assert pipeline_problems(pipeline) != []


def test_the_pipeline_validator_accepts_exact_search_without_num_candidates():
    pipeline = copy.deepcopy(vector_search_pipeline(INDEX, axis(0), 10))
    del pipeline[0]["$vectorSearch"]["numCandidates"]
    pipeline[0]["$vectorSearch"]["exact"] = True
    assert pipeline_problems(pipeline) == []


BROKEN_INDEXES = {
    "no fields": {"fields": []},
    "not wrapped in fields": {"type": "vector", "path": "embedding", "numDimensions": 8, "similarity": "cosine"},
    "zero dimensions": {"fields": [{"type": "vector", "path": "e", "numDimensions": 0, "similarity": "cosine"}]},
    "too many dimensions": {"fields": [{"type": "vector", "path": "e", "numDimensions": 8193,
                                        "similarity": "cosine"}]},
    "dimensions as a string": {"fields": [{"type": "vector", "path": "e", "numDimensions": "8",
                                           "similarity": "cosine"}]},
    "unknown similarity": {"fields": [{"type": "vector", "path": "e", "numDimensions": 8, "similarity": "l2"}]},
    "legacy knnVector type": {"fields": [{"type": "knnVector", "path": "e", "dimensions": 8,
                                          "similarity": "cosine"}]},
    "only filters": {"fields": [{"type": "filter", "path": "asset_id"}]},
    "filter without a path": {"fields": [{"type": "vector", "path": "e", "numDimensions": 8,
                                          "similarity": "cosine"}, {"type": "filter"}]},
    "filter with vector options": {"fields": [{"type": "vector", "path": "e", "numDimensions": 8,
                                               "similarity": "cosine"},
                                              {"type": "filter", "path": "a", "similarity": "cosine"}]},
    "one path twice": {"fields": [{"type": "vector", "path": "e", "numDimensions": 8, "similarity": "cosine"},
                                  {"type": "filter", "path": "e"}]},
}


@pytest.mark.parametrize("breakage", list(BROKEN_INDEXES))
def test_the_index_validator_rejects_a_definition_that_breaks_a_documented_rule(breakage):
    assert index_problems(BROKEN_INDEXES[breakage]) != []


def test_a_filter_on_a_field_the_index_does_not_declare_is_caught():
    pipeline = copy.deepcopy(vector_search_pipeline(INDEX, axis(0), 10))
    pipeline[0]["$vectorSearch"]["filter"] = {"$and": [{"asset_id": {"$in": ["a"]}}, {"status": "SEARCHABLE"}]}
    assert pipeline_problems(pipeline) == []
    assert mismatches(pipeline, vector_index_definition(DIMENSIONS)) == [
        "filter on status which the index does not declare as a filter"]


def test_a_query_vector_of_the_wrong_size_is_caught():
    pipeline = vector_search_pipeline(INDEX, [1.0] * (DIMENSIONS + 1), 10)
    assert mismatches(pipeline, vector_index_definition(DIMENSIONS)) != []


# -- AtlasStore.search sends exactly that pipeline -----------------------------------------------

@pytest.fixture
def mock_store():
    import mongomock

    return AtlasStore(lambda: mongomock.MongoClient(tz_aware=True), "pipelines_db", INDEX)


def test_atlas_search_sends_exactly_our_pipeline_and_drops_hits_of_unsearchable_assets(mock_store, monkeypatch):
    searchable = mock_store.add(make_asset(status=Status.SEARCHABLE))
    waiting = mock_store.add(make_asset(status=Status.GENERATING_EMBEDDINGS))
    failed = mock_store.add(make_asset(status=Status.EMBEDDINGS_ERROR))
    hits = [
        {"asset_id": waiting.id, "index": 0, "text": "waiting", "start_s": None, "end_s": None, "score": 0.99},
        {"asset_id": searchable.id, "index": 2, "text": "best", "start_s": 1.0, "end_s": 2.5, "score": 0.9},
        {"asset_id": "0" * 32, "index": 0, "text": "deleted asset", "score": 0.85},
        {"asset_id": failed.id, "index": 0, "text": "failed", "score": 0.8},
        {"asset_id": searchable.id, "index": 0, "text": "next", "score": 0.7},
    ]
    calls = []

    def fake_aggregate(pipeline, *args, **kwargs):
        calls.append((pipeline, args, kwargs))
        return iter(copy.deepcopy(hits))

    monkeypatch.setattr(mock_store.db.chunks, "aggregate", fake_aggregate)
    vector = [1, 0, 0, 0, 0, 0, 0, 0]

    found = mock_store.search(vector, 5)

    assert calls == [(vector_search_pipeline(INDEX, vector, 5), (), {})]
    # Atlas scores a cosine hit (1 + cosine) / 2: the similarity is the cosine, as on every store.
    assert found == [
        ChunkHit(asset_id=searchable.id, index=2, text="best", score=0.9, start_s=1.0, end_s=2.5,
                 similarity=pytest.approx(0.8)),
        ChunkHit(asset_id=searchable.id, index=0, text="next", score=0.7, similarity=pytest.approx(0.4)),
    ]
    assert all(type(h.score) is float for h in found)


def test_atlas_search_with_no_hits_returns_an_empty_list(mock_store, monkeypatch):
    mock_store.add(make_asset(status=Status.SEARCHABLE))
    monkeypatch.setattr(mock_store.db.chunks, "aggregate", lambda pipeline, *a, **k: iter([]))
    assert mock_store.search(axis(0), 3) == []


# -- filters, keyword and hybrid (issue 4) --------------------------------------------------------

from datetime import UTC, datetime  # noqa: E402

from allthethings.adapters.atlas_store import (  # noqa: E402
    FILTER_PATHS,
    hybrid_search_pipeline,
    keyword_search_pipeline,
    search_index_definition,
)
from allthethings.domain.assets import Kind  # noqa: E402
from allthethings.domain.search import SearchFilter  # noqa: E402

SOURCE = "src_" + "5" * 32
FILTERS = [
    SearchFilter(kinds=(Kind.PDF,)),
    SearchFilter(kinds=(Kind.AUDIO, Kind.VIDEO), host="example.com"),
    SearchFilter(after=datetime(2026, 1, 1, tzinfo=UTC), before=datetime(2026, 2, 1, tzinfo=UTC)),
    SearchFilter(kinds=(Kind.HTML,), host="en.wikipedia.org", after=datetime(2025, 1, 1, tzinfo=UTC)),
    SearchFilter(source=SOURCE),
    SearchFilter(published_after=datetime(2026, 3, 1, tzinfo=UTC)),
    SearchFilter(source=SOURCE, published_after=datetime(2026, 3, 1, tzinfo=UTC),
                 published_before=datetime(2026, 4, 1, tzinfo=UTC), after=datetime(2026, 1, 1, tzinfo=UTC)),
]


@pytest.mark.parametrize("search_filter", FILTERS)
@pytest.mark.parametrize("exact", [False, True])
def test_filtered_vector_pipelines_follow_the_syntax_and_ask_only_for_declared_filter_paths(search_filter, exact):
    pipeline = vector_search_pipeline("chunk_vectors", [0.1] * 768, 80, search_filter, exact)
    assert pipeline_problems(pipeline) == []
    assert mismatches(pipeline, vector_index_definition(768)) == []
    spec = pipeline[0]["$vectorSearch"]
    assert "filter" in spec, "the filter is applied inside $vectorSearch, before ranking"
    assert ("numCandidates" in spec) is not exact


def test_the_filter_uses_only_documented_vector_search_operators():
    spec = vector_search_pipeline("i", [0.1] * 8, 5, FILTERS[3])[0]["$vectorSearch"]["filter"]
    assert spec == {"$and": [{"kind": {"$in": ["html"]}}, {"host": {"$eq": "en.wikipedia.org"}},
                             {"created_at": {"$gte": datetime(2025, 1, 1, tzinfo=UTC)}}]}


def test_the_source_and_publication_filters_are_clauses_on_the_chunks_own_fields():
    from allthethings.adapters.atlas_store import mql_filter, search_filter_clauses

    march, april, january = (datetime(2026, m, 1, tzinfo=UTC) for m in (3, 4, 1))
    assert mql_filter(SearchFilter(source=SOURCE)) == {"source_id": {"$eq": SOURCE}}
    assert mql_filter(FILTERS[6]) == {"$and": [
        {"created_at": {"$gte": january}}, {"source_id": {"$eq": SOURCE}},
        {"published_at": {"$gte": march}}, {"published_at": {"$lt": april}}]}
    assert search_filter_clauses(FILTERS[6]) == [
        {"range": {"path": "created_at", "gte": january}},
        {"equals": {"path": "source_id", "value": SOURCE}},
        {"range": {"path": "published_at", "gte": march, "lt": april}}]
    assert search_filter_clauses(SearchFilter(published_before=april)) == [
        {"range": {"path": "published_at", "lt": april}}]
    hybrid = hybrid_search_pipeline("v", "t", [0.1] * 8, "q", 5, SearchFilter(source=SOURCE))[0]["$rankFusion"]
    pipelines = hybrid["input"]["pipelines"]
    assert pipelines["vector"][0]["$vectorSearch"]["filter"] == {"source_id": {"$eq": SOURCE}}
    assert pipelines["text"][0]["$search"]["compound"]["filter"] == [
        {"equals": {"path": "source_id", "value": SOURCE}}]


def test_an_undated_chunk_is_out_of_every_publication_bound_as_mql_compares_it(mock_store):
    """The filters rely on a comparison with a date matching only dates: a chunk whose
    `published_at` is null (an asset of no source) or missing passes neither bound."""
    from allthethings.adapters.atlas_store import mql_filter

    chunks = mock_store.db.chunks
    chunks.insert_many([{"_id": "dated", "published_at": datetime(2026, 3, 15, tzinfo=UTC)},
                        {"_id": "null", "published_at": None}, {"_id": "missing"}])
    for bound in (SearchFilter(published_after=datetime(2000, 1, 1, tzinfo=UTC)),
                  SearchFilter(published_before=datetime(2100, 1, 1, tzinfo=UTC))):
        assert [d["_id"] for d in chunks.find(mql_filter(bound))] == ["dated"]


def test_both_search_indexes_declare_every_filter_path():
    vector_filters = {f["path"] for f in vector_index_definition(768)["fields"] if f["type"] == "filter"}
    text_fields = set(search_index_definition()["mappings"]["fields"])
    assert set(FILTER_PATHS) <= vector_filters
    assert set(FILTER_PATHS) <= text_fields and "text" in text_fields
    assert {"source_id", "published_at"} <= set(FILTER_PATHS)
    fields = search_index_definition()["mappings"]["fields"]
    assert (fields["source_id"], fields["published_at"]) == ({"type": "token"}, {"type": "date"})
    assert search_index_definition()["mappings"]["dynamic"] is False


@pytest.mark.parametrize("search_filter", [None, *FILTERS])
def test_the_keyword_pipeline_is_a_documented_search_stage_with_filters_that_do_not_score(search_filter):
    pipeline = keyword_search_pipeline("chunk_text", "lighthouse keepers", 40, search_filter)
    search, limit, project = pipeline
    assert list(search) == ["$search"] and search["$search"]["index"] == "chunk_text"
    compound = search["$search"]["compound"]
    assert compound["must"] == [{"text": {"query": "lighthouse keepers", "path": "text"}}]
    assert set(compound) <= {"must", "filter"}
    fields = search_index_definition()["mappings"]["fields"]
    for clause in compound.get("filter", []):
        ((operator, spec),) = clause.items()
        assert operator in ("in", "equals", "range") and spec["path"] in fields
    assert limit == {"$limit": 40}
    assert project["$project"]["score"] == {"$meta": "searchScore"}


def test_the_hybrid_pipeline_is_rank_fusion_over_a_vector_and_a_text_pipeline():
    pipeline = hybrid_search_pipeline("chunk_vectors", "chunk_text", [0.1] * 768, "lighthouse", 30, FILTERS[1])
    fusion = pipeline[0]["$rankFusion"]
    pipelines = fusion["input"]["pipelines"]
    assert set(pipelines) == {"vector", "text"}
    assert pipeline_problems(pipelines["vector"] + [{"$project": {"score": {"$meta": "vectorSearchScore"}}}]) == []
    assert next(iter(pipelines["text"][0])) == "$search" and pipelines["text"][1] == {"$limit": 30}
    assert "filter" in pipelines["vector"][0]["$vectorSearch"] and "filter" in pipelines["text"][0]["$search"][
        "compound"]
    assert fusion["combination"]["weights"] == {"vector": 1, "text": 1}
    assert pipeline[1] == {"$limit": 30} and pipeline[2]["$project"]["score"] == {"$meta": "score"}
    # Which pipelines found each chunk, and the vector one's score, for the similarity floor.
    assert fusion["scoreDetails"] is True and pipeline[2]["$project"]["details"] == {"$meta": "scoreDetails"}


@pytest.mark.parametrize("details, expected", [
    # As MongoDB documents it: one entry per input pipeline, by name, with its rank and score.
    ({"value": 0.032, "details": [{"inputPipelineName": "vector", "rank": 2, "weight": 1, "value": 0.9},
                                  {"inputPipelineName": "text", "rank": 1, "weight": 1, "value": 3.2}]}, (0.8, True)),
    ({"value": 0.016, "details": [{"inputPipelineName": "vector", "rank": 3, "weight": 1, "value": 0.6},
                                  {"inputPipelineName": "text", "rank": 0, "weight": 1}]}, (0.2, False)),
    ({"value": 0.016, "details": [{"inputPipelineName": "text", "rank": 1, "weight": 1, "value": 3.2}]}, (None, True)),
    # The earlier shape, a document keyed by pipeline name (SERVER-100107).
    ({"value": 0.03, "details": {"text": {"rank": 2, "value": 0.7}, "vector": {"rank": 9, "value": 0.75}}},
     (0.5, True)),
    (None, (None, False)),
])
def test_rank_fusion_score_details_say_the_similarity_and_whether_words_matched(details, expected):
    from allthethings.adapters.atlas_store import fused_matches

    similarity, keyword = fused_matches(details)
    assert (similarity, keyword) == (pytest.approx(expected[0]) if expected[0] is not None else None, expected[1])


def test_atlas_hybrid_hits_carry_the_similarity_of_the_vector_pipeline(mock_store, monkeypatch):
    asset = make_asset(status=Status.SEARCHABLE)
    mock_store.add(asset)
    mock_store.rank_fusion = "server"
    rows = [{"asset_id": asset.id, "index": 0, "text": "t", "score": 0.016,
             "details": {"value": 0.016, "details": [{"inputPipelineName": "vector", "rank": 1, "value": 0.55}]}}]
    monkeypatch.setattr(mock_store.db.chunks, "aggregate", lambda pipeline, *a, **k: iter(copy.deepcopy(rows)))
    [hit] = mock_store.hybrid_search([1.0] + [0.0] * 7, "t", 5)
    assert hit.similarity == pytest.approx(0.1) and hit.keyword is False and hit.score == 0.016


class _SearchIndexes:
    """The search-index half of a pymongo collection, as Atlas answers it (queryable at once)."""

    def __init__(self):
        self.indexes: dict[str, dict] = {}
        self.calls: list[str] = []

    def create_index(self, keys, **options):
        return options["name"]

    def list_search_indexes(self):
        return [{"name": n, "latestDefinition": d, "queryable": True} for n, d in self.indexes.items()]

    def create_search_indexes(self, models):
        for model in models:
            self.indexes[model.document["name"]] = model.document["definition"]
            self.calls.append(f"create {model.document['name']} {model.document['type']}")

    def update_search_index(self, name, definition):
        self.indexes[name] = definition
        self.calls.append(f"update {name}")


def test_ensuring_indexes_twice_changes_nothing_the_second_time():
    from allthethings.adapters.atlas_store import AtlasStore

    chunks, assets = _SearchIndexes(), _SearchIndexes()
    store = AtlasStore(lambda: {"db": type("Db", (), {"chunks": chunks, "assets": assets})()}, "db",
                       "chunk_vectors", text_index="chunk_text")
    first = store.ensure_indexes(768, wait_s=5, poll_s=0.01)
    assert "chunk_vectors created" in first and "chunk_text created" in first
    assert chunks.calls == ["create chunk_vectors vectorSearch", "create chunk_text search"]
    second = store.ensure_indexes(768, wait_s=5, poll_s=0.01)
    assert "chunk_vectors unchanged" in second and "chunk_text unchanged" in second
    assert len(chunks.calls) == 2
    third = store.ensure_indexes(384, wait_s=0)
    assert "chunk_vectors updated" in third and chunks.calls[-1] == "update chunk_vectors"


# -- sources (issue 17): the chunks carry their asset's source ------------------------------------

def test_the_store_indexes_assets_by_source_for_its_listing_and_counts(mock_store):
    assert "by_source" in mock_store.ensure_btree_indexes()
    keys = mock_store.db.assets.index_information()["by_source"]["key"]
    assert keys[0] == ("source_id", 1) and [k for k, _ in keys[1:]] == ["created_at", "_id"]


def _chunk_labels(store, asset_id):
    return sorted((d["index"], d.get("source_id"), d.get("published_at"))
                  for d in store.db.chunks.find({"asset_id": asset_id}))


def _embedding_asset(store, chunks=2):
    from tests.integration.store_contract import make_chunks, replay_bulk_writes

    store.db.chunks.bulk_write = replay_bulk_writes(store.db.chunks)
    asset = store.add(make_asset(status=Status.GENERATING_EMBEDDINGS))
    store.put_chunks(asset.id, make_chunks(asset.id, [f"chunk {i}" for i in range(chunks)]))
    return asset


def test_link_source_labels_every_chunk_of_the_asset_with_its_source_and_date(mock_store):
    asset = _embedding_asset(mock_store)
    mock_store._attach_vectors(asset, [axis(0), axis(1)])
    published = datetime(2026, 3, 1, tzinfo=UTC)
    assert mock_store.link_source(asset.id, SOURCE, published_at=published)
    assert _chunk_labels(mock_store, asset.id) == [(0, SOURCE, published), (1, SOURCE, published)]


def test_a_link_that_races_the_vectors_write_is_not_undone_by_it(mock_store):
    """make_searchable reads the asset, then writes its vectors with that read's metadata: a
    link_source in between relabels the chunks before the vectors' write sets them back, and
    there is no transaction to order the two (Atlas). The write catches up with the link."""
    asset = _embedding_asset(mock_store)
    read_before_the_link = mock_store.get(asset.id)
    published = datetime(2026, 3, 1, tzinfo=UTC)
    assert mock_store.link_source(asset.id, SOURCE, published_at=published)
    mock_store._attach_vectors(read_before_the_link, [axis(0), axis(1)])
    assert _chunk_labels(mock_store, asset.id) == [(0, SOURCE, published), (1, SOURCE, published)]


def test_source_counts_is_one_group_by_status(mock_store, monkeypatch):
    for status in (Status.SEARCHABLE, Status.SEARCHABLE, Status.FETCHING):
        mock_store.add(make_asset(status=status, source_id=SOURCE))
    calls = []
    aggregate = mock_store.db.assets.aggregate
    monkeypatch.setattr(mock_store.db.assets, "aggregate", lambda pipeline: calls.append(pipeline) or aggregate(
        pipeline))
    assert mock_store.source_counts(SOURCE) == {Status.SEARCHABLE: 2, Status.FETCHING: 1}
    assert calls == [[{"$match": {"source_id": SOURCE}}, {"$group": {"_id": "$status", "count": {"$sum": 1}}}]]
