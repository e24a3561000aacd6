"""Search latency as a person sees it: the time from pressing Search in the browser to the
results on screen (images loaded), for a warm app over the 250 Paris images with the default
embedding. Target: under 300 ms (issue 14), on a quiet machine.

    python benchmarks/bench_app_latency.py [--root ../shared/data/paris6k] [--searches 12]

Each search queries a different gallery image (whole image, k = 10); choosing the image is not
timed, only the click on Search until the grid shows its 10 loaded thumbnails with the query
image first. The baseline, measured in the same run, is ``SearchEngine.search`` of the same image
in this process (embedding + exact search, no UI) just before each browser search, so that both
see the same load: the ratio shows what the app adds. ``--reference DIR`` measures another
checkout of the app (e.g. the commit before a change) on the same searches, alternately. Writes
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
from contextlib import ExitStack
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


def open_app(stack: ExitStack, page, root: Path, log: Path, warm_up: str) -> float:
    """Open the app of checkout ``root`` in ``page``, warm, on the Paris gallery with Gallery-image
    queries; returns the first search's time (network and descriptors load)."""
    url = stack.enter_context(app_server(artifacts_dir(), log, root=root))
    page.goto(url)
    page.get_by_role("heading", name="Search").wait_for(timeout=120_000)
    wait_idle(page)
    choose(page, "gallery", "paris6k")
    page.get_by_role("radiogroup", name="Query from").get_by_text("Gallery image", exact=True).click()
    wait_idle(page)
    choose(page, "gallery_image", warm_up)
    return search(page, K, warm_up) * 1000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "paris6k"), help="Paris6k folder")
    p.add_argument("--searches", type=int, default=12, help="timed searches (default 12)")
    p.add_argument("--reference", default=None, help="another checkout of the app (e.g. `git worktree add "
                   "/tmp/ref <commit>`) measured on the same searches, alternately, for a before/after ratio")
    p.add_argument("--out", default=None, help="JSON output (default artifacts/bench/app_latency.json)")
    a = p.parse_args(argv)

    layout = dataset_layout(a.root)
    gallery = register_gallery("paris6k", layout.images, layout.ground_truth, "paris6k")
    emb = build_embeddings(gallery, DEFAULT_CONFIG)
    step = max(1, len(emb.ids) // a.searches)
    images = emb.ids[::step][:a.searches]
    engine = SearchEngine(gallery, DEFAULT_CONFIG)
    engine.search(str(gallery.root / images[0]), k=K)                          # warm-up

    apps = {"app": REPO, **({"reference": Path(a.reference).resolve()} if a.reference else {})}
    load_before = os.getloadavg()
    rows, first = [], {}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        pages = {"app": stack.enter_context(chromium_page())}
        if a.reference:                                   # a second tab of the same browser (one Playwright)
            pages["reference"] = pages["app"].context.browser.new_page(viewport=pages["app"].viewport_size)
        for name, root in apps.items():
            first[name] = open_app(stack, pages[name], root, Path(tmp) / f"{name}.log", emb.ids[-1])
        for image_id in images:
            start = time.perf_counter()
            engine.search(str(gallery.root / image_id), k=K)
            row = {"image": image_id, "in_process_ms": (time.perf_counter() - start) * 1000,
                   "load_1min": os.getloadavg()[0]}
            for name, page in pages.items():
                choose(page, "gallery_image", image_id)
                row[f"{name}_click_to_results_ms"] = search(page, K, image_id) * 1000
                m = TIMING.search(page.inner_text("body"))
                row[f"{name}_embed_ms"] = float(m[1]) if m else None
            rows.append(row)
    base = summary([r["in_process_ms"] for r in rows])
    report = {
        "benchmark": "app_latency",
        "what": "browser click on Search to 10 result thumbnails loaded; warm app; Paris 250 images; whole-image "
                "queries; default embedding; exact cosine search; baseline: SearchEngine.search of the same image in "
                "this process just before each browser search (same load)",
        "embedding": DEFAULT_CONFIG.label(), "n_images": len(emb.ids), "k": K,
        "first_search_ms": first,
        "baseline_in_process_search_ms": base,
        "load_average_before": list(load_before), "load_average_after": list(os.getloadavg()),
        "target_ms": 300,
    }
    for name in apps:
        clicks = summary([r[f"{name}_click_to_results_ms"] for r in rows])
        report[name] = {
            "root": str(apps[name]), "click_to_results_ms": clicks,
            "ratio_median_to_baseline": clicks["median"] / base["median"],
            "median_of_paired_ratios": statistics.median(r[f"{name}_click_to_results_ms"] / r["in_process_ms"]
                                                         for r in rows),
            "overhead_median_ms": statistics.median(r[f"{name}_click_to_results_ms"] - r["in_process_ms"] for r in rows),
            "meets_target": clicks["median"] < 300}
    if a.reference:
        report["median_ratio_app_to_reference"] = statistics.median(
            r["app_click_to_results_ms"] / r["reference_click_to_results_ms"] for r in rows)
    report.update({"searches": rows, "machine": machine_info(), "versions": package_versions(),
                   "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S")})
    out = Path(a.out) if a.out else artifacts_dir() / "bench" / "app_latency.json"
    write_json(out, report)
    print(json.dumps({k: v for k, v in report.items() if k not in ("searches", "machine", "versions")}, indent=1))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
