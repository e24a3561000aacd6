"""A trained model's card: ``data`` and ``timing`` are typed records, and ``model.json`` is
written back exactly as the trainer wrote it."""
from __future__ import annotations

import json

from core.embed.trained import ModelCard, TrainingData, TrainingTiming

# the keys and order of core/train/trainer.py's card (model.json as written today)
WRITTEN = {
    "format": "cbir-model/1", "name": "flowers", "backbone": "tf_efficientnet_lite0", "base_weights": "offline",
    "layer": "head", "classes": ["daisy", "rose"], "sha256": "ab" * 32,
    "head": {"in_channels": 1280, "dim": 512, "gem_p": 3.0, "dropout": 0.2, "learn_p": False},
    "training": {"loss": "cosface", "epochs": 3},
    "data": {"root": "data/flowers", "fingerprint": "f00d", "n_images": 24, "n_train": 18, "n_val": 6,
             "class_counts": {"daisy": 12, "rose": 12}, "stages": 9, "view_side": 64, "trainable_stages": 1},
    "history": [{"epoch": 1, "loss": 2.0, "val_loss": 1.5, "val_acc": 0.5, "seconds": 1.0}],
    "timing": {"feature_cache_seconds": 3.5, "epoch_seconds": 1.0, "this_call_seconds": 6.0, "best_epoch": 1,
               "epochs_run": 1, "stopped_early": False, "threads": 2, "epoch_threads": 2,
               "load_average": [1.0, 0.5, 0.25]},
    "created": "2026-12-07T09:00:00",
}


def test_a_card_read_and_written_back_is_byte_for_byte_the_same_json():
    card = ModelCard.from_dict(json.loads(json.dumps(WRITTEN)))
    assert json.dumps(card.to_dict()) == json.dumps(WRITTEN)


def test_data_and_timing_are_typed_records():
    card = ModelCard.from_dict(WRITTEN)
    assert isinstance(card.data, TrainingData) and isinstance(card.timing, TrainingTiming)
    assert (card.data.n_train, card.data.n_val, card.data.class_counts["rose"]) == (18, 6, 12)
    assert (card.timing.best_epoch, card.timing.threads) == (1, 2)


def test_unknown_keys_are_dropped_and_missing_ones_take_their_defaults():
    older = {**WRITTEN, "data": {"n_train": 5, "later_key": 1}, "timing": {"best_epoch": 4}}
    card = ModelCard.from_dict(older)
    assert card.data == TrainingData(n_train=5) and card.timing == TrainingTiming(best_epoch=4)
