"""Evaluation of a query folder against a separate gallery folder (the seed systems' protocol):
the ground truth and its resolution on hand-made folders, the split command, and a real run on
Corel-1k images with the offline network, against chance measured on the same folders."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA

from core.cli import main
from core.datasets import resolve
from core.datasets.classes import load_query_folders, split_class_folder

COREL = SHARED_DATA / "corel1k"


def _folder(root, layout: dict[str, list[str]]) -> None:
    for cls, names in layout.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for n in names:
            (root / cls / n).write_bytes(b"")


def test_query_folder_ground_truth_and_resolution(tmp_path):
    _folder(tmp_path / "g", {"cat": ["c1.jpg", "c2.jpg"], "dog": ["d1.jpg"]})
    _folder(tmp_path / "q", {"cat": ["qc.jpg"], "dog": ["qd.jpg"], "owl": ["qo.jpg"]})
    gt = load_query_folders(tmp_path / "g", tmp_path / "q")
    by_name = {q.name: q for q in gt.queries}
    assert set(by_name) == {"cat/qc.jpg", "dog/qd.jpg", "owl/qo.jpg"}
    assert by_name["cat/qc.jpg"].positives == {"c1", "c2"} and by_name["cat/qc.jpg"].junk == frozenset()
    assert gt.query_root == (tmp_path / "q").resolve() and "owl" in gt.notes[0]
    with pytest.warns(UserWarning):
        res = resolve(gt, ["cat/c1.jpg", "cat/c2.jpg", "dog/d1.jpg"])
    assert [rq.query.name for rq in res.queries] == ["cat/qc.jpg", "dog/qd.jpg"] and res.no_positives == ["owl/qo.jpg"]
    assert all(rq.image_index is None for rq in res.queries)          # queries are not gallery images
    assert res.queries[0].positives == {0, 1} and res.queries[1].positives == {2}
    with pytest.raises(FileNotFoundError):
        load_query_folders(tmp_path / "g", tmp_path / "nowhere")
    _folder(tmp_path / "g", {"dog": ["c1.png"]})                      # a gallery name under two classes
    with pytest.raises(ValueError, match=r"1 file names occur in more than one place under .*g \(e.g. c1\)"):
        load_query_folders(tmp_path / "g", tmp_path / "q")


def test_split_draws_per_class_and_links(tmp_path):
    counts = split_class_folder(COREL, tmp_path / "s", 90, seed=0)
    assert counts["gallery"] == dict.fromkeys(counts["gallery"], 90) and len(counts["gallery"]) == 10
    assert counts["queries"] == dict.fromkeys(counts["gallery"], 10)
    gallery = {p.name for p in (tmp_path / "s" / "gallery").rglob("*.jpg")}
    queries = {p.name for p in (tmp_path / "s" / "queries").rglob("*.jpg")}
    assert len(gallery) == 900 and len(queries) == 100 and not gallery & queries
    again = split_class_folder(COREL, tmp_path / "t", 90, seed=0)
    assert again == counts and {p.name for p in (tmp_path / "t" / "queries").rglob("*.jpg")} == queries
    with pytest.raises(FileExistsError):
        split_class_folder(COREL, tmp_path / "s", 90, seed=0)


def test_query_folder_run_on_real_corel_images(session_artifacts, tmp_path, capsys):
    """4 Corel classes: 12 gallery and 3 query images each, offline default network at 128 px."""
    small = tmp_path / "corel4"
    for cls in ("Beach", "Buses", "Dinosaurs", "Flowers"):
        (small / cls).mkdir(parents=True)
        for p in sorted((COREL / cls).glob("*.jpg"))[:15]:
            (small / cls / p.name).symlink_to(p)
    assert main(["data", "split", "--root", str(small), "--out", str(tmp_path / "s"), "--per-class", "12"]) == 0
    assert main(["evaluate", "--dataset", "classes", "--root", str(tmp_path / "s" / "gallery"), "--queries",
                 str(tmp_path / "s" / "queries"), "--name", "corel4", "--max-size", "128", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "on 48 images, 12 queries" in out
    run_dir = next(line.split()[-1] for line in out.splitlines() if "run written to" in line)
    s = json.loads(open(f"{run_dir}/summary.json").read())
    table = pd.read_csv(f"{run_dir}/classes.csv")
    ranking = np.load(f"{run_dir}/ranking.npy")
    assert s["queries_from_cache"] == 0 and s["dataset_info"]["queries_root"].endswith("queries")
    assert ranking.shape == (12, 48)                     # every gallery image is ranked: nothing is junk
    assert sorted(table["class"]) == ["Beach", "Buses", "Dinosaurs", "Flowers"] and (table["n_queries"] == 3).all()
    # chance: 12 relevant of 48 at any rank = 0.25; these classes are easy for ImageNet features
    assert s["classes"]["chance_precision"] == pytest.approx(0.25)
    assert s["p@10"] > 0.6 and s["top1"] > 0.6, (s["p@10"], s["top1"])
    with pytest.raises(SystemExit):
        main(["evaluate", "--dataset", "paris6k", "--root", "x", "--queries", "y", "--layer", "fc9"])
    assert main(["evaluate", "--dataset", "paris6k", "--root", str(small), "--queries", str(small)]) == 2
