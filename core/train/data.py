"""Training data: a class-folder gallery (``ROOT/<class>/<image>``) as labelled images, its
stratified train/validation split, the augmentation of the seed systems (rotation, shifts,
shear, zoom, horizontal flip, a little colour) and a fingerprint that names the data a model
was trained on (a resumed run refuses a folder that changed under it).

Views are deterministic: view ``v`` of image ``i`` under seed ``s`` is always the same picture,
so the frozen trunk's features of every view can be computed once and cached.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from core.datasets.classes import class_of
from core.images import image_size, list_images, load_image, to_tensor

LOAD_SIDE = 512               # images are decoded at most this large before they are augmented


@dataclass(frozen=True)
class LabelledImages:
    """Images of a class folder: ``ids`` relative to ``root``, ``labels`` indices into ``classes``."""

    root: Path
    ids: tuple[str, ...]
    labels: tuple[int, ...]
    classes: tuple[str, ...]

    def path(self, i: int) -> Path:
        return self.root / self.ids[i]

    def counts(self) -> dict[str, int]:
        return {c: int(n) for c, n in zip(self.classes, np.bincount(self.labels, minlength=len(self.classes)))}


def load_labelled(root: str | Path) -> LabelledImages:
    """The images in class subfolders of ``root`` (images at its top level are ignored); at
    least two classes of at least two images are needed to train anything."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"training folder {root} does not exist")
    pairs = [(i, class_of(i)) for i in list_images(root)]
    pairs = [(i, c) for i, c in pairs if c is not None]
    classes = tuple(sorted({c for _, c in pairs}))
    counts = {c: sum(1 for _, k in pairs if k == c) for c in classes}
    usable = [c for c in classes if counts[c] >= 2]
    if len(usable) < 2:
        raise ValueError(f"{root} needs at least two class subfolders of at least two images each to train on "
                         f"(found {', '.join(f'{c}: {n}' for c, n in counts.items()) or 'none'})")
    index = {c: k for k, c in enumerate(classes)}
    return LabelledImages(root, tuple(i for i, _ in pairs), tuple(index[c] for _, c in pairs), classes)


def stratified_split(labels: tuple[int, ...] | list[int], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) positions: per class, round(n * val_fraction) images, at least one
    when the fraction is positive, always leaving one to train on; classes of one image train only."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"the validation fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    train, val = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n_val = 0 if val_fraction == 0 or len(members) < 2 else min(len(members) - 1,
                                                                   max(1, round(len(members) * val_fraction)))
        val += members[:n_val].tolist()
        train += members[n_val:].tolist()
    return sorted(train), sorted(val)


def fingerprint(data: LabelledImages) -> str:
    """sha256 (16 hex digits) of the classes and of each image's id, class, size and mtime."""
    h = hashlib.sha256("\n".join(data.classes).encode())
    for image_id, label in zip(data.ids, data.labels):
        st = os.stat(data.root / image_id)
        h.update(f"\n{image_id}\t{label}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Augmentation:
    """Random changes of a training view (the seed systems' Keras ``ImageDataGenerator`` set):
    rotation (degrees), shift (fraction of the side), shear (degrees), zoom (scale range),
    horizontal flip, and brightness/contrast/saturation jitter."""

    rotation: float = 15.0
    shift: float = 0.1
    shear: float = 10.0
    zoom: tuple[float, float] = (0.9, 1.25)
    hflip: bool = True
    colour: float = 0.2

    def to_dict(self) -> dict:
        return {**asdict(self), "zoom": list(self.zoom)}

    def transform(self) -> v2.Compose:
        steps = [v2.RandomAffine(degrees=self.rotation, translate=(self.shift, self.shift),
                                 scale=self.zoom, shear=self.shear)]
        if self.hflip:
            steps.append(v2.RandomHorizontalFlip())
        if self.colour:
            steps.append(v2.ColorJitter(brightness=self.colour, contrast=self.colour, saturation=self.colour))
        return v2.Compose(steps)


def square(img: Image.Image, size: int) -> Image.Image:
    """The whole image resized to ``size``×``size`` (the aspect ratio is not kept, so nothing is
    cut off)."""
    return img.resize((size, size), Image.Resampling.BICUBIC)


def view_side(data: LabelledImages, positions: list[int], largest: int) -> int:
    """Side of the square training views: ``largest``, or the median longer side of the images
    when they are smaller (Fashion-MNIST's 64 px are not blown up to 224 for training and then
    searched at 64)."""
    sides = [max(image_size(data.path(i))) for i in positions]
    return int(min(largest, max(32, np.median(sides)))) if sides else largest


def view_seed(seed: int, image: int, view: int) -> int:
    return (seed * 1_000_003 + image * 9_973 + view) % (2 ** 63)


def load_view(path: str | Path, size: int, view: int, seed: int, image: int,
              augmentation: Augmentation | None) -> torch.Tensor:
    """View ``view`` of an image as a [3, size, size] tensor in [0, 1]: view 0 is the plain
    image, views 1.. are augmented, each reproducibly (its own seed). Augmentation works on the
    PIL image: a hundred times faster than on tensors."""
    img = square(load_image(path, LOAD_SIDE), size)
    if view == 0 or augmentation is None:
        return to_tensor(img)
    with seeded(view_seed(seed, image, view)):
        return to_tensor(augmentation.transform()(img))


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Inside the block, torch's generator (CPU) draws what ``seed`` gives, whatever was drawn
    before (a model conversion, the caller); the caller's generator is restored after. What
    training seeds (weights, views, dropout) goes through here, so a run never depends on what
    was cached before it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
