"""Downloader of the benchmark datasets from their official hosts: ``python -m core data fetch``.

The catalogue is data (``CATALOGUE``): each dataset lists its files on named hosts. Every
file is downloaded to ``DIR/_downloads/`` with HTTP Range resume through a ``.part`` file,
checked against its sha256 where one is known, and archives are extracted, flattened, into the
dataset's folder (``DIR/<dataset>/jpg``, ``DIR/<dataset>/gt``), the layout that
``core.datasets.types.dataset_layout`` and ``python -m core evaluate --root DIR/<dataset>`` read.
Archives stay in ``_downloads`` so that ``roxford5k`` reuses the images ``oxford5k`` fetched.

Extraction refuses the whole archive, before writing anything, when a member has an absolute
path, a ``..`` component, or is a link, device or fifo, when it holds more than
``MAX_MEMBERS`` files or ``MAX_EXTRACTED_BYTES``, or when it would expand more than
``MAX_RATIO`` times its own size (a decompression bomb). Only a real integrity failure (a
checksum mismatch, a truncated or corrupt archive) deletes a download, so that the next run
fetches it afresh; any other failure (a full disk, a folder we may not write, an I/O error)
keeps it, says what happened, and the next run unpacks it without downloading it again. The
official hosts publish no checksums; ``Resource.sha256`` is verified whenever one is set, and
``Resource.md5`` where only an MD5 is known (CIFAR-10's, the one torchvision checks).

``base_url`` replaces every host (the file's path under its host is kept), for mirrors and
for the tests, which serve archives from 127.0.0.1.
"""
from __future__ import annotations

import http.client
import lzma
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from core.config import command_line
from core.files import atomic_path, file_digest, write_text
from core.fs import describe_error

CHUNK = 1 << 20
TIMEOUT_S = 60
DOWNLOADS = "_downloads"
MAX_EXTRACTED_BYTES = 64 << 30     # the largest official archive unpacks to about 2.5 GB
MAX_MEMBERS = 1_000_000            # R-1M archives hold 10,000 images each
MAX_RATIO = 200                    # JPEG archives expand about 1:1, ground-truth text lists about 1:10
RATIO_FLOOR = 16 << 20             # archives expanding to less than this are never refused for their ratio

HOSTS: dict[str, str] = {
    "vgg-oxford": "https://www.robots.ox.ac.uk/~vgg/data/oxbuildings",
    "vgg-paris": "https://www.robots.ox.ac.uk/~vgg/data/parisbuildings",
    "revisitop": "http://cmp.felk.cvut.cz/revisitop/data/datasets",
    "revisitop1m": "http://ptak.felk.cvut.cz/revisitop/revisitop1m",
    "inria": "ftp://ftp.inrialpes.fr/pub/lear/douze/data",
    "inria-eval": "http://lear.inrialpes.fr/people/jegou/code",
    "toronto": "https://www.cs.toronto.edu/~kriz",
}


class DownloadError(RuntimeError):
    """A file that could not be fetched or unpacked, with what to do about it."""


class OfflineError(DownloadError):
    """The host cannot be reached at all."""


class ChecksumError(DownloadError):
    """A downloaded file whose sha256 is not the published one."""


class UnsafeArchive(DownloadError):
    """An archive with a member that would leave the target folder or is not a plain file, or
    that would expand beyond the size and ratio limits."""


def is_integrity_failure(exc: BaseException) -> bool:
    """True when ``exc`` says the data itself is bad (truncated, corrupt), False when the
    environment failed (disk full, permissions, I/O: an ``OSError`` with an errno). Only the
    former may delete a download."""
    if isinstance(exc, (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError)):
        return True
    return isinstance(exc, OSError) and exc.errno is None          # gzip.BadGzipFile, bz2's invalid stream


def _kept(what: str, path: Path, exc: OSError) -> DownloadError:
    return DownloadError(f"{what} failed: {describe_error(exc)}; nothing was deleted, {path} is kept. "
                         f"Free some space (or fix the folder) and run the same command again: it goes on "
                         f"from there without downloading again")


@dataclass(frozen=True)
class Resource:
    """One file of a dataset: ``path`` under ``HOSTS[host]``; an archive (``extract``) is
    unpacked, flattened, into ``into`` (relative to the dataset folder), any other file is
    copied there."""

    host: str
    path: str
    into: str = ""
    extract: bool = False
    sha256: str | None = None
    md5: str | None = None
    keep: bool = True              # False: the archive is deleted once unpacked (R-1M: 100 archives, tens of GB)

    @property
    def filename(self) -> str:
        return PurePosixPath(self.path).name

    def url(self, base_url: str | None = None) -> str:
        return f"{(base_url or HOSTS[self.host]).rstrip('/')}/{self.path}"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    resources: tuple[Resource, ...]
    extras: dict[str, tuple[Resource, ...]] = field(default_factory=dict)   # optional parts, by flag


_OXFORD_IMAGES = Resource("vgg-oxford", "oxbuild_images-v1.tgz", "jpg", extract=True)
_PARIS_IMAGES = (Resource("vgg-paris", "paris_1-v1.tgz", "jpg", extract=True),
                 Resource("vgg-paris", "paris_2-v1.tgz", "jpg", extract=True))
_R1M_LIST = Resource("revisitop1m", "revisitop1m.txt", "../revisitop1m")
R1M_PARTS = 100                    # revisitop1m.1.tar.gz ... revisitop1m.100.tar.gz, about 10,000 images each


def r1m_archive(part: int) -> Resource:
    """Archive ``part`` (1-100) of the R-1M distractor images, unpacked into ``revisitop1m/jpg``."""
    return Resource("revisitop1m", f"jpg/revisitop1m.{part}.tar.gz", "jpg", extract=True, keep=False)


def parse_parts(text: str) -> tuple[int, ...]:
    """``"1-10"``, ``"3"`` or ``"1-5,8"`` as sorted part numbers, each within 1..R1M_PARTS."""
    parts: set[int] = set()
    for piece in text.split(","):
        try:
            first, _, last = piece.strip().partition("-")
            lo, hi = int(first), int(last or first)
        except ValueError:
            raise ValueError(f"--parts {text!r}: expected numbers and ranges such as 1-10 or 1-5,8") from None
        if not 1 <= lo <= hi <= R1M_PARTS:
            raise ValueError(f"--parts {text!r}: parts run from 1 to {R1M_PARTS}")
        parts.update(range(lo, hi + 1))
    return tuple(sorted(parts))

CATALOGUE: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec("oxford5k", "Oxford Buildings: 5063 images, 55 queries (VGG, Philbin et al. 2007)",
                (_OXFORD_IMAGES, Resource("vgg-oxford", "gt_files_170407.tgz", "gt", extract=True))),
    DatasetSpec("paris6k", "Paris Buildings: 6412 images (20 corrupt), 55 queries (VGG, Philbin et al. 2008)",
                (*_PARIS_IMAGES, Resource("vgg-paris", "paris_120310.tgz", "gt", extract=True))),
    DatasetSpec("roxford5k", "Revisited Oxford: 4993 images, 70 queries, easy/hard/junk (Radenović et al. 2018)",
                (Resource("revisitop", "roxford5k/gnd_roxford5k.pkl"), _OXFORD_IMAGES), {"r1m": (_R1M_LIST,)}),
    DatasetSpec("rparis6k", "Revisited Paris: 6322 images, 70 queries, easy/hard/junk (Radenović et al. 2018)",
                (Resource("revisitop", "rparis6k/gnd_rparis6k.pkl"), *_PARIS_IMAGES), {"r1m": (_R1M_LIST,)}),
    DatasetSpec("holidays", "INRIA Holidays: 1491 images in 500 groups (Jégou et al. 2008)",
                (Resource("inria", "jpg1.tar.gz", "jpg", extract=True),
                 Resource("inria", "jpg2.tar.gz", "jpg", extract=True),
                 Resource("inria-eval", "eval_holidays.tgz", "", extract=True))),
    DatasetSpec("cifar10", "CIFAR-10: 60,000 32x32 colour images of 10 classes (Krizhevsky 2009), as the python "
                f"pickle batches; export them to class folders with: {command_line('data', 'export-cifar10')}",
                (Resource("toronto", "cifar-10-python.tar.gz", "batches", extract=True,
                          md5="c58f30108f718f92721af3b95e74349a"),)),
    DatasetSpec("revisitop1m", "R-1M distractors: 1,001,001 images in 100 archives (--parts for a subset, "
                "e.g. 1-10 for about 100k) and the list of their names",
                (Resource("revisitop1m", "revisitop1m.txt"), *(r1m_archive(p) for p in range(1, R1M_PARTS + 1)))),
)}


def _digests_match(path: Path, sha256: str | None, md5: str | None) -> bool:
    return (sha256 is None or file_digest(path, remember=False) == sha256) and (md5 is None or file_digest(path, "md5", False) == md5)


def _offline(url: str, dest: Path, reason: object) -> OfflineError:
    return OfflineError(f"cannot reach {url} ({reason}). This machine seems to be offline, or the host is down. "
                        f"Download the file by other means and put it at {dest}; the next run uses it.")


def _open(url: str, offset: int, timeout: float):
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def download(url: str, dest: str | Path, sha256: str | None = None, progress: bool = True,
             timeout: float = TIMEOUT_S, md5: str | None = None) -> Path:
    """Fetch ``url`` to ``dest`` through ``dest.part``, resuming a partial ``.part`` with an
    HTTP Range request. An existing ``dest`` (with the right checksums, if any) is kept as is.
    A transfer cut short keeps its ``.part`` and raises ``DownloadError``; run it again to resume."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        if _digests_match(dest, sha256, md5):
            return dest
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    try:
        resp = _open(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:              # the part already holds the whole file
            return _finish(part, dest, sha256, url, md5)
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise _offline(url, dest, exc.reason) from exc
    except (TimeoutError, ConnectionError) as exc:
        raise _offline(url, dest, exc) from exc
    with resp:
        if offset and getattr(resp, "status", None) != 206:
            offset = 0                              # the server ignored the range: start over
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length else None
        try:
            with open(part, "ab" if offset else "wb") as fh, \
                    tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                         desc=dest.name, disable=not progress, dynamic_ncols=True) as bar:
                try:
                    for block in iter(lambda: resp.read(CHUNK), b""):
                        fh.write(block)
                        bar.update(len(block))
                except (http.client.IncompleteRead, ConnectionError, TimeoutError) as exc:
                    fh.flush()                      # so that the size below is what the .part holds
                    raise DownloadError(f"transfer of {url} interrupted after {part.stat().st_size:,} bytes "
                                        f"({exc}); run the same command again to resume") from exc
        except OSError as exc:
            if isinstance(exc, (ConnectionError, TimeoutError)):
                raise
            raise _kept(f"writing {part.name}", part, exc) from exc
    got = part.stat().st_size
    if total is not None and got != total:
        raise DownloadError(f"transfer of {url} interrupted after {got:,} of {total:,} bytes; "
                            f"run the same command again to resume")
    return _finish(part, dest, sha256, url, md5)


def _finish(part: Path, dest: Path, sha256: str | None, url: str, md5: str | None = None) -> Path:
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        if expected is not None:
            actual = file_digest(part, algorithm, remember=False)
            if actual != expected:
                part.unlink()
                raise ChecksumError(f"{url}: {algorithm} {actual} is not the published {expected}; the file was "
                                    f"deleted, run again to download it afresh")
    os.replace(part, dest)
    return dest


# ---------------------------------------------------------------- safe extraction

def _check_name(archive: Path, name: str) -> str:
    """The member's file name, after refusing absolute paths and ``..`` components."""
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (p.parts and p.parts[0].endswith(":")):
        raise UnsafeArchive(f"{archive.name}: member {name!r} would be written outside the target folder; "
                            f"refused the whole archive")
    return p.name


Member = tuple[str, int, Callable]          # (flattened file name, declared size, opener)


def _tar_members(archive: Path, tar: tarfile.TarFile) -> list[Member]:
    members = tar.getmembers()
    for m in members:
        _check_name(archive, m.name)
        if m.issym() or m.islnk():
            raise UnsafeArchive(f"{archive.name}: member {m.name!r} is a link; refused the whole archive")
        if not (m.isreg() or m.isdir()):
            raise UnsafeArchive(f"{archive.name}: member {m.name!r} is a device or fifo; refused the whole archive")
    return [(_check_name(archive, m.name), m.size, lambda m=m: tar.extractfile(m)) for m in members if m.isreg()]


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> list[Member]:
    infos = zf.infolist()
    for info in infos:
        _check_name(archive, info.filename)
        kind = (info.external_attr >> 16) & 0o170000
        if kind and kind not in (0o100000, 0o040000):
            raise UnsafeArchive(f"{archive.name}: member {info.filename!r} is a link or special file; "
                                f"refused the whole archive")
    # zipfile stops reading a member at its declared size and checks its CRC
    return [(_check_name(archive, i.filename), i.file_size, lambda i=i: zf.open(i)) for i in infos if not i.is_dir()]


@contextmanager
def _members(archive: Path) -> Iterator[list[Member]]:
    """The regular files of a tar or zip archive, every member checked first."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            yield _zip_members(archive, zf)
    else:
        with tarfile.open(archive, "r:*") as tar:
            yield _tar_members(archive, tar)


def check_expansion(archive: Path, members: list[Member], free_bytes: int | None = None) -> None:
    """Refuse an archive whose members are too many or too large in all, or expand more than
    ``MAX_RATIO`` times the archive (``UnsafeArchive``); and one that does not fit in
    ``free_bytes`` (``DownloadError``: the archive is fine, the disk is not)."""
    total = sum(size for _, size, _ in members)
    if len(members) > MAX_MEMBERS:
        raise UnsafeArchive(f"{archive.name} holds {len(members):,} files, more than the limit of {MAX_MEMBERS:,}; "
                            f"refused the whole archive")
    if total > MAX_EXTRACTED_BYTES:
        raise UnsafeArchive(f"{archive.name} would unpack to {total:,} bytes, more than the limit of "
                            f"{MAX_EXTRACTED_BYTES:,}; refused the whole archive")
    size = archive.stat().st_size
    if total > RATIO_FLOOR and total > MAX_RATIO * size:
        raise UnsafeArchive(f"{archive.name} would expand {total / max(size, 1):,.0f} times ({size:,} to "
                            f"{total:,} bytes), more than the limit of {MAX_RATIO}; refused as a decompression bomb")
    if free_bytes is not None and total > free_bytes:
        raise DownloadError(f"{archive.name} unpacks to {total / 1e6:,.1f} MB but only {free_bytes / 1e6:,.1f} MB "
                            f"are free; nothing was deleted, the archive is kept. Free some space and run the "
                            f"same command again: it is unpacked without downloading again")


def extract(archive: str | Path, target: str | Path) -> int:
    """Extract the regular files of a tar or zip archive into ``target``, flattened (the
    official archives nest images in different folder layouts). Files go through a temporary
    folder beside ``target``, so a failed extraction leaves ``target`` as it was. A corrupt or
    truncated archive is deleted (``is_integrity_failure``); after any other failure (a full
    disk) it is kept. Returns the number of files extracted."""
    archive, target = Path(archive), Path(target)
    staging = target.parent / f".extract-{archive.name}"
    count = 0
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        with _members(archive) as members:
            check_expansion(archive, members, shutil.disk_usage(staging).free)
            for name, size, opener in members:
                dest = staging / name
                if dest.exists():
                    raise UnsafeArchive(f"{archive.name}: two members are named {name!r}; refused the whole archive")
                with opener() as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
                count += 1
        target.mkdir(parents=True, exist_ok=True)
        for f in staging.iterdir():
            os.replace(f, target / f.name)
        staging.rmdir()
    except DownloadError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if not is_integrity_failure(exc):
            raise _kept(f"unpacking {archive.name} into {target}", archive, exc) from exc
        archive.unlink(missing_ok=True)
        raise DownloadError(f"{archive.name} is corrupt or truncated ({exc}); deleted it, run again to "
                            f"download it afresh") from exc
    return count


# ---------------------------------------------------------------- datasets

@dataclass
class FetchReport:
    dataset: str
    folder: Path
    files: list[str] = field(default_factory=list)       # what was done with each resource, one line each


def resources_of(name: str, extras: tuple[str, ...] = (), parts: tuple[int, ...] | None = None) -> tuple[Resource, ...]:
    """The files of dataset ``name`` with its optional ``extras``; ``parts`` keeps only those R-1M
    image archives (revisitop1m; None: all of them)."""
    if name not in CATALOGUE:
        raise KeyError(f"unknown dataset {name!r}; the downloader knows: {', '.join(CATALOGUE)}")
    spec = CATALOGUE[name]
    unknown = [e for e in extras if e not in spec.extras]
    if unknown:
        raise ValueError(f"{name} has no optional part {', '.join(unknown)}")
    if parts is not None and name != "revisitop1m":
        raise ValueError("--parts selects archives of revisitop1m only")
    chosen = {r1m_archive(p) for p in parts} if parts is not None else None
    return tuple(r for r in spec.resources + tuple(r for e in extras for r in spec.extras[e])
                 if chosen is None or not r.path.startswith("jpg/") or r in chosen)


def _unpack(res: Resource, archive: Path, target: Path, marker: Path) -> str:
    """Extract ``archive`` into ``target``, record it in ``marker`` (the archive's size), and
    delete the archive when the resource does not keep it. Returns the report line."""
    size = archive.stat().st_size
    if marker.exists() and marker.read_text() == f"{size}":
        return f"{res.filename}: already extracted in {target}"
    n = extract(archive, target)
    try:
        write_text(marker, f"{size}")
    except OSError as exc:
        raise _kept(f"recording the extraction of {res.filename}", archive, exc) from exc
    if not res.keep:
        archive.unlink()
    return f"{res.filename}: {n} files extracted into {target}"


def fetch(name: str, directory: str | Path, base_url: str | None = None, extras: tuple[str, ...] = (),
          progress: bool = True, log: Callable[[str], None] = print,
          parts: tuple[int, ...] | None = None) -> FetchReport:
    """Download (or resume) every file of dataset ``name`` under ``directory`` and unpack it
    into ``directory/<name>``. Archives already extracted are not extracted again (nor
    downloaded again, for those deleted once unpacked). ``parts``: see ``resources_of``."""
    directory = Path(directory)
    folder = directory / name
    report = FetchReport(name, folder)
    for res in resources_of(name, extras, parts):
        target = (folder / res.into).resolve()
        marker = folder / f".extracted-{res.filename}"
        if res.extract and not res.keep and marker.exists():
            report.files.append(f"{res.filename}: already extracted in {target}")
            log(report.files[-1])
            continue
        archive = download(res.url(base_url), directory / DOWNLOADS / res.filename, res.sha256, progress, md5=res.md5)
        if res.extract:
            report.files.append(_unpack(res, archive, target, marker))
        else:
            try:
                with atomic_path(target / res.filename) as tmp:
                    shutil.copyfile(archive, tmp)
            except OSError as exc:
                raise _kept(f"copying {res.filename} to {target}", archive, exc) from exc
            report.files.append(f"{res.filename}: {target / res.filename}")
        log(report.files[-1])
    return report
