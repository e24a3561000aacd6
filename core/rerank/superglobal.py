"""Global-feature re-ranking of SuperGlobal (Shao et al., "Global Features are All You Need for
Image Retrieval and Reranking", ICCV 2023): descriptor augmentation and query refinement inside
the query's own top-M only.

DBA and alpha-QE (``core.rerank.expansion``) refine vectors with neighbours from the whole gallery,
which needs the gallery's k-NN graph and an augmented copy of it. SuperGlobal does the same
within the top-M list of one query, so it needs nothing but that list and its vectors: any
index (exact or Annoy) can produce it, and nothing is built per gallery.

For a query q and its top-M vectors x_1..x_M:

1. each x_i is replaced by x̃_i, the weighted mean of itself (weight 1) and its K nearest
   neighbours among the top-M (weight beta·cosine);
2. s1_i = q·x̃_i;
3. the refined query q̃ is the element-wise maximum of the K best x̃ by s1;
4. the top-M is ordered by (s1_i + q̃·x̃_i) / 2; the tail keeps its order.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from core.rerank import rules
from core.rerank.base import Reranker, register
from core.rerank.tunable import RULE, tunable


def augment_within(vectors: np.ndarray, k: int, beta: float) -> np.ndarray:
    """x̃ [m, d]: each row of ``vectors`` [m, d] averaged with its ``k`` most similar other rows,
    weights 1 for itself and beta·cosine for each neighbour (not re-normalised, as in the paper)."""
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    k = min(k, len(vectors) - 1)
    if k <= 0:
        return vectors.astype(np.float32)
    nn = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < len(vectors) - 1 else np.argsort(-sims, axis=1)[:, :k]
    weights = beta * np.take_along_axis(sims, nn, axis=1)                    # [m, k]
    total = vectors + np.einsum("mk,mkd->md", weights, vectors[nn])
    return (total / (1.0 + weights.sum(axis=1, keepdims=True))).astype(np.float32)


def superglobal_scores(query: np.ndarray, top: np.ndarray, k: int, beta: float) -> np.ndarray:
    """Scores [m] of the top-M vectors ``top`` [m, d] for one ``query`` [d] (higher first)."""
    augmented = augment_within(top, k, beta)
    s1 = augmented @ query
    best = np.argsort(-s1, kind="stable")[:max(1, min(k, len(top)))]
    refined = augmented[best].max(axis=0)
    return (s1 + augmented @ refined) / 2.0


def superglobal_rerank(queries: np.ndarray, database: np.ndarray, ranking: np.ndarray, m: int, k: int,
                       beta: float) -> np.ndarray:
    """Rankings [q, n] with the first ``m`` of each row of ``ranking`` reordered by
    ``superglobal_scores`` and the rest unchanged (``ranking`` may hold only the top of a
    search, as an Annoy search gives)."""
    out = np.array(ranking, copy=True)
    m = min(m, ranking.shape[1])
    for r in range(len(queries)):
        head = ranking[r, :m]
        scores = superglobal_scores(queries[r], database[head], k, beta)
        out[r, :m] = head[np.argsort(-scores, kind="stable")]
    return out


@register("superglobal", "SuperGlobal re-ranking (refinement within the top-M)")
@dataclass(frozen=True)
class SuperGlobal(Reranker):
    """top_n: the M images re-ranked (0: ``rules.superglobal_m`` of the gallery size);
    sg_k: neighbours of the augmentation and of the refined query (0: ``rules.superglobal_k``);
    sg_beta: weight of a neighbour per unit of cosine."""

    top_n: int = tunable(0)
    sg_k: int = tunable(0, f"SuperGlobal neighbours ({RULE})")
    sg_beta: float = 0.15
    head_only: ClassVar[bool] = True
    helps: ClassVar[str] = "needs only the top-M of any index, exact or approximate; nothing built per gallery"

    def for_gallery(self, n_images: int) -> SuperGlobal:
        return replace(self, top_n=self.top_n or rules.superglobal_m(n_images),
                       sg_k=self.sg_k or rules.superglobal_k(n_images))

    def label(self) -> str:
        return f"sg{self.top_n or 'auto'}k{self.sg_k or 'auto'}"

    def rerank(self, ranking, queries, regions, ctx, prepared):
        s = self.for_gallery(len(ctx.embeddings.ids))
        return (superglobal_rerank(queries, ctx.embeddings.vectors, ranking, s.top_n, s.sg_k, s.sg_beta),
                [{} for _ in regions])
