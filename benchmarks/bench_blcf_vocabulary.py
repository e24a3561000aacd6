"""BLCF vocabulary quality: the k-means of ``core.rerank.blcf`` on the real Paris feature maps.

For each vocabulary size and seed: the k-means objective (mean squared distance of the learning
sample to its nearest word), the seconds it took, and the mAP of the 12 official Paris queries
(with their boxes) re-ranked by BLCF with that vocabulary (fused as the CLI's default), beside the
plain ranking. Run it on two checkouts to compare implementations (same data, same machine):

    python benchmarks/bench_blcf_vocabulary.py                       # writes artifacts/bench/blcf_vocabulary.json
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
from common import DEFAULT_PARIS, write_result

from core.cache.descriptors import build_embeddings
from core.cache.galleries import register_gallery
from core.config import PLAIN_GEM
from core.datasets import load_ground_truth, resolve
from core.embed.embedder import Embedder
from core.evaluation.metrics import score_query
from core.index import ExactIndex
from core.rerank import RegionQuery, RerankContext, create_reranker
from core.rerank import blcf as blcf_module
from core.rerank.featuremaps import gallery_feature_maps


def mean_ap(ranking: np.ndarray, queries) -> float:
    return float(np.mean([score_query(r, q.positives, q.junk).ap for r, q in zip(ranking, queries)]))


def objective(x: np.ndarray, centroids: np.ndarray) -> float:
    words = blcf_module.nearest_centroid(x, centroids)
    return float(np.mean(np.sum((x - centroids[words]) ** 2, axis=1)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(DEFAULT_PARIS))
    ap.add_argument("--words", type=int, nargs="+", default=[0, 500])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    gallery = register_gallery("paris6k-blcf-bench", f"{args.root}/jpg")
    emb = build_embeddings(gallery, PLAIN_GEM, progress=False, log=lambda m: None)
    embedder = Embedder(PLAIN_GEM)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        queries = resolve(load_ground_truth("paris6k", f"{args.root}/gt"), emb.ids).queries
    paths = [gallery.root / emb.ids[q.image_index] for q in queries]
    qvecs = np.stack([embedder.embed_image(p, q.query.box) for p, q in zip(paths, queries)])
    regions = [RegionQuery(p, q.query.box) for p, q in zip(paths, queries)]
    plain = ExactIndex(emb.vectors).rank_all(qvecs)
    maps = gallery_feature_maps(gallery, PLAIN_GEM, emb.ids, embedder, progress=False, log=lambda m: None)
    ctx = RerankContext(emb, gallery, embedder, log=lambda m: None)
    reranker = create_reranker("blcf")
    rows = []
    for words in args.words:
        k = words or blcf_module.auto_vocabulary_size(len(maps.features))
        for seed in args.seeds:
            start = time.perf_counter()
            index = blcf_module.build_index(maps, k, seed)
            seconds = time.perf_counter() - start
            sample = np.random.default_rng(seed).choice(len(maps.features), min(len(maps.features),
                                                                                blcf_module.KMEANS_SAMPLE), replace=False)
            x = index.vocabulary.whitening.apply(blcf_module.l2_normalise(maps.features[sample].astype(np.float32)))
            ranking, _ = reranker.rerank(plain, qvecs, regions, ctx, index)
            rows.append({"words": k, "seed": seed, "objective": objective(x, index.vocabulary.centroids),
                         "build_seconds": seconds, "map": mean_ap(ranking, queries),
                         "load_average": os.getloadavg()[0]})
            print(rows[-1], flush=True)
    write_result("blcf_vocabulary", {
        "protocol": "Paris6k (shared 250 images), 12 official queries with boxes, PLAIN_GEM descriptors; BLCF "
                    "fused at its default over the top 50; k-means objective on the whitened learning sample",
        "n_local_features": int(len(maps.features)), "plain_map": mean_ap(plain, queries), "rows": rows})


if __name__ == "__main__":
    main()
