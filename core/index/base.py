"""What every index backend shares: metrics and their names in each library, the result of a
search, and the error raised for an index that belongs to other descriptors.

Scores are cosine similarity (metric "cosine", higher is better) or Euclidean distance
(metric "euclidean", lower is better), never a library's raw distance.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from core.config import AnnoyParams
from core.index.choice import SEARCH_METHODS, resolve_method

METRICS = ("cosine", "euclidean")
ANNOY_METRIC = {"cosine": "angular", "euclidean": "euclidean"}
METRIC_OF_ANNOY = {v: k for k, v in ANNOY_METRIC.items()}


class IndexMismatch(RuntimeError):
    """An index that cannot serve the descriptors asked for. ``stale`` is True when rebuilding it
    from the cached descriptors is safe: it is missing, damaged (truncated, altered, without its
    description), or only the gallery's images changed since it was built (same config and
    dimension); False for an index of another embedding, which is refused."""

    def __init__(self, message: str, stale: bool = False) -> None:
        super().__init__(message)
        self.stale = stale


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


def higher_is_better(metric: str) -> bool:
    """Cosine similarities rank high first, Euclidean distances low first."""
    return check_metric(metric) == "cosine"


@dataclass(frozen=True)
class Result:
    """One ranked gallery image."""

    rank: int              # 1-based
    index: int             # row in the gallery's descriptors
    image_id: str
    score: float           # cosine similarity (higher is better) or Euclidean distance (lower is better)


def results_of(indices: np.ndarray, scores: np.ndarray, ids: list[str]) -> list[Result]:
    """``Result`` list from one row of indices and scores (rows padded with -1 are cut)."""
    return [Result(r + 1, int(i), ids[int(i)], float(s)) for r, (i, s) in enumerate(zip(indices, scores)) if i >= 0]


def full_ranking(top: np.ndarray, n: int) -> np.ndarray:
    """Full rankings [q, n] from approximate top lists [q, m] (padded with -1): each list first,
    in its order, then the images it missed in gallery order, as an unranked tail (never
    re-sorted by exact scores, which would hide what the index missed)."""
    out = np.empty((len(top), n), np.int32)
    for row, got in enumerate(top):
        got = got[got >= 0]
        out[row] = np.concatenate([got, np.setdiff1d(np.arange(n), got)])
    return out


@dataclass(frozen=True)
class SearchSettings:
    """How rankings are produced: exact search (float32, or float16 storage: "exact16"), Annoy,
    HNSW, or "auto" (the default for the gallery's size, ``core.index.choice``), with which
    metric (Annoy's own metric name follows from it)."""

    method: str = "exact"                 # auto | exact | exact16 | annoy | hnsw
    metric: str = "cosine"                # cosine | euclidean
    annoy: AnnoyParams = field(default_factory=AnnoyParams)

    def __post_init__(self) -> None:
        if self.method not in SEARCH_METHODS:
            raise ValueError(f"search method must be one of {SEARCH_METHODS}, got {self.method!r}")
        check_metric(self.metric)
        if self.annoy.metric != ANNOY_METRIC[self.metric]:
            object.__setattr__(self, "annoy", AnnoyParams(ANNOY_METRIC[self.metric], self.annoy.n_trees,
                                                          self.annoy.search_k))


def resolved_settings(settings: SearchSettings, n_items: int, dim: int) -> SearchSettings:
    """``settings`` with "auto" replaced by the method it stands for at this gallery size."""
    method = resolve_method(settings.method, n_items, dim)
    return settings if method == settings.method else SearchSettings(method, settings.metric, settings.annoy)


class Index(Protocol):
    """The one call every backend answers: top-``k`` [q, k] indices and scores, best first."""

    metric: str

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...
