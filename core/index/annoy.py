"""Annoy: an index saved beside the descriptors it was built from, memory-mapped on load, with
``search_k`` chosen at build time by measured recall against exact search (the description,
checks and tuning shared with every saved index are in ``core.index.stored``).

Annoy trusts its file: a truncated or altered ``.ann`` makes it follow node offsets outside the
mapping and crash the process (the whole app server). So the ``.json`` beside it records the
file's size and sha256, and a load checks both before Annoy sees the file.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.index.base import IndexParams
from core.index.stored import StoredIndex

ANNOY_METRIC = {"cosine": "angular", "euclidean": "euclidean"}


@dataclass(frozen=True)
class AnnoyParams(IndexParams):
    """Parameters of an Annoy index; ``search_k`` None means "chosen at build time by measured
    recall"."""

    effort = "search_k"
    minimums = {"n_trees": 1, "search_k": 1}

    # 25 trees: on the Pareto front of benchmarks/bench_search.py (artifacts/bench/search.json) at
    # 1M x 512 as at 100k: at a given search_k, 50 or 100 trees found no more neighbours (1M,
    # search_k 10000: recall@10 0.994 / 0.989 / 0.981 for 25 / 50 / 100 trees) while the index grew
    # from 2.4 to 2.8 / 3.5 GB and took longer to build. search_k stays measured per index.
    n_trees: int = 25
    search_k: int | None = None



class AnnoyIndex(StoredIndex):
    """An Annoy index saved beside the descriptors it was built from, memory-mapped on load."""

    name = "annoy"
    title = "Annoy"
    Params = AnnoyParams
    packages = ("annoy",)

    @classmethod
    def file_name(cls, metric: str, params: AnnoyParams) -> str:
        return f"annoy-{ANNOY_METRIC[metric]}-{params.n_trees}.ann"

    @classmethod
    def _build(cls, vectors: np.ndarray, metric: str, params: AnnoyParams, strata: Sequence[int] = (0,),
               seed: int = 1234) -> Any:
        from annoy import AnnoyIndex as _Annoy

        index = _Annoy(vectors.shape[1], ANNOY_METRIC[metric])
        index.set_seed(seed)
        for i, v in enumerate(vectors):
            index.add_item(i, v)
        index.build(params.n_trees, n_jobs=-1)
        return index

    @classmethod
    def _save(cls, native: Any, path: Path) -> None:
        native.save(str(path))
        native.unload()

    @classmethod
    def _load(cls, path: Path, metric: str, dim: int, n_items: int) -> Any:
        from annoy import AnnoyIndex as _Annoy

        index = _Annoy(dim, ANNOY_METRIC[metric])
        index.load(str(path))                       # memory-mapped
        return index

    def _tuning_candidates(self, params: AnnoyParams) -> Sequence[int]:
        k_max = min(100, len(self))
        return [params.n_trees * k_max * m for m in (1, 2, 5, 10, 20, 50, 100)]

    def _search(self, queries: np.ndarray, k: int, effort: int) -> tuple[np.ndarray, np.ndarray]:
        out_i = np.full((queries.shape[0], k), -1, np.int64)
        out_s = np.full((queries.shape[0], k), np.nan, np.float32)
        for row, v in enumerate(queries):
            idx, dist = self.native.get_nns_by_vector(v, k, search_k=effort or -1, include_distances=True)
            dist = np.asarray(dist, np.float32)
            out_i[row, :len(idx)] = idx
            out_s[row, :len(idx)] = 1.0 - dist ** 2 / 2.0 if self.metric == "cosine" else dist
        return out_i, out_s
