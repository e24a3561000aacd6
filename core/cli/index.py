"""``index``: create or update a gallery's descriptors and build its search index."""
from __future__ import annotations

import argparse

from core.cache.galleries import duplicate_groups, load_gallery, register_gallery
from core.cli import options
from core.embed.distributed import CHUNK_SIZE
from core.fs import printable
from core.index import auto_description, backend, backend_names, param_flags, settings_from
from core.index.choice import default_method


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="embed a folder of images (only new or changed ones) and build its search index",
                       description="Create or update a gallery: only new or changed images are embedded.")
    p.add_argument("--name", required=True, help="gallery name")
    p.add_argument("--folder", help="image folder (needed the first time)")
    saved = [m for m in backend_names() if m != "auto" and backend(m).saved]
    p.add_argument("--index", default="auto", choices=["auto", *saved, "none"],
                   help=f"index to build: auto (a backend's parameter asks for that backend; else the one --search "
                        f"auto uses at this size, none while exact search is in budget: {auto_description()}), "
                        f"{', '.join(saved)} or none (default auto)")
    options.add_index_params(p.add_argument_group("index"))
    p.add_argument("--engine", default="local", choices=["local", "dask"],
                   help="local: this machine's pipeline; dask: a Dask cluster (core/distributed.py), same cache")
    p.add_argument("--scheduler", default=None,
                   help="with --engine dask: scheduler address such as tcp://host:8786 (default: a local cluster)")
    p.add_argument("--dask-workers", type=int, default=2,
                   help="with --engine dask and no --scheduler: worker processes of the local cluster (default 2)")
    p.add_argument("--dask-chunk", type=int, default=CHUNK_SIZE,
                   help=f"with --engine dask: images per task (default {CHUNK_SIZE}; a worker lost mid-run costs "
                        f"its unfinished tasks, which run again elsewhere)")
    options.add_embedding_args(p)
    options.add_quiet(p)
    p.set_defaults(run=run)


def run(a: argparse.Namespace) -> int:
    from core.cache.descriptors import build_embeddings
    from core.progress import Reporter

    gallery = register_gallery(a.name, a.folder) if a.folder else load_gallery(a.name)
    cfg = options.prepared_config(a, gallery)
    if a.engine == "dask":
        from core.embed.distributed import DaskEmbedder

        with DaskEmbedder(cfg.base(), scheduler=a.scheduler, n_workers=a.dask_workers,
                          chunk_size=a.dask_chunk) as embedder:
            emb = build_embeddings(gallery, cfg, embedder, Reporter(bar=not a.quiet))
    else:
        emb = build_embeddings(gallery, cfg, options.embedder_for(a, cfg), Reporter(bar=not a.quiet))
    print(f"{gallery.name}: {len(emb.ids)} images embedded ({emb.dim}-d, {cfg.label()}) in {emb.directory}")
    changes = emb.meta.get("changes", {})
    if not any(changes.get(k) for k in ("added", "changed", "removed")):
        print(f"{gallery.name}: up to date, no image added, changed or removed")
    duplicates = duplicate_groups(gallery)
    if duplicates:
        print(f"{len(duplicates)} groups of identical files (each is embedded and can appear several times in results):")
        for group in duplicates:
            print(f"  {' = '.join(printable(i) for i in group)}")
    if emb.failures:
        print(f"{len(emb.failures)} files skipped:")
        for image_id, reason in sorted(emb.failures.items()):
            print(f"  {printable(image_id)}: {reason}")
    build_index(a, emb)
    return 0


def index_to_build(a: argparse.Namespace, n_items: int, dim: int) -> str:
    """``--index``; "auto": the backend whose parameters were given (the default at this size, or
    else the first registered, among several that have them all), else the default at this size."""
    if a.index != "auto":
        return a.index
    default = default_method(n_items, dim)
    given = [set(p.backends) for p in param_flags() if getattr(a, p.name) is not None]
    common = set.intersection(*given) if given else set()
    if not common or default in common:
        return default
    return next(name for name in backend_names() if name in common)


def build_index(a: argparse.Namespace, emb) -> None:
    """Build (or rebuild) the saved index ``--index`` names, and say what it measured."""
    kind = index_to_build(a, len(emb.ids), emb.dim)
    if kind == "none" or not len(emb.ids):
        return
    if not backend(kind).saved:
        print(f"no index built: at {len(emb.ids):,} images exact search is within its time budget "
              f"(--index with a saved backend to build one)")
        return
    settings = settings_from(kind, a.metric, vars(a))
    index = backend(kind).build(emb, settings.metric, settings.params)
    f = index.figures()
    print(f"{index.title} {f.metric}: built in {f.build_seconds:.2f} s, {index.meta.file_bytes / 1e6:.1f} MB; "
          f"{f.describe()} against exact search on {min(100, len(emb.ids))} sample queries")
