"""Nearest-neighbour search over descriptors behind one interface (``core.index.base.Index``:
``search``, ``rank_all``, ``figures``), with backends registered by name
(``core.index.registry``: exact in float32 or float16 storage, Annoy, HNSW) and opened by one
call, ``open_index(embeddings, settings)``; ``choice`` picks the default for a gallery's size
from the search benchmark."""
from core.index.base import (
    METRICS,
    Index,
    IndexFigures,
    IndexMismatch,
    IndexParams,
    Result,
    Tuning,
    full_ranking,
    higher_is_better,
    results_of,
)
from core.index.choice import RECALL_TARGET, auto_description
from core.index.exact import ExactIndex
from core.index.registry import (
    ParamFlag,
    SearchSettings,
    backend,
    backend_names,
    open_index,
    param_flags,
    settings_from,
)
from core.index.stored import recall_at

__all__ = ["METRICS", "RECALL_TARGET", "ExactIndex", "Index", "IndexFigures", "IndexMismatch", "IndexParams",
           "ParamFlag", "Result", "SearchSettings", "Tuning", "auto_description", "backend", "backend_names",
           "full_ranking", "higher_is_better", "open_index", "param_flags", "recall_at", "results_of",
           "settings_from"]
