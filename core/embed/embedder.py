"""Descriptor extraction: a backbone, a pooling (or another descriptor layer: the network's
penultimate layer, a trained embedding head) and a set of scales turn an image into one
L2-normalised vector.

``Embedder`` holds the network (built once) and embeds single images (queries) or whole file
lists (galleries: images are decoded while earlier ones go through the network, batches hold
images of one shape, OpenVINO or PyTorch inference keeps every core busy, a tqdm bar shows
progress). Unreadable files
are skipped and reported, never fatal. Speed figures: ``benchmarks/bench_extraction.py``.
"""
from __future__ import annotations

import os
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from core.config import EmbeddingConfig
from core.embed.backbones import Backbone, create_backbone
from core.embed.device import (
    GPU_BATCH,
    GPU_WORKERS,
    check_precision_on_device,
    cuda_available,
    device_name,
    resolve_device,
)
from core.embed.openvino import OpenVinoBackbone, model_cache_dir, openvino_available, weights_digest
from core.embed.precision import FidelityReport, report_path, require_passed
from core.embed.quantize import Calibration, load_int8, quantize
from core.images import Box, ImageError, ImageSource, image_size, load_image, load_region, to_tensor

MIN_SIDE = 32          # smaller scaled inputs are resized up to this side
BACKENDS = ("auto", "torch", "openvino")
# Pipeline defaults, measured by an earlier benchmarks/bench_extraction.py (its "pipeline_sweep",
# before issue 22) with OpenVINO on 2 shared cores at longer side 512: batch 1 beat batches of 4
# and 8 in every run (the activations of one image stay in cache). Decoding in this thread (it
# overlaps the inference threads; JPEG draft decoding is a few % of the work) against one
# decoding process: within the machine's noise (0 vs 1 process: 19.5 vs 12.4, 17.3 vs 13.5 and
# 11.2 vs 16.3 img/s in three runs), so no process, which saves its start and the tensor pickling.
GALLERY_BATCH = 1
GALLERY_WORKERS = 0
GPU_DTYPES = {"float16": torch.float16, "bf16": torch.bfloat16}     # reduced precisions run by PyTorch on a GPU


def default_threads() -> int:
    return max(1, os.cpu_count() or 1)


def default_backend() -> str:
    """``$CBIR_BACKEND`` or "auto" (OpenVINO when installed, PyTorch otherwise)."""
    return os.environ.get("CBIR_BACKEND", "auto")


def default_device() -> str:
    """``$CBIR_DEVICE`` or "auto" (a CUDA GPU when PyTorch sees one, the CPU otherwise)."""
    return os.environ.get("CBIR_DEVICE", "auto")


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """PyTorch runs the block on ``n`` intra-op threads (OpenMP keeps the count per calling
    thread, so other threads are not affected). The resizing and pooling around an OpenVINO
    network run on one: split over two busy cores, each of those small operations waited
    20–35 ms for the second core (GeM of a 1280×12×16 map: 35 ms on 2 threads, 0.6 ms on 1,
    load 1.6–1.9), more than the network itself."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def scale_size(h: int, w: int, scale: float, patch: int = 1, min_side: int = MIN_SIDE) -> tuple[int, int]:
    """Input size of an H×W image at ``scale``: at least ``min_side`` (MIN_SIDE, or a network's
    own minimum), a multiple of ``patch`` (vision transformers) when it is above 1."""
    min_side = max(MIN_SIDE, min_side)
    size = (max(min_side, round(h * scale)), max(min_side, round(w * scale)))
    if patch > 1:
        size = tuple(max(patch, round(s / patch) * patch) for s in size)
    return size


@dataclass
class ScaleProfile:
    """Where the time of multi-scale extraction goes: seconds spent at each scale (resize,
    network, pooling), summed over the inference threads, and the calls counted."""

    seconds: dict[float, float] = field(default_factory=dict)
    calls: dict[float, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, scale: float, seconds: float) -> None:
        with self._lock:
            self.seconds[scale] = self.seconds.get(scale, 0.0) + seconds
            self.calls[scale] = self.calls.get(scale, 0) + 1

    def rows(self) -> list[dict]:
        total = sum(self.seconds.values()) or 1.0
        return [{"scale": s, "seconds": t, "calls": self.calls[s], "share": t / total,
                 "ms_per_call": t / self.calls[s] * 1000} for s, t in self.seconds.items()]


@dataclass
class ExtractionResult:
    """Vectors of the images that could be read, in input order, and the failures."""

    ids: list[str]
    vectors: np.ndarray                                   # [n, dim] float32
    failures: dict[str, str] = field(default_factory=dict)  # id -> reason
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return len(self.ids) / self.seconds if self.seconds > 0 else 0.0


def planned_shape(path: str, max_size: int) -> tuple[int, int] | None:
    """(height, width) that ``load_image(path, max_size)`` will most likely return, from the file
    header only; None when the header cannot be read (the worker then reports the failure)."""
    try:
        w, h = image_size(path)
    except Exception:  # noqa: BLE001 - unreadable files are reported by the decoding worker
        return None
    ratio = min(1.0, max_size / max(w, h, 1))
    return max(1, round(h * ratio)), max(1, round(w * ratio))


def shape_batches(shapes: Sequence[tuple[int, int] | None], batch_size: int) -> list[list[int]]:
    """Positions grouped by planned shape (first-seen order), in chunks of ``batch_size``, so that
    a batch needs no padding; unknown shapes get batches of their own."""
    groups: dict[tuple[int, int] | int, list[int]] = {}
    for i, shape in enumerate(shapes):
        groups.setdefault(shape if shape is not None else -1 - i, []).append(i)
    return [members[j:j + batch_size] for members in groups.values() for j in range(0, len(members), batch_size)]


def _decode(path: str, max_size: int) -> torch.Tensor | str:
    try:
        return to_tensor(load_image(path, max_size))
    except ImageError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - any decoder crash is a skipped file, not a dead run
        return f"{type(exc).__name__}: {exc}"


Batch = tuple[list[tuple[int, str]], list[tuple[list[int], torch.Tensor]]]


def decode_batch(paths: Sequence[str], positions: Sequence[int], max_size: int) -> Batch:
    """Decode and resize one planned batch: (failures [(position, reason)], groups [(positions,
    [B, 3, H, W] tensor)]). Images whose decoded shape differs from the plan form a group of their
    own, so nothing is ever padded."""
    failures, by_shape = [], {}
    with torch_threads(1):                  # small tensors: see torch_threads
        for i in positions:
            out = _decode(paths[i], max_size)
            if isinstance(out, str):
                failures.append((i, out))
            else:
                by_shape.setdefault(tuple(out.shape), []).append((i, out))
        groups = [([i for i, _ in items], torch.stack([t for _, t in items])) for items in by_shape.values()]
    return failures, groups


def decoded_batches(paths: Sequence[str], batches: list[list[int]], max_size: int, threads: int) -> Iterator[Batch]:
    """``decode_batch`` of each batch, in order; with ``threads`` > 0 by a pool of decoding
    threads that keeps up to 4 batches per thread ahead of the consumer.

    Threads, not processes: forking a process whose OpenVINO (TBB) and OpenMP thread pools are
    running copies their locks in whatever state they are in, with only the forking thread alive
    in the child, which is how DataLoader worker processes crashed (SIGSEGV) once the network was
    loaded before them. Pillow releases the GIL while it decodes and resizes, so decoding threads
    overlap inference as worker processes did, without the fork or the tensor pickling."""
    if threads <= 0:
        for batch in batches:
            yield decode_batch(paths, batch, max_size)
        return
    ahead: deque[Future] = deque()
    with ThreadPoolExecutor(threads, thread_name_prefix="decode") as pool:
        try:
            for batch in batches:
                ahead.append(pool.submit(decode_batch, paths, batch, max_size))
                if len(ahead) > 4 * threads:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()
        finally:
            for future in ahead:
                future.cancel()


class Embedder:
    """Backbone + pooling + scales of one ``EmbeddingConfig`` (whitening is applied elsewhere,
    on cached vectors, because it is learned from them).

    ``backend``: "torch", "openvino" (``core.embed.openvino``: same descriptors, several times faster
    on CPUs) or "auto" (OpenVINO when installed and the weights are not "random", whose IR would
    be converted anew for every build); default ``$CBIR_BACKEND`` or "auto". ``device``: "auto"
    (a CUDA GPU when present), "cpu" or "cuda" (``core.embed.device``); default ``$CBIR_DEVICE``
    or "auto". On a GPU the network runs in PyTorch, in float32 with TF32 off (the CPU's
    descriptors) or in half precision for ``precision="float16"`` (bfloat16 for "bf16", which on
    the CPU runs through OpenVINO on the CPU's bfloat16 units). ``backbone`` stays the
    PyTorch module whatever the backend (feature-map code uses it directly).

    A reduced precision (int8, float16, bf16) runs only with a passing fidelity report
    (``core.embed.precision``); ``gate=False`` skips that check, for the measurement that writes
    the report."""

    def __init__(self, config: EmbeddingConfig, threads: int | None = None, backend: str | None = None,
                 device: str | None = None, gate: bool = True) -> None:
        self.threads = threads or default_threads()
        torch.set_num_threads(self.threads)
        self.config = config
        self.device = resolve_device(device or default_device(), cuda_available())
        check_precision_on_device(config.precision, self.device)
        self.backbone: Backbone = create_backbone(config.backbone, config.weights)
        self.backbone.check_layer(config.layer)
        self.backbone = self.backbone.to(memory_format=torch.channels_last)
        # of the float32 CPU weights, before any move or cast: names the fidelity report
        self._weights_digest = weights_digest(self.backbone) if config.precision != "float32" else ""
        backend = backend or default_backend()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if self.device != "cpu":
            if backend == "openvino":
                raise ValueError("the OpenVINO backend runs on the CPU; use --device cpu or the torch backend")
            backend = "torch"
            self.backbone = self.backbone.to(self.device)
            if config.precision in GPU_DTYPES:
                self.backbone = self.backbone.to(GPU_DTYPES[config.precision])
        elif config.precision in ("int8", "bf16"):
            if backend == "torch" or not openvino_available():
                raise ValueError(f"{config.precision} inference needs the OpenVINO backend (pip install openvino)")
            backend = "openvino"
        elif backend == "auto":
            backend = "openvino" if openvino_available() and config.weights != "random" else "torch"
        self.backend = backend
        self._ov: dict[int, OpenVinoBackbone] = {}
        self._dim: int | None = None
        self.profile = ScaleProfile()
        self.fidelity: FidelityReport | None = None
        if gate and config.precision != "float32":
            self.fidelity = require_passed(self.fidelity_path(), config)

    def fidelity_path(self) -> Path:
        """Where the fidelity report of this config, these weights and this device lives."""
        return report_path(model_cache_dir(), self.config, self._weights_digest or weights_digest(self.backbone),
                           device_name(self.device))

    def quantize(self, calibration: Calibration, log: Callable[[str], None] = print) -> None:
        """Make (or find in the model cache) the int8 network of this config from ``calibration``,
        whose digest must be the config's."""
        if self.config.precision != "int8" or self.config.calibration != calibration.digest:
            raise ValueError(f"config {self.config.label()} (calibration {self.config.calibration!r}) is not the "
                             f"int8 config of calibration {calibration.digest}")
        quantize(self.backbone, calibration, lambda: self.calibration_inputs(calibration), log)
        self._ov.clear()

    def calibration_inputs(self, calibration: Calibration) -> Iterator[np.ndarray]:
        """Network inputs of the calibration images: each decoded and resized as a gallery image,
        at every scale of the config (unreadable files are skipped)."""
        for path in calibration.files:
            out = _decode(path, self.config.max_size)
            if isinstance(out, str):
                continue
            for _, x in self.scale_inputs(out.unsqueeze(0)):
                yield np.ascontiguousarray(x.numpy())

    def _openvino(self, threads: int) -> OpenVinoBackbone | None:
        """The backbone compiled for ``threads`` cores per inference (None with the torch
        backend, or when the conversion failed: then this embedder falls back to PyTorch)."""
        if self.backend != "openvino":
            return None
        if threads not in self._ov:
            if self.config.precision == "int8":       # no fall back: PyTorch would not be int8
                self._ov[threads] = OpenVinoBackbone(load_int8(self.backbone, self.config.calibration), threads)
                return self._ov[threads]
            if self.config.precision == "bf16":       # nor bf16
                self._ov[threads] = OpenVinoBackbone(self.backbone, threads, precision="bf16")
                return self._ov[threads]
            try:
                self._ov[threads] = OpenVinoBackbone(self.backbone, threads)
            except Exception as exc:  # noqa: BLE001 - any conversion failure leaves PyTorch, which works
                warnings.warn(f"OpenVINO conversion of {self.config.backbone} failed ({exc}); using PyTorch")
                self.backend = "torch"
                return None
        return self._ov[threads]

    @property
    def dim(self) -> int:
        if self._dim is None:
            side = max(64, self.backbone.spec.min_side)
            self._dim = int(self.embed_tensor(torch.rand(3, side, side)).shape[0])
        return self._dim

    def _network(self, x: torch.Tensor, ov_model: OpenVinoBackbone | None) -> torch.Tensor:
        """[B, 3, H, W] float32 inputs in [0, 1] (on the embedder's device) → float32 feature maps
        on the same device."""
        if ov_model is not None:
            return ov_model(x)
        if self.device == "cpu":
            return self.backbone(x.contiguous(memory_format=torch.channels_last)).float()
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=False, allow_tf32=False):
            return self.backbone(x.to(GPU_DTYPES.get(self.config.precision, torch.float32))).float()

    def scale_inputs(self, rgb01: torch.Tensor,
                     scales: Sequence[float] | None = None) -> Iterator[tuple[float, torch.Tensor]]:
        """(scale, [B, 3, h, w] float32 input) for each scale of the config: the decoded image is
        resized from memory, never decoded again. Resizing stays in float32 whatever the
        precision, so every precision sees the same pixels."""
        h, w = rgb01.shape[2:]
        for scale in self.config.scales if scales is None else scales:
            size = scale_size(h, w, scale, self.backbone.spec.patch_size, self.backbone.spec.min_side)
            x = rgb01
            if size != (h, w):
                x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
            yield scale, x

    @torch.inference_mode()
    def feature_map(self, rgb01: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] images in [0, 1] → [B, C, h, w] feature maps at scale 1, through the same
        backend as the descriptors (what the region-aware re-ranking of ``core.rerank`` reads)."""
        _, x = next(self.scale_inputs(rgb01.float().to(self.device), scales=(1.0,)))
        return self._network(x, self._openvino(self.threads)).cpu()

    @torch.inference_mode()
    def embed_batch(self, rgb01: torch.Tensor, threads: int | None = None) -> np.ndarray:
        """[B, 3, H, W] images in [0, 1] → [B, dim] L2-normalised float32 descriptors, averaged over
        scales. ``threads``: cores of one OpenVINO inference (default all of the embedder's).
        The time of each scale goes to ``self.profile``."""
        cfg = self.config
        ov_model = self._openvino(threads or self.threads)
        total = None
        start = time.perf_counter()
        # on a GPU the image goes over once, and is resized and pooled there
        with torch_threads(1) if ov_model is not None else nullcontext():
            for scale, x in self.scale_inputs(rgb01.float().to(self.device, non_blocking=True)):
                fmap = self._network(x, ov_model)
                vec = F.normalize(self.backbone.describe(fmap, cfg.layer, cfg.pooling, cfg.gem_p), dim=1)
                total = vec if total is None else total + vec
                if self.device != "cpu":
                    torch.cuda.synchronize(self.device)          # so that the profile times the work itself
                now = time.perf_counter()
                self.profile.add(scale, now - start)
                start = now
            return F.normalize(total, dim=1).cpu().numpy().astype(np.float32)

    def embed_tensor(self, rgb01: torch.Tensor) -> np.ndarray:
        """[3, H, W] image in [0, 1] → L2-normalised float32 descriptor, averaged over scales."""
        return self.embed_batch(rgb01.unsqueeze(0))[0]

    def embed_image(self, source: ImageSource, box: Box | Sequence[float] | None = None) -> np.ndarray:
        """Descriptor of an image (file, file-like object or decoded image), optionally of the
        crop ``box`` in its original pixels."""
        return self.embed_tensor(to_tensor(load_region(source, self.config.max_size, box)))

    def iter_files(self, paths: Sequence[str], workers: int | None = None, desc: str = "embedding",
                   progress: bool = True, batch_size: int | None = None) -> Iterator[tuple[int, np.ndarray | str]]:
        """Yield (position, descriptor or failure reason) once for each path.

        The pipeline: batches of ``batch_size`` images that share one shape (planned from the
        file headers, so batches need no padding) are decoded and resized by ``workers``
        threads (0: by this thread; ``decoded_batches``) while the network runs on earlier batches; with
        OpenVINO, one single-core inference thread per core, each on its own batch. On a GPU the
        defaults are batches of ``GPU_BATCH`` and ``GPU_WORKERS`` decoding threads (else batch
        ``GALLERY_BATCH``, ``GALLERY_WORKERS``). Results come batch by batch, so positions are
        not in input order."""
        gpu = self.device != "cpu"
        workers = (GPU_WORKERS if gpu else GALLERY_WORKERS) if workers is None else workers
        batch_size = GPU_BATCH if gpu and batch_size is None else batch_size or GALLERY_BATCH
        batches = shape_batches([planned_shape(p, self.config.max_size) for p in paths], batch_size)
        loader = decoded_batches(list(paths), batches, self.config.max_size, workers)
        streams = self.threads if self._openvino(1) is not None else 1
        threads = 1 if streams > 1 else self.threads
        bar = tqdm(total=len(paths), desc=desc, unit="img", disable=not progress, dynamic_ncols=True)
        pending: deque[tuple[list[int], Future]] = deque()

        def finished() -> Iterator[tuple[int, np.ndarray]]:
            positions, future = pending.popleft()
            vectors = future.result()
            bar.update(len(positions))
            yield from zip(positions, vectors)

        try:
            with ThreadPoolExecutor(streams) as pool:
                for failures, groups in loader:
                    for i, reason in failures:
                        bar.update(1)
                        yield i, reason
                    for positions, tensor in groups:
                        pending.append((positions, pool.submit(self.embed_batch, tensor, threads)))
                        while len(pending) > streams:
                            yield from finished()
                while pending:
                    yield from finished()
        finally:
            for _, future in pending:
                future.cancel()
            bar.close()

    def embed_files(self, paths: Sequence[str], ids: Sequence[str] | None = None,
                    workers: int | None = None, progress: bool = True,
                    on_progress: Callable[[int, int], None] | None = None) -> ExtractionResult:
        """Embed many files; ``ids`` name them in the result (default: the paths)."""
        ids = list(ids) if ids is not None else list(paths)
        found: dict[int, np.ndarray] = {}
        failures = {}
        start = time.perf_counter()
        for done, (i, out) in enumerate(self.iter_files(paths, workers, progress=progress), 1):
            if isinstance(out, str):
                failures[ids[i]] = out
            else:
                found[i] = out
            if on_progress:
                on_progress(done, len(paths))
        kept = [ids[i] for i in sorted(found)]
        vectors = [found[i] for i in sorted(found)]
        dim = vectors[0].shape[0] if vectors else 0
        arr = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, dim), np.float32)
        return ExtractionResult(kept, arr, failures, time.perf_counter() - start)
