"""Gallery extraction against the hardware's bound (issue 22), in one run on the real Paris images.

    python benchmarks/bench_extraction.py                    # 250 images, 2 mirrored rounds
    python benchmarks/bench_extraction.py --images 100 --int8 --calibration ../shared/data/corel1k

Prints and writes (``artifacts/bench/extraction.json``), with the load average before and after:

1. the bound: the float32 matrix-product GFLOP/s of this process (2048³, PyTorch, every core),
   the best of ten short runs, measured first;
2. a per-stage profile of the default pipeline, one image at a time on one core: read, decode
   (JPEG draft decoding and resizing to the longer side), to tensor, then at each scale the
   resize, the network (OpenVINO, one thread) and the pooling; then the whitening (learned on
   the descriptors once, applied per image) and the cache write (``write_npz``), per image; the first call
   of each new input shape is counted apart (what OpenVINO spends planning a shape);
3. the throughput table: the network alone (the same inputs, decoded and resized beforehand)
   and the whole pipeline (``Embedder.iter_files``), for float32, bf16 (where the CPU has
   bfloat16 units) and int8 (``--int8``), with GFLOP/s (FLOPs counted by PyTorch's
   ``FlopCounterMode`` on each image's real input shapes) and the share of the bound; and the
   ways to run one input after another at scale 1: one request on every core (latency mode: what
   a single query gets), one request on one core, and one single-core request per core in
   parallel threads (streams: what a gallery gets). Every row is measured ``--rounds`` times, the order
   reversed each round so that a drift of the shared machine's load weighs on all rows alike,
   and the mean is kept;
4. the fidelity of every reduced precision to float32 on these images: minimum and mean cosine
   of the pipeline's descriptors, and mAP with every positive as a query (the validation
   protocol of ``core.evaluation.fidelity``, when the images are the whole Paris set).
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from common import BENCH_CONFIG, DEFAULT_PARIS, load_average, matmul_gflops, paris_paths, write_result

from core.config import EmbeddingConfig
from core.embed.device import cpu_capabilities
from core.embed.embedder import Embedder, default_threads, torch_threads
from core.embed.openvino import OpenVinoBackbone
from core.embed.whitening import learn_pca_whitening
from core.files import write_npz
from core.images import load_image, to_tensor

DEFAULT = EmbeddingConfig()


@dataclass
class Row:
    """One line of the throughput table."""

    what: str
    images: int
    gflop: float                                    # FLOPs of the network over all the images, in GFLOP
    seconds: list[float] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        return self.images / float(np.mean(self.seconds))

    def gflops(self) -> float:
        return self.gflop / float(np.mean(self.seconds))

    def to_dict(self, bound: float) -> dict:
        return {"what": self.what, "images_per_s": self.images_per_s, "gflops": self.gflops(),
                "bound_share": self.gflops() / bound, "rounds_images_per_s": [self.images / s for s in self.seconds]}


def network_inputs(embedder: Embedder, paths: list[str]) -> list[list[np.ndarray]]:
    """Every image's network inputs (one per scale), decoded and resized as the pipeline does."""
    with torch_threads(1):
        return [[np.ascontiguousarray(x.numpy()) for _, x in embedder.scale_inputs(to_tensor(load_image(p, embedder.config.max_size)).unsqueeze(0))]
                for p in paths]


def count_gflop(embedder: Embedder, inputs: list[list[np.ndarray]]) -> float:
    """FLOPs of the PyTorch network over ``inputs`` (one count per distinct shape), in GFLOP."""
    from torch.utils.flop_counter import FlopCounterMode

    per_shape: dict[tuple, float] = {}
    total = 0.0
    for xs in inputs:
        for x in xs:
            if x.shape not in per_shape:
                counter = FlopCounterMode(display=False)
                with counter, torch.no_grad():
                    embedder.backbone(torch.from_numpy(x))
                per_shape[x.shape] = counter.get_total_flops() / 1e9
            total += per_shape[x.shape]
    return total


def run_streams(model: OpenVinoBackbone, inputs: list[list[np.ndarray]], streams: int) -> None:
    """Every input through ``model`` by ``streams`` threads, each with its own request."""
    def run(part: list[list[np.ndarray]]) -> None:
        request = model.request()
        for xs in part:
            for x in xs:
                request.infer({0: x})
    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(run, [inputs[i::streams] for i in range(streams)]))


def stage_profile(embedder: Embedder, paths: list[str]) -> dict[str, float]:
    """Milliseconds per image of each stage of the default pipeline, serially on one core."""
    cfg, ov = embedder.config, OpenVinoBackbone(embedder.backbone, 1)
    ms: dict[str, float] = {}
    seen: set[tuple] = set()

    def add(stage: str, start: float) -> float:
        now = time.perf_counter()
        ms[stage] = ms.get(stage, 0.0) + (now - start) * 1000 / len(paths)
        return now

    vectors = []
    with torch_threads(1):
        for p in paths:
            t = time.perf_counter()
            data = Path(p).read_bytes()
            t = add("read", t)
            img = load_image(io.BytesIO(data), cfg.max_size)
            t = add("decode + resize to the longer side", t)
            x = to_tensor(img).unsqueeze(0)
            t = add("to tensor", t)
            total = 0
            for scale, xs in embedder.scale_inputs(x):
                t = add(f"resize to scale {scale:.3g}", t)
                first = tuple(xs.shape) not in seen
                seen.add(tuple(xs.shape))
                fmap = ov(xs)
                t = add(f"network at scale {scale:.3g}" + (" (first call of a shape)" if first else ""), t)
                vec = torch.nn.functional.normalize(embedder.backbone.describe(fmap, cfg.layer, cfg.pooling, cfg.gem_p), dim=1)
                total = total + vec
                t = add(f"pooling ({cfg.pooling}) at scale {scale:.3g}", t)
            vectors.append(torch.nn.functional.normalize(total, dim=1)[0].numpy())
    vectors = np.stack(vectors)
    whitening = learn_pca_whitening(vectors, dim=min(len(vectors) - 1, 256), shrinkage=0.5)   # once per gallery
    t = time.perf_counter()
    whitening.apply(vectors)
    add("whitening (apply; learned once per gallery)", t)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        write_npz(Path(tmp) / "descriptors.npz", vectors=vectors, ids=np.array(paths))
        add("cache write", t)
    return ms


def pipeline_run(embedder: Embedder, paths: list[str]) -> tuple[np.ndarray, float]:
    """Descriptors in input order and seconds of ``Embedder.iter_files``."""
    start = time.perf_counter()
    found = dict(embedder.iter_files(paths, progress=False))
    seconds = time.perf_counter() - start
    return np.stack([found[i] for i in range(len(paths))]), seconds


def fidelity(reference: np.ndarray, reduced: np.ndarray, paths: list[str], root: Path) -> dict:
    """Cosine of each reduced descriptor to its float32 twin, and both mAPs (validation protocol)."""
    from core.evaluation.fidelity import validation_map

    cosine = (reference * reduced).sum(1)
    out = {"min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean())}
    ids = [Path(p).name for p in paths]
    try:
        out["map_float32"], out["n_queries"] = validation_map(reference, ids, root / "gt")
        out["map_reduced"], _ = validation_map(reduced, ids, root / "gt")
    except ValueError as exc:                      # too few images for the protocol
        out["map_error"] = str(exc)
    return out


def measure(rows: dict[str, tuple[Row, Callable[[], float]]], rounds: int) -> None:
    """Each row's callable timed ``rounds`` times, the order reversed each round."""
    order = list(rows)
    for r in range(rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            row, run = rows[name]
            row.seconds.append(run())
            print(f"  round {r + 1}: {name}: {row.images / row.seconds[-1]:.2f} img/s", flush=True)


def timed(step: Callable[[], object]) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        step()
        return time.perf_counter() - start
    return run


def precisions(a: argparse.Namespace) -> list[str]:
    out = ["float32"]
    if "BF16" in cpu_capabilities():
        out.append("bf16")
    if a.int8:
        out.append("int8")
    return out


def int8_config(a: argparse.Namespace, paths: list[str]) -> EmbeddingConfig:
    """The int8 default config calibrated on ``--calibration`` (default: these images)."""
    from core.embed.quantize import calibration_set

    calibration = calibration_set(a.calibration or Path(paths[0]).parent, DEFAULT.scales, DEFAULT.max_size)
    cfg = replace(DEFAULT, precision="int8", calibration=calibration.digest)
    Embedder(cfg, gate=False).quantize(calibration)
    return cfg


def throughput_rows(a: argparse.Namespace, paths: list[str]) -> tuple[dict[str, Row], dict[str, np.ndarray]]:
    """The table's rows (measured) and the pipelines' descriptors of the last round."""
    rows: dict[str, tuple[Row, Callable[[], float]]] = {}
    descriptors: dict[str, list[np.ndarray]] = {}
    n = len(paths)
    for precision in precisions(a):
        cfg = int8_config(a, paths) if precision == "int8" else replace(DEFAULT, precision=precision)
        embedder = Embedder(cfg, gate=False)
        inputs = network_inputs(embedder, paths)
        gflop = count_gflop(embedder, inputs)
        streams, latency = embedder._openvino(1), embedder._openvino(embedder.threads)
        single = [xs[:1] for xs in inputs]
        run_streams(streams, inputs[:2], 2)
        rows[f"network alone, {precision}, 3 scales, {embedder.threads} streams"] = (
            Row(f"network alone, {precision}, 3 scales, {embedder.threads} streams", n, gflop),
            timed(lambda s=streams, i=inputs: run_streams(s, i, embedder.threads)))
        one_scale = count_gflop(embedder, single)
        for mode, model, k in (("latency: 1 request x all threads", latency, 1),
                               ("1 request x 1 thread", streams, 1),
                               (f"{embedder.threads} streams x 1 thread", streams, embedder.threads)):
            rows[f"network alone, {precision}, scale 1, {mode}"] = (
                Row(f"network alone, {precision}, scale 1, {mode}", n, one_scale),
                timed(lambda m=model, i=single, k=k: run_streams(m, i, k)))
        descriptors[precision] = []
        pipeline_run(embedder, paths[:4])

        def run(e: Embedder = embedder, key: str = precision) -> float:
            vectors, seconds = pipeline_run(e, paths)
            descriptors[key].append(vectors)
            return seconds
        rows[f"pipeline, {precision}, default (3 scales)"] = (Row(f"pipeline, {precision}, default (3 scales)", n, gflop), run)
        if precision == "float32":
            gem = Embedder(replace(BENCH_CONFIG, max_size=DEFAULT.max_size))
            pipeline_run(gem, paths[:4])
            rows["pipeline, float32, single-scale GeM"] = (
                Row("pipeline, float32, single-scale GeM", n, one_scale), timed(lambda g=gem: pipeline_run(g, paths)))
    measure(rows, a.rounds)
    return {k: r for k, (r, _) in rows.items()}, {k: v[-1] for k, v in descriptors.items()}


def print_table(bound: float, rows: dict[str, Row], profile: dict[str, float]) -> None:
    print(f"\nbound: {bound:.1f} GFLOP/s float32 matmul (2048³, {torch.get_num_threads()} threads)")
    print("| stage (one image, one core) | ms | share |\n|---|---|---|")
    total = sum(profile.values())
    for stage, ms in profile.items():
        print(f"| {stage} | {ms:.2f} | {ms / total:.1%} |")
    print("\n| what | images/s | GFLOP/s | share of the bound |\n|---|---|---|---|")
    for row in rows.values():
        print(f"| {row.what} | {row.images_per_s:.2f} | {row.gflops():.1f} | {row.gflops() / bound:.1%} |")


def ratios(rows: dict[str, Row], threads: int) -> dict[str, float]:
    out = {}
    for precision in ("float32", "bf16", "int8"):
        pipe, net = rows.get(f"pipeline, {precision}, default (3 scales)"), rows.get(
            f"network alone, {precision}, 3 scales, {threads} streams")
        if pipe and net:
            out[f"{precision}: pipeline / network alone"] = pipe.images_per_s / net.images_per_s
            out[f"{precision}: pipeline / float32 pipeline"] = (
                pipe.images_per_s / rows["pipeline, float32, default (3 scales)"].images_per_s)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=250, help="Paris images (default all 250)")
    p.add_argument("--profile-images", type=int, default=40, help="images of the per-stage profile (default 40)")
    p.add_argument("--rounds", type=int, default=2, help="mirrored rounds of every row (default 2)")
    p.add_argument("--paris-root", type=Path, default=DEFAULT_PARIS)
    p.add_argument("--int8", action="store_true", help="add int8 (calibrated first: about a minute or more)")
    p.add_argument("--calibration", type=Path, default=None, help="int8 calibration folder (default: the images)")
    a = p.parse_args(argv)
    paths = paris_paths(a.paris_root)[:a.images]
    load_before = load_average()
    bound = max(matmul_gflops(seconds=0.3) for _ in range(10))     # the best of ten short runs
    print(f"matmul {bound:.1f} GFLOP/s; {len(paths)} images; load {load_before}", flush=True)
    profile = stage_profile(Embedder(DEFAULT), paths[::max(1, len(paths) // a.profile_images)][:a.profile_images])
    rows, vectors = throughput_rows(a, paths)
    fidelities = {k: fidelity(vectors["float32"], v, paths, a.paris_root) for k, v in vectors.items() if k != "float32"}
    print_table(bound, rows, profile)
    summary = ratios(rows, default_threads())
    for k, v in {**summary, **{f"{k} fidelity": f for k, f in fidelities.items()}}.items():
        print(f"{k}: {v}")
    write_result("extraction", {
        "n_images": len(paths), "max_size": DEFAULT.max_size, "config": DEFAULT.label(), "matmul_gflops": bound,
        "threads": torch.get_num_threads(), "load_average_before": load_before, "load_average_after": load_average(),
        "stage_profile_ms_per_image": profile, "rows": [r.to_dict(bound) for r in rows.values()],
        "ratios": summary, "fidelity": fidelities})
    return 0


if __name__ == "__main__":
    sys.exit(main())
