"""The Streamlit app without a browser (``streamlit.testing``): the empty state and its one-click
demo gallery, the search page over the real Paris images (ground-truth queries, gallery images,
uploads, Annoy, "search with this", deep links) and every tab of the metrics page.

The cropper is a custom component, which AppTest cannot drive: here it returns its starting box
(the query's ground-truth box, or the whole image); the browser test drags it for real.
"""
import json
import os
from dataclasses import replace

import pytest
from conftest import PARIS, REPO
from streamlit.testing.v1 import AppTest

from core.cache.descriptors import build_embeddings
from core.cache.galleries import register_gallery
from core.config import DEFAULT_CONFIG
from core.evaluation.pipeline import evaluate
from core.evaluation.runs import load_run

TIMEOUT = 300
QUIET = dict(progress=False, log=lambda m: None)


def app() -> AppTest:
    return AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)


def texts(at: AppTest) -> str:
    return "\n".join(e.value for kind in (at.markdown, at.caption, at.info, at.warning, at.error) for e in kind)


def result_ids(at: AppTest) -> list[str]:
    """Image ids under the result thumbnails, best first (plain text elements, never Markdown)."""
    return [t.value for t in at.text]


@pytest.fixture(scope="module")
def paris(paris_gallery, paris_gt):
    """The 250 Paris images with the default embedding, their ground truth, and two runs."""
    gallery = register_gallery(paris_gallery.name, paris_gallery.root, PARIS / "gt", "paris6k")
    build_embeddings(gallery, DEFAULT_CONFIG, **QUIET)
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
    assert not at.exception and "re-ranked by kr" in texts(at)
    assert float({m.label: m.value for m in at.metric}["AP"]) > 0.5


def test_empty_state_builds_the_demo_gallery_in_one_click(artifacts):
    at = app().run()
    assert not at.exception
    assert "There is no gallery yet" in texts(at)
    at.button(key="build_demo").click().run()
    assert not at.exception, at.exception
    assert at.sidebar.selectbox(key="gallery").value == "demo"
    assert at.radio(key="source").value == "Ground-truth query"
    at.button(key="search").click().run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["AP"] == "1.000" and metrics["Missed"] == "0/5"
    assert "embed" in texts(at) and len(result_ids(at)) == 10


def test_ground_truth_query_shows_labels_and_scores(paris):
    at = open_gallery("paris6k", "Ground-truth query")
    at.selectbox(key="gt_query").set_value("louvre_1").run()
    assert "Query box in original pixels: x1 10" in texts(at)          # 107 69 936 445, to a pixel or two
    at.button(key="search").click().run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
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
    at.file_uploader(key="upload").upload("anim.gif", b"GIF89a", "image/gif").run()
    assert any("not supported" in e.value for e in at.error)
    at.file_uploader(key="upload").upload("fake.png", b"not a png", "image/png").run()
    assert any("not an image" in e.value for e in at.error)


def test_annoy_search_and_euclidean_scores(paris):
    at = open_gallery("paris6k", "Gallery image")
    at.sidebar.radio(key="method").set_value("annoy").run()
    at.sidebar.radio(key="metric").set_value("euclidean").run()
    assert at.sidebar.number_input(key="search_k").value == 0
    at.button(key="search").click().run()
    assert not at.exception
    scores = [float(m.value.split("·")[1].split()[0]) for m in at.markdown if m.value.startswith("**#")]
    assert len(scores) == 10 and scores == sorted(scores) and scores[0] == pytest.approx(0, abs=1e-3)


def test_deep_link_opens_and_runs_a_ground_truth_query(paris):
    at = app()
    at.query_params.update(gallery="paris6k", embedding=DEFAULT_CONFIG.key(), query="louvre_2")
    at.run()
    assert not at.exception
    assert at.selectbox(key="gt_query").value == "louvre_2"
    assert len(result_ids(at)) == 10 and {m.label for m in at.metric} >= {"AP"}


def test_a_gallery_without_index_offers_to_build_it(artifacts, tmp_path):
    folder = tmp_path / "five"
    folder.mkdir()
    for name in sorted(os.listdir(PARIS / "jpg"))[:5]:
        (folder / name).symlink_to(PARIS / "jpg" / name)
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
    assert at.get("download_button")
    assert len(metrics_tab(at, "Trade-off").get("vega_lite_chart")) == 2
    at = metrics_tab(at, "Per-query AP")
    at.multiselect(key="pq_runs").set_value(list(ids)).run()
    assert len(at.get("vega_lite_chart")) == 2 and not at.exception
    at = metrics_tab(at, "PR curves")
    at.multiselect(key="pr_runs").set_value(list(ids)).run()
    assert len(at.get("vega_lite_chart")) == 2 and at.selectbox(key="pr_query").value == "defense_4"
    at = metrics_tab(at, "Failures")
    at.selectbox(key="fail_run").set_value(paris[1][0].run_id).run()
    links = at.get("page_link")
    assert len(links) == 5 and all("gallery=paris6k&embedding=" in link.proto.query_string for link in links)
    assert len(at.get("image")) == 5 * (1 + 8)                       # query crop + 8 framed results each
    at = metrics_tab(at, "Performance")
    assert any("No benchmark results yet" in i.value for i in at.info)


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
