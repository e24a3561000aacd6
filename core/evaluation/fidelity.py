"""Measure whether a reduced precision (int8, float16) keeps retrieval, before it is used.

The validation set is a labelled benchmark folder (Paris6k by default, the one the downloader
fetches or ``../shared/data``): its images are embedded at float32 and at the reduced precision,
and the report (``core.embed.precision.FidelityReport``) gives the worst and mean cosine between
each descriptor and its twin, and the mAP of both with every positive image as a query
(``core.datasets.validation.landmark_queries``: about 200 queries on the 250 shipped Paris
images, where the 12 official ones could not resolve half a point).
"""
from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from core.config import EmbeddingConfig, command_line
from core.datasets import dataset_layout, load_ground_truth, resolve, stem_of
from core.datasets.validation import VALIDATION_PROTOCOL, landmark_queries
from core.embed.embedder import Embedder
from core.embed.precision import FidelityReport, PrecisionRefused, read_report, write_report
from core.embed.quantize import Calibration
from core.evaluation.metrics import score_queries
from core.images import list_images
from core.index import ExactIndex
from core.paths import REPO_ROOT

VALIDATION_DATASET = "paris6k"


def default_validation_root() -> Path | None:
    """``$CBIR_VALIDATION_ROOT``, else the first Paris6k folder found: ``data/paris6k`` (where
    ``python -m core data fetch paris6k`` puts it) or ``../shared/data/paris6k``."""
    env = os.environ.get("CBIR_VALIDATION_ROOT")
    candidates = [Path(env)] if env else [Path("data") / VALIDATION_DATASET,
                                          REPO_ROOT.parent / "shared" / "data" / VALIDATION_DATASET]
    return next((c for c in candidates if (c / "gt").is_dir() or (c / "jpg").is_dir()), None)


def validation_map(vectors: np.ndarray, ids: list[str], gt_dir: Path, dataset: str = VALIDATION_DATASET) -> tuple[float, int]:
    """mAP (in [0, 1]) and number of queries of descriptors ``vectors`` (rows in ``ids`` order) with
    every positive of the ground truth as a query, by exact cosine ranking."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gt = load_ground_truth(dataset, gt_dir)
        try:
            queries = landmark_queries(gt, {stem_of(i) for i in ids}, f"{VALIDATION_PROTOCOL}-whole")
        except ValueError as exc:
            raise ValueError(f"{exc} ({len(ids)} validation images, ground truth in {gt_dir})") from None
        res = resolve(queries, ids)
    queries = vectors[[rq.image_index for rq in res.queries]]
    rankings = ExactIndex(vectors).rank_all(queries)
    scores = score_queries(rankings, [rq.positives for rq in res.queries], [rq.junk for rq in res.queries])
    return float(np.mean([s.ap for s in scores])), len(scores)


def measure_fidelity(reduced: Embedder, validation: Path, calibration: Calibration | None = None,
                     progress: bool = True, log: Callable[[str], None] = print) -> FidelityReport:
    """Embed the validation images with ``reduced`` and with its float32 twin (same device) and
    compare; the report is not written here."""
    config = reduced.config
    layout = dataset_layout(validation)
    ids = list_images(layout.images)
    paths = [str(layout.images / i) for i in ids]
    reference = Embedder(replace(config, precision="float32", calibration=""), threads=reduced.threads,
                         device=reduced.device)
    log(f"fidelity of {config.precision}: embedding {len(ids)} validation images of {validation} at float32 and "
        f"{config.precision}")
    start = time.perf_counter()
    ours = reduced.embed_files(paths, ids, progress=progress)
    ref = reference.embed_files(paths, ids, progress=progress)
    common = [i for i in ref.ids if i in set(ours.ids)]
    a = ref.vectors[[ref.ids.index(i) for i in common]]
    b = ours.vectors[[ours.ids.index(i) for i in common]]
    cosine = (a * b).sum(axis=1)
    map32, n_queries = validation_map(a, common, layout.ground_truth)
    map_reduced, _ = validation_map(b, common, layout.ground_truth)
    in_calibration = len({str(Path(p).resolve()) for p in calibration.files} & {str(Path(p).resolve()) for p in paths}) \
        if calibration is not None else 0
    return FidelityReport(
        precision=config.precision, config_key=config.key(), label=config.label(), device=reduced.device,
        n_images=len(common), n_queries=n_queries, min_cosine=float(cosine.min()), mean_cosine=float(cosine.mean()),
        map_float32=map32, map_reduced=map_reduced, validation=str(Path(validation).resolve()),
        seconds=time.perf_counter() - start, images_in_calibration=in_calibration,
        calibration={"folder": calibration.folder, "n": len(calibration.files), "digest": calibration.digest}
        if calibration is not None else {})


def ensure_precision(config: EmbeddingConfig, calibration: Calibration | None = None, validation: Path | None = None,
                     device: str | None = None, progress: bool = True, remeasure: bool = False,
                     log: Callable[[str], None] = print) -> FidelityReport | None:
    """Make sure ``config``'s precision may be used: None for float32; for int8, quantise (or find
    the cached network of ``config.calibration``) from ``calibration``; then read the fidelity
    report, or measure and write it when absent (or ``remeasure``). Raises ``PrecisionRefused``
    with the figures when the gate fails."""
    if config.precision == "float32":
        return None
    reduced = Embedder(config.base(), device=device, gate=False)
    if config.precision == "int8" and calibration is not None:
        reduced.quantize(calibration, log)
    path = reduced.fidelity_path()
    report = None if remeasure else read_report(path)
    if report is None:
        validation = validation or default_validation_root()
        if validation is None:
            raise PrecisionRefused(f"{config.precision} needs a fidelity check on a labelled validation set and none "
                                   f"was found: fetch one with {command_line('data', 'fetch paris6k')} (into data/), or "
                                   "pass --validation-root / set CBIR_VALIDATION_ROOT")
        report = measure_fidelity(reduced, Path(validation), calibration, progress, log)
        write_report(path, report)
    log(f"fidelity: {report.summary()}")
    if not report.passed:
        raise PrecisionRefused(report.summary())
    return report
