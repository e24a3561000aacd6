"""The app over a million images (issue 23): the first render of the search page on a large
imported gallery (a deep link), the server's resident memory, and per search the click-to-results
latency with the app's own stage times, for uploaded photos and for gallery ids (searched by their
stored descriptors: the gallery's images are not on this machine).

    python benchmarks/bench_app_scale.py [--artifacts /tmp/bench-distractors/artifacts]
        [--gallery distractors-1000000] [--searches 10] [--screens artifacts/screens]

The gallery is one ``benchmarks/bench_distractors.py --n 1000000`` made (default embedding, the
default index built). A fresh server is opened by a deep link to the gallery (cold: the process
imports the network and opens the gallery), then by a second session (warm). After one untimed
search (the server opens the index), ``--searches`` gallery ids (spread over the gallery, typed
into the picker) and as many Paris photos (uploaded through the page's file uploader), k = 10,
default index and re-ranking, whole images. The app's stage times are read from the page's timing
line; the index search is reported with the recall@10 its tuning measured. The baseline is the
same query through ``SearchEngine`` in this process, run just before or just after each browser
search (alternately, since whichever runs second finds the vectors it reads in the page cache):
what the app adds. The server's memory (RSS, RssAnon, RssFile, and the part of RssFile that is the
gallery's memory-mapped vectors) is read after opening and after every search; the load average
and the other benchmarks running are recorded with every figure. ``--screens`` saves screenshots
at 800, 1280 and 1920 px wide. Writes ``artifacts/bench/app_scale.json`` (``common.write_result``).
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
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlencode

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_app_latency import summary  # noqa: E402
from benchmarks.bench_app_memory import server_process  # noqa: E402
from benchmarks.browser import (  # noqa: E402
    app_server,
    chromium_page,
    search,
    type_text,
    upload,
    wait_idle,
)
from benchmarks.common import DEFAULT_PARIS, load_average, write_result  # noqa: E402
from core.cache.galleries import load_gallery  # noqa: E402
from core.config import DEFAULT_CONFIG  # noqa: E402
from core.index import SearchSettings  # noqa: E402
from core.rerank import DEFAULT_RERANK, create_reranker  # noqa: E402
from core.search.engine import Results, SearchEngine  # noqa: E402

K = 10
AUTO = SearchSettings("auto")
STAGES = re.compile(r"embed (\d+) ms · search ([\d.]+) ms(?: · re-ranked by .*? in (\d+) ms)?")
WIDTHS = (800, 1280, 1920)


@contextmanager
def artifacts_at(path: Path):
    """``CBIR_ARTIFACTS`` set to ``path`` inside the block (the gallery's), restored after it
    (the result is written to this checkout's artifacts)."""
    before = os.environ.get("CBIR_ARTIFACTS")
    os.environ["CBIR_ARTIFACTS"] = str(path)
    try:
        yield
    finally:
        os.environ.pop("CBIR_ARTIFACTS") if before is None else os.environ.update(CBIR_ARTIFACTS=before)


def situation() -> dict:
    """How busy the shared machine is: load averages, and the other benchmarks running."""
    own = {os.getpid(), *(p.pid for p in psutil.Process().parents())}       # this run (under nohup, timeout)
    others = {Path(arg).name for p in psutil.process_iter(["pid", "cmdline"]) if p.info["pid"] not in own
              for arg in p.info["cmdline"] or [] if re.search(r"benchmarks/bench_\w+\.py$", arg)}
    return {"load": load_average(), "other_benchmarks": sorted(others)}


def memory(pid: int, vectors: Path) -> dict:
    """Resident memory of process ``pid`` in MiB (2^20 bytes, though the keys say mb): RSS, its
    anonymous and file-backed parts, and the pages of the memory-mapped ``vectors`` file it maps
    (part of RssFile)."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    kb = {key: int(status[key].split()[0]) for key in ("VmRSS", "RssAnon", "RssFile", "VmHWM")}
    mapped, inside = 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            inside = line.endswith(str(vectors))
        elif inside and line.startswith("Rss:"):
            mapped += int(line.split()[1])
    return {"rss_mb": kb["VmRSS"] / 1024, "rss_anon_mb": kb["RssAnon"] / 1024, "rss_file_mb": kb["RssFile"] / 1024,
            "vectors_mapped_mb": mapped / 1024, "peak_rss_mb": kb["VmHWM"] / 1024, **situation()}


def first_render(page, url: str, gallery: str) -> float:
    """Seconds from loading the deep link to gallery ``gallery`` until its search page is drawn
    (the caption that names the gallery, and the Search button, the page's last element) and idle."""
    start = time.perf_counter()
    page.goto(f"{url}/?{urlencode({'gallery': gallery, 'embedding': DEFAULT_CONFIG.key()})}")
    page.get_by_text(f"{gallery}: ", exact=False).first.wait_for(timeout=300_000)
    page.locator(".st-key-search button").wait_for(timeout=300_000)
    wait_idle(page, 300_000)
    return time.perf_counter() - start


def in_process(engine: SearchEngine, query: str, kind: str) -> tuple[float, Results]:
    """The baseline: the same search through the engine (ms, results)."""
    reranker = create_reranker(DEFAULT_RERANK)
    start = time.perf_counter()
    if kind == "id":
        results = engine.search_stored(query, k=K, settings=AUTO, reranker=reranker)
    else:
        results = engine.search(query, k=K, settings=AUTO, reranker=reranker)
    return (time.perf_counter() - start) * 1000, results


def browser_search(page, query: str, kind: str) -> float:
    """Give the page the query (type the id, or upload the photo), press Search: the ms from the
    click to the new results (re-ranked, a query image need not stay first)."""
    if kind == "id":
        type_text(page, "gallery_image", query)
    else:
        upload(page, "upload", query)
    return search(page, K, timeout_ms=60_000, fresh=True) * 1000


def stage_times(page) -> dict[str, float | None]:
    """The app's own stage times, as its timing line shows them."""
    m = STAGES.search(page.inner_text("body"))
    if m is None:
        return {"embed_ms": None, "search_ms": None, "rerank_ms": None}
    return {"embed_ms": float(m[1]), "search_ms": float(m[2]), "rerank_ms": float(m[3]) if m[3] else 0.0}


def run_searches(page, engine: SearchEngine, queries: list[str], kind: str, server: int, vectors: Path) -> list[dict]:
    rows = []
    for i, query in enumerate(queries):
        browser_first = i % 2 == 1
        click = browser_search(page, query, kind) if browser_first else None
        base_ms, results = in_process(engine, query, kind)
        click = click if browser_first else browser_search(page, query, kind)
        rows.append({"kind": kind, "query": Path(query).name, "click_to_results_ms": click,
                     "app": stage_times(page), "browser_first": browser_first,
                     "in_process": {"total_ms": base_ms, **asdict(results.times)},
                     "in_process_first": results.items[0].image_id, "server_memory": memory(server, vectors)})
        print(json.dumps({k: rows[-1][k] for k in ("kind", "query", "click_to_results_ms", "app")}), flush=True)
    return rows


def screenshots(page, folder: Path, name: str) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 1000})
        page.wait_for_timeout(1500)                        # Streamlit lays the page out again
        paths.append(str(folder / f"scale-{name}-{width}.png"))
        page.screenshot(path=paths[-1], full_page=True)
    page.set_viewport_size({"width": 1280, "height": 1000})
    return paths


def figures(rows: list[dict]) -> dict:
    """Medians and spreads of one kind of search: click-to-results, the app's stages, the
    baseline, and what the app adds over it; the app's index search and re-ranking apart for
    the searches it ran first (the candidates' rows read from wherever they are) and second
    (after the baseline read the same rows: in the page cache)."""
    stage = {s: summary([r["app"][s] for r in rows if r["app"][s] is not None]) for s in ("embed_ms", "search_ms", "rerank_ms")}
    return {"click_to_results_ms": summary([r["click_to_results_ms"] for r in rows]), "app_stage_ms": stage,
            "app_search_plus_rerank_ms": beyond_embedding(rows),
            "app_search_plus_rerank_ms_app_first": beyond_embedding([r for r in rows if r["browser_first"]]),
            "app_search_plus_rerank_ms_baseline_first": beyond_embedding([r for r in rows if not r["browser_first"]]),
            "in_process_total_ms": summary([r["in_process"]["total_ms"] for r in rows]),
            "app_adds_median_ms": statistics.median(r["click_to_results_ms"] - r["in_process"]["total_ms"] for r in rows),
            "load_1min": summary([r["server_memory"]["load"][0] for r in rows]),
            "other_benchmarks": sorted({b for r in rows for b in r["server_memory"]["other_benchmarks"]})}


def beyond_embedding(rows: list[dict]) -> dict[str, float]:
    """The app's index search + re-ranking (what a search takes beyond the query's embedding)."""
    return summary([r["app"]["search_ms"] + r["app"]["rerank_ms"] for r in rows if r["app"]["search_ms"] is not None])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--artifacts", default="/tmp/bench-distractors/artifacts", help="artifacts folder of the gallery")
    p.add_argument("--gallery", default="distractors-1000000")
    p.add_argument("--searches", type=int, default=10, help="searches of each kind (default 10)")
    p.add_argument("--paris", default=str(DEFAULT_PARIS), help="Paris6k folder (its jpg/ photos are uploaded)")
    p.add_argument("--screens", default=None, help="save screenshots of the page to this folder")
    a = p.parse_args(argv)
    artifacts = Path(a.artifacts).resolve()
    photos = sorted((Path(a.paris) / "jpg").glob("*.jpg"))[::25][:a.searches]
    report = {"gallery": a.gallery, "artifacts": str(artifacts), "k": K, "rerank": DEFAULT_RERANK,
              "embedding": DEFAULT_CONFIG.label(), "at_start": situation()}
    with artifacts_at(artifacts), tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        engine = SearchEngine(load_gallery(a.gallery), DEFAULT_CONFIG)
        n = len(engine.embeddings.ids)
        warm_up, *ids = engine.embeddings.ids[n // (2 * a.searches)::n // (a.searches + 1)][:a.searches + 1]
        index = engine.index(AUTO).figures()
        vectors = Path(engine.embeddings.vectors.filename).resolve()
        url = stack.enter_context(app_server(artifacts, Path(tmp) / "streamlit.log", timeout=300))
        page = stack.enter_context(chromium_page(1280, 1000))
        server = server_process().pid
        report["n_images"] = n
        report["index"] = index.to_dict() | {"describe": index.describe()}
        report["first_render_s"] = {"cold": first_render(page, url, a.gallery)}
        page = page.context.browser.new_page(viewport={"width": 1280, "height": 1000})
        report["first_render_s"]["warm"] = first_render(page, url, a.gallery)
        report["server_memory_after_open"] = memory(server, vectors)
        report["first_search_ms"] = browser_search(page, warm_up, "id")          # the server opens the index
        rows = run_searches(page, engine, ids, "id", server, vectors)
        shots = screenshots(page, Path(a.screens), "id") if a.screens else []
        page.get_by_role("radiogroup", name="Query from").get_by_text("Upload", exact=True).click()
        wait_idle(page)
        rows += run_searches(page, engine, [str(x) for x in photos], "upload", server, vectors)
        shots += screenshots(page, Path(a.screens), "upload") if a.screens else []
        report["server_memory_after_searches"] = memory(server, vectors)
    report.update({"by_id": figures([r for r in rows if r["kind"] == "id"]),
                   "by_upload": figures([r for r in rows if r["kind"] == "upload"]),
                   "screenshots": shots, "at_end": situation(), "searches": rows})
    print(json.dumps({k: v for k, v in report.items() if k != "searches"}, indent=1, default=float))
    write_result("app_scale", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
