"""What the pages read from the descriptor caches on disk: which caches another process
(``python -m core index``, the app's own build button in another tab) is writing now, how far it
has got, how much room each cache takes, and how fast its images were embedded (the estimate of
a first re-ranking that reads them all again).

A cache being written holds an exclusive ``flock`` on its ``.lock`` (``core.cache.descriptors``);
probing it with a non-blocking shared lock never waits and never disturbs the writer.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from core.cache.descriptors import LOCK
from core.images import is_image_name
from core.paths import embeddings_dir


@dataclass(frozen=True)
class CacheWork:
    """A cache of a gallery that a process is writing now: its key (folder name), its embedding's
    label when its config is written already, and the images checkpointed so far (None before
    the first checkpoint)."""

    key: str
    label: str | None
    n_done: int | None


def is_locked(path: Path) -> bool:
    """True when another process holds an exclusive ``flock`` on ``path`` (False when the file
    does not exist)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)


def caches_in_progress(gallery: str) -> list[CacheWork]:
    """The caches of ``gallery`` being written now, by folder name."""
    out = []
    for lock in sorted((embeddings_dir() / gallery).glob(f"*/{LOCK}")):
        if not is_locked(lock):
            continue
        meta = _json(lock.parent / "meta.json")
        n_done = meta.get("n_images")
        out.append(CacheWork(lock.parent.name, meta.get("label"), int(n_done) if n_done is not None else None))
    return out


def cache_bytes(gallery: str, key: str) -> int:
    """Bytes on disk of one cache folder (descriptors, saved indexes, metadata)."""
    folder = embeddings_dir() / gallery / key
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def extraction_rate(gallery: str, key: str) -> float | None:
    """Images per second the last extraction of a cache ran at (None when it never recorded
    one): what a first re-ranking that reads every image of the gallery again can expect."""
    rate = _json(embeddings_dir() / gallery / key / "meta.json").get("extraction", {}).get("images_per_second")
    return float(rate) if isinstance(rate, (int, float)) and rate > 0 else None


def sample_images(root: Path, n: int = 8) -> list[str]:
    """Up to ``n`` image names at the top of a gallery's folder, sorted (thumbnails to recognise it by)."""
    try:
        names = sorted(e.name for e in os.scandir(root) if e.is_file() and is_image_name(e.name)
                       and not e.name.startswith("."))
    except OSError:
        return []
    return list(islice(names, n))


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
