"""``index``: create or update a gallery's descriptors and build its search index."""
from __future__ import annotations

import argparse

from core.cache.galleries import (
    duplicate_groups,
    load_gallery,
    register_gallery,
)
from core.cli import options
from core.config import AnnoyParams
from core.fs import printable
from core.index.choice import auto_description, default_method


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="embed a folder of images (only new or changed ones) and build its search index",
                       description="Create or update a gallery: only new or changed images are embedded.")
    p.add_argument("--name", required=True, help="gallery name")
    p.add_argument("--folder", help="image folder (needed the first time)")
    p.add_argument("--annoy-metric", default=None, choices=["angular", "euclidean"],
                   help="Annoy metric (default angular); an Annoy parameter asks for an Annoy index")
    p.add_argument("--n-trees", type=int, default=None, help=f"Annoy trees (default {AnnoyParams.n_trees}); an Annoy "
                                                              "parameter asks for an Annoy index")
    p.add_argument("--search-k", type=int, default=None, help="Annoy search_k (default: measured for recall@10 >= 0.95)")
    p.add_argument("--index", default="auto", choices=["auto", "annoy", "hnsw", "none"],
                   help=f"index to build: auto (the one --search auto uses at this size: none for exact search, "
                        f"HNSW above; --search auto is {auto_description()}), annoy, hnsw or none (default auto)")
    p.add_argument("--no-annoy", action="store_true", help="same as --index none")
    p.add_argument("--engine", default="local", choices=["local", "dask"],
                   help="local: this machine's pipeline; dask: a Dask cluster (core/distributed.py), same cache")
    p.add_argument("--scheduler", default=None,
                   help="with --engine dask: scheduler address such as tcp://host:8786 (default: a local cluster)")
    p.add_argument("--dask-workers", type=int, default=2,
                   help="with --engine dask and no --scheduler: worker processes of the local cluster (default 2)")
    options.add_embedding_args(p)
    options.add_quiet(p)
    p.set_defaults(run=run)


def run(a: argparse.Namespace) -> int:
    from core.cache.descriptors import build_embeddings
    from core.index import AnnoyIndex

    gallery = register_gallery(a.name, a.folder) if a.folder else load_gallery(a.name)
    cfg = options.prepared_config(a, gallery)
    if a.engine == "dask":
        from core.embed.distributed import DaskEmbedder

        with DaskEmbedder(cfg.base(), scheduler=a.scheduler, n_workers=a.dask_workers) as embedder:
            emb = build_embeddings(gallery, cfg, embedder, progress=not a.quiet)
    else:
        emb = build_embeddings(gallery, cfg, options.embedder_for(a, cfg), progress=not a.quiet)
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
    annoy_asked = a.annoy_metric is not None or a.n_trees is not None or a.search_k is not None
    kind = ("none" if a.no_annoy else a.index if a.index != "auto" else "annoy" if annoy_asked
            else default_method(len(emb.ids), emb.dim))
    if kind == "annoy" and len(emb.ids):
        params = AnnoyParams(metric=a.annoy_metric or "angular", n_trees=a.n_trees or AnnoyParams.n_trees,
                             search_k=a.search_k)
        ann = AnnoyIndex.build(emb.vectors, emb.directory, cfg, params, emb.ids)
        m = ann.meta
        print(f"Annoy {params.metric}, {params.n_trees} trees: built in {m['build_seconds']:.2f} s, "
              f"{m['file_bytes'] / 1e6:.1f} MB; search_k {m['search_k']} gives recall@10 {m['recall@10']:.3f}, "
              f"recall@100 {m['recall@100']:.3f} against exact search on {min(100, len(emb.ids))} sample queries")
    elif kind == "hnsw" and len(emb.ids):
        from core.config import HnswParams
        from core.index.hnsw import HnswIndex

        hn = HnswIndex.build(emb.vectors, emb.directory, cfg, HnswParams(metric="cosine"), emb.ids)
        m = hn.meta
        print(f"HNSW cosine, M {m['m']}: built in {m['build_seconds']:.2f} s, {m['file_bytes'] / 1e6:.1f} MB; ef "
              f"{m['ef']} gives recall@10 {m['recall@10']:.3f}, recall@100 {m['recall@100']:.3f} against exact "
              f"search on {min(100, len(emb.ids))} sample queries")
    elif kind == "exact":
        print(f"no index built: at {len(emb.ids):,} images exact search is within its time budget "
              f"(--index annoy or hnsw to build one)")
    return 0
