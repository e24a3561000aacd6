"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017), with the query as one extra node of the gallery's k-NN graph.

Two images are k-reciprocal neighbours when each is among the other's k nearest; a true match
usually is, a look-alike often is not. Each image gets a sparse vector V over the gallery: its
(expanded) k-reciprocal set, weighted by exp(−distance) and summing to 1, then averaged over its
k2 nearest neighbours (local query expansion). The final distance mixes the Jaccard distance of
the V vectors with the original one: d = (1 − λ)·d_J + λ·d, with d = 1 − cosine.

The gallery's own vectors V are computed once per gallery (``KReciprocalGallery``); a query only
needs its k1 nearest gallery images and their neighbour lists, so its cost does not grow with the
gallery beyond one sparse product, and any index can give the neighbours. Queries never see each
other (the original mixes every probe into one graph; an interactive search has one query).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from core.index import ExactIndex
from core.rerank import rules
from core.rerank.base import Reranker, register
from core.rerank.tunable import RULE, tunable


def reciprocal_set(node: int, neighbours: np.ndarray, k: int) -> np.ndarray:
    """The k-reciprocal neighbours of ``node``: those j of its first k + 1 neighbours (itself
    included, at rank 0) that have ``node`` among their own first k + 1. ``neighbours`` [n, ≥ k+1]
    lists every node's nearest nodes, itself first."""
    forward = neighbours[node, :k + 1]
    return forward[(neighbours[forward, :k + 1] == node).any(axis=1)]


def expanded_set(node: int, neighbours: np.ndarray, k: int) -> np.ndarray:
    """``reciprocal_set`` with k plus the k/2-reciprocal sets of its members that share more than
    two thirds of their members with it (the expansion of Zhong et al.)."""
    base = reciprocal_set(node, neighbours, k)
    out = set(base.tolist())
    half = max(1, round(k / 2))
    for c in base:
        candidate = reciprocal_set(int(c), neighbours, half)
        if len(np.intersect1d(candidate, base)) > 2.0 / 3.0 * len(candidate):
            out.update(candidate.tolist())
    return np.array(sorted(out), np.int64)


def encode(members: np.ndarray, distances: np.ndarray, n: int) -> sp.csr_matrix:
    """One V row [1, n]: exp(−distance) on ``members``, normalised to sum 1."""
    weights = np.exp(-np.asarray(distances, np.float64))
    return sp.csr_matrix((weights / weights.sum(), (np.zeros(len(members), np.int64), members)), shape=(1, n))


@dataclass
class KReciprocalGallery:
    """Per-gallery part: the vectors, every node's neighbour list (itself first) and cosines,
    and its V row after local query expansion."""

    database: np.ndarray          # [n, d]
    neighbours: np.ndarray        # [n, k1 + 1] gallery indices
    cosines: np.ndarray           # [n, k1 + 1] cosine with each
    vectors: sp.csr_matrix        # [n, n] V rows
    k1: int
    k2: int
    by_column: sp.csc_matrix | None = None     # the same V, by column: the inverted file of the Jaccard overlap

    def __post_init__(self) -> None:
        if self.by_column is None:
            self.by_column = self.vectors.tocsc()

    def overlap(self, v_query: sp.csr_matrix) -> np.ndarray:
        """Σ_j min(V_q[j], V_i[j]) for every gallery image i [n], touching only the columns
        where the query's V is non-zero (an inverted file over V, as Zhong et al. compute it)."""
        q = v_query.tocsr()
        cols = self.by_column[:, q.indices].tocoo()
        weights = np.minimum(cols.data, q.data[cols.col])
        return np.bincount(cols.row, weights=weights, minlength=self.vectors.shape[0])


def _self_first(idx: np.ndarray, sims: np.ndarray) -> None:
    """Put each row's own index first in its neighbour list (duplicates may outrank it)."""
    for i in range(len(idx)):
        if idx[i, 0] != i:
            where = np.flatnonzero(idx[i] == i)
            j = int(where[0]) if len(where) else idx.shape[1] - 1
            idx[i, 1:j + 1], sims[i, 1:j + 1] = idx[i, :j].copy(), sims[i, :j].copy()
            idx[i, 0], sims[i, 0] = i, 1.0


def _expand(v: sp.csr_matrix, first: np.ndarray, own: sp.csr_matrix | None = None) -> sp.csr_matrix:
    """Local query expansion: the mean of V rows ``first`` (and ``own``, a row not in ``v``)."""
    rows = v[first]
    total = rows.sum(axis=0) + (own.toarray() if own is not None else 0.0)
    return sp.csr_matrix(total / (len(first) + (own is not None)))


def prepare_gallery(database: np.ndarray, k1: int, k2: int,
                    neighbours: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]] | None = None
                    ) -> KReciprocalGallery:
    """Neighbour lists and V rows of gallery vectors [n, d]; ``neighbours(vectors, k)`` gives
    the k-NN lists and cosines (default exact, in blocks; an Annoy index's for large galleries,
    its missing entries (-1) dropped from the reciprocal sets)."""
    n = len(database)
    k1 = max(1, min(k1, n - 1))
    search = neighbours or ExactIndex(database, "cosine").search
    idx, sims = search(database, k1 + 1)
    missing = np.asarray(idx) < 0                     # an approximate list that came back short
    idx = np.where(missing, np.arange(n)[:, None], idx)
    sims = np.where(missing, -1.0, sims).astype(np.float32)
    _self_first(idx, sims)
    rows = [encode(m, 1.0 - database[m] @ database[i], n)
            for i in range(n) for m in [expanded_set(i, idx, k1)]]
    v = sp.vstack(rows).tocsr()
    k2 = max(1, min(k2, k1 + 1))
    expansion = sp.csr_matrix((np.full(n * k2, 1.0 / k2), (np.repeat(np.arange(n), k2), idx[:, :k2].ravel())),
                              shape=(n, n))
    return KReciprocalGallery(np.asarray(database, np.float32), idx, sims, (expansion @ v).tocsr(), k1, k2)


def query_vector(query: np.ndarray, top: np.ndarray, gallery: KReciprocalGallery) -> sp.csr_matrix:
    """V row [1, n] of a query outside the graph, from its nearest gallery images ``top``
    (at least k1, best first): gallery image j is a reciprocal neighbour when the query would
    enter j's own list, i.e. is at least as close to j as j's k1-th neighbour."""
    k1, n = gallery.k1, len(gallery.database)
    forward = top[:k1]
    cos = gallery.database[forward] @ query
    reciprocal = forward[cos >= gallery.cosines[forward, k1]]
    members = set(reciprocal.tolist())
    half = max(1, round(k1 / 2))
    for c in reciprocal:
        candidate = reciprocal_set(int(c), gallery.neighbours, half)
        if len(np.intersect1d(candidate, reciprocal)) > 2.0 / 3.0 * len(candidate):
            members.update(candidate.tolist())
    if not members:                                 # no reciprocal neighbour: the nearest image alone
        members = {int(top[0])}
    chosen = np.array(sorted(members), np.int64)
    own = encode(chosen, 1.0 - gallery.database[chosen] @ query, n)
    return _expand(gallery.vectors, top[:gallery.k2 - 1], own) if gallery.k2 > 1 else own


def jaccard_distance(v_query: sp.csr_matrix, v_rows: sp.csr_matrix) -> np.ndarray:
    """1 − Σ min / Σ max of one V row with each of ``v_rows`` (rows summing to 1, so
    Σ max = 2 − Σ min)."""
    q = np.asarray(v_query.toarray()).ravel()
    rows = v_rows.tocsr()
    mins = rows.copy()
    mins.data = np.minimum(rows.data, q[rows.indices])
    return jaccard_of_overlap(np.asarray(mins.sum(axis=1)).ravel())


def jaccard_of_overlap(overlap: np.ndarray) -> np.ndarray:
    """Jaccard distance from Σ min of rows that each sum to 1: 1 − m / (2 − m)."""
    return 1.0 - overlap / (2.0 - overlap)


def kreciprocal_rerank(queries: np.ndarray, ranking: np.ndarray, gallery: KReciprocalGallery, lam: float,
                       m: int | None = None) -> np.ndarray:
    """Rankings [q, n] with the first ``m`` (default all) of each row of ``ranking`` ordered by
    (1 − λ)·Jaccard + λ·(1 − cosine), lowest first; the rest keep their order."""
    out = np.array(ranking, copy=True)
    m = ranking.shape[1] if m is None else min(m, ranking.shape[1])
    for r, q in enumerate(queries):
        head = ranking[r, :m]
        v = query_vector(q, ranking[r], gallery)
        jaccard = jaccard_of_overlap(gallery.overlap(v)[head])
        dist = (1.0 - lam) * jaccard + lam * (1.0 - gallery.database[head] @ q)
        out[r, :m] = head[np.argsort(dist, kind="stable")]
    return out


@register("kreciprocal", "k-reciprocal re-ranking (Jaccard of k-reciprocal sets)")
@dataclass(frozen=True)
class KReciprocal(Reranker):
    """k1: reciprocal neighbours (0: ``rules.kreciprocal_k1`` of the gallery size); k2: local
    query expansion (0: ``rules.kreciprocal_k2`` of k1); kr_lambda: weight of the original
    distance; top_n: images re-ranked (0: ``rules.kreciprocal_head``, at most 1000)."""

    k1: int = tunable(0, f"k-reciprocal neighbours ({RULE})")
    k2: int = 0
    kr_lambda: float = tunable(0.3, "k-reciprocal weight of the original distance (default {default:g})")
    top_n: int = tunable(0)
    head_only: ClassVar[bool] = True
    helps: ClassVar[str] = "the gallery's k-NN graph is built once; a query needs only its top list"

    def for_gallery(self, n_images: int) -> KReciprocal:
        k1 = self.k1 or rules.kreciprocal_k1(n_images)
        return replace(self, k1=k1, k2=self.k2 or rules.kreciprocal_k2(k1),
                       top_n=self.top_n or rules.kreciprocal_head(n_images))

    def label(self) -> str:
        return f"kr{self.k1 or 'auto'}"

    def prepare(self, ctx):
        s = self.for_gallery(len(ctx.embeddings.ids))
        return prepare_gallery(ctx.embeddings.vectors, s.k1, s.k2, ctx.neighbours)

    def state_key(self) -> tuple:
        return (self.k1, self.k2)

    def rerank(self, ranking, queries, regions, ctx, prepared):
        return kreciprocal_rerank(queries, ranking, prepared, self.kr_lambda, self.top_n or None), [{} for _ in regions]
