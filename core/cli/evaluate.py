"""``evaluate``: one embedding on one benchmark, written as a run."""
from __future__ import annotations

import argparse

from core.cache.galleries import register_gallery
from core.cli import options
from core.datasets import DATASET_PROTOCOLS, LOADERS, dataset_layout, load_ground_truth
from core.datasets.classes import load_query_folders


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate an embedding on a benchmark and write a run to artifacts/runs/",
                       description="Embed the benchmark's images, rank them for each query (cropped by its box) "
                                   "and write summary.json, per_query.csv, images.json (and images.txt), ranking.npy "
                                   "and pr.json.")
    p.add_argument("--dataset", required=True, choices=sorted(LOADERS), help="benchmark name")
    p.add_argument("--root", required=True, help="dataset folder (images in ROOT/jpg, ground truth in ROOT/gt)")
    p.add_argument("--images", help="image folder if not ROOT/jpg")
    p.add_argument("--gt", help="ground-truth folder if not ROOT/gt")
    p.add_argument("--name", help="gallery name (default: the dataset name)")
    p.add_argument("--protocol", choices=list(dict.fromkeys(p for ps in DATASET_PROTOCOLS.values() for p in ps)),
                   help="revisited Oxford/Paris protocol (default medium)")
    p.add_argument("--queries", help="with --dataset classes: a separate folder of query images in class subfolders, "
                                     "searched against the gallery ROOT (same class = relevant); default: every "
                                     "gallery image is a query")
    p.add_argument("--distractors", metavar="GALLERY",
                   help="add every image of this indexed gallery (same embedding flags) as a negative: the +R1M "
                        "protocol with the revisitop distractors (python -m core data fetch revisitop1m), or your photos")
    options.add_retrieval_args(p, search_default="exact")
    p.set_defaults(run=run)


def run(a: argparse.Namespace) -> int:
    from core.evaluation.pipeline import RunOptions, evaluate

    layout = dataset_layout(a.root)
    if a.queries:
        if a.dataset != "classes":
            raise ValueError("--queries (a folder of query images in class subfolders) goes with --dataset classes")
        gt = load_query_folders(a.images or a.root, a.queries)
    else:
        gt = load_ground_truth(a.dataset, a.gt or layout.ground_truth, a.protocol)
    gallery = register_gallery(a.name or a.dataset, a.images or layout.images, a.gt or layout.ground_truth, a.dataset)
    cfg = options.prepared_config(a, gallery)
    s = evaluate(gallery, gt, cfg, options.settings_from_args(a), options.rerank_from_args(a),
                 options.embedder_for(a, cfg), RunOptions(progress=not a.quiet), a.distractors)
    p = {k: v * 100 for k, v in s.precision_at.items()}
    print(f"\n{s.dataset} ({s.protocol_label}) on {s.n_images} images, {s.n_queries} queries "
          f"({s.n_queries_skipped} skipped), {s.embedding_label}, {s.search.method}/{s.search.metric}")
    print(f"  mAP {s.map * 100:.2f}   mAP_interp11 {s.map_interp11 * 100:.2f}   NDCG {s.ndcg * 100:.2f}   "
          f"P@1/5/10 {p[1]:.1f}/{p[5]:.1f}/{p[10]:.1f}   random mAP {s.random_map * 100:.2f}")
    if s.images_per_second:
        print(f"  extraction {s.extraction_seconds:.1f} s ({s.images_per_second:.2f} img/s)", end="")
    print(f"   query {s.mean_query_ms:.1f} ms (embed {s.query_embed_ms:.1f} + search {s.query_search_ms:.2f})")
    if s.metric("mp@1") is not None:
        print(f"  revisitop mP@1/5/10 {s.metric('mp@1') * 100:.1f}/{s.metric('mp@5') * 100:.1f}/"
              f"{s.metric('mp@10') * 100:.1f}")
    if "classes" in s.protocol_extras:
        c, top = s.protocol_extras["classes"], {k: v * 100 for k, v in s.top_k.items()}
        print(f"  {c['n_classes']} classes: {c['knn_k']}-NN accuracy {c['knn_accuracy'] * 100:.1f}   top1/5/10 accuracy "
              f"{top[1]:.1f}/{top[5]:.1f}/{top[10]:.1f}   chance precision "
              f"{c['chance_precision'] * 100:.1f}; per class in classes.csv, confusion matrix in confusion.json")
    if s.index is not None and s.index.query_recall_at_10 is not None:
        print(f"  {s.index.figures.describe()} (sample), on these queries {s.index.query_recall_at_10:.3f}")
    if s.rerank_label:
        r = s.rerank
        print(f"  re-ranking {r.label}: +{r.extra_ms_per_query:.1f} ms per query, "
              f"{r.offline_seconds:.1f} s once per gallery")
    print(f"  run written to {s.run_dir}")
    return 0
