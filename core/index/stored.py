"""What every saved index shares (Annoy, HNSW, and any backend whose ``saved`` is True): its
description, the checks before a load, the tuning of its search effort by measured recall, and
one load per process.

An index file is saved beside the descriptors it was built from, with a JSON that records the
embedding config hash, the dimension, the item count, a digest of the image ids and of each
image's content fingerprint, and the file's size and SHA-256. ``StoredIndex.load`` refuses
(``IndexMismatch``) an index that is absent, belongs to another config or dimension, is older
than the gallery's images (``stale``: an image added, removed, or rewritten under the same
name), or whose file is not the one that was written (truncated, replaced, corrupted), before a
library reads it: hnswlib and Annoy would crash or answer garbage on such a file.
"""
from __future__ import annotations

import json
import os
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from core.cache.descriptors import Embeddings
from core.config import EmbeddingConfig, command_line
from core.files import atomic_path, exclusive_lock, file_digest, write_json
from core.index.base import Index, IndexFigures, IndexMismatch, IndexParams, Trial, Tuning
from core.index.choice import RECALL_TARGET
from core.index.exact import ExactIndex

RECALL_SAMPLE = 100         # gallery vectors used as sample queries when measuring recall
STALE = "the gallery's images changed since it was built"

_loaded: dict[tuple[str, int, int], Any] = {}
_lock = threading.Lock()


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = os.stat(path)
    return str(Path(path).resolve()), st.st_size, st.st_mtime_ns


@dataclass(frozen=True)
class StoredMeta:
    """The description written beside a saved index (its JSON keeps these flat keys, the
    backend's parameters and the tuning beside them)."""

    config_key: str
    config: dict[str, Any]
    dim: int
    n_items: int
    ids_digest: str                 # ids and content fingerprints (``Embeddings.content_digest``)
    metric: str
    file: str
    file_bytes: int
    file_sha256: str
    build_seconds: float
    params: IndexParams
    tuning: Tuning

    def to_dict(self) -> dict[str, Any]:
        head = {k: v for k, v in asdict(self).items() if k not in ("params", "tuning")}
        return {**head, **asdict(self.params), **self.tuning.to_dict(self.params.effort or "effort")}

    @classmethod
    def from_dict(cls, data: dict[str, Any], params_type: type[IndexParams]) -> StoredMeta:
        params = params_type.from_record(data)
        return cls(data["config_key"], data.get("config", {}), int(data["dim"]), int(data["n_items"]),
                   data["ids_digest"], data["metric"], data["file"], int(data["file_bytes"]),
                   data["file_sha256"], float(data["build_seconds"]), params,
                   Tuning.from_dict(data, params.effort or "effort"))


def rebuild_command(emb: Embeddings, method: str, metric: str, params: IndexParams) -> str:
    """The command that rebuilds this index from the cached descriptors."""
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in params.build_fields().items() if v is not None)
    return "rebuild it with: " + command_line("index", f"--name {emb.gallery}", emb.config.cli_flags(),
                                              f"--index {method}", f"--metric {metric}", flags)


def _problems(meta: dict[str, Any], emb: Embeddings, path: Path) -> list[str]:
    problems = []
    if meta.get("config_key") != emb.config.key():
        built = EmbeddingConfig.from_dict(meta["config"]).label() if meta.get("config") else meta.get("config_key")
        problems.append(f"it was built with embedding {built}, not {emb.config.label()}")
    if meta.get("dim") != emb.dim:
        problems.append(f"its dimension is {meta.get('dim')}, the descriptors have {emb.dim}")
    if meta.get("n_items") != len(emb.ids) or meta.get("ids_digest") != emb.content_digest():
        problems.append(STALE)
    size = path.stat().st_size
    if "file_bytes" in meta and size != meta["file_bytes"]:
        problems.append(f"its file has {size} bytes, {meta['file_bytes']} were written (truncated or altered)")
    elif "file_sha256" in meta and file_digest(path) != meta["file_sha256"]:
        problems.append("its file's SHA-256 is not the one written (corrupted or replaced)")
    return problems


def check_stored(path: Path, title: str, emb: Embeddings, rebuild: str) -> dict[str, Any]:
    """The description of the index at ``path`` when it belongs to these descriptors; otherwise
    ``IndexMismatch`` naming every problem and the command ``rebuild``."""
    meta_path = path.with_suffix(".json")
    if not path.exists():
        raise IndexMismatch(f"no {title} index at {path}; {rebuild}", stale=True)
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        reason = "missing" if not meta_path.exists() else exc
        raise IndexMismatch(f"refusing {title} index {path}: its description {meta_path.name} cannot be read "
                            f"({reason}: an interrupted build?); {rebuild}", stale=True) from None
    problems = _problems(meta, emb, path)
    if problems:
        # a damaged file is as safe to rebuild from the cache as a stale one
        damaged = all(p == STALE or p.startswith("its file") for p in problems)
        raise IndexMismatch(f"refusing {title} index {path}: {'; '.join(problems)}; {rebuild}", stale=damaged)
    return meta


def load_once(path: Path, load: Callable[[], Any]) -> Any:
    """The object ``load()`` makes of the file at ``path``, made once per process and shared by
    every caller (every app session) until the file changes."""
    key = _stat_key(path)
    with _lock:
        if key not in _loaded:
            for old in [k for k in _loaded if k[0] == key[0]]:
                del _loaded[old]
            _loaded[key] = load()
        return _loaded[key]


def forget(path: Path) -> None:
    """Drop the process's loaded copy of ``path`` (after the file was rewritten)."""
    with _lock:
        for old in [k for k in _loaded if k[0] == str(Path(path).resolve())]:
            del _loaded[old]


class StoredIndex(Index):
    """Base of the saved approximate indexes: a subclass says how its library builds, saves,
    loads and searches (``_build``, ``_save``, ``_load``, ``_search``), which file name its
    parameters give, and which efforts to try while tuning; building, checking, tuning and
    loading once per process are done here, the same for every backend."""

    saved = True
    efforts: ClassVar[Sequence[int]] = ()           # search efforts tried while tuning, smallest first

    def __init__(self, native: Any, meta: StoredMeta, path: Path, vectors: np.ndarray | None = None) -> None:
        self.native, self.meta, self.path = native, meta, path
        self.vectors = vectors          # the descriptors it serves (memory-mapped by the store): re-scoring reads them
        self.metric = meta.metric

    # what a backend provides -------------------------------------------------------------
    @classmethod
    @abstractmethod
    def file_name(cls, metric: str, params: IndexParams) -> str: ...

    @classmethod
    @abstractmethod
    def _build(cls, vectors: np.ndarray, metric: str, params: IndexParams, strata: Sequence[int] = (0,)) -> Any:
        """The library's index of ``vectors`` [n, d] (the store's array, memory-mapped where the
        store maps it: a backend that works in bounded memory reads it in chunks); ``strata``:
        ``Embeddings.strata``, for a backend that learns from a sample of the gallery."""

    @classmethod
    @abstractmethod
    def _save(cls, native: Any, path: Path) -> None: ...

    @classmethod
    @abstractmethod
    def _load(cls, path: Path, metric: str, dim: int, n_items: int) -> Any: ...

    @abstractmethod
    def _search(self, queries: np.ndarray, k: int, effort: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` indices and scores (the metric's) at this effort, padded with -1 / NaN."""

    def _tuning_candidates(self, params: IndexParams) -> Sequence[int]:
        return self.efforts

    # shared by every saved backend ---------------------------------------------------------
    @classmethod
    def open(cls, emb: Embeddings, metric: str, params: IndexParams) -> StoredIndex:
        """The saved index of these descriptors, built first when it is absent or only stale
        (no library here adds items in place: a stale one is rebuilt from the cache); one of
        another config or dimension is refused (``IndexMismatch``). An effort in ``params``
        overrides the tuned one for the searches of the returned index."""
        try:
            index = cls.load(emb, metric, params)
        except IndexMismatch as exc:
            if (emb.directory / cls.file_name(metric, params)).exists() and not exc.stale:
                raise
            index = cls.build(emb, metric, params)
        return index.with_effort(params.effort_value())

    @classmethod
    def load(cls, emb: Embeddings, metric: str, params: IndexParams) -> StoredIndex:
        path = emb.directory / cls.file_name(metric, params)
        meta = check_stored(path, cls.title, emb, rebuild_command(emb, cls.name, metric, params))
        stored = StoredMeta.from_dict(meta, cls.Params)
        return cls(load_once(path, lambda: cls._load(path, metric, emb.dim, stored.n_items)), stored, path, emb.vectors)

    @classmethod
    def build(cls, emb: Embeddings, metric: str, params: IndexParams) -> StoredIndex:
        """Build, save (atomically, under a per-file lock: two builders would otherwise pair one's
        index with the other's description), reload, tune the effort and describe the index."""
        vectors = emb.vectors
        start = time.perf_counter()
        native = cls._build(vectors, metric, params, emb.strata)
        build_seconds = time.perf_counter() - start
        path = emb.directory / cls.file_name(metric, params)
        with exclusive_lock(path.parent / f".{path.stem}.lock"):
            with atomic_path(path, suffix=path.suffix) as tmp:
                cls._save(native, tmp)
            forget(path)
            untuned = StoredMeta(emb.config.key(), emb.config.to_dict(), emb.dim, len(emb.ids), emb.content_digest(),
                                 metric, path.name, path.stat().st_size, file_digest(path), build_seconds, params,
                                 Tuning(0, 0.0, 0.0, False))
            index = cls(load_once(path, lambda: cls._load(path, metric, emb.dim, len(emb.ids))), untuned, path, vectors)
            tuning = index.tune(ExactIndex(vectors, metric), vectors, params, emb.strata)
            index.meta = StoredMeta(**{**untuned.__dict__, "params": params.with_effort(tuning.effort),
                                       "tuning": tuning})
            write_json(path.with_suffix(".json"), index.meta.to_dict())
        return index

    def with_effort(self, effort: int | None) -> StoredIndex:
        """This index searching at ``effort`` (None: the tuned one); the library's object is shared."""
        if effort is None or effort == self.effort:
            return self
        return type(self)(self.native, StoredMeta(**{**self.meta.__dict__,
                                                      "params": self.meta.params.with_effort(effort)}), self.path,
                          self.vectors)

    @property
    def effort(self) -> int:
        return int(self.meta.params.effort_value() or 0)

    def __len__(self) -> int:
        return self.meta.n_items

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        return self._search(q, min(k, len(self)), self.effort)

    def figures(self) -> IndexFigures:
        return IndexFigures(self.name, self.metric, self.meta.params, self.meta.build_seconds, self.meta.tuning)

    def source(self) -> str:
        return str(self.path)

    def tune(self, exact: ExactIndex, vectors: np.ndarray, params: IndexParams, strata: Sequence[int] = (0,),
             seed: int = 0) -> Tuning:
        """The smallest effort with measured recall@10 ≥ RECALL_TARGET on leave-one-out sample
        gallery vectors of every stratum, or the one given in ``params``."""
        given = params.effort_value()
        candidates = [given] if given else list(self._tuning_candidates(params))
        return measure_recall(lambda q, k, effort: self._search(q, min(k, len(self)), effort)[0],
                              lambda q, k: exact.search(q, k)[0], vectors, candidates, seed, strata)


def recall_at(approx: np.ndarray, exact: np.ndarray, k: int) -> float:
    """Mean share of the exact top-``k`` found in the approximate top-``k``."""
    k = min(k, exact.shape[1])
    found = [len(set(a[:k]) & set(e[:k])) / k for a, e in zip(approx, exact)]
    return float(np.mean(found)) if found else 0.0


def lowest_recall(approx: np.ndarray, exact: np.ndarray, k: int, groups: Sequence[np.ndarray]) -> float:
    """``recall_at`` of the group of sample queries it is lowest for."""
    return min(recall_at(approx[g], exact[g], k) for g in groups)


def stratum_ranges(n: int, strata: Sequence[int]) -> list[tuple[int, int]]:
    """The non-empty row ranges [lo, hi) of a gallery of ``n`` rows whose strata begin at rows
    ``strata`` (``Embeddings.strata``)."""
    bounds = [*[s for s in strata if s < n], n]
    return [(lo, hi) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]


def sample_queries(vectors: np.ndarray, seed: int = 0,
                   strata: Sequence[int] = (0,)) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Up to RECALL_SAMPLE gallery rows of each stratum (rows ``strata[i]`` to ``strata[i+1]``),
    their vectors and the positions of each stratum's among them: the sample queries of the
    recall measurement, each asking for its nearest *other* items (leave-one-out), as a new photo
    of something already in the gallery would, instead of finding itself first. A benchmark's
    250 photos among a million distractors are a stratum of their own: a sample of the whole
    would hold none of them, and the effort it chose would serve the distractors' queries only."""
    rng = np.random.default_rng(seed)
    parts = [lo + rng.choice(hi - lo, size=min(RECALL_SAMPLE, hi - lo), replace=False)
             for lo, hi in stratum_ranges(vectors.shape[0], strata)]
    rows = np.concatenate(parts)
    groups = np.split(np.arange(len(rows)), np.cumsum([len(p) for p in parts])[:-1])
    return rows, np.ascontiguousarray(vectors[rows], dtype=np.float32), groups


def without_self(found: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` results of each row of ``found`` [q, >k] other than the query item itself."""
    out = np.full((len(found), k), -1, np.int64)
    for i, (got, own) in enumerate(zip(found, rows)):
        kept = got[got != own][:k]
        out[i, :len(kept)] = kept
    return out


def measure_recall(search: Callable[[np.ndarray, int, int], np.ndarray], exact_search: Callable[[np.ndarray, int], np.ndarray],
                   vectors: np.ndarray, candidates: Sequence[int], seed: int = 0,
                   strata: Sequence[int] = (0,)) -> Tuning:
    """``tune_by_recall`` of ``search(queries, k, effort)`` on leave-one-out sample queries of each
    stratum, against ``exact_search(queries, k)``: each query's own item is removed from both
    result lists."""
    rows, sample, groups = sample_queries(vectors, seed, strata)
    k_max = min(100, len(vectors) - 1)
    if k_max < 1:
        return Tuning(int(candidates[0]), 1.0, 1.0, True)
    truth = without_self(exact_search(sample, k_max + 1), rows, k_max)
    return tune_by_recall(lambda q, k, effort: without_self(search(q, min(k + 1, len(vectors)), effort), rows, k),
                          truth, sample, candidates, groups)


def tune_by_recall(search: Callable[[np.ndarray, int, int], np.ndarray], truth: np.ndarray, sample: np.ndarray,
                   candidates: Sequence[int], groups: Sequence[np.ndarray] | None = None) -> Tuning:
    """Measure recall@10 (searching k=10) and recall@100 (k=100) of ``search(queries, k, effort)``
    against the exact top-100 ``truth`` for growing efforts (in the group of sample queries where
    it is lowest), stopping once both reach RECALL_TARGET, and keep that effort (else the smallest
    with recall@10 ≥ RECALL_TARGET, else the largest tried, flagged by ``target_met``). Both,
    because a search shows its top 10 but a ranking is read deeper (evaluation, re-ranking): at
    RParis6k +1M, IVF-SQ's nprobe 1 had recall@10 0.953 and recall@100 0.559, and its mAP was 5.4
    points off exact search's (92.9 against 87.5: the distractors it missed); nprobe 8, the first
    at recall@100 ≥ 0.95, ranked within 0.5 of it."""
    k_max = truth.shape[1]
    groups = groups or [np.arange(len(sample))]
    trials: list[Trial] = []
    for effort in candidates:
        got10 = search(sample, min(10, k_max), effort)
        got100 = search(sample, k_max, effort)
        start = time.perf_counter()
        search(sample[:20], min(10, k_max), effort)
        ms = (time.perf_counter() - start) / min(20, len(sample)) * 1000
        trials.append(Trial(int(effort), lowest_recall(got10, truth, 10, groups), lowest_recall(got100, truth, 100, groups),
                            ms))
        if trials[-1].recall_at_10 >= RECALL_TARGET and trials[-1].recall_at_100 >= RECALL_TARGET:
            break
    both = [t for t in trials if min(t.recall_at_10, t.recall_at_100) >= RECALL_TARGET]
    good = both or [t for t in trials if t.recall_at_10 >= RECALL_TARGET]
    chosen = good[0] if good else trials[-1]
    return Tuning(chosen.effort, chosen.recall_at_10, chosen.recall_at_100, bool(good), trials)
