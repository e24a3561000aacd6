"""Image loading for retrieval: EXIF orientation, any mode to RGB, crop by a box in original
pixel coordinates, downscale so the longer side is at most ``max_size``.

Unreadable input raises ``ImageError`` with a reason a person can act on; galleries skip such
files and report them.
"""
from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
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

    @classmethod
    def of(cls, values: Sequence[float]) -> Box:
        if len(values) != 4:
            raise ValueError(f"a box needs 4 numbers x1 y1 x2 y2, got {len(values)}")
        return cls(*(float(v) for v in values))

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


def load_image(source: str | os.PathLike | IO[bytes], max_size: int | None = None,
               box: Box | Sequence[float] | None = None) -> Image.Image:
    """Open ``source`` as RGB, upright (EXIF), cropped to ``box`` (original pixels), then
    downscaled so that its longer side is at most ``max_size`` (never upscaled).

    JPEGs are decoded at a reduced scale (``Image.draft``) when that still leaves enough pixels,
    which is several times cheaper than a full decode. Raises ``ImageError`` for unreadable,
    truncated, empty or oversized files.
    """
    name = getattr(source, "name", source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(source)
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
    except UnidentifiedImageError as exc:
        raise ImageError(f"not an image Pillow can read: {name}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"corrupt or truncated image {name}: {exc}") from exc
    img = _to_rgb(img)
    if box_obj is not None:
        full_w, full_h = round(img.size[0] / scale), round(img.size[1] / scale)
        b = box_obj.clamp(full_w, full_h)
        img = img.crop(tuple(round(v * scale) for v in b.as_list()))
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
    with Image.open(path) as img:
        w, h = img.size
        orientation = img.getexif().get(0x0112, 1)
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image to a float [3, H, W] tensor in [0, 1]."""
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def list_images(root: str | os.PathLike) -> list[str]:
    """Image files under ``root`` (recursive, hidden entries skipped), as sorted POSIX paths
    relative to ``root``."""
    root = Path(root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in filenames:
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS):
                found.append(Path(dirpath, f).relative_to(root).as_posix())
    return sorted(found)
