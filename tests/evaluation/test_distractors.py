"""``evaluate --distractors GALLERY``: every image of an indexed gallery joins the benchmark's
gallery as a negative, the ground truth unchanged; the run records it ("Medium +30")."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import PARIS, SHARED_DATA

from core.app.catalog import runs_table
from core.cache import combined
from core.cache.descriptors import Embeddings
from core.cli import main
from core.config import EmbeddingConfig
from core.evaluation.distractors import distractor_id, with_distractors
from core.evaluation.summary import DistractorsRun

FLAGS = ["--max-size", "96", "--pooling", "gem", "--scales", "1.0", "--quiet"]


def _emb(name: str, n: int, dim: int) -> Embeddings:
    rng = np.random.default_rng(n)
    return Embeddings(name, EmbeddingConfig(), [f"{i}.jpg" for i in range(n)],
                      rng.standard_normal((n, dim)).astype(np.float32), Path("."), fingerprints=["f"] * n)


def test_distractors_follow_the_benchmark_rows_under_ids_no_benchmark_image_has(artifacts, monkeypatch):
    bench, extra = _emb("paris", 3, 8), _emb("r1m", 2, 8)
    monkeypatch.setattr(combined, "BLOCK_ROWS", 2)                    # written in blocks, never joined in memory
    both = with_distractors(bench, extra)
    assert both.ids == ["0.jpg", "1.jpg", "2.jpg", "r1m:0.jpg", "r1m:1.jpg"] and distractor_id("r1m", "0.jpg") == "r1m:0.jpg"
    np.testing.assert_array_equal(both.vectors, np.vstack([bench.vectors, extra.vectors]))
    assert isinstance(both.vectors, np.memmap) and both.strata == (0, 3)
    assert both.gallery == "paris" and len(both.fingerprints) == 5 and both.directory.name == EmbeddingConfig().key()
    written = sorted(both.directory.glob("vectors-*.f32"))
    again = with_distractors(bench, extra)                            # unchanged: reused, nothing rewritten
    assert sorted(again.directory.glob("vectors-*.f32")) == written and again.directory == both.directory
    changed = with_distractors(bench, _emb("r1m", 4, 8))              # a distractor added: written anew
    assert len(changed.ids) == 7 and sorted(changed.directory.glob("vectors-*.f32")) != written
    with pytest.raises(ValueError, match="4-d"):
        with_distractors(bench, _emb("r1m", 2, 4))


def test_labels_name_the_protocol_as_papers_do():
    assert DistractorsRun("r1m", 1_001_001).label == "+1M"
    assert DistractorsRun("r1m", 100_100).label == "+100k"
    assert DistractorsRun("mine", 30).label == "+30"


def test_evaluate_with_distractors_records_them_and_can_only_lose_map(artifacts, tmp_path, capsys):
    photos = tmp_path / "negatives"
    photos.mkdir()
    for p in sorted((SHARED_DATA / "corel1k").rglob("*.jpg"))[::33][:30]:
        shutil.copy(p, photos / p.name)
    assert main(["index", "--folder", str(photos), "--name", "mine", "--index", "none", *FLAGS]) == 0
    base = ["evaluate", "--dataset", "rparis6k", "--root", str(PARIS), "--rerank", "none", *FLAGS]
    assert main(base) == 0
    assert main([*base, "--distractors", "mine"]) == 0
    out = capsys.readouterr().out
    assert "rparis6k (Medium +30) on 280 images" in out
    table = runs_table()
    plain, extra = (table[table["protocol"] == p].iloc[0] for p in ("Medium", "Medium +30"))
    assert (plain["n_images"], extra["n_images"]) == (250, 280)
    assert extra["mAP"] <= plain["mAP"] + 1e-12              # negatives can only push positives down
    run_dir = sorted((artifacts / "runs").iterdir())[-1]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["distractors"] == {"gallery": "mine", "n_images": 30, "label": "+30"}
    assert sum(i.startswith("mine:") for i in json.loads((run_dir / "images.json").read_text())) == 30
