"""Judging a result list against the ground truth of one query: the label of each result
(good / ok / junk / bad) and the query's scores, as the app shows them next to a search.

Labels follow the Oxford/Paris convention: good and ok are relevant, junk is ignored by the
metrics, every other image is bad. Images are matched to label lists by file stem, as in
``core.datasets.types.resolve``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.datasets import Query, stem_of
from core.evaluation.metrics import score_query

LABEL_COLOURS: dict[str, str] = {"good": "#1a9850", "ok": "#91cf60", "junk": "#fdae61", "bad": "#d73027"}


def label_of(query: Query, image_id: str) -> str:
    """good when listed as good, ok for any other positive (Paris lists all positives as ok),
    junk when listed as junk, else bad."""
    stem = stem_of(image_id)
    if stem in query.labels.get("good", frozenset()):
        return "good"
    if stem in query.positives:
        return "ok"
    return "junk" if stem in query.junk else "bad"


def label_results(query: Query, image_ids: Sequence[str]) -> list[str]:
    return [label_of(query, i) for i in image_ids]


@dataclass(frozen=True)
class QueryReport:
    """Scores of one query over a full ranking; ``found``/``missed`` count the relevant gallery
    images inside / outside the ``k`` results shown."""

    ap: float
    ap_interp11: float
    precision_at_k: float
    k: int
    n_relevant: int
    found: int
    missed: int
    first_relevant: int | None


def complete_ranking(top: Sequence[int], tail: Sequence[int]) -> np.ndarray:
    """The results shown (``top``, e.g. Annoy's top k) followed by the other images in the order
    of ``tail`` (a full ranking, e.g. exact search), so that AP covers the whole gallery."""
    top = np.asarray(top, dtype=np.int64)
    tail = np.asarray(tail, dtype=np.int64)
    return np.concatenate([top, tail[~np.isin(tail, top)]])


def query_report(query: Query, shown: Sequence[int], ranking: Sequence[int], gallery_ids: Sequence[str],
           k: int) -> QueryReport:
    """Score the ``k`` results ``shown`` (gallery indices, best first) of ``query``, followed by
    the rest of the full ``ranking``; only the relevant images present in the gallery count, junk
    is removed before measuring."""
    labels = label_results(query, gallery_ids)
    positives = {i for i, lab in enumerate(labels) if lab in ("good", "ok")}
    junk = {i for i, lab in enumerate(labels) if lab == "junk"}
    full = complete_ranking(shown, ranking)
    s = score_query(full, positives, junk, ks=(k,))
    found = len(positives.intersection(int(i) for i in full[:k]))
    return QueryReport(ap=s.ap, ap_interp11=s.ap_interp11, precision_at_k=s.precision_at[k], k=k,
                       n_relevant=len(positives), found=found, missed=len(positives) - found,
                       first_relevant=s.first_relevant)
