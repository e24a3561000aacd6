"""Nearest-neighbour search over descriptors behind one small interface (``Index.search``):
exact matrix products (the reference, float32 or float16 storage), Annoy (approximate,
memory-mapped) and HNSW (hnswlib: approximate, loaded once per process); ``choice`` picks the
default for a gallery's size from the search benchmark."""
from core.index.annoy import AnnoyIndex, choose_search_k
from core.index.base import (
    ANNOY_METRIC,
    METRICS,
    SEARCH_METHODS,
    Index,
    IndexMismatch,
    Result,
    SearchSettings,
    full_ranking,
    higher_is_better,
    results_of,
)
from core.index.exact import ExactIndex
from core.index.hnsw import HnswIndex
from core.index.stored import open_stored, recall_at

__all__ = ["ANNOY_METRIC", "METRICS", "SEARCH_METHODS", "AnnoyIndex", "ExactIndex", "HnswIndex", "Index",
           "IndexMismatch", "Result", "SearchSettings", "choose_search_k", "full_ranking", "higher_is_better",
           "open_stored", "recall_at", "results_of"]
