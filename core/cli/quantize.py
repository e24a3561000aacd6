"""``quantize``: make an int8 network (or check float16 or bf16) and measure its fidelity to float32."""
from __future__ import annotations

import argparse
from pathlib import Path

from core.cache.galleries import load_gallery
from core.cli import options


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quantize", help="make an int8 network (or check float16 or bf16) and measure its fidelity to float32",
                       description="int8: OpenVINO post-training quantisation (NNCF) calibrated on --calibration FOLDER "
                                   "or on the images of gallery --name; then, like float16 and bf16, embeds the labelled "
                                   "validation set at float32 and at the reduced precision and writes the report: "
                                   "used only when every descriptor stays within cosine 0.99 (float16: 0.999) and "
                                   "mAP within 0.5 points of float32.")
    p.add_argument("--name", help="gallery whose images calibrate int8")
    p.add_argument("--remeasure", action="store_true", help="measure the fidelity again even if a report exists")
    options.add_quiet(p)
    options.add_embedding_args(p)
    p.set_defaults(run=run)


def run(a: argparse.Namespace) -> int:
    from dataclasses import replace

    from core.cache.calibration import resolve_calibration
    from core.cache.galleries import Gallery
    from core.evaluation.fidelity import ensure_precision

    if a.precision == "float32":
        raise ValueError("choose the precision to check: --precision int8, float16 or bf16")
    if a.precision == "int8" and not (a.name or a.calibration):
        raise ValueError("int8 calibrates on real photos: give --name GALLERY (its images) or --calibration FOLDER")
    cfg, calibration = options.config_from_args(a), None
    if a.precision == "int8":
        gallery = load_gallery(a.name) if a.name else Gallery("calibration", Path(a.calibration))
        cfg, calibration = resolve_calibration(gallery, replace(cfg, calibration=""), a.calibration)
    report = ensure_precision(cfg, calibration, options.validation_root(a), a.device, progress=not a.quiet,
                              remeasure=a.remeasure)
    print(f"{cfg.label()} ({cfg.key()}) may be used: pass --precision {cfg.precision}"
          + (f" --calibration {calibration.folder}" if calibration is not None and not a.name else "")
          + f"; {report.n_images} validation images in {report.seconds:.0f} s")
    return 0
