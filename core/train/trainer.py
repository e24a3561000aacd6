"""The training loop: transfer learning from a registry backbone on a class folder.

``train(root, name, settings)`` splits the folder (stratified validation split), caches the
frozen trunk's features of every view (``core.train.trunk``), then trains the top stages, the
embedding head and the loss with AdamW (a lower learning rate for the backbone's stages than for
the new head) on a cosine or constant schedule, keeping the epoch of lowest validation loss and
stopping when it has not improved for ``patience`` epochs. A tqdm bar shows loss, accuracy and
the ETA of the whole run.

Every epoch ends with a checkpoint (``core.train.checkpoint``); a killed run started again with
the same command resumes after its last complete epoch, with the same result as an
uninterrupted run (each epoch draws its batches, views and dropout from its own seed), and a run
killed while its model was written writes it. Everything seeded (the weights of a random trunk,
the head, the loss, each epoch) draws from a generator seeded for it (``data.seeded``), so what
was converted or cached before a run never changes its result. A run whose settings or folder
changed is refused rather than mixed; runs of one name take turns (a lock on its folder). The
model is written to ``artifacts/models/<name>/``.
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
from core.embed.trained import MODEL_FILE, ModelCard, TrainingData, TrainingTiming
from core.files import exclusive_lock
from core.paths import models_dir
from core.train.checkpoint import (
    LOCK_FILE,
    BestEpoch,
    TrainState,
    export_model,
    finished_card,
    load_state,
    save_state,
)
from core.train.data import (
    Augmentation,
    LabelledImages,
    fingerprint,
    load_labelled,
    seeded,
    stratified_split,
    view_side,
)
from core.train.losses import LOSSES, create_loss
from core.train.trunk import FeatureCache, TrunkSplit, ViewSpec, cache_features

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


@dataclass
class _Prepared:
    """What the epochs start from: the images and their split, the network cut into a frozen
    trunk and a trainable top, and the trunk's cached features (``val_cache`` None without a
    validation split)."""

    data: LabelledImages
    fingerprint: str
    train_pos: list[int]
    val_pos: list[int]
    backbone: Backbone
    split: TrunkSplit
    head_config: HeadConfig
    side: int
    train_cache: FeatureCache
    val_cache: FeatureCache | None
    started: float

    @property
    def pooled(self) -> bool:
        return self.split.n_trainable == 0 and not self.head_config.learn_p


@dataclass
class _Fit:
    """The learning part: the model, its optimiser and learning rates, the labels, the batches
    of an epoch, and the threads of the run and of its epochs."""

    model: _Trainable
    optimizer: torch.optim.Optimizer
    base_lrs: list[float]
    train_y: torch.Tensor
    val_y: torch.Tensor
    steps: int
    threads: int
    epoch_threads: int


def _cache_key(settings: TrainSettings, fp: str, split: TrunkSplit, spec: ViewSpec) -> str:
    blob = json.dumps({"backbone": settings.backbone, "weights": settings.weights, "frozen": split.n_stages - split.n_trainable,
                       "size": spec.size, **({"pooled": spec.pool_p} if spec.pool_p is not None else {}),
                       "seed": settings.seed, "augmentation": settings.augmentation.to_dict(), "data": fp,
                       "positions": list(spec.positions)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@torch.no_grad()
def _evaluate(p: _Prepared, fit: _Fit, s: TrainSettings) -> tuple[float, float]:
    """(validation loss, validation accuracy). Triplet: val anchors against the plain training
    views (hardest positive and negative among them; accuracy of the nearest one)."""
    model, val_y, train_y = fit.model, fit.val_y, fit.train_y
    model.eval()

    def embed_all(cache: FeatureCache) -> torch.Tensor:
        rows = np.arange(len(cache.positions))
        return torch.cat([model.embed(cache.batch(rows[i:i + s.batch_size], np.zeros(len(rows[i:i + s.batch_size]), int)))
                          for i in range(0, len(rows), s.batch_size)])

    emb = embed_all(p.val_cache)
    if s.loss != "triplet":
        out = model.loss(emb, val_y)
        return float(out.loss), out.correct / len(val_y)
    ref = F.normalize(embed_all(p.train_cache), dim=1)
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
    (see the module docstring). ``restart`` discards the checkpoint of an earlier run. Runs of
    one name take turns (a lock): the second then finds the first's model, or its other settings."""
    s = settings or TrainSettings()
    directory = models_dir() / check_name(name)
    with exclusive_lock(directory / LOCK_FILE, on_wait=lambda: log(f"waiting for another run of {name!r} to end")):
        data = load_labelled(root)
        fp = fingerprint(data)
        state = None if restart else load_state(directory)
        if state is not None:
            _check_same_run(state, s.to_dict(), fp, name, data.root)
            card = finished_card(directory) if state.done else None
            if card is not None:
                log(f"model {name!r} is already trained with these settings on these images: {directory / MODEL_FILE}")
                return TrainResult(directory / MODEL_FILE, card, state.epoch + 1)
        return _run(directory, s, _prepare(data, fp, s, progress, log), state, progress, log)


def _check_same_run(state: TrainState, settings: dict, fp: str, name: str, root: Path) -> None:
    """Refuse to resume or reuse a run of other settings or images."""
    if state.settings != settings or state.fingerprint != fp:
        changed = "settings" if state.settings != settings else f"images of {root}"
        raise ValueError(f"model {name!r} has an unfinished or finished run with other {changed}; "
                         f"train under another --name, or pass --restart to discard it")


def _prepare(data: LabelledImages, fp: str, s: TrainSettings, progress: bool, log: Callable[[str], None]) -> _Prepared:
    """Split the images, build the backbone (the same random weights on resume) and cache the
    frozen trunk's features of every view."""
    torch.set_num_threads(os.cpu_count() or 1)
    started = time.perf_counter()
    train_pos, val_pos = stratified_split(data.labels, s.val_fraction, s.seed)
    with seeded(s.seed):
        backbone = create_backbone(s.backbone, s.weights)
    split = TrunkSplit.of(backbone, s.trainable_stages)
    head_config = HeadConfig(0, s.embedding_dim, dropout=s.dropout, learn_p=s.learn_gem_p)
    pool_p = head_config.gem_p if split.n_trainable == 0 and not s.learn_gem_p else None
    side = view_side(data, train_pos, s.image_size)
    specs = (ViewSpec(tuple(train_pos), s.views, side, s.seed, s.augmentation if s.views > 0 else None, pool_p),
             ViewSpec(tuple(val_pos), 0, side, s.seed, None, pool_p))
    train_cache, val_cache = (cache_features(split, data, spec, models_dir() / "_cache" / _cache_key(s, fp, split, spec),
                                             progress, log) if spec.positions else None for spec in specs)
    return _Prepared(data, fp, train_pos, val_pos, backbone, split, head_config, side, train_cache, val_cache, started)


def _build(p: _Prepared, s: TrainSettings, state: TrainState | None) -> _Fit:
    """The head, the loss and the optimiser, from the seed (the same start whatever was drawn from
    torch's generator before: converting the trunk draws), or from ``state`` on resume."""
    with torch.no_grad():
        sample = p.train_cache.batch(np.array([0]), np.array([0]))
        channels = (sample if p.pooled else p.split.trainable.eval()(sample)).shape[1]
    with seeded(s.seed):
        head = EmbeddingHead(replace(p.head_config, in_channels=channels))
        model = _Trainable(p.split.trainable, head, create_loss(s.loss, s.embedding_dim, len(p.data.classes),
                                                                s.margin, s.scale), pooled=p.pooled)
    groups = [{"params": p.split.trainable_parameters(), "lr": s.backbone_lr},
              {"params": list(head.parameters()) + list(model.loss.parameters()), "lr": s.lr}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=s.weight_decay)
    base_lrs = [g["lr"] for g in optimizer.param_groups]      # before a state brings its last scheduled rates
    if state is not None:
        model.load_state_dict(state.model)
        optimizer.load_state_dict(state.optimizer)
    train_y = torch.tensor([p.data.labels[i] for i in p.train_pos])
    # a projection of pooled vectors is too small to share between threads: one thread ran its
    # steps 10x faster than two on this 2-core machine under load (README, "Training")
    threads = torch.get_num_threads()
    return _Fit(model, optimizer, base_lrs, train_y,
                torch.tensor([p.data.labels[i] for i in p.val_pos]), len(_epoch_batches(s, train_y.numpy(), 0)),
                threads, 1 if model.pooled else threads)


def _run(directory: Path, s: TrainSettings, p: _Prepared, state: TrainState | None, progress: bool,
         log: Callable[[str], None]) -> TrainResult:
    """The epochs left after ``state`` (all without one), then the model of the best epoch."""
    fit = _build(p, s, state)
    if state is not None:
        log(f"writing the model of {directory.name!r}, trained to epoch {state.epoch + 1}" if state.done
            else f"resuming {directory.name!r} after epoch {state.epoch + 1} of {s.epochs}")
    history, best = _epochs(p, fit, s, state, directory, progress, log)
    fit.model.load_state_dict(best.state)
    p.backbone.head = fit.model.head
    p.backbone.eval()
    card = export_model(directory, p.backbone, _card(p, fit, s, directory.name, history, best))
    log(f"model written to {directory / MODEL_FILE} (best epoch {best.epoch} of {len(history)})")
    return TrainResult(directory / MODEL_FILE, card, state.epoch + 1 if state else 0, p.backbone)


def _epochs(p: _Prepared, fit: _Fit, s: TrainSettings, state: TrainState | None, directory: Path,
            progress: bool, log: Callable[[str], None]) -> tuple[list[dict], BestEpoch]:
    """Train the epochs after ``state``, checkpointing each; early stopping on validation loss."""
    history, best, first = (state.history, state.best, state.epoch + 1) if state else ([], BestEpoch(), 0)
    stopped = bool(state and state.done)     # finished, stopped before its model was written
    bar = tqdm(total=s.epochs * fit.steps, initial=first * fit.steps, desc=f"training {directory.name}",
               unit="batch", disable=not progress, dynamic_ncols=True)
    torch.set_num_threads(fit.epoch_threads)
    try:
        for epoch in range(first, s.epochs if not stopped else first):
            record = _epoch(p, fit, s, epoch, bar, history)
            history.append(record)
            (bar.write if progress else log)(_log_epoch(record))
            score = record["val_loss"] if p.val_cache is not None else -epoch
            if score < best.val_loss:
                best = BestEpoch(epoch + 1, score, copy.deepcopy(fit.model.state_dict()))
            stopped = p.val_cache is not None and epoch + 1 - best.epoch >= s.patience
            save_state(directory, TrainState(s.to_dict(), p.fingerprint, epoch, history, best, fit.model.state_dict(),
                                             fit.optimizer.state_dict(), stopped or epoch + 1 == s.epochs))
            if stopped:
                break
    finally:
        bar.close()
        torch.set_num_threads(fit.threads)
    return history, best


def _epoch(p: _Prepared, fit: _Fit, s: TrainSettings, epoch: int, bar: tqdm, history: list[dict]) -> dict:
    """One epoch over the training images (each in one of its views) and its validation; its
    batches, views and dropout come from its own seed, so a resumed run repeats it exactly."""
    tick = time.perf_counter()
    rng = np.random.default_rng([s.seed, epoch])
    total_loss, correct, seen = 0.0, 0, 0
    with seeded(s.seed * 100_003 + epoch):
        fit.model.train()
        views = rng.integers(0, len(p.train_cache.views), size=len(p.train_pos))
        for step, rows in enumerate(_epoch_batches(s, fit.train_y.numpy(), epoch, rng)):
            factor = lr_factor(s.schedule, epoch * fit.steps + step, s.epochs * fit.steps)
            for g, lr in zip(fit.optimizer.param_groups, fit.base_lrs):
                g["lr"] = lr * factor
            out = fit.model.loss(fit.model.embed(p.train_cache.batch(rows, views[rows])), fit.train_y[rows])
            fit.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            fit.optimizer.step()
            total_loss += float(out.loss.detach()) * len(rows)
            correct += out.correct
            seen += len(rows)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}",
                            **({"val_loss": f"{history[-1]['val_loss']:.3f}"} if history and p.val_cache else {}))
    val_loss, val_acc = _evaluate(p, fit, s) if p.val_cache is not None else (None, None)
    return {"epoch": epoch + 1, "loss": total_loss / seen, "acc": correct / seen, "val_loss": val_loss,
            "val_acc": val_acc, "lr": fit.base_lrs[-1] * factor, "seconds": time.perf_counter() - tick}


def _card(p: _Prepared, fit: _Fit, s: TrainSettings, name: str, history: list[dict], best: BestEpoch) -> ModelCard:
    """The model card of the run (``model.json`` but for the sha256 and the time)."""
    data = p.data
    return ModelCard(
        name=name, backbone=s.backbone, base_weights=s.weights, layer="head", classes=data.classes, sha256="",
        head=fit.model.head.config, training=s.to_dict(),
        data=TrainingData(str(data.root), p.fingerprint, len(data.ids), len(p.train_pos), len(p.val_pos),
                          data.counts(), p.split.n_stages, p.side, p.split.n_trainable),
        history=tuple(history),
        timing=TrainingTiming(
            feature_cache_seconds=p.train_cache.seconds + (p.val_cache.seconds if p.val_cache else 0.0),
            epoch_seconds=sum(h["seconds"] for h in history), this_call_seconds=time.perf_counter() - p.started,
            best_epoch=best.epoch, epochs_run=len(history), stopped_early=len(history) < s.epochs,
            threads=fit.threads, epoch_threads=fit.epoch_threads, load_average=list(os.getloadavg())))


def _epoch_batches(s: TrainSettings, labels: np.ndarray, epoch: int,
                   rng: np.random.Generator | None = None) -> list[np.ndarray]:
    rng = rng or np.random.default_rng([s.seed, epoch])
    if s.loss == "triplet":
        return balanced_batches(labels, s.batch_size, s.per_class, rng)
    return shuffled_batches(len(labels), s.batch_size, rng)

