"""Annoy: an index saved beside the descriptors it was built from, memory-mapped on load, with
``search_k`` chosen at build time by measured recall against exact search.

Annoy trusts its file: a truncated or altered ``.ann`` makes it follow node offsets outside the
mapping and crash the process (the whole app server). So the ``.json`` beside it records the
file's size and sha256, and a load checks both before Annoy sees the file.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.cache.descriptors import Embeddings
from core.config import AnnoyParams, EmbeddingConfig
from core.files import atomic_path, exclusive_lock, write_json
from core.index.base import METRIC_OF_ANNOY, IndexMismatch
from core.index.exact import ExactIndex

RECALL_TARGET = 0.95
RECALL_SAMPLE = 100         # gallery vectors used as sample queries when measuring recall


@dataclass
class AnnoyIndex:
    """An Annoy index saved beside the descriptors it was built from, memory-mapped on load.

    ``meta`` records the embedding config hash, dimension, item count and build figures; a load
    that expects other descriptors is refused with the command that rebuilds it.
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
        # one builder at a time: two would otherwise pair one's .ann with the other's .json
        with exclusive_lock(Path(directory) / f".{path.stem}.lock"):
            with atomic_path(path, suffix=".ann") as tmp:
                index.save(str(tmp))
                size, checksum = tmp.stat().st_size, _sha256(tmp)
            index.unload()
            index = _Annoy(dim, params.metric)
            index.load(str(path))                       # memory-mapped
            metric = METRIC_OF_ANNOY[params.metric]
            meta = {"config_key": config.key(), "config": config.to_dict(), "dim": dim, "n_items": n,
                    "ids_digest": _digest(ids), "metric": metric, "annoy_metric": params.metric,
                    "n_trees": params.n_trees, "build_seconds": build_seconds,
                    "file_bytes": size, "file_sha256": checksum}
            ann = cls(index, metric, meta, path)
            exact = ExactIndex(vectors, metric)
            tuning = choose_search_k(ann, exact, vectors, params)
            meta.update(tuning)
            write_json(path.with_suffix(".json"), meta)
        return ann

    @classmethod
    def load(cls, directory: Path, config: EmbeddingConfig, params: AnnoyParams, dim: int,
             ids: list[str], gallery: str = "GALLERY") -> AnnoyIndex:
        from annoy import AnnoyIndex as _Annoy


        path = Path(directory) / cls.file_name(params)
        meta_path = path.with_suffix(".json")
        rebuild = (f"rebuild it with: python -m core index --name {gallery} {config.cli_flags()} "
                   f"--annoy-metric {params.metric} --n-trees {params.n_trees}")
        if not path.exists():
            raise IndexMismatch(f"no Annoy index at {path}; {rebuild}", stale=True)
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise IndexMismatch(f"refusing Annoy index {path}: its description {meta_path.name} cannot be read "
                                f"({exc}; an interrupted build?); {rebuild}", stale=True) from None
        damage = _damage(path, meta)
        if damage:
            raise IndexMismatch(f"refusing Annoy index {path}: {damage}; {rebuild}", stale=True)
        problems = []
        if meta.get("config_key") != config.key():
            problems.append(f"it was built with embedding {EmbeddingConfig.from_dict(meta.get('config', {})).label() if meta.get('config') else meta.get('config_key')}, not {config.label()}")
        if meta.get("dim") != dim:
            problems.append(f"its dimension is {meta.get('dim')}, the descriptors have {dim}")
        if meta.get("n_items") != len(ids) or meta.get("ids_digest") != _digest(ids):
            problems.append("the gallery's images changed since it was built")
        if problems:
            raise IndexMismatch(f"refusing Annoy index {path}: {'; '.join(problems)}; {rebuild}",
                                stale=problems == ["the gallery's images changed since it was built"])
        index = _Annoy(dim, params.metric)
        index.load(str(path))
        return cls(index, meta["metric"], meta, path)

    @classmethod
    def open(cls, emb: Embeddings, params: AnnoyParams) -> AnnoyIndex:
        """The saved index of these descriptors (memory-mapped), built first when it is absent or
        only stale (the gallery's images changed; Annoy cannot add items, so it is rebuilt from the
        cache); an index of another config or dimension is refused (``IndexMismatch``)."""
        path = emb.directory / cls.file_name(params)
        try:
            return cls.load(emb.directory, emb.config, params, emb.dim, emb.ids, emb.gallery)
        except IndexMismatch as exc:
            if path.exists() and not exc.stale:
                raise
            return cls.build(emb.vectors, emb.directory, emb.config, params, emb.ids)

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


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _damage(path: Path, meta: dict) -> str | None:
    """Why the file at ``path`` is not the one ``meta`` describes (size, then sha256), or None.
    Indexes built before the checksum was recorded are checked on their size only."""
    size = path.stat().st_size
    if meta.get("file_bytes") is not None and size != meta["file_bytes"]:
        return f"the file holds {size:,} bytes, its build wrote {meta['file_bytes']:,} (truncated or altered)"
    if meta.get("file_sha256") and _sha256(path) != meta["file_sha256"]:
        return "its content is not what its build wrote (sha256 differs)"
    return None


def _digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def recall_at(approx: np.ndarray, exact: np.ndarray, k: int) -> float:
    """Mean share of the exact top-``k`` found in the approximate top-``k``."""
    k = min(k, exact.shape[1])
    found = [len(set(a[:k]) & set(e[:k])) / k for a, e in zip(approx, exact)]
    return float(np.mean(found)) if found else 0.0


def choose_search_k(ann: AnnoyIndex, exact: ExactIndex, vectors: np.ndarray, params: AnnoyParams,
                    seed: int = 0) -> dict:
    """Measure recall@10/@100 of Annoy against exact search on sample gallery vectors (queries
    slightly perturbed so that they are not index items) for growing ``search_k``, and keep the
    smallest ``search_k`` with recall@10 ≥ RECALL_TARGET (or the one given in ``params``)."""
    rng = np.random.default_rng(seed)
    n = vectors.shape[0]
    sample = vectors[rng.choice(n, size=min(RECALL_SAMPLE, n), replace=False)]
    sample = sample + rng.normal(0, 0.01, sample.shape).astype(np.float32)
    sample /= np.linalg.norm(sample, axis=1, keepdims=True)
    k_max = min(100, n)
    truth, _ = exact.search(sample, k_max)
    candidates = [params.search_k] if params.search_k else [params.n_trees * k_max * m for m in (1, 2, 5, 10, 20, 50, 100)]
    trials = []
    for sk in candidates:
        got, _ = ann.search(sample, k_max, search_k=sk)
        start = time.perf_counter()
        ann.search(sample[:20], 10, search_k=sk)
        ms = (time.perf_counter() - start) / min(20, len(sample)) * 1000
        trials.append({"search_k": int(sk), "recall@10": recall_at(got, truth, 10),
                       "recall@100": recall_at(got, truth, 100), "query_ms": ms})
        if trials[-1]["recall@10"] >= RECALL_TARGET and trials[-1]["recall@100"] >= RECALL_TARGET:
            break
    good = [t for t in trials if t["recall@10"] >= RECALL_TARGET]
    chosen = good[0] if good else trials[-1]
    return {"search_k": chosen["search_k"], "recall@10": chosen["recall@10"],
            "recall@100": chosen["recall@100"], "recall_trials": trials,
            "recall_target_met": bool(good)}
