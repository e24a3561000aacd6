"""Class-based CBIR: a gallery folder of class subfolders (``ROOT/<class>/<image>``), where
images of the same class are relevant to each other, as in Corel-1k/Wang or CIFAR-10 studies.

Every image is a query; its positives are the other images of its class, and the query image
itself is junk (removed from its own ranking), so that a query never scores itself. Reported:
mean precision@k per class, top-k accuracy, a per-class table, and k-NN classification by a
vote of the top-k neighbours with its confusion matrix.

Images are matched to the ground truth by file stem (``core.datasets.resolve``), so stems must be
unique across classes; ``load_class_folders`` refuses folders where they are not. Rankings are
stored in full (n × n), which bounds class galleries to a few thousand images.

``export_fashion_mnist`` writes a real labelled set in this layout from the Fashion-MNIST IDX
files (Debian package ``dataset-fashion-mnist``).
"""
from __future__ import annotations

import gzip
import io
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from .datasets import GroundTruth, Query, stem_of
from .images import list_images

PROTOCOL = "classes"
KNN_K = 10
FASHION_MNIST_CLASSES: tuple[str, ...] = ("t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal",
                                          "shirt", "sneaker", "bag", "ankle_boot")
FASHION_MNIST_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)   # Debian's package


def class_of(image_id: str) -> str | None:
    """The class folder of a gallery id (``coat/t10k-00019.png`` → ``coat``); None for an image
    at the top level, which belongs to no class."""
    parts = PurePosixPath(image_id).parts
    return parts[0] if len(parts) > 1 else None


def load_class_folders(root: str | Path) -> GroundTruth:
    """Ground truth of a folder of class subfolders: one query per classed image."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"class folder {root} does not exist")
    members: dict[str, list[str]] = defaultdict(list)
    loose = 0
    for image_id in list_images(root):
        cls = class_of(image_id)
        if cls is None:
            loose += 1
        else:
            members[cls].append(image_id)
    if not members:
        raise FileNotFoundError(f"no images in class subfolders of {root} (expected ROOT/<class>/<image>)")
    stems = Counter(stem_of(i) for ids in members.values() for i in ids)
    clashes = sorted(s for s, n in stems.items() if n > 1)
    if clashes:
        raise ValueError(f"{len(clashes)} file names occur in more than one place under {root} (e.g. "
                         f"{', '.join(clashes[:3])}); images are matched by name, so rename them to be unique")
    notes = [f"{loose} images outside class folders: ranked as negatives, never queries"] if loose else []
    singles = sorted(c for c, ids in members.items() if len(ids) == 1)
    if singles:
        notes.append(f"classes with a single image have no positives and are skipped: {', '.join(singles)}")
    queries = []
    for cls in sorted(members):
        names = frozenset(stem_of(i) for i in members[cls])
        for image_id in members[cls]:
            stem = stem_of(image_id)
            queries.append(Query(name=image_id, image=stem, box=None, positives=names - {stem},
                                 junk=frozenset({stem}), group=cls))
    info = {"root": str(root), "n_classes": len(members),
            "class_sizes": {c: len(v) for c, v in sorted(members.items())}, "n_unclassed_images": loose}
    return GroundTruth(dataset="classes", protocol=PROTOCOL, queries=queries, notes=notes, info=info)


def knn_vote(neighbour_labels: Sequence[str]) -> str | None:
    """Majority class of the neighbours, nearest first; a tie goes to the tied class met first
    (the nearer one). None when there are no neighbours."""
    counts = Counter(neighbour_labels)
    if not counts:
        return None
    best = max(counts.values())
    return next(label for label in neighbour_labels if counts[label] == best)


def knn_predict(ranking: Sequence[int] | np.ndarray, excluded: set[int] | frozenset[int],
                labels: Sequence[str | None], k: int = KNN_K) -> str | None:
    """Vote of the first ``k`` classed images of ``ranking`` that are not ``excluded`` (the
    query itself)."""
    neighbours = []
    for i in ranking:
        if int(i) in excluded or labels[int(i)] is None:
            continue
        neighbours.append(labels[int(i)])
        if len(neighbours) == k:
            break
    return knn_vote(neighbours)


def confusion_matrix(true: Sequence[str], predicted: Sequence[str | None], classes: Sequence[str]) -> np.ndarray:
    """Counts [len(classes), len(classes)]: row = true class, column = predicted class
    (queries with no prediction are not counted)."""
    pos = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(true, predicted):
        if p is not None:
            out[pos[t], pos[p]] += 1
    return out


@dataclass
class ClassReport:
    """Per-class table, kNN confusion matrix and the summary figures of a class-based run."""

    table: pd.DataFrame
    classes: list[str]
    confusion: np.ndarray
    summary: dict


def class_report(per_query: pd.DataFrame, predicted: Sequence[str | None], ks: Sequence[int],
                 knn_k: int = KNN_K) -> ClassReport:
    """Aggregate per-query rows (columns ``group`` = class, ``ap``, ``p@k``, ``top{k}``) and
    the kNN predictions into one row per class; macro means weigh every class equally."""
    df = per_query.assign(predicted=list(predicted))
    df["correct"] = df["predicted"] == df["group"]
    classes = sorted(df["group"].unique())
    confusion = confusion_matrix(df["group"].tolist(), df["predicted"].tolist(), classes)
    metrics = ["ap", *(f"p@{k}" for k in ks), *(f"top{k}" for k in ks)]
    table = df.groupby("group")[metrics].mean().rename(columns={"ap": "map"})
    table.insert(0, "n_queries", df.groupby("group").size())
    table["knn_accuracy"] = df.groupby("group")["correct"].mean()
    predicted_count = confusion.sum(axis=0)
    table["knn_precision"] = np.where(predicted_count > 0, np.diag(confusion) / np.maximum(predicted_count, 1), 0.0)
    table = table.reset_index().rename(columns={"group": "class"})
    summary = {"n_classes": len(classes), "knn_k": knn_k, "knn_accuracy": float(df["correct"].mean()),
               **{f"class_mean_p@{k}": float(table[f"p@{k}"].mean()) for k in ks},
               "class_mean_map": float(table["map"].mean())}
    return ClassReport(table, classes, confusion, summary)


def confusion_long(classes: Sequence[str], confusion: np.ndarray) -> pd.DataFrame:
    """Long form (true, predicted, count, share of the true class) for a heatmap."""
    totals = confusion.sum(axis=1, keepdims=True)
    share = confusion / np.maximum(totals, 1)
    return pd.DataFrame([{"true": t, "predicted": p, "count": int(confusion[i, j]), "share": float(share[i, j])}
                         for i, t in enumerate(classes) for j, p in enumerate(classes)])


# ---------------------------------------------------------------- Fashion-MNIST export

def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (optionally gzipped) of unsigned bytes: magic ``0 0 8 ndim``, then ``ndim``
    big-endian int32 dimensions, then the data."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if raw[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {data.size} bytes of data for dimensions {dims.tolist()}")
    return data.reshape(tuple(int(d) for d in dims))


def fashion_mnist_source(source: str | Path | None = None, split: str = "t10k") -> Path:
    """The folder holding ``<split>-images-idx3-ubyte.gz``: ``source`` or Debian's install."""
    candidates = [Path(source)] if source else list(FASHION_MNIST_DIRS)
    for d in candidates:
        if (d / f"{split}-images-idx3-ubyte.gz").is_file():
            return d
    raise FileNotFoundError(f"no {split}-images-idx3-ubyte.gz in {', '.join(map(str, candidates))}; "
                            f"install it with: apt-get install dataset-fashion-mnist, or pass --source")


def export_fashion_mnist(out: str | Path, source: str | Path | None = None, split: str = "t10k",
                         per_class: int = 100, size: int = 64) -> dict[str, int]:
    """Write the first ``per_class`` images of each class of a Fashion-MNIST split as PNGs,
    upscaled to ``size`` pixels (the networks need more than 28 to keep a spatial map), into
    ``out/<class>/<split>-<index>.png``. Files whose content would not change are left alone,
    so a re-export keeps an indexed gallery up to date without re-embedding it. Returns the
    number of images per class."""
    folder = fashion_mnist_source(source, split)
    images = read_idx(folder / f"{split}-images-idx3-ubyte.gz")
    labels = read_idx(folder / f"{split}-labels-idx1-ubyte.gz")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels in {folder}")
    counts: dict[str, int] = {}
    for label, name in enumerate(FASHION_MNIST_CLASSES):
        target = Path(out) / name
        target.mkdir(parents=True, exist_ok=True)
        chosen = np.flatnonzero(labels == label)[:per_class]
        for index in chosen:
            img = Image.fromarray(images[index], "L")
            if size != img.size[0]:
                img = img.resize((size, size), Image.Resampling.BICUBIC)
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            path = target / f"{split}-{index:05d}.png"
            if not path.exists() or path.read_bytes() != buf.getvalue():
                path.write_bytes(buf.getvalue())
        counts[name] = len(chosen)
    return counts
