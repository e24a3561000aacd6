"""The evaluation pipeline: gallery → descriptors → index → cropped queries → rankings →
metrics → a run under ``artifacts/runs/``."""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.cache.descriptors import Embeddings, build_embeddings
from core.cache.galleries import Gallery
from core.config import AnnoyParams, EmbeddingConfig, HnswParams
from core.datasets import DATASET_PROTOCOLS, GroundTruth, Resolution, resolve
from core.embed.embedder import Embedder
from core.evaluation.metrics import TOP_KS, QueryScores, score_query
from core.evaluation.reports import protocol_report
from core.evaluation.runs import machine_info, new_run_id, package_versions, write_run
from core.index import ANNOY_METRIC, AnnoyIndex, ExactIndex, recall_at
from core.index.hnsw import HnswIndex
from core.rerank.methods import RegionQuery, RerankSettings, rerank_rankings

RANDOM_TRIALS = 20


@dataclass
class SearchSettings:
    """How rankings are produced: exact search, Annoy or HNSW, with which metric."""

    method: str = "exact"                 # exact | annoy | hnsw
    metric: str = "cosine"                # cosine | euclidean
    annoy: AnnoyParams = field(default_factory=AnnoyParams)

    def __post_init__(self) -> None:
        if self.method not in ("exact", "annoy", "hnsw"):
            raise ValueError(f"search method must be 'exact', 'annoy' or 'hnsw', got {self.method!r}")


def rank_gallery(emb: Embeddings, queries: np.ndarray, settings: SearchSettings) -> tuple[np.ndarray, dict]:
    """Full rankings [q, n] of the gallery for each query vector, with index figures.

    With Annoy or HNSW, the images the index returns come first in its order; the rest follow in
    gallery order, as an unranked tail (they are never re-sorted by exact scores)."""
    n = len(emb.ids)
    info: dict = {"method": settings.method, "metric": settings.metric}
    if settings.method == "exact":
        start = time.perf_counter()
        index = ExactIndex(emb.vectors, settings.metric)
        info["index_build_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        ranking = index.rank_all(queries)
        info["search_seconds"] = time.perf_counter() - start
        return ranking, info
    if settings.method == "hnsw":
        ann = HnswIndex.build(emb.vectors, emb.directory, emb.config, HnswParams(metric=settings.metric), emb.ids)
        effort = ("m", "ef_construction", "ef")
    else:
        params = AnnoyParams(metric=ANNOY_METRIC[settings.metric],
                             n_trees=settings.annoy.n_trees, search_k=settings.annoy.search_k)
        ann = AnnoyIndex.build(emb.vectors, emb.directory, emb.config, params, emb.ids)
        effort = ("n_trees", "search_k")
    info.update({k: ann.meta[k] for k in ("build_seconds", *effort, "recall@10", "recall@100", "recall_target_met")})
    info["index_build_seconds"] = ann.meta["build_seconds"]
    start = time.perf_counter()
    top, _ = ann.search(queries, n)
    info["search_seconds"] = time.perf_counter() - start
    ranking = np.empty((len(queries), n), np.int32)
    for row, got in enumerate(top):
        got = got[got >= 0]
        rest = np.setdiff1d(np.arange(n), got, assume_unique=False)
        ranking[row] = np.concatenate([got, rest])
    exact = ExactIndex(emb.vectors, settings.metric).rank_all(queries)
    info["query_recall@10"] = recall_at(ranking, exact, 10)
    info["query_recall@100"] = recall_at(ranking, exact, 100)
    return ranking, info


def random_baseline_map(resolution: Resolution, n_images: int, trials: int = RANDOM_TRIALS,
                        seed: int = 0) -> float:
    """mAP of uniformly random rankings (mean over ``trials``): the chance level of this gallery."""
    rng = np.random.default_rng(seed)
    aps = [score_query(rng.permutation(n_images), rq.positives, rq.junk).ap
           for _ in range(trials) for rq in resolution.queries]
    return float(np.mean(aps)) if aps else 0.0


def query_vectors(emb: Embeddings, res: Resolution, embedder: Embedder, gallery: Gallery) -> np.ndarray:
    """Descriptors of the resolved queries (whitened like the gallery). A query without a box
    is a whole gallery image whose cached descriptor is exactly what embedding it again would
    give, so it is reused: class-folder and Holidays runs would otherwise embed every image twice."""
    out = emb.vectors[[rq.image_index for rq in res.queries]].copy()
    boxed = [i for i, rq in enumerate(res.queries) if rq.query.box is not None]
    if boxed:
        fresh = np.stack([embedder.embed_image(gallery.root / emb.ids[res.queries[i].image_index],
                                               res.queries[i].query.box) for i in boxed])
        out[boxed] = emb.whitening.apply(fresh) if emb.whitening is not None else fresh
    return out


def _row(rq, s: QueryScores, ks) -> dict:
    q = rq.query
    row = {"query": q.name, "group": q.group, "image": q.image,
           "box": " ".join(f"{v:g}" for v in q.box.as_list()) if q.box else "",
           "ap": s.ap, "ap_interp11": s.ap_interp11, "ndcg": s.ndcg}
    row.update({f"p@{k}": s.precision_at[k] for k in ks})
    row.update({f"top{k}": s.top_k[k] for k in ks})
    row.update({"first_relevant_rank": s.first_relevant, "n_relevant": s.n_relevant,
                "n_relevant_listed": rq.n_positives_listed, "n_junk": len(rq.junk)})
    return row


def evaluate(gallery: Gallery, gt: GroundTruth, config: EmbeddingConfig,
             settings: SearchSettings | None = None, embedder: Embedder | None = None,
             progress: bool = True, log: Callable[[str], None] = print, write: bool = True,
             ks: tuple[int, ...] = TOP_KS, rerank: RerankSettings | None = None) -> dict:
    """Run the whole pipeline and (with ``write``) save a run. Returns the summary dict, whose
    ``run_dir`` names the run folder. ``rerank`` re-ranks the rankings before they are scored
    (``core.rerank.methods``); its settings and extra time per query go to the summary's "rerank"."""
    settings = settings or SearchSettings()
    emb = build_embeddings(gallery, config, embedder, progress=progress, log=log)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = resolve(gt, emb.ids)
    if res.skipped:
        log(f"warning: {len(res.skipped)} of {len(gt.queries)} queries skipped, their image is not in the "
            f"gallery: {', '.join(res.skipped)}")
    if res.no_positives:
        log(f"warning: {len(res.no_positives)} queries skipped, none of their positives is in the gallery: "
            f"{', '.join(res.no_positives)}")
    if not res.queries:
        raise ValueError(f"none of the {len(gt.queries)} queries of {gt.dataset} can be evaluated on gallery "
                         f"{gallery.name} ({len(emb.ids)} images)")

    embedder = embedder or Embedder(config.base())
    start = time.perf_counter()
    qvecs = query_vectors(emb, res, embedder, gallery)
    query_embed_s = time.perf_counter() - start

    ranking, info = rank_gallery(emb, qvecs, settings)
    rerank = rerank or RerankSettings()
    regions = [RegionQuery(gallery.root / emb.ids[rq.image_index], rq.query.box) for rq in res.queries]
    reranked = rerank_rankings(rerank, ranking, qvecs, emb, gallery, embedder, regions, progress=progress, log=log)
    ranking = reranked.ranking
    scores = [score_query(r, rq.positives, rq.junk, ks) for r, rq in zip(ranking, res.queries)]
    per_query = pd.DataFrame([_row(rq, s, ks) for rq, s in zip(res.queries, scores)])
    report = protocol_report(gt, res, ranking, emb.ids, per_query, ks)
    per_query = pd.concat([per_query, report.columns], axis=1)
    nq = len(res.queries)
    extraction = emb.meta.get("extraction", {})
    summary = {
        "dataset": gt.dataset, "protocol": gt.protocol, "gallery": gallery.name, "gallery_root": str(gallery.root),
        "embedding": config.to_dict(), "embedding_label": config.label(), "embedding_key": config.key(),
        "search": {"method": settings.method, "metric": settings.metric,
                   **({"n_trees": settings.annoy.n_trees} if settings.method == "annoy" else {})},
        "n_images": len(emb.ids), "n_failed_images": len(emb.failures), "n_queries": nq,
        "n_queries_total": len(gt.queries), "n_queries_skipped": len(res.skipped) + len(res.no_positives),
        "skipped_queries": res.skipped + res.no_positives,
        "relevance_note": "relevant = listed positives present in the gallery; junk removed from rankings",
        "dim": emb.dim,
        "map": float(per_query["ap"].mean()), "map_interp11": float(per_query["ap_interp11"].mean()),
        "ndcg": float(per_query["ndcg"].mean()),
        **{f"p@{k}": float(per_query[f"p@{k}"].mean()) for k in ks},
        **{f"top{k}": float(per_query[f"top{k}"].mean()) for k in ks},
        "random_map": random_baseline_map(res, len(emb.ids)),
        "extraction_seconds": extraction.get("seconds"), "images_per_second": extraction.get("images_per_second"),
        "index_build_seconds": info.get("index_build_seconds"),
        "query_embed_ms": query_embed_s / nq * 1000, "query_search_ms": info["search_seconds"] / nq * 1000,
        "mean_query_ms": (query_embed_s + info["search_seconds"]) / nq * 1000,
        "queries_from_cache": sum(rq.query.box is None for rq in res.queries),
        "index": info, "rerank": reranked.info, "ground_truth_notes": gt.notes,
        **report.summary,
        "versions": package_versions(), "machine": machine_info(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if write:
        dataset_tag = f"{gt.dataset}-{gt.protocol}" if gt.dataset in DATASET_PROTOCOLS else gt.dataset
        run_id = new_run_id(dataset_tag, config.label() + f"-{settings.method}"
                            + (f"-{rerank.label()}" if rerank.label() else ""))
        pr = {rq.query.name: {"precision": s.precision.round(5).tolist(), "recall": s.recall.round(5).tolist()}
              for rq, s in zip(res.queries, scores)}
        summary["run_id"] = run_id
        summary["run_dir"] = str(write_run(run_id, summary, per_query, emb.ids, ranking, pr,
                                               extra=report.files))
    return summary
