"""The re-ranking that the CLI and the app apply unless told otherwise: one constant, read by both,
and the rule that keeps any re-ranking within the preparation bound at every gallery size.

Chosen on the validation protocol (``python -m core validate``; README "Re-ranking"), never on
the 12 official Paris queries: the method with the largest mean gain among those that gained on
every validation set (Paris whole and cropped, Corel-1k, Fashion-MNIST) at every gallery size
swept, its neighbour counts set by ``core.rerank.rules`` from the gallery size. k-reciprocal
re-ranking reads only the head of the first ranking and builds its graph through the same
index, so it works with Annoy as with exact search.

Its per-gallery preparation grows with the gallery: above ``rules.KRECIPROCAL_MAX_IMAGES`` it would
take more than ``rules.PREPARE_BOUND_SECONDS`` or ``rules.PREPARE_BOUND_BYTES`` here, and ``fitting``
replaces it by ``FALLBACK_RERANK``: alpha-QE, the best validated method with nothing to prepare
(one more index search per query), with a one-line note the CLI prints and the app shows.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.rerank import rules
from core.rerank.base import Reranker, create_reranker

DEFAULT_RERANK = "kreciprocal"
FALLBACK_RERANK = "alpha_qe"


@dataclass(frozen=True)
class Fitted:
    """The re-ranker that runs on a gallery, and why it is not the one asked for (empty: it is)."""

    reranker: Reranker
    note: str = ""


def fitting(reranker: Reranker, n_images: int) -> Fitted:
    """``reranker`` when its preparation fits the bound at ``n_images``, else the fallback and why."""
    limit = reranker.max_images
    if limit is None or n_images <= limit:
        return Fitted(reranker)
    fallback = create_reranker(FALLBACK_RERANK)
    return Fitted(fallback, f"{reranker.title} prepares the whole gallery: above {limit:,} images it would take more "
                            f"than {rules.PREPARE_BOUND_SECONDS / 60:g} min or {rules.PREPARE_BOUND_BYTES / 1e9:g} GB "
                            f"here ({n_images:,} images), so re-ranked by {fallback.title} (nothing to prepare)")
