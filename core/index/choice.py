"""Which index answers a gallery's queries by default: the fastest one that reaches the recall
target at the gallery's size, read off the Pareto front of ``benchmarks/bench_search.py``.

Exact search is exact and needs no build, so it is the default while it is the fastest; above
``EXACT_UP_TO`` items HNSW (hnswlib) answers faster at recall@10 ≥ 0.95. The benchmark applies
``fastest_at_target`` to its own rows at every size it measures and writes the result
(``default_by_size`` in ``artifacts/bench/search.json``); ``EXACT_UP_TO`` is the crossover it found.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

SEARCH_METHODS = ("auto", "exact", "exact16", "annoy", "hnsw")
# Crossover: MEASURED_CROSSOVER_NOTE
EXACT_UP_TO = 2_500


@dataclass(frozen=True)
class Measured:
    """One point of the benchmark: a backend at some setting, its latency and recall."""

    backend: str
    p50_ms: float
    recall_at_10: float


def fastest_at_target(points: Iterable[Measured], target: float = 0.95) -> Measured | None:
    """The lowest-latency point with recall@10 ≥ ``target`` (exact search has recall 1); None
    when no point reaches it."""
    good = [p for p in points if p.recall_at_10 >= target]
    return min(good, key=lambda p: (p.p50_ms, -p.recall_at_10)) if good else None


def default_method(n_items: int) -> str:
    """The search method "auto" stands for at a gallery of ``n_items`` descriptors."""
    return "exact" if n_items <= EXACT_UP_TO else "hnsw"


def resolve_method(method: str, n_items: int) -> str:
    if method not in SEARCH_METHODS:
        raise ValueError(f"search method must be one of {SEARCH_METHODS}, got {method!r}")
    return default_method(n_items) if method == "auto" else method
