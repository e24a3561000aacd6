"""Ground truth of retrieval benchmarks, and its resolution against a gallery.

A ``GroundTruth`` is a list of ``Query``: an image name, an optional box, and named label sets
(``positives`` and ``junk`` always; protocols may add more, e.g. revisited easy/hard). Names are
image file stems (``paris_defense_000056``), matched to gallery ids (relative paths) by stem.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from core.fs import describe_error, printable, read_limited
from core.images import Box

MAX_LABEL_FILE_BYTES = 256 << 20      # ground-truth text and pickle files; the largest real one is a few MB


class GroundTruthError(ValueError):
    """A ground-truth file that cannot be used, with a one-line reason."""


def read_label_text(path: Path, max_bytes: int = MAX_LABEL_FILE_BYTES) -> str:
    """The text of a ground-truth file, or ``GroundTruthError`` saying why it cannot be one: not
    a regular file (a folder named ``*_query.txt``, a FIFO), unreadable, too large, binary (NUL
    bytes) or not UTF-8."""
    try:
        data = read_limited(path, max_bytes)
    except OSError as exc:
        raise GroundTruthError(f"{printable(path.name)}: {describe_error(exc)}") from None
    if b"\0" in data:
        raise GroundTruthError(f"{printable(path.name)}: binary content (NUL bytes), not a text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GroundTruthError(f"{printable(path.name)}: not UTF-8 text (byte {exc.start})") from None


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
    """``query_root``: where the query images are when they are not gallery images (a separate
    query folder; query names are then image ids under it); None when queries are gallery images."""

    dataset: str
    protocol: str
    queries: list[Query]
    notes: list[str] = field(default_factory=list)    # problems met while loading
    info: dict = field(default_factory=dict)           # counts and source of the ground truth, for run summaries
    query_root: Path | None = None


def stem_of(image_id: str) -> str:
    return PurePosixPath(image_id).stem


@dataclass(frozen=True)
class ResolvedQuery:
    """A query mapped onto gallery indices; ``positives`` counts only images in the gallery.
    ``image_index`` is None for a query from a separate query folder."""

    query: Query
    image_index: int | None
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
    absent (unless they come from a separate query folder), or that have no positive in the
    gallery, are skipped with a warning."""
    by_stem: dict[str, int] = {}
    for i, image_id in enumerate(ids):
        by_stem.setdefault(stem_of(image_id), i)
    out, skipped, empty = [], [], []
    for q in gt.queries:
        if gt.query_root is None and q.image not in by_stem:
            skipped.append(q.name)
            continue
        pos = frozenset(by_stem[s] for s in q.positives if s in by_stem)
        if not pos:
            empty.append(q.name)
            continue
        junk = frozenset(by_stem[s] for s in q.junk if s in by_stem) - pos
        out.append(ResolvedQuery(q, None if gt.query_root is not None else by_stem[q.image], pos, junk,
                                 len(q.positives)))
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
