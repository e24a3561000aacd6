"""Checkpoints and trained models are tied to their content (issue 21, items 1, 9 and 10): a file
replaced under the same path is another network with other descriptors, and a damaged, refused,
misshapen or oversized one is one line naming the file, never a traceback or a huge allocation."""
from __future__ import annotations

import os
import pickle
import resource
import shutil
from pathlib import Path

import pytest
import torch
from conftest import copy_paris_images

from core.cli import main
from core.config import EmbeddingConfig
from core.embed.backbones import WeightsUnavailable, create_backbone
from core.embed.heads import EmbeddingHead, HeadConfig
from core.embed.trained import CARD_FILE, FORMAT, MODEL_FILE, ModelCard, apply_model, read_card
from core.train.checkpoint import export_model

FLAGS = ["--max-size", "64", "--scales", "1.0", "--quiet", "--index", "none"]


def export_small_model(directory: Path, seed: int) -> Path:
    """A trained-model folder (model.pt + model.json) of small_cnn with a 16-d head, drawn from ``seed``."""
    torch.manual_seed(seed)
    backbone = create_backbone("small_cnn", "random")
    backbone.head = EmbeddingHead(HeadConfig(in_channels=256, dim=16, learn_p=False))
    card = ModelCard(name=directory.name, backbone="small_cnn", base_weights="random", layer="head",
                     classes=("a", "b"), sha256="", head=backbone.head.config)
    export_model(directory, backbone.eval(), card)
    return directory / MODEL_FILE


def save_state_dict(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    torch.save(create_backbone("small_cnn", "random").features.state_dict(), path)
    return path


def test_a_plain_checkpoint_rewritten_under_its_path_gets_another_cache_key(tmp_path):
    path = save_state_dict(tmp_path / "ckpt.pt", seed=0)
    config = EmbeddingConfig(backbone="small_cnn", weights=str(path))
    first = apply_model(config)
    assert first.weights_digest and apply_model(config).key() == first.key()
    save_state_dict(path, seed=1)
    assert apply_model(config).key() != first.key()


def test_a_trained_model_replaced_beside_its_old_card_gets_its_own_digest(artifacts, tmp_path):
    model = export_small_model(artifacts / "models" / "m", seed=0)
    config = EmbeddingConfig(weights=str(model))
    before = apply_model(config)
    assert before.weights_digest == read_card(model).sha256          # unchanged file: the key it always had
    card = model.with_name(CARD_FILE).read_bytes()
    export_small_model(tmp_path / "other", seed=1)
    shutil.copy(tmp_path / "other" / MODEL_FILE, model)
    model.with_name(CARD_FILE).write_bytes(card)                     # the old card, now stale
    after = apply_model(config)
    assert after.weights_digest != read_card(model).sha256 and after.key() != before.key()


def test_replacing_a_model_re_embeds_the_gallery_and_a_photo_finds_itself_again(artifacts, tmp_path, capsys):
    folder = copy_paris_images(tmp_path / "photos", 6)
    model = export_small_model(artifacts / "models" / "m", seed=0)
    assert main(["index", "--folder", str(folder), "--name", "g", "--weights", str(model), *FLAGS]) == 0
    card = model.with_name(CARD_FILE).read_bytes()
    export_small_model(tmp_path / "other", seed=1)
    shutil.copy(tmp_path / "other" / MODEL_FILE, model)
    model.with_name(CARD_FILE).write_bytes(card)
    capsys.readouterr()
    assert main(["index", "--name", "g", "--weights", str(model), *FLAGS]) == 0
    out = capsys.readouterr().out
    assert "g: 6 images embedded" in out and "up to date" not in out
    query = sorted(folder.iterdir())[3]
    assert main(["search", str(query), "--name", "g", "--weights", str(model), "--rerank", "none", "-k", "1",
                 *FLAGS[:-2]]) == 0
    top = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("1 ")]
    assert top and top[0].split()[-1] == query.name and "cosine 1.0000" in top[0]


def refused(weights: str, backbone: str = "small_cnn") -> str:
    with pytest.raises(WeightsUnavailable) as exc:
        create_backbone(backbone, weights)
    message = str(exc.value)
    assert "\n" not in message and weights in message
    return message


def test_a_truncated_trained_model_is_one_line(artifacts):
    model = export_small_model(artifacts / "models" / "m", seed=0)
    data = model.read_bytes()
    model.write_bytes(data[: len(data) // 2])
    assert "damaged or truncated" in refused(str(model))


def test_a_checkpoint_pickle_that_torch_refuses_is_one_line(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"state_dict": {"w": os.getcwd}}, fh)          # a callable: refused by weights_only
    assert "could run code" in refused(str(path))


def test_a_checkpoint_tensor_of_the_wrong_shape_is_one_line(tmp_path):
    state = create_backbone("small_cnn", "random").features.state_dict()
    state["0.0.weight"] = torch.zeros(8, 3, 3, 3)
    torch.save(state, tmp_path / "bad.pt")
    message = refused(str(tmp_path / "bad.pt"))
    assert "size mismatch for 0.0.weight" in message


def test_a_huge_declared_head_is_refused_before_it_is_allocated(artifacts):
    folder = artifacts / "models" / "huge"
    folder.mkdir(parents=True)
    head = {"in_channels": 256, "dim": 4_000_000, "gem_p": 3.0, "dropout": 0.0, "learn_p": False}
    torch.save({"format": FORMAT, "backbone": "small_cnn", "base_weights": "random", "head": head, "layer": "head",
                "classes": ["a"], "state_dict": {}}, folder / MODEL_FILE)
    assert (folder / MODEL_FILE).stat().st_size < 4096
    card = ModelCard(name="huge", backbone="small_cnn", base_weights="random", layer="head", classes=("a",),
                     sha256="", head=HeadConfig(**head))
    (folder / CARD_FILE).write_text(__import__("json").dumps(card.to_dict()))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    message = refused(str(folder / MODEL_FILE))
    assert "4000000-wide head" in message
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024
    assert grown_mb < 500                                            # the head would be 4.1 GB


def test_the_cli_says_one_line_for_a_refused_checkpoint(artifacts, tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"w": os.getcwd}, fh)
    folder = copy_paris_images(tmp_path / "photos", 1)
    code = main(["index", "--folder", str(folder), "--name", "g", "--backbone", "small_cnn", "--weights", str(path),
                 *FLAGS])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "could run code" in err and "Traceback" not in err
