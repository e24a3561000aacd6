"""Compact descriptor storage: float16 and PCA-reduced vectors, their memory and their mAP.

    python benchmarks/bench_storage.py

On the real Paris gallery (classic protocol, queries cropped by their box, embedding
``common.BENCH_CONFIG``): the gallery vectors are stored as float32 (the cache), float16, or projected on their
first d principal components (learned on the gallery itself, re-normalised; d = 192, 128, 64, 32: a 250-image gallery has at most 250 components),
optionally also in float16; queries go through the same projection and scores are computed in
float32. Reports bytes per vector, memory of the stored gallery, and mAP with its change from
float32. Writes ``artifacts/bench/storage.json``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from common import BENCH_CONFIG, DEFAULT_PARIS, write_result

from core.cache.descriptors import build_embeddings
from core.cache.galleries import register_gallery
from core.datasets import load_ground_truth, resolve
from core.embed.embedder import Embedder
from core.evaluation.metrics import score_queries
from core.index import ExactIndex
from core.progress import Reporter

PCA_DIMS = (192, 128, 64, 32)


def pca(vectors: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, [D, dim] projection) of the first ``dim`` principal components."""
    mean = vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(vectors - mean, full_matrices=False)
    return mean, vt[:dim].T


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--paris-root", type=Path, default=DEFAULT_PARIS)
    a = p.parse_args(argv)
    config = BENCH_CONFIG
    gallery = register_gallery("paris6k", a.paris_root / "jpg")
    emb = build_embeddings(gallery, config, reporter=Reporter.quiet())
    res = resolve(load_ground_truth("paris6k", a.paris_root / "gt"), emb.ids)
    embedder = Embedder(config)
    queries = np.stack([embedder.embed_image(gallery.root / emb.ids[rq.image_index], rq.query.box)
                        for rq in res.queries])
    positives, junk = [rq.positives for rq in res.queries], [rq.junk for rq in res.queries]

    def mean_ap(stored: np.ndarray, q: np.ndarray) -> float:
        ranking = ExactIndex(stored.astype(np.float32)).rank_all(q)
        return float(np.mean([s.ap for s in score_queries(ranking, positives, junk)]))

    variants = {"float32": (emb.vectors, queries), "float16": (emb.vectors.astype(np.float16), queries)}
    rank = min(len(emb.ids), emb.dim)
    for dim in PCA_DIMS:
        if dim > rank:
            continue
        mean, proj = pca(emb.vectors, dim)
        g, q = unit((emb.vectors - mean) @ proj), unit((queries - mean) @ proj)
        variants[f"pca{dim}"] = (g.astype(np.float32), q)
        variants[f"pca{dim}+float16"] = (g.astype(np.float16), q)
    base = mean_ap(*variants["float32"])
    rows = []
    for name, (stored, q) in variants.items():
        m = mean_ap(stored, q)
        rows.append({"storage": name, "dim": int(stored.shape[1]), "bytes_per_vector": int(stored[0].nbytes),
                     "gallery_bytes": int(stored.nbytes), "memory_vs_float32": stored.nbytes / emb.vectors.nbytes,
                     "map": m, "map_change_points": (m - base) * 100})
        print(f"{name:16s} {stored[0].nbytes:6d} B/vector  mAP {m * 100:.2f} ({(m - base) * 100:+.2f})")
    write_result("storage", {"gallery": "paris6k", "n_images": len(emb.ids), "n_queries": len(res.queries),
                             "embedding": config.label(), "pca_note": f"PCA learned on the gallery itself; "
                             f"at most {rank} components exist for {len(emb.ids)} images",
                             "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
