"""Reading folders we do not control: a photo folder may hold FIFOs, devices, sockets, dangling
or looping symlinks, files we may not read, files that fail with EIO, files that grow while we
read them and names that are not valid UTF-8 or hold newlines.

Only regular files are ever opened (a FIFO blocks ``open`` forever, ``/dev/zero`` never ends),
opening is non-blocking and the type is checked on the open descriptor (so a file swapped for a
FIFO after the check is refused too), reads are bounded by ``MAX_FILE_BYTES``, and every entry
that cannot be used gets a one-line reason instead of an exception that would abort a whole
gallery. ``printable`` gives any name in a form a terminal or a page shows on one line.
"""
from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

MAX_FILE_BYTES = 2 << 30          # 2 GiB: larger "images" are refused before anything reads them


class NotRegularFile(OSError):
    """A path that is not a regular file (FIFO, device, socket, directory) or is too large."""


def printable(name: str) -> str:
    """``name`` for display, on one line and encodable as UTF-8: bytes that are not UTF-8
    (surrogate escapes of ``os.fsdecode``) become ``\\xNN``, control characters ``\\n``,
    ``\\x1b``, ...; ordinary names are returned unchanged."""
    raw = os.fsencode(name).decode("utf-8", "backslashreplace")
    if raw == name and name.isprintable():
        return name
    out = []
    for ch in raw:
        if ch.isprintable() or ch == "\\":
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def is_utf8(name: str) -> bool:
    """False for names holding bytes that are not UTF-8 (``os.fsdecode`` surrogate escapes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def describe_error(exc: OSError) -> str:
    """A one-line reason for an ``OSError``: its strerror (ENOENT of a symlink: dangling link),
    else its message (Pillow's "image file is truncated" carries no errno), else its type."""
    if isinstance(exc, NotRegularFile):
        return str(exc)
    message = str(exc).strip()
    reason = exc.strerror or (printable(message.splitlines()[0])[:200] if message else type(exc).__name__)
    return f"{reason} (errno {exc.errno})" if exc.errno else reason


def kind_of(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return kind
    return "not a regular file"


def check_regular(st: os.stat_result, max_bytes: int = MAX_FILE_BYTES) -> None:
    """Raise ``NotRegularFile`` unless ``st`` is a regular file of at most ``max_bytes``."""
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(f"{kind_of(st.st_mode)}, not a regular file; never opened")
    if st.st_size > max_bytes:
        raise NotRegularFile(f"{st.st_size:,} bytes exceeds the limit of {max_bytes:,}")


def stat_regular(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES) -> os.stat_result:
    """``os.stat`` (following links) of a regular file no larger than ``max_bytes``; raises
    ``OSError`` (dangling link, loop, permission) or ``NotRegularFile``."""
    st = os.stat(path)
    check_regular(st, max_bytes)
    return st


def open_regular(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES) -> BinaryIO:
    """Open ``path`` for binary reading only if it is a regular file of at most ``max_bytes``.

    The open is non-blocking (a FIFO would block a plain ``open`` until a writer appears) and
    the type is checked on the descriptor itself, so no check-then-open race lets a FIFO or a
    device through."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        check_regular(os.fstat(fd), max_bytes)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_limited(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The content of a regular file, at most ``max_bytes`` (see ``open_regular``)."""
    with open_regular(path, max_bytes) as fh:
        return fh.read(max_bytes + 1)[:max_bytes]


def iter_blocks(path: str | os.PathLike, block: int = 1 << 20, max_bytes: int = MAX_FILE_BYTES) -> Iterator[bytes]:
    """The content of a regular file in blocks, never more than the size it had when opened."""
    with open_regular(path, max_bytes) as fh:
        left = os.fstat(fh.fileno()).st_size
        while left > 0:
            data = fh.read(min(block, left))
            if not data:
                break
            left -= len(data)
            yield data


@dataclass
class Scan:
    """What a folder walk found: usable files (POSIX paths relative to the root) with their stat
    results, and every other candidate with the one-line reason it was left out."""

    files: dict[str, os.stat_result] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def walk_folders(root: str | os.PathLike, on_error: Callable[[OSError], None]) -> Iterator[tuple[str, list[str]]]:
    """(folder, names of its non-folder entries) for ``root`` and every folder below it, in sorted
    depth-first order, without recursion (a folder nested thousands deep costs a list, not the
    stack). Hidden entries are skipped and symlinked folders are not followed; a folder that
    cannot be listed (no permission, a path past the system's limit) goes to ``on_error``."""
    stack = [os.fspath(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
        except OSError as exc:
            on_error(exc)
            continue
        folders = [e for e in entries if _is_folder(e)]
        yield folder, [e.name for e in entries if not _is_folder(e)]
        stack.extend(os.path.join(folder, e.name) for e in reversed(folders) if not e.is_symlink())


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def scan_files(root: str | os.PathLike, accept: Callable[[str], bool],
               max_bytes: int = MAX_FILE_BYTES) -> Scan:
    """Walk ``root`` (``walk_folders``: iterative, hidden entries skipped, symlinked folders not
    followed) for files whose name ``accept`` takes; keep regular, stat-able files with UTF-8
    names, and list every other candidate in ``skipped`` under its ``printable`` name, with its
    reason. Folders that cannot be listed are reported, not fatal."""
    root = Path(root)
    scan = Scan()

    def on_error(exc: OSError) -> None:
        where = os.path.relpath(exc.filename, root) if exc.filename else "."
        scan.skipped[printable(Path(where).as_posix()) + "/"] = f"folder cannot be listed: {describe_error(exc)}"

    for dirpath, filenames in walk_folders(root, on_error):
        for name in filenames:
            if accept(name):
                _scan_file(scan, root, Path(dirpath, name), max_bytes)
    scan.files = dict(sorted(scan.files.items()))
    scan.skipped = dict(sorted(scan.skipped.items()))
    return scan


def _scan_file(scan: Scan, root: Path, path: Path, max_bytes: int) -> None:
    """Record ``path`` in ``scan``: usable, or skipped with its reason."""
    rel = os.path.relpath(path, root).replace(os.sep, "/")
    if not is_utf8(rel):
        scan.skipped[printable(rel)] = "file name is not valid UTF-8; rename the file to index it"
        return
    try:
        scan.files[rel] = stat_regular(path, max_bytes)
    except FileNotFoundError:
        scan.skipped[rel] = "dangling symbolic link" if os.path.islink(path) else "vanished while the folder was read"
    except OSError as exc:
        scan.skipped[rel] = "symbolic link loop" if exc.errno == errno.ELOOP else describe_error(exc)
