"""OpenVINO inference of a backbone on the CPU: same descriptors as PyTorch, several times faster.

The backbone (input normalisation included) is converted once with ``openvino.convert_model``,
with dynamic batch, height and width, and saved as OpenVINO IR under the model cache
(``$CBIR_MODEL_CACHE``, default ``~/.cache/cbir/openvino``), named by a hash of its weights, so
later processes only read and compile it (under a second). Every IR is written with the sha256
of its ``.xml`` and ``.bin`` (``<name>.sha256.json``) and checked against it when read
(``read_ir``): a damaged, truncated or unverified IR is removed with a one-line warning and made
again, never used. Inference runs in float32
(``INFERENCE_PRECISION_HINT``) unless bf16 is asked for: OpenVINO's default on CPUs with bfloat16
units moves the feature maps (cosine 0.996 instead of ≥ 0.99999 to PyTorch), so bfloat16 is a
precision of its own (``--precision bf16``), behind the fidelity gate like int8.

``OpenVinoBackbone.request()`` gives one inference request per calling thread, so that several
threads can each run a batch on one core while Python decodes the next images.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import torch

from core.embed.backbones import Backbone
from core.files import exclusive_lock, file_digest, write_json

EXAMPLE_SHAPE = (1, 3, 384, 512)


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def model_cache_dir() -> Path:
    return Path(os.environ.get("CBIR_MODEL_CACHE", Path.home() / ".cache" / "cbir" / "openvino"))


def weights_digest(module: torch.nn.Module) -> str:
    """Hash of every parameter and buffer (names, shapes and bytes): the IR's cache key."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _ir_path(backbone: torch.nn.Module, name: str) -> Path:
    import openvino as ov

    return model_cache_dir() / f"{name}-{weights_digest(backbone)}-ov{ov.__version__.split('-')[0]}.xml"


def digest_path(path: Path) -> Path:
    """The digests of the IR ``path`` (``.xml``): sha256 of its ``.xml`` and ``.bin``."""
    return path.with_suffix(".sha256.json")


def _lock(path: Path) -> Path:
    return path.with_name(f".{path.stem}.lock")


def save_ir(model, path: Path) -> None:
    """Write an OpenVINO model as IR (``.xml`` + ``.bin``) with its digests, under the IR's lock:
    both files go to temporary names first, their digests are written, and the ``.xml`` that
    readers look for appears last."""
    import openvino as ov

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.xml")
    ov.save_model(model, str(tmp), compress_to_fp16=False)
    with exclusive_lock(_lock(path)):
        write_json(digest_path(path), {"xml": file_digest(tmp, remember=False), "bin": file_digest(tmp.with_suffix(".bin"), remember=False)})
        tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))
        tmp.replace(path)


def ir_problem(path: Path) -> str | None:
    """What is wrong with the cached IR ``path`` (None: its files match their digests)."""
    try:
        expected = json.loads(digest_path(path).read_text())
    except (OSError, ValueError):
        return "no readable digest was written with it"
    for suffix in ("xml", "bin"):
        part = path.with_suffix(f".{suffix}")
        if not part.exists():
            return f"its .{suffix} is missing"
        if not isinstance(expected, dict) or file_digest(part) != expected.get(suffix):
            return f"its .{suffix} does not match the sha256 written with it"
    return None


def remove_ir(path: Path) -> None:
    for part in (path, path.with_suffix(".bin"), digest_path(path)):
        part.unlink(missing_ok=True)


def read_ir(path: Path):
    """The OpenVINO model cached at ``path`` if its files match their digests and it reads; None
    when there is none. A damaged one (bytes changed, truncated, a file or the digest missing) is
    removed with a one-line warning, and None returned, so that the caller makes it again."""
    import openvino as ov

    if not path.exists():                   # nothing to check (and no lock file left for nothing)
        return None
    with exclusive_lock(_lock(path)):
        if not path.exists():
            return None
        problem = ir_problem(path)
        if problem is None:
            try:
                return ov.Core().read_model(str(path))
            except RuntimeError as exc:
                problem = f"OpenVINO cannot read it: {str(exc).strip().splitlines()[0]}"
        remove_ir(path)
    warnings.warn(f"cached OpenVINO model {path} removed, made again: {problem}", stacklevel=2)
    return None


def convert(backbone: Backbone | torch.nn.Module, name: str | None = None):
    """The OpenVINO model of ``backbone`` (from the IR cache, converted and cached if absent);
    any module from RGB in [0, 1] to a feature map converts (``name`` then names its IR)."""
    import openvino as ov

    path = _ir_path(backbone, name or backbone.spec.name)
    cached = read_ir(path)
    if cached is not None:
        return cached
    model = ov.convert_model(backbone.eval(), example_input=torch.rand(EXAMPLE_SHAPE),
                             input=[ov.PartialShape([-1, 3, -1, -1])])
    save_ir(model, path)
    return model


class OpenVinoBackbone:
    """A compiled OpenVINO backbone: ``__call__`` maps an RGB [B, 3, H, W] batch in [0, 1] to the
    feature map [B, C, h, w], like ``Backbone.forward``.

    ``model`` is the PyTorch backbone (converted through the IR cache), any module from RGB in
    [0, 1] to a feature map (``name`` then names its IR: training's frozen trunk), or an OpenVINO
    model already made, such as the int8 one of ``core.embed.quantize``; ``threads`` is the number
    of cores of one inference (1 when several threads share the work); ``precision`` "bf16" runs
    the network in bfloat16, any other in float32 (the layers an int8 model left in floating
    point included)."""

    def __init__(self, model, threads: int, name: str | None = None, precision: str = "float32") -> None:
        import openvino as ov

        self.threads = threads
        if isinstance(model, torch.nn.Module):
            model = convert(model, name)
        self._compiled = ov.Core().compile_model(model, "CPU", {
            "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"})
        self._local = threading.local()

    def request(self):
        """This thread's inference request."""
        if not hasattr(self._local, "request"):
            self._local.request = self._compiled.create_infer_request()
        return self._local.request

    def __call__(self, rgb01: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(rgb01.detach().float().numpy())
        out = self.request().infer({0: x})
        return torch.from_numpy(np.array(out[0], copy=True))
