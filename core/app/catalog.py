"""What the app lists and compares, read from ``artifacts/``: galleries with their descriptor
caches and ground truth, evaluation runs as one table, per-query and PR-curve comparisons of
runs, the worst queries of a run, and benchmark reports. Pure reads, no Streamlit, so the pages
stay thin and everything here is tested directly.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.app.labels import label_results
from core.app.models import model_of_run
from core.app.names import embedding_name, rerank_name
from core.cache.descriptors import CacheInfo, gallery_caches
from core.cache.galleries import Gallery, GalleryError, list_galleries, load_gallery
from core.datasets import LOADERS, GroundTruth, Query, dataset_layout, load_ground_truth, load_oxford_paris, stem_of
from core.datasets.classes import PROTOCOL as CLASSES
from core.datasets.classes import load_class_folders
from core.evaluation.metrics import RECALL_LEVELS_11, hit_points, interpolated_precision
from core.evaluation.runs import Run, list_runs, load_run
from core.evaluation.summary import RunSummary
from core.images import Box
from core.paths import artifacts_dir


@dataclass(frozen=True)
class GalleryEntry:
    """A registered gallery and its descriptor caches."""

    gallery: Gallery
    caches: list[CacheInfo]

    @property
    def indexed(self) -> list[dict]:
        """Caches whose extraction finished: those the search page can use."""
        return [c for c in self.caches if c.usable]


def gallery_entries() -> list[GalleryEntry]:
    out = []
    for name in list_galleries():
        try:
            out.append(GalleryEntry(load_gallery(name), gallery_caches(name)))
        except (GalleryError, KeyError, json.JSONDecodeError):
            continue                      # a broken record must not take the app down
    return out


def _load(dataset: str, gt_dir: Path) -> GroundTruth:
    """Known datasets by their loader; any other (the demo) is in the Oxford/Paris text layout."""
    return load_ground_truth(dataset, gt_dir) if dataset in LOADERS else load_oxford_paris(gt_dir, dataset)


def gallery_ground_truth(gallery: Gallery) -> GroundTruth | None:
    """Ground truth of a gallery: the folder in its record, else the one beside the images of
    its latest evaluation run (``<dataset>/jpg`` next to ``<dataset>/gt``); None when unknown."""
    if gallery.ground_truth is not None and gallery.ground_truth.is_dir():
        return _load(gallery.dataset or gallery.name, gallery.ground_truth)
    for run_id in reversed(list_runs()):
        summary = load_run(run_id).summary
        if summary.gallery == gallery.name:
            return run_ground_truth(summary)
    return None


def run_ground_truth(summary: RunSummary) -> GroundTruth | None:
    """Ground truth a run was evaluated with: its gallery's record, else ``gt`` beside its images."""
    try:
        gallery = load_gallery(summary.gallery)
        if gallery.ground_truth is not None and gallery.ground_truth.is_dir():
            return _load(gallery.dataset or summary.dataset, gallery.ground_truth)
    except GalleryError:
        pass
    images = Path(summary.gallery_root)
    if summary.dataset == CLASSES and images.is_dir():
        return load_class_folders(images)          # the class folders are the ground truth
    gt = dataset_layout(images.parent).ground_truth
    if summary.dataset in LOADERS and gt != images.parent and gt.is_dir():
        return load_ground_truth(summary.dataset, gt)
    return None


def queries_in_gallery(gt: GroundTruth, ids: Sequence[str]) -> list[tuple[Query, str]]:
    """Queries whose image is in the gallery (the others cannot be shown), each with the id of
    its image (the first of that stem, as ``image_id_of`` finds it), in one pass over the ids."""
    first: dict[str, str] = {}
    for i in ids:
        first.setdefault(stem_of(i), i)
    return [(q, first[q.image]) for q in gt.queries if q.image in first]


def image_id_of(stem: str, ids: Sequence[str]) -> str | None:
    return next((i for i in ids if stem_of(i) == stem), None)


# ---------------------------------------------------------------- runs

RUN_COLUMNS = ("run_id", "timestamp", "dataset", "protocol", "gallery", "backbone", "pooling", "scales", "max_size", "whitening",
               "dim", "search", "rerank", "rerank_ms", "mAP", "mAP_interp11", "NDCG", "P@10", "extraction_s",
               "images_per_s", "query_ms", "embed_ms", "search_ms", "fresh_query_ms", "embed_measured_on", "n_images",
               "n_queries", "embedding_key", "label", "embedding", "rerank_name", "model")


@dataclass(frozen=True)
class QueryTime:
    """The time of one query of a run as a person would wait for it, with its descriptor computed
    fresh: embed + search + re-rank (ms). A run may read query descriptors from the cache (whole
    gallery images, crops seen before), which makes its mean query time a cache's figure; the embed
    time here is the mean over the queries it did embed, else the gallery's extraction time per
    image (``embed_measured_on`` says which)."""

    embed_ms: float | None
    search_ms: float
    rerank_ms: float
    embed_measured_on: str                 # "queries", "gallery extraction" or "unknown"

    @property
    def total_ms(self) -> float | None:
        return None if self.embed_ms is None else self.embed_ms + self.search_ms + self.rerank_ms


def fresh_query_time(summary: RunSummary) -> QueryTime:
    """``QueryTime`` of a run from its summary (``query_embed_ms`` is the embedding time of all
    queries, cached ones included, over the number of queries)."""
    fresh = summary.n_queries - summary.queries_from_cache - summary.query_crops_cached
    rerank = summary.rerank.extra_ms_per_query
    if fresh > 0:
        embed, source = summary.query_embed_ms * summary.n_queries / fresh, "queries"
    elif summary.images_per_second:
        embed, source = 1000.0 / summary.images_per_second, "gallery extraction"
    else:
        embed, source = None, "unknown"
    return QueryTime(embed, summary.query_search_ms, rerank, source)


def run_row(summary: RunSummary) -> dict[str, Any]:
    """One row of the runs table from a run summary."""
    cfg = summary.embedding
    pooling = f"gem{cfg.gem_p:g}" if cfg.pooling == "gem" else cfg.pooling
    whitening = cfg.whitening + (f"/{cfg.whiten_dim}" if cfg.whitening != "none" and cfg.whiten_dim else "")
    fresh = fresh_query_time(summary)
    return {
        "run_id": summary.run_id, "timestamp": summary.timestamp, "dataset": summary.dataset,
        "protocol": summary.protocol_label, "gallery": summary.gallery, "backbone": cfg.backbone, "pooling": pooling, "scales": len(cfg.scales),
        "max_size": cfg.max_size, "whitening": whitening, "dim": summary.dim,
        "search": f"{summary.search.method}/{summary.search.metric}",
        "rerank": summary.rerank_label or "none", "rerank_ms": summary.rerank.extra_ms_per_query,
        "mAP": summary.map, "mAP_interp11": summary.map_interp11, "NDCG": summary.ndcg,
        "P@10": summary.metric("p@10"), "extraction_s": summary.extraction_seconds,
        "images_per_s": summary.images_per_second, "query_ms": summary.mean_query_ms,
        "embed_ms": fresh.embed_ms, "search_ms": fresh.search_ms, "fresh_query_ms": fresh.total_ms,
        "embed_measured_on": fresh.embed_measured_on, "n_images": summary.n_images, "n_queries": summary.n_queries,
        "embedding_key": summary.embedding_key, "label": summary.embedding_label, "embedding": embedding_name(cfg),
        "rerank_name": rerank_name(summary.rerank.method, summary.rerank.params),
        "model": model_of_run(cfg),
    }


def runs_table(root: Path | None = None) -> pd.DataFrame:
    """Every complete run, newest first, one row each (``RUN_COLUMNS``)."""
    rows = [run_row(load_run(r, root).summary) for r in reversed(list_runs(root))]
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS))


def ap_comparison(runs: Sequence[Run]) -> pd.DataFrame:
    """Per-query AP of one or two runs in long form (query, run, ap, diff, better), over the
    queries they share, sorted: by AP for one run, by the AP difference (second minus first)
    for two, so that the queries where one run wins stand at either end."""
    names = [r.run_id for r in runs]
    wide = runs[0].per_query.set_index("query")[["ap"]].rename(columns={"ap": names[0]})
    for r in runs[1:]:
        wide = wide.join(r.per_query.set_index("query")["ap"].rename(r.run_id), how="inner")
    if len(runs) == 2:
        wide["diff"] = wide[names[1]] - wide[names[0]]
        wide["better"] = np.where(wide["diff"] > 1e-9, names[1], np.where(wide["diff"] < -1e-9, names[0], "tie"))
        wide = wide.sort_values("diff")
    else:
        wide["diff"], wide["better"] = 0.0, "tie"
        wide = wide.sort_values(names[0], ascending=False)
    wide["order"] = range(len(wide))
    long = wide.reset_index().melt(id_vars=["query", "diff", "better", "order"], value_vars=names,
                                   var_name="run", value_name="ap")
    return long.sort_values(["order", "run"]).reset_index(drop=True)


def pr_curves(runs: Sequence[Run], query: str | None = None) -> pd.DataFrame:
    """PR curves (run, curve, recall, precision) of one query, measured (at each relevant image
    found) and 11-point interpolated; with ``query`` None, the mean interpolated curve over each
    run's queries."""
    frames = []
    for run in runs:
        pr = run.pr
        if query is None:
            mean = np.mean([interpolated_precision(c["precision"], c["recall"]) for c in pr.values()], axis=0)
            frames.append(pd.DataFrame({"run": run.run_id, "curve": "mean interpolated (11-pt)",
                                        "recall": RECALL_LEVELS_11, "precision": mean}))
        elif query in pr:
            c = pr[query]
            precision, recall = hit_points(c["precision"], c["recall"])
            frames.append(pd.DataFrame({"run": run.run_id, "curve": "measured",
                                        "recall": [0.0, *recall], "precision": [1.0, *precision]}))
            frames.append(pd.DataFrame({"run": run.run_id, "curve": "interpolated (11-pt)", "recall": RECALL_LEVELS_11,
                                        "precision": interpolated_precision(c["precision"], c["recall"])}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run", "curve", "recall", "precision"])


def confusion_cell_images(run: Run, true: str, predicted: str) -> list[str]:
    """The query images of a class-folder run whose class is ``true`` and whose nearest
    neighbours voted ``predicted``: the images behind one cell of its confusion matrix (gallery
    ids; empty for a run without votes)."""
    pq = run.per_query
    if "predicted" not in pq or "group" not in pq:
        return []
    rows = pq[(pq["group"].astype(str) == true) & (pq["predicted"].astype(str) == predicted)]
    present = set(run.ids)
    return [str(q) for q in rows["query"] if str(q) in present]       # a class-folder query is named by its id


@dataclass(frozen=True)
class FailureCase:
    """One badly ranked query of a run: its crop and its top results with their labels."""

    query: str
    ap: float
    first_relevant: int | None
    image_path: Path | None
    box: Box | None
    results: list[tuple[str, str]]         # (image id, label), best first


def failure_cases(run: Run, n: int = 5, k: int = 10) -> list[FailureCase]:
    """The ``n`` queries of ``run`` with the lowest AP, each with its top ``k`` results labelled
    (all "bad" when the run's ground truth cannot be found any more)."""
    gt = run_ground_truth(run.summary)
    by_name = {q.name: q for q in gt.queries} if gt else {}
    ids, ranking = run.ids, run.ranking
    root = Path(run.summary.gallery_root)
    pq = run.per_query.reset_index(drop=True)
    out = []
    for row in pq.nsmallest(n, "ap").itertuples():
        top = [ids[i] for i in ranking[row.Index][:k]]
        q = by_name.get(row.query)
        image_id = image_id_of(row.image, ids)
        box = Box.of([float(v) for v in str(row.box).split()]) if isinstance(row.box, str) and row.box else None
        first = None if pd.isna(row.first_relevant_rank) else int(row.first_relevant_rank)
        out.append(FailureCase(row.query, float(row.ap), first, root / image_id if image_id else None, box,
                               list(zip(top, label_results(q, top) if q else ["bad"] * len(top)))))
    return out


# ---------------------------------------------------------------- benchmark reports

@dataclass(frozen=True)
class BenchReport:
    """A benchmark JSON file read generically: its tables (lists of records) and its scalars."""

    name: str
    tables: list[tuple[str, pd.DataFrame]]
    scalars: dict[str, Any]


def _flatten(prefix: str, value: Any, tables: list, scalars: dict) -> None:
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        tables.append((prefix or "rows", pd.json_normalize(value)))
    elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()) \
            and all(not isinstance(x, (dict, list)) for v in value.values() for x in v.values()):
        tables.append((prefix or "rows", pd.DataFrame.from_dict(value, orient="index").rename_axis("name").reset_index()))
    elif isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, tables, scalars)
    elif isinstance(value, list):
        scalars[prefix] = ", ".join(map(str, value))
    else:
        scalars[prefix] = value


def read_bench(path: Path) -> BenchReport:
    tables: list[tuple[str, pd.DataFrame]] = []
    scalars: dict[str, Any] = {}
    _flatten("", json.loads(path.read_text()), tables, scalars)
    return BenchReport(path.stem, tables, scalars)


def bench_reports(directory: Path | None = None) -> list[BenchReport]:
    """Every ``artifacts/bench/*.json``, by name; unreadable files are reported as a scalar."""
    out = []
    for path in sorted((directory or artifacts_dir() / "bench").glob("*.json")):
        try:
            out.append(read_bench(path))
        except (json.JSONDecodeError, OSError, ValueError) as exc:
            out.append(BenchReport(path.stem, [], {"error": f"unreadable: {exc}"}))
    return out


def chart_columns(df: pd.DataFrame) -> tuple[str | None, str] | None:
    """(label column, numeric column) for a bar chart of a table, or None when it has no
    numeric column. The label is the first text column with distinct values (None: use the row
    number)."""
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    labels = [c for c in df.columns if c not in numeric and df[c].astype(str).is_unique]
    if not numeric:
        return None
    return (labels[0] if labels else None), numeric[0]
