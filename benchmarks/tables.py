"""Markdown tables of the indexing and search benchmarks, from their JSON, for benchmarks/README.md.

    python benchmarks/tables.py                  # artifacts/bench/indexing.json and search.json
    python benchmarks/tables.py --indexing other.json --search other-search.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "artifacts" / "bench"


def _load(value) -> str:
    return "/".join(f"{x:.1f}" for x in value) if value else "?"


def indexing_tables(d: dict) -> str:
    f, p, cb, pr = d.get("fidelity", {}), d["pipeline"], d["compute_bound"], d["projection"]
    out = [f"Run {d['timestamp']}{' (--quick)' if d.get('quick') else ''}, load average {_load(d['load_average_start'])} "
           f"at the start, {_load(d['load_average_end'])} at the end; default embedding, {p['n_images']} Paris images.", "",
           "| fidelity (int8 vs float32) | value |", "|---|---|",
           f"| calibration | {f.get('calibration', {}).get('n', '?')} images of {f.get('calibration', {}).get('folder', '?')} |",
           f"| validation images / queries | {f.get('n_images')} / {f.get('n_queries')} (every positive as a query) |",
           f"| min / mean cosine | {f.get('min_cosine', 0):.4f} / {f.get('mean_cosine', 0):.4f} (gate ≥ 0.99) |",
           f"| mAP float32 → int8 | {f.get('map_float32', 0) * 100:.2f} → {f.get('map_reduced', 0) * 100:.2f} "
           f"({-f.get('map_drop_points', 0):+.2f} points; gate ≥ −0.5) |",
           f"| verdict | {'passed' if f.get('passed') else 'REFUSED: ' + '; '.join(f.get('problems', []))} |", "",
           "| precision | pipeline img/s (rounds) | network alone img/s | pipeline / network bound | pipeline / matmul bound |",
           "|---|---|---|---|---|"]
    for k in ("float32", "int8"):
        out.append(f"| {k} | {p['images_per_s'][k]:.2f} ({', '.join(f'{x:.1f}' for x in p['rounds_images_per_s'][k])}) | "
                   f"{cb['network_images_per_s'][k]:.2f} | {cb['pipeline_share_of_network_bound'][k] * 100:.0f} % | "
                   f"{cb['pipeline_share_of_matmul_bound'][k] * 100:.0f} % |")
    out += ["", f"int8 / float32: pipeline ×{p['int8_speedup']:.2f} (target ≥ 1.8), network alone "
                f"×{cb['network_int8_speedup']:.2f}; min cosine of the pipeline's int8 descriptors to float32 "
                f"{p['min_cosine_int8_vs_float32']:.4f}. Matmul bound: {cb['matmul_gflops']:.1f} GFLOP/s float32 (the higher of "
                f"{', '.join(f'{k} {v:.1f}' for k, v in cb['matmul_gflops_by_runtime'].items())}, each the mean of two "
                f"rounds), {cb['gflop_per_image']:.2f} GFLOP per image over its "
                f"{len(d['config']['scales'])} scales.", "",
            "| scale | float32 ms per image (share) | int8 ms per image (share) |", "|---|---|---|"]
    rows = {k: {round(r["scale"], 3): r for r in p["per_scale"][k]} for k in ("float32", "int8")}
    for s in rows["float32"]:
        a, b = rows["float32"][s], rows["int8"].get(s, {})
        out.append(f"| {s:g} | {a['ms_per_call']:.1f} ({a['share'] * 100:.0f} %) | "
                   f"{b.get('ms_per_call', 0):.1f} ({b.get('share', 0) * 100:.0f} %) |")
    out += ["", "| precision | measured files | start-up s | img/s | 10,000 images projected | load before → after |",
            "|---|---|---|---|---|---|"]
    for k, r in pr.items():
        out.append(f"| {k} | {r['n_images']} | {r['startup_seconds']:.1f} | {r['images_per_s']:.2f} | "
                   f"{r['projected_10k_seconds'] / 60:.1f} min (target ≤ 10) | {_load(r['load_average_before'])} → "
                   f"{_load(r['load_average_after'])} |")
    return "\n".join(out)


def search_tables(d: dict) -> str:
    out = [f"Run {d['timestamp']}{' (--quick)' if d.get('quick') else ''}, load average {_load(d.get('load_average_start'))} "
           f"at the start, {_load(d.get('load_average_end'))} at the end; queries one at a time, k = 100.", "",
           "Fastest setting of each library at recall@10 ≥ 0.95 (p50 ms); default: exact search within 1 ms, else the fastest of the project's backends:", ""]
    libs = sorted({lib for e in d["datasets"].values() for lib in e.get("at_target", {}).get("per_library", {})})
    out += ["| dataset | n × dim | " + " | ".join(libs) + " | fastest | default (ours) | default / fastest |",
            "|---|---|" + "---|" * (len(libs) + 3)]
    for name, e in d["datasets"].items():
        at = e.get("at_target", {})
        best = at.get("per_library", {})
        cells = [f"{best[lib]['p50_ms']:.3f}" if lib in best else "—" for lib in libs]
        ratio = at.get("default_over_fastest_p50")
        out.append(f"| {name} | {e['n']:,} × {e['dim']} | " + " | ".join(cells) + f" | {at.get('fastest')} | "
                   f"{at.get('default')} | {f'{ratio:.2f}' if ratio else '—'} |")
    out += ["", "The project's indexes as the app calls them (k = 10, their tuned effort):", "",
            "| dataset | backend | params | p50 ms | recall@10 |", "|---|---|---|---|---|"]
    for name, e in d["datasets"].items():
        for lib, rows in e["libraries"].items():
            for r in rows if isinstance(rows, list) else []:
                if r["params"].get("k") == 10:
                    params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in r["params"].items() if k != "k")
                    out.append(f"| {name} | {lib} | {params} | {r['p50_ms']:.3f} | {r['recall@10']:.3f} |")
    for name, rows in d.get("derived_vs_real", {}).items():
        out += ["", f"Recall@10 on {name} against its derived twin (same size and dimension):", "",
                "| library | params | real | derived | derived − real |", "|---|---|---|---|---|"]
        for r in rows:
            params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
            out.append(f"| {r['library']} | {params} | {r['real_recall@10']:.3f} | {r['derived_recall@10']:.3f} | "
                       f"{r['optimism']:+.3f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--indexing", type=Path, default=BENCH / "indexing.json")
    p.add_argument("--search", type=Path, default=BENCH / "search.json")
    a = p.parse_args(argv)
    if a.indexing.exists():
        print("### Indexing\n\n" + indexing_tables(json.loads(a.indexing.read_text())) + "\n")
    if a.search.exists() and "at_target" in next(iter(json.loads(a.search.read_text())["datasets"].values()), {}):
        print("### Search at scale\n\n" + search_tables(json.loads(a.search.read_text())) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
