"""Metrics against values computed by hand (see each comment)."""
import math

import numpy as np
import pytest

from core.evaluation.metrics import (
    average_precision,
    expected_random_ap,
    first_relevant_rank,
    hit_points,
    interpolated_ap11,
    interpolated_precision,
    mean_average_precision,
    ndcg,
    precision_at_k,
    recall_at_k,
    relevance_vector,
    score_queries,
    score_query,
    top_k_accuracy,
)


def test_ap_matches_official_trapezoid_by_hand():
    # ranking 0..4, positives {0, 2}: hits at ranks 0 and 2.
    # Oxford compute_ap: +0.5*(1+1)/2 = 0.5 ; miss ; +0.5*(0.5+2/3)/2 = 0.291666  => 0.791666
    s = score_query([0, 1, 2, 3, 4], {0, 2})
    assert s.ap == pytest.approx(0.5 + 0.5 * (0.5 + 2 / 3) / 2)
    assert s.ap == pytest.approx(19 / 24)


def test_junk_is_removed_before_ranking():
    # junk 3 at the top and 1 in the middle vanish: kept ranking [0, 2, 4] -> hits at 0 and 1 -> AP 1
    assert score_query([3, 0, 1, 2, 4], {0, 2}, junk={3, 1}).ap == pytest.approx(1.0)
    # junk image never counts as a hit even if listed among positives' neighbours
    hits = relevance_vector([3, 0, 1, 2], {0, 2}, {3})
    assert hits.tolist() == [True, False, True]


def test_ap_perfect_and_worst():
    assert score_query([5, 6, 0, 1], {5, 6}).ap == pytest.approx(1.0)
    # single positive last of 4: 0.5*(1/4+0... ) -> (j/r + (j+1)/(r+1))/2 with j=0,r=3 -> (0 + 1/4)/2
    assert score_query([1, 2, 3, 0], {0}).ap == pytest.approx(0.125)


def test_empty_relevant_set_gives_zero_everywhere():
    s = score_query([0, 1, 2], set())
    assert (s.ap, s.ap_interp11, s.ndcg, s.n_relevant, s.first_relevant) == (0.0, 0.0, 0.0, 0, None)
    assert average_precision(np.zeros(3, bool), 0) == 0.0


def test_interpolated_11_point_by_hand():
    # hits [1,0,1]: precision [1, .5, 2/3], recall [.5, .5, 1]
    # levels 0..0.5 (6 levels) -> 1 ; levels 0.6..1.0 (5 levels) -> 2/3   => (6 + 10/3) / 11
    hits = np.array([True, False, True])
    assert interpolated_ap11(hits, 2) == pytest.approx((6 + 10 / 3) / 11)
    # recall never reaches levels above 0.5 when one of two positives is missing
    assert interpolated_ap11(np.array([True, False]), 2) == pytest.approx(6 / 11)


def test_ndcg_by_hand():
    hits = np.array([True, False, True, False, False])
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3)
    assert ndcg(hits, 2) == pytest.approx(dcg / idcg)
    assert ndcg(np.array([True, True]), 2) == pytest.approx(1.0)
    assert ndcg(hits, 2, k=1) == pytest.approx(1.0)


def test_precision_recall_topk():
    hits = np.array([False, True, False, True, True])
    assert precision_at_k(hits, 1) == 0.0
    assert precision_at_k(hits, 5) == pytest.approx(3 / 5)
    assert precision_at_k(hits, 10) == pytest.approx(3 / 10)       # denominator k, as mP@k
    assert recall_at_k(hits, 4, 5) == pytest.approx(3 / 4)
    assert top_k_accuracy(hits, 1) == 0.0 and top_k_accuracy(hits, 2) == 1.0
    assert first_relevant_rank(hits) == 2


def test_pr_curve_points():
    s = score_query([0, 1, 2], {0, 2})
    assert s.precision.tolist() == pytest.approx([1.0, 0.5, 2 / 3])
    assert s.recall.tolist() == pytest.approx([0.5, 0.5, 1.0])


def test_mean_average_precision():
    rankings = np.array([[0, 1, 2], [2, 1, 0]])
    assert mean_average_precision(rankings, [{0}, {0}]) == pytest.approx((1.0 + (0 + 1 / 3) / 2) / 2)


def test_a_pr_curve_kept_at_its_hits_gives_the_same_interpolated_curve_and_11_point_ap():
    rng = np.random.default_rng(3)
    rankings = np.array([rng.permutation(400) for _ in range(5)])
    positives = [set(rng.choice(400, size=m, replace=False).tolist()) for m in (1, 3, 10, 40, 0)]
    for s in score_queries(rankings, positives):
        p, r = hit_points(s.precision, s.recall)
        assert len(p) == s.n_relevant                           # one point a relevant image, not one a rank
        np.testing.assert_allclose(interpolated_precision(p, r), interpolated_precision(s.precision, s.recall))
        assert np.mean(interpolated_precision(p, r)) == pytest.approx(s.ap_interp11)


def test_expected_random_ap_is_the_mean_over_every_ranking():
    """N = 4 images, 2 relevant: the mean AP over all 24 orders, by enumeration; junk is
    removed before ranking and a positive that is junk can never be found."""
    import itertools

    orders = list(itertools.permutations(range(4)))
    assert expected_random_ap(4, {0, 1}) == pytest.approx(np.mean([score_query(o, {0, 1}).ap for o in orders]))
    with_junk = list(itertools.permutations(range(5)))
    assert expected_random_ap(5, {0, 1}, {4}) == pytest.approx(np.mean([score_query(o, {0, 1}, {4}).ap for o in with_junk]))
    assert expected_random_ap(5, {0, 4}, {4}) == pytest.approx(np.mean([score_query(o, {0, 4}, {4}).ap for o in with_junk]))
    assert expected_random_ap(1, {0}) == 1.0 and expected_random_ap(10, set()) == 0.0
    rng = np.random.default_rng(0)                              # and a larger case against sampling
    sampled = np.mean([score_query(rng.permutation(200), set(range(7))).ap for _ in range(4000)])
    assert expected_random_ap(200, set(range(7))) == pytest.approx(sampled, rel=0.03)
