"""The training loop: transfer learning from a registry backbone on a class folder.

``train(root, name, settings)`` splits the folder (stratified validation split), caches the
frozen trunk's features of every view (``core.train.trunk``), then trains the top stages, the
embedding head and the loss with AdamW (a lower learning rate for the backbone's stages than for
the new head) on a cosine or constant schedule, keeping the epoch of lowest validation loss and
stopping when it has not improved for ``patience`` epochs. A tqdm bar shows loss, accuracy and
the ETA of the whole run.

Every epoch ends with a checkpoint (``core.train.checkpoint``); a killed run started again with
the same command resumes after its last complete epoch, with the same result as an
uninterrupted run (each epoch draws its batches, views and dropout from its own seed). A run
whose settings or folder changed is refused rather than mixed. The model is written to
``artifacts/models/<name>/``.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from core.cache.galleries import check_name
from core.config import DEFAULT_CONFIG
from core.embed.backbones import Backbone, create_backbone
from core.embed.heads import EmbeddingHead, HeadConfig
from core.embed.trained import MODEL_FILE, ModelCard, read_card
from core.paths import models_dir
from core.train.checkpoint import export_model, load_state, save_state
from core.train.data import Augmentation, fingerprint, load_labelled, stratified_split, view_side
from core.train.losses import LOSSES, create_loss
from core.train.trunk import FeatureCache, TrunkSplit, cache_features

SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class TrainSettings:
    """Every setting of a training run (all recorded in ``model.json``).

    trainable_stages: top stages of the backbone that are fine-tuned (0: the head alone).
    views: augmented views of each training image (0: no augmentation); each epoch picks one of
           the plain and augmented views of each image.
    lr / backbone_lr: AdamW learning rates of the new head and loss / of the backbone's stages.
    per_class: images of a class in each batch for the triplet loss.
    learn_gem_p: learn the head's GeM exponent; when it is fixed and no stage trains, every view
           is pooled as it is cached and the epochs train the projection alone.
    """

    backbone: str = DEFAULT_CONFIG.backbone
    weights: str = DEFAULT_CONFIG.weights
    # Defaults measured on 15 images a class of Fashion-MNIST, Corel-1k (another draw than the
    # benchmark's) and the Paris landmarks, and on a 90/10 Corel split of another seed (README,
    # "Training"): the head alone on the frozen network beat fine-tuning 1, 2 or 3 stages on
    # every set, and the margin losses beat softmax cross-entropy; a learned GeM exponent scored
    # the same as a fixed one, which lets every view be pooled once (the epochs then take seconds).
    trainable_stages: int = 0
    loss: str = "cosface"
    margin: float | None = None
    scale: float = 30.0
    embedding_dim: int = 512
    dropout: float = 0.2
    learn_gem_p: bool = False
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    backbone_lr: float = 1e-4
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    image_size: int = 224
    views: int = 4
    augmentation: Augmentation = field(default_factory=Augmentation)
    val_fraction: float = 0.1
    patience: int = 5
    seed: int = 0
    per_class: int = 4

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("training needs at least one epoch and batches of at least two images")
        if self.image_size < 32:
            raise ValueError(f"image_size must be at least 32 pixels, got {self.image_size}")

    def to_dict(self) -> dict:
        return {**asdict(self), "augmentation": self.augmentation.to_dict()}


@dataclass
class TrainResult:
    """The written model, its card, the epochs done before this call (0: a fresh run), and the
    trained network in eval mode (None when the model was already trained)."""

    model_path: Path
    card: ModelCard
    resumed_from: int
    backbone: Backbone | None = None


# ---------------------------------------------------------------- batches

def shuffled_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A permutation of range(n) in batches of ``batch_size``; a last batch of one image (which
    batch normalisation cannot train on) joins the one before it."""
    order = rng.permutation(n)
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        last = batches.pop()
        batches[-1] = np.concatenate([batches[-1], last])
    return batches


def balanced_batches(labels: np.ndarray, batch_size: int, per_class: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Every position once, in batches of ``batch_size // per_class`` classes with ``per_class``
    images each (fewer where a class runs out): the P×K batches that triplet mining needs."""
    chunks = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        chunks += [members[i:i + per_class] for i in range(0, len(members), per_class)]
    order = rng.permutation(len(chunks))
    per_batch = max(2, batch_size // per_class)
    batches = [np.concatenate([chunks[j] for j in order[i:i + per_batch]]) for i in range(0, len(order), per_batch)]
    if len(batches) > 1 and len(np.unique(labels[batches[-1]])) < 2:
        last = batches.pop()
        batches[-1] = np.concatenate([batches[-1], last])
    return batches


def lr_factor(schedule: str, step: int, total: int) -> float:
    """Multiplier of the learning rate at ``step`` of ``total``: constant, or cosine from 1 to 0."""
    return 1.0 if schedule == "constant" else 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(1, total)))


# ---------------------------------------------------------------- the run

class _Trainable(nn.Module):
    """The modules that learn: the backbone's top stages, the head and the loss's parameters.
    ``pooled``: the cache holds pooled vectors, which only the head's projection follows."""

    def __init__(self, top: nn.Sequential, head: EmbeddingHead, loss: nn.Module, pooled: bool) -> None:
        super().__init__()
        self.top, self.head, self.loss, self.pooled = top, head, loss, pooled

    def embed(self, maps: torch.Tensor) -> torch.Tensor:
        return self.head.embed_pooled(maps) if self.pooled else self.head(self.top(maps))


def _cache_key(settings: TrainSettings, fp: str, positions: list[int], split: TrunkSplit, side: int,
               pool_p: float | None) -> str:
    blob = json.dumps({"backbone": settings.backbone, "weights": settings.weights, "frozen": split.n_stages - split.n_trainable,
                       "size": side, **({"pooled": pool_p} if pool_p is not None else {}), "seed": settings.seed, "augmentation": settings.augmentation.to_dict(),
                       "data": fp, "positions": positions}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@torch.no_grad()
def _evaluate(model: _Trainable, loss_name: str, val: FeatureCache, val_y: torch.Tensor, train: FeatureCache,
              train_y: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """(validation loss, validation accuracy). Triplet: val anchors against the plain training
    views (hardest positive and negative among them; accuracy of the nearest one)."""
    model.eval()

    def embed_all(cache: FeatureCache) -> torch.Tensor:
        rows = np.arange(len(cache.positions))
        return torch.cat([model.embed(cache.batch(rows[i:i + batch_size], np.zeros(len(rows[i:i + batch_size]), int)))
                          for i in range(0, len(rows), batch_size)])

    emb = embed_all(val)
    if loss_name != "triplet":
        out = model.loss(emb, val_y)
        return float(out.loss), out.correct / len(val_y)
    ref = F.normalize(embed_all(train), dim=1)
    z = F.normalize(emb, dim=1)
    dist = 1.0 - z @ ref.T
    same = val_y[:, None] == train_y[None, :]
    pos = dist.masked_fill(~same, float("-inf")).amax(1)
    neg = dist.masked_fill(same, float("inf")).amin(1)
    loss = F.relu(pos - neg + model.loss.margin).mean()
    return float(loss), float((train_y[dist.argmin(1)] == val_y).float().mean())


def _log_epoch(h: dict) -> str:
    val = f", val loss {h['val_loss']:.4f} acc {h['val_acc']:.3f}" if h.get("val_loss") is not None else ""
    return f"epoch {h['epoch']}: loss {h['loss']:.4f} acc {h['acc']:.3f}{val} ({h['seconds']:.1f} s)"


def train(root: str | Path, name: str, settings: TrainSettings | None = None, progress: bool = True,
          log: Callable[[str], None] = print, restart: bool = False) -> TrainResult:
    """Train a model on the class folder ``root`` and write it to ``artifacts/models/<name>/``
    (see the module docstring). ``restart`` discards the checkpoint of an earlier run."""
    s = settings or TrainSettings()
    directory = models_dir() / check_name(name)
    data = load_labelled(root)
    fp = fingerprint(data)
    state = None if restart else load_state(directory)
    if state is not None:
        if state["settings"] != s.to_dict() or state["fingerprint"] != fp:
            changed = "settings" if state["settings"] != s.to_dict() else f"images of {data.root}"
            raise ValueError(f"model {name!r} has an unfinished or finished run with other {changed}; "
                             f"train under another --name, or pass --restart to discard it")
        if state.get("done") and (directory / MODEL_FILE).exists():
            log(f"model {name!r} is already trained with these settings on these images: {directory / MODEL_FILE}")
            return TrainResult(directory / MODEL_FILE, read_card(directory / MODEL_FILE), state["epoch"] + 1)
    torch.set_num_threads(os.cpu_count() or 1)
    started = time.perf_counter()
    train_pos, val_pos = stratified_split(data.labels, s.val_fraction, s.seed)
    torch.manual_seed(s.seed)                       # a random-weights trunk is the same on resume
    backbone = create_backbone(s.backbone, s.weights)
    split = TrunkSplit.of(backbone, s.trainable_stages)
    cache_root = models_dir() / "_cache"
    aug = s.augmentation if s.views > 0 else None
    side = view_side(data, train_pos, s.image_size)
    head_config = HeadConfig(0, s.embedding_dim, dropout=s.dropout, learn_p=s.learn_gem_p)
    pool_p = head_config.gem_p if split.n_trainable == 0 and not s.learn_gem_p else None
    train_cache = cache_features(split, data, train_pos, s.views, side, s.seed, aug,
                                 cache_root / _cache_key(s, fp, train_pos, split, side, pool_p), progress, log, pool_p)
    val_cache = cache_features(split, data, val_pos, 0, side, s.seed, None,
                               cache_root / _cache_key(s, fp, val_pos, split, side, pool_p), progress, log,
                               pool_p) if val_pos else None
    with torch.no_grad():
        sample = train_cache.batch(np.array([0]), np.array([0]))
        channels = (sample if pool_p is not None else split.trainable.eval()(sample)).shape[1]
    head = EmbeddingHead(replace(head_config, in_channels=channels))
    model = _Trainable(split.trainable, head, create_loss(s.loss, s.embedding_dim, len(data.classes), s.margin, s.scale),
                       pooled=pool_p is not None)
    cores = torch.get_num_threads()
    # a projection of pooled vectors is too small to share between threads: one thread ran its
    # steps 10x faster than two on this 2-core machine under load (README, "Training")
    epoch_threads = 1 if model.pooled else cores
    groups = [{"params": split.trainable_parameters(), "lr": s.backbone_lr},
              {"params": list(head.parameters()) + list(model.loss.parameters()), "lr": s.lr}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=s.weight_decay)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    train_y = torch.tensor([data.labels[i] for i in train_pos])
    val_y = torch.tensor([data.labels[i] for i in val_pos])
    n_views = len(train_cache.views)
    steps = len(_epoch_batches(s, train_y.numpy(), 0))
    history: list[dict] = []
    best = {"epoch": 0, "val_loss": float("inf"), "state": None}
    first = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history, best, first = state["history"], state["best"], state["epoch"] + 1
        log(f"resuming {name!r} after epoch {first} of {s.epochs}")
    stopped = bool(state and state.get("done"))     # finished, killed while writing the model
    bar = tqdm(total=s.epochs * steps, initial=first * steps, desc=f"training {name}", unit="batch",
               disable=not progress, dynamic_ncols=True)
    torch.set_num_threads(epoch_threads)
    try:
        for epoch in range(first, s.epochs):
            if stopped:
                break
            tick = time.perf_counter()
            rng = np.random.default_rng([s.seed, epoch])
            torch.manual_seed(s.seed * 100_003 + epoch)
            model.train()
            total_loss, correct, seen = 0.0, 0, 0
            views = rng.integers(0, n_views, size=len(train_pos))
            for step, rows in enumerate(_epoch_batches(s, train_y.numpy(), epoch, rng)):
                factor = lr_factor(s.schedule, epoch * steps + step, s.epochs * steps)
                for g, lr in zip(optimizer.param_groups, base_lrs):
                    g["lr"] = lr * factor
                out = model.loss(model.embed(train_cache.batch(rows, views[rows])), train_y[rows])
                optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                optimizer.step()
                total_loss += float(out.loss.detach()) * len(rows)
                correct += out.correct
                seen += len(rows)
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}",
                                **({"val_loss": f"{history[-1]['val_loss']:.3f}"} if history and val_cache else {}))
            record = {"epoch": epoch + 1, "loss": total_loss / seen, "acc": correct / seen, "val_loss": None,
                      "val_acc": None, "lr": base_lrs[-1] * factor}
            if val_cache is not None:
                record["val_loss"], record["val_acc"] = _evaluate(model, s.loss, val_cache, val_y, train_cache,
                                                                  train_y, s.batch_size)
            record["seconds"] = time.perf_counter() - tick
            history.append(record)
            (bar.write if progress else log)(_log_epoch(record))
            score = record["val_loss"] if val_cache is not None else -epoch
            if score < best["val_loss"]:
                best = {"epoch": epoch + 1, "val_loss": score, "state": copy.deepcopy(model.state_dict())}
            stopped = val_cache is not None and epoch + 1 - best["epoch"] >= s.patience
            save_state(directory, {"settings": s.to_dict(), "fingerprint": fp, "epoch": epoch, "history": history,
                                   "best": best, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                   "done": stopped or epoch + 1 == s.epochs})
    finally:
        bar.close()
        torch.set_num_threads(cores)
    model.load_state_dict(best["state"])
    backbone.head = head
    backbone.eval()
    card = ModelCard(
        name=name, backbone=s.backbone, base_weights=s.weights, layer="head", classes=data.classes, sha256="",
        head=head.config, training=s.to_dict(),
        data={"root": str(data.root), "fingerprint": fp, "n_images": len(data.ids), "n_train": len(train_pos),
              "n_val": len(val_pos), "class_counts": data.counts(), "stages": split.n_stages, "view_side": side,
              "trainable_stages": split.n_trainable},
        history=tuple(history),
        timing={"feature_cache_seconds": train_cache.seconds + (val_cache.seconds if val_cache else 0.0),
                "epoch_seconds": sum(h["seconds"] for h in history), "this_call_seconds": time.perf_counter() - started,
                "best_epoch": best["epoch"], "epochs_run": len(history), "stopped_early": len(history) < s.epochs,
                "threads": cores, "epoch_threads": epoch_threads, "load_average": list(os.getloadavg())})
    card = export_model(directory, backbone, card)
    log(f"model written to {directory / MODEL_FILE} (best epoch {best['epoch']} of {len(history)})")
    return TrainResult(directory / MODEL_FILE, card, first, backbone)


def _epoch_batches(s: TrainSettings, labels: np.ndarray, epoch: int,
                   rng: np.random.Generator | None = None) -> list[np.ndarray]:
    rng = rng or np.random.default_rng([s.seed, epoch])
    if s.loss == "triplet":
        return balanced_batches(labels, s.batch_size, s.per_class, rng)
    return shuffled_batches(len(labels), s.batch_size, rng)

