"""Issue 21, items 4, 5, 6 and 9 (training): a run gives the same model whatever was cached
before it (a private generator for everything seeded); a run killed between ``model.pt`` and
``model.json`` is finished by the same command; two runs of one name with different settings
started together do not both succeed; a damaged ``train_state.pt`` and a full disk while the
model is written are one line each, and the full disk loses nothing.

Tiny runs: 2 Corel classes of 4 images at 32 px, the frozen network under a 32-d head."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import REPO, SHARED_DATA

from core.cli import main
from core.embed.trained import CARD_FILE, MODEL_FILE, read_card
from core.files import file_digest
from core.train import TrainSettings, train
from core.train.checkpoint import LOCK_FILE, STATE_FILE, load_state

COREL = SHARED_DATA / "corel1k"
TINY = TrainSettings(trainable_stages=0, epochs=3, batch_size=4, image_size=32, views=0, val_fraction=0.25,
                     patience=10, embedding_dim=32)
FLAGS = ["--trainable-stages", "0", "--epochs", "3", "--batch-size", "4", "--image-size", "32", "--no-augment",
         "--val-split", "0.25", "--patience", "10", "--embedding-dim", "32", "--quiet"]


def quiet(message: str) -> None:
    pass


@pytest.fixture
def tiny(tmp_path) -> Path:
    """4 real Corel photos of each of 2 classes (links)."""
    root = tmp_path / "tiny"
    for cls in ("Buses", "Dinosaurs"):
        (root / cls).mkdir(parents=True)
        for p in sorted((COREL / cls).glob("*.jpg"))[:4]:
            (root / cls / p.name).symlink_to(p)
    return root


@pytest.fixture
def fresh_model_cache(tmp_path, monkeypatch) -> Path:
    """An empty OpenVINO model cache: the frozen trunk is converted again."""
    path = tmp_path / "model-cache"
    monkeypatch.setenv("CBIR_MODEL_CACHE", str(path))
    return path


def head_weights(model_path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(model_path, map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("head.")}


# ---------------------------------------------------------------- item 4: reproducible whatever was cached

def test_a_run_gives_the_same_model_whether_or_not_the_trunk_was_cached(artifacts, tiny, fresh_model_cache):
    torch.manual_seed(1234)
    first = train(tiny, "first", TINY, progress=False, log=quiet)           # converts the trunk, caches its maps
    torch.rand(1000)                                                         # whatever the caller drew since
    second = train(tiny, "second", TINY, progress=False, log=quiet)         # every map read from the cache
    assert [h["loss"] for h in second.card.history] == [h["loss"] for h in first.card.history]
    a, b = head_weights(first.model_path), head_weights(second.model_path)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- item 5: killed between model.pt and model.json

def test_a_run_killed_before_its_card_was_written_is_finished_by_the_same_command(artifacts, tiny):
    done = train(tiny, "cut", TINY, progress=False, log=quiet)
    folder = done.model_path.parent
    (folder / CARD_FILE).unlink()                                           # killed after model.pt
    logs: list[str] = []
    again = train(tiny, "cut", TINY, progress=False, log=logs.append)
    assert not any("already trained" in m for m in logs), logs
    assert read_card(again.model_path).sha256 == file_digest(again.model_path)
    assert [h["loss"] for h in again.card.history] == [h["loss"] for h in done.card.history]

    card = (folder / CARD_FILE).read_text()                                 # a card of an older model.pt
    (folder / CARD_FILE).write_text(card.replace(again.card.sha256, "0" * 64))
    third = train(tiny, "cut", TINY, progress=False, log=quiet)
    assert read_card(third.model_path).sha256 == file_digest(third.model_path)


# ---------------------------------------------------------------- item 6: two runs of one name at once

def test_two_runs_of_one_name_with_other_settings_started_together_do_not_both_succeed(artifacts, tiny):
    env = {**os.environ, "CBIR_ARTIFACTS": str(artifacts), "PYTHONPATH": str(REPO)}
    runs = [subprocess.Popen([sys.executable, "-m", "core", "train", "--root", str(tiny), "--name", "same", *FLAGS,
                              "--epochs", str(epochs)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for epochs in (3, 4)]
    outcomes = sorted((p.wait(timeout=900), p.stderr.read()) for p in runs)
    assert [code for code, _ in outcomes] == [0, 2], outcomes
    assert "other settings" in outcomes[1][1] and "Traceback" not in outcomes[1][1]
    state = load_state(artifacts / "models" / "same")
    assert state is not None and read_card(artifacts / "models" / "same" / MODEL_FILE).training == state.settings


# ---------------------------------------------------------------- item 9: damaged state, full disk

def test_a_truncated_training_state_is_one_line_naming_the_fix(artifacts, tiny, capsys):
    folder = artifacts / "models" / "damaged"
    folder.mkdir(parents=True)
    torch.save({"settings": TINY.to_dict(), "epoch": 0, "model": {"w": torch.zeros(10_000)}}, folder / STATE_FILE)
    data = (folder / STATE_FILE).read_bytes()
    (folder / STATE_FILE).write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match="--restart"):
        load_state(folder)
    assert main(["train", "--root", str(tiny), "--name", "damaged", *FLAGS]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and STATE_FILE in err and "--restart" in err


def test_a_state_of_another_shape_is_one_line(artifacts, tiny, capsys):
    folder = artifacts / "models" / "odd"
    folder.mkdir(parents=True)
    torch.save({"settings": TINY.to_dict()}, folder / STATE_FILE)          # keys missing
    assert main(["train", "--root", str(tiny), "--name", "odd", *FLAGS]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--restart" in err


@pytest.fixture
def small_disk(artifacts):
    """``artifacts/models/full`` on a 4 MB tmpfs: room for the training state of a 32-d head,
    not for the whole network in ``model.pt``."""
    folder = artifacts / "models" / "full"
    folder.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_while_the_model_is_written_is_one_line_and_loses_nothing(artifacts, tiny, small_disk, capsys):
    assert main(["train", "--root", str(tiny), "--name", "full", *FLAGS]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "No space left" in err, err
    assert sorted(p.name for p in small_disk.iterdir()) == [LOCK_FILE, STATE_FILE]   # no half model, no temporary
    state = load_state(small_disk)
    assert state is not None and state.done and state.epoch == TINY.epochs - 1
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    logs: list[str] = []
    result = train(tiny, "full", TINY, progress=False, log=logs.append)    # the same command, space freed
    assert result.resumed_from == TINY.epochs and len(result.card.history) == TINY.epochs
    assert read_card(result.model_path).sha256 == file_digest(result.model_path)


def test_settings_that_differ_only_in_epochs_are_refused_after_the_wait(artifacts, tiny):
    train(tiny, "once", TINY, progress=False, log=quiet)
    with pytest.raises(ValueError, match="other settings"):
        train(tiny, "once", replace(TINY, epochs=4), progress=False, log=quiet)
