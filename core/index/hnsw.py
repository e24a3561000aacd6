"""HNSW (hnswlib): a graph index saved beside the descriptors it was built from, loaded once per
process, with ``ef`` chosen at build time by measured recall against exact search.

The same guarantees as the Annoy index (``core.index.stored``): refused when absent, stale,
built for other descriptors, or when its file is not the one written. hnswlib cannot
memory-map its file: each process holds one copy in memory (about the size of the vectors plus
M links per item), shared by every session of that process.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.config import EmbeddingConfig, HnswParams
from core.index.exact import ExactIndex
from core.index.stored import check_stored, load_once, measure_recall, stored_meta, write_stored

SPACE = {"cosine": "ip", "euclidean": "l2"}
EF_CANDIDATES = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
# hnswlib's ef is a setting of the index, not of a query: setting it and searching happen under
# one lock, so that concurrent searches (app sessions) each get the effort they asked for.
# Queries take well under a millisecond, so serialising them costs nothing an app would notice.
_QUERY_LOCK = threading.Lock()


@dataclass
class HnswIndex:
    """An hnswlib index of one gallery under one embedding config."""

    index: object
    metric: str
    meta: dict
    path: Path

    @staticmethod
    def file_name(params: HnswParams) -> str:
        return f"hnsw-{params.metric}-m{params.m}-efc{params.ef_construction}.bin"

    @classmethod
    def build(cls, vectors: np.ndarray, directory: Path, config: EmbeddingConfig, params: HnswParams,
              ids: list[str], seed: int = 1234) -> HnswIndex:
        import hnswlib

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        start = time.perf_counter()
        index = hnswlib.Index(space=SPACE[params.metric], dim=dim)
        index.init_index(max_elements=max(n, 1), M=params.m, ef_construction=params.ef_construction, random_seed=seed)
        index.add_items(vectors, np.arange(n), num_threads=-1)
        build_seconds = time.perf_counter() - start
        path = Path(directory) / cls.file_name(params)

        def describe() -> HnswIndex:
            meta = stored_meta(path, config, ids, dim, params.metric, m=params.m,
                               ef_construction=params.ef_construction, build_seconds=build_seconds)
            hnsw = cls(index, params.metric, meta, path)
            meta.update(choose_ef(hnsw, ExactIndex(vectors, params.metric), vectors, params))
            return hnsw

        return write_stored(path, lambda tmp: index.save_index(str(tmp)), describe)

    @classmethod
    def load(cls, directory: Path, config: EmbeddingConfig, params: HnswParams, dim: int,
             ids: list[str], gallery: str = "GALLERY") -> HnswIndex:
        path = Path(directory) / cls.file_name(params)
        rebuild = (f"rebuild it with: python -m core index --name {gallery} {config.cli_flags()} --index hnsw "
                   f"--metric {params.metric}")
        meta = check_stored(path, "HNSW", config, dim, ids, rebuild)
        return cls(load_once(path, lambda: _read(path, params.metric, dim, meta["n_items"])), params.metric, meta, path)

    @property
    def default_ef(self) -> int:
        return int(self.meta.get("ef", 64))

    def search(self, queries: np.ndarray, k: int, ef: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` [q, k] indices and scores (cosine similarity or Euclidean distance), best
        first. hnswlib searches with max(ef, k) candidates (``ef`` default: the measured one)."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(k, int(self.meta["n_items"]))
        with _QUERY_LOCK:
            self.index.set_ef(max(k, self.default_ef if ef is None else ef))
            labels, dist = self.index.knn_query(q, k=k, num_threads=1 if len(q) == 1 else -1)
        scores = 1.0 - dist if self.metric == "cosine" else np.sqrt(np.maximum(dist, 0.0))
        return labels.astype(np.int64), scores.astype(np.float32)


def _read(path: Path, metric: str, dim: int, n: int):
    import hnswlib

    index = hnswlib.Index(space=SPACE[metric], dim=dim)
    index.load_index(str(path), max_elements=n)
    return index


def choose_ef(hnsw: HnswIndex, exact: ExactIndex, vectors: np.ndarray, params: HnswParams, seed: int = 0) -> dict:
    """The smallest ``ef`` with measured recall@10 ≥ RECALL_TARGET on leave-one-out sample gallery
    vectors (``core.index.stored.measure_recall``), or the one given in ``params``."""
    candidates = [params.ef] if params.ef else list(EF_CANDIDATES)
    return measure_recall(lambda q, k, ef: hnsw.search(q, k, ef=ef)[0], lambda q, k: exact.search(q, k)[0],
                          vectors, "ef", candidates, seed)
