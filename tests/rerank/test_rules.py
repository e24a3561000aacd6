"""Gallery-size rules of the re-ranking parameters: by hand, then the shipped rules' shape."""
from __future__ import annotations

import pytest

from core.rerank import create_reranker, rules
from core.rerank.rules import SizeRule, scaled


def test_scaled_rounds_clips_and_stays_below_the_gallery_size():
    rule = SizeRule(c=2.0, exponent=0.5, low=3, high=10)
    assert scaled(16, rule) == 8                  # 2 * 4
    assert scaled(100, rule) == 10                # 20, capped
    assert scaled(5, rule) == 4                   # round(4.47)
    assert scaled(3, rule) == 2                   # low 3, but at most n - 1
    assert scaled(1, rule) == 1 and rule(16) == 8


@pytest.mark.parametrize("rule", [rules.QE_N, rules.DBA_N, rules.DIFFUSION_K, rules.KRECIPROCAL_K1,
                                  rules.SUPERGLOBAL_M])
def test_shipped_rules_grow_with_the_gallery_within_their_bounds(rule):
    sizes = [10, 100, 250, 1000, 10_000, 1_000_000]
    values = [rule(n) for n in sizes]
    assert values == sorted(values) and all(1 <= v <= max(rule.high, 1) for v in values)
    assert rule(1_000_000) == rule.high or rule.exponent == 0


def test_rule_set_parameters_are_recorded_with_their_values():
    kr = create_reranker("kreciprocal").for_gallery(1000)
    assert kr.k1 == rules.kreciprocal_k1(1000) and kr.k2 == rules.kreciprocal_k2(kr.k1)
    assert create_reranker("kreciprocal", k1=7).for_gallery(1000).k1 == 7       # an explicit value stays
    sg = create_reranker("superglobal").for_gallery(250)
    assert (sg.top_n, sg.sg_k) == (rules.superglobal_m(250), rules.superglobal_k(250))
