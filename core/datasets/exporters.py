"""Exporters of real labelled sets into the class-folder layout (``ROOT/<class>/<image>``):
Fashion-MNIST from its IDX files (Debian package ``dataset-fashion-mnist``)."""
from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
from PIL import Image

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
