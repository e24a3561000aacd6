"""int8 backbones: OpenVINO post-training quantisation with NNCF, calibrated on real images.

The float32 IR of a backbone (``core.embed.openvino.convert``) is quantised by ``nncf.quantize``
on a hundred real photos (the user's own gallery, or any folder), each resized exactly as the
embedder resizes it at every configured scale, so the activation ranges are those the network
will see. The int8 IR is cached in the model cache under the backbone, its weights' digest and
the calibration's digest (``Calibration.digest``, which also enters the embedding config's hash:
another calibration is another network). ``core.evaluation.fidelity`` decides whether it may be
used (``core.embed.precision``).

The recipe (``RECIPE``) was chosen by measurement on tf_efficientnet_lite0, min cosine of
held-out Paris descriptors to float32: NNCF's defaults (fast bias correction, every layer
quantised) 0.953 (GeM, one scale, 42 images); with 60 calibration images and multi-scale R-MAC on
63 images, full bias correction 0.975, full bias correction with the first convolution (the RGB
stem) in float32 0.995, the last convolution in float32 instead 0.975, both 0.995: only the stem
is kept in float32.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from core.config import command_line
from core.embed.backbones import Backbone
from core.embed.openvino import convert, model_cache_dir, read_ir, save_ir, weights_digest
from core.embed.precision import PrecisionRefused
from core.files import file_digest, write_json
from core.images import list_images

# Images per calibration, each at every scale of the config (300 network inputs for the default
# three scales: NNCF's default subset size). Measured on tf_efficientnet_lite0, R-MAC ms3, min cosine
# to float32 on 63 held-out Paris images: 100 Paris images 0.9957, 300 Corel-1k images 0.9942,
# while calibration took 31 s against 176 s on 2 loaded cores.
CALIBRATION_IMAGES = 100
RECIPE = {"name": "ptq-performance-biascorrection-float-stem", "version": 2, "preset": "performance",
          "fast_bias_correction": False, "float_layers": "first convolution"}

CALIBRATE = command_line("quantize", "--calibration FOLDER")   # how a user makes an int8 network


@dataclass(frozen=True)
class Calibration:
    """The images an int8 network is calibrated on, and the digest that names it: their bytes,
    the input sizes (scales, longer side) and the recipe."""

    folder: str
    files: tuple[str, ...]      # paths
    digest: str                 # 12 hex digits

    def to_dict(self) -> dict:
        return {**asdict(self), "files": list(self.files), "n": len(self.files)}


def sample_evenly(items: list[str], n: int) -> list[str]:
    """``n`` items spread evenly over ``items`` (all of them when there are fewer): a sample of a
    photo folder that covers its sub-folders instead of the first few."""
    if len(items) <= n:
        return list(items)
    return [items[int(i * len(items) / n)] for i in range(n)]


def calibration_set(folder: str | Path, scales: tuple[float, ...], max_size: int,
                    n: int = CALIBRATION_IMAGES) -> Calibration:
    """Up to ``n`` images of ``folder`` (recursively, evenly spread) and their digest."""
    files = [str(Path(folder) / f) for f in sample_evenly(list_images(folder), n)]
    if not files:
        raise ValueError(f"no images to calibrate int8 on in {folder}")
    h = hashlib.sha256(json.dumps({"recipe": RECIPE, "scales": list(scales), "max_size": max_size}).encode())
    for f in files:
        h.update(file_digest(f).encode())
    return Calibration(str(folder), tuple(files), h.hexdigest()[:12])


def int8_ir_path(backbone: Backbone, calibration_digest: str) -> Path:
    import openvino as ov

    return (model_cache_dir() / f"{backbone.spec.name}-{weights_digest(backbone)}-int8-{calibration_digest}"
            f"-ov{ov.__version__.split('-')[0]}.xml")


def _float_stem(model):
    """NNCF scope of the first convolution, kept in float32 (see ``RECIPE``)."""
    import nncf

    convs = [op.get_friendly_name() for op in model.get_ordered_ops()
             if op.get_type_name() in ("Convolution", "GroupConvolution")]
    return nncf.IgnoredScope(names=convs[:1])


def quantize(backbone: Backbone, calibration: Calibration, inputs: Callable[[], Iterable[np.ndarray]],
             log: Callable[[str], None] = print) -> Path:
    """Quantise ``backbone`` to int8 on ``inputs()`` (network inputs [1, 3, H, W] in [0, 1],
    float32, made from the calibration images) and cache the IR; returns its path. An IR already
    cached for this calibration is reused only when it matches its digests and reads
    (``read_ir``): a damaged one is removed and calibrated again. No readable calibration image
    is a ``ValueError``."""
    import logging

    import nncf
    import openvino as ov

    path = int8_ir_path(backbone, calibration.digest)
    if read_ir(path) is not None:
        return path
    samples = list(inputs())
    if not samples:
        raise ValueError(f"none of the {len(calibration.files)} calibration images in {calibration.folder} could be "
                         f"read; calibrate on a folder of readable photos (--calibration FOLDER)")
    nncf.set_log_level(logging.WARNING)          # its INFO lines list every layer left unquantised
    model = convert(backbone)
    log(f"calibrating int8 {backbone.spec.name} on {len(calibration.files)} images of {calibration.folder} "
        f"({len(samples)} network inputs)")
    start = time.perf_counter()
    quantized = nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples),
                              preset=nncf.QuantizationPreset.PERFORMANCE, fast_bias_correction=False,
                              ignored_scope=_float_stem(model))
    seconds = time.perf_counter() - start
    save_ir(quantized, path)
    write_json(path.with_suffix(".calibration.json"), {
        **calibration.to_dict(), "recipe": RECIPE, "seconds": seconds, "nncf": nncf.__version__,
        "openvino": ov.__version__, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return path


def load_int8(backbone: Backbone, calibration_digest: str):
    """The cached int8 OpenVINO model of ``backbone`` for this calibration digest."""
    if not calibration_digest:
        raise PrecisionRefused(f"an int8 config needs the digest of its calibration images; make it with "
                               f"{CALIBRATE} (or let index/evaluate/search calibrate on the gallery)")
    path = int8_ir_path(backbone, calibration_digest)
    model = read_ir(path)
    if model is None:
        raise PrecisionRefused(f"no int8 {backbone.spec.name} calibrated as {calibration_digest} in {path.parent}; "
                               f"calibrate it again with {CALIBRATE}")
    return model
