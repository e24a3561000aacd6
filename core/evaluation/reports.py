"""What a protocol adds to an evaluation run beyond the common metrics of ``core.evaluation.pipeline``.

- every protocol: the ground truth's counts (``dataset_info`` in ``summary.json``), and per query
  the protocol name and, for each of its label sets (good/ok/junk, easy/hard/junk), how many of
  the listed images are in the gallery (``<label>_present``);
- revisited Oxford/Paris: mP@k as revisitop computes it (``mp@k`` per query and in the summary);
- class folders: the predicted class of the k-NN vote per query, the summary ``classes``
  (k-NN accuracy, per-class means, chance level) and two more run files, ``classes.csv`` (one
  row per class) and ``confusion.json`` (``classes``, ``matrix`` [true][predicted], ``k``).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.datasets import GroundTruth, Resolution, stem_of
from core.datasets.classes import PROTOCOL as CLASS_PROTOCOL
from core.datasets.classes import class_of
from core.datasets.revisited import REVISITED
from core.evaluation.knn import KNN_K, class_report, confusion_long, knn_predict
from core.evaluation.metrics import relevance_vector, revisitop_precision_at_k


@dataclass
class ProtocolReport:
    """Extra per-query columns (rows in resolution order), summary keys and run files
    (name → DataFrame written as CSV, or JSON-able dict)."""

    columns: pd.DataFrame
    summary: dict
    files: dict[str, pd.DataFrame | dict] = field(default_factory=dict)


def chance_precision(resolution: Resolution, n_images: int) -> float:
    """Expected precision at any rank of a uniformly random ranking, averaged over queries:
    relevant / (images - junk) of each query."""
    shares = [len(rq.positives) / max(1, n_images - len(rq.junk)) for rq in resolution.queries]
    return float(np.mean(shares)) if shares else 0.0


def protocol_report(gt: GroundTruth, resolution: Resolution, ranking: np.ndarray, ids: list[str],
                    per_query: pd.DataFrame, ks: Sequence[int]) -> ProtocolReport:
    """Everything ``gt``'s protocol adds to a run whose rankings and common per-query rows are
    given (``per_query`` rows in resolution order)."""
    stems = {stem_of(i) for i in ids}
    columns = pd.DataFrame([{f"{label}_present": len(names & stems) for label, names in rq.query.labels.items()}
                            for rq in resolution.queries], index=per_query.index)
    columns.insert(0, "protocol", gt.protocol)
    summary: dict = {"dataset_info": gt.info}
    files: dict[str, pd.DataFrame | dict] = {}
    if gt.dataset in REVISITED:
        hits = [relevance_vector(r, rq.positives, rq.junk) for r, rq in zip(ranking, resolution.queries)]
        for k in ks:
            columns[f"mp@{k}"] = [revisitop_precision_at_k(h, k) for h in hits]
            summary[f"mp@{k}"] = float(columns[f"mp@{k}"].mean())
    if gt.protocol == CLASS_PROTOCOL:
        labels = [class_of(i) for i in ids]
        predicted = [knn_predict(r, rq.junk, labels, KNN_K) for r, rq in zip(ranking, resolution.queries)]
        report = class_report(per_query, predicted, ks, KNN_K)
        columns["predicted"] = predicted
        summary["classes"] = {**report.summary, "chance_precision": chance_precision(resolution, len(ids))}
        summary["knn_accuracy"] = report.summary["knn_accuracy"]
        files["classes.csv"] = report.table
        files["confusion.json"] = {"classes": report.classes, "matrix": report.confusion.tolist(), "k": KNN_K}
    return ProtocolReport(columns, summary, files)


def class_results(run_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(per-class table, confusion matrix in long form) of a class-folder run, for the metrics
    page; None for runs of other protocols."""
    run_dir = Path(run_dir)
    if not (run_dir / "confusion.json").exists():
        return None
    confusion = json.loads((run_dir / "confusion.json").read_text())
    return (pd.read_csv(run_dir / "classes.csv"),
            confusion_long(confusion["classes"], np.asarray(confusion["matrix"], dtype=np.int64)))
