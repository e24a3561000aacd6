"""What every index backend shares: the ``Index`` interface, metrics, the result of a search,
the typed figures an index gives a run, and the error raised for an index that belongs to
other descriptors.

Scores are cosine similarity (metric "cosine", higher is better) or Euclidean distance
(metric "euclidean", lower is better), never a library's raw distance.

An index says what it can do by class properties (``exact``, ``saved``, ``Params.effort``),
never by its type: callers do not ``isinstance`` a backend.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from core.cache.descriptors import Embeddings
from core.cache.store import gather

METRICS = ("cosine", "euclidean")
# How deep an approximate index is asked for one query's ranking. Asking a graph index for all n
# neighbours costs a walk of the whole graph: infeasible at 1M. Below this many images a ranking is the index's full list, exactly as before the bound (every evaluation on
# galleries of up to 1,000 images, the 250 shipped Paris images included, is unchanged); above it,
# the index's top RANK_DEPTH, then the rest in gallery order as an unranked tail (``full_ranking``),
# so AP counts a positive the index ranks below RANK_DEPTH as one it missed. The default
# k-reciprocal re-ranking reads the same head (``rules.KRECIPROCAL_HEAD`` = 1000). A search that
# shows its top k asks for the head only (``Index.rank_head``): building the [n] tail costs O(n) a
# query (a mask, a few ms at 1M; the set difference it replaced took 0.86-1.0 s of CPU).
RANK_DEPTH = 1000


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


def rescored(vectors: np.ndarray, queries: np.ndarray, candidates: list[np.ndarray], k: int,
             metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` [q, k] indices and exact scores of each query among its candidate rows (padded
    with -1 / NaN), read from the stored ``vectors`` (``store.gather``: only those rows): how an
    index whose own distances are approximate (compressed codes, another engine) gives the
    metric's scores."""
    out_i = np.full((len(queries), k), -1, np.int64)
    out_s = np.full((len(queries), k), np.nan, np.float32)
    for row, (query, rows) in enumerate(zip(queries, candidates)):
        stored = gather(vectors, rows)
        diff = stored - query if metric == "euclidean" else None
        exact = stored @ query if diff is None else np.sqrt(np.einsum("kd,kd->k", diff, diff))
        order = np.argsort(-exact if higher_is_better(metric) else exact, kind="stable")[:k]
        out_i[row, :len(order)], out_s[row, :len(order)] = rows[order], exact[order]
    return out_i, out_s


def full_ranking(top: np.ndarray, n: int) -> np.ndarray:
    """Full rankings [q, n] from approximate top lists [q, m] (padded with -1): each list first,
    in its order, then the images it missed in gallery order, as an unranked tail (never
    re-sorted by exact scores, which would hide what the index missed)."""
    out = np.empty((len(top), n), np.int32)
    missed = np.empty(n, bool)
    for row, got in enumerate(top):
        got = got[got >= 0]
        missed[:] = True
        missed[got] = False
        out[row, :len(got)] = got
        out[row, len(got):] = np.flatnonzero(missed)
    return out


@dataclass(frozen=True)
class IndexParams:
    """Base of every backend's parameters. ``effort`` names the field that sets how hard a
    search works (None: the backend has none); that field left None means "the smallest effort
    measured at build time to reach the recall target". The other fields name the index (they
    are in its file name and in a run's ``search`` record)."""

    effort: ClassVar[str | None] = None
    minimums: ClassVar[dict[str, int]] = {}        # the smallest value each field accepts

    def __post_init__(self) -> None:
        low = [f"{k} >= {v}" for k, v in self.minimums.items() if getattr(self, k) is not None and getattr(self, k) < v]
        if low:
            raise ValueError(f"{type(self).__name__} needs {', '.join(low)}")

    def with_effort(self, value: int | None) -> IndexParams:
        """These parameters with the search effort set (unchanged when the backend has none)."""
        if self.effort is None:
            return self
        return type(self)(**{**asdict(self), self.effort: value})

    def effort_value(self) -> int | None:
        return getattr(self, self.effort) if self.effort else None

    def build_fields(self) -> dict[str, Any]:
        """The fields that name the index (all but the search effort)."""
        return {k: v for k, v in asdict(self).items() if k != self.effort}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> IndexParams:
        """The parameters found among a record's keys (a run's ``index``, a saved index's JSON)."""
        return cls(**{f.name: record[f.name] for f in fields(cls) if f.name in record})


@dataclass(frozen=True)
class Trial:
    """One search effort tried while tuning: its measured recall and time per query."""

    effort: int
    recall_at_10: float
    recall_at_100: float
    query_ms: float


@dataclass(frozen=True)
class Tuning:
    """The search effort chosen at build time by measured recall against exact search."""

    effort: int
    recall_at_10: float
    recall_at_100: float
    target_met: bool
    trials: list[Trial] = field(default_factory=list)

    def to_dict(self, effort_name: str) -> dict[str, Any]:
        trials = [{effort_name: t.effort, "recall@10": t.recall_at_10, "recall@100": t.recall_at_100,
                   "query_ms": t.query_ms} for t in self.trials]
        return {effort_name: self.effort, "recall@10": self.recall_at_10, "recall@100": self.recall_at_100,
                "recall_trials": trials, "recall_target_met": self.target_met}

    @classmethod
    def from_dict(cls, data: dict[str, Any], effort_name: str) -> Tuning:
        trials = [Trial(int(t[effort_name]), float(t["recall@10"]), float(t["recall@100"]), float(t.get("query_ms", 0)))
                  for t in data.get("recall_trials", [])]
        return cls(int(data[effort_name]), float(data["recall@10"]), float(data["recall@100"]),
                   bool(data.get("recall_target_met", True)), trials)


@dataclass(frozen=True)
class IndexFigures:
    """What an index tells a run about itself: its backend, metric, parameters (the effort as
    used), build time and, for an approximate index, the recall measured at build time."""

    method: str
    metric: str
    params: IndexParams
    build_seconds: float | None = None
    tuning: Tuning | None = None

    def to_dict(self) -> dict[str, Any]:
        """The keys a run's ``index`` record has always had: method, metric, and for a saved
        index build_seconds, its parameters, recall@10, recall@100, recall_target_met."""
        out: dict[str, Any] = {"method": self.method, "metric": self.metric}
        if self.tuning is None:
            return out
        out.update(build_seconds=self.build_seconds, **asdict(self.params))
        tuned = self.tuning.to_dict(self.params.effort or "effort")
        out.update({k: tuned[k] for k in ("recall@10", "recall@100", "recall_target_met")})
        return out

    def describe(self) -> str:
        """One line, e.g. ``hnsw m 16 ef_construction 100 ef 48: recall@10 0.990``."""
        params = " ".join(f"{k} {v}" for k, v in asdict(self.params).items())
        recall = f": recall@10 {self.tuning.recall_at_10:.3f} recall@100 {self.tuning.recall_at_100:.3f}" if self.tuning else ""
        return f"{self.method} {params}".strip() + recall


class Index(ABC):
    """One gallery's descriptors behind one search interface. A backend is a subclass with its
    own ``Params`` dataclass, registered by name in ``core.index.registry``.

    Capabilities, read by callers instead of the backend's type:
    ``exact`` — scores and rankings are exact (no recall to measure; re-rankers' neighbour lists
    need no other source); ``saved`` — built once and saved beside the descriptors (the ``index``
    command builds it; a load checks it belongs to them)."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    Params: ClassVar[type[IndexParams]] = IndexParams
    exact: ClassVar[bool] = False
    saved: ClassVar[bool] = False
    packages: ClassVar[tuple[str, ...]] = ()          # libraries whose versions a run records
    metric: str

    @classmethod
    @abstractmethod
    def open(cls, emb: Embeddings, metric: str, params: IndexParams) -> Index:
        """The index of these descriptors (a saved one is built first when absent or stale)."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` [q, k] indices and scores, best first (rows padded with -1 and NaN when an
        approximate index finds fewer)."""

    @abstractmethod
    def figures(self) -> IndexFigures: ...

    def rank_all(self, queries: np.ndarray, depth: int = RANK_DEPTH) -> np.ndarray:
        """Full rankings [q, n]: the index's top ``depth`` (its whole list while n ≤ depth),
        then the rest in gallery order as an unranked tail."""
        n = len(self)
        return full_ranking(self.search(queries, min(n, depth))[0], n)

    def rank_head(self, queries: np.ndarray, depth: int = RANK_DEPTH) -> np.ndarray:
        """The first min(depth, n) entries [q, m] of each ranking ``rank_all`` gives, without
        building the [q, n] tail (what a search that shows its top k needs)."""
        n = len(self)
        top = self.search(queries, min(n, depth))[0]
        return top if (top >= 0).all() else full_ranking(top, n)[:, :top.shape[1]]

    def source(self) -> str:
        """Where this index's neighbour lists come from ("exact", or a saved index's file): a
        re-ranker's prepared graph is kept per source."""
        return "exact" if self.exact else self.name
