"""``import``: a gallery from descriptors computed elsewhere; ``galleries export``: the other way."""
from __future__ import annotations

import argparse
from pathlib import Path

from core.cache.galleries import GalleryError
from core.cli import options

IMPORT_HELP = ("The embedding flags declare the config that produced the vectors: queries are embedded the same "
               "way, and vectors of another dimension are refused. Rows are L2-normalised; an id already in the "
               "gallery is replaced. Images need not exist on this machine (results show the id).")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="create or extend a gallery from descriptors computed elsewhere (.npy)",
                       description=IMPORT_HELP)
    p.add_argument("--name", required=True, help="gallery to create or append to")
    p.add_argument("--vectors", required=True, metavar="FILE.npy", help="float array [n, dim]")
    p.add_argument("--ids", metavar="FILE.txt", help="one id a line, n lines (default: FILE/row number)")
    p.add_argument("--images", metavar="FOLDER", help="where the images are, if on this machine (a new gallery only)")
    options.add_embedding_args(p)
    p.set_defaults(run=run)


def run(a: argparse.Namespace) -> int:
    from core.cache.transfer import describe, import_vectors, read_ids, read_vectors

    vectors = read_vectors(Path(a.vectors))
    ids = read_ids(Path(a.ids) if a.ids else None, len(vectors), Path(a.vectors).stem)
    cfg = options.config_from_args(a)
    print(describe(import_vectors(a.name, cfg, ids, vectors, options.embedder_for(a, cfg).dim, a.images)))
    return 0


def export(a: argparse.Namespace) -> int:
    """``galleries export NAME --out FILE.npy [embedding flags]``."""
    from core.cache.transfer import export_vectors

    if not (a.gallery and a.out):
        raise GalleryError("usage: python -m core galleries export NAME --out FILE.npy [embedding flags]")
    out, ids_path, n = export_vectors(a.gallery, options.config_from_args(a), Path(a.out))
    print(f"{a.gallery}: {n} descriptors written to {out}, their ids to {ids_path}")
    return 0
