"""Search says "nothing matched" (issue 13 item 11): a query that no chunk matches (none holds its
words, none reaches the model's similarity floor) finds nothing, and the page says so with a
hint; a query that something matches is ranked as before."""

import dataclasses

import pytest

from allthethings.config import Settings, load_settings
from allthethings.domain.assets import ChunkHit
from allthethings.domain.embedding import CATALOG
from allthethings.domain.search import Level, reciprocal_rank_fusion, relevance
from allthethings.entrypoints import html, shapes
from allthethings.services.process_asset import process_asset
from allthethings.services.search import parse_request, search, similarity_scale
from allthethings.services.submit_asset import submit_asset
from tests.fakes import FakeEmbedder, fake_deps

LIGHTHOUSE = "Lighthouse keepers trimmed wicks and polished lenses through the night on the rock towers."
SOURDOUGH = "Feed the sourdough starter daily with flour and water; discard half before feeding."


class AxisEmbedder(FakeEmbedder):
    """Vectors chosen per text, so the similarities a test needs are exact: a lighthouse text
    points along x, a sourdough text along y, anything else at cosine 0.2 from both."""

    model = "all-MiniLM-L6-v2"  # a calibrated model: its floor applies

    def embed(self, texts):
        def vector(text):
            v = [0.0] * self.dimensions
            if "lighthouse" in text.lower():
                v[0] = 1.0
            elif "sourdough" in text.lower():
                v[1] = 1.0
            else:
                v[0], v[1], v[2] = 0.2, 0.2, (1 - 0.08) ** 0.5
            return v
        return [vector(t) for t in texts]


def indexed(embedder=None, **settings):
    deps = fake_deps(embedder=embedder or AxisEmbedder(),
                     settings=Settings(chunk_tokens=40, chunk_overlap=4, **settings))
    for url, text in (("http://x.test/l.txt", LIGHTHOUSE), ("http://x.test/s.txt", SOURDOUGH)):
        deps.fetcher.pages[url] = ("text/plain", text.encode())
        asset, _ = submit_asset(url, deps)
        process_asset(asset.id, deps)
    return deps


def found(deps, query, **params):
    return [r.asset.url for r in search(parse_request({"q": query, **params}), deps).results]


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
def test_a_query_that_matches_nothing_finds_nothing_instead_of_the_nearest_noise(mode):
    deps = indexed()
    page = search(parse_request({"q": "zzqxj flurble", "mode": mode}), deps)
    assert shapes.search_page(page) == {"results": [], "next_cursor": None}
    assert found(deps, "where do lighthouse keepers live", mode=mode)[0] == "http://x.test/l.txt"


def test_without_a_floor_the_nearest_noise_is_what_search_used_to_answer():
    deps = indexed(search_min_similarity=-1.0)  # -1: no floor
    assert sorted(found(deps, "zzqxj flurble", mode="vector")) == ["http://x.test/l.txt", "http://x.test/s.txt"]


def test_a_keyword_match_is_an_answer_whatever_its_similarity_and_the_rest_are_ranked_as_before():
    deps = indexed()
    # "towers" is in the lighthouse text, but this query's vector is the unrelated one (cosine 0.2).
    assert found(deps, "towers", mode="keyword") == ["http://x.test/l.txt"]
    assert found(deps, "towers", mode="vector") == [], "by meaning alone, nothing matches"
    page = search(parse_request({"q": "towers", "mode": "hybrid"}), deps)
    assert [r.asset.url for r in page.results][0] == "http://x.test/l.txt"
    assert [r.relevance.level for r in page.results][1:] == [Level.WEAK] * (len(page.results) - 1), \
        "a weaker neighbour is still listed, and says it is weak"


def test_the_floor_is_the_models_and_a_setting_overrides_it():
    assert CATALOG["all-MiniLM-L6-v2"].similarity_floor != CATALOG["all-mpnet-base-v2"].similarity_floor
    for model in ("all-MiniLM-L6-v2", "all-mpnet-base-v2"):
        embedder = AxisEmbedder()
        embedder.model = model
        assert similarity_scale(fake_deps(embedder=embedder))[0] == CATALOG[model].similarity_floor
    assert similarity_scale(fake_deps(embedder=AxisEmbedder(), settings=Settings(search_min_similarity=0.1)))[0] == 0.1
    assert similarity_scale(fake_deps(embedder=AxisEmbedder(), settings=Settings(search_min_similarity=-1)))[0] is None
    assert similarity_scale(fake_deps())[0] is None  # a model nobody calibrated: no floor
    # Below a lowered floor the unrelated query's cosine 0.2 is a match again.
    assert len(found(indexed(search_min_similarity=0.15), "zzqxj flurble", mode="vector")) == 2


def test_the_floor_setting_is_read_from_the_environment_and_checked():
    assert load_settings({"SEARCH_MIN_SIMILARITY": "0.3"}).search_min_similarity == 0.3
    assert load_settings({"SEARCH_MIN_SIMILARITY": ""}).search_min_similarity is None
    with pytest.raises(ValueError, match="SEARCH_MIN_SIMILARITY"):
        load_settings({"SEARCH_MIN_SIMILARITY": "1.5"})


def test_fusion_keeps_what_each_list_knew_of_a_chunk():
    vector = [ChunkHit("a", 0, "t", 0.9, similarity=0.9), ChunkHit("b", 0, "t", 0.1, similarity=0.1)]
    words = [ChunkHit("b", 0, "t", 3.0, keyword=True)]
    fused = {h.asset_id: h for h in reciprocal_rank_fusion(vector, words)}
    assert (fused["b"].similarity, fused["b"].keyword) == (0.1, True)
    assert (fused["a"].similarity, fused["a"].keyword) == (0.9, False)


def test_relevance_is_said_in_words_from_meaning_and_words():
    hit = ChunkHit("a", 0, "lighthouse keepers at night", 0.03)
    assert relevance(dataclasses.replace(hit, similarity=0.7), [], 0.2, 0.6).level is Level.STRONG
    assert relevance(dataclasses.replace(hit, similarity=0.45), [], 0.2, 0.6).level is Level.GOOD
    assert relevance(dataclasses.replace(hit, similarity=0.25), [], 0.2, 0.6).level is Level.WEAK
    assert relevance(dataclasses.replace(hit, keyword=True), ["lighthouse", "keeper"], 0.2, 0.6).level is Level.GOOD
    assert relevance(dataclasses.replace(hit, keyword=True), ["lighthouse", "storm"], 0.2, 0.6).level is Level.WEAK
    assert relevance(dataclasses.replace(hit, similarity=0.25, keyword=True), ["keeper"], 0.2, 0.6).level is Level.GOOD
    assert relevance(dataclasses.replace(hit, similarity=0.7), [], None, None) is None  # not calibrated


def test_the_api_shows_relevance_beside_the_score():
    result = shapes.search_page(search(parse_request({"q": "lighthouse keepers"}), indexed()))["results"][0]
    assert result["relevance"] == {"level": "strong", "similarity": 1.0, "keyword": True}
    assert "score" in result


def test_the_page_says_nothing_matched_and_what_to_try():
    page = html.results({"query": "zzqxj flurble", "mode": "keyword", "kind": "pdf"}, [], None)
    assert "Nothing matched “zzqxj flurble”" in page
    assert "fewer filters" in page and "hybrid or vector mode" in page
    assert "fewer filters" not in html.results({"query": "zzqxj flurble"}, [], None)


def test_the_page_shows_relevance_in_words_not_the_fused_score():
    deps = indexed()
    page = html.results({"query": "lighthouse keepers"},
                        search(parse_request({"q": "lighthouse keepers"}), deps).results, None)
    assert "strong match" in page and "<meter" in page
    assert "score" not in page

