"""Models trained by ``python -m core train``: the file format and what every command needs to
use one as ``--weights artifacts/models/NAME/model.pt`` with no other flag.

A model folder holds two files:

- ``model.pt``: a dict with ``format`` (``FORMAT``), ``backbone`` (registry name), ``base_weights``
  (what training started from), ``head`` (the ``HeadConfig`` of the embedding head, or None),
  ``layer`` (the descriptor layer it was trained for), ``classes`` and ``state_dict`` (the whole
  ``Backbone``: feature network, pre-logits and head). Read with ``weights_only=True``.
- ``model.json``: the ``ModelCard``: the same fields but the tensors, the file's sha256, every
  training setting, the data fingerprint and the per-epoch history (what the metrics page plots).

``apply_model`` completes an ``EmbeddingConfig`` from the card: the backbone it was trained
from, its descriptor layer, and the file's sha256 (hashed, so retraining gives new caches). A
model is refused, with the reason, on another backbone than its own.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TypeVar

import torch

from core.config import EmbeddingConfig, command_line
from core.embed.heads import EmbeddingHead, HeadConfig
from core.embed.network import Backbone, assemble
from core.embed.specs import BackboneSpec, WeightsUnavailable
from core.embed.weights import is_path, load_state, read_checkpoint
from core.files import file_digest
from core.paths import models_dir

FORMAT = "cbir-model/1"
MODEL_FILE = "model.pt"
CARD_FILE = "model.json"

T = TypeVar("T")


@dataclass(frozen=True)
class TrainingData:
    """What a model was trained on: its folder and data fingerprint, image counts (all, train,
    held out), images per class, the backbone's stages and how many were trained, the side of
    the training views."""

    root: str = ""
    fingerprint: str = ""
    n_images: int = 0
    n_train: int = 0
    n_val: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)
    stages: int = 0
    view_side: int = 0
    trainable_stages: int = 0


@dataclass(frozen=True)
class TrainingTiming:
    """How training went: seconds caching trunk features, in epochs and in the last call; the
    best epoch, epochs run and whether early stopping ended them; threads and load average."""

    feature_cache_seconds: float = 0.0
    epoch_seconds: float = 0.0
    this_call_seconds: float = 0.0

    best_epoch: int = 0               # 1-based, as in ``history``
    epochs_run: int = 0
    stopped_early: bool = False

    threads: int = 0
    epoch_threads: int = 0
    load_average: list[float] = field(default_factory=list)


def _record(cls: type[T], value: dict | None) -> T:
    """The record ``cls`` of a dict read from ``model.json``: the keys ``cls`` knows, the others
    dropped, the missing ones at their defaults; the record's field order is the trainer's, so a
    complete card is written back unchanged."""
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in dict(value or {}).items() if k in known})


@dataclass(frozen=True)
class ModelCard:
    """What ``model.json`` says about a trained model: ``data`` and ``timing`` as typed records,
    ``training`` (the settings) and ``history`` (one dict per epoch) as the trainer wrote them."""

    name: str
    backbone: str
    base_weights: str
    layer: str
    classes: tuple[str, ...]
    sha256: str
    head: HeadConfig | None = None
    training: dict = field(default_factory=dict)
    data: TrainingData = field(default_factory=TrainingData)
    history: tuple[dict, ...] = ()
    timing: TrainingTiming = field(default_factory=TrainingTiming)
    created: str = ""

    def to_dict(self) -> dict:
        return {"format": FORMAT, "name": self.name, "backbone": self.backbone, "base_weights": self.base_weights,
                "layer": self.layer, "classes": list(self.classes), "sha256": self.sha256,
                "head": self.head.to_dict() if self.head else None, "training": self.training,
                "data": asdict(self.data), "history": list(self.history), "timing": asdict(self.timing),
                "created": self.created}

    @classmethod
    def from_dict(cls, data: dict) -> ModelCard:
        return cls(name=data["name"], backbone=data["backbone"], base_weights=data["base_weights"],
                   layer=data["layer"], classes=tuple(data["classes"]), sha256=data["sha256"],
                   head=HeadConfig.from_dict(data["head"]) if data.get("head") else None,
                   training=data.get("training", {}), data=_record(TrainingData, data.get("data")),
                   history=tuple(data.get("history", ())), timing=_record(TrainingTiming, data.get("timing")),
                   created=data.get("created", ""))


def _card_path(path: str | Path) -> Path:
    return Path(path).with_name(CARD_FILE)


def is_trained_model(path: str | Path) -> bool:
    """Whether ``path`` is a model file written by training (its ``model.json`` beside it, or,
    without one, a checkpoint whose dict names the format)."""
    path = Path(path)
    if not path.is_file():
        return False
    card = _card_path(path)
    if card.is_file():
        try:
            return json.loads(card.read_text()).get("format") == FORMAT
        except (json.JSONDecodeError, OSError):
            return False
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - any file torch cannot read is simply not a trained model
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT


def read_card(path: str | Path) -> ModelCard:
    """The card of the model file ``path`` (``model.json`` beside it)."""
    card = _card_path(path)
    if not card.is_file():
        raise WeightsUnavailable(f"{card} is missing: the card of a trained model is written beside its model.pt")
    return ModelCard.from_dict(json.loads(card.read_text()))


def load_trained_backbone(spec: BackboneSpec, path: str | Path) -> Backbone:
    """The backbone ``spec`` with the trained weights and head of ``path``; refused, in one line,
    when the model was trained from another backbone, when the file is damaged, and when the head
    it declares does not match the tensors it holds (checked before the head is allocated: a
    small file declaring a huge head is refused, not built)."""
    data = read_checkpoint(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("state_dict"), dict):
        raise WeightsUnavailable(f"{path} is not a model written by `{command_line('train')}`")
    if data["backbone"] != spec.name:
        raise WeightsUnavailable(f"{path} was trained from backbone {data['backbone']}, not {spec.name}; "
                                 f"use --backbone {data['backbone']} (or leave --backbone out)")
    config = HeadConfig.from_dict(data["head"]) if data.get("head") else None
    if config is not None:
        _check_head(config, data["state_dict"], path)
    backbone = assemble(spec, spec.build(), str(path), EmbeddingHead(config) if config else None)
    load_state(backbone, data["state_dict"], path, strict=True)
    return backbone


def _check_head(config: HeadConfig, state: dict, path: str | Path) -> None:
    """Refuse a head whose declared size is not the one of its projection in ``state``."""
    weight = state.get("head.project.weight")
    declared = (config.dim, config.in_channels)
    if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != declared:
        held = "none" if not isinstance(weight, torch.Tensor) else "x".join(map(str, weight.shape))
        raise WeightsUnavailable(f"{path} declares a {config.dim}-wide head on {config.in_channels} channels but "
                                 f"holds projection weights of shape {held}: the model file is damaged or was "
                                 f"not written by `{command_line('train')}`; train it again")


def apply_model(config: EmbeddingConfig, backbone_given: bool = False, layer_given: bool = False) -> EmbeddingConfig:
    """``config`` completed from its weights file: a plain checkpoint's sha256; for a trained
    model the backbone of its card and, unless given, its descriptor layer, and the sha256 of
    ``model.pt`` itself, not the one its card recorded: a model replaced under the same path is
    another network, with other descriptors (the card's figure only matches an unchanged file).
    A backbone given explicitly must be the model's own; the head layer needs a trained model.
    Other weights leave ``config`` unchanged, so the default config's key stays what it was."""
    if not is_trained_model(config.weights):
        if config.layer == "head":
            raise ValueError(f"--layer head reads the embedding head of a model trained by `{command_line('train')}`; "
                             f"pass its model.pt as --weights ({config.weights!r} is not one)")
        if is_path(config.weights) and Path(config.weights).is_file():
            return replace(config, weights_digest=file_digest(config.weights))
        return config
    card = read_card(config.weights)
    if backbone_given and config.backbone != card.backbone:
        raise WeightsUnavailable(f"{config.weights} was trained from backbone {card.backbone}, not {config.backbone}; "
                                 f"leave --backbone out to use the model's own")
    return replace(config, backbone=card.backbone, layer=config.layer if layer_given else card.layer,
                   weights_digest=file_digest(config.weights))


def list_models(root: Path | None = None) -> list[tuple[Path, ModelCard]]:
    """(model.pt path, card) of every trained model under ``artifacts/models``, by name."""
    root = root or models_dir()
    out = []
    for card in sorted(root.glob(f"*/{CARD_FILE}")):
        try:
            out.append((card.with_name(MODEL_FILE), ModelCard.from_dict(json.loads(card.read_text()))))
        except (json.JSONDecodeError, KeyError, OSError):
            continue                      # a card being written or damaged: not listed
    return [(p, c) for p, c in out if p.is_file()]
