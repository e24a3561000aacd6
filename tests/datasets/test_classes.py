"""Class-folder galleries: the ground truth, the pure k-NN / confusion / per-class functions on
hand-computed values, the real Fashion-MNIST IDX files, and a class-based evaluation of a few
hundred real Fashion-MNIST images with the real offline weights, against chance measured here."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA

from core.cli import main
from core.datasets import load_ground_truth, resolve
from core.datasets.classes import class_of, load_class_folders
from core.datasets.exporters import FASHION_MNIST_CLASSES, export_fashion_mnist, read_idx
from core.evaluation.knn import KNN_K, class_report, confusion_long, confusion_matrix, knn_predict, knn_vote
from core.evaluation.metrics import score_query
from core.evaluation.runs import load_run

FMNIST = SHARED_DATA / "fashion-mnist"


def test_knn_vote_majority_and_nearest_tie_break():
    assert knn_vote(["b", "a", "a"]) == "a"
    assert knn_vote(["b", "a", "a", "b"]) == "b"               # 2-2 tie: the nearer class
    assert knn_vote(["c"]) == "c"
    assert knn_vote([]) is None


def test_knn_predict_skips_the_query_and_unclassed_images():
    labels = ["x", "y", None, "y", "x", "x"]
    ranking = [0, 2, 1, 3, 4, 5]
    assert knn_predict(ranking, {0}, labels, k=3) == "y"        # neighbours y, y, x (0 excluded, 2 unclassed)
    assert knn_predict(ranking, {0}, labels, k=1) == "y"
    assert knn_predict(ranking, set(), labels, k=1) == "x"


def test_confusion_matrix_and_long_form():
    m = confusion_matrix(["a", "a", "b", "b", "b"], ["a", "b", "b", "b", None], ["a", "b"])
    assert m.tolist() == [[1, 1], [0, 2]]
    long = confusion_long(["a", "b"], m)
    assert long.loc[(long["true"] == "a") & (long["predicted"] == "b"), "share"].item() == 0.5
    assert long["count"].sum() == 4


def test_class_report_per_class_table_hand_computed():
    per_query = pd.DataFrame({"group": ["a", "a", "b"], "ap": [1.0, 0.5, 0.25], "p@1": [1.0, 0.0, 1.0],
                              "top1": [1.0, 0.0, 1.0]})
    r = class_report(per_query, ["a", "b", "b"], ks=(1,), knn_k=3)
    t = r.table.set_index("class")
    assert t.loc["a", "n_queries"] == 2 and t.loc["a", "map"] == 0.75 and t.loc["a", "p@1"] == 0.5
    assert t.loc["a", "knn_accuracy"] == 0.5 and t.loc["b", "knn_accuracy"] == 1.0
    assert t.loc["a", "knn_precision"] == 1.0 and t.loc["b", "knn_precision"] == 0.5
    assert r.confusion.tolist() == [[1, 1], [0, 1]]
    assert r.summary["knn_accuracy"] == pytest.approx(2 / 3)
    assert r.summary["class_mean_p@1"] == 0.75                  # macro: (0.5 + 1) / 2
    assert r.summary["class_mean_map"] == pytest.approx((0.75 + 0.25) / 2)


def test_real_fashion_mnist_idx_files():
    images = read_idx(FMNIST / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(FMNIST / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [1000] * 10


def test_class_folder_ground_truth(tmp_path):
    counts = export_fashion_mnist(tmp_path / "fm", FMNIST, per_class=3, size=32)
    assert counts == {c: 3 for c in FASHION_MNIST_CLASSES}
    (tmp_path / "fm" / "loose.png").write_bytes((tmp_path / "fm" / "bag").joinpath(
        next(p.name for p in (tmp_path / "fm" / "bag").iterdir())).read_bytes())
    gt = load_ground_truth("classes", tmp_path / "fm")
    assert gt.protocol == "classes" and len(gt.queries) == 30
    assert gt.info["n_classes"] == 10 and gt.info["n_unclassed_images"] == 1
    q = gt.queries[0]
    assert class_of(q.name) == q.group == "ankle_boot"
    assert len(q.positives) == 2 and q.image not in q.positives and q.junk == {q.image}
    (tmp_path / "fm" / "coat" / "t10k-00000.png").write_bytes(b"")     # the same name in two classes
    with pytest.raises(ValueError, match="rename them to be unique"):
        load_class_folders(tmp_path / "fm")


def test_export_leaves_unchanged_files_alone(tmp_path):
    export_fashion_mnist(tmp_path, FMNIST, per_class=2, size=40)
    files = sorted(tmp_path.rglob("*.png"))
    before = [p.stat().st_mtime_ns for p in files]
    export_fashion_mnist(tmp_path, FMNIST, per_class=2, size=40)
    assert [p.stat().st_mtime_ns for p in files] == before


def test_export_command_names_the_dataset_and_the_next_command(tmp_path, capsys):
    out = tmp_path / "fm"
    assert main(["data", "export-fashion-mnist", "--source", str(FMNIST), "--out", str(out), "--per-class", "1",
                 "--size", "32"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"10 Fashion-MNIST t10k images in 10 class folders under {out} (32 px): ")
    assert "ankle_boot 1" in printed
    assert f"--dataset classes --root {out} --max-size 32" in printed and len(list(out.rglob("*.png"))) == 10


def test_class_folder_evaluation_beats_chance(session_artifacts, tmp_path, capsys):
    """300 real Fashion-MNIST images (30 a class, 64 px) with the offline default network."""
    root = tmp_path / "fashion"
    export_fashion_mnist(root, FMNIST, per_class=30, size=64)
    assert main(["evaluate", "--dataset", "classes", "--root", str(root), "--name", "fashion300",
                 "--max-size", "64", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "classes (classes) on 300 images, 300 queries" in out and "10-NN accuracy" in out
    run_dir = next(line.split()[-1] for line in out.splitlines() if "run written to" in line)
    on_disk = json.loads(open(f"{run_dir}/summary.json").read())
    assert {"p@10", "top10", "knn_accuracy", "classes", "dataset_info"} <= set(on_disk)     # the documented keys
    run = load_run(on_disk["run_id"])
    s = run.summary
    table = pd.read_csv(f"{run_dir}/classes.csv")
    confusion = json.loads(open(f"{run_dir}/confusion.json").read())
    assert s.protocol_extras["dataset_info"]["n_classes"] == 10 and s.queries_from_cache == 300
    assert sorted(table["class"]) == sorted(FASHION_MNIST_CLASSES) and (table["n_queries"] == 30).all()
    assert np.array(confusion["matrix"]).sum() == 300 and confusion["k"] == KNN_K
    assert np.trace(confusion["matrix"]) / 300 == pytest.approx(s.metric("knn_accuracy"))
    assert {"predicted", "protocol"} <= set(run.per_query)

    # chance, measured on the same gallery with random rankings through the same functions
    rng = np.random.default_rng(0)
    gt = load_ground_truth("classes", root)
    res = resolve(gt, run.ids)
    labels = [class_of(i) for i in run.ids]
    rand_p10, rand_knn = [], []
    for _ in range(5):
        for rq in res.queries:
            r = rng.permutation(len(run.ids))
            rand_p10.append(score_query(r, rq.positives, rq.junk).precision_at[10])
            rand_knn.append(knn_predict(r, rq.junk, labels) == rq.query.group)
    chance_p10, chance_knn = float(np.mean(rand_p10)), float(np.mean(rand_knn))
    assert chance_p10 == pytest.approx(s.protocol_extras["classes"]["chance_precision"], abs=0.03)
    assert s.metric("p@10") > 3 * chance_p10, (s.metric("p@10"), chance_p10)
    assert s.metric("knn_accuracy") > 3 * chance_knn, (s.metric("knn_accuracy"), chance_knn)
    assert s.map > 2 * s.random_map

    # the metrics page shows the per-class table and the confusion heatmap of this run
    from conftest import REPO
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(REPO / "pages" / "metrics.py"), default_timeout=120)
    at.session_state["tab"] = "Classes"
    at.run()
    assert not at.exception
    at.selectbox(key="classes_run").set_value(s.run_id).run()
    assert not at.exception
    assert any("10 classes" in m.value and "10-NN accuracy" in m.value for m in at.markdown)
    assert sorted(at.dataframe[0].value["class"]) == sorted(FASHION_MNIST_CLASSES)
    assert len(at.get("vega_lite_chart")) == 1
