"""Defaults that still work at a million images: a re-ranker whose per-gallery preparation would
exceed the bound of rules.py at a gallery's size is replaced by one with nothing to prepare, and
the run / search says which and why."""
import numpy as np

from core.cache.descriptors import Embeddings
from core.config import EmbeddingConfig
from core.index import SearchSettings, open_index
from core.rerank import DEFAULT_RERANK, FALLBACK_RERANK, create_reranker, fitting, rules
from core.rerank.kreciprocal import KReciprocal
from core.search.retriever import Retriever


def test_the_default_keeps_its_method_within_the_bound_and_falls_back_above_it():
    default = create_reranker(DEFAULT_RERANK)
    limit = rules.KRECIPROCAL_MAX_IMAGES
    assert default.max_images == limit
    kept = fitting(default, limit)
    assert kept.reranker is default and kept.note == ""
    above = fitting(default, 1_000_000)
    assert above.reranker.name == FALLBACK_RERANK and above.reranker.max_images is None
    assert f"{limit:,}" in above.note and "1,000,000" in above.note and "alpha" in above.note
    assert fitting(create_reranker("none"), 10**9).reranker.name == "none"


def test_a_retriever_over_a_gallery_above_the_bound_reranks_by_the_fallback_and_says_so(monkeypatch):
    monkeypatch.setattr(KReciprocal, "max_images", 200)
    rng = np.random.default_rng(4)
    v = rng.normal(size=(300, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    emb = Embeddings("toy", EmbeddingConfig(), [f"{i}.jpg" for i in range(300)], v, None)
    retriever = Retriever(emb, open_index(emb, SearchSettings("exact")), None, None, create_reranker("kreciprocal"))
    ranked = retriever.rank(v[:2], [None, None])
    assert ranked.reranker.name == FALLBACK_RERANK and "200" in ranked.note and "300" in ranked.note
    monkeypatch.setattr(KReciprocal, "max_images", 300)
    within = Retriever(emb, retriever.index, None, None, create_reranker("kreciprocal")).rank(v[:1], [None])
    assert within.reranker.name == "kreciprocal" and within.note == ""


def test_neighbour_cosines_are_computed_a_block_at_a_time(monkeypatch):
    from core.rerank import base

    rng = np.random.default_rng(6)
    v = rng.normal(size=(700, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    emb = Embeddings("toy", EmbeddingConfig(), [f"{i}.jpg" for i in range(700)], v, None)

    class Approximate:                      # an index whose lists come back short for some rows
        exact = False

        def search(self, queries, k):
            idx = np.argsort(-(queries @ v.T), axis=1)[:, :k]
            idx[::7, -1] = -1
            return idx, None

    ctx = base.RerankContext(emb, None, None, index=Approximate())
    whole = ctx.neighbours(v, 12)
    monkeypatch.setattr(base, "NEIGHBOUR_BLOCK", 50)
    idx, cos = ctx.neighbours(v, 12)
    np.testing.assert_array_equal(idx, whole[0])
    np.testing.assert_allclose(cos, whole[1], atol=1e-6)
    assert np.isneginf(cos[::7, -1]).all() and np.allclose(cos[1, 0], 1.0, atol=1e-5)
