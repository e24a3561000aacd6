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
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from core.config import EmbeddingConfig
from core.embed.backbones import Backbone, create_backbone
from core.embed.openvino import OpenVinoBackbone, openvino_available
from core.images import Box, ImageError, ImageSource, image_size, load_image, load_region, to_tensor

MIN_SIDE = 32          # smaller scaled inputs are resized up to this side
BACKENDS = ("auto", "torch", "openvino")
# Pipeline defaults, measured by benchmarks/bench_extraction.py (artifacts/bench/extraction.json,
# "pipeline_sweep") with OpenVINO on 2 shared cores at longer side 512: batch 1 beat batches of 4
# and 8 in every run (the activations of one image stay in cache). Decoding in this thread (it
# overlaps the inference threads; JPEG draft decoding is a few % of the work) against one
# decoding process: within the machine's noise (0 vs 1 process: 19.5 vs 12.4, 17.3 vs 13.5 and
# 11.2 vs 16.3 img/s in three runs), so no process, which saves its start and the tensor pickling.
GALLERY_BATCH = 1
GALLERY_WORKERS = 0


def default_threads() -> int:
    return max(1, os.cpu_count() or 1)


def default_backend() -> str:
    """``$CBIR_BACKEND`` or "auto" (OpenVINO when installed, PyTorch otherwise)."""
    return os.environ.get("CBIR_BACKEND", "auto")


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
    be converted anew for every build); default ``$CBIR_BACKEND`` or "auto". ``backbone`` stays
    the PyTorch module whatever the backend (feature-map code uses it directly)."""

    def __init__(self, config: EmbeddingConfig, threads: int | None = None, backend: str | None = None) -> None:
        self.threads = threads or default_threads()
        torch.set_num_threads(self.threads)
        self.config = config
        self.backbone: Backbone = create_backbone(config.backbone, config.weights)
        self.backbone.check_layer(config.layer)
        self.backbone = self.backbone.to(memory_format=torch.channels_last)
        backend = backend or default_backend()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "auto":
            backend = "openvino" if openvino_available() and config.weights != "random" else "torch"
        self.backend = backend
        self._ov: dict[int, OpenVinoBackbone] = {}
        self._dim: int | None = None

    def _openvino(self, threads: int) -> OpenVinoBackbone | None:
        """The backbone compiled for ``threads`` cores per inference (None with the torch
        backend, or when the conversion failed: then this embedder falls back to PyTorch)."""
        if self.backend != "openvino":
            return None
        if threads not in self._ov:
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

    def input_size(self, height: int, width: int, scale: float = 1.0) -> tuple[int, int]:
        """Network input size of an image of ``height`` x ``width`` at ``scale``: at least
        MIN_SIDE (or the network's own minimum), and a multiple of the patch size for ViTs."""
        min_side = max(MIN_SIDE, self.backbone.spec.min_side)
        size = (max(min_side, round(height * scale)), max(min_side, round(width * scale)))
        patch = self.backbone.spec.patch_size
        return tuple(max(patch, round(s / patch) * patch) for s in size) if patch > 1 else size

    def _resized(self, rgb01: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        h, w = rgb01.shape[2:]
        size = self.input_size(h, w, scale)
        if size == (h, w):
            return rgb01
        return F.interpolate(rgb01, size=size, mode="bilinear", antialias=True, align_corners=False)

    def _forward(self, x: torch.Tensor, threads: int | None = None) -> torch.Tensor:
        ov_model = self._openvino(threads or self.threads)
        return ov_model(x) if ov_model is not None else self.backbone(x.contiguous(memory_format=torch.channels_last))

    @torch.inference_mode()
    def feature_map(self, rgb01: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] images in [0, 1] → [B, C, h, w] feature maps at scale 1, through the same
        backend as the descriptors (what the region-aware re-ranking of ``core.rerank`` reads)."""
        return self._forward(self._resized(rgb01))

    @torch.inference_mode()
    def embed_batch(self, rgb01: torch.Tensor, threads: int | None = None) -> np.ndarray:
        """[B, 3, H, W] images in [0, 1] → [B, dim] L2-normalised float32 descriptors, averaged over
        scales. ``threads``: cores of one OpenVINO inference (default all of the embedder's)."""
        cfg, total = self.config, None
        for scale in cfg.scales:
            fmap = self._forward(self._resized(rgb01, scale), threads)
            vec = F.normalize(self.backbone.describe(fmap.float(), cfg.layer, cfg.pooling, cfg.gem_p), dim=1)
            total = vec if total is None else total + vec
        return F.normalize(total, dim=1).numpy().astype(np.float32)

    def embed_tensor(self, rgb01: torch.Tensor) -> np.ndarray:
        """[3, H, W] image in [0, 1] → L2-normalised float32 descriptor, averaged over scales."""
        return self.embed_batch(rgb01.unsqueeze(0))[0]

    def embed_image(self, source: ImageSource, box: Box | Sequence[float] | None = None) -> np.ndarray:
        """Descriptor of an image (file, file-like object or decoded image), optionally of the
        crop ``box`` in its original pixels."""
        return self.embed_tensor(to_tensor(load_region(source, self.config.max_size, box)))

    def embed_pil(self, img: Image.Image) -> np.ndarray:
        """Descriptor of an already loaded (and cropped) PIL image, resized to ``max_size``."""
        return self.embed_image(img)

    def iter_files(self, paths: Sequence[str], workers: int | None = None, desc: str = "embedding",
                   progress: bool = True, batch_size: int = GALLERY_BATCH) -> Iterator[tuple[int, np.ndarray | str]]:
        """Yield (position, descriptor or failure reason) once for each path.

        The pipeline: batches of ``batch_size`` images that share one shape (planned from the
        file headers, so batches need no padding) are decoded and resized by ``workers``
        threads (0: by this thread; ``decoded_batches``) while the network runs on earlier batches; with
        OpenVINO, one single-core inference thread per core, each on its own batch. Results come
        batch by batch, so positions are not in input order."""
        workers = GALLERY_WORKERS if workers is None else workers
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
