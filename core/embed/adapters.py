"""Adapters from a full network to what retrieval reads: the cut to its feature map (ViT's patch
tokens laid on their grid, Swin's channels-last stages turned channels-first, timm's
``forward_features``), its stages (blocks that training can freeze), its pre-logits (the vector
its own classifier reads), the small CNN trained from scratch, and the modules of an ensemble.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from core.embed.pooling import gap

# ---------------------------------------------------------------- cuts (network -> feature map)

def children_without(n_last: int) -> Callable[[nn.Module], nn.Module]:
    return lambda m: nn.Sequential(*list(m.children())[:-n_last])


def features_attribute(m: nn.Module) -> nn.Module:
    return m.features


def vgg_features(m: nn.Module) -> nn.Module:
    return m.features[:-1]             # drop the last max-pool, as cirtorch does


def regnet_features(m: nn.Module) -> nn.Module:
    return nn.Sequential(m.stem, m.trunk_output)


INCEPTION_TAIL = ("AuxLogits", "avgpool", "dropout", "fc")


def inception_features(m: nn.Module) -> nn.Module:
    """torchvision Inception3 up to Mixed_7c, without the auxiliary classifier."""
    return nn.Sequential(*(child for name, child in m.named_children() if name not in INCEPTION_TAIL))


# ---------------------------------------------------------------- stages (cut network -> blocks)

def grouped(modules: list[nn.Module]) -> list[nn.Module]:
    """Modules as stages: a normalisation layer, or one without parameters (activation,
    pooling), joins the stage before it, so that no stage is a lone ReLU."""
    stages: list[list[nn.Module]] = []
    for m in modules:
        trailing = isinstance(m, nn.modules.batchnorm._BatchNorm) or not any(True for _ in m.parameters())
        if trailing and stages:
            stages[-1].append(m)
        else:
            stages.append([m])
    return [group[0] if len(group) == 1 else nn.Sequential(*group) for group in stages]


def child_stages(features: nn.Module) -> list[nn.Module]:
    """The blocks of a sequential cut; a network that is not one is a single stage."""
    return grouped(list(features.children())) if isinstance(features, nn.Sequential) else [features]


def vgg_stages(features: nn.Module) -> list[nn.Module]:
    """VGG's convolution blocks, each ending at its max-pool (the last one, cut, at its ReLU)."""
    blocks, current = [], []
    for layer in features:
        current.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            blocks.append(nn.Sequential(*current))
            current = []
    return blocks + ([nn.Sequential(*current)] if current else [])


def timm_stages(features: nn.Module) -> list[nn.Module]:
    """The children of a timm network before its pooling, with EfficientNet's ``blocks`` split
    into its stages and stem/head convolutions kept with their normalisation."""
    model = features.model
    names = [n for n, _ in model.named_children()]
    children = [getattr(model, n) for n in names[:names.index("global_pool")]]
    if hasattr(model, "blocks"):            # EfficientNet family: stem, stages, head convolution
        return [nn.Sequential(model.conv_stem, model.bn1), *model.blocks, nn.Sequential(model.conv_head, model.bn2)]
    return grouped(children)


# ---------------------------------------------------------------- pre-logits (the classifier's input)

class GlobalAvgPool(nn.Module):
    """[B, C, h, w] -> [B, C]: what the classifier of ResNets, EfficientNets, Inception reads."""

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return gap(fmap)


def gap_prelogits(model: nn.Module) -> nn.Module:
    return GlobalAvgPool()


def vgg_fc7(model: nn.Module) -> nn.Module:
    """VGG's fc7 (4096-d, after its ReLU) from the cut map: the max-pool the cut removed, the
    7x7 average pool, fc6 and fc7 (dropout is inactive in eval mode)."""
    return nn.Sequential(nn.MaxPool2d(2, 2), model.avgpool, nn.Flatten(1), *list(model.classifier.children())[:5])


class ChannelsLastToFirst(nn.Module):
    """Swin's stages output [B, H, W, C]; retrieval pooling wants [B, C, H, W]."""

    def __init__(self, features: nn.Module, norm: nn.Module) -> None:
        super().__init__()
        self.features, self.norm = features, norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.features(x)).permute(0, 3, 1, 2)


class ViTPatchMap(nn.Module):
    """torchvision ViT cut before the head: patch tokens on their grid, any input size (the
    position embedding is interpolated bicubically to the grid)."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.vit
        tokens = v.conv_proj(x)                                    # [B, D, h, w]
        b, d, h, w = tokens.shape
        tokens = tokens.flatten(2).transpose(1, 2)
        pos = v.encoder.pos_embedding                              # [1, 1 + N, D]
        cls_pos, grid_pos = pos[:, :1], pos[:, 1:]
        side = int(grid_pos.shape[1] ** 0.5)
        grid_pos = grid_pos.reshape(1, side, side, d).permute(0, 3, 1, 2)
        grid_pos = F.interpolate(grid_pos, size=(h, w), mode="bicubic", align_corners=False)
        grid_pos = grid_pos.flatten(2).transpose(1, 2)
        cls = v.class_token.expand(b, -1, -1)
        seq = torch.cat([cls + cls_pos, tokens + grid_pos], dim=1)
        seq = v.encoder.ln(v.encoder.layers(v.encoder.dropout(seq)))
        return seq[:, 1:].transpose(1, 2).reshape(b, d, h, w)


class SmallCNN(nn.Sequential):
    """A small convolutional network trained from scratch: the baseline of the systems that
    train on the user's images only. Four blocks of conv-BN-ReLU twice and a max-pool (32, 64,
    128, 256 channels: stride 16); about 1.2 M parameters."""

    WIDTHS = (32, 64, 128, 256)

    def __init__(self) -> None:
        blocks, c_in = [], 3
        for c in self.WIDTHS:
            blocks.append(nn.Sequential(
                nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                nn.MaxPool2d(2)))
            c_in = c
        super().__init__(*blocks)


class TimmFeatures(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


# ---------------------------------------------------------------- ensembles

class Members(nn.Module):
    """The full networks of an ensemble, before cutting (what the offline loaders fill)."""

    def __init__(self, models: list[nn.Module]) -> None:
        super().__init__()
        self.models = nn.ModuleList(models)


class Concatenated(nn.Module):
    """Feature maps of several backbones on one image, concatenated along channels. Each map is
    divided by its mean per-position L2 norm (one number per image and network), so that every
    network weighs about the same in the pooled descriptor whatever the scale of its
    activations, and resized to the first network's grid (all are stride 32, so sizes differ by
    at most a rounding cell)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, rgb01: torch.Tensor) -> torch.Tensor:
        maps = [m(rgb01) for m in self.members]
        size = maps[0].shape[2:]
        # the others always resized (the identity at equal sizes), so that a traced graph has no branch
        resized = [maps[0], *(F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in maps[1:])]
        return torch.cat([f / f.norm(dim=1).mean(dim=(1, 2)).clamp_min(1e-6).view(-1, 1, 1, 1) for f in resized],
                         dim=1)
