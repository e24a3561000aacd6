"""The Streamlit app without a browser (``streamlit.testing``): the empty state and its one-click
demo gallery, the search page over the real Paris images (ground-truth queries, gallery images,
uploads, Annoy, "search with this", deep links) and every tab of the metrics page.

The cropper is a custom component, which AppTest cannot drive: here it returns its starting box
(the query's ground-truth box, or the whole image); the browser test drags it for real.
"""
import io
import json
import os
import re
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from conftest import PARIS, REPO, SHARED_DATA
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.app.markdown import escape_markdown
from core.cache.descriptors import build_embeddings
from core.cache.galleries import delete_gallery, register_gallery
from core.config import DEFAULT_CONFIG
from core.datasets import load_class_folders, load_ground_truth
from core.evaluation.pipeline import RunOptions, evaluate
from core.evaluation.runs import load_run
from core.progress import Reporter

TIMEOUT = 300
QUIET = dict(options=RunOptions(progress=False, log=lambda m: None))          # evaluate


def app() -> AppTest:
    return AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)


def texts(at: AppTest) -> str:
    return "\n".join(e.value for kind in (at.markdown, at.caption, at.info, at.warning, at.error) for e in kind)


def linked_paris(folder: Path, count: int, step: int = 1) -> Path:
    """A gallery folder of links to the first ``count`` of every ``step``-th shared Paris image."""
    folder.mkdir()
    for name in sorted(os.listdir(PARIS / "jpg"))[::step][:count]:
        (folder / name).symlink_to(PARIS / "jpg" / name)
    return folder


def result_ids(at: AppTest) -> list[str]:
    """Image ids under the result thumbnails, best first (plain text elements, never Markdown)."""
    return [t.value for t in at.text]


def scores(at: AppTest) -> dict[str, str]:
    """The query's scores as the page reports them (AP, AP 11-pt, P@k, missed)."""
    line = next(m.value for m in at.markdown if m.value.startswith("**AP "))
    found = dict(re.findall(r"(AP 11-pt|AP|P@\d+) \**([\d.]+)", line))
    missed = re.search(r"missed \*\*(\d+)\*\* of (\d+)", line)
    return {**found, "Missed": f"{missed[1]}/{missed[2]}"}


@pytest.fixture(scope="module")
def paris(paris_gallery, paris_gt):
    """The 250 Paris images with the default embedding, their ground truth, and two runs."""
    gallery = register_gallery(paris_gallery.name, paris_gallery.root, PARIS / "gt", "paris6k")
    build_embeddings(gallery, DEFAULT_CONFIG, reporter=Reporter.quiet())
    runs = [evaluate(gallery, paris_gt, cfg, **QUIET) for cfg in (DEFAULT_CONFIG, replace(DEFAULT_CONFIG, whitening="gallery"))]
    return gallery, runs


def open_gallery(name: str, source: str | None = None, rerank: str | None = "none") -> AppTest:
    """The search page on gallery ``name``; ``rerank`` None keeps the page's default re-ranking,
    "none" (the default here) shows the plain ranking that the evaluation runs score."""
    at = app().run()
    at.sidebar.selectbox(key="gallery").set_value(name).run()
    if rerank is not None:
        at.sidebar.selectbox(key="rerank").set_value(rerank).run()
    if source:
        at.radio(key="source").set_value(source).run()
    return at


def test_search_page_re_ranks_with_the_default_of_core(paris):
    from core.rerank import DEFAULT_RERANK

    at = open_gallery("paris6k", "Ground-truth query", rerank=None)
    assert at.sidebar.selectbox(key="rerank").value == DEFAULT_RERANK
    at.selectbox(key="gt_query").set_value("louvre_1").run()
    at.button(key="search").click().run()
    assert not at.exception and "re-ranked by k-reciprocal, k1 = " in texts(at)       # words, not "kr28"
    assert float(scores(at)["AP"]) > 0.5


def test_empty_state_builds_the_demo_gallery_in_one_click(artifacts):
    at = app().run()
    assert not at.exception
    assert "There is no gallery yet" in texts(at)
    at.button(key="build_demo").click().run()
    assert not at.exception, at.exception
    assert at.sidebar.selectbox(key="gallery").value == "demo"
    assert at.radio(key="source").value == "Ground-truth query"
    at.button(key="search").click().run()
    metrics = scores(at)
    assert metrics["AP"] == "1.000" and metrics["Missed"] == "0/5"
    assert "embed" in texts(at) and len(result_ids(at)) == 10


def test_empty_metrics_page_offers_the_demo_and_shows_its_first_run(artifacts):
    at = app().run()
    at.switch_page("pages/metrics.py").run()
    assert not at.exception and "No evaluation runs yet" in texts(at) and "data fetch paris6k" in texts(at)
    at.button(key="build_demo").click().run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value                        # the Runs tab now lists the demo's run
    assert list(table["dataset"]) == ["demo"] and table["mAP"].iloc[0] >= 0.9
    run = load_run(table["run_id"].iloc[0])
    assert run.summary.n_queries == 10 and run.summary.rerank_label     # the default re-ranking, like the app


def test_ground_truth_query_shows_labels_and_scores(paris):
    at = open_gallery("paris6k", "Ground-truth query")
    at.selectbox(key="gt_query").set_value("louvre_1").run()
    assert "Query box in original pixels: x1 10" in texts(at)          # 107 69 936 445, to a pixel or two
    at.button(key="search").click().run()
    assert not at.exception
    metrics = scores(at)
    assert set(metrics) == {"AP", "AP 11-pt", "P@10", "Missed"}
    evaluated = load_run(paris[1][0].run_id).per_query.set_index("query").loc["louvre_1"]
    assert float(metrics["AP"]) == pytest.approx(evaluated["ap"], abs=0.02)
    assert float(metrics["P@10"]) == pytest.approx(evaluated["p@10"], abs=0.1)
    assert metrics["Missed"].endswith("/39")
    labelled = [m.value for m in at.markdown if m.value.startswith("**#")]
    assert len(labelled) == 10 and sum("**ok**" in v for v in labelled) >= 8, labelled
    assert "ms · search" in texts(at)


def test_gallery_image_then_search_with_a_result(paris):
    at = open_gallery("paris6k", "Gallery image")
    at.selectbox(key="gallery_image").set_value("paris_eiffel_000266.jpg").run()
    at.sidebar.slider(key="k").set_value(5).run()
    at.button(key="search").click().run()
    ids = result_ids(at)
    assert len(ids) == 5 and ids[0] == "paris_eiffel_000266.jpg"
    at.button(key="again-3").click().run()
    assert at.selectbox(key="gallery_image").value == ids[2]
    assert result_ids(at)[0] == ids[2]


def test_upload_searches_and_refuses_other_files(paris):
    at = open_gallery("paris6k", "Upload")
    at.file_uploader(key="upload").upload("photo.jpg", (PARIS / "jpg" / "paris_defense_000056.jpg").read_bytes(),
                                          "image/jpeg").run()
    at.button(key="search").click().run()
    assert not at.exception and "defense" in result_ids(at)[0]
    at.file_uploader(key="upload").upload("drawing.svg", b"<svg/>", "image/svg+xml").run()
    assert any("not supported" in e.value for e in at.error)
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "blue")]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    at.file_uploader(key="upload").upload("icon.gif", gif.getvalue(), "image/gif").run()
    assert not at.error and any(escape_markdown("icon.gif is only 8×8 px") in w.value for w in at.warning)   # warned
    at.button(key="search").click().run()
    assert not at.exception and len(result_ids(at)) == 10
    at.file_uploader(key="upload").upload("fake.png", b"not a png", "image/png").run()
    assert any("not an image" in e.value for e in at.error)


def test_annoy_search_and_euclidean_scores(paris):
    at = open_gallery("paris6k", "Gallery image")
    at.sidebar.radio(key="method").set_value("annoy").run()
    at.sidebar.radio(key="metric").set_value("euclidean").run()
    assert at.sidebar.number_input(key="effort").value == 0
    at.button(key="search").click().run()
    assert not at.exception
    shown = [m.value.split("·")[1].split() for m in at.markdown if m.value.startswith("**#")]
    assert {s[0] for s in shown} == {"dist"}
    distances = [float(s[1]) for s in shown]
    assert len(distances) == 10 and distances == sorted(distances) and distances[0] == pytest.approx(0, abs=1e-3)
    assert "Euclidean distance (lower is closer)" in texts(at)


def test_deep_link_opens_and_runs_a_ground_truth_query(paris):
    at = app()
    at.query_params.update(gallery="paris6k", embedding=DEFAULT_CONFIG.key(), query="louvre_2")
    at.run()
    assert not at.exception
    assert at.selectbox(key="gt_query").value == "louvre_2"
    assert len(result_ids(at)) == 10 and "AP" in scores(at)


def linked(**params) -> AppTest:
    at = app()
    at.query_params.update(params)
    return at.run()


def test_each_ground_truth_query_searches_its_exact_box(paris):
    """The box goes through the cropper's rounded preview; unmoved, the page searches the ground-truth box
    itself, so the AP shown is the AP of the run (it was 0.525 instead of 0.562 when a pixel off)."""
    run = load_run(paris[1][0].run_id)
    for row in run.per_query.itertuples():
        at = linked(gallery="paris6k", embedding=DEFAULT_CONFIG.key(), query=row.query, rerank="none")   # as evaluated
        x1, y1, x2, y2 = (float(v) for v in row.box.split())
        assert f"x1 {x1:g}, y1 {y1:g}, x2 {x2:g}, y2 {y2:g}" in texts(at), row.query
        assert float(scores(at)["AP"]) == pytest.approx(row.ap, abs=5e-4), row.query


def test_deep_link_restores_the_full_state_and_the_page_keeps_it_in_the_url(paris):
    params = dict(gallery="paris6k", embedding=DEFAULT_CONFIG.key(), query="louvre_1", box="200,100,800,400", k="7",
                  metric="cosine", index="annoy", effort="2000", rerank="alpha_qe")
    at = linked(**params)
    assert not at.exception
    assert at.selectbox(key="gt_query").value == "louvre_1" and at.sidebar.slider(key="k").value == 7
    assert at.sidebar.radio(key="method").value == "annoy" and at.sidebar.number_input(key="effort").value == 2000
    assert at.sidebar.selectbox(key="rerank").value == "alpha_qe"
    assert "x1 200, y1 100, x2 800, y2 400 (600×300 of 1024×768)" in texts(at)
    assert len(result_ids(at)) == 7 and re.search(r"re-ranked by alpha query expansion, qe_n = \d+, alpha = 3 ",
                                                  texts(at))    # qe_n adapted to the gallery
    assert at.query_params == params
    at.sidebar.slider(key="k").set_value(12).run()
    assert at.query_params["k"] == "12" and at.query_params["box"] == "200,100,800,400"


def test_deep_link_to_what_does_not_exist_says_so_and_searches_nothing(paris):
    at = linked(gallery="nowhere", query="louvre_99", k="500")
    assert not at.exception
    warning = " ".join(w.value for w in at.warning)
    assert "gallery 'nowhere', which does not exist" in warning
    assert "ground-truth query 'louvre_99', which does not exist" in warning
    assert "k='500' ignored" in warning
    assert result_ids(at) == []


def test_a_failed_upload_says_which_file_and_marks_the_results_as_old(paris):
    at = open_gallery("paris6k", "Gallery image")
    at.selectbox(key="gallery_image").set_value("paris_eiffel_000266.jpg").run()
    at.button(key="search").click().run()
    assert result_ids(at)[0] == "paris_eiffel_000266.jpg"
    at.radio(key="source").set_value("Upload").run()
    at.file_uploader(key="upload").upload("holiday.png", b"not a png", "image/png").run()
    assert [e.value for e in at.error] == [escape_markdown(
        "not an image in one of the formats JPEG, PNG, WEBP, BMP, GIF, TIFF: holiday.png")]     # Markdown-escaped
    assert any(f"results of the previous query, **{escape_markdown('paris_eiffel_000266.jpg')}**" in w.value
               and "could not be read" in w.value for w in at.warning)
    assert result_ids(at)[0] == "paris_eiffel_000266.jpg"
    at.file_uploader(key="upload").upload("huge.jpg", b"\xff" * (21 * 1024 * 1024), "image/jpeg").run()
    assert [e.value for e in at.error] == [escape_markdown("huge.jpg is 21.0 MB; the limit is 20 MB")]


def test_the_query_image_is_marked_or_hidden(paris):
    at = open_gallery("paris6k", "Gallery image")
    at.selectbox(key="gallery_image").set_value("paris_eiffel_000266.jpg").run()
    at.button(key="search").click().run()
    first = next(m.value for m in at.markdown if m.value.startswith("**#1"))
    assert "query image" in first and result_ids(at)[0] == "paris_eiffel_000266.jpg"
    at.sidebar.toggle(key="hide_self").set_value(True).run()
    at.button(key="search").click().run()
    ids = result_ids(at)
    assert len(ids) == 10 and "paris_eiffel_000266.jpg" not in ids
    assert any(f"own image ({escape_markdown('paris_eiffel_000266.jpg')}, #1) is hidden" in c.value for c in at.caption)
    assert next(m.value for m in at.markdown if m.value.startswith("**#")).startswith("**#2**")


def test_results_are_exported_and_viewed_beside_the_query(paris):
    at = open_gallery("paris6k", "Ground-truth query")
    at.selectbox(key="gt_query").set_value("louvre_1").run()
    at.button(key="search").click().run()
    assert {b.proto.label for b in at.get("download_button")} >= {"Results as CSV", "Results as JSON"}
    images = len(at.get("image"))
    at.button(key="view-2").click().run()
    assert not at.exception and len(at.get("image")) == images + 2          # the query region and the result


def test_browsing_thumbnails_picks_the_query(paris):
    at = open_gallery("paris6k", "Gallery image")
    at.button(key="browse").click().run()
    assert len([b for b in at.button if b.key.startswith("pick-")]) == 24           # one page of thumbnails
    at.text_input(key="browse_text").input("louvre_0002").run()
    picks = [b for b in at.button if b.key.startswith("pick-")]
    assert picks and all("louvre_0002" in b.key for b in picks)
    picks[-1].click().run()
    assert not at.exception and at.selectbox(key="gallery_image").value == picks[-1].key[len("pick-"):]
    assert not [b for b in at.button if b.key.startswith("pick-")]                   # the picker closed


def test_first_blcf_rerank_shows_its_preparation_and_times_it_apart(artifacts, tmp_path):
    folder = linked_paris(tmp_path / "twenty", 20, step=12)
    build_embeddings(register_gallery("twenty", folder), DEFAULT_CONFIG, reporter=Reporter.quiet())
    at = open_gallery("twenty", "Gallery image")
    at.sidebar.selectbox(key="rerank").set_value("blcf").run()
    at.button(key="search").click().run()
    assert not at.exception
    labels = [s.label for s in at.status]
    assert any(re.match(r"Prepared BLCF .* for twenty in [\d.]+ s \(once per gallery and embedding\)", lab)
               for lab in labels), labels
    line = next(m.value for m in at.markdown if m.value.startswith("**"))
    assert re.search(r"re-ranked by BLCF, top_n = 50, fusion = [\d.]+ in \d+ ms \(the gallery was prepared first, once: [\d.]+ s, not counted\)",
                     line), line
    at.button(key="search").click().run()
    line = next(m.value for m in at.markdown if m.value.startswith("**"))
    assert "re-ranked by BLCF" in line and "prepared first" not in line and not at.status


def test_a_gallery_deleted_elsewhere_is_reported_not_silently_replaced(artifacts, tmp_path):
    for name in ("first", "second"):
        folder = linked_paris(tmp_path / name, 3)
        build_embeddings(register_gallery(name, folder), DEFAULT_CONFIG, reporter=Reporter.quiet())
    at = open_gallery("second")
    delete_gallery("second")                               # e.g. from the Galleries page in another tab
    at.sidebar.slider(key="k").set_value(3).run()
    assert not at.exception
    assert any("Gallery 'second' is not registered any more" in w.value and "showing 'first'" in w.value
               for w in at.warning)
    assert at.sidebar.selectbox(key="gallery").value == "first"


def test_a_gallery_without_index_offers_to_build_it(artifacts, tmp_path):
    folder = linked_paris(tmp_path / "five", 5)
    register_gallery("five", folder)
    at = app().run()
    assert "has no index yet" in texts(at)
    at.button(key="build_index").click().run()
    assert not at.exception
    at.radio(key="source").set_value("Gallery image").run()
    at.button(key="search").click().run()
    assert len(result_ids(at)) == 5


def metrics_tab(at: AppTest, tab: str) -> AppTest:
    at.session_state["tab"] = tab
    return at.run()


def test_metrics_page_tabs(paris):
    at = app().run()
    at.switch_page("pages/metrics.py").run()
    assert not at.exception
    table = at.dataframe[0].value
    ids = {r.run_id for r in paris[1]}
    assert ids <= set(table["run_id"]) and {"mAP", "mAP_interp11", "NDCG", "P@10", "extraction_s", "query_ms",
                                              "backbone", "pooling", "whitening", "dim"} <= set(table.columns)
    assert list(table.columns[:2]) == ["name", "mAP"]               # visible beside the name at 800 px
    assert at.get("download_button")
    charts = [json.loads(c.proto.spec) for c in metrics_tab(at, "Trade-off").get("vega_lite_chart")]
    assert len(charts) == 3 * table["dataset"].nunique()          # mAP against query time, extraction; stages
    paris_maps = table.loc[table["dataset"] == "paris6k", "mAP"]
    first = 3 * sorted(table["dataset"].unique()).index("paris6k")     # three charts a dataset, by name
    low, high = charts[first]["encoding"]["y"]["scale"]["domain"]      # fitted to the runs' mAPs, not 0-1
    assert 0 < low < paris_maps.min() and paris_maps.max() < high <= 1
    assert charts[0]["encoding"]["x"]["field"] == "fresh_query_ms"
    colours = [dict(zip(c["encoding"]["color"]["scale"]["domain"], c["encoding"]["color"]["scale"]["range"]))
               for c in charts[:2]]
    assert colours[0] == colours[1] and len(colours[0]) == len(table)   # one colour per run, the same in both
    at = metrics_tab(at, "Per-query AP")
    at.multiselect(key="pq_runs").set_value(list(ids)).run()
    assert len(at.get("vega_lite_chart")) == 2 and not at.exception
    at = metrics_tab(at, "PR curves")
    at.multiselect(key="pr_runs").set_value(list(ids)).run()
    aps = pd.concat([load_run(r).per_query.set_index("query")["ap"] for r in ids], axis=1).mean(axis=1)
    assert len(at.get("vega_lite_chart")) == 2 and at.selectbox(key="pr_query").value == aps.idxmin()   # the worst
    at = metrics_tab(at, "Failures")
    shown_run = load_run(at.selectbox(key="fail_run").value)
    assert at.selectbox(key="fail_query").value == shown_run.per_query.sort_values("ap")["query"].iloc[0]  # the worst
    at.selectbox(key="fail_run").set_value(paris[1][0].run_id).run()
    links = [link for link in at.get("page_link") if link.proto.label == "Open in search"]
    assert len(links) == 1 and "gallery=paris6k&embedding=" in links[0].proto.query_string
    at = metrics_tab(at, "Performance")
    assert any("No benchmark results yet" in i.value for i in at.info)


def expected_failure(run_id: str, query: str) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(relevant images of ``query``, negatives ranked above its last relevant image), each as
    (id, rank), computed here from ranking.npy and the ground-truth files, independently of
    core.app.failures."""
    run = load_run(run_id)
    row = int(run.per_query.index[run.per_query["query"] == query][0])
    q = next(q for q in load_ground_truth("paris6k", PARIS / "gt").queries if q.name == query)
    ids = run.ids
    ranked = [(ids[i], r + 1, ids[i].rsplit(".", 1)[0]) for r, i in enumerate(run.ranking[row])]
    relevant = [(i, r) for i, r, stem in ranked if stem in q.positives and stem not in q.junk]
    last = relevant[-1][1]
    negatives = [(i, r) for i, r, stem in ranked[:last] if stem not in q.positives and stem not in q.junk]
    return relevant, negatives


def test_failure_view_opens_at_k_relevant_and_lists_the_negatives_above_the_last_one(paris):
    run_id = paris[1][0].run_id
    at = app().run()
    at.switch_page("pages/metrics.py").run()
    at = metrics_tab(at, "Failures")
    at.selectbox(key="fail_run").set_value(run_id).run()
    at.selectbox(key="fail_query").set_value("louvre_3").run()
    assert not at.exception
    relevant, negatives = expected_failure(run_id, "louvre_3")
    assert at.number_input(key="fail_k").value == len(relevant) == 39      # louvre_3's relevant images in Paris
    missed = [rank for _, rank in relevant if rank > 39]
    assert missed and negatives, "louvre_3 misses relevant images on this gallery"
    shown = [c.value for c in at.caption if re.match(r"#\d+ · \d+ negatives above", c.value)]
    assert [int(re.match(r"#(\d+)", c)[1]) for c in shown] == missed[:40]
    head = next(m.value for m in at.markdown if m.value.startswith(r"**louvre\_3**"))
    assert f"{len(missed)} missed" in head and "in the top 39" in head
    why = next(m.value for m in at.markdown if m.value.startswith("**Why:**"))
    assert f"{len(negatives)} negative" in why and "outrank" in why
    searches = [link.proto.query_string for link in at.get("page_link") if link.proto.label == "Search"]
    intruders = [i for i, _ in negatives][:40]
    assert [re.search(r"image=([^&]+)", q)[1] for q in searches][:len(intruders)] == intruders
    assert {b.proto.label for b in at.get("download_button")} >= {"Failure case as CSV", "Failure case as JSON"}
    at.number_input(key="fail_k").set_value(10).run()
    shown = [c.value for c in at.caption if re.match(r"#\d+ · \d+ negatives above", c.value)]
    assert [int(re.match(r"#(\d+)", c)[1]) for c in shown] == [rank for _, rank in relevant if rank > 10][:40]
    at.selectbox(key="fail_other").set_value(paris[1][1].run_id).run()
    assert any(m.value.startswith("**Images that moved**") for m in at.markdown)
    assert any(re.match(r"#\d+ → #\d+ \((up|down) \d+\)", c.value) for c in at.caption)


def test_failures_of_a_class_folder_run_show_their_thumbnails(artifacts, tmp_path):
    corel = SHARED_DATA / "corel1k"
    folder = tmp_path / "corel"
    for cls in ("Beach", "Buses", "Flowers"):
        (folder / cls).mkdir(parents=True)
        for name in sorted(os.listdir(corel / cls))[:6]:
            (folder / cls / name).symlink_to(corel / cls / name)
    gallery = register_gallery("corel18", folder)
    summary = evaluate(gallery, load_class_folders(folder), replace(DEFAULT_CONFIG, max_size=128), **QUIET)
    at = app().run()
    at.switch_page("pages/metrics.py").run()
    at = metrics_tab(at, "Failures")
    assert not at.exception
    run = load_run(summary.run_id)
    worst = run.per_query.sort_values("ap", kind="stable")["query"].iloc[0]
    assert at.selectbox(key="fail_query").value == worst and "/" in worst          # ids with class subfolders
    images = at.get("image")
    assert len(images) >= 1 + 5                    # the query and its 5 relevant images, missed or not
    assert not any("cannot be found" in w.value for w in at.warning)
    at = metrics_tab(at, "Classes")
    heat = json.loads(at.get("vega_lite_chart")[0].proto.spec)["layer"][0]
    assert heat["encoding"]["color"]["condition"]["test"] == "datum.count > 0"     # empty cells are not tinted
    assert heat["encoding"]["color"]["value"] == "white"
    at.session_state["confusion_cell"] = ("Buses", "Buses")             # as a click on the cell keeps it
    at.run()
    behind = [t.value for t in at.text]
    predicted = run.per_query.query("group == 'Buses' and predicted == 'Buses'")
    assert len(behind) == len(predicted) > 0 and all(i.startswith("Buses/") for i in behind)


def test_performance_tab_renders_bench_files(paris, session_artifacts):
    bench = session_artifacts / "bench"
    bench.mkdir(exist_ok=True)
    (bench / "example.json").write_text(json.dumps({"median_ms": 420.0, "searches": [
        {"query": "a", "ms": 400.0}, {"query": "b", "ms": 440.0}]}))
    try:
        at = app().run()
        at.switch_page("pages/metrics.py").run()
        at = metrics_tab(at, "Performance")
        assert not at.exception
        assert at.dataframe[1].value["ms"].tolist() == [400.0, 440.0]
        assert len(at.get("vega_lite_chart")) == 1
    finally:
        (bench / "example.json").unlink()


def test_galleries_page_shows_a_gallery_being_embedded_its_thumbnails_and_cache_size(artifacts, tmp_path):
    from core.app.activity import cache_bytes
    from core.cache.descriptors import LOCK, cache_dir
    from core.files import exclusive_lock

    folder = linked_paris(tmp_path / "three", 3)
    register_gallery("three", folder)
    lock = cache_dir("three", DEFAULT_CONFIG) / LOCK
    lock.parent.mkdir(parents=True)
    with exclusive_lock(lock):                              # as `python -m core index` holds it while embedding
        at = app().run()
        at.switch_page("pages/galleries.py").run()
        assert not at.exception
        assert any(i.value.startswith("Embedding in progress") for i in at.info)
        assert not any("No descriptors yet" in c.value for c in at.caption)
        assert len(at.get("image")) == 3                    # the gallery's first images
    first = sorted(folder.iterdir())[0]
    Image.open(first).reduce(2).save(folder / "zz_copy.jpg", quality=80)       # a resized, recompressed copy
    build_embeddings(register_gallery("three", folder), DEFAULT_CONFIG, reporter=Reporter.quiet())
    at = app().run()
    at.switch_page("pages/galleries.py").run()
    assert not at.info
    at.button(key="dup_three").click().run()                    # near-duplicates at the default cosine 0.95
    assert any(c.value.startswith("1 group at cosine ≥ 0.95") for c in at.caption)
    assert [i.proto.imgs[0].caption for i in at.get("image")][-2:] == [first.name, "zz_copy.jpg"]
    table = at.dataframe[0].value
    size = cache_bytes("three", DEFAULT_CONFIG.key()) / 1e6
    assert table["on disk (MB)"].iloc[0] == pytest.approx(size) and size > 0
    assert table["embedding"].iloc[0] == "EfficientNet-Lite0 · R-MAC · 3 scales · 512 px"


def test_the_search_is_kept_across_pages(paris):
    at = open_gallery("paris6k", "Ground-truth query")
    at.selectbox(key="gt_query").set_value("louvre_2").run()
    at.sidebar.slider(key="k").set_value(6).run()
    at.sidebar.radio(key="metric").set_value("euclidean").run()
    at.button(key="search").click().run()
    before = result_ids(at)
    assert len(before) == 6
    at.switch_page("pages/metrics.py").run()
    at.switch_page("pages/galleries.py").run()
    at.switch_page("pages/search.py").run()
    assert not at.exception
    assert at.radio(key="source").value == "Ground-truth query" and at.selectbox(key="gt_query").value == "louvre_2"
    assert at.sidebar.slider(key="k").value == 6 and at.sidebar.radio(key="metric").value == "euclidean"
    assert at.sidebar.selectbox(key="rerank").value == "none"
    assert result_ids(at) == before and "AP" in scores(at)


def test_typed_box_redraws_the_cropper_and_long_lists_paginate(paris):
    at = open_gallery("paris6k", "Ground-truth query")
    at.selectbox(key="gt_query").set_value("louvre_1").run()
    at.number_input(key="box_x1").set_value(300).run()
    assert not at.exception and "x1 300, y1 69, x2 936, y2 445" in texts(at)
    assert at.number_input(key="box_x1").value == 300
    at.number_input(key="box_x2").set_value(200).run()                    # corners ordered: 200 … 300
    assert "x1 200, y1 69, x2 300, y2 445" in texts(at)
    at.sidebar.slider(key="k").set_value(60).run()
    at.button(key="search").click().run()
    assert len(result_ids(at)) == 24 and "Results 1–24 of 60" in texts(at)
    at.session_state["results_page"] = 3
    at.run()
    assert len(result_ids(at)) == 12 and "Results 49–60 of 60" in texts(at)


def test_a_folder_is_indexed_from_the_galleries_page(artifacts, tmp_path):
    at = app().run()
    at.switch_page("pages/galleries.py").run()
    assert "No gallery yet" in texts(at)
    at.text_input(key="index_folder").input(str(tmp_path / "nowhere")).run()
    at.text_input(key="index_name").input("mine").run()
    at.button(key="index_go").click().run()
    assert not at.exception and len(at.error) == 1 and "nowhere" in at.error[0].value      # one line, nothing kept
    at.text_input(key="index_folder").input(str(linked_paris(tmp_path / "four", 4))).run()
    at.button(key="index_go").click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert table["images"].tolist() == [4] and table["complete"].tolist() == [True]
    assert any(s.value == "mine" for s in at.subheader)
