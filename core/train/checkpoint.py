"""What training writes: the per-epoch training state that a killed run resumes from, and the
finished model (``model.pt`` + ``model.json``, the format of ``core.embed.trained``).

Both are written atomically (temporary file, fsync, rename): a run killed while saving keeps
the previous epoch's state, never half of one. A model counts as written only when its card
records the sha256 of the ``model.pt`` beside it (``finished_card``), so a run killed between
the two files is finished by the same command. A full disk is an ``OSError`` saying so (torch
reports it as an obscure ``RuntimeError``), and a damaged state file is one line naming the fix.
"""
from __future__ import annotations

import errno
import json
import pickle
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from core.embed.backbones import Backbone
from core.embed.trained import CARD_FILE, FORMAT, MODEL_FILE, ModelCard
from core.files import atomic_path, file_digest, write_json

STATE_FILE = "train_state.pt"
LOCK_FILE = ".train.lock"


@dataclass
class BestEpoch:
    """The epoch of lowest validation loss so far (its 1-based number, loss and weights)."""

    epoch: int = 0
    val_loss: float = float("inf")
    state: dict | None = None


@dataclass
class TrainState:
    """The training state after ``epoch`` (0-based): what a killed run resumes from. ``done``:
    no epoch is left (the last one ran, or early stopping)."""

    settings: dict
    fingerprint: str
    epoch: int
    history: list[dict]
    best: BestEpoch
    model: dict
    optimizer: dict
    done: bool

    def to_dict(self) -> dict:
        best = {"epoch": self.best.epoch, "val_loss": self.best.val_loss, "state": self.best.state}
        return {"settings": self.settings, "fingerprint": self.fingerprint, "epoch": self.epoch,
                "history": self.history, "best": best, "model": self.model, "optimizer": self.optimizer,
                "done": self.done}

    @classmethod
    def from_dict(cls, data: dict) -> TrainState:
        best = data["best"]
        return cls(data["settings"], data["fingerprint"], data["epoch"], data["history"],
                   BestEpoch(best["epoch"], best["val_loss"], best["state"]), data["model"], data["optimizer"],
                   bool(data["done"]))


class _Sink:
    """A file that keeps the ``OSError`` of a failed write: ``torch.save`` reports a full disk as
    a ``RuntimeError`` without the reason."""

    def __init__(self, fh: Any) -> None:
        self.fh, self.error = fh, None

    def write(self, data: bytes) -> int:
        try:
            return self.fh.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.fh.flush()


def save_tensors(obj: dict, path: Path) -> None:
    """``torch.save`` of ``obj`` to ``path``, atomically; a failed write (a full disk) raises an
    ``OSError`` naming the file, and leaves the previous file as it was."""
    with atomic_path(path, suffix=".pt") as tmp, open(tmp, "wb") as fh:
        sink = _Sink(fh)
        try:
            torch.save(obj, sink)
        except RuntimeError as exc:
            if sink.error is None:
                raise
            raise OSError(sink.error.errno or errno.EIO, f"{sink.error.strerror or sink.error} while writing {path}; "
                          "free some space and run the same command again: training resumes where it stopped") from exc


def save_state(directory: Path, state: TrainState) -> None:
    """The training state of the last epoch (``train_state.pt``)."""
    save_tensors(state.to_dict(), directory / STATE_FILE)


def load_state(directory: Path) -> TrainState | None:
    """The state ``save_state`` wrote in ``directory`` (None when there is none); a file that
    cannot be read as one is a ``ValueError`` that names it and ``--restart``."""
    path = directory / STATE_FILE
    if not path.exists():
        return None
    try:
        return TrainState.from_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path} is damaged or not a training state ({reason}); pass --restart to discard it "
                         f"and train from the start") from None


def finished_card(directory: Path) -> ModelCard | None:
    """The card of the model in ``directory`` when both files are there and the card records
    the sha256 of this ``model.pt``; None when a run stopped between the two files."""
    model, card = directory / MODEL_FILE, directory / CARD_FILE
    if not (model.is_file() and card.is_file()):
        return None
    try:
        written = ModelCard.from_dict(json.loads(card.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError, OSError):
        return None
    return written if written.sha256 == file_digest(model) else None


def export_model(directory: Path, backbone: Backbone, card: ModelCard) -> ModelCard:
    """Write ``model.pt`` (the whole backbone with its head) and ``model.json`` (``card`` with
    the file's sha256 and the time); returns the card as written."""
    head = card.head.to_dict() if card.head else None
    data = {"format": FORMAT, "backbone": card.backbone, "base_weights": card.base_weights, "head": head,
            "layer": card.layer, "classes": list(card.classes),
            "state_dict": {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}}
    path = directory / MODEL_FILE
    save_tensors(data, path)
    written = replace(card, sha256=file_digest(path), created=time.strftime("%Y-%m-%dT%H:%M:%S"))
    write_json(directory / CARD_FILE, written.to_dict())
    return written
