"""HNSW (hnswlib): a graph index saved beside the descriptors it was built from, loaded once per
process, with ``ef`` chosen at build time by measured recall against exact search.

The same guarantees as every saved index (``core.index.stored``): refused when absent, stale,
built for other descriptors, or when its file is not the one written. hnswlib cannot
memory-map its file: each process holds one copy in memory (about the size of the vectors plus
M links per item), shared by every session of that process.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.index.base import IndexParams
from core.index.stored import StoredIndex

SPACE = {"cosine": "ip", "euclidean": "l2"}
# hnswlib's ef is a setting of the index, not of a query: setting it and searching happen under
# one lock, so that concurrent searches (app sessions) each get the effort they asked for.
# Queries take well under a millisecond, so serialising them costs nothing an app would notice.
_QUERY_LOCK = threading.Lock()
# Rows added at a time: hnswlib converts the array it is given to one float32 copy, which at 100k x
# 1280 added at once raised the build's peak memory to 1.18 GB for a 0.53 GB graph
# (benchmarks/bench_scale_index.py).
ADD_CHUNK = 10_000


@dataclass(frozen=True)
class HnswParams(IndexParams):
    """Parameters of an HNSW index (hnswlib); ``ef`` None means "chosen at build time by measured
    recall". M 16 and ef_construction 100: the graph of benchmarks/bench_search.py, whose ef
    sweep reached recall@10 0.98 at 1M x 512 (artifacts/bench/search.json)."""

    effort = "ef"
    minimums = {"m": 2, "ef_construction": 1, "ef": 1}
    m: int = 16
    ef_construction: int = 100
    ef: int | None = None


class HnswIndex(StoredIndex):
    """An hnswlib index of one gallery under one embedding config."""

    name = "hnsw"
    title = "HNSW"
    Params = HnswParams
    packages = ("hnswlib",)
    efforts = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)

    @classmethod
    def file_name(cls, metric: str, params: HnswParams) -> str:
        return f"hnsw-{metric}-m{params.m}-efc{params.ef_construction}.bin"

    @classmethod
    def _build(cls, vectors: np.ndarray, metric: str, params: HnswParams, strata: Sequence[int] = (0,),
               seed: int = 1234) -> Any:
        import hnswlib

        n, dim = vectors.shape
        index = hnswlib.Index(space=SPACE[metric], dim=dim)
        index.init_index(max_elements=max(n, 1), M=params.m, ef_construction=params.ef_construction, random_seed=seed)
        for start in range(0, n, ADD_CHUNK):      # hnswlib copies its input: one chunk, not the whole store
            rows = np.ascontiguousarray(vectors[start:start + ADD_CHUNK], dtype=np.float32)
            index.add_items(rows, np.arange(start, start + len(rows)), num_threads=-1)
        return index

    @classmethod
    def _save(cls, native: Any, path: Path) -> None:
        native.save_index(str(path))

    @classmethod
    def _load(cls, path: Path, metric: str, dim: int, n_items: int) -> Any:
        import hnswlib

        index = hnswlib.Index(space=SPACE[metric], dim=dim)
        index.load_index(str(path), max_elements=n_items)
        return index

    def _search(self, queries: np.ndarray, k: int, effort: int) -> tuple[np.ndarray, np.ndarray]:
        """hnswlib searches with max(ef, k) candidates."""
        with _QUERY_LOCK:
            self.native.set_ef(max(k, effort or 64))
            labels, dist = self.native.knn_query(queries, k=k, num_threads=1 if len(queries) == 1 else -1)
        scores = 1.0 - dist if self.metric == "cosine" else np.sqrt(np.maximum(dist, 0.0))
        return labels.astype(np.int64), scores.astype(np.float32)
