"""What the app shows of trained models (``artifacts/models/``): their training curves, the
runs made with each beside the off-the-shelf runs of the same gallery, and the embedding configs
the search page can index a gallery with. Pure reads, no Streamlit."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from core.config import DEFAULT_CONFIG, EmbeddingConfig
from core.embed.trained import MODEL_FILE, ModelCard, apply_model, list_models

CURVE_COLUMNS = ["model", "epoch", "split", "metric", "value"]


@dataclass(frozen=True)
class TrainedModel:
    path: Path
    card: ModelCard

    @property
    def name(self) -> str:
        return self.card.name


def trained_models(root: Path | None = None) -> list[TrainedModel]:
    return [TrainedModel(p, c) for p, c in list_models(root)]


def training_curves(models: list[TrainedModel]) -> pd.DataFrame:
    """Long form of the per-epoch history: one row per model, epoch, split (train or
    validation), metric (loss or accuracy) and value; epochs without validation have no
    validation rows."""
    rows = []
    for m in models:
        for h in m.card.history:
            for split, prefix in (("train", ""), ("validation", "val_")):
                for metric, key in (("loss", "loss"), ("accuracy", "acc")):
                    value = h.get(prefix + key)
                    if value is not None:
                        rows.append({"model": m.name, "epoch": h["epoch"], "split": split, "metric": metric,
                                     "value": float(value)})
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def model_table(models: list[TrainedModel]) -> pd.DataFrame:
    """One row per model: backbone, loss, data, best epoch and its validation figures, times."""
    rows = []
    for m in models:
        c, t = m.card, m.card.timing
        best = next((h for h in c.history if h["epoch"] == t.best_epoch), c.history[-1] if c.history else {})
        rows.append({"model": c.name, "backbone": c.backbone, "loss": c.training.get("loss"),
                     "trainable_stages": c.data.trainable_stages, "classes": len(c.classes),
                     "n_train": c.data.n_train, "n_val": c.data.n_val,
                     "best_epoch": t.best_epoch, "epochs_run": t.epochs_run,
                     "val_loss": best.get("val_loss"), "val_acc": best.get("val_acc"),
                     "cache_s": t.feature_cache_seconds, "train_s": t.epoch_seconds,
                     "root": c.data.root, "created": c.created})
    return pd.DataFrame(rows)


def model_of_run(embedding: EmbeddingConfig) -> str:
    """The trained model a run's embedding used ("" for off-the-shelf weights and for plain
    checkpoints, whose digest is recorded too but which no training wrote)."""
    trained = embedding.weights_digest and Path(embedding.weights).name == MODEL_FILE
    return Path(embedding.weights).parent.name if trained else ""


def side_by_side(runs: pd.DataFrame, model: str) -> pd.DataFrame:
    """The runs made with ``model`` and the off-the-shelf runs of the same galleries (``runs``:
    the runs table with its ``model`` column), newest first."""
    if runs.empty or "model" not in runs:
        return runs
    galleries = set(runs.loc[runs["model"] == model, "gallery"])
    view = runs[runs["gallery"].isin(galleries) & runs["model"].isin([model, ""])]
    return view.assign(weights=view["model"].map(lambda m: f"fine-tuned ({m})" if m else "off the shelf"))


def trained_configs(base: EmbeddingConfig = DEFAULT_CONFIG, root: Path | None = None) -> dict[str, EmbeddingConfig]:
    """Embedding config of each trained model (the base config's scales and size, the model's
    backbone and descriptor layer), by model name: what the search page can index with."""
    return {m.name: apply_model(replace(base, weights=str(m.path))) for m in trained_models(root)}
