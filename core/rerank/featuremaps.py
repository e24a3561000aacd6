"""Convolutional feature maps of gallery images: the local descriptors of BLCF and the windows of
local re-ranking.

Global descriptors throw the map away after pooling; the region-aware methods need it back.
Maps are taken at one scale (1.0) of the config's ``max_size`` from the unwhitened backbone and
cached as float16 in ``featuremaps.npz`` beside the config's base descriptors (so whitened and
unwhitened configs share them). The cache is valid for one exact list of files (ids and
fingerprints); any change recomputes it. Without a cache, ``MapSource`` computes the maps of only
the images it is asked for, which is what the search page needs for a top-N.

Geometry is kept in fractions of the image, so a map cell converts to original pixels without
knowing how the decoder scaled the image: cell (y, x) of an h×w map covers
[x/w, (x+1)/w] × [y/h, (y+1)/h] of the (EXIF-upright) original.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from core.cache.descriptors import cache_dir
from core.cache.galleries import Gallery
from core.config import EmbeddingConfig
from core.embed.embedder import Embedder
from core.files import write_npz
from core.images import Box, ImageSource, image_size, load_region, to_tensor

FMAPS = "featuremaps.npz"


@torch.inference_mode()
def feature_map(embedder: Embedder, img: Image.Image) -> np.ndarray:
    """[C, h, w] float32 feature map of an RGB image already resized to the config's max_size."""
    return embedder.feature_map(to_tensor(img).unsqueeze(0))[0].float().contiguous().numpy()


def load_map(embedder: Embedder, source: ImageSource) -> tuple[np.ndarray, tuple[int, int]]:
    """Feature map of a whole image (file or decoded image) and the image's original (width, height)."""
    if isinstance(source, Image.Image):
        size = source.size
    else:
        size = image_size(source)            # header only: the upright original size
        if hasattr(source, "seek"):
            source.seek(0)
    return feature_map(embedder, load_region(source, embedder.config.max_size)), size


def box_mask(shape: tuple[int, int], box: Box | None, original_size: tuple[int, int]) -> np.ndarray:
    """[h, w] bool: the map cells whose centre lies inside ``box`` (original pixels). A box too
    small to hold any centre keeps the one cell under its centre, so a query is never empty."""
    h, w = shape
    if box is None:
        return np.ones((h, w), bool)
    b = box.clamp(*original_size)
    width, height = original_size
    cx = (np.arange(w) + 0.5) / w * width
    cy = (np.arange(h) + 0.5) / h * height
    mask = ((cy >= b.y1) & (cy <= b.y2))[:, None] & ((cx >= b.x1) & (cx <= b.x2))[None, :]
    if not mask.any():
        mx, my = (b.x1 + b.x2) / 2 / width, (b.y1 + b.y2) / 2 / height
        mask[min(h - 1, int(my * h)), min(w - 1, int(mx * w))] = True
    return mask


def cells_to_box(top: int, left: int, height: int, width: int, shape: tuple[int, int],
                 original_size: tuple[int, int]) -> Box:
    """A window of map cells as a box in original pixels."""
    h, w = shape
    sx, sy = original_size[0] / w, original_size[1] / h
    return Box(left * sx, top * sy, (left + width) * sx, (top + height) * sy)


@dataclass
class FeatureMaps:
    """Maps of a gallery in ``ids`` order, stored flat: image i owns rows
    ``offsets[i]:offsets[i + 1]`` of ``features`` ([positions, C], row-major over (y, x))."""

    ids: list[str]
    features: np.ndarray          # [total positions, C] float16
    offsets: np.ndarray           # [n + 1] int64
    shapes: np.ndarray            # [n, 2] (h, w)
    image_sizes: np.ndarray       # [n, 2] original (width, height)
    digest: str = ""              # of the files' ids and fingerprints: what derived caches check

    def locals(self, i: int) -> np.ndarray:
        """[h·w, C] float32 local descriptors of image i."""
        return self.features[self.offsets[i]:self.offsets[i + 1]].astype(np.float32)

    def map(self, i: int) -> np.ndarray:
        """[C, h, w] float32 feature map of image i."""
        h, w = self.shapes[i]
        return self.locals(i).T.reshape(-1, h, w)

    def size(self, i: int) -> tuple[int, int]:
        return int(self.image_sizes[i, 0]), int(self.image_sizes[i, 1])


def _digest(ids: Sequence[str], fingerprints: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(f"{i}\t{f}" for i, f in zip(ids, fingerprints)).encode()).hexdigest()[:16]


def _read_cache(path: Path, ids: list[str], digest: str) -> FeatureMaps | None:
    """The cached maps when they were computed from exactly these files, else None."""
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        if str(data["digest"]) != digest:
            return None
        return FeatureMaps(ids, data["features"], data["offsets"], data["shapes"], data["image_sizes"], digest)


def maps_path(gallery: str, config: EmbeddingConfig) -> Path:
    return cache_dir(gallery, config.base()) / FMAPS


def gallery_feature_maps(gallery: Gallery, config: EmbeddingConfig, ids: Sequence[str],
                         embedder: Embedder | None = None, progress: bool = True,
                         log: Callable[[str], None] = print) -> FeatureMaps:
    """Maps of ``ids`` (the descriptor cache's rows), from the cache when it matches the files,
    else computed (one forward pass per image) and cached atomically."""
    path = maps_path(gallery.name, config)
    ids = list(ids)
    digest = _digest(ids, gallery.fingerprints(ids))
    cached = _read_cache(path, ids, digest)
    if cached is not None:
        return cached
    embedder = embedder or Embedder(config.base())
    log(f"{gallery.name}: computing feature maps of {len(ids)} images ({config.base().label()})")
    start = time.perf_counter()
    rows, shapes, sizes = [], [], []
    for image_id in tqdm(ids, desc="feature maps", unit="img", disable=not progress, dynamic_ncols=True):
        fmap, size = load_map(embedder, gallery.root / image_id)
        rows.append(fmap.reshape(fmap.shape[0], -1).T.astype(np.float16))
        shapes.append(fmap.shape[1:])
        sizes.append(size)
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    maps = FeatureMaps(ids, np.concatenate(rows), offsets, np.array(shapes, np.int32), np.array(sizes, np.int32),
                       digest)
    write_npz(path, features=maps.features, offsets=maps.offsets, shapes=maps.shapes,
              image_sizes=maps.image_sizes, digest=np.array(digest))
    log(f"{gallery.name}: feature maps in {time.perf_counter() - start:.1f} s, "
        f"{maps.features.nbytes / 1e6:.0f} MB cached in {path}")
    return maps


class MapSource:
    """Map of gallery image i on demand: from a ``FeatureMaps`` when one is loaded, else computed
    (and kept in memory) for just the images asked for, as for a top-N on the search page."""

    def __init__(self, gallery: Gallery, ids: Sequence[str], embedder: Embedder,
                 maps: FeatureMaps | None = None) -> None:
        self.gallery, self.ids, self.embedder, self.maps = gallery, list(ids), embedder, maps
        self._computed: dict[int, tuple[np.ndarray, tuple[int, int]]] = {}

    def __call__(self, i: int) -> tuple[np.ndarray, tuple[int, int]]:
        if self.maps is not None:
            return self.maps.map(i), self.maps.size(i)
        if i not in self._computed:
            self._computed[i] = load_map(self.embedder, self.gallery.root / self.ids[i])
        return self._computed[i]

    @classmethod
    def cached_or_lazy(cls, gallery: Gallery, config: EmbeddingConfig, ids: Sequence[str],
                       embedder: Embedder) -> MapSource:
        """The cache when it matches the files, else lazy per-image computation (a stale or
        missing cache is never rebuilt here: that is a whole-gallery pass)."""
        ids = list(ids)
        maps = _read_cache(maps_path(gallery.name, config), ids, _digest(ids, gallery.fingerprints(ids)))
        return cls(gallery, ids, embedder, maps)
