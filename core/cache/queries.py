"""Cache of cropped-query descriptors: the boxes of a benchmark's queries, embedded once.

A query with a box must be embedded anew (the crop is not in the gallery cache), which for the
validation protocol's hundreds of cropped queries costs as much as embedding the gallery again,
on every run. Here each (image, file fingerprint, box) is embedded once per base config and kept
in ``queries.npz`` beside the gallery's base descriptors; whitening is applied by the caller, as
for the gallery vectors. A changed file gets a new fingerprint, so its old crops are never reused.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.cache.galleries import Gallery
from core.config import EmbeddingConfig
from core.files import write_npz
from core.images import Box, ImageError
from core.paths import embeddings_dir

QUERIES = "queries.npz"


@dataclass(frozen=True)
class CropRequest:
    """One query region: a gallery image id and its box in original pixels."""

    image_id: str
    box: Box


def crop_key(image_id: str, fingerprint: str, box: Box) -> str:
    """The cache key of one crop: image, file fingerprint and box, all that changes its descriptor."""
    return f"{image_id}\t{fingerprint}\t{' '.join(repr(float(v)) for v in box.as_list())}"


def queries_path(gallery: str, config: EmbeddingConfig) -> Path:
    return embeddings_dir() / gallery / config.base().key() / QUERIES


def _read(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        return {}
    with np.load(path, allow_pickle=False) as data:
        return dict(zip(data["keys"].tolist(), data["vectors"]))


@dataclass(frozen=True)
class CropDescriptors:
    vectors: np.ndarray        # [n - refused, dim] unwhitened, in request order
    n_cached: int              # how many came from the cache (the rest were embedded now)
    refused: dict[int, str] = field(default_factory=dict)   # request position -> why it cannot be embedded


def crop_descriptors(gallery: Gallery, config: EmbeddingConfig, requests: Sequence[CropRequest],
                     embed: Callable[[Path, Box], np.ndarray]) -> CropDescriptors:
    """Unwhitened descriptors of the crops, from the cache of ``gallery`` under ``config``'s
    base, the missing ones computed with ``embed(path, box)`` and added to the cache
    atomically (concurrent writers may drop each other's additions: they are then computed
    again, never wrong). A crop whose ``embed`` raises ``ImageError`` (nothing of the box in
    its image, an unreadable file) is refused with the reason and never cached."""
    if not requests:
        return CropDescriptors(np.zeros((0, 0), np.float32), 0)
    path = queries_path(gallery.name, config)
    cached = _read(path)
    fingerprints = gallery.fingerprints([r.image_id for r in requests])
    keys = [crop_key(r.image_id, fp, r.box) for r, fp in zip(requests, fingerprints)]
    missing = [i for i, k in enumerate(keys) if k not in cached]
    refused: dict[int, str] = {}
    for i in missing:
        try:
            cached[keys[i]] = np.asarray(embed(gallery.root / requests[i].image_id, requests[i].box), np.float32)
        except ImageError as exc:
            refused[i] = str(exc)
    if len(missing) > len(refused):
        write_npz(path, keys=np.array(list(cached), dtype=str), vectors=np.stack(list(cached.values())))
    rows = [cached[k] for i, k in enumerate(keys) if i not in refused]
    vectors = np.stack(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)
    return CropDescriptors(vectors, len(keys) - len(missing), refused)
