"""Nearest-neighbour search over descriptors behind one small interface (``Index.search``):
exact matrix products (the reference) and Annoy (approximate, memory-mapped)."""
from core.index.annoy import AnnoyIndex, choose_search_k, recall_at
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

__all__ = ["ANNOY_METRIC", "METRICS", "AnnoyIndex", "ExactIndex", "Index", "IndexMismatch", "Result", "SEARCH_METHODS", "SearchSettings",
           "choose_search_k", "full_ranking", "higher_is_better", "recall_at", "results_of"]
