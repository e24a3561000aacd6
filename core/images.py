"""Image loading for retrieval: EXIF orientation, any mode to RGB, crop by a box in original
pixel coordinates, downscale so the longer side is at most ``max_size``.

Unreadable input raises ``ImageError`` with a reason a person can act on; galleries skip such
files and report them. Every image is opened here (``open_image``), as a regular file only
(``core.fs``) and by the decoders of ``ALLOWED_FORMATS`` only: content that merely claims to be a
JPEG never reaches Pillow's other plugins (EPS would run Ghostscript on it).
"""
from __future__ import annotations

import io
import math
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from core.fs import NotRegularFile, Scan, describe_error, iter_blocks, open_regular, printable, scan_files

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
# The decoders of those extensions (JPEG also opens the multi-picture MPO files of phone cameras); nothing
# else is tried.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
MAX_PIXELS = 100_000_000         # decompression-bomb limit: larger images are refused
ImageFile.LOAD_TRUNCATED_IMAGES = False
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageError(ValueError):
    """An image that cannot be used, with the reason."""


@dataclass(frozen=True)
class Box:
    """A box ``x1 y1 x2 y2`` in original pixel coordinates (after EXIF orientation)."""

    x1: float
    y1: float
    x2: float
    y2: float

    def __post_init__(self) -> None:
        if not all(math.isfinite(v) for v in self.as_list()):
            raise ValueError(f"box {self.as_list()} must hold finite numbers")

    @classmethod
    def of(cls, values: Sequence[float | str]) -> Box:
        """A box from 4 numbers (or decimal strings) given by a person or a file; refuses
        anything but finite numbers, and boxes of zero area."""
        if len(values) != 4:
            raise ValueError(f"a box needs 4 numbers x1 y1 x2 y2, got {len(values)}")
        try:
            numbers = [float(v) for v in values]
        except (TypeError, ValueError):
            raise ValueError(f"box {' '.join(map(str, values))!r} must be 4 decimal numbers x1 y1 x2 y2") from None
        box = cls(*numbers)
        if box.x1 == box.x2 or box.y1 == box.y2:
            raise ImageError(f"box {box.as_list()} has no area")
        return box

    def clamp(self, width: int, height: int) -> Box:
        """Order the corners, clip to the image, round outwards to whole pixels; raise
        ``ImageError`` if nothing of the box is left inside the image."""
        x1, x2 = sorted((self.x1, self.x2))
        y1, y2 = sorted((self.y1, self.y2))
        x1, y1 = max(0, math.floor(x1)), max(0, math.floor(y1))
        x2, y2 = min(width, math.ceil(x2)), min(height, math.ceil(y2))
        if x2 - x1 < 1 or y2 - y1 < 1:
            raise ImageError(f"box {self.as_list()} has no area inside the {width}x{height} image")
        return Box(x1, y1, x2, y2)

    def as_list(self) -> list[float]:
        return [self.x1, self.y1, self.x2, self.y2]


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB; transparency is composited on white, 16/32-bit grey is
    rescaled from its own range instead of clipped."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img


def open_image(source: str | os.PathLike | IO[bytes]) -> Image.Image:
    """``Image.open`` restricted to ``ALLOWED_FORMATS``. A path is read into memory through
    ``core.fs`` (a regular file only, never a FIFO or a device; no more than its size when
    opened), so no file stays open; raises ``ImageError`` for what cannot be opened."""
    try:
        if isinstance(source, (str, os.PathLike)):
            source = io.BytesIO(b"".join(iter_blocks(source)))   # no more than the size it had when opened
        return Image.open(source, formats=ALLOWED_FORMATS)
    except UnidentifiedImageError as exc:
        raise ImageError(f"not an image in one of the formats {', '.join(ALLOWED_FORMATS)}: {_name(source)}") from exc
    except OSError as exc:
        if exc.errno is None and not isinstance(exc, NotRegularFile):   # Pillow's parser, not the file system
            raise ImageError(f"corrupt or truncated image {_name(source)}: {exc}") from exc
        raise ImageError(f"cannot read {_name(source)}: {describe_error(exc)}") from exc


def _name(source) -> str:
    return printable(str(getattr(source, "name", source)))


def load_image(source: str | os.PathLike | IO[bytes], max_size: int | None = None,
               box: Box | Sequence[float] | None = None) -> Image.Image:
    """Open ``source`` as RGB, upright (EXIF), cropped to ``box`` (original pixels), then
    downscaled so that its longer side is at most ``max_size`` (never upscaled).

    JPEGs are decoded at a reduced scale (``Image.draft``) when that still leaves enough pixels,
    which is several times cheaper than a full decode. Raises ``ImageError`` for unreadable,
    truncated, empty or oversized files.
    """
    name = _name(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = open_image(source)
            img.seek(0)                                  # first frame of animations
            raw_w, raw_h = img.size
            if raw_w * raw_h > MAX_PIXELS:
                raise ImageError(_too_large(name, raw_w * raw_h))
            box_obj = Box.of(box.as_list() if isinstance(box, Box) else box) if box is not None else None
            scale = 1.0
            if max_size is not None and img.format == "JPEG":
                region = max(raw_w, raw_h)
                if box_obj is not None:
                    region = max(abs(box_obj.x2 - box_obj.x1), abs(box_obj.y2 - box_obj.y1), 1.0)
                need = min(1.0, max_size / region)
                img.draft("RGB", (math.ceil(raw_w * need), math.ceil(raw_h * need)))
                scale = img.size[0] / raw_w
            img = ImageOps.exif_transpose(img)
            img.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        raise ImageError(_too_large(name, int(pixels[1]) if pixels else None)) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"corrupt or truncated image {name}: {exc}") from exc
    img = _to_rgb(img)
    if box_obj is not None:
        full_w, full_h = round(img.size[0] / scale), round(img.size[1] / scale)
        b = box_obj.clamp(full_w, full_h)
        img = img.crop(tuple(round(v * scale) for v in b.as_list()))
    return fit_max_size(img, max_size) if max_size is not None else img


ImageSource = str | os.PathLike | IO[bytes] | Image.Image


def load_region(source: ImageSource, max_size: int | None = None,
                box: Box | Sequence[float] | None = None) -> Image.Image:
    """``load_image`` for a file, or the same for an image already decoded (upright, as the
    search page holds an upload): converted to RGB, cropped to ``box`` in its pixels, downscaled
    by the one rule of ``fit_max_size``. Lets a query be decoded once for every stage."""
    if not isinstance(source, Image.Image):
        return load_image(source, max_size, box)
    img = _to_rgb(source)
    if box is not None:
        b = (box if isinstance(box, Box) else Box.of(box)).clamp(*img.size)
        img = img.crop(tuple(int(v) for v in b.as_list()))
    return fit_max_size(img, max_size) if max_size is not None else img


def _too_large(name: object, pixels: int | None) -> str:
    size = f"{pixels / 1e6:.0f} megapixels" if pixels else "its pixel count"
    return (f"{name}: {size} exceeds the limit of {MAX_PIXELS / 1e6:g} megapixels (refused: a decompression "
            "bomb guard, an image that large would fill the memory)")


def fit_max_size(img: Image.Image, max_size: int) -> Image.Image:
    """Downscale (bicubic) so that the longer side is at most ``max_size``; never upscale."""
    if max(img.size) <= max_size:
        return img
    ratio = max_size / max(img.size)
    return img.resize((max(1, round(img.size[0] * ratio)), max(1, round(img.size[1] * ratio))),
                      Image.Resampling.BICUBIC)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) after EXIF orientation, read from the header only."""
    with open_regular(path) as fh, open_image(fh) as img:
        w, h = img.size
        orientation = img.getexif().get(0x0112, 1)
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image to a float [3, H, W] tensor in [0, 1]."""
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def scan_images(root: str | os.PathLike) -> Scan:
    """Image files under ``root`` (recursive, hidden entries skipped) that can be opened, with
    their stat results, and the image-named entries that cannot (FIFOs, devices, dangling links,
    loops, unreadable folders, non-UTF-8 names, ...) with their reasons (``core.fs.scan_files``)."""
    return scan_files(root, is_image_name)


def list_images(root: str | os.PathLike) -> list[str]:
    """The usable image files under ``root`` as sorted POSIX paths relative to ``root``."""
    return list(scan_images(root).files)
