"""What the app lets a person take away: the results shown (rank, image, score, label) and a
failure case (each relevant image with its rank, the negatives above them), as CSV or JSON.

The JSON form carries an ``about`` object (gallery, embedding, query, box, ...) so that an
exported file still says what it was the result of.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from core.app.failures import QueryFailure
from core.index import Result

RESULT_COLUMNS = ("rank", "image", "score", "score_kind", "label")


def results_frame(items: Sequence[Result], labels: Sequence[str | None], score_kind: str) -> pd.DataFrame:
    """One row per shown result, best first; ``score_kind`` says what the number is (cosine
    similarity, Euclidean distance, ...); label is empty without ground truth."""
    return pd.DataFrame([{"rank": r.rank, "image": r.image_id, "score": r.score, "score_kind": score_kind,
                          "label": label or ""} for r, label in zip(items, labels)], columns=list(RESULT_COLUMNS))


def failure_frame(failure: QueryFailure) -> pd.DataFrame:
    """Every relevant image of the query (found or missed at ``k``) and the negatives ranked above
    the last one, by rank."""
    rows = [{"role": "found" if p.rank <= failure.k else "missed", "image": p.image_id, "rank": p.rank,
             "label": p.label, "negatives_above": p.negatives_above} for p in failure.positives]
    rows += [{"role": "negative above a relevant image", "image": p.image_id, "rank": p.rank, "label": p.label,
              "negatives_above": p.negatives_above} for p in failure.intruders]
    return pd.DataFrame(rows, columns=["role", "image", "rank", "label", "negatives_above"]).sort_values(
        "rank", kind="stable").reset_index(drop=True)


def to_json(frame: pd.DataFrame, about: Mapping[str, Any]) -> str:
    """``{"about": ..., "rows": [...]}`` with plain JSON numbers."""
    return json.dumps({"about": dict(about), "rows": json.loads(frame.to_json(orient="records"))}, indent=1)


def score_kind(metric: str, rerank: str = "") -> str:
    """What a shown score is: cosine similarity (higher is closer) or Euclidean distance (lower
    is closer); after re-ranking the order is the re-ranker's and the score stays the cosine."""
    if rerank:
        return f"cosine similarity (order: re-ranking {rerank})"
    return "cosine similarity" if metric == "cosine" else "Euclidean distance"
