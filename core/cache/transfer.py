"""Descriptors computed elsewhere: import them into a gallery, export a gallery's for other tools.

An import appends rows (L2-normalised) to the gallery's store under the declared embedding config (so queries are
embedded the same way); an id already there is replaced (its old row is dropped by one rewrite).
Vectors of another dimension than the config's are refused. Exports write ``FILE.npy`` (float32
[n, dim], rows in the gallery's order) and ``FILE.ids.txt`` (one id a line).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.cache import store
from core.cache.descriptors import LOCK, cache_dir, check_config, load_embeddings, migrate_legacy, write_config
from core.cache.galleries import register_imported
from core.config import EmbeddingConfig
from core.files import exclusive_lock, write_json, write_npy, write_text


class TransferError(ValueError):
    """Vectors or ids that cannot be imported or exported, with the reason."""


@dataclass(frozen=True)
class ImportReport:
    """What an import did to a gallery's cache."""

    gallery: str
    directory: Path
    added: int
    replaced: int
    total: int
    dim: int
    seconds: float


def read_vectors(path: Path) -> np.ndarray:
    """The [n, dim] float32 rows of a ``.npy`` file (memory-mapped when already float32)."""
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise TransferError(f"{path}: not a readable .npy array ({exc})") from exc
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.floating) or 0 in x.shape:
        raise TransferError(f"{path}: expected a non-empty 2-d float array, got shape {x.shape} of {x.dtype}")
    return x if x.dtype == np.float32 else x.astype(np.float32)


def read_ids(path: Path | None, n: int, default_prefix: str) -> list[str]:
    """One id a line from ``path`` (exactly ``n``, distinct, none empty), or, without a file,
    ``<default_prefix>/<row>`` for each row."""
    if path is None:
        return [f"{default_prefix}/{i:07d}" for i in range(n)]
    ids = Path(path).read_text(encoding="utf-8").splitlines()
    if len(ids) != n:
        raise TransferError(f"{path}: {len(ids)} ids for {n} vectors")
    if any(not i for i in ids) or len(set(ids)) != n:
        raise TransferError(f"{path}: ids must be distinct and non-empty")
    return ids


def normalised(rows: np.ndarray) -> np.ndarray:
    """float32 rows scaled to unit L2 norm, as every descriptor of this project (a zero row stays zero)."""
    rows = np.asarray(rows, np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1)


def _fingerprints(rows: np.ndarray) -> list[str]:
    """"imported:<digest of the row>": a replaced vector changes the gallery's content digest."""
    return [f"imported:{hashlib.blake2b(row.tobytes(), digest_size=8).hexdigest()}" for row in rows]


def import_vectors(name: str, config: EmbeddingConfig, ids: list[str], vectors: np.ndarray,
                   expected_dim: int, images: Path | None = None, block: int = 65_536) -> ImportReport:
    """Append ``vectors`` (rows of ``ids``) to the cache of the imported gallery ``name`` (created,
    with its images in ``images`` if given, when new) under ``config``, whose descriptors have
    ``expected_dim`` values; ids already there are replaced. Costs the new rows (plus one
    rewrite of the cache when an id is replaced)."""
    if config.whitening != "none":
        raise TransferError("import descriptors under an unwhitened config (--whitening none)")
    if vectors.shape[1] != expected_dim:
        raise TransferError(f"vectors of dimension {vectors.shape[1]}, but {config.label()} makes {expected_dim}-d "
                            f"descriptors: pass the embedding flags of the model that produced them")
    start = time.perf_counter()
    gallery = register_imported(name, images)
    directory = cache_dir(gallery.name, config)
    check_config(directory, config)
    with exclusive_lock(directory / LOCK):
        migrate_legacy(directory)
        manifest = store.read_manifest(directory)
        rows = store.read_rows(directory, manifest)[0] if manifest else []
        dead_now = set(manifest.dead) if manifest else set()
        wanted = set(ids)
        dead = [r for r, i in enumerate(rows) if i in wanted and r not in dead_now]
        write_config(directory, config)
        for s in range(0, len(ids), block):
            rows = normalised(vectors[s:s + block])
            manifest = store.append(directory, ids[s:s + block], _fingerprints(rows), rows, dead if s == 0 else ())
        if manifest.dead:
            manifest = store.compact(directory)
        total = manifest.n_rows - len(manifest.dead)
        write_json(directory / "meta.json", {
            "gallery": gallery.name, "root": str(gallery.root), "config": config.to_dict(), "label": config.label(),
            "n_images": total, "n_failed": 0, "dim": manifest.dim, "complete": True, "imported": True,
            "import": {"added": len(ids) - len(dead), "replaced": len(dead)},
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return ImportReport(gallery.name, directory, len(ids) - len(dead), len(dead), total, manifest.dim,
                        time.perf_counter() - start)


def export_vectors(gallery: str, config: EmbeddingConfig, out: Path) -> tuple[Path, Path, int]:
    """Write the gallery's descriptors to ``out`` (.npy) and its ids to ``<out stem>.ids.txt``;
    returns both paths and the number of rows."""
    emb = load_embeddings(gallery, config)
    if any("\n" in i or "\r" in i for i in emb.ids):
        raise TransferError(f"gallery {gallery!r} has ids with line breaks, which a .ids.txt cannot hold")
    out = Path(out)
    if out.suffix != ".npy":
        raise TransferError(f"--out {out}: name a .npy file")
    ids_path = out.with_suffix(".ids.txt")
    write_npy(out, np.asarray(emb.vectors, np.float32) if len(emb.ids) else np.zeros((0, 0), np.float32))
    write_text(ids_path, "".join(f"{i}\n" for i in emb.ids))
    return out, ids_path, len(emb.ids)


def describe(report: ImportReport) -> str:
    return (f"{report.gallery}: {report.added} added, {report.replaced} replaced, {report.total} images "
            f"({report.dim}-d) in {report.directory} ({report.seconds:.1f} s)")

