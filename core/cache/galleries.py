"""A gallery is a named folder of images. Its record under ``artifacts/galleries/<name>.json``
remembers the folder so that the app and the CLI can find it again; its descriptors and indexes
live under ``artifacts/embeddings/<name>/``."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from core.files import write_json
from core.images import list_images
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

    def image_ids(self) -> list[str]:
        if not self.root.is_dir():
            raise GalleryError(f"gallery folder {self.root} does not exist")
        return list_images(self.root)

    def path(self, image_id: str) -> Path:
        """Absolute path of an image id; refuses ids that would leave the gallery folder."""
        root = self.root.resolve()
        p = (root / image_id).resolve()
        if root not in p.parents:
            raise GalleryError(f"{image_id!r} is outside gallery {self.name}")
        return p

    def fingerprints(self, ids: list[str]) -> list[str]:
        """"size:mtime_ns" of each image: a changed file gets a new fingerprint."""
        out = []
        for i in ids:
            st = os.stat(self.root / i)
            out.append(f"{st.st_size}:{st.st_mtime_ns}")
        return out


def register_gallery(name: str, root: str | os.PathLike, ground_truth: str | os.PathLike | None = None,
                     dataset: str | None = None) -> Gallery:
    """Record (or update) a gallery named ``name`` over the folder ``root``; ``dataset`` and its
    ``ground_truth`` folder, when given, let the app label results and score queries."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise GalleryError(f"gallery folder {root} does not exist")
    record = galleries_dir() / f"{check_name(name)}.json"
    exists = record.exists()
    data = json.loads(record.read_text()) if exists else {"name": name, "root": str(root),
                                                          "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if Path(data["root"]) != root:
        raise GalleryError(f"gallery {name!r} already points at {data['root']}; delete it first "
                           f"(python -m core galleries delete {name}) or choose another --name")
    changed = not exists
    if ground_truth is not None:
        gt = {"dataset": dataset, "ground_truth": str(Path(ground_truth).expanduser().resolve())}
        changed |= any(data.get(k) != v for k, v in gt.items())
        data.update(gt)
    if changed:
        write_json(record, data)
    return _from_record(data)


def _from_record(data: dict) -> Gallery:
    gt = data.get("ground_truth")
    return Gallery(data["name"], Path(data["root"]), data.get("dataset"), Path(gt) if gt else None)


def load_gallery(name: str) -> Gallery:
    record = galleries_dir() / f"{check_name(name)}.json"
    if not record.exists():
        raise GalleryError(f"no gallery named {name!r}; known: {', '.join(list_galleries()) or 'none'}. "
                           f"Create one with: python -m core index --folder PATH --name {name}")
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def duplicate_groups(gallery: Gallery, ids: list[str] | None = None) -> list[list[str]]:
    """Groups of gallery images with byte-identical content (sha256), each sorted. Duplicates
    crowd result lists with copies of one image, so ``index`` reports them. Hashes are cached
    by fingerprint beside the gallery's descriptors: an update only reads new or changed files."""
    ids = gallery.image_ids() if ids is None else ids
    cache_path = embeddings_dir() / gallery.name / HASHES
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    current = {}
    for image_id, fp in zip(ids, gallery.fingerprints(ids)):
        known = cache.get(image_id)
        current[image_id] = known if known and known[0] == fp else [fp, _sha256(gallery.root / image_id)]
    if current != cache:
        write_json(cache_path, current)
    by_hash: dict[str, list[str]] = defaultdict(list)
    for image_id, (_, digest) in current.items():
        by_hash[digest].append(image_id)
    return sorted(sorted(group) for group in by_hash.values() if len(group) > 1)


def folder_size(gallery: Gallery) -> tuple[int, int]:
    """(number of images, total bytes) in the gallery's folder now."""
    ids = gallery.image_ids()
    return len(ids), sum((gallery.root / i).stat().st_size for i in ids)
