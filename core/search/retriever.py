"""The one way from query descriptors to rankings: search the index, then re-rank.

``Retriever.rank`` is what the app's search (through ``SearchEngine``) and the evaluation both
call, so the ranking a page shows for a query is the ranking a run scores for it: the plain
ranking of the index and the re-ranked one, both full (every gallery image once), the
re-ranker's evidence, and the time of each stage.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from core.cache.descriptors import Embeddings
from core.cache.galleries import Gallery
from core.embed.embedder import Embedder
from core.index import Index
from core.rerank import Evidence, PreparedStore, RegionQuery, RerankContext, Reranker, apply_reranker, create_reranker


@dataclass(frozen=True)
class StageTimes:
    """Where the time of a search went: embedding the query (set by the caller that embeds),
    the index's search, the re-ranking per query (without the once-per-gallery preparation,
    which is ``prepare_seconds``: paid by the first search that needs it)."""

    embed_ms: float = 0.0
    search_ms: float = 0.0
    rerank_ms: float = 0.0
    prepare_seconds: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.embed_ms + self.search_ms + self.rerank_ms


@dataclass(frozen=True)
class Ranked:
    """Full rankings [q, n] of a batch of queries: ``plain`` as the index ranks them,
    ``ranking`` after the re-ranker (the same array when there is none), the re-ranker as it
    ran (its gallery-size rules applied), its evidence per query, and the stage times (search
    and re-ranking per query)."""

    plain: np.ndarray
    ranking: np.ndarray
    reranker: Reranker
    evidence: list[Evidence] = field(default_factory=list)
    times: StageTimes = field(default_factory=StageTimes)

    @property
    def reranked(self) -> bool:
        return self.reranker.name != "none"


class Retriever:
    """A gallery's descriptors, one index over them and one re-ranker (None: the plain ranking).
    Per-gallery parts of re-rankers live in ``prepared``: pass a long-lived store (the search
    engine's) so that they are built once for every caller."""

    def __init__(self, embeddings: Embeddings, index: Index, gallery: Gallery, embedder: Embedder,
                 reranker: Reranker | None = None, prepared: PreparedStore | None = None) -> None:
        self.embeddings, self.index, self.gallery, self.embedder = embeddings, index, gallery, embedder
        self.reranker = (reranker or create_reranker("none")).for_gallery(len(embeddings.ids))
        self.prepared = prepared if prepared is not None else PreparedStore()

    def context(self, progress: bool = False, log: Callable[[str], None] | None = None) -> RerankContext:
        return RerankContext(self.embeddings, self.gallery, self.embedder, progress, log or (lambda _: None), self.index)

    def rank(self, queries: np.ndarray, regions: Sequence[RegionQuery], progress: bool = False,
             log: Callable[[str], None] | None = None) -> Ranked:
        """Plain and re-ranked full rankings of ``queries`` [q, d] (one ``RegionQuery`` each: the
        image and box the region-aware re-rankers read)."""
        queries = np.atleast_2d(queries).astype(np.float32)
        start = time.perf_counter()
        plain = self.index.rank_all(queries)
        search_ms = (time.perf_counter() - start) * 1000 / max(len(queries), 1)
        if self.reranker.name == "none":
            return Ranked(plain, plain, self.reranker, [{} for _ in regions], StageTimes(search_ms=search_ms))
        out = apply_reranker(self.reranker, plain, queries, regions, self.context(progress, log), self.prepared)
        times = StageTimes(search_ms=search_ms, rerank_ms=out.extra_ms_per_query, prepare_seconds=out.offline_seconds)
        return Ranked(plain, out.ranking, self.reranker, out.evidence, times)
