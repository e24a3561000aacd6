"""Exact search: all scores by one matrix product per block of queries (the reference every
approximate index is measured against)."""
from __future__ import annotations

import numpy as np

from core.index.base import check_metric

QUERY_BLOCK = 1024          # queries per matrix product, bounds memory of the score matrix


class ExactIndex:
    """Brute-force search: all scores by one matrix product per block of queries."""

    def __init__(self, vectors: np.ndarray, metric: str = "cosine") -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.metric = check_metric(metric)
        self._vectors64: np.ndarray | None = None      # Euclidean only: float64 avoids cancellation

    def _gallery64(self) -> np.ndarray:
        if self._vectors64 is None:
            self._vectors64 = self.vectors.astype(np.float64)
        return self._vectors64

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """[q, n] cosine similarities or Euclidean distances."""
        q = np.atleast_2d(queries).astype(np.float32)
        if self.metric == "cosine":
            return q @ self.vectors.T
        # |q|² + |v|² − 2 q·v in float64: in float32 identical vectors end about 5e-4 apart
        q64, v64 = q.astype(np.float64), self._gallery64()
        d2 = np.einsum("ij,ij->i", q64, q64)[:, None] + np.einsum("ij,ij->i", v64, v64)[None, :] - 2.0 * (q64 @ v64.T)
        return np.sqrt(np.maximum(d2, 0.0)).astype(np.float32)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` [q, k] indices and scores, best first."""
        q = np.atleast_2d(queries)
        k = min(k, len(self))
        out_i = np.empty((q.shape[0], k), np.int64)
        out_s = np.empty((q.shape[0], k), np.float32)
        for start in range(0, q.shape[0], QUERY_BLOCK):
            s = self.scores(q[start:start + QUERY_BLOCK])
            key = -s if self.metric == "cosine" else s
            part = np.argpartition(key, k - 1, axis=1)[:, :k] if k < len(self) else np.tile(np.arange(len(self)), (s.shape[0], 1))
            order = np.take_along_axis(key, part, 1).argsort(axis=1, kind="stable")
            idx = np.take_along_axis(part, order, 1)
            out_i[start:start + s.shape[0]] = idx
            out_s[start:start + s.shape[0]] = (np.take_along_axis(s, idx, 1) if self.metric == "cosine"
                                               else self._distances(q[start:start + QUERY_BLOCK], idx))
        return out_i, out_s

    def _distances(self, queries: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Euclidean distances of the chosen pairs by differences, not by the |a|²+|b|²−2ab
        expansion, whose float32 cancellation leaves about 5e-4 between identical vectors."""
        diff = self.vectors[idx] - np.atleast_2d(queries).astype(np.float32)[:, None, :]
        return np.sqrt(np.einsum("qkd,qkd->qk", diff, diff))

    def rank_all(self, queries: np.ndarray) -> np.ndarray:
        """Full rankings [q, n] (int32), best first, ties broken by gallery order."""
        s = self.scores(queries)
        key = -s if self.metric == "cosine" else s
        return np.argsort(key, axis=1, kind="stable").astype(np.int32)
