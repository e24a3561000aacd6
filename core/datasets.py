"""Ground truth of retrieval benchmarks, and its resolution against a gallery.

A ``GroundTruth`` is a list of ``Query``: an image name, an optional box, and named label sets
(``positives`` and ``junk`` always; protocols may add more, e.g. revisited easy/hard). Names are
image file stems (``paris_defense_000056``), matched to gallery ids (relative paths) by stem.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from .images import Box

GT_QUERY = re.compile(r"^(?P<name>.+)_(?P<n>\d+)_query\.txt$")
OXFORD_PREFIX = "oxc1_"


@dataclass(frozen=True)
class Query:
    name: str                          # e.g. "defense_4"
    image: str                         # image stem, e.g. "paris_defense_000056"
    box: Box | None
    positives: frozenset[str]
    junk: frozenset[str] = frozenset()
    group: str = ""                    # landmark or class
    labels: dict[str, frozenset[str]] = field(default_factory=dict, compare=False)


@dataclass
class GroundTruth:
    dataset: str
    protocol: str
    queries: list[Query]
    notes: list[str] = field(default_factory=list)    # problems met while loading
    info: dict = field(default_factory=dict)           # counts and source of the ground truth, for run summaries


def _read_names(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def load_oxford_paris(gt_dir: str | Path, dataset: str) -> GroundTruth:
    """Load the original Oxford5k/Paris6k text ground truth:
    ``<landmark>_<n>_{query,good,ok,junk}.txt``. Positives are good ∪ ok (Paris good files are
    empty); the query line is ``<image> x1 y1 x2 y2`` with an optional ``oxc1_`` prefix.
    Missing label files and duplicate entries are recorded in ``notes``, not fatal."""
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise FileNotFoundError(f"ground-truth folder {gt_dir} does not exist")
    queries, notes = [], []
    for qfile in sorted(gt_dir.glob("*_query.txt")):
        m = GT_QUERY.match(qfile.name)
        if not m:
            continue
        stem = qfile.name[: -len("_query.txt")]
        fields = qfile.read_text().split()
        if len(fields) != 5:
            notes.append(f"{qfile.name}: expected 'image x1 y1 x2 y2', got {' '.join(fields)!r}; skipped")
            continue
        image = fields[0].removeprefix(OXFORD_PREFIX)
        lists = {}
        for label in ("good", "ok", "junk"):
            path = gt_dir / f"{stem}_{label}.txt"
            if not path.exists():
                notes.append(f"{path.name} is missing; treated as empty")
            names = _read_names(path)
            if len(names) != len(set(names)):
                notes.append(f"{path.name}: {len(names) - len(set(names))} duplicate entries ignored")
            lists[label] = frozenset(names)
        positives = lists["good"] | lists["ok"]
        queries.append(Query(name=stem, image=image, box=Box.of([float(v) for v in fields[1:]]),
                             positives=positives, junk=lists["junk"] - positives, group=m["name"],
                             labels={"good": lists["good"], "ok": lists["ok"], "junk": lists["junk"]}))
    if not queries:
        raise FileNotFoundError(f"no *_query.txt files in {gt_dir}")
    queries.sort(key=lambda q: (q.group, int(GT_QUERY.match(q.name + "_query.txt")["n"])))
    listed = set().union(*(q.positives | q.junk | {q.image} for q in queries))
    return GroundTruth(dataset=dataset, protocol="classic", queries=queries, notes=notes,
                       info={"source": str(gt_dir), "n_queries_listed": len(queries), "n_images_listed": len(listed)})


def stem_of(image_id: str) -> str:
    return PurePosixPath(image_id).stem


@dataclass(frozen=True)
class ResolvedQuery:
    """A query mapped onto gallery indices; ``positives`` counts only images in the gallery."""

    query: Query
    image_index: int
    positives: frozenset[int]
    junk: frozenset[int]
    n_positives_listed: int


@dataclass
class Resolution:
    queries: list[ResolvedQuery]
    skipped: list[str]                       # query names whose image is not in the gallery
    no_positives: list[str]                  # query names with no positive image in the gallery


def resolve(gt: GroundTruth, ids: list[str]) -> Resolution:
    """Map query images and label sets to gallery indices by file stem. Queries whose image is
    absent, or that have no positive in the gallery, are skipped with a warning."""
    by_stem: dict[str, int] = {}
    for i, image_id in enumerate(ids):
        by_stem.setdefault(stem_of(image_id), i)
    out, skipped, empty = [], [], []
    for q in gt.queries:
        if q.image not in by_stem:
            skipped.append(q.name)
            continue
        pos = frozenset(by_stem[s] for s in q.positives if s in by_stem)
        if not pos:
            empty.append(q.name)
            continue
        junk = frozenset(by_stem[s] for s in q.junk if s in by_stem) - pos
        out.append(ResolvedQuery(q, by_stem[q.image], pos, junk, len(q.positives)))
    if skipped:
        warnings.warn(f"{len(skipped)} of {len(gt.queries)} queries skipped: their image is not in the gallery",
                      stacklevel=2)
    if empty:
        warnings.warn(f"{len(empty)} queries skipped: none of their positives is in the gallery", stacklevel=2)
    return Resolution(out, skipped, empty)


@dataclass(frozen=True)
class DatasetLayout:
    """Where a benchmark's images and ground truth live under its root folder."""

    images: Path
    ground_truth: Path


def dataset_layout(root: str | Path) -> DatasetLayout:
    """``root/jpg`` and ``root/gt`` when present (the layout of ``../shared/data`` and of the
    downloader), else ``root`` itself for both."""
    root = Path(root)
    images = root / "jpg" if (root / "jpg").is_dir() else root
    gt = root / "gt" if (root / "gt").is_dir() else root
    return DatasetLayout(images, gt)


def _revisited(dataset: str) -> Callable[..., GroundTruth]:
    def load(folder: Path, protocol: str | None = None) -> GroundTruth:
        from .revisited import load_revisited     # imported late: core.revisited imports this module
        return load_revisited(folder, dataset, protocol)
    return load


def _holidays(folder: Path) -> GroundTruth:
    from .holidays import load_holidays
    return load_holidays(folder)


def _class_folders(folder: Path) -> GroundTruth:
    from .classes import load_class_folders
    return load_class_folders(folder)


LOADERS: dict[str, Callable[..., GroundTruth]] = {
    "oxford5k": lambda gt_dir: load_oxford_paris(gt_dir, "oxford5k"),
    "paris6k": lambda gt_dir: load_oxford_paris(gt_dir, "paris6k"),
    "roxford5k": _revisited("roxford5k"),
    "rparis6k": _revisited("rparis6k"),
    "holidays": _holidays,
    "classes": _class_folders,
}

DATASET_PROTOCOLS: dict[str, tuple[str, ...]] = {
    "roxford5k": ("easy", "medium", "hard"),
    "rparis6k": ("easy", "medium", "hard"),
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
