"""What faiss's inverted-file indexes share (``ivfpq``, ``ivfsq``): the gallery cut into ``nlist``
k-means cells, each vector stored as compressed codes, a query scanning the codes of its
``nprobe`` nearest cells, and its top ``rescore`` candidates re-scored exactly from the store's
(memory-mapped) vectors, so that scores are exact and only recall is approximate.

Built in bounded memory: the quantisers are trained on a random sample of at most
``TRAIN_SAMPLE`` vectors, then the gallery is added in chunks of ``ADD_CHUNK`` rows read from the
store; memory is the codes plus one chunk. ``nprobe`` (the cells searched) is the search effort,
tuned at build time by measured recall like every saved index's (``core.index.stored``), with the
same checks before a load. A backend says only which codes it stores (``codes``).
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from core.index.base import IndexParams, rescored
from core.index.stored import StoredIndex, stratum_ranges

TRAIN_SAMPLE = 50_000       # vectors the quantisers are trained on (faiss asks 39 per centroid at least)
# Rows read from the store and added at a time. faiss encodes a batch through distance tables of
# pq_m x 256 floats a row (64 kB at pq_m 64): adding 10,000 x 1280 at once raised the peak resident
# memory by 580 MB, in chunks of 2,000 by 42 MB (measured with VmHWM).
ADD_CHUNK = 2_000
MAX_LISTS = 256             # k-means cells (see default_lists)
# faiss's OpenMP threads spin while they wait for each other: on 2 cores shared with other work (load
# average 17-19) training IVF71,PQ16 on 5,000 x 64 took 3.0 s with one thread against 22-30 s with two
# (0.86 against 5.8-7.5 s of CPU). Every call of this module runs on one thread.
FAISS_THREADS = 1


@contextlib.contextmanager
def faiss_threads() -> Iterator[None]:
    import faiss

    with contextlib.ExitStack() as restore:
        restore.callback(faiss.omp_set_num_threads, faiss.omp_get_max_threads())
        faiss.omp_set_num_threads(FAISS_THREADS)
        yield


def default_lists(n_items: int) -> int:
    """The number of cells for ``n_items``: √n, at most MAX_LISTS and at most n / 39 (enough
    training points per cell). faiss's rule of thumb is 4–16·√n; on 2 shared cores the build is
    what limits: assigning every vector costs n · nlist · dim multiply-adds (2.6 TFLOP at 1M x 1280
    with 1,000 cells, 0.65 with 256), while scanning a few more codes per cell with the re-scored
    candidates keeps a query within milliseconds."""
    return max(1, min(MAX_LISTS, round(math.sqrt(n_items)), n_items // 39))


@dataclass(frozen=True)
class IvfParams(IndexParams):
    """Parameters every inverted-file index has; ``nlist`` 0: ``default_lists`` of the gallery
    size; ``nprobe`` None: chosen at build time by measured recall."""

    effort = "nprobe"
    minimums: ClassVar[dict[str, int]] = {"nlist": 0, "rescore": 1, "nprobe": 1}
    nlist: int = 0
    # candidates re-scored exactly: with 256, recall@10 stayed at 0.94 on 100k derived 1280-d vectors
    # even with every cell searched, with 1,024 at 0.825 on 1M (PQ64): the true top 10 of a dense
    # neighbourhood were not all among PQ's top candidates. 4,096 (PQ128) reached 0.997 at 1M, 23.7 ms
    # a query (bench_scale_index.py, load 5-8); it reads 21 MB of stored vectors a query.
    rescore: int = 4096
    nprobe: int | None = None


def training_rows(n: int, strata: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Up to TRAIN_SAMPLE rows the quantisers learn from, an equal share from each stratum (all of
    a stratum smaller than its share, the rest spread over the others): 250 benchmark photos among
    a million distractors then shape cells of their own. Drawn from the whole gallery, the sample
    held 12 of them, their neighbours fell in cells of distractors, and RParis6k +1M lost 10 mAP
    points at 16 of 256 cells searched (77.2 against 87.5 exact); drawn by stratum, its photos
    fell in 7 cells and 4 cells searched gave 87.5 (Medium; Hard 58.0 against 57.8)."""
    ranges = stratum_ranges(n, strata)
    share, left = min(n, TRAIN_SAMPLE), len(ranges)
    takes = {}
    for lo, hi in sorted(ranges, key=lambda r: r[1] - r[0]):            # the smallest first: they give what they lack
        takes[lo] = min(hi - lo, share // left)
        share, left = share - takes[lo], left - 1
    return np.concatenate([lo + rng.choice(hi - lo, size=takes[lo], replace=False) for lo, hi in ranges])


def _metric(metric: str) -> int:
    import faiss

    return faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2


def _rows(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows of the store's array as contiguous float32 (a memory map reads only those)."""
    return np.ascontiguousarray(vectors[np.sort(rows)], dtype=np.float32)


class IvfIndex(StoredIndex):
    """A faiss inverted-file index of one gallery, its candidates re-scored from the exact vectors.
    A subclass names its codes (``codes``, ``code_field``) and may set up its quantiser before
    training (``_prepare``)."""

    packages = ("faiss-cpu",)
    efforts = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    code_field: ClassVar[tuple[str, str]]   # (tag, parameter): what sizes the codes, in the file's name

    @classmethod
    def file_name(cls, metric: str, params: IvfParams) -> str:
        """e.g. ``ivfsq-cosine-nlist0-sq4-r4096.faiss`` (nlist 0: chosen by the gallery's size)."""
        tag, field = cls.code_field
        return f"{cls.name}-{metric}-nlist{params.nlist}-{tag}{getattr(params, field)}-r{params.rescore}.faiss"

    @classmethod
    def codes(cls, n_items: int, dim: int, n_sample: int, params: IvfParams) -> str:
        """The codes part of faiss's factory string, e.g. ``PQ128x8`` or ``SQ4``."""
        raise NotImplementedError

    @classmethod
    def _prepare(cls, index: Any, seed: int) -> None:
        """Set up ``index`` before training (seeds, iterations)."""
        index.cp.seed = seed

    @classmethod
    def _trained(cls, vectors: np.ndarray, metric: str, params: IvfParams, strata: Sequence[int], seed: int) -> Any:
        import faiss

        n, dim = vectors.shape
        sample = _rows(vectors, training_rows(n, strata, np.random.default_rng(seed)))
        nlist = min(params.nlist or default_lists(n), len(sample))
        index = faiss.index_factory(dim, f"IVF{nlist},{cls.codes(n, dim, len(sample), params)}", _metric(metric))
        cls._prepare(index, seed)
        index.train(sample)
        return index

    @classmethod
    def _build(cls, vectors: np.ndarray, metric: str, params: IvfParams, strata: Sequence[int] = (0,),
               seed: int = 1234) -> Any:
        with faiss_threads():
            index = cls._trained(vectors, metric, params, strata, seed)
            for start in range(0, vectors.shape[0], ADD_CHUNK):
                index.add(np.ascontiguousarray(vectors[start:start + ADD_CHUNK], dtype=np.float32))
        return index

    @classmethod
    def _save(cls, native: Any, path: Path) -> None:
        import faiss

        faiss.write_index(native, str(path))

    @classmethod
    def _load(cls, path: Path, metric: str, dim: int, n_items: int) -> Any:
        import faiss

        return faiss.read_index(str(path))

    def _tuning_candidates(self, params: IvfParams) -> list[int]:
        return [e for e in self.efforts if e < self.native.nlist] + [self.native.nlist]

    def _search(self, queries: np.ndarray, k: int, effort: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss's top ``max(k, rescore)`` by compressed codes, then the best ``k`` of them by exact
        scores from the stored vectors."""
        import faiss

        wanted = min(max(k, self.meta.params.rescore), len(self))
        params = faiss.SearchParametersIVF(nprobe=max(1, min(effort or 8, self.native.nlist)))
        with faiss_threads():
            _, candidates = self.native.search(queries, wanted, params=params)
        return rescored(self.vectors, queries, [np.sort(f[f >= 0]) for f in candidates], k, self.metric)
