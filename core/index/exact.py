"""Exact search: all scores by one matrix product per block of queries (the reference every
approximate index is measured against).

``storage="float16"`` keeps the gallery in half the memory: scores are first computed in half
precision (PyTorch; NumPy has no float16 matrix product and converting blocks is 25x slower),
accurate to about 2e-4, then the best ``k + RESCORE_MARGIN`` candidates are scored again in
float32 from their stored values, so the top k is exact for the stored vectors. What rounding
the vectors to float16 does to rankings is measured in ``benchmarks/bench_search.py``.
"""
from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass

import numpy as np

from core.cache.descriptors import Embeddings
from core.index.base import RANK_DEPTH, Index, IndexFigures, IndexParams, check_metric

QUERY_BLOCK = 1024          # queries per matrix product, bounds memory of the score matrix
# ... and at most this many bytes of scores per block: a recall tuning's 100 sample queries against
# 1M images in one block peaked at 2.9 GB of anonymous memory (scores, their negation, argpartition's
# int64 indices); in blocks of 128 MB, about 0.5 GB, for a few more passes over the gallery.
SCORE_BLOCK_BYTES = 128 * 2**20
STORAGES = ("float32", "float16")
RESCORE_MARGIN = 64         # candidates beyond k re-scored in float32 with float16 storage
# Products of at most this many multiply-adds run on one BLAS thread. Measured on 2 cores at load
# average 12-18, one query (median of 20): against 1,000 x 1280, 21 ms with OpenBLAS's 2 threads
# against 0.06 ms with one; at 2,000 / 5,000 / 10,000 / 20,000 / 50,000 x 1280, one thread 0.1 /
# 0.6 / 1.4 / 13 / 24-30 ms, two threads 0.06-16 / 0.15-16 / 20-23 / 22-34 / 24-28 ms: on busy
# cores the threads' hand-over dominates products of this size, and one thread is never slower
# by much. Larger products (batches of queries, huge galleries) keep the library's threads.
SINGLE_THREAD_MACS = 50_000 * 1280


@functools.cache
def _blas():
    import threadpoolctl

    return threadpoolctl.ThreadpoolController()


def _blas_threads_for(macs: int):
    """One BLAS thread for a small product, the library's default otherwise."""
    return _blas().limit(limits=1, user_api="blas") if macs <= SINGLE_THREAD_MACS else contextlib.nullcontext()


@dataclass(frozen=True)
class ExactParams(IndexParams):
    """Exact search has nothing to set."""


class ExactIndex(Index):
    """Brute-force search: all scores by one matrix product per block of queries."""

    name = "exact"
    title = "exact (float32)"
    Params = ExactParams
    exact = True
    storage_of_class = "float32"

    def __init__(self, vectors: np.ndarray, metric: str = "cosine", storage: str = "float32") -> None:
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
        start = time.perf_counter()
        self.storage = storage
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float16 if storage == "float16" else np.float32)
        self.metric = check_metric(metric)
        self._vectors64: np.ndarray | None = None      # Euclidean only: float64 avoids cancellation
        self.build_seconds = time.perf_counter() - start

    @classmethod
    def open(cls, emb: Embeddings, metric: str, params: IndexParams) -> ExactIndex:
        return cls(emb.vectors, metric, cls.storage_of_class)

    def figures(self) -> IndexFigures:
        return IndexFigures(self.name, self.metric, ExactParams(), self.build_seconds)

    def _gallery64(self) -> np.ndarray:
        if self._vectors64 is None:
            self._vectors64 = self.vectors.astype(np.float64)
        return self._vectors64

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def query_block(self) -> int:
        """Queries scored at a time: at most QUERY_BLOCK, and at most SCORE_BLOCK_BYTES of scores."""
        return max(1, min(QUERY_BLOCK, SCORE_BLOCK_BYTES // (4 * max(1, len(self)))))

    @property
    def nbytes(self) -> int:
        return int(self.vectors.nbytes)

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """[q, n] cosine similarities or Euclidean distances (with float16 storage: computed in
        half precision, about 2e-4 off; ``search`` re-scores its top k exactly)."""
        q = np.atleast_2d(queries).astype(np.float32)
        if self.storage == "float16":
            return self._half_scores(q)
        with _blas_threads_for(q.shape[0] * self.vectors.size):
            if self.metric == "cosine":
                return q @ self.vectors.T
            # |q|² + |v|² − 2 q·v in float64: in float32 identical vectors end about 5e-4 apart
            q64, v64 = q.astype(np.float64), self._gallery64()
            products = q64 @ v64.T
        d2 = np.einsum("ij,ij->i", q64, q64)[:, None] + np.einsum("ij,ij->i", v64, v64)[None, :] - 2.0 * products
        return np.sqrt(np.maximum(d2, 0.0)).astype(np.float32)

    def _half_scores(self, q: np.ndarray) -> np.ndarray:
        import torch

        v = torch.from_numpy(self.vectors)
        dots = (torch.from_numpy(q).half() @ v.T).float().numpy()
        if self.metric == "cosine":
            return dots
        norms = np.einsum("ij,ij->i", self.vectors, self.vectors, dtype=np.float32)
        d2 = np.einsum("ij,ij->i", q, q)[:, None] + norms[None, :] - 2.0 * dots
        return np.sqrt(np.maximum(d2, 0.0))

    def _top(self, s: np.ndarray, k: int) -> np.ndarray:
        """[q, k] indices of the best ``k`` scores of each row, best first."""
        key = -s if self.metric == "cosine" else s
        part = np.argpartition(key, k - 1, axis=1)[:, :k] if k < s.shape[1] else np.tile(np.arange(s.shape[1]), (s.shape[0], 1))
        order = np.take_along_axis(key, part, 1).argsort(axis=1, kind="stable")
        return np.take_along_axis(part, order, 1)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` [q, k] indices and scores, best first."""
        q = np.atleast_2d(queries)
        k = min(k, len(self))
        out_i = np.empty((q.shape[0], k), np.int64)
        out_s = np.empty((q.shape[0], k), np.float32)
        step = self.query_block()
        for start in range(0, q.shape[0], step):
            block = q[start:start + step]
            s = self.scores(block)
            rows = slice(start, start + s.shape[0])
            if self.storage == "float16":
                candidates = self._top(s, min(len(self), k + RESCORE_MARGIN))
                for row, (v, c) in enumerate(zip(block, candidates)):
                    out_i[start + row], out_s[start + row] = self._rescored(v, c, k)
                continue
            idx = self._top(s, k)
            out_i[rows] = idx
            out_s[rows] = np.take_along_axis(s, idx, 1) if self.metric == "cosine" else self._distances(block, idx)
        return out_i, out_s

    def _rescored(self, query: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` of one query's ``candidates`` and their scores, computed in float32 from
        the stored float16 values (one row at a time: memory stays one candidate block)."""
        cand = self.vectors[candidates].astype(np.float32)
        q = np.asarray(query, np.float32)
        exact = cand @ q if self.metric == "cosine" else np.sqrt(np.einsum("kd,kd->k", cand - q, cand - q))
        order = np.argsort(-exact if self.metric == "cosine" else exact, kind="stable")[:k]
        return candidates[order], exact[order]

    def _distances(self, queries: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Euclidean distances of the chosen pairs by differences, not by the |a|²+|b|²−2ab
        expansion, whose float32 cancellation leaves about 5e-4 between identical vectors."""
        diff = self.vectors[idx] - np.atleast_2d(queries).astype(np.float32)[:, None, :]
        return np.sqrt(np.einsum("qkd,qkd->qk", diff, diff))

    def rank_all(self, queries: np.ndarray, depth: int = RANK_DEPTH) -> np.ndarray:
        """Full rankings [q, n] (int32), best first, ties broken by gallery order: exact to the
        end, whatever ``depth``."""
        q = np.atleast_2d(queries)
        out = np.empty((q.shape[0], len(self)), np.int32)
        step = self.query_block()
        for start in range(0, q.shape[0], step):
            s = self.scores(q[start:start + step])
            out[start:start + len(s)] = np.argsort(-s if self.metric == "cosine" else s, axis=1, kind="stable")
        return out


class Exact16Index(ExactIndex):
    """Exact search over float16 storage: half the memory, the top k re-scored in float32."""

    name = "exact16"
    title = "exact (float16 storage)"
    storage_of_class = "float16"
