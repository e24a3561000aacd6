"""The evaluation pipeline: gallery → descriptors → index → cropped queries → rankings →
re-ranking → metrics → a run under ``artifacts/runs/``.

One ``Embedder`` serves the whole job: it embeds the gallery (through the cache), the queries
and, for region re-ranking, the feature maps.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from core.cache.descriptors import Embeddings, build_embeddings
from core.cache.galleries import Gallery
from core.cache.queries import CropRequest, crop_descriptors
from core.config import EmbeddingConfig, HnswParams
from core.datasets import DATASET_PROTOCOLS, GroundTruth, Resolution, ResolvedQuery, resolve
from core.datasets.validation import VALIDATION_PROTOCOL
from core.embed.embedder import Embedder
from core.evaluation.metrics import TOP_KS, QueryScores, score_queries, score_query
from core.evaluation.reports import protocol_report
from core.evaluation.runs import machine_info, new_run_id, package_versions, write_run
from core.evaluation.summary import RunSummary
from core.index import AnnoyIndex, ExactIndex, HnswIndex, SearchSettings, full_ranking, open_stored, recall_at
from core.index.base import resolved_settings
from core.progress import Reporter
from core.rerank import RegionQuery, RerankContext, Reranker, apply_reranker, create_reranker

RANDOM_TRIALS = 20


def rank_gallery(emb: Embeddings, queries: np.ndarray, settings: SearchSettings) -> tuple[np.ndarray, dict]:
    """Full rankings [q, n] of the gallery for each query vector, with index figures.

    With Annoy or HNSW, the images the index returns come first in its order; the rest follow in
    gallery order, as an unranked tail (they are never re-sorted by exact scores)."""
    n = len(emb.ids)
    settings = resolved_settings(settings, n, emb.dim)
    info: dict = {"method": settings.method, "metric": settings.metric}
    if settings.method in ("exact", "exact16"):
        start = time.perf_counter()
        index = ExactIndex(emb.vectors, settings.metric, "float16" if settings.method == "exact16" else "float32")
        info["index_build_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        ranking = index.rank_all(queries)
        info["search_seconds"] = time.perf_counter() - start
        return ranking, info
    if settings.method == "hnsw":
        ann = open_stored(HnswIndex, emb, HnswParams(metric=settings.metric))
        effort = ("m", "ef_construction", "ef")
    else:
        ann = open_stored(AnnoyIndex, emb, settings.annoy)
        effort = ("n_trees", "search_k")
    info.update({k: ann.meta[k] for k in ("build_seconds", *effort, "recall@10", "recall@100", "recall_target_met")})
    info["index_build_seconds"] = ann.meta["build_seconds"]
    start = time.perf_counter()
    top, _ = ann.search(queries, n)
    info["search_seconds"] = time.perf_counter() - start
    ranking = full_ranking(top, n)
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


def query_vectors(emb: Embeddings, res: Resolution, embedder: Embedder,
                  gallery: Gallery) -> tuple[np.ndarray, dict[int, str], int]:
    """Descriptors of the resolved queries (whitened like the gallery), the queries that cannot
    be embedded (position → reason: a box with nothing of it inside its image, an image that
    cannot be read any more; their rows are left out), and how many crops came from the crop
    cache (``core.cache.queries``: each box is embedded once per base config, so their time is
    not in this run's). A query without a box is a whole gallery image whose cached descriptor
    is exactly what embedding it again would give, so it is reused: class-folder and Holidays
    runs would otherwise embed every image twice."""
    out = emb.vectors[[rq.image_index for rq in res.queries]].copy()
    boxed = [i for i, rq in enumerate(res.queries) if rq.query.box is not None]
    requests = [CropRequest(emb.ids[res.queries[i].image_index], res.queries[i].query.box) for i in boxed]
    crops = crop_descriptors(gallery, emb.config, requests, embedder.embed_image)
    refused = {boxed[j]: reason for j, reason in crops.refused.items()}
    kept = [i for i in boxed if i not in refused]
    if kept:
        out[kept] = emb.whitening.apply(crops.vectors) if emb.whitening is not None else crops.vectors
    return np.delete(out, list(refused), axis=0), refused, crops.n_cached


def folder_query_vectors(emb: Embeddings, res: Resolution, embedder: Embedder, root: Path, progress: bool = True,
                         log: Callable[[str], None] = print) -> tuple[np.ndarray, Resolution]:
    """Descriptors of queries from a separate query folder (whitened like the gallery), and the
    resolution without the queries whose image could not be read (counted as skipped)."""
    names = [rq.query.name for rq in res.queries]
    got = embedder.embed_files([str(root / n) for n in names], ids=names, progress=progress)
    for name, reason in got.failures.items():
        log(f"warning: query {name} skipped: {reason}")
    kept = set(got.ids)
    res = Resolution([rq for rq in res.queries if rq.query.name in kept], res.skipped + sorted(got.failures),
                     res.no_positives)
    vectors = emb.whitening.apply(got.vectors) if emb.whitening is not None else got.vectors
    return vectors, res


def _query_path(rq: ResolvedQuery, gt: GroundTruth, gallery: Gallery, ids: list[str]) -> Path:
    return gt.query_root / rq.query.name if rq.image_index is None else gallery.root / ids[rq.image_index]


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
             ks: tuple[int, ...] = TOP_KS, rerank: Reranker | None = None) -> RunSummary:
    """Run the whole pipeline and (with ``write``) save a run, whose folder the summary's
    ``run_dir`` names. ``rerank`` (``core.rerank.create_reranker``) re-ranks the rankings before
    they are scored; its parameters and extra time per query go to the summary's ``rerank``."""
    settings = settings or SearchSettings()
    rerank = rerank or create_reranker("none")
    embedder = embedder or Embedder(config.base())
    emb = build_embeddings(gallery, config, embedder, Reporter(bar=progress, log=log))
    rerank = rerank.for_gallery(len(emb.ids))          # rule-set parameters, as the run records them
    settings = resolved_settings(settings, len(emb.ids), emb.dim)     # "auto": the method it stands for here
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

    start = time.perf_counter()
    if gt.query_root is not None:
        qvecs, res = folder_query_vectors(emb, res, embedder, gt.query_root, progress, log)
        refused, crops_cached = {}, 0
    else:
        qvecs, refused, crops_cached = query_vectors(emb, res, embedder, gallery)
    query_embed_s = time.perf_counter() - start
    if refused:
        reasons = [f"{res.queries[i].query.name}: {reason}; query skipped" for i, reason in refused.items()]
        log(f"warning: {len(refused)} queries skipped, they cannot be embedded: " + "; ".join(reasons))
        gt = replace(gt, notes=[*gt.notes, *reasons])
        res = Resolution([rq for i, rq in enumerate(res.queries) if i not in refused],
                         res.skipped + [res.queries[i].query.name for i in refused], res.no_positives)
        if not res.queries:
            raise ValueError(f"none of the queries of {gt.dataset} can be embedded: {'; '.join(reasons)}")

    ranking, info = rank_gallery(emb, qvecs, settings)
    regions = [RegionQuery(_query_path(rq, gt, gallery, emb.ids), rq.query.box) for rq in res.queries]
    index = (open_stored(AnnoyIndex, emb, settings.annoy) if settings.method == "annoy" else
             open_stored(HnswIndex, emb, HnswParams(metric=settings.metric)) if settings.method == "hnsw" else None)
    ctx = RerankContext(emb, gallery, embedder, progress, log, index)
    reranked = apply_reranker(rerank, ranking, qvecs, regions, ctx)
    ranking = reranked.ranking
    scores = score_queries(ranking, [rq.positives for rq in res.queries], [rq.junk for rq in res.queries], ks)
    per_query = pd.DataFrame([_row(rq, s, ks) for rq, s in zip(res.queries, scores)])
    report = protocol_report(gt, res, ranking, emb.ids, per_query, ks)
    per_query = pd.concat([per_query, report.columns], axis=1)
    nq = len(res.queries)
    extraction = emb.meta.get("extraction", {})
    summary = RunSummary(
        dataset=gt.dataset, protocol=gt.protocol, gallery=gallery.name, gallery_root=str(gallery.root),
        embedding=config,
        search={"method": settings.method, "metric": settings.metric,
                **({"n_trees": settings.annoy.n_trees} if settings.method == "annoy" else {})},
        n_images=len(emb.ids), n_failed_images=len(emb.failures), n_queries=nq,
        n_queries_total=len(gt.queries), n_queries_skipped=len(res.skipped) + len(res.no_positives),
        skipped_queries=res.skipped + res.no_positives, dim=emb.dim,
        map=float(per_query["ap"].mean()), map_interp11=float(per_query["ap_interp11"].mean()),
        ndcg=float(per_query["ndcg"].mean()),
        precision_at={k: float(per_query[f"p@{k}"].mean()) for k in ks},
        top_k={k: float(per_query[f"top{k}"].mean()) for k in ks},
        random_map=random_baseline_map(res, len(emb.ids)),
        extraction_seconds=extraction.get("seconds"), images_per_second=extraction.get("images_per_second"),
        index_build_seconds=info.get("index_build_seconds"),
        query_embed_ms=query_embed_s / nq * 1000, query_search_ms=info["search_seconds"] / nq * 1000,
        mean_query_ms=(query_embed_s + info["search_seconds"]) / nq * 1000,
        queries_from_cache=sum(rq.query.box is None and rq.image_index is not None for rq in res.queries), query_crops_cached=crops_cached,
        index=info,
        rerank={**rerank.params(), "label": rerank.label(), "offline_seconds": reranked.offline_seconds,
                "extra_ms_per_query": reranked.extra_ms_per_query},
        ground_truth_notes=gt.notes, protocol_extras=report.summary,
        versions=package_versions(), machine=machine_info(), timestamp=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    if write:
        with_protocol = gt.dataset in DATASET_PROTOCOLS or gt.protocol.startswith(VALIDATION_PROTOCOL)
        dataset_tag = f"{gt.dataset}-{gt.protocol}" if with_protocol else gt.dataset
        summary.run_id = new_run_id(dataset_tag, config.label() + f"-{settings.method}"
                                    + (f"-{rerank.label()}" if rerank.label() else ""), gallery.name)
        pr = {rq.query.name: {"precision": s.precision.round(5).tolist(), "recall": s.recall.round(5).tolist()}
              for rq, s in zip(res.queries, scores)}
        run_dir = write_run(summary.run_id, summary, per_query, emb.ids, ranking, pr, extra=report.files)
        summary.run_id, summary.run_dir = run_dir.name, str(run_dir)
    return summary
