"""What a person reads instead of internal codes: an embedding as "EfficientNet-Lite0 · R-MAC ·
3 scales · 512 px" rather than ``tf_efficientnet_lite0/rmac/ms3/512``, a re-ranking as
"k-reciprocal, k1 = 28" rather than ``kr28``, a class-folder benchmark as "class folders".

The codes stay where they are keys (run ids, cache keys, links); these names are for labels.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.config import GEM_POOLINGS, EmbeddingConfig
from core.rerank import RERANKERS

POOLINGS = {"gap": "average pooling", "spoc": "SPoC", "mac": "MAC", "gem": "GeM", "rgem": "regional GeM",
            "rmac": "R-MAC"}
LAYERS = {"penultimate": "penultimate layer", "head": "trained head"}
NETWORKS = (("tf_efficientnet_lite", "EfficientNet-Lite"), ("efficientnet_v2_", "EfficientNetV2-"),
            ("efficientnet_", "EfficientNet-"), ("mobilenet_v", "MobileNetV"), ("convnext_", "ConvNeXt-"),
            ("inception_resnet_v", "Inception-ResNet-v"), ("inception_v", "Inception-v"), ("resnet", "ResNet-"),
            ("regnet_", "RegNet-"), ("vit_", "ViT-"), ("swin_", "Swin-"), ("vgg", "VGG-"), ("xception", "Xception"),
            ("small_cnn", "small CNN"))
DATASETS = {"classes": "class folders"}


def network_name(backbone: str) -> str:
    """``tf_efficientnet_lite0`` → EfficientNet-Lite0, ``resnet50`` → ResNet-50, ``vit_b_16`` →
    ViT-B-16; an unknown name is kept."""
    for code, name in NETWORKS:
        if backbone.startswith(code):
            parts = backbone[len(code):].split("_")
            return name + "-".join(p.upper() if len(p) <= 2 or any(c.isdigit() for c in p) else p.title()
                                   for p in parts)
    return backbone


def embedding_name(config: EmbeddingConfig) -> str:
    """The network (and what it was fine-tuned on), pooling, scales, image size, and whatever
    differs from the plain float32, unwhitened descriptor."""
    network = network_name(config.backbone)
    if config.weights_digest:
        network += f" fine-tuned on {Path(config.weights).parent.name or Path(config.weights).stem}"
    pooling = LAYERS.get(config.layer) or POOLINGS.get(config.pooling, config.pooling)
    if config.layer == "pool" and config.pooling in GEM_POOLINGS:
        pooling += f" p = {config.gem_p:g}"
    n = len(config.scales)
    parts = [network, pooling, f"{n} scale{'s' if n != 1 else ''}", f"{config.max_size} px"]
    if config.whitening != "none":
        parts.append(f"whitened on {config.whitening}" + (f" to {config.whiten_dim}-d" if config.whiten_dim else ""))
    if config.precision != "float32":
        parts.append(config.precision)
    return " · ".join(parts)


def rerank_name(method: str, params: Mapping[str, Any]) -> str:
    """A re-ranking (a registered method and its parameters, as ``Reranker.params()`` or a run's
    ``RerankRun`` has them) in words: the method's title (before any bracket) and its first two
    parameters that are set (0 means "follows the gallery's size" and is left out). "none" for
    the plain ranking."""
    if method not in RERANKERS or method == "none":
        return method or "none"
    title = re.sub(r"\s*\(.*\)$", "", RERANKERS[method].title).removesuffix(" re-ranking")
    values = [f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}" for k, v in params.items()
              if k != "method" and isinstance(v, (int, float)) and not isinstance(v, bool) and v]
    return ", ".join([title, *values[:2]])


def dataset_name(dataset: str) -> str:
    return DATASETS.get(dataset, dataset)
