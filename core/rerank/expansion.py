"""Query expansion and database-side augmentation over descriptor matrices (inputs:
L2-normalised rows, rankings best first).

- average QE (Chum et al. 2007) and alpha-QE (Radenović et al. 2018): the query plus its top n,
  weighted by similarity^alpha, searched again;
- DBA (Arandjelović & Zisserman 2012): every gallery vector replaced by the same weighted mean
  over its own neighbours, computed once per gallery; queries then search the augmented set.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from core.embed.pooling import l2_normalise
from core.index import ExactIndex
from core.rerank import rules
from core.rerank.base import Reranker, register
from core.rerank.tunable import RULE, tunable


def weighted_neighbour_mean(vectors: np.ndarray, neighbours: np.ndarray, alpha: float) -> np.ndarray:
    """Each row of ``vectors`` [q, d] plus its ``neighbours`` [q, n, d], weighted by
    max(0, cosine)^alpha (alpha = 0: plain sum, every neighbour weight 1; the row itself always
    weighs 1), L2-normalised. The common core of QE and DBA."""
    sims = np.einsum("qd,qnd->qn", vectors, neighbours)
    weights = np.maximum(sims, 0.0) ** alpha if alpha > 0 else np.ones_like(sims)
    return l2_normalise(vectors + np.einsum("qn,qnd->qd", weights, neighbours))


def query_expansion(queries: np.ndarray, database: np.ndarray, ranking: np.ndarray, n: int,
                    alpha: float = 0.0) -> np.ndarray:
    """Expanded queries [q, d]: each query with its top ``n`` of ``ranking`` [q, >= n]
    (average QE for alpha = 0, alpha-QE otherwise). Search again with the result."""
    if n <= 0:
        return np.asarray(queries, np.float32)
    return weighted_neighbour_mean(queries, database[ranking[:, :n]], alpha)


def database_augmentation(database: np.ndarray, n: int, alpha: float = 0.0) -> np.ndarray:
    """DBA: every gallery vector [N, d] replaced by itself plus its ``n`` nearest other gallery
    vectors, weighted as in ``weighted_neighbour_mean``. Queries then search the result."""
    idx, _ = ExactIndex(database, "cosine").search(database, n + 1)
    others = np.array([[j for j in row if j != i][:n] for i, row in enumerate(idx)], dtype=np.int64)
    return weighted_neighbour_mean(database, database[others], alpha)


def research(queries: np.ndarray, database: np.ndarray) -> np.ndarray:
    """Full cosine rankings [q, N] of (expanded) ``queries`` over (augmented) ``database``."""
    return ExactIndex(database, "cosine").rank_all(queries)


@register("aqe", "average query expansion")
@dataclass(frozen=True)
class AverageQE(Reranker):
    """qe_n: neighbours added to the query (0: ``rules.qe_n`` of the gallery size)."""

    qe_n: int = tunable(0, f"neighbours added by (alpha-)QE ({RULE})")

    def for_gallery(self, n_images: int) -> AverageQE:
        return replace(self, qe_n=self.qe_n or rules.qe_n(n_images))

    def label(self) -> str:
        return f"aqe{self.qe_n}"

    def rerank(self, ranking, queries, regions, ctx, prepared):
        expanded = query_expansion(queries, ctx.embeddings.vectors, ranking, self.qe_n, 0.0)
        return ctx.rank(expanded), [{} for _ in regions]


@register("alpha_qe", "alpha query expansion")
@dataclass(frozen=True)
class AlphaQE(Reranker):
    """qe_n: neighbours added to the query (0: ``rules.qe_n``); alpha: similarity exponent of
    their weights."""

    qe_n: int = tunable(0)
    alpha: float = tunable(3.0, "alpha-QE/DBA similarity exponent (default {default:g})")

    def for_gallery(self, n_images: int) -> AlphaQE:
        return replace(self, qe_n=self.qe_n or rules.qe_n(n_images))

    def label(self) -> str:
        return f"aqe{self.qe_n}a{self.alpha:g}"

    def rerank(self, ranking, queries, regions, ctx, prepared):
        expanded = query_expansion(queries, ctx.embeddings.vectors, ranking, self.qe_n, self.alpha)
        return ctx.rank(expanded), [{} for _ in regions]


@register("dba", "database-side augmentation")
@dataclass(frozen=True)
class DBA(Reranker):
    """dba_n: neighbours averaged into each gallery vector (0: ``rules.dba_n``); alpha: their
    weights' exponent."""

    dba_n: int = tunable(0, f"neighbours averaged by DBA ({RULE})")
    alpha: float = tunable(3.0)

    def for_gallery(self, n_images: int) -> DBA:
        return replace(self, dba_n=self.dba_n or rules.dba_n(n_images))

    def label(self) -> str:
        return f"dba{self.dba_n}a{self.alpha:g}"

    def prepare(self, ctx):
        return database_augmentation(ctx.embeddings.vectors, self.dba_n, self.alpha)

    def rerank(self, ranking, queries, regions, ctx, prepared):
        return research(queries, prepared), [{} for _ in regions]


@register("dba+alpha_qe", "DBA + alpha-QE")
@dataclass(frozen=True)
class DBAAlphaQE(Reranker):
    """DBA on the gallery, then alpha-QE of the query over the augmented vectors (0: the
    ``rules`` of the gallery size for dba_n and qe_n)."""

    dba_n: int = tunable(0)
    qe_n: int = tunable(0)
    alpha: float = tunable(3.0)

    def for_gallery(self, n_images: int) -> DBAAlphaQE:
        return replace(self, dba_n=self.dba_n or rules.dba_n(n_images), qe_n=self.qe_n or rules.dba_n(n_images))

    def label(self) -> str:
        return f"dba{self.dba_n}+aqe{self.qe_n}a{self.alpha:g}"

    def state_key(self) -> tuple:
        return (self.dba_n, self.alpha)

    def prepare(self, ctx):
        return database_augmentation(ctx.embeddings.vectors, self.dba_n, self.alpha)

    def rerank(self, ranking, queries, regions, ctx, prepared):
        index = ExactIndex(prepared, "cosine")
        expanded = query_expansion(queries, prepared, index.rank_all(queries), self.qe_n, self.alpha)
        return index.rank_all(expanded), [{} for _ in regions]
