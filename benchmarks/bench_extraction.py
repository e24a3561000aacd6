"""Gallery extraction speed: the naive loop against the project's pipeline, for each offline
backbone, on the real Paris images.

    python benchmarks/bench_extraction.py                  # 4 offline backbones, 100 images
    python benchmarks/bench_extraction.py --images 250 --backbones tf_efficientnet_lite0

Embedding: ``common.BENCH_CONFIG`` (single-scale GeM) with each backbone. Per backbone, in the same process on the same images (each pipeline is timed once before and
once after the naive loop, mirrored, and the mean is kept):
- naive: one image at a time with default settings — ``load_image``, the PyTorch model in NCHW
  under ``torch.no_grad``, GeM, L2 — as a user would first write it;
- torch pipeline: ``Embedder(backend="torch").embed_files`` (decoding process, batches of one
  shape, channels_last, inference_mode);
- openvino pipeline: ``Embedder(backend="openvino").embed_files`` (the same, inference by
  OpenVINO, one single-core inference thread per core).
Every pipeline's descriptors are compared with the naive ones (minimum cosine). The share of the
compute bound is images/s × the backbone's FLOPs per image (counted by PyTorch at the Paris
shape 384×512) / the float32 matmul GFLOP/s measured in the same run. For the first backbone the
pipeline settings (decoding processes × batch size) are swept, and the ways of spreading
inference over the cores are compared (``thread_layouts``). Writes
``artifacts/bench/extraction.json``.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import BENCH_CONFIG, DEFAULT_PARIS, matmul_gflops, paris_paths, write_result

from core.config import EmbeddingConfig
from core.embed.backbones import create_backbone, list_backbones
from core.embed.embedder import Embedder
from core.embed.pooling import pool
from core.images import load_image, to_tensor

SWEEP = [(workers, batch) for workers in (0, 1) for batch in (1, 4, 8)]


def naive_loop(config: EmbeddingConfig, paths: list[str]) -> tuple[np.ndarray, float]:
    """Descriptors [n, dim] and seconds of the one-image-at-a-time loop with default settings."""
    model = create_backbone(config.backbone, config.weights)
    start = time.perf_counter()
    out = []
    with torch.no_grad():
        for p in paths:
            fmap = model(to_tensor(load_image(p, config.max_size)).unsqueeze(0))
            out.append(F.normalize(pool(fmap, config.pooling, config.gem_p), dim=1)[0].numpy())
    return np.stack(out), time.perf_counter() - start


def pipeline(embedder: Embedder, paths: list[str], **kw) -> tuple[np.ndarray, float]:
    """Descriptors in input order and seconds of ``Embedder.iter_files``."""
    start = time.perf_counter()
    found = dict(embedder.iter_files(paths, progress=False, **kw))
    seconds = time.perf_counter() - start
    return np.stack([found[i] for i in range(len(paths))]), seconds


def gflop_per_image(config: EmbeddingConfig, shape: tuple[int, int] = (384, 512)) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model = create_backbone(config.backbone, config.weights)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.rand(1, 3, *shape))
    return counter.get_total_flops() / 1e9


def settings_sweep(embedder: Embedder, paths: list[str]) -> list[dict]:
    """images/s of the pipeline for each (decoding processes, batch size) of ``SWEEP``, measured
    twice, in forward then reverse order, so that a drift of the machine's load does not favour
    one end; the mean of both rounds is kept."""
    seconds: dict[tuple[int, int], list[float]] = {key: [] for key in SWEEP}
    for order in (SWEEP, SWEEP[::-1]):
        for workers, batch in order:
            seconds[(workers, batch)].append(pipeline(embedder, paths, workers=workers, batch_size=batch)[1])
    first = float(np.mean(seconds[SWEEP[0]]))
    rows = []
    for (workers, batch), s in seconds.items():
        rows.append({"backbone": embedder.config.backbone, "workers": workers, "batch_size": batch,
                     "images_per_s": len(paths) / float(np.mean(s)), "speed_vs_first": first / float(np.mean(s)),
                     "rounds_images_per_s": [len(paths) / x for x in s]})
        print(f"  sweep workers {workers} batch {batch}: {rows[-1]['images_per_s']:.2f} img/s", flush=True)
    return rows


def thread_layouts(config: EmbeddingConfig, seconds: float = 3.0) -> list[dict]:
    """Forward-only images/s at 384×512 of the ways to use the cores: PyTorch with 1 or all
    threads, OpenVINO with one request on all cores, or one single-core request per core in
    parallel threads (the pipeline's choice)."""
    from concurrent.futures import ThreadPoolExecutor

    from core.embed.openvino import OpenVinoBackbone

    cores = torch.get_num_threads()
    x = torch.rand(1, 3, 384, 512)
    model = create_backbone(config.backbone, config.weights).to(memory_format=torch.channels_last)

    def rate(step, parallel: int = 1) -> float:
        step()
        start, n = time.perf_counter(), 0
        with ThreadPoolExecutor(parallel) as pool:
            while time.perf_counter() - start < seconds:
                list(pool.map(lambda _: step(), range(parallel)))
                n += parallel
        return n / (time.perf_counter() - start)

    def torch_model() -> None:
        with torch.inference_mode():                       # grad mode is per thread
            model(x.contiguous(memory_format=torch.channels_last))

    whole, single = OpenVinoBackbone(model, cores), OpenVinoBackbone(model, 1)
    layouts = [(f"torch channels_last, {t} thread(s)", t, lambda: rate(torch_model)) for t in sorted({1, cores})]
    layouts += [(f"openvino, 1 request x {cores} threads", cores, lambda: rate(lambda: whole(x))),
                (f"openvino, {cores} requests x 1 thread", cores, lambda: rate(lambda: single(x), cores))]
    measured: dict[str, list[float]] = {name: [] for name, _, _ in layouts}
    for order in (layouts, layouts[::-1]):                     # mirrored rounds, as in settings_sweep
        for name, threads, measure in order:
            torch.set_num_threads(threads)
            measured[name].append(measure())
    torch.set_num_threads(cores)
    first = float(np.mean(measured[layouts[0][0]]))
    rows = [{"layout": name, "images_per_s": float(np.mean(v)), "speed_vs_first": float(np.mean(v)) / first,
             "rounds_images_per_s": v} for name, v in measured.items()]
    for row in rows:
        print(f"  {row['layout']}: {row['images_per_s']:.2f} img/s", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbones", nargs="+", default=list_backbones(offline_only=True))
    p.add_argument("--images", type=int, default=100, help="Paris images per measurement (default 100)")
    p.add_argument("--max-size", type=int, default=BENCH_CONFIG.max_size)
    p.add_argument("--paris-root", type=Path, default=DEFAULT_PARIS)
    p.add_argument("--no-sweep", action="store_true", help="skip the sweep of workers × batch size")
    a = p.parse_args(argv)
    paths = paris_paths(a.paris_root)[:a.images]
    gflops = matmul_gflops()
    print(f"matmul {gflops:.1f} GFLOP/s; {len(paths)} images", flush=True)
    rows, sweep, layouts = [], [], []
    for name in a.backbones:
        cfg = replace(BENCH_CONFIG, backbone=name, max_size=a.max_size)
        flop = gflop_per_image(cfg)
        embedders = {b: Embedder(cfg, backend=b) for b in ("torch", "openvino")}
        for e in embedders.values():
            pipeline(e, paths[:4], workers=0)                  # warm-up, and the IR conversion
        # pipelines before and after the naive loop, in mirrored order, so that a drift of the
        # machine's load during the long naive loop weighs on both sides alike
        runs = {b: [pipeline(embedders[b], paths)] for b in ("openvino", "torch")}
        naive, naive_s = naive_loop(cfg, paths)
        for b in ("torch", "openvino"):
            runs[b].append(pipeline(embedders[b], paths))
        row = {"backbone": name, "gflop_per_image_384x512": flop, "naive_images_per_s": len(paths) / naive_s}
        for backend, done in runs.items():
            s = float(np.mean([sec for _, sec in done]))
            ips = len(paths) / s
            row[backend] = {"images_per_s": ips, "speedup_vs_naive": naive_s / s,
                            "rounds_images_per_s": [len(paths) / sec for _, sec in done],
                            "min_cosine_vs_naive": float(min((v * naive).sum(1).min() for v, _ in done)),
                            "compute_bound_share": ips * flop / gflops}
        row["naive_compute_bound_share"] = row["naive_images_per_s"] * flop / gflops
        rows.append(row)
        print(f"{name}: naive {row['naive_images_per_s']:.2f} img/s; torch pipeline x{row['torch']['speedup_vs_naive']:.2f}; "
              f"openvino pipeline x{row['openvino']['speedup_vs_naive']:.2f} ({row['openvino']['images_per_s']:.2f} img/s, "
              f"cos {row['openvino']['min_cosine_vs_naive']:.6f})", flush=True)
        if not a.no_sweep and not sweep:
            layouts = thread_layouts(cfg)
            sweep = settings_sweep(embedders["openvino"], paths)
        write_result("extraction", {"n_images": len(paths), "max_size": a.max_size, "matmul_gflops": gflops,
                                    "threads": torch.get_num_threads(), "rows": rows, "pipeline_sweep": sweep,
                                    "thread_layouts": layouts})
    return 0


if __name__ == "__main__":
    sys.exit(main())
