"""Concurrent users: how many searches per second the app sustains when several browser sessions
search at once, whether each session gets its own correct results, and whether the server's memory
stays flat over a few hundred searches.

    python benchmarks/bench_app_load.py [--sessions 1 2 4] [--searches 60]

Each browser page is its own Streamlit session; a search is a deep link that opens one gallery
image as the query and searches at once (``/?gallery=&embedding=&image=``: the search page is the
app's default, at ``/``; ``/search`` is "page not found" in a second session). For each level of
concurrency, every page gets its own queue of images and all pages work at the same time; a
search counts when its page shows 10 loaded result thumbnails with its query image first (a whole
image query finds itself first: a session shown another session's results would fail this).
The baseline is one session searching alone in the same run; figures are ratios to it.
Writes ``artifacts/bench/app_load.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from benchmarks.bench_app_latency import summary  # noqa: E402
from benchmarks.browser import CHROMIUM, CHROMIUM_ARGS, REPO, RESULTS_SHOWN, app_server  # noqa: E402
from core.cache.descriptors import build_embeddings  # noqa: E402
from core.cache.galleries import register_gallery  # noqa: E402
from core.config import DEFAULT_CONFIG  # noqa: E402
from core.datasets import dataset_layout  # noqa: E402
from core.evaluation.runs import machine_info, package_versions  # noqa: E402
from core.files import write_json  # noqa: E402
from core.paths import artifacts_dir  # noqa: E402

K = 10
TIMEOUT_MS = 180_000


def server_rss_mb(url: str) -> float:
    """Resident memory of the process listening on the app's port."""
    port = int(url.rsplit(":", 1)[1])
    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            return psutil.Process(conn.pid).memory_info().rss / 1e6
    return float("nan")


def run_level(browser, url: str, images: list[str], sessions: int) -> dict:
    """``len(images)`` searches spread over ``sessions`` pages working at once."""
    pages = [browser.new_page(viewport={"width": 1400, "height": 1000}) for _ in range(sessions)]
    queues = [images[i::sessions] for i in range(sessions)]
    latencies, wrong = [], 0
    start = time.perf_counter()
    for round_ in range(max(len(q) for q in queues)):
        batch = [(page, q[round_]) for page, q in zip(pages, queues) if round_ < len(q)]
        sent = {}
        for page, image_id in batch:                      # all sessions start their search ...
            sent[image_id] = time.perf_counter()
            page.goto(f"{url}/?{urlencode({'gallery': 'paris6k', 'embedding': DEFAULT_CONFIG.key(), 'image': image_id})}",
                      wait_until="commit")
        for page, image_id in batch:                      # ... then each is waited for
            try:
                page.wait_for_function(RESULTS_SHOWN, arg=[K, image_id], timeout=TIMEOUT_MS, polling=50)
            except Exception:  # noqa: BLE001 - a wrong or missing result is counted, not fatal
                wrong += 1
            latencies.append((time.perf_counter() - sent[image_id]) * 1000)
    seconds = time.perf_counter() - start
    for page in pages:
        page.close()
    return {"sessions": sessions, "searches": len(images), "seconds": seconds,
            "searches_per_second": len(images) / seconds, "wrong_or_missing": wrong,
            "page_load_to_results_ms": summary(latencies)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "paris6k"))
    p.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--searches", type=int, default=60, help="searches per concurrency level")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    layout = dataset_layout(a.root)
    gallery = register_gallery("paris6k", layout.images, layout.ground_truth, "paris6k")
    ids = build_embeddings(gallery, DEFAULT_CONFIG).ids
    levels, memory = [], []
    with tempfile.TemporaryDirectory() as tmp, app_server(artifacts_dir(), Path(tmp) / "streamlit.log") as url, \
            sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        warm = browser.new_page()
        warm.goto(url)                                    # the first request must be the app's root
        warm.wait_for_timeout(3000)
        run_level(browser, url, ids[:3], 1)               # loads network, descriptors, thumbnails
        memory.append({"after_searches": 3, "rss_mb": server_rss_mb(url)})
        done = 3
        for level in a.sessions:
            images = [ids[(i * 7 + level) % len(ids)] for i in range(a.searches)]
            levels.append(run_level(browser, url, images, level))
            done += a.searches
            memory.append({"after_searches": done, "rss_mb": server_rss_mb(url)})
            print(json.dumps(levels[-1]), flush=True)
        browser.close()
    base = levels[0]["searches_per_second"]
    for row in levels:
        row["throughput_ratio_to_one_session"] = row["searches_per_second"] / base
    report = {"benchmark": "app_load", "embedding": DEFAULT_CONFIG.label(), "n_images": len(ids), "k": K,
              "what": "concurrent browser sessions, each loading a search deep link and waiting for its own "
                      "10 results with its query first; baseline = one session in the same run",
              "levels": levels, "server_memory": memory,
              "memory_growth_mb": memory[-1]["rss_mb"] - memory[0]["rss_mb"],
              "load_average": list(os.getloadavg()), "machine": machine_info(), "versions": package_versions(),
              "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S")}
    out = Path(a.out) if a.out else artifacts_dir() / "bench" / "app_load.json"
    write_json(out, report)
    print(f"memory {[m['rss_mb'] for m in memory]} MB; written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
