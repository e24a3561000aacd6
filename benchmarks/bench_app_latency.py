"""Search latency as a person sees it: the time from pressing Search in the browser to the
results on screen (images loaded), for a warm app over the 250 Paris images with the default
embedding. Target: under 300 ms (issue 14), on a quiet machine.

    python benchmarks/bench_app_latency.py [--root ../shared/data/paris6k] [--searches 12]

Each search queries a different gallery image (whole image, k = 10); choosing the image is not
timed, only the click on Search until the grid shows its 10 loaded thumbnails with the query
image first. The baseline, measured in the same run, is ``SearchEngine.search`` on the same
images in this process (embedding + exact search, no UI), once before and once after the browser
session (the machine's load changes): the ratio shows what the app adds. Writes
``artifacts/bench/app_latency.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.browser import REPO, app_server, choose, chromium_page, search, wait_idle  # noqa: E402
from core.cache.descriptors import build_embeddings  # noqa: E402
from core.cache.galleries import register_gallery  # noqa: E402
from core.config import DEFAULT_CONFIG  # noqa: E402
from core.datasets import dataset_layout  # noqa: E402
from core.evaluation.runs import machine_info, package_versions  # noqa: E402
from core.files import write_json  # noqa: E402
from core.paths import artifacts_dir  # noqa: E402
from core.search.engine import SearchEngine  # noqa: E402

K = 10
TIMING = re.compile(r"embed (\d+) ms · search ([\d.]+) ms")


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median": statistics.median(values), "p95": p95, "mean": statistics.fmean(values),
            "min": ordered[0], "max": ordered[-1], "n": len(values)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "paris6k"), help="Paris6k folder")
    p.add_argument("--searches", type=int, default=12, help="timed searches (default 12)")
    p.add_argument("--out", default=None, help="JSON output (default artifacts/bench/app_latency.json)")
    a = p.parse_args(argv)

    layout = dataset_layout(a.root)
    gallery = register_gallery("paris6k", layout.images, layout.ground_truth, "paris6k")
    emb = build_embeddings(gallery, DEFAULT_CONFIG, progress=True)
    step = max(1, len(emb.ids) // a.searches)
    images = emb.ids[::step][:a.searches]

    engine = SearchEngine(gallery, DEFAULT_CONFIG)

    def in_process() -> list[float]:
        engine.search(str(gallery.root / images[0]), k=K)                     # warm-up
        times = []
        for image_id in images:
            start = time.perf_counter()
            engine.search(str(gallery.root / image_id), k=K)
            times.append((time.perf_counter() - start) * 1000)
        return times

    baseline = in_process()

    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, app_server(artifacts_dir(), Path(tmp) / "streamlit.log") as url, \
            chromium_page() as page:
        page.goto(url)
        page.get_by_role("heading", name="Search").wait_for(timeout=120_000)
        wait_idle(page)
        choose(page, "gallery", "paris6k")
        page.get_by_text("Gallery image", exact=True).click()
        wait_idle(page)
        warm_up = emb.ids[-1]
        choose(page, "gallery_image", warm_up)
        first_ms = search(page, K, warm_up) * 1000                             # loads network and descriptors
        for image_id in images:
            choose(page, "gallery_image", image_id)
            seconds = search(page, K, image_id)
            m = TIMING.search(page.inner_text("body"))
            rows.append({"image": image_id, "click_to_results_ms": seconds * 1000,
                         "app_embed_ms": float(m[1]) if m else None, "app_search_ms": float(m[2]) if m else None})
    baseline += in_process()
    clicks = summary([r["click_to_results_ms"] for r in rows])
    base = summary(baseline)
    app_embed = [r["app_embed_ms"] for r in rows if r["app_embed_ms"] is not None]
    report = {
        "benchmark": "app_latency",
        "what": "browser click on Search to 10 result thumbnails loaded; warm app; Paris 250 images; whole-image "
                "queries; default embedding; exact cosine search; baseline: SearchEngine.search in this process, "
                "before and after the browser session",
        "embedding": DEFAULT_CONFIG.label(), "n_images": len(emb.ids), "k": K,
        "first_search_ms": first_ms,
        "click_to_results_ms": clicks,
        "baseline_in_process_search_ms": base,
        "ratio_median_to_baseline": clicks["median"] / base["median"],
        "app_embed_ms": summary(app_embed) if app_embed else None,
        "ui_overhead_median_ms": clicks["median"] - base["median"],
        "target_ms": 300, "meets_target": clicks["median"] < 300,
        "load_average_before": list(load_before), "load_average_after": list(os.getloadavg()),
        "searches": rows,
        "machine": machine_info(), "versions": package_versions(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    out = Path(a.out) if a.out else artifacts_dir() / "bench" / "app_latency.json"
    write_json(out, report)
    print(json.dumps({k: report[k] for k in ("click_to_results_ms", "baseline_in_process_search_ms",
                                             "ratio_median_to_baseline", "ui_overhead_median_ms", "first_search_ms",
                                             "load_average_before", "load_average_after")},
                     indent=1))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
