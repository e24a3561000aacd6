"""Ranking metrics of instance retrieval, as pure functions.

Conventions (those of the Oxford/Paris `compute_ap.cpp` and revisitop's `compute_ap`):

- ``ranking`` is a 1-d sequence of gallery indices, best first.
- ``positives`` are the relevant gallery indices (good ∪ ok, or easy ∪ hard).
- ``junk`` indices are removed from the ranking before anything is measured: they count
  neither as hits nor as misses, and do not take a rank.
- An empty positive set gives AP = 0 (nothing can be retrieved); callers that want to skip
  such queries do so themselves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

TOP_KS: tuple[int, ...] = (1, 5, 10)
RECALL_LEVELS_11 = np.linspace(0.0, 1.0, 11)


def relevance_vector(ranking: Sequence[int] | np.ndarray, positives: Iterable[int],
                     junk: Iterable[int] = ()) -> np.ndarray:
    """Boolean hit vector of ``ranking`` with junk removed: ``out[j]`` is True when the j-th
    kept image is relevant."""
    ranking = np.asarray(ranking, dtype=np.int64)
    junk_arr = np.fromiter(junk, dtype=np.int64)
    pos_arr = np.fromiter(positives, dtype=np.int64)
    kept = ranking[~np.isin(ranking, junk_arr)] if junk_arr.size else ranking
    return np.isin(kept, pos_arr)


def average_precision(hits: np.ndarray, n_relevant: int) -> float:
    """Official Oxford AP (trapezoid rule) of a junk-free hit vector.

    At each kept position j (0-based) with `h` hits so far, recall = h / n_relevant and
    precision = h / (j + 1); AP += (recall - old_recall) * (old_precision + precision) / 2,
    starting from old_recall = 0, old_precision = 1. Only positions with a hit change recall,
    so the sum runs over the hits, as revisitop's ``compute_ap`` does.
    """
    if n_relevant <= 0:
        return 0.0
    ranks = np.flatnonzero(hits)                     # 0-based rank of each hit
    j = np.arange(ranks.size, dtype=np.float64)      # hits before this one
    prec_before = np.where(ranks == 0, 1.0, j / np.maximum(ranks, 1))
    prec_at = (j + 1) / (ranks + 1)
    return float(np.sum((prec_before + prec_at) / 2.0) / n_relevant)


def precision_recall(hits: np.ndarray, n_relevant: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each kept position of a junk-free hit vector."""
    cum = np.cumsum(hits, dtype=np.float64)
    precision = cum / np.arange(1, hits.size + 1)
    recall = cum / n_relevant if n_relevant > 0 else np.zeros_like(cum)
    return precision, recall


def interpolated_ap11(hits: np.ndarray, n_relevant: int) -> float:
    """11-point interpolated AP: mean over recall levels 0, 0.1, ..., 1 of the highest precision
    reached at a recall >= that level (0 where the level is never reached)."""
    if n_relevant <= 0 or hits.size == 0:
        return 0.0
    precision, recall = precision_recall(hits, n_relevant)
    # running maximum of precision from the end: best precision at recall >= recall[i]
    best_after = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, RECALL_LEVELS_11 - 1e-12, side="left")
    reached = idx < recall.size
    values = np.where(reached, best_after[np.minimum(idx, recall.size - 1)], 0.0)
    return float(values.mean())


def ndcg(hits: np.ndarray, n_relevant: int, k: int | None = None) -> float:
    """Normalised discounted cumulative gain with binary relevance (gain 1 for a hit, discount
    log2(rank + 2)), over the first ``k`` kept positions (all when None)."""
    if n_relevant <= 0:
        return 0.0
    cut = hits if k is None else hits[:k]
    discounts = 1.0 / np.log2(np.arange(cut.size) + 2.0)
    dcg = float(np.sum(discounts[cut]))
    n_ideal = n_relevant if k is None else min(n_relevant, k)
    idcg = float(np.sum(1.0 / np.log2(np.arange(n_ideal) + 2.0)))
    return dcg / idcg


def precision_at_k(hits: np.ndarray, k: int) -> float:
    """Share of the first ``k`` kept positions that are hits (denominator k, as mP@k)."""
    return float(np.count_nonzero(hits[:k])) / k


def recall_at_k(hits: np.ndarray, n_relevant: int, k: int) -> float:
    """Share of the relevant images found in the first ``k`` kept positions."""
    return float(np.count_nonzero(hits[:k])) / n_relevant if n_relevant > 0 else 0.0


def top_k_accuracy(hits: np.ndarray, k: int) -> float:
    """1.0 when a relevant image is within the first ``k`` kept positions, else 0.0."""
    return float(bool(np.any(hits[:k])))


def first_relevant_rank(hits: np.ndarray) -> int | None:
    """1-based rank of the first hit after junk removal, None when there is none."""
    found = np.flatnonzero(hits)
    return int(found[0]) + 1 if found.size else None


@dataclass(frozen=True)
class QueryScores:
    """Every metric of one query; ``precision``/``recall`` hold its PR curve."""

    ap: float
    ap_interp11: float
    ndcg: float
    precision_at: dict[int, float]
    recall_at: dict[int, float]
    top_k: dict[int, float]
    first_relevant: int | None
    n_relevant: int
    precision: np.ndarray
    recall: np.ndarray


def score_query(ranking: Sequence[int] | np.ndarray, positives: Iterable[int],
                junk: Iterable[int] = (), ks: Sequence[int] = TOP_KS) -> QueryScores:
    """All metrics of one ranked query (junk removed first)."""
    positives = set(int(p) for p in positives)
    hits = relevance_vector(ranking, positives, junk)
    n_rel = len(positives)
    precision, recall = precision_recall(hits, n_rel)
    return QueryScores(
        ap=average_precision(hits, n_rel),
        ap_interp11=interpolated_ap11(hits, n_rel),
        ndcg=ndcg(hits, n_rel),
        precision_at={k: precision_at_k(hits, k) for k in ks},
        recall_at={k: recall_at_k(hits, n_rel, k) for k in ks},
        top_k={k: top_k_accuracy(hits, k) for k in ks},
        first_relevant=first_relevant_rank(hits),
        n_relevant=n_rel,
        precision=precision,
        recall=recall,
    )


def mean_average_precision(rankings: np.ndarray, positives: Sequence[Iterable[int]],
                           junk: Sequence[Iterable[int]] | None = None) -> float:
    """mAP over queries. ``rankings`` is [n_queries, n_images] of gallery indices, best first;
    ``positives[i]`` / ``junk[i]`` are the index sets of query i."""
    junk = junk if junk is not None else [()] * len(positives)
    aps = [score_query(r, p, j).ap for r, p, j in zip(rankings, positives, junk)]
    return float(np.mean(aps)) if aps else 0.0
