"""The descriptor cache of a gallery under one embedding config.

Layout of ``artifacts/embeddings/<gallery>/<config-hash>/``:

- the append-only store of ``core.cache.store``: ``vectors-<G>.f32`` (float32 rows, memory-mapped
  when read), ``rows-<G>.jsonl`` (each row's image id and the fingerprint, size:mtime:ctime:inode,
  of its file when embedded), ``manifest.json`` (the commit point: row count, dead rows, and the
  unreadable files with their reasons, not retried until they change; entries the folder scan
  refused, such as FIFOs or dangling links, with their reason), and, for whitened configs,
  ``whitening.npz`` (the learned ``whiten_mean``/``whiten_projection``).
- ``config.json``: the embedding config; ``meta.json``: timing, counts and the last update's changes.

An extraction appends what it embedded at every checkpoint (every CHECKPOINT_SECONDS), so a
checkpoint or an incremental update costs the new images, not the gallery; a killed run loses at
most one checkpoint interval and the next run resumes. Rows of files removed or changed are marked
dead, and dropped by one rewrite at the end of the update. Caches of earlier versions (one
``embeddings.npz``) are migrated on first use, without re-embedding. One process at a time
updates a cache (a ``flock`` on ``.lock``, released by the kernel when its holder dies); a
second one waits, then finds the work done.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from itertools import zip_longest
from pathlib import Path

import numpy as np

from core.cache import store
from core.cache.galleries import Gallery, fingerprint, load_gallery, same_file
from core.cache.store import MANIFEST, WHITENING
from core.config import EmbeddingConfig, command_line
from core.embed.embedder import Embedder
from core.embed.whitening import Whitening, learn_pca_whitening
from core.files import exclusive_lock, remove_stale_temporaries, write_json
from core.fs import printable
from core.paths import embeddings_dir
from core.progress import Reporter

CHECKPOINT_SECONDS = float(os.environ.get("CBIR_CHECKPOINT_SECONDS", 30.0))
LEGACY_NPZ = "embeddings.npz"      # the single-file cache of earlier versions, migrated on first use
LOCK = ".lock"          # held by the one process that updates a cache; readers never wait


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
    """Descriptors of a gallery, rows in ``ids`` order. Read from a cache, ``vectors`` is a
    read-only memory map: opening reads no vector, and processes share the pages they touch."""

    gallery: str
    config: EmbeddingConfig
    ids: list[str]
    vectors: np.ndarray
    directory: Path
    failures: dict[str, str] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    whitening: Whitening | None = None
    fingerprints: list[str] = field(default_factory=list)   # per id: the file's size:mtime:ctime:inode when embedded
    # the first row of each source the gallery joins (a benchmark's images, then distractors: (0, n)):
    # an index's recall is measured on sample queries of each, so queries like the fewer are served too
    strata: tuple[int, ...] = (0,)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def row_of(self, image_id: str) -> int | None:
        """The row of ``image_id``, None when the gallery has no such image. The first call builds
        the id → row table (0.3 s and 62 MB at 1M ids), so that each later one is a lookup."""
        return self._row_table.get(image_id)

    @cached_property
    def _row_table(self) -> dict[str, int]:
        return {image_id: row for row, image_id in enumerate(self.ids)}

    def whiten(self, vectors: np.ndarray) -> np.ndarray:
        """Query descriptors [n, D] (or [D]) made comparable with the gallery's: whitened and
        L2-normalised as its own were, unchanged when it has no whitening."""
        return self.whitening.apply(vectors) if self.whitening is not None else vectors

    def content_digest(self) -> str:
        """A digest of the ids and of each image's fingerprint: it changes when an image is added,
        removed or rewritten under the same name, so an index built from other contents is stale."""
        h = hashlib.sha256()
        for image_id, fp in zip_longest(self.ids, self.fingerprints, fillvalue=""):
            h.update(f"{image_id}\0{fp}\n".encode())
        return h.hexdigest()[:16]


def cache_dir(gallery: str, config: EmbeddingConfig) -> Path:
    return embeddings_dir() / gallery / config.key()


def write_config(directory: Path, config: EmbeddingConfig) -> None:
    """Record the config a cache's descriptors were made with (what ``check_config`` reads)."""
    write_json(directory / "config.json", config.to_dict())


def check_config(directory: Path, config: EmbeddingConfig) -> None:
    cfg_file = directory / "config.json"
    if cfg_file.exists():
        stored = EmbeddingConfig.from_dict(json.loads(cfg_file.read_text()))
        if stored != config:
            raise CacheError(f"cache {directory} holds config {stored.label()}, not {config.label()}; "
                             f"delete the folder to rebuild it")


def migrate_legacy(directory: Path) -> None:
    """Turn an ``embeddings.npz`` of earlier versions into the store (the caller holds the lock);
    one left beside a committed store by a migration killed at its end is deleted."""
    legacy = directory / LEGACY_NPZ
    if not legacy.exists():
        return
    if store.read_manifest(directory) is None:
        store.migrate_npz(directory, legacy)
    else:
        legacy.unlink()


def _migrated(directory: Path) -> None:
    """``migrate_legacy`` under the cache's lock, for readers that find an older cache."""
    if (directory / LEGACY_NPZ).exists():
        with exclusive_lock(directory / LOCK):
            migrate_legacy(directory)


def cache_version(gallery: str, config: EmbeddingConfig) -> int:
    """A number that changes whenever the cache is written (its manifest's mtime in ns), for
    the app's caches of opened galleries."""
    directory = cache_dir(gallery, config)
    _migrated(directory)
    return (directory / MANIFEST).stat().st_mtime_ns


def load_embeddings(gallery: str, config: EmbeddingConfig) -> Embeddings:
    """Open cached descriptors (vectors memory-mapped, none read); raises ``CacheError`` with the
    command to build them if absent."""
    directory = cache_dir(gallery, config)
    check_config(directory, config)
    _migrated(directory)
    contents = store.open_contents(directory)
    if contents is None:
        raise CacheError(f"no descriptors of gallery {gallery!r} for {config.label()}; build them with: "
                         f"{command_line('index', f'--name {gallery}', config.cli_flags())}")
    meta_file = directory / "meta.json"
    whitening_file = directory / WHITENING
    whitening = None
    if whitening_file.exists():
        with np.load(whitening_file, allow_pickle=False) as data:
            whitening = Whitening.from_arrays(data)
    return Embeddings(
        gallery=gallery, config=config, ids=contents.ids, vectors=contents.vectors, directory=directory,
        meta=json.loads(meta_file.read_text()) if meta_file.exists() else {},
        failures={k: reason for k, (reason, _) in contents.failures.items()},
        whitening=whitening, fingerprints=contents.fingerprints,
    )


def build_embeddings(gallery: Gallery, config: EmbeddingConfig, embedder: Embedder | None = None,
                     reporter: Reporter | None = None) -> Embeddings:
    """Bring the cache of ``gallery`` under ``config`` up to date with the folder and return it.

    Unchanged files are never re-embedded; a killed run resumes from its last checkpoint.
    Whitened configs reuse the cache of their base (unwhitened) config. ``reporter`` (default:
    a terminal bar and printed lines) hears the progress and the changes.
    """
    reporter = reporter or Reporter()
    if gallery.imported:
        raise CacheError(f"gallery {gallery.name!r} holds imported descriptors, not a folder to embed: add to it "
                         f"with {command_line('import', f'--name {gallery.name}', '--vectors FILE.npy')}")
    if config.whitening != "none":
        return _build_whitened(gallery, config, embedder, reporter)
    directory = cache_dir(gallery.name, config)
    check_config(directory, config)
    with exclusive_lock(directory / LOCK, on_wait=lambda: reporter.message(
            f"{gallery.name}: waiting for another process that is updating {directory}")):
        _update(gallery, config, directory, embedder, reporter)
    return load_embeddings(gallery.name, config)


@dataclass
class UpdatePlan:
    """What an update of a cache must do, from comparing the folder with the cache: the rows it
    keeps, the rows it drops (files removed or changed), the files it must embed (``todo``),
    the failures, and the changes to report."""

    ids: list[str]                                   # the folder's usable files
    fingerprints: dict[str, str]
    kept: set[str]                                   # ids whose row in the store stays valid
    vectors: dict[str, np.ndarray]                   # embedded since the last checkpoint, not yet stored
    failures: dict[str, tuple[str, str]]             # id -> (reason, fingerprint)
    todo: list[str]
    changes: Changes
    dead: list[int] = field(default_factory=list)    # rows of the store to drop
    renewed: bool = False                            # an older "size:mtime" fingerprint was renewed


def _stored_rows(directory: Path) -> tuple[dict[str, int], dict[str, str], dict[str, tuple[str, str]]]:
    """The store's live rows (id -> row), their fingerprints and its failures; empty if none."""
    manifest = store.read_manifest(directory)
    if manifest is None:
        return {}, {}, {}
    ids, fps = store.read_rows(directory, manifest)
    dead = set(manifest.dead)
    rows = {i: r for r, i in enumerate(ids) if r not in dead}
    return rows, {i: fps[r] for i, r in rows.items()}, {k: (v[0], v[1]) for k, v in manifest.failures.items()}


def plan_update(gallery: Gallery, directory: Path) -> UpdatePlan:
    """Compare the gallery's folder with the cache in ``directory``: unchanged files keep their
    row (or their failure), new and changed files are to be embedded. Entries the scan cannot
    use (FIFOs, dangling links, non-UTF-8 names, ...) are failures whose fingerprint is their
    reason: listed with it, and reported as changed only when it changes. Reads no vector."""
    old_rows, old_fp, old_fail = _stored_rows(directory)
    scan = gallery.scan()
    ids = list(scan.files)
    fps = {i: fingerprint(st) for i, st in scan.files.items()}
    skipped = {name: (reason, f"skipped: {reason}") for name, reason in scan.skipped.items()}
    plan = UpdatePlan(ids, fps, set(), {}, {}, [],
                      Changes(removed=sorted((set(old_fp) | set(old_fail)) - set(ids) - set(skipped))))
    for i in ids:
        if i in old_fp and same_file(old_fp[i], fps[i]):
            plan.kept.add(i)
            plan.renewed |= old_fp[i] != fps[i]
            plan.changes.unchanged += 1
        elif i in old_fail and same_file(old_fail[i][1], fps[i]):
            plan.failures[i] = (old_fail[i][0], fps[i])
            plan.renewed |= old_fail[i][1] != fps[i]
            plan.changes.unchanged += 1
        else:
            (plan.changes.changed if i in old_fp or i in old_fail else plan.changes.added).append(i)
            plan.todo.append(i)
    for name, failure in skipped.items():
        plan.failures[name] = failure
        if old_fail.get(name) == failure:
            plan.changes.unchanged += 1
        else:
            (plan.changes.changed if name in old_fp or name in old_fail else plan.changes.added).append(name)
    plan.dead = sorted(r for i, r in old_rows.items() if i not in plan.kept)
    return plan


def extract(plan: UpdatePlan, gallery: Gallery, config: EmbeddingConfig, embedder: Embedder,
            checkpoint: Callable[[], None], reporter: Reporter) -> dict[str, float]:
    """Embed ``plan.todo`` into ``plan.vectors`` (unreadable files into ``plan.failures``),
    calling ``checkpoint`` every CHECKPOINT_SECONDS so that a killed run resumes. Returns the
    extraction figures."""
    reporter.message(f"{gallery.name}: embedding {len(plan.todo)} images with {config.label()} "
                     f"({len(plan.ids) - len(plan.todo)} reused from the cache)")
    paths = [str(gallery.root / i) for i in plan.todo]
    start = last = time.perf_counter()
    n_done = 0
    for pos, out in embedder.iter_files(paths, desc=f"embedding {gallery.name}", progress=reporter.bar):
        image_id = plan.todo[pos]
        if isinstance(out, str):
            plan.failures[image_id] = (out, plan.fingerprints[image_id])
            reporter.message(f"skipped {printable(image_id)}: {out}")
        else:
            plan.vectors[image_id] = out
        n_done += 1
        reporter.advance(n_done, len(plan.todo))
        if time.perf_counter() - last > CHECKPOINT_SECONDS:
            checkpoint()
            last = time.perf_counter()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "n_embedded": n_done, "images_per_second": n_done / seconds if seconds else 0.0}


def commit(directory: Path, plan: UpdatePlan) -> store.Manifest:
    """Append to the store what was embedded since the last commit, mark the rows of removed and
    changed files dead and record the failures, in one atomic commit that costs the new rows."""
    new = list(plan.vectors)
    vectors = np.stack([plan.vectors[i] for i in new]) if new else np.zeros((0, 0), np.float32)
    manifest = store.append(directory, new, [plan.fingerprints[i] for i in new], vectors, plan.dead, plan.failures)
    plan.kept.update(new)
    plan.vectors.clear()
    return manifest


def save(directory: Path, gallery: Gallery, config: EmbeddingConfig, plan: UpdatePlan, meta: dict,
         complete: bool) -> None:
    """Commit the plan as it is now; at the end of an update (``complete``), drop dead rows and
    renew older fingerprints by one rewrite. Then write the config and the meta."""
    write_config(directory, config)
    manifest = commit(directory, plan)
    if complete and (manifest.dead or plan.renewed):
        manifest = store.compact(directory, plan.fingerprints if plan.renewed else None)
        plan.dead, plan.renewed = [], False
    n_images = manifest.n_rows - len(manifest.dead)
    meta.update({"gallery": gallery.name, "root": str(gallery.root), "config": config.to_dict(),
                 "label": config.label(), "n_images": n_images, "n_failed": len(plan.failures),
                 "dim": manifest.dim if n_images else 0,
                 "complete": complete, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})
    write_json(directory / "meta.json", meta)


def _update(gallery: Gallery, config: EmbeddingConfig, directory: Path, embedder: Embedder | None,
            reporter: Reporter) -> None:
    """``build_embeddings`` under the cache's lock: plan, extract, save."""
    remove_stale_temporaries(directory)
    migrate_legacy(directory)
    manifest = store.read_manifest(directory)
    if manifest is not None:
        store.remove_uncommitted(directory, manifest)
    plan = plan_update(gallery, directory)
    meta = json.loads((directory / "meta.json").read_text()) if (directory / "meta.json").exists() else {}
    if plan.todo:
        meta["extraction"] = extract(plan, gallery, config, embedder or Embedder(config),
                                     lambda: save(directory, gallery, config, plan, meta, complete=False), reporter)
    changes = plan.changes
    last_changes = meta.get("changes")
    meta["changes"] = {"added": changes.added, "changed": changes.changed, "removed": changes.removed,
                       "unchanged": changes.unchanged}
    if (plan.todo or changes.added or changes.changed or changes.removed or plan.renewed
            or manifest is None or not meta.get("complete")):
        save(directory, gallery, config, plan, meta, complete=True)
    elif meta["changes"] != last_changes:       # "changes" describes the latest update, even an empty one
        write_json(directory / "meta.json", meta)
    if changes.added or changes.changed or changes.removed:
        reporter.message(f"{gallery.name}: {changes.summary()}")


def _build_whitened(gallery: Gallery, config: EmbeddingConfig, embedder: Embedder | None,
                    reporter: Reporter) -> Embeddings:
    """Whitened descriptors: the base cache, plus a PCA-whitening learned on the gallery itself
    ("gallery") or on another gallery's base descriptors (its name)."""
    base = build_embeddings(gallery, config.base(), embedder, reporter)
    if config.whitening == "gallery":
        learn_on = base
    else:
        source = load_gallery(config.whitening)
        learn_on = build_embeddings(source, config.base(), embedder, reporter.without_callback())
    whitening = learn_pca_whitening(learn_on.vectors, config.whiten_dim, config.whiten_shrinkage)
    directory = cache_dir(gallery.name, config)
    check_config(directory, config)
    base_meta = dict(base.meta)
    base_meta.update({"config": config.to_dict(), "label": config.label(), "dim": whitening.dim,
                      "whitening_learned_on": {"gallery": learn_on.gallery, "n": len(learn_on.ids)},
                      "base_key": config.base().key()})
    failures = {k: (v, "") for k, v in base.failures.items()}
    with exclusive_lock(directory / LOCK):
        migrate_legacy(directory)
        write_config(directory, config)
        store.rewrite(directory, base.ids, base.fingerprints, [whitening.apply(base.vectors)] if base.ids else [],
                      failures, whitening.to_arrays())
        write_json(directory / "meta.json", base_meta)
    return load_embeddings(gallery.name, config)


# the keys of a saved index's description that are not its backend's parameters (core.index.stored)
_INDEX_HEAD = {"config_key", "config", "dim", "n_items", "ids_digest", "metric", "file", "file_bytes", "file_sha256",
               "build_seconds", "recall@10", "recall@100", "recall_trials", "recall_target_met"}


@dataclass(frozen=True)
class IndexInfo:
    """An index saved beside a cache: its backend, metric, parameters and measured recall, from
    the description written with it (any saved backend: the listing names none)."""

    name: str
    kind: str                      # the backend, the prefix of its file name
    metric: str
    parameters: str                # e.g. "n_trees 25, search_k 2500"
    recall_at_10: float
    recall_at_100: float
    file_bytes: int

    @classmethod
    def read(cls, meta_path: Path) -> IndexInfo | None:
        """The description at ``meta_path``, or None when it is not an index's."""
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or "file_sha256" not in meta:
            return None
        parameters = ", ".join(f"{k} {v}" for k, v in meta.items() if k not in _INDEX_HEAD)
        return cls(meta_path.stem, meta_path.stem.split("-", 1)[0], str(meta.get("metric", "?")), parameters,
                   float(meta.get("recall@10", 0.0)), float(meta.get("recall@100", 0.0)), int(meta.get("file_bytes", 0)))

    def describe(self) -> str:
        """One line for listings: ``hnsw cosine, m 16, ef_construction 100, ef 48: recall@10 0.981, 1.2 MB``."""
        return (f"{self.kind} {self.metric}, {self.parameters}: recall@10 {self.recall_at_10:.3f}, "
                f"{self.file_bytes / 1e6:.1f} MB")


def saved_indexes(directory: Path) -> list[IndexInfo]:
    """The indexes saved beside the cache in ``directory``."""
    found = (IndexInfo.read(p) for p in sorted(directory.glob("*.json")) if p.name not in ("config.json", "meta.json"))
    return [info for info in found if info is not None]


@dataclass(frozen=True)
class CacheInfo:
    """One descriptor cache of a gallery, as listed by ``galleries`` and the app."""

    key: str
    label: str
    config: EmbeddingConfig
    n_images: int
    dim: int
    complete: bool
    indexes: list[IndexInfo]
    updated: str = ""                      # when the cache was last written

    @property
    def usable(self) -> bool:
        """Complete and not empty: something to search."""
        return self.complete and self.n_images > 0


def gallery_caches(gallery: str) -> list[CacheInfo]:
    """Every descriptor cache of a gallery: key, config, size, dimension, saved indexes and their
    parameters."""
    out = []
    for d in sorted((embeddings_dir() / gallery).glob("*/meta.json")):
        meta = json.loads(d.read_text())
        try:
            config = EmbeddingConfig.from_dict(meta.get("config", {}))
        except (TypeError, ValueError):
            continue                      # a cache of a config this version cannot read
        out.append(CacheInfo(d.parent.name, meta.get("label", "?"), config,
                             int(meta.get("n_images", 0)), int(meta.get("dim", 0)), bool(meta.get("complete", False)),
                             saved_indexes(d.parent),
                             meta.get("updated", "")))
    return out
