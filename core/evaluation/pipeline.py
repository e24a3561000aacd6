"""The evaluation pipeline: gallery → descriptors → index → cropped queries → rankings →
re-ranking → metrics → a run under ``artifacts/runs/``.

One ``Embedder`` serves the whole job: it embeds the gallery (through the cache), the queries
and, for region re-ranking, the feature maps.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from core.cache.descriptors import Embeddings, build_embeddings
from core.cache.galleries import Gallery
from core.cache.queries import CropRequest, crop_descriptors
from core.config import EmbeddingConfig
from core.datasets import DATASET_PROTOCOLS, GroundTruth, Resolution, ResolvedQuery, resolve
from core.datasets.validation import VALIDATION_PROTOCOL
from core.embed.embedder import Embedder
from core.evaluation.distractors import load_distractors, with_distractors
from core.evaluation.metrics import TOP_KS, QueryScores, expected_random_ap, hit_points, score_queries
from core.evaluation.reports import ProtocolReport, protocol_report
from core.evaluation.runs import machine_info, new_run_id, package_versions, write_run
from core.evaluation.summary import DistractorsRun, IndexRun, RerankRun, RunSummary
from core.index import ExactIndex, Index, SearchSettings, open_index, recall_at
from core.progress import Reporter
from core.rerank import RegionQuery, Reranker
from core.search.retriever import Ranked, Retriever


def random_baseline_map(resolution: Resolution, n_images: int) -> float:
    """Expected mAP of uniformly random rankings: the chance level of this gallery."""
    aps = [expected_random_ap(n_images, rq.positives, rq.junk) for rq in resolution.queries]
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
        out[kept] = emb.whiten(crops.vectors)
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
    return emb.whiten(got.vectors), res


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


@dataclass(frozen=True)
class RunOptions:
    """How a run reports and what it keeps: progress bars, where messages go, whether the run is
    written under ``artifacts/runs/``, and the cut-offs of P@k and top-k."""

    progress: bool = True
    log: Callable[[str], None] = print
    write: bool = True
    ks: tuple[int, ...] = TOP_KS


QUIET = RunOptions(progress=False, log=lambda _: None)


@dataclass(frozen=True)
class Queries:
    """The queries of a run that can be evaluated, their descriptors, the ground truth (with
    notes of what was skipped), the time spent embedding them and the crops read from cache."""

    resolution: Resolution
    vectors: np.ndarray
    gt: GroundTruth
    embed_seconds: float
    crops_cached: int


def resolve_queries(gt: GroundTruth, emb: Embeddings, gallery: Gallery, log: Callable[[str], None]) -> Resolution:
    """The queries of ``gt`` whose image and positives are in the gallery; the rest are named."""
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
    return res


def embed_queries(emb: Embeddings, res: Resolution, gt: GroundTruth, embedder: Embedder, gallery: Gallery,
                  options: RunOptions) -> Queries:
    """Descriptors of the resolved queries; those that cannot be embedded are skipped with a note."""
    start = time.perf_counter()
    if gt.query_root is not None:
        vectors, res = folder_query_vectors(emb, res, embedder, gt.query_root, options.progress, options.log)
        refused, crops_cached = {}, 0
    else:
        vectors, refused, crops_cached = query_vectors(emb, res, embedder, gallery)
    seconds = time.perf_counter() - start
    if refused:
        reasons = [f"{res.queries[i].query.name}: {reason}; query skipped" for i, reason in refused.items()]
        options.log(f"warning: {len(refused)} queries skipped, they cannot be embedded: " + "; ".join(reasons))
        gt = replace(gt, notes=[*gt.notes, *reasons])
        res = Resolution([rq for i, rq in enumerate(res.queries) if i not in refused],
                         res.skipped + [res.queries[i].query.name for i in refused], res.no_positives)
        if not res.queries:
            raise ValueError(f"none of the queries of {gt.dataset} can be embedded: {'; '.join(reasons)}")
    return Queries(res, vectors, gt, seconds, crops_cached)


def index_run(index: Index, emb: Embeddings, q: Queries, ranked: Ranked, open_seconds: float) -> IndexRun:
    """The run's index record; an approximate index's rankings are compared with exact ones."""
    n = len(q.resolution.queries)
    search_seconds = ranked.times.search_ms * n / 1000
    if index.exact:
        return IndexRun(index.figures(), open_seconds, search_seconds)
    exact = ExactIndex(emb.vectors, index.metric).rank_all(q.vectors)
    figures = index.figures()
    return IndexRun(figures, figures.build_seconds, search_seconds,
                    recall_at(ranked.plain, exact, 10), recall_at(ranked.plain, exact, 100))


def score_run(gt: GroundTruth, res: Resolution, ranking: np.ndarray, ids: list[str],
              ks: tuple[int, ...]) -> tuple[pd.DataFrame, ProtocolReport, list[QueryScores]]:
    """Per-query metrics and the protocol's report of full rankings [q, n]."""
    scores = score_queries(ranking, [rq.positives for rq in res.queries], [rq.junk for rq in res.queries], ks)
    per_query = pd.DataFrame([_row(rq, s, ks) for rq, s in zip(res.queries, scores)])
    report = protocol_report(gt, res, ranking, ids, per_query, ks)
    return pd.concat([per_query, report.columns], axis=1), report, scores


def _summary(gallery: Gallery, q: Queries, emb: Embeddings, settings: SearchSettings, per_query: pd.DataFrame,
             report: ProtocolReport, ranked: Ranked, index: IndexRun) -> RunSummary:
    res, gt, nq = q.resolution, q.gt, len(q.resolution.queries)
    extraction = emb.meta.get("extraction", {})
    mean = {c: float(per_query[c].mean()) for c in per_query.columns if c.startswith(("p@", "top")) or
            c in ("ap", "ap_interp11", "ndcg")}
    search_s = index.search_seconds
    return RunSummary(
        dataset=gt.dataset, protocol=gt.protocol, gallery=gallery.name, gallery_root=str(gallery.root),
        embedding=emb.config, search=settings, n_images=len(emb.ids), n_failed_images=len(emb.failures),
        n_queries=nq, n_queries_total=len(gt.queries), n_queries_skipped=len(res.skipped) + len(res.no_positives),
        skipped_queries=res.skipped + res.no_positives, dim=emb.dim,
        map=mean["ap"], map_interp11=mean["ap_interp11"], ndcg=mean["ndcg"],
        precision_at={int(c[2:]): v for c, v in mean.items() if c.startswith("p@")},
        top_k={int(c[3:]): v for c, v in mean.items() if c.startswith("top") and c[3:].isdigit()},
        random_map=random_baseline_map(res, len(emb.ids)),
        extraction_seconds=extraction.get("seconds"), images_per_second=extraction.get("images_per_second"),
        index_build_seconds=index.index_build_seconds,
        query_embed_ms=q.embed_seconds / nq * 1000, query_search_ms=search_s / nq * 1000,
        mean_query_ms=(q.embed_seconds + search_s) / nq * 1000,
        queries_from_cache=sum(rq.query.box is None and rq.image_index is not None for rq in res.queries),
        query_crops_cached=q.crops_cached, index=index,
        rerank=RerankRun(ranked.reranker.name, {k: v for k, v in ranked.reranker.params().items() if k != "method"}, ranked.reranker.label(),
                         ranked.times.prepare_seconds, ranked.times.rerank_ms),
        ground_truth_notes=gt.notes, protocol_extras=report.summary,
        versions=package_versions(), machine=machine_info(), timestamp=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )


def _write(summary: RunSummary, q: Queries, ids: list[str], ranking: np.ndarray, per_query: pd.DataFrame,
           report: ProtocolReport, scores: list[QueryScores]) -> None:
    gt = q.gt
    with_protocol = gt.dataset in DATASET_PROTOCOLS or gt.protocol.startswith(VALIDATION_PROTOCOL)
    dataset_tag = (f"{gt.dataset}-{gt.protocol}" if with_protocol else gt.dataset) + (
        summary.distractors.label if summary.distractors else "")
    rerank = summary.rerank_label
    summary.run_id = new_run_id(dataset_tag, summary.embedding.label() + f"-{summary.search.method}"
                                + (f"-{rerank}" if rerank else ""), summary.gallery)
    pr = {rq.query.name: dict(zip(("precision", "recall"), (a.round(5).tolist() for a in hit_points(s.precision, s.recall))))
          for rq, s in zip(q.resolution.queries, scores)}
    run_dir = write_run(summary.run_id, summary, per_query, ids, ranking, pr, extra=report.files)
    summary.run_id, summary.run_dir = run_dir.name, str(run_dir)


def evaluate(gallery: Gallery, gt: GroundTruth, config: EmbeddingConfig, settings: SearchSettings | None = None,
             rerank: Reranker | None = None, embedder: Embedder | None = None,
             options: RunOptions = RunOptions(), distractors: str | None = None) -> RunSummary:
    """Run the whole pipeline: descriptors of the gallery (through the cache; with
    ``distractors``, every image of that indexed gallery added as a negative), the queries, one
    ``Retriever`` (the index, then ``rerank``: the path the app's search takes too), the metrics
    of the re-ranked rankings, and (with ``options.write``) a run, whose folder the summary's
    ``run_dir`` names."""
    embedder = embedder or Embedder(config.base())
    emb = build_embeddings(gallery, config, embedder, Reporter(bar=options.progress, log=options.log))
    negatives = load_distractors(distractors, config) if distractors else None
    if negatives is not None:
        emb = with_distractors(emb, negatives)
    settings = (settings or SearchSettings()).resolved(len(emb.ids), emb.dim)   # "auto": what it stands for here
    q = embed_queries(emb, resolve_queries(gt, emb, gallery, options.log), gt, embedder, gallery, options)
    start = time.perf_counter()
    index = open_index(emb, settings)
    open_seconds = time.perf_counter() - start
    regions = [RegionQuery(_query_path(rq, q.gt, gallery, emb.ids), rq.query.box) for rq in q.resolution.queries]
    retriever = Retriever(emb, index, gallery, embedder, rerank)
    if retriever.note:
        options.log(f"note: {retriever.note}")
    ranked = retriever.rank(q.vectors, regions, options.progress, options.log)
    per_query, report, scores = score_run(q.gt, q.resolution, ranked.ranking, emb.ids, options.ks)
    summary = _summary(gallery, q, emb, settings, per_query, report, ranked, index_run(index, emb, q, ranked, open_seconds))
    if negatives is not None:
        summary.distractors = DistractorsRun(negatives.gallery, len(negatives.ids))
    if options.write:
        _write(summary, q, emb.ids, ranked.ranking, per_query, report, scores)
    return summary
