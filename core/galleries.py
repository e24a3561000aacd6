"""A gallery is a named folder of images. Its record under ``artifacts/galleries/<name>.json``
remembers the folder so that the app and the CLI can find it again; its descriptors and indexes
live under ``artifacts/embeddings/<name>/``."""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .atomic import write_json
from .images import list_images
from .paths import embeddings_dir, galleries_dir

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


def register_gallery(name: str, root: str | os.PathLike) -> Gallery:
    """Record (or update) a gallery named ``name`` over the folder ``root``."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise GalleryError(f"gallery folder {root} does not exist")
    record = galleries_dir() / f"{check_name(name)}.json"
    if record.exists():
        old = json.loads(record.read_text())
        if Path(old["root"]) != root:
            raise GalleryError(f"gallery {name!r} already points at {old['root']}; delete it first "
                               f"(python -m core galleries delete {name}) or choose another --name")
        return Gallery(name, root)
    write_json(record, {"name": name, "root": str(root), "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return Gallery(name, root)


def load_gallery(name: str) -> Gallery:
    record = galleries_dir() / f"{check_name(name)}.json"
    if not record.exists():
        raise GalleryError(f"no gallery named {name!r}; known: {', '.join(list_galleries()) or 'none'}. "
                           f"Create one with: python -m core index --folder PATH --name {name}")
    data = json.loads(record.read_text())
    return Gallery(data["name"], Path(data["root"]))


def list_galleries() -> list[str]:
    d = galleries_dir()
    return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []


def delete_gallery(name: str) -> None:
    """Forget a gallery and delete its descriptors and indexes (never its images)."""
    check_name(name)
    record = galleries_dir() / f"{name}.json"
    if not record.exists():
        raise GalleryError(f"no gallery named {name!r}")
    shutil.rmtree(embeddings_dir() / name, ignore_errors=True)
    record.unlink()
