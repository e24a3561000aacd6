"""A short real training run on a few real Corel images: the loss decreases, the written model
reloads (with no other flag) to the descriptors of the trained network, a model is refused on
another backbone, a changed run is refused, and a killed run resumes to the result of an
uninterrupted one."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, SHARED_DATA

from core.cli import main
from core.config import EmbeddingConfig
from core.embed.backbones import WeightsUnavailable
from core.embed.embedder import Embedder
from core.embed.trained import apply_model, read_card
from core.images import load_image, to_tensor
from core.train import TrainSettings, train
from core.train.checkpoint import STATE_FILE, load_state

COREL = SHARED_DATA / "corel1k"
CLASSES = ("Buses", "Dinosaurs", "Flowers")
SHORT = TrainSettings(trainable_stages=1, epochs=4, batch_size=8, image_size=64, views=1, val_fraction=0.25,
                      patience=10, learn_gem_p=True)


@pytest.fixture
def few_images(tmp_path):
    """8 real Corel photos of each of 3 classes (links)."""
    root = tmp_path / "few"
    for cls in CLASSES:
        (root / cls).mkdir(parents=True)
        for p in sorted((COREL / cls).glob("*.jpg"))[:8]:
            (root / cls / p.name).symlink_to(p)
    return root


def test_short_training_run_reloads_to_the_same_descriptors(artifacts, few_images, capsys):
    result = train(few_images, "few", SHORT, progress=False, log=lambda m: None)
    card = result.card
    history = card.history
    assert len(history) == 4 and history[-1]["loss"] < history[0]["loss"], [h["loss"] for h in history]
    assert card.classes == CLASSES and card.layer == "head" and card.data.n_train == 18 and card.data.n_val == 6
    assert card.sha256 and json.loads((result.model_path.parent / "model.json").read_text())["training"]["epochs"] == 4
    assert card.data.view_side == 64 and card.timing.best_epoch >= 1

    # the model file alone (no --backbone, no --layer) gives the trained network's descriptors
    config = apply_model(EmbeddingConfig(weights=str(result.model_path), scales=(1.0,), max_size=64))
    assert config.layer == "head" and config.weights_digest == card.sha256
    embedder = Embedder(config, backend="torch")
    x = to_tensor(load_image(few_images / "Buses" / sorted(os.listdir(few_images / "Buses"))[0], 64))
    with torch.no_grad():
        direct = F.normalize(result.backbone.head(result.backbone(x[None])), dim=1)[0].numpy()
    assert np.allclose(embedder.embed_tensor(x), direct, atol=1e-5)
    assert embedder.dim == card.head.dim
    # the default backend (OpenVINO where installed) gives the same descriptor to float precision
    assert float(Embedder(config).embed_tensor(x) @ direct) > 0.9999
    with pytest.raises(WeightsUnavailable, match="trained from backbone tf_efficientnet_lite0"):
        Embedder(replace(config, backbone="mobilenet_v2"))
    with pytest.raises(WeightsUnavailable, match="leave --backbone out"):
        apply_model(replace(config, backbone="mobilenet_v2"), backbone_given=True)

    # every command takes the model with --weights alone
    assert main(["evaluate", "--dataset", "classes", "--root", str(few_images), "--name", "few",
                 "--weights", str(result.model_path), "--max-size", "64", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "tf_efficientnet_lite0@few/head/ms3/64" in out
    # a second call with the same settings does not train again; other settings are refused
    logs = []
    again = train(few_images, "few", SHORT, progress=False, log=logs.append)
    assert again.card.sha256 == card.sha256 and "already trained" in logs[0]
    with pytest.raises(ValueError, match="other settings"):
        train(few_images, "few", replace(SHORT, epochs=5), progress=False, log=lambda m: None)

    # the app: training curves and the run beside the off-the-shelf one on the metrics page; the
    # search page offers to index a gallery with the model
    assert main(["evaluate", "--dataset", "classes", "--root", str(few_images), "--name", "few", "--max-size", "64",
                 "--quiet"]) == 0
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(REPO / "pages" / "metrics.py"), default_timeout=300)
    at.session_state["tab"] = "Training"
    at.run()
    assert not at.exception, at.exception
    assert at.dataframe[0].value["model"].tolist() == ["few"] and len(at.get("vega_lite_chart")) == 2
    side = at.dataframe[1].value
    assert sorted(side["weights"]) == ["fine-tuned (few)", "off the shelf"]
    from core.cache.galleries import register_gallery
    register_gallery("other", few_images / "Flowers")
    search = AppTest.from_file(str(REPO / "pages" / "search.py"), default_timeout=300).run()
    search.sidebar.selectbox(key="gallery").set_value("other").run()
    assert not search.exception
    search.button(key="build-few").click().run()
    assert not search.exception
    assert any("fine-tuned on few" in o for o in search.sidebar.selectbox(key="embedding").options)   # named in words

    (few_images / "Buses" / sorted(os.listdir(few_images / "Buses"))[0]).unlink()
    with pytest.raises(ValueError, match="other images"):
        train(few_images, "few", SHORT, progress=False, log=lambda m: None)


def test_small_cnn_trains_from_scratch(artifacts, few_images):
    """The baseline of the seed systems: every stage trained, from random weights (the cache then
    holds the views themselves)."""
    settings = replace(SHORT, backbone="small_cnn", weights="random", trainable_stages=99, image_size=48, epochs=3,
                       lr=3e-3, backbone_lr=3e-3)
    result = train(few_images, "scratch", settings, progress=False, log=lambda m: None)
    assert result.card.data.trainable_stages == result.card.data.stages == 4
    assert result.card.history[-1]["loss"] < result.card.history[0]["loss"]
    config = apply_model(EmbeddingConfig(weights=str(result.model_path), scales=(1.0,), max_size=48))
    assert config.backbone == "small_cnn" and Embedder(config, backend="torch").dim == 512


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_result(artifacts, few_images):
    settings = replace(SHORT, epochs=12)
    reference = train(few_images, "reference", settings, progress=False, log=lambda m: None)
    command = [sys.executable, "-m", "core", "train", "--root", str(few_images), "--name", "killed", "--quiet",
               "--trainable-stages", "1", "--epochs", "12", "--batch-size", "8", "--image-size", "64", "--views", "1",
               "--val-split", "0.25", "--patience", "10", "--learn-gem-p"]
    proc = subprocess.Popen(command, cwd=REPO, env={**os.environ, "CBIR_ARTIFACTS": str(artifacts)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file = artifacts / "models" / "killed" / STATE_FILE
    deadline = time.monotonic() + 600
    while not state_file.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = load_state(state_file.parent)
    assert state is not None and not state.done, "the run finished before it could be killed"
    logs = []
    resumed = train(few_images, "killed", settings, progress=False, log=logs.append)
    assert resumed.resumed_from == state.epoch + 1 and any("resuming" in m for m in logs)
    got = [h["loss"] for h in resumed.card.history]
    want = [h["loss"] for h in reference.card.history]
    assert got == pytest.approx(want, rel=1e-4)
    assert read_card(resumed.model_path).timing.best_epoch == reference.card.timing.best_epoch


def test_a_frozen_network_under_a_fixed_gem_trains_on_pooled_views(artifacts, few_images):
    """No stage trained and a fixed exponent: views are pooled once, the epochs fit the
    projection alone, and the model still reloads to the trained network's descriptors."""
    settings = replace(SHORT, trainable_stages=0, learn_gem_p=False)
    result = train(few_images, "pooled", settings, progress=False, log=lambda m: None)
    caches = (artifacts / "models" / "_cache").glob("*/view0.npy")      # one for train, one for val
    shapes = sorted(np.load(c, mmap_mode="r").shape for c in caches)
    assert shapes == [(6, 1280), (18, 1280)]                             # pooled vectors, not maps
    assert result.card.head.learn_p is False and result.card.history[-1]["loss"] < result.card.history[0]["loss"]
    config = apply_model(EmbeddingConfig(weights=str(result.model_path), scales=(1.0,), max_size=64))
    x = to_tensor(load_image(few_images / "Flowers" / sorted(os.listdir(few_images / "Flowers"))[0], 64))
    with torch.no_grad():
        direct = F.normalize(result.backbone.head(result.backbone(x[None])), dim=1)[0].numpy()
    assert np.allclose(Embedder(config, backend="torch").embed_tensor(x), direct, atol=1e-5)
