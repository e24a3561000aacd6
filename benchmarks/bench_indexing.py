"""Indexing a photo library: float32 against int8 extraction with the default embedding, the
pipeline against the compute bounds measured in the same run, where the time of the scales goes,
and the time of 10,000 photos projected from a measured run of at least 1,000.

    python benchmarks/bench_indexing.py             # the figures (about 10 minutes on 2 cores)
    python benchmarks/bench_indexing.py --quick     # a check that it works (about 3 minutes)
    python benchmarks/bench_indexing.py --projection-only   # the 10,000-photo projection alone

Everything runs in one process on the same real images:
- fidelity: ``core.evaluation.fidelity.ensure_precision`` quantises the default backbone to int8
  (NNCF, calibrated on ``--calibration``: Corel-1k by default, real photos that are not the
  validation images) and measures the gate on Paris (every descriptor within cosine 0.99 of
  float32, mAP within 0.5 points with every positive as a query); measured again each run unless
  ``--quick``.
- pipeline: ``Embedder.iter_files`` (the code ``python -m core index`` runs) over the Paris
  images with float32 and int8, in mirrored rounds (f32, int8, int8, f32) so that a drift of the
  shared machine's load weighs on both alike; per-scale time from ``Embedder.profile``.
- compute bounds: (a) the float32 matrix-product bound: images/s × the backbone's FLOPs on the
  very inputs (every scale, counted by PyTorch) / the float32 matmul GFLOP/s measured here, the
  higher of PyTorch on all cores and OpenVINO in the pipeline's layout (one single-core request
  per core), each measured in both float32 rounds;
  (b) the network bound: the same decoded and resized inputs through the network alone, in the
  pipeline's layout (one single-core inference per core), so that pipeline / bound is the share
  left to decoding, resizing, pooling and Python.
- projection: ``build_embeddings`` (what ``python -m core index`` calls) on ``--projection-images``
  files, for each of ``--precisions`` (float32, bf16, int8): symbolic links in ``--work`` to the
  250 Paris photos at their own size (longer side 1024), each linked under several names
  (``linked_photos``), into a fresh cache; 10,000 images are
  projected as the start-up (network load and compile, measured) plus 10,000 / the measured
  images/s: extraction is a stream of independent images, so its time is linear in their number.

Writes ``artifacts/bench/indexing.json`` (``--output``), with the load average before and after
each part.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from common import (
    DEFAULT_PARIS,
    load_average,
    matmul_gflops,
    openvino_matmul_gflops,
    paris_paths,
    write_result,
)

from core.config import DEFAULT_CONFIG, PRECISIONS, EmbeddingConfig
from core.embed.embedder import Embedder, ScaleProfile
from core.embed.openvino import OpenVinoBackbone
from core.embed.quantize import calibration_set, load_int8
from core.evaluation.fidelity import ensure_precision
from core.images import load_image, to_tensor

DEFAULT_CALIBRATION = DEFAULT_PARIS.parent / "corel1k"
TARGETS = {"int8_speedup": 1.8, "compute_bound_share": 0.60, "projected_10k_seconds": 300.0}   # issue 22: 5 min


def pipeline_rate(embedder: Embedder, paths: list[str]) -> tuple[float, np.ndarray, list[dict]]:
    """images/s, descriptors in input order, and the per-scale profile of one pipeline run."""
    embedder.profile = ScaleProfile()
    start = time.perf_counter()
    found = dict(embedder.iter_files(paths, progress=False))
    seconds = time.perf_counter() - start
    return len(paths) / seconds, np.stack([found[i] for i in range(len(paths))]), embedder.profile.rows()


def network_inputs(embedder: Embedder, paths: list[str]) -> list[list[torch.Tensor]]:
    """For each image, its network inputs at every scale, decoded and resized as the pipeline does."""
    out = []
    for p in paths:
        x = to_tensor(load_image(p, embedder.config.max_size)).unsqueeze(0)
        out.append([t.contiguous() for _, t in embedder.scale_inputs(x)])
    return out


def network_bound(compiled: OpenVinoBackbone, inputs: list[list[torch.Tensor]], streams: int, seconds: float) -> float:
    """images/s of the network alone on ``inputs`` (every scale of an image per item), with
    ``streams`` single-core inferences in parallel threads, as the pipeline runs them; at least
    as many images as ``streams`` passes over the inputs (``seconds`` 0: just that, a warm-up of their shapes)."""
    def one(i: int) -> None:
        for x in inputs[i % len(inputs)]:
            compiled(x)

    n, start = 0, time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        while n < len(inputs) * streams or time.perf_counter() - start < seconds:
            list(pool.map(one, range(n, n + streams * 4)))
            n += streams * 4
    return n / (time.perf_counter() - start)


def gflop_per_image(embedder: Embedder, inputs: list[list[torch.Tensor]]) -> float:
    """Mean float32-equivalent GFLOP of the backbone over the images' inputs at every scale
    (counted by PyTorch's FLOP counter once per distinct shape)."""
    from torch.utils.flop_counter import FlopCounterMode

    cache: dict[tuple[int, ...], float] = {}
    total = 0.0
    model = embedder.backbone
    for per_image in inputs:
        for x in per_image:
            shape = tuple(x.shape)
            if shape not in cache:
                counter = FlopCounterMode(display=False)
                with counter, torch.no_grad():
                    model(x)
                cache[shape] = counter.get_total_flops() / 1e9
            total += cache[shape]
    return total / len(inputs)


def projection(cfg: EmbeddingConfig, files: list[str], folder: Path) -> dict:
    """Start-up and images/s of ``build_embeddings`` on ``files`` into a fresh cache, and the
    10,000-image projection."""
    from core.cache.descriptors import build_embeddings
    from core.cache.galleries import register_gallery
    from core.progress import Reporter

    os.environ["CBIR_ARTIFACTS"] = str(folder / f"artifacts-{cfg.precision}")
    load_before = load_average()
    start = time.perf_counter()
    embedder = Embedder(cfg.base(), device="cpu", gate=False)     # speed is measured even if the gate refused
    embedder.dim                                            # loads and compiles the network
    startup = time.perf_counter() - start
    gallery = register_gallery("library", Path(files[0]).parent)
    start = time.perf_counter()
    emb = build_embeddings(gallery, cfg, embedder, reporter=Reporter.quiet())
    seconds = time.perf_counter() - start
    rate = len(emb.ids) / seconds
    return {"precision": cfg.precision, "n_images": len(emb.ids), "n_failed": len(emb.failures),
            "startup_seconds": startup, "seconds": seconds, "images_per_s": rate,
            "projected_10k_seconds": startup + 10_000 / rate, "load_average_before": load_before,
            "load_average_after": load_average()}


def gate_and_rounds(a: argparse.Namespace, result: dict, cfg: EmbeddingConfig, int8: EmbeddingConfig,
                    calibration) -> None:
    """The int8 fidelity gate, then the pipeline, network-alone and matmul rounds (into ``result``)."""
    # fidelity gate (also makes the int8 network)
    load_before = load_average()
    try:
        report = ensure_precision(int8, calibration, a.paris_root, device="cpu", progress=False, remeasure=not a.quick)
        result["fidelity"] = {**report.to_dict(), "load_average_before": load_before, "load_average_after": load_average()}
    except Exception as exc:  # noqa: BLE001 - a refused gate is a result: speed is still measured
        from core.embed.precision import read_report

        reduced = Embedder(int8, device="cpu", gate=False)
        refused = read_report(reduced.fidelity_path())
        result["fidelity"] = {**(refused.to_dict() if refused else {}), "error": str(exc)}
        print(f"int8 refused: {exc}", flush=True)
    print(f"fidelity: {result['fidelity'].get('min_cosine')} min cosine, mAP {result['fidelity'].get('map_float32')} -> "
          f"{result['fidelity'].get('map_reduced')}", flush=True)

    # pipeline, network alone and matmul, float32 and int8, in mirrored rounds on the same images,
    # so that a drift of the shared machine's load weighs on every figure alike
    paths = paris_paths(a.paris_root)[:a.images]
    embedders = {"float32": Embedder(cfg, device="cpu", backend="openvino"),
                 "int8": Embedder(int8, device="cpu", gate=False)}
    sample = paths[:min(len(paths), 24 if a.quick else 60)]
    inputs = network_inputs(embedders["float32"], sample)
    gflop = gflop_per_image(embedders["float32"], inputs)
    streams = os.cpu_count() or 1
    networks = {"float32": OpenVinoBackbone(embedders["float32"].backbone, 1),
                "int8": OpenVinoBackbone(load_int8(embedders["int8"].backbone, int8.calibration), 1)}
    for name, e in embedders.items():
        pipeline_rate(e, paths[:8])                          # warm-up: compile, first shapes
        network_bound(networks[name], inputs, streams, 0.0)
    bound_seconds = 3.0 if a.quick else 10.0
    rates: dict[str, list[float]] = {k: [] for k in embedders}
    network: dict[str, list[float]] = {k: [] for k in embedders}
    matmul: dict[str, list[float]] = {"torch": [], "openvino": []}
    profiles: dict[str, list[dict]] = {}
    vectors: dict[str, np.ndarray] = {}
    load_before = load_average()
    for name in ("float32", "int8", "int8", "float32"):
        if name == "float32":
            matmul["torch"].append(matmul_gflops(seconds=1.0 if a.quick else 3.0))
            matmul["openvino"].append(openvino_matmul_gflops(streams, seconds=1.0 if a.quick else 3.0))
        rate, vecs, prof = pipeline_rate(embedders[name], paths)
        rates[name].append(rate)
        profiles[name], vectors[name] = prof, vecs
        network[name].append(network_bound(networks[name], inputs, streams, bound_seconds))
        print(f"  {name}: pipeline {rate:.2f} img/s, network alone {network[name][-1]:.2f} img/s", flush=True)
    pipeline = {k: float(np.mean(v)) for k, v in rates.items()}
    net = {k: float(np.mean(v)) for k, v in network.items()}
    matmul_means = {k: float(np.mean(v)) for k, v in matmul.items()}
    gflops = max(matmul_means.values())                   # the highest measured is the bound
    cos = (vectors["float32"] * vectors["int8"]).sum(axis=1)
    result["pipeline"] = {"n_images": len(paths), "images_per_s": pipeline, "rounds_images_per_s": rates,
                          "int8_speedup": pipeline["int8"] / pipeline["float32"],
                          "min_cosine_int8_vs_float32": float(cos.min()), "per_scale": profiles,
                          "load_average_before": load_before, "load_average_after": load_average()}
    result["compute_bound"] = {
        "gflop_per_image": gflop, "matmul_gflops": gflops, "matmul_gflops_by_runtime": matmul_means,
        "matmul_rounds_gflops": matmul,
        "network_images": len(sample), "network_images_per_s": net, "network_rounds_images_per_s": network,
        "network_int8_speedup": net["int8"] / net["float32"], "matmul_bound_images_per_s": gflops / gflop,
        "pipeline_share_of_matmul_bound": {k: pipeline[k] * gflop / gflops for k in pipeline},
        "network_share_of_matmul_bound": {k: net[k] * gflop / gflops for k in net},
        "pipeline_share_of_network_bound": {k: pipeline[k] / net[k] for k in pipeline}}
    cb = result["compute_bound"]
    print(f"  int8 x{result['pipeline']['int8_speedup']:.2f} (network alone x{cb['network_int8_speedup']:.2f}); "
          f"share of the network bound {cb['pipeline_share_of_network_bound']}, of the matmul bound "
          f"{cb['pipeline_share_of_matmul_bound']}", flush=True)


def reached(result: dict) -> dict[str, bool]:
    """Which targets the measured figures meet (those of the parts that ran)."""
    out = {f"projected_10k_{k}": run["projected_10k_seconds"] <= TARGETS["projected_10k_seconds"]
           for k, run in result["projection"].items()}
    if "pipeline" in result:
        cb = result["compute_bound"]
        out.update({"int8_fidelity": bool(result["fidelity"].get("passed")),
                    "int8_speedup": result["pipeline"]["int8_speedup"] >= TARGETS["int8_speedup"],
                    "compute_bound_share_float32_matmul":
                        cb["pipeline_share_of_matmul_bound"]["float32"] >= TARGETS["compute_bound_share"],
                    "compute_bound_share_float32_network":
                        cb["pipeline_share_of_network_bound"]["float32"] >= TARGETS["compute_bound_share"]})
    return out


def linked_photos(sources: list[str], folder: Path, n: int) -> list[str]:
    """``n`` files in ``folder``: symbolic links to the ``sources`` (real photos at their own size,
    longer side 1024 for Paris), each source linked again under another name until ``n``: a
    library of ``n`` photos to index, whose pixels repeat but whose files are each read, decoded
    and embedded (a fresh cache knows none of them)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        link = folder / f"{i:06d}_{Path(sources[i % len(sources)]).name}"
        if not link.is_symlink():
            link.symlink_to(Path(sources[i % len(sources)]).resolve())
        out.append(str(link))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="few images and short timings: checks that it works")
    p.add_argument("--images", type=int, default=250, help="Paris images of the pipeline rounds (default 250)")
    p.add_argument("--projection-images", type=int, default=1000, help="files of the measured run (default 1000)")
    p.add_argument("--paris-root", type=Path, default=DEFAULT_PARIS)
    p.add_argument("--calibration", type=Path, default=DEFAULT_CALIBRATION,
                   help="folder of the int8 calibration images (default the shared Corel-1k photos)")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "cbir-bench-indexing",
                   help="folder of the augmented photos and the fresh caches (reused between runs)")
    p.add_argument("--output", default="indexing", help="JSON name under artifacts/bench/ (default indexing)")
    p.add_argument("--projection-only", action="store_true",
                   help="only the measured run and the 10k projection (no gate, no rounds)")
    p.add_argument("--precisions", nargs="+", default=["float32", "bf16", "int8"], choices=PRECISIONS,
                   help="precisions of the measured run (default float32 bf16 int8; bf16 needs bfloat16 units)")
    a = p.parse_args(argv)
    if a.quick:
        a.images, a.projection_images = min(a.images, 40), min(a.projection_images, 150)
    torch.set_num_threads(os.cpu_count() or 1)
    result: dict = {"quick": a.quick, "targets": TARGETS, "config": DEFAULT_CONFIG.to_dict(),
                    "load_average_start": load_average()}
    print(f"load {result['load_average_start']}", flush=True)

    cfg = DEFAULT_CONFIG
    calibration = calibration_set(a.calibration if a.calibration.is_dir() else a.paris_root / "jpg",
                                  cfg.scales, cfg.max_size)
    int8 = replace(cfg, precision="int8", calibration=calibration.digest)
    if a.projection_only:
        Embedder(int8, device="cpu", gate=False).quantize(calibration)
    else:
        gate_and_rounds(a, result, cfg, int8, calibration)

    # measured run of >= 1000 files and the 10k projection
    files = linked_photos(paris_paths(a.paris_root), a.work / "linked", a.projection_images)
    configs = [replace(cfg, precision=pr) for pr in a.precisions if pr != "int8"] + (
        [int8] if "int8" in a.precisions else [])
    saved = os.environ.get("CBIR_ARTIFACTS")
    try:
        runs = {}
        for c in configs:
            runs[c.precision] = projection(c, files, Path(tempfile.mkdtemp(dir=a.work)))
            print(f"  {runs[c.precision]['n_images']} files, {c.precision}: {runs[c.precision]['images_per_s']:.2f} img/s, "
                  f"10k projected {runs[c.precision]['projected_10k_seconds'] / 60:.1f} min", flush=True)
    finally:
        if saved is None:
            os.environ.pop("CBIR_ARTIFACTS", None)
        else:
            os.environ["CBIR_ARTIFACTS"] = saved
    result["projection"] = runs
    result["reached"] = reached(result)
    result["load_average_end"] = load_average()
    print(f"reached: {result['reached']}", flush=True)
    write_result(a.output, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
