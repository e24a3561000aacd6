"""``galleries``: list galleries or delete one's descriptors and indexes."""
from __future__ import annotations

import argparse

from core.cache.galleries import (
    GalleryError,
    delete_gallery,
    folder_size,
    list_galleries,
    load_gallery,
)
from core.fs import printable


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("galleries", help="list or delete galleries")
    p.add_argument("action", nargs="?", default="list", choices=["list", "delete"])
    p.add_argument("gallery", nargs="?", help="gallery to delete")
    p.set_defaults(run=run)


def run(a: argparse.Namespace) -> int:
    from core.cache.descriptors import gallery_caches

    if a.action == "delete":
        if not a.gallery:
            raise GalleryError("name the gallery to delete: python -m core galleries delete NAME")
        root = load_gallery(a.gallery).root
        delete_gallery(a.gallery)
        print(f"deleted gallery {a.gallery}: its record, descriptors and indexes; the images in {printable(str(root))} are untouched")
        return 0
    names = list_galleries()
    if not names:
        print("no galleries yet; create one with: python -m core index --folder PATH --name NAME")
    for name in names:
        g = load_gallery(name)
        n_files, n_bytes = folder_size(g) if g.root.is_dir() else (0, 0)
        size = f"{n_files} images, {n_bytes / 1e6:.1f} MB" if g.root.is_dir() else "folder missing"
        print(f"{name}: {printable(str(g.root))} ({size}){f'  ground truth: {g.dataset}' if g.dataset else ''}")
        for info in gallery_caches(name):
            print(f"  {info.key}  {info.label}  {info.n_images} images, {info.dim}-d"
                  f"{'' if info.complete else '  (extraction unfinished)'}")
            for ix in info.indexes:
                print(f"    {ix.describe()}")
    return 0
