"""Fit the gallery-size rules of ``core.rerank.rules`` to the re-ranking sweep.

    .venv/bin/python benchmarks/fit_rerank_rules.py      # reads artifacts/bench/rerank_sweep.json

For each method's size parameter, every rule k(N) = clip(round(c · N^e), low, high) of a grid of
(c, e) is scored on each (set, gallery size) row of the sweep by interpolating that row's mAP
between the measured parameter values (linear in log k). The rule kept maximises the mean gain
over no re-ranking among the rules whose gain is never below zero on any row, so it is chosen
on the validation protocol only. Output: ``artifacts/bench/rerank_rules.json`` (the chosen rules,
each row's gain with the rule and with the row's own best value).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import bench_dir, write_result  # noqa: E402
from core.rerank.rules import SizeRule, scaled  # noqa: E402

# Sublinear only: subsampling a gallery keeps its share of relevant images, so it would reward
# k ∝ N; a real gallery grows by distractors as much as by matches, and k ∝ N would grow the
# cost per query with it. sqrt(N) is the compromise (the fit with exponent 1 is in the report).
EXPONENTS = (0.0, 0.25, 0.5)
# method -> (grid key prefix, parameter parsed from the grid key, bounds of the rule)
PARAMETERS = {
    "alpha_qe": ("n=", (1, 30)),
    "dba+alpha_qe": ("n=", (1, 30)),
    "diffusion": ("k=", (5, 100)),
    "kreciprocal": ("k1=", (5, 80)),
    "superglobal": ("M=", (50, 200)),
}


def series(row: dict, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Measured (parameter values, mAP) of one sweep row and method, parameter ascending. For
    methods with a second parameter, the series at its value tied to the first (k-reciprocal
    k2 = k1 / 4; SuperGlobal K = 9, the paper's)."""
    prefix = PARAMETERS[method][0]
    points = {}
    for key, value in row["methods"].get(method, {}).items():
        parts = dict(p.split("=") for p in key.split(","))
        if method == "kreciprocal" and int(parts["k2"]) != max(1, int(parts["k1"]) // 4):
            continue
        if method == "superglobal" and int(parts["K"]) != 9:
            continue
        points[int(parts[prefix[:-1]])] = value["map"]
    ks = np.array(sorted(points), float)
    return ks, np.array([points[int(k)] for k in ks])


def interpolated(ks: np.ndarray, maps: np.ndarray, k: float) -> float:
    return float(np.interp(np.log(k), np.log(ks), maps))


def fit(rows: list[dict], method: str) -> dict:
    low, high = PARAMETERS[method][1]
    usable = [r for r in rows if method in r["methods"]]
    best = None
    for e in EXPONENTS:
        for c in np.geomspace(0.05, 60, 120):
            rule = SizeRule(float(c), e, low, high)
            gains = []
            for r in usable:
                ks, maps = series(r, method)
                gains.append(interpolated(ks, maps, scaled(r["n_images"], rule)) - r["none"])
            key = (min(gains) >= 0, float(np.mean(gains)))
            if best is None or key > best[0]:
                best = (key, rule, gains)
    (never_hurts, mean_gain), rule, gains = best
    detail = []
    for r, g in zip(usable, gains):
        ks, maps = series(r, method)
        detail.append({"set": r["set"], "n_images": r["n_images"], "k": scaled(r["n_images"], rule),
                       "gain": g, "best_k": int(ks[np.argmax(maps)]), "best_gain": float(maps.max() - r["none"])})
    return {"method": method, "rule": {"c": round(rule.c, 4), "exponent": rule.exponent, "low": low, "high": high},
            "never_hurts": never_hurts, "mean_gain": mean_gain, "rows": detail}


def main() -> int:
    sweep = json.loads((bench_dir() / "rerank_sweep.json").read_text())
    fitted = [fit(sweep["rows"], m) for m in PARAMETERS if any(m in r["methods"] for r in sweep["rows"])]
    for f in fitted:
        r = f["rule"]
        print(f"{f['method']:13s} k = clip(round({r['c']:.3g} * N^{r['exponent']}), {r['low']}, {r['high']})  "
              f"mean gain {f['mean_gain'] * 100:+.2f}  never hurts: {f['never_hurts']}")
        for d in f["rows"]:
            print(f"    {d['set']:14s} N={d['n_images']:5d} k={d['k']:4d} gain {d['gain'] * 100:+6.2f}   "
                  f"(best k={d['best_k']:4d} {d['best_gain'] * 100:+6.2f})")
    write_result("rerank_rules", {"source": "artifacts/bench/rerank_sweep.json", "rules": fitted})
    return 0


if __name__ == "__main__":
    sys.exit(main())
