"""Atomic file writes: write to a temporary file in the target directory, fsync, rename.

A killed process leaves either the old file or the new one, never half of one. Files get the
permissions the umask allows (``mkstemp`` alone would make every one 0600), and writers of one
cache serialise on an advisory lock (``exclusive_lock``).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from core.fs import iter_blocks


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=f".tmp{suffix}", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_digests: dict[tuple[str, str, int, int, int, int, int], str] = {}
_digests_lock = threading.Lock()


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", remember: bool = True) -> str:
    """Hex digest (``algorithm``: sha256, or md5 where only an MD5 is published) of a regular
    file, never reading more than the size it had when opened. Computed once per process for each
    (path, device, inode, size, mtime, ctime): a file replaced or rewritten under the same name is
    read again (even with its mtime set back: ctime cannot be), an unchanged one is not (a model
    checked on every search costs one ``stat``). ``remember=False`` for files read once (a
    gallery's photos, a download), which the process should not keep a record of."""
    st = os.stat(path)
    key = (algorithm, str(Path(path).resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    with _digests_lock:
        if key in _digests:
            return _digests[key]
    h = hashlib.new(algorithm, usedforsecurity=algorithm != "md5")
    for block in iter_blocks(path, max_bytes=sys.maxsize):
        h.update(block)
    if remember:
        with _digests_lock:
            _digests[key] = h.hexdigest()
    return h.hexdigest()


def current_umask() -> int:
    """The process umask, read without changing it (``os.umask`` can only be read by setting it,
    which would race with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def exclusive_lock(path: str | os.PathLike, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the ``with`` block.
    ``on_wait`` is called once if another holder makes us wait. The kernel releases the lock
    when its holder exits or is killed, so a dead writer never blocks the next one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def remove_stale_temporaries(directory: str | os.PathLike) -> list[str]:
    """Delete the temporary files that killed writers left in ``directory`` (those whose
    process no longer exists; a live writer's file is never touched). Returns their names."""
    removed = []
    for tmp in Path(directory).glob(".*.tmp*"):
        match = re.search(r"\.(\d+)\.[^.]*\.tmp", tmp.name)
        if match and not _alive(int(match[1])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp.name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n")


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
