"""File names with newlines keep run ids and rankings aligned. (Issue 16, hostile input: each test failed on the code before its fix.)"""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import SMALL, SMALL_FLAGS, paris_images, run_core

from core.cache.descriptors import load_embeddings
from core.cache.galleries import register_gallery
from core.datasets.classes import load_class_folders
from core.evaluation.pipeline import RunOptions, evaluate
from core.evaluation.runs import load_run, write_run

CFG, FLAGS, cli = SMALL, SMALL_FLAGS, run_core
QUIET = dict(progress=False, log=lambda m: None)


def test_a_newline_in_a_file_name_keeps_run_ids_and_rankings_aligned(artifacts, tmp_path, small_embedder):
    root = tmp_path / "classes"
    names = ["a/one.jpg", "a/two\nlines.jpg", "a/three.jpg", "b/four.jpg", "b/five.jpg", "b/six.jpg"]
    for name, source in zip(names, paris_images(6, step=40)):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, root / name)
    gallery = register_gallery("cls", root)
    summary = evaluate(gallery, load_class_folders(root), CFG, embedder=small_embedder, options=RunOptions(**QUIET))
    run = load_run(summary.run_id)
    emb = load_embeddings("cls", CFG)
    assert run.ids == emb.ids and "a/two\nlines.jpg" in run.ids and run.ranking.shape[1] == len(names)
    assert len((run.directory / "images.txt").read_text().splitlines()) == len(names)   # one line per image, for people
    assert set(run.per_query["query"]) == set(names)


def test_a_run_whose_ids_disagree_with_its_ranking_is_refused(tmp_path):
    from core.evaluation.runs import RunError

    d = write_run("r", {"run_id": "r"}, pd.DataFrame({"query": ["q"], "ap": [1.0]}), ["a.jpg", "b.jpg"],
                  np.array([[1, 0]]), {}, root=tmp_path)
    (d / "images.json").unlink()                                           # a run written before images.json
    (d / "images.txt").write_text("a\nb\nc.jpg\n")
    with pytest.raises(RunError, match="3 gallery images for 2 ranking columns"):
        load_run("r", tmp_path).ids
