"""``import``: create or extend a gallery from descriptors computed elsewhere (``core.cache.transfer``;
the other way, ``galleries export``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from core.cli import options

COMMAND = "import"                 # a Python keyword: the module cannot carry the command's name

def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(COMMAND, help="create or extend a gallery from descriptors computed elsewhere (.npy)",
                       description="The embedding flags declare the config that produced the vectors: queries are "
                                   "embedded the same way, and vectors of another dimension are refused. An id "
                                   "already in the gallery is replaced. Images need not exist on this machine.")
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
