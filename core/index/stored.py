"""What every saved index shares (Annoy, HNSW): its metadata, the checks before a load, the
tuning of its search effort by measured recall, and one load per process.

An index file is saved beside the descriptors it was built from, with a JSON that records the
embedding config hash, the dimension, the item count, a digest of the image ids, and the file's
size and SHA-256. ``check_stored`` refuses (``IndexMismatch``) an index that is absent, belongs
to another config or dimension, is older than the gallery's images (``stale``), or whose file
is not the one that was written (truncated, replaced, corrupted), before a library reads it:
hnswlib and Annoy would crash or answer garbage on such a file.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from core.cache.descriptors import Embeddings
from core.config import EmbeddingConfig
from core.files import atomic_path, exclusive_lock, write_json
from core.index.base import IndexMismatch

T = TypeVar("T")

RECALL_TARGET = 0.95
RECALL_SAMPLE = 100         # gallery vectors used as sample queries when measuring recall
STALE = "the gallery's images changed since it was built"

_checked: dict[tuple[str, int, int], str] = {}
_loaded: dict[tuple[str, int, int], Any] = {}
_lock = threading.Lock()


def ids_digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = os.stat(path)
    return str(Path(path).resolve()), st.st_size, st.st_mtime_ns


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, computed once per process for each (path, size, mtime)."""
    key = _stat_key(path)
    with _lock:
        if key in _checked:
            return _checked[key]
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    with _lock:
        _checked[key] = digest
    return digest


def stored_meta(path: Path, config: EmbeddingConfig, ids: list[str], dim: int, metric: str,
                **figures: Any) -> dict:
    """The metadata written beside an index file that was just saved at ``path``."""
    return {"config_key": config.key(), "config": config.to_dict(), "dim": dim, "n_items": len(ids),
            "ids_digest": ids_digest(ids), "metric": metric, "file": path.name,
            "file_bytes": path.stat().st_size, "file_sha256": file_sha256(path), **figures}


def write_stored(path: Path, save: Callable[[Path], None], describe: Callable[[], T]) -> T:
    """Save an index file at ``path`` (``save(tmp)`` writes it; the rename is atomic), then
    ``describe()`` it (reopen, tune, fill ``meta``) and write ``meta`` beside it, all under one
    lock per file: two builders would otherwise pair one's index with the other's description."""
    with exclusive_lock(path.parent / f".{path.stem}.lock"):
        with atomic_path(path, suffix=path.suffix) as tmp:
            save(tmp)
        forget(path)
        stored = describe()
        write_json(path.with_suffix(".json"), stored.meta)
    return stored


def check_stored(path: Path, kind: str, config: EmbeddingConfig, dim: int, ids: list[str], rebuild: str) -> dict:
    """The metadata of the index at ``path`` when it belongs to these descriptors; otherwise
    ``IndexMismatch`` naming every problem and the command ``rebuild``."""
    meta_path = path.with_suffix(".json")
    if not path.exists():
        raise IndexMismatch(f"no {kind} index at {path}; {rebuild}", stale=True)
    if not meta_path.exists():
        raise IndexMismatch(f"refusing {kind} index {path}: its description {meta_path.name} cannot be read "
                            f"(missing: an interrupted build?); {rebuild}", stale=True)
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise IndexMismatch(f"refusing {kind} index {path}: its description {meta_path.name} cannot be read "
                            f"({exc}; an interrupted build?); {rebuild}", stale=True) from None
    problems = []
    if meta.get("config_key") != config.key():
        built = EmbeddingConfig.from_dict(meta["config"]).label() if meta.get("config") else meta.get("config_key")
        problems.append(f"it was built with embedding {built}, not {config.label()}")
    if meta.get("dim") != dim:
        problems.append(f"its dimension is {meta.get('dim')}, the descriptors have {dim}")
    if meta.get("n_items") != len(ids) or meta.get("ids_digest") != ids_digest(ids):
        problems.append(STALE)
    size = path.stat().st_size
    if "file_bytes" in meta and size != meta["file_bytes"]:
        problems.append(f"its file has {size} bytes, {meta['file_bytes']} were written (truncated or altered)")
    elif "file_sha256" in meta and file_sha256(path) != meta["file_sha256"]:
        problems.append("its file's SHA-256 is not the one written (corrupted or replaced)")
    if problems:
        # a damaged file is as safe to rebuild from the cache as a stale one
        damaged = all(p == STALE or p.startswith("its file") for p in problems)
        raise IndexMismatch(f"refusing {kind} index {path}: {'; '.join(problems)}; {rebuild}", stale=damaged)
    return meta


def open_stored(kind: Any, emb: Embeddings, params: Any) -> Any:
    """The saved index of class ``kind`` (``AnnoyIndex``, ``HnswIndex``) for these descriptors,
    built first when it is absent or only stale (the gallery's images changed: neither library
    adds items, so it is rebuilt from the cache); one of another config or dimension is refused
    (``IndexMismatch``)."""
    path = emb.directory / kind.file_name(params)
    try:
        return kind.load(emb.directory, emb.config, params, emb.dim, emb.ids, emb.gallery)
    except IndexMismatch as exc:
        if path.exists() and not exc.stale:
            raise
        return kind.build(emb.vectors, emb.directory, emb.config, params, emb.ids)


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


def recall_at(approx: np.ndarray, exact: np.ndarray, k: int) -> float:
    """Mean share of the exact top-``k`` found in the approximate top-``k``."""
    k = min(k, exact.shape[1])
    found = [len(set(a[:k]) & set(e[:k])) / k for a, e in zip(approx, exact)]
    return float(np.mean(found)) if found else 0.0


def sample_queries(vectors: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Up to RECALL_SAMPLE gallery rows and their vectors: the sample queries of the recall
    measurement, each asking for its nearest *other* items (leave-one-out), as a new photo of
    something already in the gallery would, instead of finding itself first."""
    rng = np.random.default_rng(seed)
    n = vectors.shape[0]
    rows = rng.choice(n, size=min(RECALL_SAMPLE, n), replace=False)
    return rows, np.ascontiguousarray(vectors[rows], dtype=np.float32)


def without_self(found: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` results of each row of ``found`` [q, >k] other than the query item itself."""
    out = np.full((len(found), k), -1, np.int64)
    for i, (got, own) in enumerate(zip(found, rows)):
        kept = got[got != own][:k]
        out[i, :len(kept)] = kept
    return out


def measure_recall(search: Callable[[np.ndarray, int, int], np.ndarray], exact_search: Callable[[np.ndarray, int], np.ndarray],
                   vectors: np.ndarray, name: str, candidates: Sequence[int], seed: int = 0) -> dict:
    """``tune_by_recall`` of ``search(queries, k, effort)`` on leave-one-out sample queries, against
    ``exact_search(queries, k)``: each query's own item is removed from both result lists."""
    rows, sample = sample_queries(vectors, seed)
    k_max = min(100, len(vectors) - 1)
    if k_max < 1:
        return {name: int(candidates[0]), "recall@10": 1.0, "recall@100": 1.0, "recall_trials": [],
                "recall_target_met": True}
    truth = without_self(exact_search(sample, k_max + 1), rows, k_max)
    return tune_by_recall(lambda q, k, effort: without_self(search(q, min(k + 1, len(vectors)), effort), rows, k),
                          truth, sample, name, candidates)


def tune_by_recall(search: Callable[[np.ndarray, int, int], np.ndarray], truth: np.ndarray, sample: np.ndarray,
                   name: str, candidates: Sequence[int]) -> dict:
    """Measure recall@10 (searching k=10) and recall@100 (k=100) of ``search(queries, k, effort)``
    against the exact top-100 ``truth`` for growing efforts, stopping once both reach
    RECALL_TARGET; keep the smallest effort with recall@10 ≥ RECALL_TARGET (the largest tried
    when none does, flagged by ``recall_target_met``)."""
    k_max = truth.shape[1]
    trials = []
    for effort in candidates:
        got10 = search(sample, min(10, k_max), effort)
        got100 = search(sample, k_max, effort)
        start = time.perf_counter()
        search(sample[:20], min(10, k_max), effort)
        ms = (time.perf_counter() - start) / min(20, len(sample)) * 1000
        trials.append({name: int(effort), "recall@10": recall_at(got10, truth, 10),
                       "recall@100": recall_at(got100, truth, 100), "query_ms": ms})
        if trials[-1]["recall@10"] >= RECALL_TARGET and trials[-1]["recall@100"] >= RECALL_TARGET:
            break
    good = [t for t in trials if t["recall@10"] >= RECALL_TARGET]
    chosen = good[0] if good else trials[-1]
    return {name: chosen[name], "recall@10": chosen["recall@10"], "recall@100": chosen["recall@100"],
            "recall_trials": trials, "recall_target_met": bool(good)}
