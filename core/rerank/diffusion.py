"""Diffusion (Iscen et al. 2017): ranking by a random walk on the mutual k-NN graph of the
gallery, which follows the manifold of a landmark past views that look unlike the query."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import cg

from core.index import ExactIndex
from core.rerank import rules
from core.rerank.base import Reranker, rank_by_scores, register
from core.rerank.tunable import RULE, tunable

ITERATIONS = 20     # conjugate-gradient steps per query


def knn_affinity(database: np.ndarray, k: int, gamma: float) -> sp.csr_matrix:
    """Symmetric affinity [N, N] of the mutual k-NN graph: max(0, cosine)^gamma where i and j are
    each among the other's k nearest neighbours, zero elsewhere and on the diagonal."""
    n = database.shape[0]
    k = min(k, n - 1)
    idx, sims = ExactIndex(database, "cosine").search(database, k + 1)
    rows = np.repeat(np.arange(n), k + 1)
    a = sp.csr_matrix((np.maximum(sims.ravel(), 0.0) ** gamma, (rows, idx.ravel())), shape=(n, n))
    a.setdiag(0.0)
    a.eliminate_zeros()
    return a.minimum(a.T).tocsr()


def diffusion_scores(queries: np.ndarray, database: np.ndarray, affinity: sp.csr_matrix, k: int,
                     alpha: float, gamma: float, iterations: int = ITERATIONS) -> np.ndarray:
    """Diffusion ranking scores [q, N]: f solving (I − alpha·S) f = y by conjugate gradient,
    with S = D^-1/2 A D^-1/2 the normalised ``affinity`` and y the query's max(0, cosine)^gamma
    to its ``k`` nearest gallery vectors (zero elsewhere)."""
    degree = np.asarray(affinity.sum(axis=1)).ravel()
    inv_sqrt = sp.diags(1.0 / np.sqrt(np.maximum(degree, 1e-12)))
    system = sp.identity(affinity.shape[0]) - alpha * (inv_sqrt @ affinity @ inv_sqrt)
    idx, sims = ExactIndex(database, "cosine").search(queries, k)
    out = np.zeros((queries.shape[0], database.shape[0]), np.float32)
    for row in range(queries.shape[0]):
        y = np.zeros(database.shape[0])
        y[idx[row]] = np.maximum(sims[row], 0.0) ** gamma
        out[row], _ = cg(system, y, maxiter=iterations)
    return out


@register("diffusion", "diffusion")
@dataclass(frozen=True)
class Diffusion(Reranker):
    """diffusion_k: neighbours of the k-NN graph and of the query's entry into it (0:
    ``rules.diffusion_k`` of the gallery size); diffusion_alpha, diffusion_gamma: the walk's
    restart and the affinity exponent."""

    diffusion_k: int = tunable(0, f"k of the diffusion graph ({RULE})")

    diffusion_alpha: float = 0.99
    diffusion_gamma: float = 3.0

    def for_gallery(self, n_images: int) -> Diffusion:
        return replace(self, diffusion_k=self.diffusion_k or rules.diffusion_k(n_images))

    def prepare(self, ctx):
        return knn_affinity(ctx.embeddings.vectors, self.diffusion_k, self.diffusion_gamma)

    def label(self) -> str:
        return f"diff{self.diffusion_k}"

    def state_key(self) -> tuple:
        return (self.diffusion_k, self.diffusion_gamma)

    def rerank(self, ranking, queries, regions, ctx, prepared):
        scores = diffusion_scores(queries, ctx.embeddings.vectors, prepared, self.diffusion_k,
                                  self.diffusion_alpha, self.diffusion_gamma)
        return rank_by_scores(scores, ranking), [{} for _ in regions]
