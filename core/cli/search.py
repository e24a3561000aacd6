"""``search``: the top k of a gallery for a query image or a box of it."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from core.cache.galleries import load_gallery
from core.cli import options
from core.fs import printable
from core.images import Box


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search a gallery with an image (or a box of it)")
    p.add_argument("image", help="query image file")
    p.add_argument("--box", type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2"),
                   help="query region in original pixel coordinates")
    p.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--name", required=True, help="gallery to search")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: the results (rank, id, score, file when it exists on this machine) "
                        "and the time of each stage")
    options.add_retrieval_args(p)
    p.set_defaults(run=run)


def run(a: argparse.Namespace) -> int:
    from core.search.engine import SearchEngine

    box = Box.of(a.box) if a.box else None             # refused (one line) before the network loads
    gallery = load_gallery(a.name)
    cfg = options.prepared_config(a, gallery)
    engine = SearchEngine(gallery, cfg, embedder=options.embedder_for(a, cfg))
    settings = options.settings_from_args(a)
    results = engine.search(a.image, box, k=a.k, settings=settings, reranker=options.rerank_from_args(a))
    if a.json:
        print(json.dumps(as_json(a, engine, settings, results), indent=1))
        return 0
    print(f"{a.image}{' box ' + ' '.join(f'{v:g}' for v in a.box) if a.box else ''}: top {len(results.items)} of "
          f"{len(engine.embeddings.ids)} in {engine.gallery.name} (embed {results.times.embed_ms:.0f} ms, "
          f"search {results.times.search_ms:.1f} ms)")
    score_name = "cosine" if a.metric == "cosine" or results.rerank_label else "distance"
    if results.rerank_label:
        print(f"re-ranked by {results.rerank_label} in {results.times.rerank_ms:.0f} ms"
              + (f" (after preparing the gallery once: {results.times.prepare_seconds:.1f} s)"
                 if results.times.prepare_seconds > 0.05 else ""))
    for item in results.items:
        extra = results.evidence.get(item.image_id)
        print(f"{item.rank:4d}  {score_name} {item.score:.4f}  {printable(item.image_id)}"
              + (f"  {a.rerank} {extra[0]:.3f}" if extra else "")
              + (f"  window {' '.join(f'{v:.0f}' for v in extra[1].as_list())}" if extra and extra[1] else ""))
    return 0


def as_json(a: argparse.Namespace, engine, settings, results) -> dict:
    """What ``--json`` prints: the query, the search as it ran, the stage times and the results;
    a result whose image is not on this machine (imported descriptors) has ``file`` null."""
    root = engine.gallery.root

    def item(r) -> dict:
        path = root / r.image_id
        extra = results.evidence.get(r.image_id)
        return {"rank": r.rank, "id": r.image_id, "score": r.score, "file": str(path) if path.is_file() else None,
                **({"rerank_score": extra[0]} if extra else {})}

    return {"query": a.image, "box": a.box, "gallery": engine.gallery.name, "n_images": len(engine.embeddings.ids),
            "embedding": engine.config.label(), "search": settings.resolved(len(engine.embeddings.ids),
                                                                           engine.embeddings.dim).to_dict(),
            "rerank": results.rerank_label or "none", "times_ms": asdict(results.times),
            "results": [item(r) for r in results.items]}
