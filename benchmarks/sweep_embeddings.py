"""Measure retrieval quality and extraction speed of embedding configs on a benchmark, to choose
the default embedding by measurement (README: "The default embedding").

    python benchmarks/sweep_embeddings.py --root ../shared/data/paris6k

Each config is a full ``evaluate`` run (written to artifacts/runs/); the table is printed and saved
to artifacts/bench/embedding_sweep.json. Extraction images/s is measured in the same process for
every config, so compare it between rows of one sweep only.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.cache.galleries import register_gallery  # noqa: E402
from core.config import MULTI_SCALES, EmbeddingConfig  # noqa: E402
from core.datasets import dataset_layout, load_ground_truth  # noqa: E402
from core.evaluation.pipeline import evaluate  # noqa: E402
from core.paths import artifacts_dir  # noqa: E402

POOLINGS = ("gap", "mac", "gem", "spoc", "rmac")


def sweep_configs(backbones: list[str], sizes: list[int]) -> list[EmbeddingConfig]:
    """Every pooling of every backbone (single scale, with and without whitening learned on the
    gallery), then multi-scale GeM and R-MAC, at each size."""
    out = []
    for backbone in backbones:
        for size in sizes:
            for pooling in POOLINGS:
                base = EmbeddingConfig(backbone=backbone, pooling=pooling, max_size=size)
                out += [base, replace(base, whitening="gallery")]
            for pooling in ("gem", "rmac"):
                ms = EmbeddingConfig(backbone=backbone, pooling=pooling, scales=MULTI_SCALES, max_size=size)
                out += [ms, replace(ms, whitening="gallery")]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="paris6k")
    p.add_argument("--root", default="../shared/data/paris6k")
    p.add_argument("--backbones", nargs="+", default=["tf_efficientnet_lite0", "mobilenet_v2"])
    p.add_argument("--sizes", type=int, nargs="+", default=[512])
    p.add_argument("--out", default=str(artifacts_dir() / "bench" / "embedding_sweep.json"))
    a = p.parse_args(argv)
    layout = dataset_layout(a.root)
    gt = load_ground_truth(a.dataset, layout.ground_truth)
    gallery = register_gallery(a.dataset, layout.images)
    rows = []
    for cfg in sweep_configs(a.backbones, a.sizes):
        s = evaluate(gallery, gt, cfg, progress=False, log=lambda m: None)
        base_run = next((r for r in rows if r["config"] == cfg.base().to_dict()), None)
        ips = s.images_per_second or (base_run or {}).get("images_per_second")
        row = {"label": cfg.label(), "config": cfg.to_dict(), "map": s.map, "map_interp11": s.map_interp11,
               "ndcg": s.ndcg, "p@10": s.metric("p@10"), "random_map": s.random_map, "dim": s.dim,
               "images_per_second": ips, "query_ms": s.mean_query_ms, "run_id": s.run_id}
        rows.append(row)
        print(f"{row['label']:55s} mAP {row['map'] * 100:6.2f}  mAP11 {row['map_interp11'] * 100:6.2f}  "
              f"dim {row['dim']:5d}  {ips or 0:6.2f} img/s", flush=True)
    out = {"dataset": a.dataset, "n_images": s.n_images, "n_queries": s.n_queries,
           "note": "relevant = positives present in the gallery; whitening learned on the gallery itself",
           "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": s.machine, "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"written {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
