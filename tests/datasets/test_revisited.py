"""Revisited Oxford/Paris and Holidays ground truth on the real files in ../shared/data, the
protocols, revisitop's mP@k, the restricted unpickler, and an evaluation of RParis6k on the
shared Paris images through the CLI."""
from __future__ import annotations

import json
import os
import pickle
import warnings

import numpy as np
import pytest
from conftest import OXFORD, PARIS, SHARED_DATA, require_shared

from core.cli import main
from core.datasets import load_ground_truth, resolve
from core.datasets.holidays import holidays_from_mat, holidays_from_names, load_holidays
from core.datasets.revisited import load_gnd, protocol_sets
from core.datasets.safepickle import UnsafePickle
from core.evaluation.metrics import revisitop_precision_at_k
from core.evaluation.runs import load_run
from core.images import list_images

RPARIS_PRESENT = [4, 5, 8, 12, 15, 16, 17, 18, 19, 22, 25, 55]      # README: queries whose image is shipped


def resolved(gt):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return resolve(gt, list_images(PARIS / "jpg"))


def test_revisited_mat_files_load_with_0_based_indices():
    require_shared()
    for folder, dataset, n_db in ((OXFORD, "roxford5k", 4993), (PARIS, "rparis6k", 6322)):
        g = load_gnd(folder / f"gnd_{dataset}.mat")
        assert len(g.imlist) == n_db and len(g.qimlist) == 70
        assert min(min(lst, default=n_db) for lst in g.easy + g.hard + g.junk) >= 0
        assert not set(g.qimlist) & set(g.imlist)                    # queries are outside the database
    rparis = load_gnd(PARIS / "gnd_rparis6k.mat")
    assert rparis.qimlist[0] == "paris_defense_000605" and rparis.bbx[0] == [130.0, 17.0, 843.0, 732.0]
    assert rparis.easy[0][0] == 85                                     # 86 in the 1-based .mat


def test_protocol_sets_follow_revisitop():
    easy, hard, junk = frozenset("ab"), frozenset("c"), frozenset("d")
    assert protocol_sets(easy, hard, junk, "easy") == (frozenset("ab"), frozenset("cd"))
    assert protocol_sets(easy, hard, junk, "medium") == (frozenset("abc"), frozenset("d"))
    assert protocol_sets(easy, hard, junk, "hard") == (frozenset("c"), frozenset("abd"))
    with pytest.raises(ValueError, match="unknown protocol"):
        protocol_sets(easy, hard, junk, "extreme")


def test_rparis6k_on_the_shared_images_matches_the_readme_table():
    require_shared()
    medium = resolved(load_ground_truth("rparis6k", PARIS / "gt", "medium"))
    assert [int(rq.query.name[1:]) for rq in medium.queries] == RPARIS_PRESENT
    by_name = {rq.query.name: rq for rq in medium.queries}
    stems = {p.stem for p in (PARIS / "jpg").glob("*.jpg")}
    # README: q04 easy 36, hard 9, junk 0 present; q08 24/24/2; q55 2/0/0
    for name, easy, hard, junk in (("q04", 36, 9, 0), ("q08", 24, 24, 2), ("q22", 11, 34, 1), ("q55", 2, 0, 0)):
        q = by_name[name].query
        assert (len(q.labels["easy"] & stems), len(q.labels["hard"] & stems), len(q.labels["junk"] & stems)) == \
               (easy, hard, junk)
        assert len(by_name[name].positives) == easy + hard
        assert len(by_name[name].junk) == junk + 12                  # + the 12 query images, not in the database
    hard = resolved(load_ground_truth("rparis6k", PARIS, "hard"))
    assert [rq.query.name for rq in hard.queries] == [f"q{i:02d}" for i in RPARIS_PRESENT if i != 55]
    assert hard.no_positives == ["q55"]


def test_roxford5k_counts_and_unknown_protocol():
    require_shared()
    gt = load_ground_truth("roxford5k", OXFORD / "gt")
    assert gt.protocol == "medium" and len(gt.queries) == 70
    assert gt.info["n_database_listed"] == 4993 and gt.info["source"] == "gnd_roxford5k.mat"
    assert gt.queries[0].group == "all_souls"
    with pytest.raises(ValueError, match="choose one of easy, medium, hard"):
        load_ground_truth("roxford5k", OXFORD, "extreme")
    with pytest.raises(ValueError, match="single protocol"):
        load_ground_truth("paris6k", PARIS / "gt", "hard")


def test_revisitop_precision_at_k_hand_computed():
    hits = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1], bool)   # relevant at ranks 1, 3, 12
    assert revisitop_precision_at_k(hits, 1) == 1.0
    assert revisitop_precision_at_k(hits, 5) == pytest.approx(2 / 5)
    assert revisitop_precision_at_k(hits, 10) == pytest.approx(2 / 10)
    few = np.array([1, 0, 1, 0, 0, 0], bool)                         # all found by rank 3: k capped at 3
    assert revisitop_precision_at_k(few, 5) == pytest.approx(2 / 3)
    assert revisitop_precision_at_k(np.zeros(4, bool), 5) == 0.0


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/cbir-pwned",))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_restricted_unpickler_reads_arrays_and_refuses_code(tmp_path, protocol):
    good = tmp_path / "gnd_rtest.pkl"
    good.write_bytes(pickle.dumps({"imlist": ["a", "b", "c"], "qimlist": ["q"], "gnd": [
        {"easy": np.array([0, 2]), "hard": [1], "junk": np.array([], dtype=np.int64),
         "bbx": np.array([1.5, 2, 30, 40])}]}, protocol=protocol))
    g = load_gnd(good)
    assert (g.easy, g.hard, g.junk, g.bbx) == ([[0, 2]], [[1]], [[]], [[1.5, 2.0, 30.0, 40.0]])
    evil = tmp_path / "gnd_evil.pkl"
    evil.write_bytes(pickle.dumps({"imlist": [], "qimlist": [], "gnd": [_Evil()]}, protocol=protocol))
    with pytest.raises(UnsafePickle, match="posix.system|os.system"):
        load_gnd(evil)
    assert not os.path.exists("/tmp/cbir-pwned")


def test_holidays_ground_truth_from_mat_and_names_agree():
    require_shared()
    from_mat = holidays_from_mat(SHARED_DATA / "mat" / "gnd_holidays.mat")
    assert len(from_mat.queries) == 500 and from_mat.info["n_images_listed"] == 1491
    assert sum(len(q.positives) for q in from_mat.queries) == 991
    first = from_mat.queries[0]
    assert (first.image, sorted(first.positives), first.junk) == ("100000", ["100001", "100002"], frozenset({"100000"}))
    names = [n for q in from_mat.queries for n in (q.image, *q.positives)]
    from_names = holidays_from_names(f"{n}.jpg" for n in names)
    assert [(q.image, q.positives, q.junk) for q in from_names.queries] == \
           [(q.image, q.positives, q.junk) for q in from_mat.queries]
    assert load_holidays(SHARED_DATA / "mat").info["source"] == "gnd_holidays.mat"


def test_cli_evaluates_rparis6k_medium_and_hard_on_the_shared_images(session_artifacts, capsys):
    require_shared()
    common = ["evaluate", "--dataset", "rparis6k", "--root", str(PARIS), "--name", "rparis6k-small",
              "--max-size", "160", "--quiet"]
    summaries = {}
    for protocol in ("medium", "hard"):
        assert main(common + ["--protocol", protocol]) == 0
        out = capsys.readouterr().out
        assert f"rparis6k ({protocol.capitalize()}) on 250 images" in out and "revisitop mP@1/5/10" in out
        run_dir = next(line.split()[-1] for line in out.splitlines() if "run written to" in line)
        on_disk = json.loads(open(f"{run_dir}/summary.json").read())
        assert {"mp@1", "mp@5", "mp@10", "dataset_info"} <= set(on_disk)
        run = load_run(on_disk["run_id"])
        summaries[protocol] = s = run.summary
        assert s.dataset == "rparis6k" and s.protocol == protocol
        assert s.protocol_extras["dataset_info"]["n_database_listed"] == 6322
        assert s.map > 2 * s.random_map, (s.map, s.random_map)
        assert {"protocol", "easy_present", "hard_present", "junk_present", "mp@1", "mp@5", "mp@10"} <= set(run.per_query)
        assert (run.per_query["protocol"] == protocol).all()
        for k in (1, 5, 10):
            assert s.metric(f"mp@{k}") == pytest.approx(run.per_query[f"mp@{k}"].mean())
    assert summaries["medium"].n_queries == 12 and summaries["hard"].n_queries == 11
    assert summaries["hard"].skipped_queries[-1] == "q55"


def test_holidays_from_the_official_image_list(tmp_path):
    """Without gnd_holidays.mat, the official holidays_images.dat (here written from the real
    .mat's names) gives the same ground truth."""
    require_shared()
    from_mat = holidays_from_mat(SHARED_DATA / "mat" / "gnd_holidays.mat")
    names = sorted(f"{n}.jpg" for q in from_mat.queries for n in (q.image, *q.positives))
    (tmp_path / "holidays_images.dat").write_text("\n".join(names) + "\n")
    (tmp_path / "jpg").mkdir()
    gt = load_ground_truth("holidays", tmp_path / "jpg")
    assert gt.info == {"source": "holidays_images.dat", "n_images_listed": 1491, "n_queries_listed": 500}
    assert [(q.image, q.positives) for q in gt.queries] == [(q.image, q.positives) for q in from_mat.queries]
    with pytest.raises(FileNotFoundError, match="data fetch holidays"):
        load_holidays(tmp_path / "other" / "jpg")
