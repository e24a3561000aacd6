"""Which index answers a gallery's queries by default, read off the Pareto front (latency,
recall@10) of ``benchmarks/bench_search.py``.

Exact search is exact and needs no index build, so it stays the default while one query takes
at most ``EXACT_BUDGET_MS``, a time no user notices beside the query's embedding (about 100 ms);
above that the default is the fastest backend at recall@10 ≥ 0.95, HNSW (hnswlib) at every size
measured. Exact search costs n × dim multiply-adds per query, so the crossover is a product:
``EXACT_UP_TO_MACS``. The benchmark applies ``default_at_size`` to its rows at every size it
measures and writes the result (``default_by_size`` in ``artifacts/bench/search.json``).

HNSW keeps every vector and its links in the process's memory (hnswlib cannot memory-map its
file): about 4·dim + 8·M + 12 bytes an item, 5.3 kB at 1280-d. Past ``INDEX_MEMORY_BYTES`` the
default is a compressed index whose candidates are re-scored from the memory-mapped vectors:
IVF-SQ (``core.index.ivfsq``: ``SQ_BITS`` bits a dimension, 640 bytes an item at 1280-d) while its
codes fit, IVF-PQ (``core.index.ivfpq``: 136 bytes an item) beyond. Scalar codes keep the ranking
of photos unlike the bulk of the gallery (a benchmark's images among a million distractors)
where PQ's learned codebooks lose it (RParis6k +1M, ``core.index.ivfsq``).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

RECALL_TARGET = 0.95
EXACT_BUDGET_MS = 1.0
# Measured by benchmarks/bench_search.py and a one-thread BLAS check on 2 cores at load average
# 17-18 (artifacts/bench/search-crossover.json): one query against real 1280-d descriptors took
# 0.08 ms at 1,000 images, 0.14 ms at 2,000, 0.6 ms at 5,000 and 1.4 ms at 10,000 (exact), while
# HNSW answered in 0.05-0.10 ms at k = 100 and 0.02-0.03 ms at k = 10 from 1,000 to 10,000 images.
# 5,000 x 1280 multiply-adds is the largest product measured within the 1 ms budget.
EXACT_UP_TO_MACS = 5_000 * 1280
# The index's share of a search process's memory: the app's server stays below 2 GB resident, of
# which the interpreter, PyTorch and the network take about 1 GB before any index
# (rss_before_mb 998 in artifacts/bench/scale_index.json).
INDEX_MEMORY_BYTES = 1_000_000_000
HNSW_M = 16
SQ_BITS = 4


def hnsw_bytes(n_items: int, dim: int, m: int = HNSW_M) -> int:
    """hnswlib's memory for ``n_items`` of ``dim``: the float32 vector, 2·M level-0 links of 4
    bytes, a link count and an 8-byte label per item (upper levels add about 1/M of that)."""
    return n_items * (4 * dim + 8 * m + 12)


@dataclass(frozen=True)
class Measured:
    """One point of the benchmark: a backend at some setting, its latency and recall."""

    backend: str
    p50_ms: float
    recall_at_10: float


def fastest_at_target(points: Iterable[Measured], target: float = RECALL_TARGET) -> Measured | None:
    """The lowest-latency point with recall@10 ≥ ``target`` (exact search has recall 1); None
    when no point reaches it."""
    good = [p for p in points if p.recall_at_10 >= target]
    return min(good, key=lambda p: (p.p50_ms, -p.recall_at_10)) if good else None


def default_at_size(points: Iterable[Measured], budget_ms: float = EXACT_BUDGET_MS) -> Measured | None:
    """The default among measured points of one gallery size: exact search while its p50 is
    within ``budget_ms``, else the fastest point at the recall target."""
    points = list(points)
    exact = [p for p in points if p.backend == "exact" and p.p50_ms <= budget_ms]
    return exact[0] if exact else fastest_at_target(points)


def sq_bytes(n_items: int, dim: int, bits: int = SQ_BITS) -> int:
    """IVF-SQ's memory: ``bits`` a dimension and an 8-byte id per item."""
    return n_items * (dim * bits // 8 + 8)


def default_method(n_items: int, dim: int) -> str:
    """The search method "auto" stands for at a gallery of ``n_items`` descriptors of ``dim``:
    exact while a query is within budget, HNSW while it fits the index's memory, then IVF-SQ
    while its codes fit, IVF-PQ above."""
    if n_items * dim <= EXACT_UP_TO_MACS:
        return "exact"
    if hnsw_bytes(n_items, dim) <= INDEX_MEMORY_BYTES:
        return "hnsw"
    return "ivfsq" if sq_bytes(n_items, dim) <= INDEX_MEMORY_BYTES else "ivfpq"


def resolve_method(method: str, n_items: int, dim: int) -> str:
    """The backend ``method`` stands for ("auto": the default at this gallery size)."""
    return default_method(n_items, dim) if method == "auto" else method


def auto_description() -> str:
    """What "auto" means, for help texts."""
    largest = INDEX_MEMORY_BYTES // hnsw_bytes(1, 1280)
    largest_sq = INDEX_MEMORY_BYTES // sq_bytes(1, 1280)
    return (f"exact search while a query costs at most {EXACT_UP_TO_MACS // 1280:,} x 1280 multiply-adds "
            f"(about {EXACT_BUDGET_MS:g} ms), HNSW above: the fastest at recall@10 >= {RECALL_TARGET}, while it "
            f"fits {INDEX_MEMORY_BYTES / 1e9:g} GB ({largest:,} x 1280), then compressed indexes re-scored from the "
            f"stored vectors: IVF-SQ while its {SQ_BITS}-bit codes fit ({largest_sq:,} x 1280), IVF-PQ beyond")
