"""Ground truth of retrieval benchmarks and class folders, the table of their loaders, exporters
and the downloader. ``types`` (``Query``, ``GroundTruth``, ``resolve``) is the bottom of the
package; every loader builds on it, and this table names them."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from core.datasets.classes import load_class_folders
from core.datasets.holidays import load_holidays
from core.datasets.oxford_paris import load_oxford_paris
from core.datasets.revisited import PROTOCOLS as REVISITED_PROTOCOLS
from core.datasets.revisited import load_revisited
from core.datasets.types import (
    DatasetLayout,
    GroundTruth,
    GroundTruthError,
    Query,
    Resolution,
    ResolvedQuery,
    dataset_layout,
    resolve,
    stem_of,
)


def _revisited(dataset: str) -> Callable[..., GroundTruth]:
    def load(folder: Path, protocol: str | None = None) -> GroundTruth:
        return load_revisited(folder, dataset, protocol)
    return load


LOADERS: dict[str, Callable[..., GroundTruth]] = {
    "oxford5k": lambda gt_dir: load_oxford_paris(gt_dir, "oxford5k"),
    "paris6k": lambda gt_dir: load_oxford_paris(gt_dir, "paris6k"),
    "roxford5k": _revisited("roxford5k"),
    "rparis6k": _revisited("rparis6k"),
    "holidays": load_holidays,
    "classes": load_class_folders,
}

DATASET_PROTOCOLS: dict[str, tuple[str, ...]] = {
    "roxford5k": REVISITED_PROTOCOLS,
    "rparis6k": REVISITED_PROTOCOLS,
}
"""Datasets with a choice of protocol; the default (medium for the revisited ones) is the loader's."""


def load_ground_truth(dataset: str, gt_dir: str | Path, protocol: str | None = None) -> GroundTruth:
    """Ground truth of a named dataset (``LOADERS``) from its folder, under ``protocol`` for the
    datasets of ``DATASET_PROTOCOLS`` (None: the dataset's default)."""
    if dataset not in LOADERS:
        raise KeyError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(LOADERS))}")
    if protocol is None:
        return LOADERS[dataset](Path(gt_dir))
    if protocol not in DATASET_PROTOCOLS.get(dataset, ()):
        raise ValueError(f"dataset {dataset} has no protocol {protocol!r}"
                         + (f"; choose one of {', '.join(DATASET_PROTOCOLS[dataset])}" if dataset in DATASET_PROTOCOLS
                            else "; it has a single protocol"))
    return LOADERS[dataset](Path(gt_dir), protocol=protocol)


__all__ = ["DATASET_PROTOCOLS", "LOADERS", "DatasetLayout", "GroundTruth", "GroundTruthError", "Query", "Resolution", "ResolvedQuery",
           "dataset_layout", "load_ground_truth", "load_oxford_paris", "resolve", "stem_of"]
