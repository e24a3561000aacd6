"""What training writes: the per-epoch training state that a killed run resumes from, and the
finished model (``model.pt`` + ``model.json``, the format of ``core.embed.trained``).

Both are written atomically (temporary file, fsync, rename): a run killed while saving keeps
the previous epoch's state, never half of one.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch

from core.embed.backbones import Backbone
from core.embed.trained import CARD_FILE, FORMAT, MODEL_FILE, ModelCard
from core.files import atomic_path, file_digest, write_json

STATE_FILE = "train_state.pt"


def save_state(directory: Path, state: dict) -> None:
    """The training state (tensors, numbers, strings, lists and dicts only) of the last epoch."""
    with atomic_path(directory / STATE_FILE, suffix=".pt") as tmp:
        torch.save(state, tmp)


def load_state(directory: Path) -> dict | None:
    path = directory / STATE_FILE
    return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None


def export_model(directory: Path, backbone: Backbone, card: ModelCard) -> ModelCard:
    """Write ``model.pt`` (the whole backbone with its head) and ``model.json`` (``card`` with
    the file's sha256 and the time); returns the card as written."""
    head = card.head.to_dict() if card.head else None
    data = {"format": FORMAT, "backbone": card.backbone, "base_weights": card.base_weights, "head": head,
            "layer": card.layer, "classes": list(card.classes),
            "state_dict": {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}}
    path = directory / MODEL_FILE
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(data, tmp)
    written = replace(card, sha256=file_digest(path), created=time.strftime("%Y-%m-%dT%H:%M:%S"))
    write_json(directory / CARD_FILE, written.to_dict())
    return written
