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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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


def interpolated_precision(precision: Sequence[float] | np.ndarray, recall: Sequence[float] | np.ndarray,
                           levels: np.ndarray = RECALL_LEVELS_11) -> np.ndarray:
    """Highest precision reached at a recall >= each of ``levels`` (0 where a level is never
    reached), from a precision/recall curve in rank order: the interpolated PR curve."""
    p, r = np.asarray(precision, float), np.asarray(recall, float)
    if p.size == 0:
        return np.zeros(len(levels))
    best_after = np.maximum.accumulate(p[::-1])[::-1]       # best precision at recall >= r[i]
    idx = np.searchsorted(r, np.asarray(levels) - 1e-12, side="left")
    return np.where(idx < r.size, best_after[np.minimum(idx, r.size - 1)], 0.0)


def expected_random_ap(n_images: int, positives: Iterable[int], junk: Iterable[int] = ()) -> float:
    """``average_precision`` of a uniformly random ranking, in expectation (exact, no sampling).
    With junk removed, ``N`` images of which ``R`` relevant, a relevant image at 0-based rank r
    has on average (R-1)·r/(N-1) relevant ones before it. The trapezoid's two precisions then
    average R/N (i/r before it, 1 at rank 0) and (H_N + (R-1)(N - H_N)/(N-1)) / N (i+1 over
    r+1; H_N the N-th harmonic number). Sampling 20 permutations instead took 0.08 s a query
    and trial at 1M images (19 s a run of 12 queries)."""
    junk = set(int(j) for j in junk)
    positives = [int(p) for p in positives]
    relevant = sum(p not in junk for p in positives)        # junk wins over a positive, as in relevance_vector
    n = n_images - len(junk)
    if not relevant or n < 1:
        return 0.0
    harmonic = float(np.sum(1.0 / np.arange(1, n + 1)))
    after = (harmonic + ((relevant - 1) * (n - harmonic) / (n - 1) if n > 1 else 0.0)) / n
    return (relevant / n + after) / 2 * relevant / len(positives)


def hit_points(precision: Sequence[float], recall: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The points of a PR curve in rank order where a relevant image was found: the measured
    curve. Precision only rises at a hit, so these points hold everything the interpolated curve
    and 11-point AP read; the ranks after the last relevant image only lower precision at recall
    1 (drawn, they would make a perfect query's curve fall to the gallery's base rate)."""
    p, r = np.asarray(precision, float), np.asarray(recall, float)
    hit = np.diff(r, prepend=0.0) > 0
    return p[hit], r[hit]


def interpolated_ap11(hits: np.ndarray, n_relevant: int) -> float:
    """11-point interpolated AP: mean over recall levels 0, 0.1, ..., 1 of the highest precision
    reached at a recall >= that level (0 where the level is never reached)."""
    if n_relevant <= 0 or hits.size == 0:
        return 0.0
    return float(interpolated_precision(*precision_recall(hits, n_relevant)).mean())


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


def _label_matrix(rankings: np.ndarray, positives: Sequence[Iterable[int]],
                  junk: Sequence[Iterable[int]]) -> np.ndarray:
    """[q, n] labels of the ranked images: 1 positive, 2 junk (junk wins, as in
    ``relevance_vector``), 0 otherwise."""
    pos = [np.fromiter(p, dtype=np.int64) for p in positives]
    jnk = [np.fromiter(j, dtype=np.int64) for j in junk]
    width = 1 + max([int(rankings.max(initial=-1))] + [int(a.max()) for a in pos + jnk if a.size])
    labels = np.zeros((len(pos), width), np.int8)
    for row, (p, j) in enumerate(zip(pos, jnk)):
        labels[row, p] = 1
        labels[row, j] = 2
    return np.take_along_axis(labels, rankings, axis=1)


def score_queries(rankings: np.ndarray, positives: Sequence[Iterable[int]],
                  junk: Sequence[Iterable[int]] | None = None, ks: Sequence[int] = TOP_KS) -> list[QueryScores]:
    """``score_query`` of every row of ``rankings`` [q, n] at once, with array operations over all
    queries (the same numbers; 70 queries × 6k images take milliseconds, see
    ``benchmarks/bench_evaluation.py``).

    Junk is moved behind the kept images of each row by a stable sort, so every metric becomes a
    cumulative sum over one [q, n] matrix; the trailing junk adds no hit and cannot raise a
    precision, so it changes nothing."""
    rankings = np.asarray(rankings, dtype=np.int64)
    if rankings.ndim != 2:
        raise ValueError(f"rankings must be [queries, images], got shape {rankings.shape}")
    positives = [set(int(p) for p in ps) for ps in positives]
    junk = [list(j) for j in junk] if junk is not None else [[] for _ in positives]
    labels = _label_matrix(rankings, positives, junk)
    n_q, n = labels.shape
    n_kept = (labels != 2).sum(axis=1)
    hits = np.take_along_axis(labels, np.argsort(labels == 2, axis=1, kind="stable"), axis=1) == 1
    n_rel = np.array([len(p) for p in positives], dtype=np.float64)
    safe_rel = np.maximum(n_rel, 1.0)
    cum = np.cumsum(hits, axis=1, dtype=np.int32)
    precision = cum / np.arange(1, n + 1, dtype=np.float64)
    recall = cum / safe_rel[:, None] * (n_rel[:, None] > 0)

    # every other metric only needs the hits: (row, rank) pairs, sorted by row then rank
    rows, ranks = np.nonzero(hits)
    before = cum[rows, ranks] - 1.0                              # hits before each hit
    prec_at = (before + 1) / (ranks + 1)
    prec_before = np.where(ranks == 0, 1.0, before / np.maximum(ranks, 1))
    ap = np.bincount(rows, (prec_before + prec_at) / 2, minlength=n_q) / safe_rel
    # interpolated precision at a recall level: the best precision at any hit reaching it
    hit_recall = (before + 1) / safe_rel[rows]
    interp = np.zeros((n_q, RECALL_LEVELS_11.size))
    for col, level in enumerate(RECALL_LEVELS_11):
        reached = hit_recall >= level - 1e-12
        np.maximum.at(interp[:, col], rows[reached], prec_at[reached])
    interp = interp.mean(axis=1)
    dcg = np.bincount(rows, 1.0 / np.log2(ranks + 2.0), minlength=n_q)
    ideal = np.cumsum(1.0 / np.log2(np.arange(max(1, int(n_rel.max(initial=1)))) + 2.0))
    idcg = ideal[np.maximum(n_rel.astype(np.int64), 1) - 1]
    found_at = {k: np.bincount(rows[ranks < k], minlength=n_q) for k in ks}
    first = np.zeros(n_q, np.int64)
    hit_rows, first_hit = np.unique(rows, return_index=True)
    first[hit_rows] = ranks[first_hit] + 1
    has_rel = n_rel > 0
    return [QueryScores(
        ap=float(ap[i]) if has_rel[i] else 0.0,
        ap_interp11=float(interp[i]) if has_rel[i] and n_kept[i] else 0.0,
        ndcg=float(dcg[i] / idcg[i]) if has_rel[i] else 0.0,
        precision_at={k: float(found_at[k][i]) / k for k in ks},
        recall_at={k: float(found_at[k][i]) / n_rel[i] if has_rel[i] else 0.0 for k in ks},
        top_k={k: float(found_at[k][i] > 0) for k in ks},
        first_relevant=int(first[i]) or None,
        n_relevant=int(n_rel[i]),
        precision=precision[i, :n_kept[i]],
        recall=recall[i, :n_kept[i]],
    ) for i in range(len(positives))]


def revisitop_precision_at_k(hits: np.ndarray, k: int) -> float:
    """mP@k as revisitop's ``compute_map`` computes it: with p the 1-based rank of the last
    relevant image (after junk removal), precision within the first min(p, k) positions, so a
    query with fewer relevant images than k is not penalised for them; 0 when nothing is found."""
    ranks = np.flatnonzero(hits) + 1
    if ranks.size == 0:
        return 0.0
    kq = min(int(ranks.max()), k)
    return float(np.count_nonzero(ranks <= kq)) / kq
