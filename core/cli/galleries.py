"""``galleries``: list galleries or delete one's descriptors and indexes."""
from __future__ import annotations

import argparse
from pathlib import Path

from core.cache.galleries import (
    GalleryError,
    delete_gallery,
    folder_size,
    list_galleries,
    load_gallery,
)
from core.cli import options
from core.fs import printable


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("galleries", help="list, delete or export galleries")
    p.add_argument("action", nargs="?", default="list", choices=["list", "delete", "export"])
    p.add_argument("gallery", nargs="?", help="gallery to delete or export")
    p.add_argument("--out", metavar="FILE.npy", help="export: descriptors to FILE.npy, ids to FILE.ids.txt")
    options.add_embedding_args(p)
    p.set_defaults(run=run)


def run(a: argparse.Namespace) -> int:
    from core.cache.descriptors import gallery_caches

    if a.action == "export":
        return export_gallery(a)
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


def export_gallery(a: argparse.Namespace) -> int:
    from core.cache.transfer import export_vectors

    if not (a.gallery and a.out):
        raise GalleryError("usage: python -m core galleries export NAME --out FILE.npy [embedding flags]")
    out, ids_path, n = export_vectors(a.gallery, options.config_from_args(a), Path(a.out))
    print(f"{a.gallery}: {n} descriptors written to {out}, their ids to {ids_path}")
    return 0
