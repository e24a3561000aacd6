"""The descriptor cache of a gallery under one embedding config.

Layout of ``artifacts/embeddings/<gallery>/<config-hash>/``:

- ``embeddings.npz``: ``vectors`` float32 [n, dim], ``ids`` (image ids in row order),
  ``fingerprints`` (size:mtime of each file when embedded), ``failed_ids``/``failed_reasons``/
  ``failed_fingerprints`` (unreadable files, not retried until they change), and, for whitened
  configs, the learned ``whiten_mean``/``whiten_projection``.
- ``config.json``: the embedding config; ``meta.json``: timing, counts and the last update's changes.

Every write is atomic, and an extraction checkpoints its progress, so a killed run loses at most
one checkpoint interval and the next run resumes. Images added to, changed in or removed from the
folder are handled incrementally: only new or changed files are embedded.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.cache.galleries import Gallery, load_gallery
from core.config import EmbeddingConfig
from core.embed.embedder import Embedder
from core.embed.whitening import Whitening, learn_pca_whitening
from core.files import remove_stale_temporaries, write_json, write_npz
from core.paths import embeddings_dir

CHECKPOINT_SECONDS = float(os.environ.get("CBIR_CHECKPOINT_SECONDS", 30.0))
NPZ = "embeddings.npz"


class CacheError(RuntimeError):
    """A cache that is missing or does not belong to the requested config."""


@dataclass
class Changes:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0

    def summary(self) -> str:
        return (f"{len(self.added)} added, {len(self.changed)} changed, {len(self.removed)} removed, "
                f"{self.unchanged} unchanged")


@dataclass
class Embeddings:
    """Descriptors of a gallery, rows in ``ids`` order."""

    gallery: str
    config: EmbeddingConfig
    ids: list[str]
    vectors: np.ndarray
    directory: Path
    failures: dict[str, str] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    whitening: Whitening | None = None

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def cache_dir(gallery: str, config: EmbeddingConfig) -> Path:
    return embeddings_dir() / gallery / config.key()


def _read_npz(path: Path) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _check_config(directory: Path, config: EmbeddingConfig) -> None:
    cfg_file = directory / "config.json"
    if cfg_file.exists():
        stored = EmbeddingConfig.from_dict(json.loads(cfg_file.read_text()))
        if stored != config:
            raise CacheError(f"cache {directory} holds config {stored.label()}, not {config.label()}; "
                             f"delete the folder to rebuild it")


def load_embeddings(gallery: str, config: EmbeddingConfig) -> Embeddings:
    """Load cached descriptors; raises ``CacheError`` with the command to build them if absent."""
    directory = cache_dir(gallery, config)
    _check_config(directory, config)
    data = _read_npz(directory / NPZ)
    if data is None:
        raise CacheError(f"no descriptors of gallery {gallery!r} for {config.label()}; build them with: "
                         f"python -m core index --name {gallery} {config.cli_flags()}")
    meta_file = directory / "meta.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    return Embeddings(
        gallery=gallery, config=config, ids=data["ids"].tolist(), vectors=data["vectors"],
        directory=directory, meta=meta,
        failures=dict(zip(data["failed_ids"].tolist(), data["failed_reasons"].tolist())),
        whitening=Whitening.from_arrays(data) if "whiten_projection" in data else None,
    )


def _save(directory: Path, config: EmbeddingConfig, ids: list[str], vectors: np.ndarray,
          fingerprints: list[str], failures: dict[str, tuple[str, str]], meta: dict,
          extra: dict[str, np.ndarray] | None = None) -> None:
    failed = sorted(failures)
    write_json(directory / "config.json", config.to_dict())
    write_npz(directory / NPZ, vectors=np.asarray(vectors, np.float32).reshape(len(ids), -1),
              ids=np.array(ids, dtype=str), fingerprints=np.array(fingerprints, dtype=str),
              failed_ids=np.array(failed, dtype=str),
              failed_reasons=np.array([failures[f][0] for f in failed], dtype=str),
              failed_fingerprints=np.array([failures[f][1] for f in failed], dtype=str),
              **(extra or {}))
    write_json(directory / "meta.json", meta)


def build_embeddings(gallery: Gallery, config: EmbeddingConfig, embedder: Embedder | None = None,
                     progress: bool = True, on_progress: Callable[[int, int], None] | None = None,
                     log: Callable[[str], None] = print) -> Embeddings:
    """Bring the cache of ``gallery`` under ``config`` up to date with the folder and return it.

    Unchanged files are never re-embedded; a killed run resumes from its last checkpoint.
    Whitened configs reuse the cache of their base (unwhitened) config.
    """
    if config.whitening != "none":
        return _build_whitened(gallery, config, embedder, progress, on_progress, log)
    directory = cache_dir(gallery.name, config)
    _check_config(directory, config)
    if directory.is_dir():
        remove_stale_temporaries(directory)
    old = _read_npz(directory / NPZ) or {}
    old_fp = dict(zip(old.get("ids", np.array([])).tolist(), old.get("fingerprints", np.array([])).tolist()))
    old_vec = dict(zip(old.get("ids", np.array([])).tolist(), old.get("vectors", np.zeros((0, 0)))))
    old_fail = {i: (r, f) for i, r, f in zip(old.get("failed_ids", np.array([])).tolist(),
                                              old.get("failed_reasons", np.array([])).tolist(),
                                              old.get("failed_fingerprints", np.array([])).tolist())}

    ids = gallery.image_ids()
    fps = dict(zip(ids, gallery.fingerprints(ids)))
    changes = Changes(removed=sorted((set(old_fp) | set(old_fail)) - set(ids)))
    vectors: dict[str, np.ndarray] = {}
    failures: dict[str, tuple[str, str]] = {}
    todo = []
    for i in ids:
        if old_fp.get(i) == fps[i]:
            vectors[i] = old_vec[i]
            changes.unchanged += 1
        elif i in old_fail and old_fail[i][1] == fps[i]:
            failures[i] = old_fail[i]
            changes.unchanged += 1
        else:
            (changes.changed if i in old_fp or i in old_fail else changes.added).append(i)
            todo.append(i)

    meta = json.loads((directory / "meta.json").read_text()) if (directory / "meta.json").exists() else {}
    seconds = 0.0

    def checkpoint(final: bool) -> None:
        order = [i for i in ids if i in vectors]
        arr = np.stack([vectors[i] for i in order]) if order else np.zeros((0, 0), np.float32)
        meta.update({"gallery": gallery.name, "root": str(gallery.root), "config": config.to_dict(),
                     "label": config.label(), "n_images": len(order), "n_failed": len(failures),
                     "dim": int(arr.shape[1]) if arr.ndim == 2 and order else 0,
                     "complete": final, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})
        _save(directory, config, order, arr, [fps[i] for i in order], failures, meta)

    if todo:
        embedder = embedder or Embedder(config)
        log(f"{gallery.name}: embedding {len(todo)} images with {config.label()} "
            f"({len(ids) - len(todo)} reused from the cache)")
        paths = [str(gallery.root / i) for i in todo]
        start = last = time.perf_counter()
        n_done = 0
        for pos, out in embedder.iter_files(paths, desc=f"embedding {gallery.name}", progress=progress):
            image_id = todo[pos]
            if isinstance(out, str):
                failures[image_id] = (out, fps[image_id])
                log(f"skipped {image_id}: {out}")
            else:
                vectors[image_id] = out
            n_done += 1
            if on_progress:
                on_progress(n_done, len(todo))
            if time.perf_counter() - last > CHECKPOINT_SECONDS:
                checkpoint(final=False)
                last = time.perf_counter()
        seconds = time.perf_counter() - start
        meta["extraction"] = {"seconds": seconds, "n_embedded": n_done,
                              "images_per_second": n_done / seconds if seconds else 0.0}
    last_changes = meta.get("changes")
    meta["changes"] = {"added": changes.added, "changed": changes.changed, "removed": changes.removed,
                       "unchanged": changes.unchanged}
    if todo or changes.removed or not (directory / NPZ).exists() or not meta.get("complete"):
        checkpoint(final=True)
    elif meta["changes"] != last_changes:       # "changes" describes the latest update, even an empty one
        write_json(directory / "meta.json", meta)
    if changes.added or changes.changed or changes.removed:
        log(f"{gallery.name}: {changes.summary()}")
    return load_embeddings(gallery.name, config)


def _build_whitened(gallery: Gallery, config: EmbeddingConfig, embedder: Embedder | None, progress: bool,
                    on_progress, log) -> Embeddings:
    """Whitened descriptors: the base cache, plus a PCA-whitening learned on the gallery itself
    ("gallery") or on another gallery's base descriptors (its name)."""
    base = build_embeddings(gallery, config.base(), embedder, progress, on_progress, log)
    if config.whitening == "gallery":
        learn_on = base
    else:
        source = load_gallery(config.whitening)
        learn_on = build_embeddings(source, config.base(), embedder, progress, None, log)
    whitening = learn_pca_whitening(learn_on.vectors, config.whiten_dim)
    directory = cache_dir(gallery.name, config)
    _check_config(directory, config)
    base_meta = dict(base.meta)
    base_meta.update({"config": config.to_dict(), "label": config.label(), "dim": whitening.dim,
                      "whitening_learned_on": {"gallery": learn_on.gallery, "n": len(learn_on.ids)},
                      "base_key": config.base().key()})
    failures = {k: (v, "") for k, v in base.failures.items()}
    npz = _read_npz(base.directory / NPZ)
    _save(directory, config, base.ids, whitening.apply(base.vectors), npz["fingerprints"].tolist(),
          failures, base_meta, extra=whitening.to_arrays())
    return load_embeddings(gallery.name, config)


def _index_params(meta_path: Path) -> dict:
    """Parameters and measured recall of one Annoy index, from the JSON written beside it."""
    meta = json.loads(meta_path.read_text())
    return {"name": meta_path.stem, **{k: meta.get(k) for k in ("annoy_metric", "n_trees", "search_k", "recall@10",
                                                                "recall@100", "file_bytes")}}


def gallery_caches(gallery: str) -> list[dict]:
    """Every descriptor cache of a gallery: key, config label, size, dimension, Annoy indexes and their
    parameters."""
    out = []
    for d in sorted((embeddings_dir() / gallery).glob("*/meta.json")):
        meta = json.loads(d.read_text())
        out.append({"key": d.parent.name, "label": meta.get("label", "?"), "config": meta.get("config", {}),
                    "n_images": meta.get("n_images", 0), "dim": meta.get("dim", 0),
                    "complete": meta.get("complete", False), "updated": meta.get("updated", ""),
                    "indexes": sorted(p.stem for p in d.parent.glob("annoy-*.ann")),
                    "index_params": [_index_params(p) for p in sorted(d.parent.glob("annoy-*.json"))]})
    return out
