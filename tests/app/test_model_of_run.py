"""Runs are attributed to a trained model only when their weights are one (a plain checkpoint's
digest is recorded in its config too, since its cache key follows its content)."""
from __future__ import annotations

from core.app.models import model_of_run
from core.config import EmbeddingConfig


def test_a_trained_model_names_its_runs_and_a_plain_checkpoint_does_not():
    trained = EmbeddingConfig(weights="artifacts/models/flowers/model.pt", weights_digest="ab" * 32, layer="head")
    checkpoint = EmbeddingConfig(backbone="resnet50", weights="ckpts/resnet50-gem.pth", weights_digest="cd" * 32)
    assert model_of_run(trained) == "flowers"
    assert model_of_run(checkpoint) == "" and model_of_run(EmbeddingConfig()) == ""
