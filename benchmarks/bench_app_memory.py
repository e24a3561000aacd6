"""What switching off Streamlit's garbage collection after every script run
(``runner.postScriptGC = false`` in ``.streamlit/config.toml``) buys and costs: the
click-to-results latency of the search page and the app server's resident memory, over the same
searches with the collection off (the shipped setting) and on (Streamlit's default).

    python benchmarks/bench_app_memory.py [--searches 60] [--rounds 1]

The app runs over the 250 Paris images with the default embedding, as in
``bench_app_latency.py``; each setting gets a fresh server and browser tab, warmed by one search,
then ``--searches`` searches of successive gallery images (whole image, k = 10). The server's RSS
(``psutil``) is read after the warm-up and every 20 searches. Rounds alternate off/on so that a
drift of the machine's load weighs on both. Writes ``artifacts/bench/app_memory.json``
(``benchmarks.common.write_result``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_app_latency import K, open_app, summary  # noqa: E402
from benchmarks.browser import REPO, choose, chromium_page, search  # noqa: E402
from benchmarks.common import write_result  # noqa: E402
from core.cache.descriptors import build_embeddings  # noqa: E402
from core.cache.galleries import register_gallery  # noqa: E402
from core.config import DEFAULT_CONFIG  # noqa: E402
from core.datasets import dataset_layout  # noqa: E402

GC_VARIABLE = "STREAMLIT_RUNNER_POST_SCRIPT_GC"
EVERY = 20


def server_process() -> psutil.Process:
    """The ``streamlit run`` child of this process (``benchmarks.browser.app_server``)."""
    return next(c for c in psutil.Process().children(recursive=True) if "streamlit" in " ".join(c.cmdline()))


def measure(images: list[str], gc_on: bool, tmp: Path) -> dict:
    """One fresh server with the collection ``gc_on``: latencies and RSS over ``images``. A
    search whose first result is not the query image (the gallery holds exact duplicates) is
    not timed."""
    os.environ[GC_VARIABLE] = "true" if gc_on else "false"
    with ExitStack() as stack:
        page = stack.enter_context(chromium_page())
        open_app(stack, page, REPO, tmp / f"gc-{gc_on}.log", images[-1])
        server = server_process()
        rss, times, untimed = [server.memory_info().rss / 2**20], [], []
        for i, image in enumerate(images[:-1], start=1):
            choose(page, "gallery_image", image)
            try:
                times.append(search(page, K, image, timeout_ms=20_000) * 1000)
            except Exception as exc:  # noqa: BLE001 - Playwright's error when the first result is another image
                if "no results" not in str(exc):
                    raise
                untimed.append(image)
            if i % EVERY == 0:
                rss.append(server.memory_info().rss / 2**20)
    os.environ.pop(GC_VARIABLE)
    return {"post_script_gc": gc_on, "click_to_results_ms": summary(times), "rss_mb": rss,
            "rss_growth_mb": rss[-1] - rss[0], "untimed_duplicates": untimed, "load_average": list(os.getloadavg())}


def per_setting(rounds: list[dict], value: Callable[[dict], float]) -> dict[str, float]:
    """The mean of ``value(round)`` over the rounds of each setting."""
    out = {}
    for name, gc_on in (("gc_off", False), ("gc_on", True)):
        values = [value(r) for r in rounds if r["post_script_gc"] == gc_on]
        out[name] = sum(values) / len(values)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "paris6k"), help="Paris6k folder")
    p.add_argument("--searches", type=int, default=60, help="searches per setting (default 60)")
    p.add_argument("--rounds", type=int, default=1, help="off/on rounds (default 1)")
    a = p.parse_args(argv)

    layout = dataset_layout(a.root)
    gallery = register_gallery("paris6k", layout.images, layout.ground_truth, "paris6k")
    emb = build_embeddings(gallery, DEFAULT_CONFIG)
    images = emb.ids[:a.searches + 1]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        rounds = [measure(images, gc_on, Path(tmp)) for _ in range(a.rounds) for gc_on in (False, True)]
    medians = per_setting(rounds, lambda r: r["click_to_results_ms"]["median"])
    final_rss = per_setting(rounds, lambda r: r["rss_mb"][-1])
    report = {
        "what": "search page latency and app server RSS with Streamlit's post-script gc.collect off (shipped) and on "
                "(Streamlit's default); Paris 250 images, default embedding, whole-image gallery queries, k = 10",
        "embedding": DEFAULT_CONFIG.label(), "searches": a.searches,
        "median_ms": medians, "latency_ratio_on_to_off": medians["gc_on"] / medians["gc_off"],
        "final_rss_mb": final_rss, "extra_rss_mb_with_gc_off": final_rss["gc_off"] - final_rss["gc_on"],
        "rss_growth_mb": per_setting(rounds, lambda r: r["rss_growth_mb"]),
        "load_average_before": list(load_before), "load_average_after": list(os.getloadavg()),
    }
    print(json.dumps(report, indent=1))
    write_result("app_memory", {**report, "rounds": rounds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
