"""Malformed ground truth and query boxes are skipped with a note; evaluation goes on. (Issue 16, hostile input: each test failed on the code before its fix.)"""
from __future__ import annotations

import os
import pickle
import shutil

from conftest import PARIS, SMALL, SMALL_FLAGS, copy_paris_images, run_core

from core.cache.descriptors import build_embeddings
from core.cache.galleries import register_gallery
from core.cli import main
from core.datasets import load_oxford_paris
from core.datasets.revisited import load_gnd, revisited_ground_truth
from core.evaluation.pipeline import RunOptions, evaluate
from core.progress import Reporter

CFG, FLAGS, cli = SMALL, SMALL_FLAGS, run_core
QUIET = dict(progress=False, log=lambda m: None)


BAD_BOXES = {"defense_1": "nan 1 200 300", "defense_2": "0 0 inf 300", "defense_3": "left top right bottom",
             "defense_4": "0x10 0x10 0x200 0x200", "defense_5": "10 10 10 300"}


def test_malformed_ground_truth_entries_are_counted_and_skipped(tmp_path):
    gt_dir = tmp_path / "gt"
    shutil.copytree(PARIS / "gt", gt_dir)
    for query, box in BAD_BOXES.items():
        image = (gt_dir / f"{query}_query.txt").read_text().split()[0]
        (gt_dir / f"{query}_query.txt").write_text(f"{image} {box}\n")
    (gt_dir / "eiffel_1_ok.txt").write_bytes(bytes(range(256)) * 4)                 # binary
    (gt_dir / "eiffel_2_junk.txt").write_bytes(b"paris_eiffel_000001\n\xff\xfe caf\xe9\n")   # not UTF-8
    (gt_dir / "eiffel_3_query.txt").write_bytes(b"\xff\xd8\xff\xe0 JFIF")            # an image, not a query line
    (gt_dir / "eiffel_4_good.txt").unlink()
    os.mkfifo(gt_dir / "eiffel_4_good.txt")                                        # would block a plain read
    (gt_dir / "extra_1_query.txt").mkdir()                                          # a folder named like a query
    gt = load_oxford_paris(gt_dir, "paris6k")
    skipped = [n for n in gt.notes if n.endswith("query skipped")]
    assert len(skipped) == 10 and len(gt.queries) == 55 - 9
    for name, reason in [("defense_1_query.txt", "finite"), ("defense_2_query.txt", "finite"),
                         ("defense_3_query.txt", "decimal numbers"), ("defense_4_query.txt", "decimal numbers"),
                         ("defense_5_query.txt", "no area"), ("eiffel_1_ok.txt", "binary"),
                         ("eiffel_2_junk.txt", "not UTF-8"), ("eiffel_3_query.txt", "not UTF-8"),
                         ("eiffel_4_good.txt", "FIFO"), ("extra_1_query.txt", "directory")]:
        assert any(n.startswith(name) and reason in n and "\n" not in n for n in skipped), (name, skipped)


def test_query_boxes_outside_their_image_are_skipped_and_evaluation_goes_on(artifacts, tmp_path, small_embedder):
    images = copy_paris_images(tmp_path / "jpg", 6, step=40)
    stems = sorted(p.stem for p in images.iterdir())
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    for n, box in enumerate(["10 10 300 300", "5000 5000 6000 6000", "-900 -900 -10 -10"], start=1):
        (gt_dir / f"mine_{n}_query.txt").write_text(f"{stems[0]} {box}\n")
        (gt_dir / f"mine_{n}_good.txt").write_text(f"{stems[1]}\n{stems[2]}\n")
        for label in ("ok", "junk"):
            (gt_dir / f"mine_{n}_{label}.txt").write_text("")
    summary = evaluate(register_gallery("mine", images), load_oxford_paris(gt_dir, "mine"), CFG, embedder=small_embedder,
                       options=RunOptions(**QUIET))
    assert summary.n_queries == 1 and summary.skipped_queries == ["mine_2", "mine_3"]
    assert sum("no area inside" in n for n in summary.ground_truth_notes) == 2


def test_revisited_queries_with_malformed_boxes_are_skipped(tmp_path):
    path = tmp_path / "gnd_rtest.pkl"
    gnd = [{"easy": [0], "hard": [], "junk": [], "bbx": box}
           for box in ([1, 2, 30, 40], [float("nan"), 0, 10, 10], ["a", "b", "c", "d"], [5, 5, 5, 9])]
    path.write_bytes(pickle.dumps({"imlist": ["a"], "qimlist": ["q1", "q2", "q3", "q4"], "gnd": gnd}))
    gt = revisited_ground_truth(load_gnd(path), "rtest")
    assert [q.name for q in gt.queries] == ["q01"] and len(gt.notes) == 3
    assert all("query skipped" in n for n in gt.notes)


def test_search_with_an_infinite_box_says_so_in_one_line(artifacts, tmp_path, small_embedder, capsys):
    folder = copy_paris_images(tmp_path / "g", 3)
    build_embeddings(register_gallery("g", folder), CFG, small_embedder, reporter=Reporter.quiet())
    assert main(["search", str(next(folder.iterdir())), "--box", "0", "0", "inf", "inf", "--name", "g", *FLAGS]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "finite" in err and err.count("\n") == 1
