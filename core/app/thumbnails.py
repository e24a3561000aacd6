"""Gallery thumbnails decoded once per process, ahead of the searches that show them.

Decoding a photo for its thumbnail costs milliseconds, paid for every result of every new search;
a results grid of ten therefore cost more than the search itself. ``ThumbnailStore`` keeps the
square, unframed JPEG of each image (a few kB) and fills itself in a background thread when a
gallery is opened; a result's label frame is added to the stored bytes (``frame_jpeg``), which
needs no decoding of the photo.
"""
from __future__ import annotations

import io
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from PIL import ImageOps

from core.app.preview import FRAME, thumbnail
from core.images import ImageError, open_image


def frame_jpeg(data: bytes, colour: str | None) -> bytes:
    """``data`` (a JPEG thumbnail) with a ``FRAME``-pixel frame in ``colour``; unchanged for None."""
    if colour is None:
        return data
    with open_image(io.BytesIO(data)) as img:
        framed = ImageOps.expand(img.convert("RGB"), border=FRAME, fill=colour)
    out = io.BytesIO()
    framed.save(out, format="JPEG", quality=85)
    return out.getvalue()


class ThumbnailStore:
    """Square thumbnails (``core.app.preview.thumbnail``, ``max_side`` pixels) by file and
    modification time, at most ``max_entries`` of them; thread-safe, so that one store serves
    every session of the app while ``warm`` fills it."""

    def __init__(self, max_side: int, max_entries: int = 20_000) -> None:
        self.max_side, self.max_entries = max_side, max_entries
        self._data: dict[tuple[str, int], bytes] = {}
        self._lock = threading.Lock()
        self._warming: set[str] = set()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, path: str | os.PathLike) -> bytes:
        """The thumbnail of ``path``, decoded now if it is not stored yet (``ImageError`` for an
        unreadable file)."""
        key = (str(path), os.stat(path).st_mtime_ns)
        with self._lock:
            found = self._data.get(key)
        if found is not None:
            return found
        data = thumbnail(path, self.max_side, square=True)
        with self._lock:
            if len(self._data) < self.max_entries:
                self._data[key] = data
        return data

    def warm(self, root: Path, ids: Sequence[str], name: str) -> threading.Thread | None:
        """Decode the thumbnails of gallery ``name`` (images ``ids`` under ``root``) in a background
        thread, once per gallery; returns the thread, or None when that gallery is already being
        warmed or has more images than the store holds. A larger gallery is not warmed: its first
        ``max_entries`` images would be a few percent of it (a search shows 10 of any), decoded on
        the cores the searches need; its thumbnails are decoded as they are shown."""
        with self._lock:
            if name in self._warming or len(ids) > self.max_entries:
                return None
            self._warming.add(name)

        def fill() -> None:
            for image_id in ids:
                try:
                    self.get(root / image_id)
                except (ImageError, OSError):
                    continue              # unreadable files have no thumbnail; the page says so when shown

        thread = threading.Thread(target=fill, name=f"thumbnails-{name}", daemon=True)
        thread.start()
        return thread
