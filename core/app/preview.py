"""Images as the app shows them: small framed thumbnails, checked uploads, and boxes converted
between a downscaled preview (what the cropper draws on) and original pixels (what is embedded).

Inputs are checked before use: a gallery photo deleted since indexing is an ``ImageError`` that
says to index again (and a placeholder thumbnail), a linked box is clipped to its image or
dropped with a line (``fit_box``), and an upload's decoded size is bounded by
``MAX_UPLOAD_PIXELS`` (JPEGs over it are decoded downscaled, other formats refused before
decoding).

Thumbnails are decoded with ``Image.draft`` (JPEG at 1/2 to 1/8 scale), so a results grid costs
a few milliseconds per image instead of a full decode of each photo.
"""
from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from core.fs import printable
from core.images import MAX_PIXELS, Box, ImageError, fit_max_size, image_size, load_image, open_image

UPLOAD_TYPES: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")
UPLOAD_NAMES = "JPEG, PNG, WebP, BMP, GIF or TIFF"
TINY = 32                             # an upload with a side under this many pixels gets a warning
LARGE_SIDE = 4096                     # a JPEG over the pixel limit is decoded at about this size
FRAME = 6                             # frame width in pixels of a labelled thumbnail
MAX_UPLOAD_MB = 20                    # query images larger than this are refused, with a message
# decoded size of an upload (72 MB as RGB): a JPEG over it is decoded downscaled, another format refused
MAX_UPLOAD_PIXELS = 24_000_000
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
    size, kind = _header(data)
    pixels = size[0] * size[1]
    if pixels > MAX_UPLOAD_PIXELS and (kind == "JPEG" or pixels <= MAX_PIXELS):
        return _downscaled(name, data, size, kind)
    img = load_image(buffer)             # any other over MAX_PIXELS: refused as a bomb before decoding
    note = None
    if min(img.size) < TINY:
        note = (f"{name} is only {img.width}×{img.height} px: the network sees it enlarged, so the results may "
                "say little about what it shows.")
    return Upload(img, img.size, note)


def check_upload(name: str, data: bytes, max_mb: float) -> Image.Image:
    """The image of ``read_upload`` alone."""
    return read_upload(name, data, max_mb).image


def _header(data: bytes) -> tuple[tuple[int, int], str]:
    """The picture's size and format from its header (nothing decoded yet)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with open_image(io.BytesIO(data)) as img:
                return img.size, str(img.format)
    except (ImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        return (0, 0), ""                # unreadable: load_image says why


def _downscaled(name: str, data: bytes, size: tuple[int, int], kind: str) -> Upload:
    """An upload over ``MAX_UPLOAD_PIXELS``: a JPEG is decoded at a reduced scale, another
    format is refused before it is decoded (its full picture would have to be built first)."""
    pixels = size[0] * size[1]
    side = min(LARGE_SIDE, math.floor(max(size) * math.sqrt(MAX_UPLOAD_PIXELS / pixels)))
    img = _reduced_jpeg(data, side) if kind == "JPEG" else None
    if img is None:
        raise ImageError(f"{name}: {size[0]}×{size[1]} is {pixels / 1e6:.0f} megapixels; the limit for an upload is "
                         f"{MAX_UPLOAD_PIXELS / 1e6:g} (JPEGs of any size are downscaled); upload a smaller image")
    return Upload(img, size, f"{name} is {size[0]}×{size[1]} px ({pixels / 1e6:.0f} megapixels): "
                             f"searched at {img.width}×{img.height}.")


def _reduced_jpeg(data: bytes, side: int) -> Image.Image | None:
    """A JPEG decoded at 1/2 to 1/8 scale (``Image.draft``: the decoder never builds the full
    picture), longer side at most ``side``; None when it cannot be read or is still over
    ``MAX_UPLOAD_PIXELS`` at 1/8."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = open_image(io.BytesIO(data))
            img.draft("RGB", (side, side))
            if img.size[0] * img.size[1] > MAX_UPLOAD_PIXELS * 4:       # draft scales by 1/8 at most
                return None
            img = ImageOps.exif_transpose(img.convert("RGB"))
    except (ImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        return None
    return fit_max_size(img, side)


def gallery_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of a gallery photo, or ``ImageError`` in one line when it cannot be read
    now (deleted or replaced since the gallery was indexed)."""
    try:
        return image_size(path)
    except (OSError, ImageError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ImageError(f"{printable(str(path))} cannot be read ({reason}): it changed since the gallery was "
                         f"indexed; index the gallery again") from None


def missing_thumbnail(max_side: int) -> bytes:
    """A crossed grey square (JPEG): the thumbnail of a photo that cannot be read any more."""
    img = Image.new("RGB", (max_side, max_side), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for line in (((0, 0), (max_side, max_side)), ((0, max_side), (max_side, 0))):
        draw.line(line, fill=(160, 160, 160), width=2)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=85)
    return out.getvalue()


def fit_box(box: Box, size: tuple[int, int]) -> tuple[Box | None, str | None]:
    """A box from a link made usable on an image of ``size``: unchanged when it lies inside,
    clipped to the image (with a note) when it crosses an edge, None (with a note) when nothing
    of it lies inside. Extreme values (``±1e308``) clip like any other."""
    w, h = size
    if 0 <= box.x1 < box.x2 <= w and 0 <= box.y1 < box.y2 <= h:
        return box, None
    try:
        clipped = box.clamp(w, h)
    except ImageError:
        return None, f"The link's box {box.as_list()} lies outside the {w}×{h} image; the whole image is used."
    return clipped, f"The link's box {box.as_list()} was clipped to the {w}×{h} image: {clipped.as_list()}."


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
