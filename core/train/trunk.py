"""The frozen trunk and its feature cache: what makes training practical on a CPU.

A backbone's stages split into a frozen prefix and a trainable top. The prefix's feature maps
of every training view never change, so they are computed once (the costly part: most of the
network's work) and cached as float16 under ``artifacts/models/_cache/<key>/``; each epoch then
runs only the trainable top, the head and the loss. ``trainable_stages`` = 0 trains the head
alone; a value at or above the number of stages trains the whole network (the cache then holds
the normalised views).
"""
from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from core.embed.backbones import Backbone
from core.embed.embedder import default_backend
from core.embed.openvino import OpenVinoBackbone, openvino_available
from core.embed.pooling import gem
from core.files import write_json, write_npy
from core.train.data import Augmentation, LabelledImages, load_view

CACHE_BATCH = 16


class _Normalised(nn.Module):
    """The backbone's input normalisation followed by its first stages."""

    def __init__(self, backbone: Backbone, stages: Sequence[nn.Module]) -> None:
        super().__init__()
        self.backbone_mean, self.backbone_std = backbone.mean, backbone.std
        self.stages = nn.Sequential(*stages)

    def forward(self, rgb01: torch.Tensor) -> torch.Tensor:
        return self.stages((rgb01 - self.backbone_mean) / self.backbone_std)


@dataclass
class TrunkSplit:
    """``frozen`` maps RGB in [0, 1] to the map the ``trainable`` top continues from; both
    share their modules with ``backbone``, so training the top trains the backbone in place."""

    backbone: Backbone
    frozen: nn.Module
    trainable: nn.Sequential
    n_stages: int
    n_trainable: int

    @classmethod
    def of(cls, backbone: Backbone, trainable_stages: int) -> TrunkSplit:
        stages = backbone.stages()
        k = min(max(0, trainable_stages), len(stages))
        split = cls(backbone, _Normalised(backbone, stages[:len(stages) - k]),
                    nn.Sequential(*stages[len(stages) - k:]), len(stages), k)
        for p in split.frozen.parameters():
            p.requires_grad_(False)
        split.frozen.eval()
        return split

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.trainable.parameters() if p.requires_grad]


@dataclass
class FeatureCache:
    """Frozen-trunk outputs: ``views[v]`` is a float16 array [n_images, C, h, w] (row i is
    image ``positions[i]`` of the data), view 0 plain, the others augmented; [n_images, C] when
    the maps are pooled as they are cached (a frozen backbone under a head of fixed GeM)."""

    positions: list[int]
    views: list[np.ndarray]
    seconds: float

    def batch(self, rows: np.ndarray, view_of_row: np.ndarray) -> torch.Tensor:
        """float32 maps of ``rows``, each from its view."""
        return torch.from_numpy(np.stack([self.views[v][r] for r, v in zip(rows, view_of_row)]).astype(np.float32))


def frozen_runner(split: TrunkSplit, threads: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The frozen trunk as a function of a batch: through OpenVINO where it is installed (the
    same maps as PyTorch to float precision, about twice as fast on CPUs), else PyTorch."""
    if openvino_available() and default_backend() != "torch":
        try:
            return OpenVinoBackbone(split.frozen, threads,
                                    name=f"{split.backbone.spec.name}-frozen{split.n_stages - split.n_trainable}")
        except Exception as exc:  # noqa: BLE001 - any conversion failure leaves PyTorch, which works
            warnings.warn(f"OpenVINO conversion of the frozen trunk failed ({exc}); using PyTorch")
    return lambda x: split.frozen(x.contiguous(memory_format=torch.channels_last))


@dataclass(frozen=True)
class ViewSpec:
    """Which frozen-trunk outputs a cache holds: view 0 (plain) and ``n_views`` augmented views
    (none without an ``augmentation``) of the images at ``positions``, squashed to ``size`` px
    and drawn under ``seed``; GeM-pooled with exponent ``pool_p`` when given."""

    positions: tuple[int, ...]
    n_views: int
    size: int
    seed: int
    augmentation: Augmentation | None = None
    pool_p: float | None = None

    @property
    def total_views(self) -> int:
        return 1 + (self.n_views if self.augmentation is not None else 0)


@torch.inference_mode()
def _compute_view(run: Callable[[torch.Tensor], torch.Tensor], data: LabelledImages, spec: ViewSpec, view: int,
                  bar: tqdm) -> np.ndarray:
    """View ``view`` of every image of ``spec`` through ``run``, as float16, in batches."""
    out = None
    positions = spec.positions
    for start in range(0, len(positions), CACHE_BATCH):
        chunk = positions[start:start + CACHE_BATCH]
        x = torch.stack([load_view(data.path(i), spec.size, view, spec.seed, i, spec.augmentation) for i in chunk])
        y = run(x).float()
        y = (gem(y, spec.pool_p) if spec.pool_p is not None else y).numpy().astype(np.float16)
        if out is None:
            out = np.empty((len(positions), *y.shape[1:]), np.float16)
        out[start:start + len(chunk)] = y
        bar.update(len(chunk))
    return out


def cache_features(split: TrunkSplit, data: LabelledImages, spec: ViewSpec, directory: Path, progress: bool = True,
                   log: Callable[[str], None] = print) -> FeatureCache:
    """The frozen trunk's maps of the views ``spec`` names, read from ``directory`` when a
    previous run computed them (each view is saved as soon as it is complete, so a killed run
    loses at most one view)."""
    meta = directory / "cache.json"
    expected = {"positions": list(spec.positions), "size": spec.size, "seed": spec.seed}
    if meta.exists() and json.loads(meta.read_text()) != expected:
        raise ValueError(f"feature cache {directory} belongs to other images; delete it")
    write_json(meta, expected)
    todo = [v for v in range(spec.total_views) if not (directory / f"view{v}.npy").exists()]
    start = time.perf_counter()
    if todo:
        log(f"computing the frozen trunk's features of {len(spec.positions)} images x {len(todo)} views "
            f"({split.n_stages - split.n_trainable} of {split.n_stages} stages frozen, {spec.size} px)")
    bar = tqdm(total=len(spec.positions) * len(todo), desc="trunk features", unit="img",
               disable=not progress or not todo, dynamic_ncols=True)
    run = frozen_runner(split, torch.get_num_threads()) if todo and split.n_trainable < split.n_stages else None
    try:
        for v in todo:
            write_npy(directory / f"view{v}.npy", _compute_view(run or split.frozen, data, spec, v, bar))
    finally:
        bar.close()
    views = [np.load(directory / f"view{v}.npy", mmap_mode="r") for v in range(spec.total_views)]
    return FeatureCache(list(spec.positions), views, time.perf_counter() - start)
