"""End to end on the real Paris images with the real offline weights: descriptors, indexes,
evaluation of the queries whose images are present, the run files, and the CLI."""
import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import PARIS

from core.cli import main
from core.config import DEFAULT_CONFIG
from core.datasets import resolve
from core.evaluation.metrics import score_query
from core.evaluation.pipeline import RunOptions, evaluate
from core.evaluation.runs import list_runs, load_run
from core.evaluation.summary import RunSummary
from core.index import SearchSettings

QUIET = dict(options=RunOptions(progress=False, log=lambda m: None))


@pytest.fixture(scope="session")
def default_run(paris_gallery, paris_gt):
    return evaluate(paris_gallery, paris_gt, DEFAULT_CONFIG, **QUIET)


def test_default_beats_random_ranking_threefold(default_run, paris_gt):
    run = load_run(default_run.run_id)
    res = resolve(paris_gt, run.ids)
    rng = np.random.default_rng(7)
    random_map = np.mean([score_query(rng.permutation(len(run.ids)), q.positives, q.junk).ap
                          for _ in range(10) for q in res.queries])
    assert default_run.n_queries == 12 and default_run.n_images == 250
    assert default_run.map >= 3 * random_map, (default_run.map, random_map)


def test_run_files_let_anyone_recompute_the_metrics(default_run, paris_gt):
    run = load_run(default_run.run_id)
    assert run.run_id in list_runs()
    ranking = run.ranking
    assert ranking.dtype == np.int32 and ranking.shape == (12, 250)
    res = resolve(paris_gt, run.ids)
    recomputed = [score_query(r, q.positives, q.junk).ap for r, q in zip(ranking, res.queries)]
    assert np.mean(recomputed) == pytest.approx(run.summary.map)
    assert list(run.per_query["query"]) == [q.query.name for q in res.queries]
    on_disk = json.loads((run.directory / "summary.json").read_text())
    assert RunSummary.from_dict(on_disk).to_dict() == on_disk           # read and written back unchanged
    for key in ("map", "map_interp11", "ndcg", "p@1", "p@5", "p@10", "top1", "top5", "top10", "dim",
                "extraction_seconds", "images_per_second", "index_build_seconds", "mean_query_ms",
                "versions", "machine", "timestamp", "embedding", "n_queries_skipped"):
        assert key in on_disk, key
    assert run.summary.n_queries_skipped == 43
    assert set(run.pr) == set(run.per_query["query"])
    assert {"ap", "ap_interp11", "ndcg", "p@10", "first_relevant_rank", "n_relevant", "box", "group"} <= set(run.per_query)


def test_annoy_evaluation_reaches_recall_target(default_run, paris_gallery, paris_gt):
    s = evaluate(paris_gallery, paris_gt, DEFAULT_CONFIG,
                 SearchSettings(method="annoy"), **QUIET)
    assert s.index.figures.tuning.recall_at_10 >= 0.95
    assert s.index.query_recall_at_10 >= 0.95
    assert s.map == pytest.approx(default_run.map, abs=0.02)


def test_default_is_at_least_as_good_as_single_scale_gap(default_run, paris_gallery, paris_gt):
    gap = replace(DEFAULT_CONFIG, pooling="gap", scales=(1.0,), whitening="none", whiten_dim=None)
    s = evaluate(paris_gallery, paris_gt, gap, **QUIET)
    assert default_run.map >= s.map, (default_run.map, s.map)


def test_cli_search_prints_ranked_results(default_run, paris_gallery, capsys):
    img = PARIS / "jpg" / "paris_louvre_000081.jpg"
    box = paris_box("louvre_1")
    assert main(["search", str(img), "--box", *map(str, box), "-k", "5", "--name", "paris6k", "--rerank", "none"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6 and "top 5 of 250" in lines[0]
    scores = [float(line.split()[2]) for line in lines[1:]]
    assert scores == sorted(scores, reverse=True)
    assert any("louvre" in line for line in lines[1:4])
    assert main(["search", str(img), "--box", *map(str, box), "-k", "5", "--name", "paris6k", "--rerank", "none",
                 "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [r["rank"] for r in got["results"]] == [1, 2, 3, 4, 5]
    assert [f"{r['score']:.4f}" for r in got["results"]] == [line.split()[2] for line in lines[1:]]
    assert all(r["file"] and r["file"].endswith(r["id"]) for r in got["results"])
    assert got["search"]["method"] == "exact" and got["n_images"] == 250 and got["times_ms"]["embed_ms"] > 0


def test_cli_reports_a_clear_error_for_a_missing_gallery(session_artifacts, capsys):
    assert main(["search", str(PARIS / "jpg" / "paris_louvre_000081.jpg"), "--name", "nosuch"]) == 2
    assert "no gallery named 'nosuch'" in capsys.readouterr().err


def paris_box(query):
    return (PARIS / "gt" / f"{query}_query.txt").read_text().split()[1:]
