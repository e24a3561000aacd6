"""A gallery is a named folder of images. Its record under ``artifacts/galleries/<name>.json``
remembers the folder so that the app and the CLI can find it again; its descriptors and indexes
live under ``artifacts/embeddings/<name>/``."""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from core.config import command_line
from core.files import file_digest, write_json
from core.fs import Scan, describe_error
from core.images import scan_images
from core.paths import embeddings_dir, galleries_dir

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class GalleryError(ValueError):
    """A gallery name or folder that cannot be used, with the reason."""


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name) or ".." in name:
        raise GalleryError(f"gallery name {name!r} must be 1-64 letters, digits, '_', '-' or '.'")
    return name


@dataclass(frozen=True)
class Gallery:
    """``ids`` are image paths relative to ``root`` (POSIX), which is how results name images."""

    name: str
    root: Path
    dataset: str | None = None               # benchmark whose ground truth covers this gallery
    ground_truth: Path | None = None         # its ground-truth folder
    imported: bool = False                   # descriptors imported (``python -m core import``), not embedded

    def scan(self) -> Scan:
        """The folder now: usable image files with their stat results, and the image-named
        entries that cannot be used, with their reasons (``core.images.scan_images``)."""
        if not self.root.is_dir():
            raise GalleryError(f"gallery folder {self.root} does not exist")
        return scan_images(self.root)

    def image_ids(self) -> list[str]:
        return list(self.scan().files)

    def path(self, image_id: str) -> Path:
        """Absolute path of an image id; refuses ids that would leave the gallery folder."""
        root = self.root.resolve()
        p = (root / image_id).resolve()
        if root not in p.parents:
            raise GalleryError(f"{image_id!r} is outside gallery {self.name}")
        return p

    def fingerprints(self, ids: list[str]) -> list[str]:
        """``fingerprint`` of each image now; a file that cannot be stat-ed any more gets
        "unreadable: <reason>", which matches no earlier fingerprint."""
        out = []
        for i in ids:
            try:
                out.append(fingerprint(os.stat(self.root / i)))
            except OSError as exc:
                out.append(f"unreadable: {describe_error(exc)}")
        return out


def fingerprint(st: os.stat_result) -> str:
    """"size:mtime_ns:ctime_ns:inode" of a file. Size and mtime alone miss a rewrite that keeps
    both (``os.utime`` restores any mtime); ctime cannot be set back and a replaced file has a new
    inode. A chmod or a hard link also changes ctime: such a file is embedded again, harmlessly."""
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"


def same_file(stored: str, current: str) -> bool:
    """Whether a stored fingerprint still describes the file. Caches written before ctime and
    inode were recorded hold "size:mtime_ns": those are compared on size and mtime, as they were
    when written, and the caller records the full fingerprint from then on."""
    if stored.count(":") == 1:
        return current.split(":")[:2] == stored.split(":")
    return stored == current


def checked_gallery(name: str, root: str | os.PathLike, ground_truth: str | os.PathLike | None = None,
                    dataset: str | None = None) -> Gallery:
    """The gallery ``register_gallery`` would record (name and folder checked), recording
    nothing: what a command holds until it is sure to succeed."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise GalleryError(f"gallery folder {root} does not exist")
    gt = Path(ground_truth).expanduser().resolve() if ground_truth is not None else None
    return Gallery(check_name(name), root, dataset if gt else None, gt)


def register_gallery(name: str, root: str | os.PathLike, ground_truth: str | os.PathLike | None = None,
                     dataset: str | None = None) -> Gallery:
    """Record (or update) a gallery named ``name`` over the folder ``root``; ``dataset`` and its
    ``ground_truth`` folder, when given, let the app label results and score queries."""
    root = checked_gallery(name, root).root
    record = galleries_dir() / f"{name}.json"
    exists = record.exists()
    data = json.loads(record.read_text()) if exists else {"name": name, "root": str(root),
                                                          "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if Path(data["root"]) != root:
        raise GalleryError(f"gallery {name!r} already points at {data['root']}; delete it first "
                           f"({command_line('galleries', 'delete', name)}) or choose another --name")
    changed = not exists
    if ground_truth is not None:
        gt = {"dataset": dataset, "ground_truth": str(Path(ground_truth).expanduser().resolve())}
        changed |= any(data.get(k) != v for k, v in gt.items())
        data.update(gt)
    if changed:
        write_json(record, data)
    return _from_record(data)


def register_imported(name: str, images: str | os.PathLike | None = None) -> Gallery:
    """Record (or find) a gallery whose descriptors are imported, not embedded from a folder:
    ``images`` is where its images are, if they are on this machine (results show the id of an
    image without a file). A gallery indexed from a folder is refused: its next ``index`` would
    drop every imported id that is not a file of the folder."""
    record = galleries_dir() / f"{check_name(name)}.json"
    if record.exists():
        gallery = _from_record(json.loads(record.read_text()))
        if not gallery.imported:
            raise GalleryError(f"gallery {name!r} is indexed from the folder {gallery.root}; import into another --name")
        return gallery
    root = Path(images).expanduser().resolve() if images else embeddings_dir().parent / "imported" / name
    root.mkdir(parents=True, exist_ok=True)
    write_json(record, {"name": name, "root": str(root), "imported": True,
                        "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return Gallery(name, root, imported=True)


def _from_record(data: dict) -> Gallery:
    gt = data.get("ground_truth")
    return Gallery(data["name"], Path(data["root"]), data.get("dataset"), Path(gt) if gt else None,
                   bool(data.get("imported", False)))


def load_gallery(name: str) -> Gallery:
    record = galleries_dir() / f"{check_name(name)}.json"
    if not record.exists():
        raise GalleryError(f"no gallery named {name!r}; known: {', '.join(list_galleries()) or 'none'}. "
                           f"Create one with: {command_line('index', '--folder PATH', f'--name {name}')}")
    return _from_record(json.loads(record.read_text()))


def list_galleries() -> list[str]:
    d = galleries_dir()
    return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []


def delete_descriptors(name: str) -> int:
    """Delete a gallery's descriptors and indexes (never its images, never its record: the
    gallery stays listed and can be indexed again); returns the bytes freed."""
    check_name(name)
    if not (galleries_dir() / f"{name}.json").exists():
        raise GalleryError(f"no gallery named {name!r}")
    folder = embeddings_dir() / name
    freed = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
    shutil.rmtree(folder, ignore_errors=True)
    return freed


def delete_gallery(name: str) -> None:
    """Forget a gallery: its record, descriptors and indexes (never its images)."""
    delete_descriptors(name)
    (galleries_dir() / f"{name}.json").unlink()


HASHES = "content-hashes.json"


def _read_hashes(path: Path) -> dict[str, list[str]]:
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def duplicate_groups(gallery: Gallery, ids: list[str] | None = None) -> list[list[str]]:
    """Groups of gallery images with byte-identical content (sha256), each sorted. Duplicates
    crowd result lists with copies of one image, so ``index`` reports them. Hashes are cached
    by the full ``fingerprint`` beside the gallery's descriptors: an update only reads new or
    changed files. Files that cannot be read are left out (the scan and the embedding list them)."""
    ids = gallery.image_ids() if ids is None else ids
    cache_path = embeddings_dir() / gallery.name / HASHES
    cache = _read_hashes(cache_path)
    current = {}
    for image_id, fp in zip(ids, gallery.fingerprints(ids)):
        known = cache.get(image_id)
        if isinstance(known, list) and len(known) == 2 and known[0] == fp:
            current[image_id] = known
            continue
        try:
            current[image_id] = [fp, file_digest(gallery.root / image_id, remember=False)]
        except OSError:
            continue
    if current != cache:
        write_json(cache_path, current)
    by_hash: dict[str, list[str]] = defaultdict(list)
    for image_id, (_, digest) in current.items():
        by_hash[digest].append(image_id)
    return sorted(sorted(group) for group in by_hash.values() if len(group) > 1)


def folder_size(gallery: Gallery) -> tuple[int, int]:
    """(number of usable images, total bytes) in the gallery's folder now."""
    files = gallery.scan().files
    return len(files), sum(st.st_size for st in files.values())
