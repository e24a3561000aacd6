"""The app's non-UI logic: result labels and query scores, runs read into tables and
comparisons, benchmark reports, thumbnails, uploads and cropper boxes."""
import io
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from conftest import PARIS
from PIL import Image

from core.app.catalog import (
    RUN_COLUMNS,
    ap_comparison,
    bench_reports,
    chart_columns,
    confusion_cell_images,
    fresh_query_time,
    gallery_ground_truth,
    hit_points,
    image_id_of,
    interpolated_precision,
    pr_curves,
    queries_in_gallery,
    read_bench,
    run_row,
    runs_table,
)
from core.app.labels import complete_ranking, label_results, query_report
from core.app.preview import box_from_cropper, check_upload, cropper_coords, preview, read_upload, thumbnail
from core.cache.galleries import load_gallery, register_gallery
from core.datasets import Query
from core.evaluation.metrics import interpolated_ap11, precision_recall, score_query
from core.evaluation.runs import load_run, write_run
from core.evaluation.summary import RunSummary
from core.images import Box, ImageError

QUERY = Query(name="q_1", image="a", box=None, positives=frozenset({"a", "b", "c"}), junk=frozenset({"j"}),
              labels={"good": frozenset({"a"}), "ok": frozenset({"b", "c"}), "junk": frozenset({"j"})})
IDS = ["a.jpg", "sub/b.png", "c.jpg", "j.jpg", "x.jpg", "y.jpg"]


def test_labels_follow_good_ok_junk_bad_by_file_stem():
    assert label_results(QUERY, IDS) == ["good", "ok", "ok", "junk", "bad", "bad"]


def test_report_scores_the_shown_results_then_the_full_ranking():
    ranking = [4, 0, 3, 1, 5, 2]                  # x a j b y c
    shown = [0, 4, 5]                             # a x y: e.g. an approximate top 3
    full = complete_ranking(shown, ranking)
    assert full.tolist() == [0, 4, 5, 3, 1, 2]
    rep = query_report(QUERY, shown, ranking, IDS, k=3)
    s = score_query(full, {0, 1, 2}, {3}, ks=(3,))
    assert rep.ap == pytest.approx(s.ap) and rep.ap_interp11 == pytest.approx(s.ap_interp11)
    assert rep.precision_at_k == pytest.approx(1 / 3)
    assert (rep.n_relevant, rep.found, rep.missed, rep.first_relevant) == (3, 1, 2, 1)


def test_interpolated_curve_averages_to_interpolated_ap11():
    hits = np.array([1, 0, 1, 1, 0, 0, 1, 0], bool)
    p, r = precision_recall(hits, 5)
    assert interpolated_precision(p, r).mean() == pytest.approx(interpolated_ap11(hits, 5))


def fake_run(tmp_path, run_id, aps, backbone="tf_efficientnet_lite0"):
    per_query = pd.DataFrame({"query": [f"q{i}" for i in range(len(aps))], "ap": aps, "image": "a",
                              "box": "0 0 10 10", "first_relevant_rank": 1})
    summary = {"run_id": run_id, "dataset": "paris6k", "gallery": "g", "map": float(np.mean(aps)),
               "embedding": {"backbone": backbone, "pooling": "gem", "gem_p": 3.0, "scales": [1.0],
                             "whitening": "gallery", "whiten_dim": 256, "max_size": 512},
               "dim": 256, "mean_query_ms": 50.0, "extraction_seconds": 12.0, "search": {"method": "exact", "metric": "cosine"}}
    pr = {f"q{i}": {"precision": [1.0, 0.5], "recall": [0.5, 0.5]} for i in range(len(aps))}
    write_run(run_id, summary, per_query, ["a.jpg", "b.jpg"], np.array([[0, 1]] * len(aps)), pr, root=tmp_path)
    return load_run(run_id, tmp_path)


def test_runs_table_and_ap_comparison(tmp_path):
    a = fake_run(tmp_path, "r1", [0.9, 0.2, 0.5])
    b = fake_run(tmp_path, "r2", [0.8, 0.6, 0.5], backbone="mobilenet_v2")
    table = runs_table(tmp_path)
    assert table["run_id"].tolist() == ["r2", "r1"]
    row = table.iloc[1]
    assert (row["pooling"], row["whitening"], row["dim"], row["mAP"]) == ("gem3", "gallery/256", 256, pytest.approx(1.6 / 3))
    assert set(run_row(load_run("r1", tmp_path).summary)) == set(table.columns) == set(RUN_COLUMNS)
    cmp = ap_comparison([a, b])
    first = cmp.drop_duplicates("query")
    assert first["query"].tolist() == ["q0", "q2", "q1"]            # sorted by AP(r2) - AP(r1)
    assert first["better"].tolist() == ["r1", "tie", "r2"]
    single = ap_comparison([a]).sort_values("order")
    assert single["query"].tolist() == ["q0", "q2", "q1"]          # by AP, best first
    curves = pr_curves([a, b], "q1")
    assert set(curves["curve"]) == {"measured", "interpolated (11-pt)"} and set(curves["run"]) == {"r1", "r2"}
    measured = curves[(curves["curve"] == "measured") & (curves["run"] == "r1")]
    assert measured["recall"].tolist() == [0.0, 0.5] and measured["precision"].tolist() == [1.0, 1.0]
    mean = pr_curves([a])
    assert len(mean) == 11 and mean["precision"].iloc[0] == pytest.approx(1.0) and mean["precision"].iloc[-1] == 0


def test_query_time_is_measured_with_fresh_embedding_not_the_cache():
    # 10 queries, 6 whole images read from the cache: 120 ms of embedding were spent on the other 4
    summary = RunSummary.from_dict({"n_queries": 10, "queries_from_cache": 6, "query_embed_ms": 12.0,
                                    "query_search_ms": 0.5, "rerank": {"extra_ms_per_query": 2.0},
                                    "images_per_second": 20.0})
    t = fresh_query_time(summary)
    assert (t.embed_ms, t.search_ms, t.rerank_ms, t.embed_measured_on) == (30.0, 0.5, 2.0, "queries")
    assert t.total_ms == 32.5
    cached = fresh_query_time(replace(summary, queries_from_cache=8, query_crops_cached=2))
    assert (cached.embed_ms, cached.embed_measured_on) == (50.0, "gallery extraction")     # 1 s / 20 images
    unknown = fresh_query_time(replace(summary, queries_from_cache=10, images_per_second=None))
    assert unknown.total_ms is None and unknown.embed_measured_on == "unknown"


def test_a_confusion_cell_lists_the_images_behind_it(tmp_path):
    ids = ["Beach/1.jpg", "Beach/2.jpg", "Buses/3.jpg", "Buses/4.jpg"]
    per_query = pd.DataFrame({"query": ids, "ap": 0.5, "image": ["1", "2", "3", "4"],
                              "group": ["Beach", "Beach", "Buses", "Buses"],
                              "predicted": ["Beach", "Buses", "Buses", "Buses"]})
    summary = {"run_id": "c1", "dataset": "classes", "gallery": "g", "map": 0.5, "embedding": {}}
    write_run("c1", summary, per_query, ids, np.array([[0, 1, 2, 3]] * 4), {}, root=tmp_path)
    run = load_run("c1", tmp_path)
    assert confusion_cell_images(run, "Beach", "Buses") == ["Beach/2.jpg"]
    assert confusion_cell_images(run, "Buses", "Buses") == ["Buses/3.jpg", "Buses/4.jpg"]
    assert confusion_cell_images(run, "Buses", "Beach") == []
    assert confusion_cell_images(fake_run(tmp_path, "r9", [0.5]), "a", "b") == []          # not a class run


def test_a_perfect_querys_measured_curve_stays_at_precision_1():
    # 2 relevant images first, then 3 negatives: the stored curve goes on to precision 0.4 at recall 1
    precision, recall = hit_points([1.0, 1.0, 2 / 3, 0.5, 0.4], [0.5, 1.0, 1.0, 1.0, 1.0])
    assert precision.tolist() == [1.0, 1.0] and recall.tolist() == [0.5, 1.0]
    precision, recall = hit_points([0.0, 0.5, 1 / 3, 0.5], [0.0, 0.5, 0.5, 1.0])     # miss, hit, miss, hit
    assert precision.tolist() == [0.5, 0.5] and recall.tolist() == [0.5, 1.0]


def test_bench_reports_read_any_json_shape(tmp_path):
    (tmp_path / "rows.json").write_text(json.dumps([{"name": "a", "ms": 3.0}, {"name": "b", "ms": 5.0}]))
    (tmp_path / "nested.json").write_text(json.dumps({"machine": {"cpu": 2}, "median_ms": 412.0,
                                                      "configs": {"x": {"map": 0.9}, "y": {"map": 0.8}},
                                                      "trials": [{"ms": 1.0, "meta": {"k": 10}}]}))
    (tmp_path / "broken.json").write_text("{not json")
    reports = {r.name: r for r in bench_reports(tmp_path)}
    assert set(reports) == {"rows", "nested", "broken"}
    assert "error" in reports["broken"].scalars
    assert chart_columns(reports["rows"].tables[0][1]) == ("name", "ms")
    nested = read_bench(tmp_path / "nested.json")
    assert nested.scalars == {"machine.cpu": 2, "median_ms": 412.0}
    tables = dict(nested.tables)
    assert tables["configs"]["name"].tolist() == ["x", "y"] and chart_columns(tables["configs"]) == ("name", "map")
    assert list(tables["trials"].columns) == ["ms", "meta.k"] and chart_columns(tables["trials"]) == (None, "ms")


def test_gallery_ground_truth_from_its_record(artifacts):
    register_gallery("p", PARIS / "jpg")
    assert gallery_ground_truth(load_gallery("p")) is None
    register_gallery("p", PARIS / "jpg", PARIS / "gt", "paris6k")
    gt = gallery_ground_truth(load_gallery("p"))
    assert gt.dataset == "paris6k" and len(gt.queries) == 55
    ids = load_gallery("p").image_ids()
    found = queries_in_gallery(gt, ids)
    assert len(found) == 12 and all(image_id == image_id_of(q.image, ids) for q, image_id in found)


def test_thumbnail_is_small_and_framed():
    path = PARIS / "jpg" / "paris_louvre_000081.jpg"
    img = Image.open(io.BytesIO(thumbnail(path, 120, "#ff0000")))
    assert max(img.size) == 120 + 12
    r, g, b = img.getpixel((1, 1))
    assert r > 200 and g < 60 and b < 60
    crop = Image.open(io.BytesIO(thumbnail(path, 500, None, Box(0, 0, 100, 50))))
    assert crop.size == (100, 50)
    square = Image.open(io.BytesIO(thumbnail(path, 100, None, square=True)))
    assert square.size == (100, 100) and square.getpixel((50, 2)) == pytest.approx((240, 242, 246), abs=4)


def test_check_upload_explains_what_is_wrong():
    data = (PARIS / "jpg" / "paris_louvre_000081.jpg").read_bytes()
    assert check_upload("photo.JPG", data, 20).size == Image.open(io.BytesIO(data)).size
    with pytest.raises(ImageError, match="svg files are not supported; upload a JPEG, PNG, WebP, BMP, GIF or TIFF"):
        check_upload("drawing.svg", data, 20)
    with pytest.raises(ImageError, match="the limit is 0.1 MB"):
        check_upload("big.jpg", data, 0.1)
    with pytest.raises(ImageError, match="not an image"):
        check_upload("fake.png", b"hello", 20)


def encoded(img: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **options)
    return out.getvalue()


def test_gif_first_frame_and_tiff_are_accepted():
    frames = [Image.new("RGB", (64, 48), colour) for colour in ("red", "blue")]
    gif = read_upload("anim.gif", encoded(frames[0], "GIF", save_all=True, append_images=frames[1:]), 20)
    assert gif.image.size == (64, 48) and gif.image.mode == "RGB" and gif.note is None
    assert gif.image.getpixel((10, 10))[0] > 200                              # the first frame: red
    tiff = read_upload("scan.TIFF", encoded(Image.new("RGB", (80, 60), "green"), "TIFF"), 20)
    assert tiff.image.size == (80, 60) and tiff.original_size == (80, 60)


def test_a_tiny_upload_is_searched_with_a_warning():
    tiny = read_upload("icon.png", encoded(Image.new("RGB", (8, 8), "white"), "PNG"), 20)
    assert tiny.image.size == (8, 8) and "only 8×8 px" in tiny.note


def test_a_jpeg_over_the_pixel_limit_is_downscaled_not_refused():
    side = 12_000                                                   # 144 megapixels, over core.images.MAX_PIXELS
    data = encoded(Image.new("L", (side, side), 128), "JPEG", quality=50)
    huge = read_upload("camera.jpg", data, 20)
    assert huge.original_size == (side, side) and max(huge.image.size) <= 4096 and huge.image.mode == "RGB"
    assert huge.note.startswith("camera.jpg is 12000×12000 px (144 megapixels): searched at")
    png = encoded(Image.new("1", (side, side)), "PNG")                # not a JPEG: refused with the reason
    with pytest.raises(ImageError, match="144 megapixels exceeds the limit of 100 megapixels"):
        read_upload("scan.png", png, 20)


def test_cropper_boxes_round_trip_through_the_preview():
    img = Image.new("RGB", (1024, 768))
    small, scale = preview(img, 640, 600)
    assert small.size == (640, 480) and scale == pytest.approx(1.6)
    assert preview(img, 640, 240)[0].size == (320, 240)
    box = Box(130, 17, 843, 732)
    xl, xr, yt, yb = cropper_coords(box, scale)
    back = box_from_cropper({"left": xl, "top": yt, "width": xr - xl, "height": yb - yt}, scale, img.size)
    assert max(abs(a - b) for a, b in zip(back.as_list(), box.as_list())) <= 2
    assert box_from_cropper({"left": 600, "top": 400, "width": 100, "height": 100}, scale, img.size).as_list() == [960, 640, 1024, 768]
