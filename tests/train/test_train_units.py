"""Plumbing of training, against hand-computed values: split, batches, schedule, losses,
fingerprint, the model card's config resolution and the descriptor-layer option."""
from __future__ import annotations

import math
import os
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.config import EmbeddingConfig
from core.embed.backbones import WeightsUnavailable, create_backbone
from core.train.data import Augmentation, fingerprint, load_labelled, load_view, stratified_split
from core.train.losses import MarginLoss, SoftmaxLoss, TripletLoss, create_loss
from core.train.trainer import TrainSettings, balanced_batches, lr_factor, shuffled_batches


def test_stratified_split_holds_out_per_class_and_keeps_one_to_train():
    labels = [0] * 10 + [1] * 3 + [2]
    train, val = stratified_split(labels, 0.2, seed=0)
    lab = np.asarray(labels)
    assert sorted(train + val) == list(range(14)) and not set(train) & set(val)
    assert np.bincount(lab[val], minlength=3).tolist() == [2, 1, 0]      # round(2.0), max(1, round(0.6)), single
    assert stratified_split(labels, 0.2, seed=0) == (train, val)
    assert stratified_split(labels, 0.0, seed=0) == (list(range(14)), [])
    with pytest.raises(ValueError):
        stratified_split(labels, 1.0, seed=0)


def test_batches_cover_every_image_once():
    rng = np.random.default_rng(0)
    batches = shuffled_batches(9, 4, rng)
    assert [len(b) for b in batches] == [4, 5]                  # a last batch of one joins the one before
    assert sorted(np.concatenate(batches).tolist()) == list(range(9))
    labels = np.array([0] * 6 + [1] * 5 + [2] * 4)
    balanced = balanced_batches(labels, 8, 2, np.random.default_rng(1))
    assert sorted(np.concatenate(balanced).tolist()) == list(range(15))
    for b in balanced:
        counts = np.bincount(labels[b])
        assert counts.max() <= 2 * math.ceil(8 / 2) and len(np.unique(labels[b])) >= 2


def test_cosine_schedule():
    assert lr_factor("cosine", 0, 10) == 1.0
    assert lr_factor("cosine", 5, 10) == pytest.approx(0.5)
    assert lr_factor("cosine", 10, 10) == pytest.approx(0.0)
    assert lr_factor("constant", 7, 10) == 1.0


def test_cosface_and_arcface_against_hand_computed_logits():
    loss = MarginLoss(2, 2, "cosface", margin=0.35, scale=4.0)
    with torch.no_grad():
        loss.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    emb, labels = torch.tensor([[3.0, 0.0]]), torch.tensor([0])     # cos = 1 with class 0, 0 with class 1
    out = loss(emb, labels)
    assert float(out.loss.detach()) == pytest.approx(math.log(1 + math.exp(-4 * (1 - 0.35))), rel=1e-5)
    assert out.correct == 1
    arc = MarginLoss(2, 2, "arcface", margin=0.5, scale=10.0)
    with torch.no_grad():
        arc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    e = torch.tensor([[math.cos(0.3), math.sin(0.3)]])                # angle 0.3 to class 0
    expected = -math.log(math.exp(10 * math.cos(0.8)) / (math.exp(10 * math.cos(0.8)) + math.exp(10 * math.sin(0.3))))
    assert float(arc(e, labels).loss.detach()) == pytest.approx(expected, rel=1e-4)


def test_softmax_loss_is_smoothed_cross_entropy():
    loss = SoftmaxLoss(3, 4, label_smoothing=0.1)
    emb, labels = torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 0])
    out = loss(emb, labels)
    assert float(out.loss.detach()) == pytest.approx(float(F.cross_entropy(loss.classifier(emb), labels, label_smoothing=0.1)))


def test_batch_hard_triplet_on_four_points():
    # class 0 at angles 0 and 60 degrees, class 1 at 90 and 180: hardest positive of point 0 is 60 deg
    # (distance 1 - cos 60 = 0.5), its nearest negative is 90 deg (distance 1)
    pts = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    out = TripletLoss(margin=0.6)(pts, labels)
    # anchors: 0: 0.5 - 1 + 0.6 = 0.1; 1: pos 0.5, neg min(1-cos30, 1-cos120) = 1-0.866 -> 0.5-0.134+0.6;
    # 2: pos 1 - cos 90 = 1, neg min(1-cos90, 1-cos30) = 0.134 -> 1.466; 3: pos 1, neg 1-cos120 = 1.5 -> 0.1
    c30 = math.cos(math.pi / 6)
    expected = np.mean([0.1, 0.5 - (1 - c30) + 0.6, 1 - (1 - c30) + 0.6, 1 - 1.5 + 0.6])
    assert float(out.loss.detach()) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError):
        TripletLoss(0.1)(pts[:2], torch.tensor([0, 1]))
    assert isinstance(create_loss("triplet", 2, 2), TripletLoss)
    with pytest.raises(ValueError):
        create_loss("hinge", 2, 2)


def test_settings_are_checked():
    with pytest.raises(ValueError):
        TrainSettings(loss="hinge")
    with pytest.raises(ValueError):
        TrainSettings(schedule="step")
    assert TrainSettings().to_dict()["augmentation"]["zoom"] == [0.9, 1.25]


def _write_folder(root, counts):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(root / cls / f"{cls}{i}.png")


def test_labelled_folder_fingerprint_and_views(tmp_path):
    _write_folder(tmp_path, {"a": 3, "b": 2})
    data = load_labelled(tmp_path)
    assert data.classes == ("a", "b") and data.labels == (0, 0, 0, 1, 1) and data.counts() == {"a": 3, "b": 2}
    before = fingerprint(data)
    path = tmp_path / "b" / "b1.png"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10 ** 9))
    assert fingerprint(data) != before
    aug = Augmentation()
    v0 = load_view(data.path(0), 32, 0, 0, 0, aug)
    v1, again = load_view(data.path(0), 32, 1, 0, 0, aug), load_view(data.path(0), 32, 1, 0, 0, aug)
    assert v0.shape == (3, 32, 32) and torch.equal(v1, again) and not torch.equal(v0, v1)
    (tmp_path / "b" / "b0.png").unlink()
    (tmp_path / "b" / "b1.png").unlink()
    with pytest.raises(ValueError, match="two class subfolders"):
        load_labelled(tmp_path)


def test_layer_stays_out_of_the_hash_at_its_default():
    import hashlib
    import json

    base = EmbeddingConfig()
    # the key as it was computed before the fields existed (gem_p dropped for non-GeM poolings;
    # whiten_shrinkage, precision, calibration, layer, weights_digest all out at their defaults)
    legacy = {k: v for k, v in base.to_dict().items()
              if k not in ("layer", "weights_digest", "gem_p", "whiten_shrinkage", "precision", "calibration")}
    blob = json.dumps(legacy, sort_keys=True, separators=(",", ":"))
    assert base.key() == hashlib.sha256(blob.encode()).hexdigest()[:12] == "d5fe14fca498"   # caches made before
    head = replace(base, layer="head")
    assert head.key() != base.key() and replace(head, pooling="gem").key() == head.key()
    assert replace(base, weights_digest="ab").key() != base.key()
    assert head.label() == "tf_efficientnet_lite0/head/ms3/512"
    trained = replace(head, weights="artifacts/models/corel/model.pt", weights_digest="ab")
    assert trained.label() == "tf_efficientnet_lite0@corel/head/ms3/512" and "--layer head" in trained.cli_flags()
    with pytest.raises(ValueError):
        EmbeddingConfig(layer="fc9")


def test_stages_compose_to_the_feature_map_and_layers_are_checked():
    torch.manual_seed(0)
    for name in ("tf_efficientnet_lite0", "small_cnn", "vgg16"):
        b = create_backbone(name, "random")
        x = torch.rand(1, 3, 64, 96)
        with torch.no_grad():
            assert torch.allclose(nn.Sequential(*b.stages())(b.normalise(x)), b(x), atol=1e-5)
    vgg = b
    with torch.no_grad():
        assert vgg.describe(vgg(x), "penultimate", "gem", 3.0).shape == (1, 4096)        # fc7
    vgg.check_layer("penultimate")
    with pytest.raises(ValueError, match="trained"):
        vgg.check_layer("head")
    with pytest.raises(ValueError, match="penultimate"):
        create_backbone("vit_b_16", "random").check_layer("penultimate")


def _network_reachable() -> bool:
    import socket
    try:
        socket.create_connection(("huggingface.co", 443), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize("name", ["xception", "inception_resnet_v2"])
def test_hub_weights_without_network_say_what_works(name):
    if _network_reachable():
        pytest.skip("the network is reachable: timm would download the weights")
    with pytest.raises(WeightsUnavailable, match="offline"):
        create_backbone(name, "DEFAULT")
    with pytest.raises(WeightsUnavailable):
        create_backbone(name, "offline")


def test_an_unreachable_hub_is_asked_for_its_cache_only_and_restored(monkeypatch):
    """Without network huggingface_hub would retry each file with back-off for about 45 s: when
    its host cannot be reached (and no proxy is set) the download asks the local cache only."""
    from huggingface_hub import constants

    import core.embed.hub as hub

    seen = []
    for variable in hub.PROXY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_reachable", lambda address, timeout=3.0: seen.append(address) or False)
    with hub._hub_cache_only_when_unreachable():
        assert constants.HF_HUB_OFFLINE is True
    assert constants.HF_HUB_OFFLINE is False and seen == [hub.HUB_ADDRESS]
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")           # a proxy may reach what a socket cannot
    with hub._hub_cache_only_when_unreachable():
        assert constants.HF_HUB_OFFLINE is False
    assert len(seen) == 1


def test_penultimate_of_an_efficientnet_is_its_pooled_map():
    """lite0's classifier reads the global average of its last map: the penultimate layer equals
    GAP pooling, under another cache key."""
    from core.embed.embedder import Embedder

    x = torch.rand(3, 96, 128)
    gap = EmbeddingConfig(pooling="gap", scales=(1.0,))
    penultimate = replace(gap, layer="penultimate")
    assert np.allclose(Embedder(penultimate, backend="torch").embed_tensor(x),
                       Embedder(gap, backend="torch").embed_tensor(x), atol=1e-6)
    assert penultimate.key() != gap.key()
