"""Re-ranking parameters as functions of the gallery size, so that a default fitted on a few
hundred images still makes sense on a user's ten thousand.

Each neighbour count is ``scaled(n, rule)``: c · n^exponent, rounded, kept within [low, high]
and below n. The constants were fitted by ``benchmarks/rerank_sweep.py`` on the validation
protocol (Paris whole and cropped, Corel-1k, Fashion-MNIST, each at 1/4, 1/2 and all of its
gallery: 62 to 1000 images) and never on the 12 official Paris queries; the fit and its figures
are in ``artifacts/bench/rerank_rules.json`` (``benchmarks/fit_rerank_rules.py``). The upper
bounds keep the cost per query bounded on large galleries, where the literature's values (QE
n ≈ 10, k-reciprocal k1 = 20, SuperGlobal M = 400) were measured.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SizeRule:
    """k(n) = clip(round(c · n^exponent), low, min(high, n − 1))."""

    c: float
    exponent: float
    low: int
    high: int

    def __call__(self, n_images: int) -> int:
        return scaled(n_images, self)


def scaled(n_images: int, rule: SizeRule) -> int:
    """``rule`` applied to a gallery of ``n_images`` (at least 1, at most n − 1)."""
    if n_images < 2:
        return 1
    k = round(rule.c * n_images ** rule.exponent)
    return int(max(1, min(max(rule.low, min(k, rule.high)), n_images - 1)))


# Fitted by benchmarks/fit_rerank_rules.py (artifacts/bench/rerank_rules.json): the largest mean
# gain over no re-ranking among the rules that gain on every (set, size) row.
QE_N = SizeRule(c=2.71, exponent=0.25, low=1, high=30)            # alpha-QE alone: 11 at N = 250
DBA_N = SizeRule(c=4.11, exponent=0.25, low=1, high=30)           # DBA and QE of DBA + alpha-QE: 16 at 250
DIFFUSION_K = SizeRule(c=10.0, exponent=0.0, low=5, high=100)     # the same 10 at every size measured
KRECIPROCAL_K1 = SizeRule(c=1.78, exponent=0.5, low=5, high=80)   # 28 at 250, 56 at 1000
SUPERGLOBAL_M = SizeRule(c=50.2, exponent=0.25, low=50, high=200)
SUPERGLOBAL_K = 9                                                 # the paper's K, the only one swept with M
KRECIPROCAL_HEAD = 1000    # images re-ranked by k-reciprocal: bounds the Jaccard part of a query's cost

# The bound every per-gallery preparation must keep on this machine (2 shared cores), whatever the
# gallery's size: a re-ranker whose preparation would exceed it falls back to one that fits
# (``core.rerank.defaults.fitting``), and the CLI and the app say which and why.
PREPARE_BOUND_SECONDS = 600.0
PREPARE_BOUND_BYTES = 2_000_000_000
# k-reciprocal's preparation grows linearly with the gallery (k1 is capped at 80, so a V row has a
# bounded number of non-zeros; the k-NN lists come through the gallery's index). Measured by
# benchmarks/bench_rerank_scale.py (artifacts/bench/rerank_scale.json) on derived 1280-d vectors
# with HNSW neighbour lists, 2 cores at load average 17-24: 307 s at 10,000 images (30.7 ms an
# image), 473 s at 20,000 (23.6 ms), 4.3-4.5 kB an image once built. Time binds first:
# 600 s / 23.6 ms = 25,400 images (memory would allow 468,000); at 1M it would take about 6.5 hours.
# (The 50,000 run was killed at 10.7 GB: the neighbours' cosines gathered [n, k1 + 1, d] at once,
# now a block at a time, ``base.NEIGHBOUR_BLOCK``; it was not rerun.)
KRECIPROCAL_MAX_IMAGES = 25_000


def qe_n(n_images: int) -> int:
    """alpha-QE / average QE alone."""
    return QE_N(n_images)


def dba_n(n_images: int) -> int:
    """DBA's neighbours, and the query expansion that follows it in DBA + alpha-QE."""
    return DBA_N(n_images)


def diffusion_k(n_images: int) -> int:
    return DIFFUSION_K(n_images)


def kreciprocal_k1(n_images: int) -> int:
    return KRECIPROCAL_K1(n_images)


def kreciprocal_k2(k1: int) -> int:
    """Local query expansion over a quarter of the reciprocal neighbours (Zhong et al.: k2 = 6
    for k1 = 20)."""
    return max(1, round(k1 / 4))


def superglobal_m(n_images: int) -> int:
    return SUPERGLOBAL_M(n_images)


def superglobal_k(n_images: int) -> int:
    return min(SUPERGLOBAL_K, max(1, n_images - 1))


def kreciprocal_head(n_images: int) -> int:
    return min(n_images, KRECIPROCAL_HEAD)
