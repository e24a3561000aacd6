"""Descriptor extraction: a backbone, a pooling and a set of scales turn an image into one
L2-normalised vector.

``Embedder`` holds the network (built once) and embeds single images (queries) or whole file
lists (galleries, with worker processes decoding ahead of the network and a tqdm progress bar).
Unreadable files are skipped and reported, never fatal.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .backbones import Backbone, create_backbone
from .config import EmbeddingConfig
from .images import Box, ImageError, load_image, to_tensor
from .pooling import pool

MIN_SIDE = 32          # smaller scaled inputs are padded up to this side


def default_threads() -> int:
    return max(1, os.cpu_count() or 1)


@dataclass
class ExtractionResult:
    """Vectors of the images that could be read, in input order, and the failures."""

    ids: list[str]
    vectors: np.ndarray                                   # [n, dim] float32
    failures: dict[str, str] = field(default_factory=dict)  # id -> reason
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return len(self.ids) / self.seconds if self.seconds > 0 else 0.0


class _ImageFiles(Dataset):
    """Decodes and resizes gallery images in DataLoader workers; failures travel as strings."""

    def __init__(self, paths: Sequence[str], max_size: int) -> None:
        self.paths, self.max_size = list(paths), max_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | str]:
        try:
            return i, to_tensor(load_image(self.paths[i], self.max_size))
        except ImageError as exc:
            return i, str(exc)
        except Exception as exc:  # noqa: BLE001 - any decoder crash is a skipped file, not a dead run
            return i, f"{type(exc).__name__}: {exc}"


def _single(batch: list) -> tuple[int, torch.Tensor | str]:
    return batch[0]


class Embedder:
    """Backbone + pooling + scales of one ``EmbeddingConfig`` (whitening is applied elsewhere,
    on cached vectors, because it is learned from them)."""

    def __init__(self, config: EmbeddingConfig, threads: int | None = None) -> None:
        torch.set_num_threads(threads or default_threads())
        self.config = config
        self.backbone: Backbone = create_backbone(config.backbone, config.weights)
        self.backbone = self.backbone.to(memory_format=torch.channels_last)
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.embed_tensor(torch.rand(3, 64, 64)).shape[0])
        return self._dim

    @torch.inference_mode()
    def embed_tensor(self, rgb01: torch.Tensor) -> np.ndarray:
        """[3, H, W] image in [0, 1] → L2-normalised float32 descriptor, averaged over scales."""
        cfg, patch = self.config, self.backbone.spec.patch_size
        total = None
        for scale in cfg.scales:
            h, w = rgb01.shape[1:]
            size = (max(MIN_SIDE, round(h * scale)), max(MIN_SIDE, round(w * scale)))
            if patch > 1:
                size = tuple(max(patch, round(s / patch) * patch) for s in size)
            x = rgb01.unsqueeze(0)
            if size != (h, w):
                x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
            fmap = self.backbone(x.contiguous(memory_format=torch.channels_last))
            vec = F.normalize(pool(fmap.float(), cfg.pooling, cfg.gem_p), dim=1)
            total = vec if total is None else total + vec
        return F.normalize(total, dim=1)[0].numpy().astype(np.float32)

    def embed_image(self, source, box: Box | Sequence[float] | None = None) -> np.ndarray:
        """Descriptor of an image file or file-like object, optionally of the crop ``box``."""
        return self.embed_tensor(to_tensor(load_image(source, self.config.max_size, box)))

    def embed_pil(self, img: Image.Image) -> np.ndarray:
        """Descriptor of an already loaded (and cropped) PIL image, resized to ``max_size``."""
        img = img.convert("RGB")
        if max(img.size) > self.config.max_size:
            img = img.copy()
            img.thumbnail((self.config.max_size, self.config.max_size), Image.Resampling.BICUBIC)
        return self.embed_tensor(to_tensor(img))

    def iter_files(self, paths: Sequence[str], workers: int | None = None, desc: str = "embedding",
                   progress: bool = True) -> Iterator[tuple[int, np.ndarray | str]]:
        """Yield (position, descriptor or failure reason) for each path, in order."""
        workers = 0 if workers is None else workers
        loader = DataLoader(_ImageFiles(paths, self.config.max_size), batch_size=1, shuffle=False,
                            num_workers=workers, collate_fn=_single,
                            prefetch_factor=4 if workers > 0 else None, persistent_workers=False)
        bar = tqdm(total=len(paths), desc=desc, unit="img", disable=not progress, dynamic_ncols=True)
        try:
            for i, item in loader:
                yield i, item if isinstance(item, str) else self.embed_tensor(item)
                bar.update(1)
        finally:
            bar.close()

    def embed_files(self, paths: Sequence[str], ids: Sequence[str] | None = None,
                    workers: int | None = None, progress: bool = True,
                    on_progress: Callable[[int, int], None] | None = None) -> ExtractionResult:
        """Embed many files; ``ids`` name them in the result (default: the paths)."""
        ids = list(ids) if ids is not None else list(paths)
        kept, vectors, failures = [], [], {}
        start = time.perf_counter()
        for done, (i, out) in enumerate(self.iter_files(paths, workers, progress=progress), 1):
            if isinstance(out, str):
                failures[ids[i]] = out
            else:
                kept.append(ids[i])
                vectors.append(out)
            if on_progress:
                on_progress(done, len(paths))
        dim = vectors[0].shape[0] if vectors else 0
        arr = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, dim), np.float32)
        return ExtractionResult(kept, arr, failures, time.perf_counter() - start)
