"""Annoy: an index saved beside the descriptors it was built from, memory-mapped on load, with
``search_k`` chosen at build time by measured recall against exact search (the metadata, checks
and tuning shared with the HNSW index are in ``core.index.stored``).

Annoy trusts its file: a truncated or altered ``.ann`` makes it follow node offsets outside the
mapping and crash the process (the whole app server). So the ``.json`` beside it records the
file's size and sha256, and a load checks both before Annoy sees the file.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.cache.descriptors import Embeddings
from core.config import AnnoyParams, EmbeddingConfig
from core.index.base import METRIC_OF_ANNOY
from core.index.exact import ExactIndex
from core.index.stored import check_stored, load_once, measure_recall, open_stored, stored_meta, write_stored


@dataclass
class AnnoyIndex:
    """An Annoy index saved beside the descriptors it was built from, memory-mapped on load.

    ``meta`` records the embedding config hash, dimension, item count, file size and checksum,
    and build figures; a load that expects other descriptors is refused with the command that
    rebuilds it.
    """

    index: object
    metric: str
    meta: dict
    path: Path

    @staticmethod
    def file_name(params: AnnoyParams) -> str:
        return f"annoy-{params.metric}-{params.n_trees}.ann"

    @classmethod
    def build(cls, vectors: np.ndarray, directory: Path, config: EmbeddingConfig, params: AnnoyParams,
              ids: list[str], seed: int = 1234) -> AnnoyIndex:
        from annoy import AnnoyIndex as _Annoy

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        start = time.perf_counter()
        index = _Annoy(dim, params.metric)
        index.set_seed(seed)
        for i, v in enumerate(vectors):
            index.add_item(i, v)
        index.build(params.n_trees, n_jobs=-1)
        build_seconds = time.perf_counter() - start
        path = Path(directory) / cls.file_name(params)
        metric = METRIC_OF_ANNOY[params.metric]

        def save(tmp: Path) -> None:
            index.save(str(tmp))
            index.unload()

        def describe() -> AnnoyIndex:
            meta = stored_meta(path, config, ids, dim, metric, annoy_metric=params.metric, n_trees=params.n_trees,
                               build_seconds=build_seconds)
            ann = cls(load_once(path, lambda: _mapped(path, dim, params.metric)), metric, meta, path)
            meta.update(choose_search_k(ann, ExactIndex(vectors, metric), vectors, params))
            return ann

        return write_stored(path, save, describe)

    @classmethod
    def load(cls, directory: Path, config: EmbeddingConfig, params: AnnoyParams, dim: int,
             ids: list[str], gallery: str = "GALLERY") -> AnnoyIndex:
        path = Path(directory) / cls.file_name(params)
        rebuild = (f"rebuild it with: python -m core index --name {gallery} {config.cli_flags()} "
                   f"--annoy-metric {params.metric} --n-trees {params.n_trees}")
        meta = check_stored(path, "Annoy", config, dim, ids, rebuild)
        return cls(load_once(path, lambda: _mapped(path, dim, params.metric)), meta["metric"], meta, path)

    @classmethod
    def open(cls, emb: Embeddings, params: AnnoyParams) -> AnnoyIndex:
        """The saved index of these descriptors (memory-mapped), built first when it is absent or
        only stale (the gallery's images changed; Annoy cannot add items, so it is rebuilt from the
        cache); an index of another config or dimension is refused (``IndexMismatch``)."""
        return open_stored(cls, emb, params)

    @property
    def default_search_k(self) -> int:
        return int(self.meta.get("search_k", -1))

    def search(self, queries: np.ndarray, k: int, search_k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` indices and scores (cosine similarity or Euclidean distance), best first;
        rows with fewer than ``k`` results are padded with index -1 and score NaN."""
        q = np.atleast_2d(queries).astype(np.float32)
        k = min(k, int(self.meta["n_items"]))
        sk = self.default_search_k if search_k is None else search_k
        out_i = np.full((q.shape[0], k), -1, np.int64)
        out_s = np.full((q.shape[0], k), np.nan, np.float32)
        for row, v in enumerate(q):
            idx, dist = self.index.get_nns_by_vector(v, k, search_k=sk, include_distances=True)
            dist = np.asarray(dist, np.float32)
            out_i[row, :len(idx)] = idx
            out_s[row, :len(idx)] = 1.0 - dist ** 2 / 2.0 if self.metric == "cosine" else dist
        return out_i, out_s


def _mapped(path: Path, dim: int, metric: str):
    from annoy import AnnoyIndex as _Annoy

    index = _Annoy(dim, metric)
    index.load(str(path))                       # memory-mapped
    return index


def choose_search_k(ann: AnnoyIndex, exact: ExactIndex, vectors: np.ndarray, params: AnnoyParams,
                    seed: int = 0) -> dict:
    """The smallest ``search_k`` with measured recall@10 ≥ RECALL_TARGET on leave-one-out sample
    gallery vectors (``core.index.stored.measure_recall``), or the one given in ``params``."""
    k_max = min(100, len(vectors))
    candidates = [params.search_k] if params.search_k else [params.n_trees * k_max * m for m in (1, 2, 5, 10, 20, 50, 100)]
    return measure_recall(lambda q, k, sk: ann.search(q, k, search_k=sk)[0], lambda q, k: exact.search(q, k)[0],
                          vectors, "search_k", candidates, seed)
