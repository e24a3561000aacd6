"""k-NN classification by the vote of a ranking's nearest neighbours, and the per-class report
of a class-folder run (per-class P@k and top-k accuracy, confusion matrix)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

KNN_K = 10


def knn_vote(neighbour_labels: Sequence[str]) -> str | None:
    """Majority class of the neighbours, nearest first; a tie goes to the tied class met first
    (the nearer one). None when there are no neighbours."""
    counts = Counter(neighbour_labels)
    if not counts:
        return None
    best = max(counts.values())
    return next(label for label in neighbour_labels if counts[label] == best)


def knn_predict(ranking: Sequence[int] | np.ndarray, excluded: set[int] | frozenset[int],
                labels: Sequence[str | None], k: int = KNN_K) -> str | None:
    """Vote of the first ``k`` classed images of ``ranking`` that are not ``excluded`` (the
    query itself)."""
    neighbours = []
    for i in ranking:
        if int(i) in excluded or labels[int(i)] is None:
            continue
        neighbours.append(labels[int(i)])
        if len(neighbours) == k:
            break
    return knn_vote(neighbours)


def confusion_matrix(true: Sequence[str], predicted: Sequence[str | None], classes: Sequence[str]) -> np.ndarray:
    """Counts [len(classes), len(classes)]: row = true class, column = predicted class
    (queries with no prediction are not counted)."""
    pos = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(true, predicted):
        if p is not None:
            out[pos[t], pos[p]] += 1
    return out


@dataclass
class ClassReport:
    """Per-class table, kNN confusion matrix and the summary figures of a class-based run."""

    table: pd.DataFrame
    classes: list[str]
    confusion: np.ndarray
    summary: dict


def class_report(per_query: pd.DataFrame, predicted: Sequence[str | None], ks: Sequence[int],
                 knn_k: int = KNN_K) -> ClassReport:
    """Aggregate per-query rows (columns ``group`` = class, ``ap``, ``p@k``, ``top{k}``) and
    the kNN predictions into one row per class; macro means weigh every class equally."""
    df = per_query.assign(predicted=list(predicted))
    df["correct"] = df["predicted"] == df["group"]
    classes = sorted(df["group"].unique())
    confusion = confusion_matrix(df["group"].tolist(), df["predicted"].tolist(), classes)
    metrics = ["ap", *(f"p@{k}" for k in ks), *(f"top{k}" for k in ks)]
    table = df.groupby("group")[metrics].mean().rename(columns={"ap": "map"})
    table.insert(0, "n_queries", df.groupby("group").size())
    table["knn_accuracy"] = df.groupby("group")["correct"].mean()
    predicted_count = confusion.sum(axis=0)
    table["knn_precision"] = np.where(predicted_count > 0, np.diag(confusion) / np.maximum(predicted_count, 1), 0.0)
    table = table.reset_index().rename(columns={"group": "class"})
    summary = {"n_classes": len(classes), "knn_k": knn_k, "knn_accuracy": float(df["correct"].mean()),
               **{f"class_mean_p@{k}": float(table[f"p@{k}"].mean()) for k in ks},
               "class_mean_map": float(table["map"].mean())}
    return ClassReport(table, classes, confusion, summary)


def confusion_long(classes: Sequence[str], confusion: np.ndarray) -> pd.DataFrame:
    """Long form (true, predicted, count, share of the true class) for a heatmap."""
    totals = confusion.sum(axis=1, keepdims=True)
    share = confusion / np.maximum(totals, 1)
    return pd.DataFrame([{"true": t, "predicted": p, "count": int(confusion[i, j]), "share": float(share[i, j])}
                         for i, t in enumerate(classes) for j, p in enumerate(classes)])
