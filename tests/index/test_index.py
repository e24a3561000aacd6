"""Exact and Annoy search: scores are cosine similarity or Euclidean distance, never Annoy's raw
angular distance; an index from other descriptors is refused with the rebuild command."""
from dataclasses import replace

import numpy as np
import pytest
from conftest import unit_vectors

from core.cache.descriptors import Embeddings
from core.config import EmbeddingConfig
from core.index import ExactIndex, IndexMismatch, recall_at
from core.index.annoy import AnnoyIndex, AnnoyParams


@pytest.fixture
def vectors():
    return unit_vectors(300, 32, seed=3)


def test_exact_cosine_and_euclidean_agree_on_normalised_vectors(vectors):
    q = vectors[:5] + 0.05
    cos_i, cos_s = ExactIndex(vectors, "cosine").search(q, 10)
    euc_i, euc_s = ExactIndex(vectors, "euclidean").search(q, 10)
    assert (cos_i == euc_i).all()
    assert np.all(np.diff(cos_s, axis=1) <= 1e-6) and np.all(np.diff(euc_s, axis=1) >= -1e-6)
    brute = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ vectors.T
    assert cos_i[0, 0] == int(np.argmax(brute[0]))


def test_rank_all_is_a_permutation_best_first(vectors):
    r = ExactIndex(vectors).rank_all(vectors[:3])
    assert r.shape == (3, 300) and r.dtype == np.int32
    assert (np.sort(r, axis=1) == np.arange(300)).all()
    assert (r[:, 0] == np.arange(3)).all()


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_annoy_scores_match_exact_scores(tmp_path, vectors, metric):
    params = AnnoyParams(n_trees=20)
    emb = Embeddings("toy", EmbeddingConfig(), [f"{i}.jpg" for i in range(len(vectors))], vectors, tmp_path)
    ann = AnnoyIndex.build(emb, metric, params)
    idx, scores = ann.search(vectors[:4], 5)
    exact = ExactIndex(vectors, metric).scores(vectors[:4])
    for row in range(4):
        np.testing.assert_allclose(scores[row], exact[row, idx[row]], atol=1e-4)
    assert ann.meta.tuning.recall_at_10 >= 0.95 and ann.meta.tuning.target_met
    assert (tmp_path / f"annoy-{'angular' if metric == 'cosine' else 'euclidean'}-20.json").exists()


def test_annoy_refuses_other_config_dimension_or_images(tmp_path, vectors):
    cfg = EmbeddingConfig()
    params = AnnoyParams(n_trees=5)
    ids = [f"{i}.jpg" for i in range(len(vectors))]

    def emb(config=cfg, v=vectors, names=ids):
        return Embeddings("toy", config, names, v, tmp_path)

    AnnoyIndex.build(emb(), "cosine", params)
    AnnoyIndex.load(emb(), "cosine", params)                              # the right one loads
    with pytest.raises(IndexMismatch, match="built with embedding .*python -m core index"):
        AnnoyIndex.load(emb(replace(cfg, pooling="mac")), "cosine", params)
    with pytest.raises(IndexMismatch, match="dimension is 32"):
        AnnoyIndex.load(emb(v=np.zeros((len(ids), 64), np.float32)), "cosine", params)
    with pytest.raises(IndexMismatch, match="images changed"):
        AnnoyIndex.load(emb(names=ids[:-1] + ["new.jpg"]), "cosine", params)
    with pytest.raises(IndexMismatch, match="no Annoy index"):
        AnnoyIndex.load(emb(), "cosine", AnnoyParams(n_trees=7))


def test_recall_at():
    exact = np.array([[1, 2, 3, 4]])
    assert recall_at(np.array([[1, 2, 9, 8]]), exact, 4) == 0.5
    assert recall_at(np.array([[2, 1, 4, 3]]), exact, 2) == 1.0
