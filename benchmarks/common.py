"""Helpers shared by the benchmarks: the real Paris descriptors, vectors derived from them,
the machine's measured matmul throughput, resident memory, and the JSON writer.

Every benchmark writes ``artifacts/bench/<name>.json`` with the machine, the package versions and
the time of the run beside its tables; speed figures are always given as ratios against a
baseline measured in the same run as well as in absolute units.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import EmbeddingConfig  # noqa: E402
from core.evaluation.runs import machine_info, package_versions  # noqa: E402
from core.images import load_image  # noqa: E402
from core.paths import artifacts_dir  # noqa: E402

DEFAULT_PARIS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "paris6k"
BENCH_CONFIG = EmbeddingConfig(backbone="tf_efficientnet_lite0", pooling="gem", scales=(1.0,), max_size=512)
"""The embedding the speed benchmarks measure: single-scale GeM, pinned so that a change of the
project's default embedding does not silently change what a committed figure means (multi-scale
R-MAC, the default since the Paris sweep, runs the network at 3 scales: 1.75× the pixels)."""


def bench_dir() -> Path:
    path = artifacts_dir() / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_result(name: str, result: dict) -> Path:
    """Write ``result`` with machine, versions and timestamp to ``artifacts/bench/<name>.json``."""
    result = {"benchmark": name, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "machine": {**machine_info(), "load_average_at_end": list(os.getloadavg())},
              "versions": package_versions(), **result}
    path = bench_dir() / f"{name}.json"
    path.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(f"written {path}")
    return path


def paris_paths(root: Path = DEFAULT_PARIS) -> list[str]:
    """The Paris image files, sorted."""
    paths = sorted(str(p) for p in (Path(root) / "jpg").glob("*.jpg"))
    if not paths:
        raise SystemExit(f"no images in {root}/jpg; pass --paris-root")
    return paths


def paris_descriptors(root: Path = DEFAULT_PARIS, config: EmbeddingConfig | None = None) -> np.ndarray:
    """Real descriptors of the Paris images under ``config`` (default ``BENCH_CONFIG``; the cache of
    gallery ``paris6k``, built if absent)."""
    from core.cache.descriptors import build_embeddings
    from core.cache.galleries import register_gallery
    from core.progress import Reporter

    gallery = register_gallery("paris6k", Path(root) / "jpg")
    return build_embeddings(gallery, config or BENCH_CONFIG, reporter=Reporter.quiet()).vectors


def augmented_images(sources: list[str], folder: Path, n: int, seed: int = 0, min_side: int = 512,
                     max_side: int | None = None) -> list[str]:
    """``n`` real-photo files in ``folder``: the ``sources`` themselves first (copied), then
    crops (50–95 % of each side), horizontal flips and rescalings of them, each saved as a
    JPEG (quality 90) whose longer side stays at least ``min_side`` (so that extraction at longer
    side ``min_side`` still downscales every file, as with camera photos) and at most
    ``max_side`` (None: the source's). Existing files are reused, so reruns cost nothing."""
    from PIL import Image, ImageOps

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        src = sources[i % len(sources)]
        path = folder / f"{i:06d}_{Path(src).stem}.jpg"
        out.append(str(path))
        if path.exists():
            continue
        with load_image(src) as img:
            if i >= len(sources):
                w, h = img.size
                cw, ch = int(w * rng.uniform(0.5, 0.95)), int(h * rng.uniform(0.5, 0.95))
                x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
                img = img.crop((x, y, x + cw, y + ch))
                if rng.random() < 0.5:
                    img = ImageOps.mirror(img)
                top = max(img.size) if max_side is None else min(max_side, max(img.size))
                side = int(rng.uniform(min(min_side, top), top))
                scale = side / max(img.size)
                img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BICUBIC)
            elif max_side is not None and max(img.size) > max_side:
                img.thumbnail((max_side, max_side), Image.BICUBIC)
            img.save(path, quality=90)
    return out


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages now: how busy the shared machine was."""
    return [round(x, 2) for x in os.getloadavg()]


def derived_vectors(base: np.ndarray, n: int, dim: int, seed: int = 0, noise: float = 0.35,
                    neighbours: int = 10, chunk: int = 100_000, part: int | None = None,
                    rotate: bool = True) -> np.ndarray:
    """``n`` unit vectors of dimension ``dim`` derived from the real descriptors ``base``.

    ``base`` is mapped to ``dim`` by a random orthonormal map (an isometry when ``dim`` ≥ its
    dimension, a random projection otherwise); each new vector is a random point on the segment
    between a real descriptor and one of its ``neighbours`` nearest real descriptors, plus
    Gaussian noise of relative norm ``noise``. The neighbourhoods thus follow the real ones
    instead of being uniform noise, which would make every ANN method look either trivially good
    or hopeless. ``part`` draws another sample under the same map (a gallery made in parts).
    ``rotate=False`` keeps the real descriptors' own space (``dim`` must be theirs): vectors meant
    to be searched beside real ones, such as distractors, must not be rotated away from them."""
    rng = np.random.default_rng(seed)
    d0 = base.shape[1]
    if rotate:
        q, _ = np.linalg.qr(rng.standard_normal((max(dim, d0), max(dim, d0))).astype(np.float32))
        proj = q[:d0, :dim]
    else:
        proj = np.eye(d0, dim, dtype=np.float32)
    mapped = base.astype(np.float32) @ proj
    mapped /= np.linalg.norm(mapped, axis=1, keepdims=True)
    sims = mapped @ mapped.T
    np.fill_diagonal(sims, -np.inf)
    near = np.argsort(-sims, axis=1)[:, :neighbours]
    if part is not None:
        rng = np.random.default_rng([seed, part])
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        a = rng.integers(0, len(mapped), m)
        b = near[a, rng.integers(0, near.shape[1], m)]
        w = rng.random((m, 1), dtype=np.float32)
        x = w * mapped[a] + (1 - w) * mapped[b]
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        x += rng.standard_normal((m, dim), dtype=np.float32) * (noise / np.sqrt(dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[start:start + m] = x
    return out


def matmul_gflops(size: int = 2048, seconds: float = 2.0) -> float:
    """Measured float32 matrix-product throughput of this process (PyTorch, its thread setting)."""
    import torch

    a, b = torch.rand(size, size), torch.rand(size, size)
    a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    return 2 * size ** 3 * n / (time.perf_counter() - start) / 1e9


def openvino_matmul_gflops(streams: int, size: int = 1024, seconds: float = 2.0) -> float:
    """Measured float32 matrix-product throughput of OpenVINO in the extraction pipeline's layout:
    ``streams`` single-core inference requests in parallel threads, each multiplying two
    ``size`` × ``size`` matrices. The bound of the same runtime on the same cores."""
    from concurrent.futures import ThreadPoolExecutor

    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter([size, size], np.float32)
    model = ov.Model([ops.matmul(x, ops.constant(rng.random((size, size), dtype=np.float32)), False, False)], [x])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1,
                                                      "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
    a = rng.random((size, size), dtype=np.float32)

    def run(deadline: float) -> int:
        request, n = compiled.create_infer_request(), 0
        request.infer({0: a})
        while time.perf_counter() < deadline:
            request.infer({0: a})
            n += 1
        return n

    start = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        done = sum(pool.map(run, [start + seconds] * streams))
    return 2 * size ** 3 * done / (time.perf_counter() - start) / 1e9


def rss_mb() -> float:
    """Resident memory of this process in MB."""
    import psutil

    return psutil.Process().memory_info().rss / 1e6


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    arr = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95)),
            "mean_ms": float(arr.mean())}
