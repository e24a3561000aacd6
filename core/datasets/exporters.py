"""Exporters of real labelled sets into the class-folder layout (``ROOT/<class>/<image>``):
Fashion-MNIST from its IDX files (Debian package ``dataset-fashion-mnist``) and CIFAR-10 from
its python pickle batches (``python -m core data fetch cifar10``), read with the restricted
unpickler of ``core.datasets.safepickle``.

Files whose content would not change are left alone, so a re-export keeps an indexed gallery up
to date without re-embedding it."""
from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
from PIL import Image

from core.config import command_line
from core.datasets.safepickle import safe_load

FASHION_MNIST_CLASSES: tuple[str, ...] = ("t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal",
                                          "shirt", "sneaker", "bag", "ankle_boot")
FASHION_MNIST_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)   # Debian's package


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


def write_class_folders(images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], mode: str,
                        out: str | Path, split: str, per_class: int, size: int) -> dict[str, int]:
    """The first ``per_class`` images of each class (label i is ``classes[i]``) as PNGs of
    ``mode`` in ``out/<class>/<split>-<index>.png``; the number written per class."""
    counts: dict[str, int] = {}
    for label, name in enumerate(classes):
        target = Path(out) / name
        target.mkdir(parents=True, exist_ok=True)
        chosen = np.flatnonzero(labels == label)[:per_class]
        for index in chosen:
            write_png(Image.fromarray(images[index], mode), target / f"{split}-{index:05d}.png", size)
        counts[name] = len(chosen)
    return counts


def export_fashion_mnist(out: str | Path, source: str | Path | None = None, split: str = "t10k",
                         per_class: int = 100, size: int = 64) -> dict[str, int]:
    """Write the first ``per_class`` images of each class of a Fashion-MNIST split as PNGs,
    upscaled to ``size`` pixels (the networks need more than 28 to keep a spatial map), into
    ``out/<class>/<split>-<index>.png``. Returns the number of images per class."""
    folder = fashion_mnist_source(source, split)
    images = read_idx(folder / f"{split}-images-idx3-ubyte.gz")
    labels = read_idx(folder / f"{split}-labels-idx1-ubyte.gz")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels in {folder}")
    return write_class_folders(images, labels, FASHION_MNIST_CLASSES, "L", out, split, per_class, size)


def write_png(img: Image.Image, path: Path, size: int) -> None:
    """``img`` upscaled (bicubic) to ``size``×``size`` as a PNG at ``path``, unless the file
    already holds exactly these bytes."""
    if size != img.size[0]:
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    if not path.exists() or path.read_bytes() != buf.getvalue():
        path.write_bytes(buf.getvalue())


CIFAR10_CLASSES: tuple[str, ...] = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                    "ship", "truck")
CIFAR10_BATCHES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
CIFAR10_DIRS: tuple[Path, ...] = (Path("data/cifar10/batches"),)    # where `data fetch cifar10` unpacks them


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(images [n, 32, 32, 3] uint8, labels [n]) of one CIFAR-10 python batch: a Python 2
    pickle of a dict with ``b"data"`` (uint8 [n, 3072], the red, green and blue planes of each
    image row by row) and ``b"labels"``."""
    with open(path, "rb") as fh:
        batch = safe_load(fh, encoding="bytes")
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{path}: not a CIFAR-10 batch (a dict with data and labels)")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise ValueError(f"{path}: data {data.dtype} {data.shape} with {len(labels)} labels is not a CIFAR-10 batch")
    if len(labels) and not (labels.min() >= 0 and labels.max() < len(CIFAR10_CLASSES)):
        raise ValueError(f"{path}: labels outside 0..{len(CIFAR10_CLASSES) - 1}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def cifar10_source(source: str | Path | None = None, split: str = "test") -> Path:
    """The folder holding the batches of ``split``: ``source`` or where ``data fetch`` puts them."""
    candidates = [Path(source)] if source else list(CIFAR10_DIRS)
    for d in candidates:
        if all((d / name).is_file() for name in CIFAR10_BATCHES[split]):
            return d
    raise FileNotFoundError(f"no CIFAR-10 {split} batches ({', '.join(CIFAR10_BATCHES[split])}) in "
                            f"{', '.join(map(str, candidates))}; download them with: {command_line('data', 'fetch cifar10')}, "
                            f"or pass --source")


def export_cifar10(out: str | Path, source: str | Path | None = None, split: str = "test",
                   per_class: int = 100, size: int = 64) -> dict[str, int]:
    """Write the first ``per_class`` images of each class of a CIFAR-10 split (``train``: the
    five data batches, ``test``: the test batch) as PNGs upscaled to ``size`` pixels, into
    ``out/<class>/<split>-<index>.png`` (index within the split). Returns the count per class."""
    if split not in CIFAR10_BATCHES:
        raise ValueError(f"CIFAR-10 split must be one of {', '.join(CIFAR10_BATCHES)}, got {split!r}")
    folder = cifar10_source(source, split)
    parts = [read_cifar_batch(folder / name) for name in CIFAR10_BATCHES[split]]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return write_class_folders(images, labels, CIFAR10_CLASSES, "RGB", out, split, per_class, size)
