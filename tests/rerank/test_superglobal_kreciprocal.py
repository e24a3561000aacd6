"""SuperGlobal and k-reciprocal re-ranking: hand-computed cases of the pure functions and toy
geometries where each method must change the ranking in the expected direction."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from core.rerank.kreciprocal import (
    KReciprocalGallery,
    encode,
    expanded_set,
    jaccard_distance,
    kreciprocal_rerank,
    prepare_gallery,
    query_vector,
    reciprocal_set,
)
from core.rerank.superglobal import augment_within, superglobal_rerank, superglobal_scores


def unit(*rows):
    x = np.array(rows, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_augment_within_weighs_itself_one_and_neighbours_beta_times_cosine():
    x = unit([1, 0], [0.8, 0.6], [0, 1])
    out = augment_within(x, k=1, beta=0.5)
    np.testing.assert_allclose(out[0], (x[0] + 0.4 * x[1]) / 1.4, atol=1e-6)     # cosine 0.8 -> weight 0.4
    np.testing.assert_allclose(out[2], (x[2] + 0.3 * x[1]) / 1.3, atol=1e-6)     # cosine 0.6 -> weight 0.3
    np.testing.assert_allclose(augment_within(x[:1], k=3, beta=0.5), x[:1])       # nobody to average with


def test_superglobal_score_is_the_mean_of_the_augmented_and_the_refined_query_similarity():
    x = unit([1, 0], [0.8, 0.6], [0, 1])
    q = unit([1, 0.1])[0]
    aug = augment_within(x, k=1, beta=0.5)
    s1 = aug @ q
    refined = aug[np.argmax(s1)]                                                  # K = 1: the best one itself
    np.testing.assert_allclose(superglobal_scores(q, x, k=1, beta=0.5), (s1 + aug @ refined) / 2, atol=1e-6)


def _outsider_and_cluster():
    """A query, one outsider nearest to it, and a cluster of three mutually close views a
    little further away, then three unrelated images."""
    ang = np.radians([25, 28, 31])
    cluster = np.stack([np.cos(ang), np.sin(ang), np.zeros(3)], 1)
    outsider = unit([np.cos(np.radians(22)), 0, np.sin(np.radians(22))])
    far = unit([0, 0, 1], [0, -1, 0], [-1, 0, 0])
    db = np.vstack([outsider, cluster, far]).astype(np.float32)
    q = unit([1, 0, 0])
    return q, db, np.argsort(-(db @ q[0]), kind="stable")[None].astype(np.int32)


def test_superglobal_moves_an_isolated_nearest_image_behind_a_consistent_cluster():
    q, db, plain = _outsider_and_cluster()
    assert plain[0].tolist() == [0, 1, 2, 3, 4, 5, 6]
    out = superglobal_rerank(q, db, plain, m=7, k=2, beta=0.5)
    assert out[0, :4].tolist() == [1, 2, 3, 0]
    # only the top-M is touched: M = 2 may reorder 0 and 1, never what follows
    assert superglobal_rerank(q, db, plain, m=2, k=1, beta=0.5)[0, 2:].tolist() == [2, 3, 4, 5, 6]


def test_reciprocal_sets_keep_only_mutual_neighbours():
    # each row: the node itself, then its nearest nodes
    nn = np.array([[0, 1, 2], [1, 0, 2], [2, 1, 0], [3, 2, 1]])
    assert sorted(reciprocal_set(0, nn, 1).tolist()) == [0, 1]
    assert sorted(reciprocal_set(2, nn, 1).tolist()) == [2]            # 2 -> 1 but 1 -> 0
    assert sorted(reciprocal_set(2, nn, 2).tolist()) == [0, 1, 2]      # 3 lists 2, 2 does not list 3
    # expansion: 1's 1-reciprocal set {1, 0} lies within 2's 2-reciprocal set, so nothing new here
    assert sorted(expanded_set(2, nn, 2).tolist()) == [0, 1, 2]


def test_encoding_and_jaccard_distance_by_hand():
    v = encode(np.array([0, 2]), np.array([0.0, np.log(3.0)]), 4).toarray()[0]   # weights 1 and 1/3
    np.testing.assert_allclose(v, [0.75, 0, 0.25, 0], atol=1e-9)
    rows = sp.csr_matrix(np.array([[0.75, 0, 0.25, 0], [0.5, 0.5, 0, 0], [0, 0, 0, 1.0]]))
    d = jaccard_distance(sp.csr_matrix(v), rows)
    # overlap = sum of minima: 1, 0.5, 0; distance = 1 - overlap / (2 - overlap)
    np.testing.assert_allclose(d, [0.0, 1 - 0.5 / 1.5, 1.0], atol=1e-9)
    g = KReciprocalGallery(np.zeros((3, 2), np.float32), np.zeros((3, 2), np.int64), np.zeros((3, 2)), rows, 1, 1)
    np.testing.assert_allclose(g.overlap(sp.csr_matrix(v)), [1.0, 0.5, 0.0], atol=1e-9)   # the inverted file agrees


def test_query_vector_counts_the_images_the_query_would_enter_the_list_of():
    db = unit([1, 0, 0], [0.99, 0.14, 0], [0.98, 0, 0.2], [0, 1, 0], [0, 0.98, 0.2])
    gallery = prepare_gallery(db, k1=2, k2=1)
    q = unit([1, 0.05, 0.05])[0]
    top = np.argsort(-(db @ q))
    v = query_vector(q, top, gallery).toarray()[0]
    assert set(np.flatnonzero(v)) <= {0, 1, 2} and v.sum() == pytest.approx(1.0)
    assert v[0] > 0                                                       # the nearest image, mutual


def test_kreciprocal_rerank_changes_rankings_of_a_real_looking_gallery_and_keeps_a_permutation():
    rng = np.random.default_rng(0)
    centres = unit(*rng.normal(size=(4, 16)))
    db = np.vstack([unit(*(c + 0.35 * rng.normal(size=(12, 16)))) for c in centres]).astype(np.float32)
    queries = unit(*(centres + 0.35 * rng.normal(size=(4, 16))))
    plain = np.argsort(-(queries @ db.T), axis=1, kind="stable").astype(np.int32)
    out = kreciprocal_rerank(queries, plain, prepare_gallery(db, k1=8, k2=3), lam=0.3)
    assert (out != plain).any()
    assert all(sorted(row) == list(range(len(db))) for row in out.tolist())

    def cluster_precision(ranking):
        return np.mean([(ranking[r, :12] // 12 == r).mean() for r in range(4)])
    assert cluster_precision(out) >= cluster_precision(plain)
