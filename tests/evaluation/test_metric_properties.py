"""Property-based tests (hypothesis) of the metrics and of box handling."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from core.evaluation.metrics import score_query
from core.images import Box, ImageError


@st.composite
def ranked_query(draw, max_n=40):
    n = draw(st.integers(1, max_n))
    perm = draw(st.permutations(range(n)))
    labels = draw(st.lists(st.sampled_from(["pos", "junk", "bad"]), min_size=n, max_size=n))
    positives = {i for i, lab in enumerate(labels) if lab == "pos"}
    junk = {i for i, lab in enumerate(labels) if lab == "junk"}
    return list(perm), positives, junk


@given(ranked_query())
def test_every_metric_lies_in_unit_interval(q):
    ranking, positives, junk = q
    s = score_query(ranking, positives, junk)
    for value in (s.ap, s.ap_interp11, s.ndcg, *s.precision_at.values(), *s.recall_at.values(), *s.top_k.values()):
        assert 0.0 <= value <= 1.0 + 1e-12


@given(ranked_query(), st.randoms())
def test_ap_is_invariant_to_where_junk_sits(q, rnd):
    ranking, positives, junk = q
    non_junk = [i for i in ranking if i not in junk]
    moved = list(non_junk)
    for j in sorted(junk):
        moved.insert(rnd.randint(0, len(moved)), j)
    a, b = score_query(ranking, positives, junk), score_query(moved, positives, junk)
    assert abs(a.ap - b.ap) < 1e-12 and abs(a.ap_interp11 - b.ap_interp11) < 1e-12 and abs(a.ndcg - b.ndcg) < 1e-12


@given(ranked_query())
def test_perfect_ranking_scores_one(q):
    ranking, positives, junk = q
    assume(positives)
    perfect = sorted(ranking, key=lambda i: (i not in positives, i in junk))
    s = score_query(perfect, positives, junk)
    assert abs(s.ap - 1.0) < 1e-12 and abs(s.ap_interp11 - 1.0) < 1e-12 and abs(s.ndcg - 1.0) < 1e-12


@given(ranked_query())
def test_moving_a_positive_up_never_lowers_ap(q):
    ranking, positives, junk = q
    kept = [i for i in ranking if i not in junk]
    idx = [k for k, i in enumerate(kept) if i in positives and k > 0 and kept[k - 1] not in positives]
    assume(idx)
    k = idx[0]
    better = kept[:k - 1] + [kept[k], kept[k - 1]] + kept[k + 1:]
    assert score_query(better, positives).ap >= score_query(kept, positives).ap - 1e-12


coords = st.floats(min_value=-500, max_value=2500, allow_nan=False, allow_infinity=False)


@settings(max_examples=300)
@given(coords, coords, coords, coords, st.integers(1, 2000), st.integers(1, 2000))
def test_clamped_box_is_inside_and_non_empty_or_refused(x1, y1, x2, y2, w, h):
    if x1 == x2 or y1 == y2:                 # zero area: refused by Box.of itself
        with pytest.raises(ValueError, match="zero area|no area"):
            Box.of([x1, y1, x2, y2])
        return
    try:
        b = Box.of([x1, y1, x2, y2]).clamp(w, h)
    except ImageError:
        lo_x, hi_x = sorted((x1, x2))
        lo_y, hi_y = sorted((y1, y2))
        # refused only when no whole pixel of the image is touched by the box
        assert np.ceil(min(hi_x, w)) - np.floor(max(lo_x, 0)) < 1 or np.ceil(min(hi_y, h)) - np.floor(max(lo_y, 0)) < 1
        return
    assert 0 <= b.x1 < b.x2 <= w and 0 <= b.y1 < b.y2 <= h
    assert all(float(v).is_integer() for v in b.as_list())
    # the clamped box covers the part of the requested box inside the image
    assert b.x1 <= max(min(x1, x2), 0) + 1e-9 and b.x2 >= min(max(x1, x2), w) - 1e-9
