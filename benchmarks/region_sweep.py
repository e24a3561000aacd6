"""Why BLCF, local windows and spatial verification lose on unseen photos, and what fixes it:
their parameters and a fusion with the global score, on the validation protocol.

    nice -n 10 .venv/bin/python benchmarks/region_sweep.py [--sets paris-whole paris-crop] [--spatial]

The query of every region method is the query image's own feature map (or local features)
restricted to its box, and the validation queries are gallery images, so everything is read from
the gallery's caches: the feature maps (one pass over the gallery) and, with ``--spatial``, SIFT
features of each image (extracted once, kept in memory). Each method's score s of an image is
fused with its global cosine g as g + w·s over the global top-N (w = ∞: the method alone, what
the shipped methods did). Output: ``artifacts/bench/region_sweep.json``.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_result  # noqa: E402
from core.cache.descriptors import build_embeddings  # noqa: E402
from core.config import DEFAULT_CONFIG  # noqa: E402
from core.embed.embedder import Embedder  # noqa: E402
from core.evaluation.validation import set_arrays, validation_sets  # noqa: E402
from core.index import ExactIndex  # noqa: E402
from core.progress import Reporter  # noqa: E402
from core.rerank.blcf import build_index  # noqa: E402
from core.rerank.featuremaps import box_mask, gallery_feature_maps  # noqa: E402
from core.rerank.local import best_window, region_descriptor  # noqa: E402
from core.rerank.spatial import count_inliers, extract  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
WEIGHTS = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, math.inf)
TOP_N = 50
WINDOW_SCALES = (1.0, 0.75, 0.5, 0.35)


def fused(plain: np.ndarray, cosine: np.ndarray, scores: np.ndarray, w: float, top_n: int = TOP_N) -> np.ndarray:
    """Rankings with each row's top-N ordered by cosine + w·score (w = inf: by score, ties by
    the plain order); ``scores`` [q, top_n] are the method's scores of the plain top-N."""
    out = plain.copy()
    for r in range(len(plain)):
        head = plain[r, :top_n]
        key = scores[r] if math.isinf(w) else cosine[r, head] + w * scores[r]
        out[r, :top_n] = head[np.argsort(-key, kind="stable")]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--sets", nargs="+", default=["paris-whole", "paris-crop", "corel1k", "fashion-mnist"])
    p.add_argument("--words-per", type=int, nargs="+", default=[2000, 1000, 500, 250, 100, 50],
                   help="BLCF vocabularies: local features per word")
    p.add_argument("--spatial", action="store_true", help="also SIFT spatial verification (slow)")
    a = p.parse_args(argv)
    config = DEFAULT_CONFIG
    embedder = Embedder(config.base())
    results = []
    for vs in validation_sets(a.data, a.sets):
        arrays = set_arrays(vs, config, embedder)
        ids = build_embeddings(vs.gallery, config, embedder, reporter=Reporter.quiet()).ids
        paths = [vs.gallery.root / i for i in ids]
        maps = gallery_feature_maps(vs.gallery, config, ids, embedder, progress=False, log=lambda m: None)
        cosine = arrays.queries @ arrays.database.T
        plain = ExactIndex(arrays.database, "cosine").rank_all(arrays.queries)
        row = {"set": vs.name, "n_images": len(arrays.database), "n_queries": len(arrays.resolved),
               "none": arrays.map(plain), "blcf": {}, "local": {}, "spatial": {}}
        masks = [box_mask(tuple(maps.shapes[q.image_index]), q.query.box, maps.size(q.image_index))
                 for q in arrays.resolved]
        for per in a.words_per:
            words = int(np.clip(round(len(maps.features) / per), 16, 25_000))
            start = time.perf_counter()
            index = build_index(maps, words)
            full = np.stack([index.query_scores(maps.locals(q.image_index)[m.ravel()])
                             for q, m in zip(arrays.resolved, masks)])
            alone = np.stack([np.lexsort((np.argsort(plain[r]), -full[r])) for r in range(len(full))])
            head = np.take_along_axis(full, plain[:, :TOP_N], axis=1)
            row["blcf"][f"per={per},words={words}"] = {
                "whole_gallery": arrays.map(alone), "seconds": time.perf_counter() - start,
                **{f"w={w:g}": arrays.map(fused(plain, cosine, head, w)) for w in WEIGHTS}}
            print(f"{vs.name:14s} blcf {words:6d} words: alone {row['blcf'][f'per={per},words={words}']['whole_gallery'] * 100:6.2f}  "
                  + "  ".join(f"w={w:g} {row['blcf'][f'per={per},words={words}'][f'w={w:g}'] * 100:6.2f}" for w in WEIGHTS)
                  + f"  (none {row['none'] * 100:6.2f})", flush=True)
        start = time.perf_counter()
        local = np.zeros((len(plain), TOP_N))
        for r, q in enumerate(arrays.resolved):
            query = region_descriptor(maps.map(q.image_index), masks[r])
            for j, i in enumerate(plain[r, :TOP_N]):
                local[r, j] = best_window(maps.map(int(i)), query, WINDOW_SCALES).score
        row["local"] = {f"w={w:g}": arrays.map(fused(plain, cosine, local, w)) for w in WEIGHTS}
        row["local"]["ms_per_query"] = (time.perf_counter() - start) / len(plain) * 1000
        print(f"{vs.name:14s} local: " + "  ".join(f"w={w:g} {row['local'][f'w={w:g}'] * 100:6.2f}" for w in WEIGHTS),
              flush=True)
        if a.spatial:
            start = time.perf_counter()
            feats: dict = {}

            def features(i: int):
                if i not in feats:
                    feats[i] = extract(paths[i], "sift", None, config.max_size)
                return feats[i]
            inliers = np.zeros((len(plain), TOP_N))
            for r, q in enumerate(arrays.resolved):
                box = q.query.box
                qf = extract(paths[q.image_index], "sift", box, config.max_size) if box else features(q.image_index)
                for j, i in enumerate(plain[r, :TOP_N]):
                    inliers[r, j] = count_inliers(qf, features(int(i)), "sift")
            verified = np.where(inliers >= 15, inliers, -1.0)
            row["spatial"] = {"shipped": arrays.map(fused(plain, cosine, verified, math.inf)),
                              **{f"w={w:g}": arrays.map(fused(plain, cosine, np.minimum(inliers, 50) / 50, w))
                                 for w in WEIGHTS}, "ms_per_query": (time.perf_counter() - start) / len(plain) * 1000}
            print(f"{vs.name:14s} spatial: shipped {row['spatial']['shipped'] * 100:6.2f}  "
                  + "  ".join(f"w={w:g} {row['spatial'][f'w={w:g}'] * 100:6.2f}" for w in WEIGHTS), flush=True)
        results.append(row)
        write_result("region_sweep", {"config": config.to_dict(), "top_n": TOP_N, "rows": results,
                                      "load_average": list(os.getloadavg())})
    return 0


if __name__ == "__main__":
    sys.exit(main())
