"""Every registered re-ranking method must change rankings: a method that returned its input
would pass any "no worse than plain" test, so each is run where it has something to do."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.cache.descriptors import Embeddings
from core.cache.galleries import Gallery
from core.config import EmbeddingConfig
from core.index import Index
from core.rerank import RERANKERS, RegionQuery, RerankContext, apply_reranker, create_reranker, list_rerankers

DESCRIPTOR_METHODS = [n for n in list_rerankers() if n != "none" and not RERANKERS[n].needs_image]
REGION_METHODS = [n for n in list_rerankers() if RERANKERS[n].needs_image]


def clustered(seed: int = 0, clusters: int = 6, per: int = 15, dim: int = 32, spread: float = 0.45):
    """Gallery vectors in noisy clusters and one query near each centre: plain cosine mixes the
    clusters' edges, which every global method should reorder."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    rows = np.vstack([c + spread * rng.normal(size=(per, dim)) * np.linalg.norm(c) / np.sqrt(dim) for c in centres])
    queries = centres + spread * rng.normal(size=centres.shape) * np.linalg.norm(centres, axis=1, keepdims=True) / np.sqrt(dim)
    unit = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return unit(queries), unit(rows), per


@pytest.mark.parametrize("name", DESCRIPTOR_METHODS)
def test_every_descriptor_method_changes_rankings_and_keeps_them_permutations(name):
    queries, db, per = clustered()
    emb = Embeddings("toy", EmbeddingConfig(), [f"{i}.jpg" for i in range(len(db))], db, Path("."))
    ctx = RerankContext(emb, Gallery("toy", Path(".")), None, log=lambda m: None)
    plain = np.argsort(-(queries @ db.T), axis=1, kind="stable").astype(np.int32)
    out = apply_reranker(create_reranker(name), plain, queries, [RegionQuery(None) for _ in queries], ctx).ranking
    assert (out != plain).any(), f"{name} returned the plain ranking"
    assert all(sorted(row) == list(range(len(db))) for row in out.tolist())

    def precision(ranking):        # share of each query's cluster in its first `per` results
        return np.mean([(ranking[r, :per] // per == r).mean() for r in range(len(queries))])
    assert precision(out) >= precision(plain) - 0.02, (name, precision(out), precision(plain))


@pytest.mark.slow
@pytest.mark.parametrize("name", REGION_METHODS)
def test_every_region_method_changes_the_rankings_of_the_paris_queries(paris, name):
    paris.cache_feature_maps()
    out = paris.rerank(create_reranker(name))
    assert (out != paris.ranking).any(axis=1).sum() >= len(out) // 2, f"{name} left most rankings unchanged"


def test_fusion_adds_the_weighted_method_score_to_the_cosine_or_uses_it_alone():
    import math

    from core.rerank.local import fused, promote
    from core.rerank.spatial import inlier_score

    cos, score = np.array([0.9, 0.8, 0.7]), np.array([0.0, 1.0, 0.5])
    np.testing.assert_allclose(fused(cos, score, 0.25), [0.9, 1.05, 0.825])
    np.testing.assert_allclose(fused(cos, score, math.inf), score)
    assert promote(np.array([4, 5, 6, 7]), 3, fused(cos, score, 0.05)).tolist() == [4, 5, 6, 7]   # near-ties only
    assert promote(np.array([4, 5, 6, 7]), 3, fused(cos, score, 0.25)).tolist() == [5, 4, 6, 7]
    np.testing.assert_allclose(inlier_score(np.array([0, 25, 80]), cap=50), [0.0, 0.5, 1.0])


def test_methods_search_again_through_the_index_of_the_first_search():
    """With an approximate index in the context, query expansion searches it again and the
    k-reciprocal graph is built from its lists, never from an exact pass."""
    queries, db, _ = clustered()
    calls = []

    class Approximate(Index):              # the exact answer cut to 20 results, as Annoy returns a short list
        name, metric = "approximate", "cosine"
        open = figures = None

        def __len__(self):
            return len(db)

        def search(self, vectors, k):
            calls.append(k)
            idx = np.argsort(-(vectors @ db.T), axis=1)[:, :min(k, 20)]
            return np.pad(idx, ((0, 0), (0, max(0, k - 20))), constant_values=-1), None

    emb = Embeddings("toy", EmbeddingConfig(), [f"{i}.jpg" for i in range(len(db))], db, Path("."))
    ctx = RerankContext(emb, Gallery("toy", Path(".")), None, log=lambda m: None, index=Approximate())
    plain = ctx.rank(queries)
    assert (plain[:, :20] == np.argsort(-(queries @ db.T), axis=1)[:, :20]).all()
    for name in ("alpha_qe", "kreciprocal"):
        calls.clear()
        out = apply_reranker(create_reranker(name), plain, queries, [RegionQuery(None) for _ in queries], ctx).ranking
        assert calls and all(sorted(row) == list(range(len(db))) for row in out.tolist()), name
