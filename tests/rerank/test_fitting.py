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
