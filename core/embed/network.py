"""The assembled network every command embeds with: a ``Backbone`` holds the cut feature map,
its input normalisation, its pre-logits and (for a trained model) its embedding head."""
from __future__ import annotations

import torch
from torch import nn

from core.config import LAYERS, command_line
from core.embed.adapters import child_stages
from core.embed.pooling import pool
from core.embed.specs import BackboneSpec


class Backbone(nn.Module):
    """A feature-map extractor with its input normalisation: ``forward`` takes RGB in [0, 1].

    ``prelogits`` maps the feature map to the vector the network's own classifier reads (None
    where the registry does not define it); ``head`` is the embedding head of a trained model
    (None otherwise). ``describe`` turns a feature map into the descriptor of a layer."""

    def __init__(self, spec: BackboneSpec, features: nn.Module, weights: str,
                 prelogits: nn.Module | None = None, head: nn.Module | None = None) -> None:
        super().__init__()
        self.spec, self.features, self.weights = spec, features, weights
        self.prelogits, self.head = prelogits, head
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1))

    def forward(self, rgb01: torch.Tensor) -> torch.Tensor:
        return self.features(self.normalise(rgb01))

    def normalise(self, rgb01: torch.Tensor) -> torch.Tensor:
        return (rgb01 - self.mean) / self.std

    def stages(self) -> list[nn.Module]:
        """The cut network as blocks whose composition in order is ``features``."""
        return (self.spec.stages or child_stages)(self.features)

    def check_layer(self, layer: str) -> None:
        """Refuse, with the reason, a descriptor layer this network cannot give."""
        if layer not in LAYERS:
            raise ValueError(f"layer must be one of {', '.join(LAYERS)}, got {layer!r}")
        if layer == "penultimate" and self.prelogits is None:
            raise ValueError(f"{self.spec.name} has no penultimate layer in the registry; use --layer pool")
        if layer == "head" and self.head is None:
            raise ValueError(f"--layer head needs a model trained by `{command_line('train')}` (its model.pt as "
                             f"--weights); {self.weights!r} has no embedding head")

    def describe(self, fmap: torch.Tensor, layer: str, pooling: str, gem_p: float) -> torch.Tensor:
        """[B, C, h, w] feature map -> [B, D] descriptor (not normalised) of ``layer``."""
        if layer == "pool":
            return pool(fmap, pooling, gem_p)
        self.check_layer(layer)
        module = self.prelogits if layer == "penultimate" else self.head
        return module(fmap)


def assemble(spec: BackboneSpec, model: nn.Module, weights: str, head: nn.Module | None = None) -> Backbone:
    """The ``Backbone`` of a full network: its cut feature map and its pre-logits."""
    return Backbone(spec, spec.cut(model), weights, spec.prelogits(model) if spec.prelogits else None, head)
