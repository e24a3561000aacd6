"""Images as the app shows them: small framed thumbnails, checked uploads, and boxes converted
between a downscaled preview (what the cropper draws on) and original pixels (what is embedded).

Thumbnails are decoded with ``Image.draft`` (JPEG at 1/2 to 1/8 scale), so a results grid costs
a few milliseconds per image instead of a full decode of each photo.
"""
from __future__ import annotations

import io
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from core.images import MAX_PIXELS, Box, ImageError, fit_max_size, load_image

UPLOAD_TYPES: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")
UPLOAD_NAMES = "JPEG, PNG, WebP, BMP, GIF or TIFF"
TINY = 32                             # an upload with a side under this many pixels gets a warning
LARGE_SIDE = 4096                     # a JPEG over the pixel limit is decoded at about this size
FRAME = 6                             # frame width in pixels of a labelled thumbnail
MAX_UPLOAD_MB = 20                    # query images larger than this are refused, with a message
BACKGROUND = (240, 242, 246)          # behind square thumbnails: the app's secondary background


def thumbnail(path: str | os.PathLike, max_side: int = 240, colour: str | None = None,
              box: Box | None = None, square: bool = False) -> bytes:
    """JPEG bytes of the image (cropped to ``box`` in original pixels when given), longer side at
    most ``max_side``, centred on a light square of that side when ``square`` (so that a grid of
    them lines up), framed in ``colour`` when given."""
    img = load_image(path, max_side, box)
    if square:
        canvas = Image.new("RGB", (max_side, max_side), BACKGROUND)
        canvas.paste(img, ((max_side - img.width) // 2, (max_side - img.height) // 2))
        img = canvas
    if colour is not None:
        img = ImageOps.expand(img, border=FRAME, fill=colour)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=85)
    return out.getvalue()


@dataclass(frozen=True)
class Upload:
    """An uploaded query: the image to search with (RGB), the size of the file's picture, and a
    sentence to show beside it when the picture was downscaled or is too small to mean much."""

    image: Image.Image
    original_size: tuple[int, int]
    note: str | None = None


def read_upload(name: str, data: bytes, max_mb: float) -> Upload:
    """The uploaded image, or ``ImageError`` saying what is wrong with the file: its type (jpg,
    png, webp, bmp, gif: the first frame, tiff), its size (over ``max_mb`` megabytes) or its
    content. A JPEG over the decoder's pixel limit (a 100-megapixel camera) is decoded at a reduced
    scale instead of refused; an image under ``TINY`` pixels a side is searched, with a warning."""
    ext = Path(name).suffix.lower().lstrip(".")
    if ext not in UPLOAD_TYPES:
        raise ImageError(f"{name}: .{ext or '?'} files are not supported; upload a {UPLOAD_NAMES} image")
    if len(data) > max_mb * 1024 * 1024:
        raise ImageError(f"{name} is {len(data) / 1024 / 1024:.1f} MB; the limit is {max_mb:g} MB")
    if not data:
        raise ImageError(f"{name} is empty")
    buffer = io.BytesIO(data)
    buffer.name = name                   # what load_image's messages call the file
    try:
        img = load_image(buffer)
    except ImageError:
        img = _reduced_jpeg(data)
        if img is None:
            raise
        size = _header_size(data)
        return Upload(img, size, f"{name} is {size[0]}×{size[1]} px ({size[0] * size[1] / 1e6:.0f} megapixels): "
                                 f"searched at {img.width}×{img.height}.")
    note = None
    if min(img.size) < TINY:
        note = (f"{name} is only {img.width}×{img.height} px: the network sees it enlarged, so the results may "
                "say little about what it shows.")
    return Upload(img, img.size, note)


def check_upload(name: str, data: bytes, max_mb: float) -> Image.Image:
    """The image of ``read_upload`` alone."""
    return read_upload(name, data, max_mb).image


def _header_size(data: bytes) -> tuple[int, int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data)).size


def _reduced_jpeg(data: bytes) -> Image.Image | None:
    """A JPEG over the pixel limit decoded at 1/2 to 1/8 scale (``Image.draft``: the decoder never
    builds the full picture), longer side at most ``LARGE_SIDE``; None for any other file, or one
    still too large at 1/8."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.format != "JPEG" or img.size[0] * img.size[1] <= MAX_PIXELS:
                return None
            img.draft("RGB", (LARGE_SIDE, LARGE_SIDE))
            if img.size[0] * img.size[1] > MAX_PIXELS:
                return None
            img = ImageOps.exif_transpose(img.convert("RGB"))
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        return None
    return fit_max_size(img, LARGE_SIDE)


def preview(img: Image.Image, max_width: int, max_height: int) -> tuple[Image.Image, float]:
    """A copy that fits in ``max_width`` × ``max_height``, and the factor from preview to
    original pixels (>= 1)."""
    scale = max(1.0, img.width / max_width, img.height / max_height)
    if scale == 1.0:
        return img, 1.0
    small = img.resize((max(1, round(img.width / scale)), max(1, round(img.height / scale))),
                       Image.Resampling.BILINEAR)
    return small, img.width / small.width


def box_from_cropper(rect: Mapping[str, float], scale: float, size: tuple[int, int], start: Box | None = None) -> Box:
    """The cropper's ``{left, top, width, height}`` (preview pixels) as a box in original pixels,
    clipped to the original ``size``. When every edge is within one preview pixel of ``start``
    (the box the cropper was opened with), the person did not move it: ``start`` itself is
    returned, so that a ground-truth box is searched exactly, not rounded through the preview."""
    if start is not None:
        x1, x2, y1, y2 = cropper_coords(start, scale)
        edges = (rect["left"], rect["left"] + rect["width"], rect["top"], rect["top"] + rect["height"])
        if all(abs(a - b) <= 1 for a, b in zip(edges, (x1, x2, y1, y2))):
            return start
    x1, y1 = rect["left"] * scale, rect["top"] * scale
    box = Box(x1, y1, x1 + rect["width"] * scale, y1 + rect["height"] * scale)
    return box.clamp(*size)


def cropper_coords(box: Box, scale: float) -> tuple[int, int, int, int]:
    """A box in original pixels as ``st_cropper``'s ``default_coords`` (x left, x right, y top,
    y bottom) in preview pixels."""
    return (round(box.x1 / scale), round(box.x2 / scale), round(box.y1 / scale), round(box.y2 / scale))
