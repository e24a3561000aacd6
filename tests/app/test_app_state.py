"""The app's view logic without Streamlit: URL state, exports, run names and chart groups,
gallery browsing, cropper boxes and upload messages, against hand-made inputs."""
import io
import json

import pandas as pd
import pytest
from conftest import PARIS
from PIL import Image

from core.app.browse import filter_ids, groups, image_group, page_of
from core.app.comparison import (
    PALETTE,
    default_pair,
    fitted_domain,
    method_colours,
    run_name,
    run_names,
    variant_labels,
    varying_options,
    worst_query,
)
from core.app.export import failure_frame, results_frame, score_kind, to_json
from core.app.failures import analyse_ranking
from core.app.preview import box_from_cropper, check_upload, cropper_coords
from core.app.urlstate import ViewState, decode, missing
from core.datasets import Query
from core.evaluation.runs import Run
from core.images import MAX_PIXELS, Box, ImageError, load_image
from core.index import Result

# ------------------------------------------------------------------ URL state

def test_view_state_round_trips_through_query_parameters():
    view = ViewState("paris6k", "d5fe14fca498", "louvre_1", None, Box(107, 69, 936.5, 445), 20, "euclidean",
                     "annoy", 5000, "alpha_qe")
    params = view.to_params()
    assert params == {"gallery": "paris6k", "embedding": "d5fe14fca498", "query": "louvre_1",
                      "box": "107,69,936.5,445", "k": "20", "metric": "euclidean", "index": "annoy",
                      "effort": "5000", "rerank": "alpha_qe"}
    assert decode(params) == (view, [])


def test_decode_drops_what_it_cannot_read_and_says_so():
    state, problems = decode({"gallery": "g", "k": "1000", "metric": "manhattan", "box": "5,5,1,9",
                              "rerank": "magic", "colour": "red"})
    assert state == ViewState(gallery="g")
    assert len(problems) == 5
    assert any("k='1000'" in p and "between 1 and 100" in p for p in problems)
    assert any("metric" in p and "cosine, euclidean" in p for p in problems)
    assert any("box" in p and "x1 < x2" in p for p in problems)
    assert any("'colour'" in p for p in problems)


def test_a_link_names_a_query_or_an_image_not_both():
    state, problems = decode({"query": "louvre_1", "image": "a.jpg"})
    assert state.query == "louvre_1" and state.image is None and "image was ignored" in problems[0]


def test_missing_names_what_was_asked_and_what_is_shown():
    text = missing("gallery", "oxford", ["paris6k", "demo"], "'paris6k'")
    assert "gallery 'oxford', which does not exist (2 available)" in text and "showing 'paris6k' instead" in text


# ------------------------------------------------------------------ exports

QUERY = Query(name="q_1", image="a", box=None, positives=frozenset({"a", "c", "f"}), junk=frozenset({"d"}))
IDS = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg", "g.jpg"]


def test_results_export_has_rank_image_score_and_label():
    items = [Result(1, 0, "a.jpg", 0.93), Result(2, 4, "e.jpg", 0.81)]
    frame = results_frame(items, ["ok", "bad"], score_kind("cosine"))
    assert frame.to_dict("records") == [
        {"rank": 1, "image": "a.jpg", "score": 0.93, "score_kind": "cosine similarity", "label": "ok"},
        {"rank": 2, "image": "e.jpg", "score": 0.81, "score_kind": "cosine similarity", "label": "bad"}]
    data = json.loads(to_json(frame, {"gallery": "g", "box": [1.0, 2.0, 3.0, 4.0]}))
    assert data["about"]["box"] == [1.0, 2.0, 3.0, 4.0] and data["rows"][1]["image"] == "e.jpg"
    assert results_frame(items, [None, None], "x")["label"].tolist() == ["", ""]


def test_score_kinds_say_distance_for_euclidean_and_name_the_reranker():
    assert score_kind("euclidean") == "Euclidean distance"
    assert score_kind("cosine", "aqe5a3") == "cosine similarity (order: re-ranking aqe5a3)"


def test_failure_export_lists_found_missed_and_negatives_by_rank():
    frame = failure_frame(analyse_ranking(QUERY, [1, 0, 3, 4, 2, 6, 5], IDS, k=3))
    assert frame[["role", "image", "rank"]].values.tolist() == [
        ["negative above a relevant image", "b.jpg", 1], ["found", "a.jpg", 2],
        ["negative above a relevant image", "e.jpg", 4], ["missed", "c.jpg", 5],
        ["negative above a relevant image", "g.jpg", 6], ["missed", "f.jpg", 7]]


# ------------------------------------------------------------------ run names and chart groups

RUNS = pd.DataFrame([
    {"run_id": "r3", "timestamp": "2026-01-03", "dataset": "paris6k", "gallery": "paris6k", "label": "lite0/rmac/ms3/512",
     "backbone": "lite0", "pooling": "rmac", "scales": 3, "search": "exact/cosine", "rerank": "aqe5a3"},
    {"run_id": "r2", "timestamp": "2026-01-02", "dataset": "oxford5k", "gallery": "ox", "label": "lite0/gem3/ss/512",
     "backbone": "lite0", "pooling": "gem3", "scales": 1, "search": "annoy/cosine", "rerank": "none"},
    {"run_id": "r1", "timestamp": "2026-01-01", "dataset": "paris6k", "gallery": "paris6k", "label": "lite0/rmac/ms3/512",
     "backbone": "lite0", "pooling": "rmac", "scales": 3, "search": "exact/cosine", "rerank": "aqe5a3"},
])


def test_runs_are_named_by_embedding_and_options_not_timestamps():
    assert run_name(RUNS.iloc[1]) == "lite0/gem3/ss/512 · annoy/cosine · gallery ox"
    assert run_name(RUNS.iloc[0]) == "lite0/rmac/ms3/512 · aqe5a3"
    names = run_names(RUNS)
    assert names == {"r1": "lite0/rmac/ms3/512 · aqe5a3 (1)", "r3": "lite0/rmac/ms3/512 · aqe5a3 (2)",
                     "r2": "lite0/gem3/ss/512 · annoy/cosine · gallery ox"}


def test_points_are_coloured_by_the_options_that_differ():
    assert varying_options(RUNS) == ["pooling", "scales", "search", "rerank"]
    assert variant_labels(RUNS).iloc[1] == "pooling gem3 · scales 1 · search annoy/cosine · rerank none"
    assert set(variant_labels(RUNS[RUNS["dataset"] == "paris6k"])) == {"same options"}


def test_the_default_comparison_is_two_runs_of_one_dataset():
    assert default_pair(RUNS) == ["r3", "r1"]
    assert default_pair(RUNS.iloc[:2]) == ["r3"]
    assert default_pair(RUNS.iloc[0:0]) == []


def test_worst_query_averages_ap_over_runs(tmp_path):
    def fake(aps):
        return Run("x", tmp_path, {}, pd.DataFrame({"query": ["a", "b", "c"], "ap": aps}))
    assert worst_query([fake([0.9, 0.2, 0.5]), fake([0.1, 0.6, 0.5])]) == "b"      # means .5 .4 .5
    assert worst_query([]) is None


# ------------------------------------------------------------------ browsing

def test_images_group_by_class_folder_or_name_before_the_number():
    assert image_group("coat/t10k-00019.png") == "coat"
    assert image_group("paris_defense_000056.jpg") == "paris_defense"
    assert image_group("IMG-0001.JPG") == "IMG"
    assert image_group("2019.jpg") == "2019"
    ids = ["paris_louvre_000001.jpg", "paris_louvre_000002.jpg", "paris_eiffel_000003.jpg", "x/y.png"]
    assert groups(ids) == {"paris_eiffel": [ids[2]], "paris_louvre": ids[:2], "x": [ids[3]]}
    assert list(groups(ids)) == ["paris_eiffel", "paris_louvre", "x"]
    assert filter_ids(ids, "LOUVRE") == ids[:2]
    assert filter_ids(groups(ids)["paris_eiffel"], "0000") == ["paris_eiffel_000003.jpg"]


def test_pages_are_clipped_to_the_last_one():
    items = [str(i) for i in range(10)]
    assert page_of(items, 2, 4) == (["4", "5", "6", "7"], 3)
    assert page_of(items, 9, 4) == (["8", "9"], 3)
    assert page_of([], 1, 4) == ([], 1)


# ------------------------------------------------------------------ cropper boxes and uploads

def test_an_unmoved_cropper_gives_back_the_exact_start_box():
    start, scale = Box(107, 69, 936, 445), 1024 / 380
    x1, x2, y1, y2 = cropper_coords(start, scale)
    rect = {"left": x1, "top": y1, "width": x2 - x1, "height": y2 - y1}
    assert box_from_cropper(rect, scale, (1024, 768), start) == start
    nudged = {**rect, "left": x1 + 1, "width": x2 - x1 - 1}                    # the cropper's integer rounding
    assert box_from_cropper(nudged, scale, (1024, 768), start) == start
    moved = {**rect, "left": x1 + 5}
    assert box_from_cropper(moved, scale, (1024, 768), start).x1 == pytest.approx((x1 + 5) * scale, abs=1)
    assert box_from_cropper(rect, scale, (1024, 768)) != start                 # without start: through the preview


def test_upload_errors_name_the_file():
    with pytest.raises(ImageError, match=r"^not an image in one of the formats .*: holiday\.png$"):
        check_upload("holiday.png", b"not a png", 20)
    with pytest.raises(ImageError, match="big.jpg is 21.0 MB; the limit is 20 MB"):
        check_upload("big.jpg", b"\0" * (21 * 1024 * 1024), 20)
    real = (PARIS / "jpg" / "paris_louvre_000081.jpg").read_bytes()
    with pytest.raises(ImageError, match=r"^corrupt or truncated image cut\.jpg: image file is truncated"):
        check_upload("cut.jpg", real[:len(real) // 2], 20)
    with pytest.raises(ImageError, match=r"^corrupt or truncated image head\.jpg: Truncated File Read$"):
        check_upload("head.jpg", real[:100], 20)                   # Pillow's reason, not a bare "OSError"


def test_decompression_bomb_message_is_plain(tmp_path):
    side = int(MAX_PIXELS ** 0.5) + 100
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG")
    with pytest.raises(ImageError) as err:                       # over the decoder's limit: refused as a bomb
        check_upload("scan.png", buffer.getvalue(), 20)
    text = str(err.value)
    assert text.startswith(f"scan.png: {side * side / 1e6:.0f} megapixels exceeds the limit of 100 megapixels"), text
    assert "decompression bomb" in text and "Image size" not in text
    (tmp_path / "scan.png").write_bytes(buffer.getvalue())
    with pytest.raises(ImageError, match="scan.png: .* megapixels exceeds the limit"):
        load_image(tmp_path / "scan.png")


# ------------------------------------------------------------------ thumbnails

def test_thumbnails_are_decoded_once_and_framed_without_decoding_the_photo(tmp_path, monkeypatch):
    import core.app.thumbnails as thumbnails
    from core.app.preview import FRAME
    paths = []
    for i, colour in enumerate(("red", "blue", "green")):
        paths.append(tmp_path / f"{i}.jpg")
        Image.new("RGB", (300, 150), colour).save(paths[-1])
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    decoded = []
    real = thumbnails.thumbnail
    monkeypatch.setattr(thumbnails, "thumbnail", lambda p, *a, **k: decoded.append(str(p)) or real(p, *a, **k))
    store = thumbnails.ThumbnailStore(64)
    names = [p.name for p in paths]
    store.warm(tmp_path, [*names, "broken.jpg"], "g").join(timeout=30)
    assert len(store) == 3 and store.warm(tmp_path, names, "g") is None     # once per gallery
    first = store.get(paths[0])
    assert decoded.count(str(paths[0])) == 1                                # served from memory
    with Image.open(io.BytesIO(first)) as img:
        assert img.size == (64, 64)
    with Image.open(io.BytesIO(thumbnails.frame_jpeg(first, "#00ff00"))) as img:
        assert img.size == (64 + 2 * FRAME, 64 + 2 * FRAME)
        r, g, b = img.getpixel((1, 1))
        assert g > 200 and r < 60 and b < 60
    assert thumbnails.frame_jpeg(first, None) is first
    assert len(decoded) == 4                                                # 3 photos and the broken file


def test_a_gallery_larger_than_the_thumbnail_store_is_not_warmed(tmp_path):
    import core.app.thumbnails as thumbnails
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        Image.new("RGB", (40, 30), "red").save(tmp_path / name)
    store = thumbnails.ThumbnailStore(64, max_entries=2)
    assert store.warm(tmp_path, ["a.jpg", "b.jpg", "c.jpg"], "big") is None
    store.warm(tmp_path, ["a.jpg", "b.jpg"], "small").join(timeout=30)
    assert len(store) == 2


def test_each_method_keeps_one_colour_whatever_the_other_runs():
    few = method_colours(["b", "a"])
    more = method_colours(["c", "a", "b", "a"])
    assert few == {"a": PALETTE[0], "b": PALETTE[1]} and more["a"] == few["a"] and more["b"] == few["b"]
    assert len(set(method_colours([str(i) for i in range(len(PALETTE))]).values())) == len(PALETTE)


def test_a_score_axis_is_fitted_to_the_data():
    lo, hi = fitted_domain([0.946, 0.991])
    assert 0.93 < lo < 0.946 and 0.991 < hi <= 1.0                # 0.946 and 0.991 far apart on the axis
    lo, hi = fitted_domain([0.5, 0.5])
    assert hi - lo == pytest.approx(0.02, abs=1e-6) and lo < 0.5 < hi
    assert fitted_domain([0.0, 0.995]) == (0.0, 1.0)
