"""Bounded rankings: an approximate index is asked for its top RANK_DEPTH, never for all n, the
rest following in gallery order; galleries up to RANK_DEPTH rank exactly as before; a search that
shows its top k (no ground truth) builds only the head, with the same head re-ranked."""
import numpy as np
import pytest

from core.cache.descriptors import Embeddings
from core.config import EmbeddingConfig
from core.index import RANK_DEPTH, SearchSettings, full_ranking, open_index
from core.rerank import create_reranker
from core.search.retriever import Retriever

CFG = EmbeddingConfig(pooling="gem", scales=(1.0,))


def gallery(n: int, directory, seed: int = 2) -> Embeddings:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, 24)).astype(np.float32)
    v = centres[rng.integers(0, 40, n)] + 0.7 * rng.normal(size=(n, 24)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return Embeddings("toy", CFG, [f"{i:05d}.jpg" for i in range(n)], v, directory)


@pytest.mark.parametrize("method", ["hnsw", "annoy"])
def test_small_galleries_rank_as_before_the_bound(tmp_path, method):
    emb = gallery(250, tmp_path)
    index = open_index(emb, SearchSettings(method))
    q = emb.vectors[:12] + 0.1
    before = full_ranking(index.search(q, 250)[0], 250)            # what rank_all did: ask for all n
    np.testing.assert_array_equal(index.rank_all(q), before)


def test_large_galleries_ask_the_index_for_its_top_depth_only(tmp_path):
    n = RANK_DEPTH + 700
    emb = gallery(n, tmp_path)
    index = open_index(emb, SearchSettings("hnsw"))
    asked, search = [], index.search
    index.search = lambda queries, k: asked.append(k) or search(queries, k)
    q = emb.vectors[:3] + 0.05
    ranking = index.rank_all(q)
    assert asked == [RANK_DEPTH]
    top = search(q, RANK_DEPTH)[0]
    np.testing.assert_array_equal(ranking[:, :RANK_DEPTH], top)
    for row, got in zip(ranking, top):                              # every image once, the tail in gallery order
        assert sorted(row) == list(range(n))
        np.testing.assert_array_equal(row[RANK_DEPTH:], np.setdiff1d(np.arange(n), got))
    head = index.rank_head(q, 50)
    np.testing.assert_array_equal(head, ranking[:, :50])


@pytest.mark.parametrize("method", ["none", "kreciprocal"])
def test_a_search_without_ground_truth_builds_only_the_head_and_reranks_it_the_same(tmp_path, method):
    emb = gallery(1500, tmp_path)
    retriever = Retriever(emb, open_index(emb, SearchSettings("hnsw")), None, None, create_reranker(method))
    q = emb.vectors[5:7] + 0.05
    full = retriever.rank(q, [None, None])
    head = retriever.rank(q, [None, None], depth=RANK_DEPTH)
    assert full.ranking.shape == (2, 1500) and head.ranking.shape == head.plain.shape == (2, RANK_DEPTH)
    np.testing.assert_array_equal(head.plain, full.plain[:, :RANK_DEPTH])
    np.testing.assert_array_equal(head.ranking, full.ranking[:, :RANK_DEPTH])


def test_a_reranker_that_reads_the_whole_ranking_still_gets_it(tmp_path):
    emb = gallery(1200, tmp_path)
    retriever = Retriever(emb, open_index(emb, SearchSettings("exact")), None, None, create_reranker("alpha_qe"))
    ranked = retriever.rank(emb.vectors[:2], [None, None], depth=20)
    assert ranked.plain.shape == ranked.ranking.shape == (2, 1200)
