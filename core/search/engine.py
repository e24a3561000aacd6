"""Interactive search over one gallery: what the app and ``python -m core search`` call.

``SearchEngine`` holds the network, the cached descriptors, their indexes and the re-rankers'
per-gallery parts, built once and shared by every caller (the app keeps one engine per gallery
and embedding for all its sessions). ``search`` is the one call: embed the query (cropped by its
box), rank it through the ``Retriever`` (the index, then the re-ranker: the same path as the
evaluation's) and return the top ``k`` with both full rankings and the time of each stage.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

from core.cache.descriptors import Embeddings, load_embeddings
from core.cache.galleries import Gallery
from core.config import EmbeddingConfig
from core.embed.embedder import Embedder
from core.images import Box, ImageSource, load_image
from core.index import RANK_DEPTH, Index, Result, SearchSettings, open_index, results_of
from core.rerank import PreparedStore, RegionQuery, Reranker, create_reranker
from core.search.retriever import Ranked, Retriever, StageTimes


@dataclass(frozen=True)
class Results:
    """One query's answer. ``items`` are the top ``k`` of ``ranking``; their scores are the
    query's cosine similarity (or, for a plain Euclidean search, distance) with each image; after
    re-ranking they stay the cosine, in the re-ranked order, and the method's own scores are in
    ``evidence`` (image id → method score and best window in original pixels, or None).
    ``ranking`` and ``plain`` are the re-ranked and plain rankings (gallery rows): full when the
    search asked for them (``depth`` None), on which a query's figures (AP, missed positives) are
    computed exactly as a run computes them; otherwise possibly only their heads."""

    items: list[Result]
    query_vector: np.ndarray
    ranking: np.ndarray
    plain: np.ndarray
    times: StageTimes
    evidence: dict[str, tuple[float, Box | None]] = field(default_factory=dict)
    rerank_note: str = ""           # why the re-ranking is not the one asked for (too large a gallery)
    reranker: Reranker | None = None        # the re-ranker as it ran (fitted to the gallery); None: plain

    @property
    def rerank_label(self) -> str:
        """The re-ranking that ran, as a run names it (e.g. ``aqe30a3``); "" for the plain ranking."""
        return self.reranker.label() if self.reranker else ""

    def plain_rank(self, rows: Sequence[int]) -> dict[int, int]:
        """Gallery row → its 1-based rank in the plain ranking (before re-ranking), for those of
        ``rows`` it holds (all of them when it is full; a head-only re-ranker never moves an
        image from beyond the head)."""
        found = {int(r): np.flatnonzero(self.plain == r) for r in rows}
        return {r: int(where[0]) + 1 for r, where in found.items() if len(where)}


class SearchEngine:
    """Network + descriptors + indexes + prepared re-rankers of one gallery under one config."""

    def __init__(self, gallery: Gallery, config: EmbeddingConfig, embedder: Embedder | None = None,
                 embeddings: Embeddings | None = None) -> None:
        self.gallery, self.config = gallery, config
        self.embeddings = embeddings or load_embeddings(gallery.name, config)
        self.embedder = embedder or Embedder(config.base())
        self.prepared = PreparedStore()
        self._indexes: dict[SearchSettings, Index] = {}
        self._lock = threading.Lock()      # one engine serves every app session: build indexes once

    def index(self, settings: SearchSettings) -> Index:
        """The index ``settings`` name ("auto": the default for this gallery's size), opened once
        per engine (a saved index is built first when absent or stale)."""
        s = settings.resolved(len(self.embeddings.ids), self.embeddings.dim)
        with self._lock:
            if s not in self._indexes:
                self._indexes[s] = open_index(self.embeddings, s)
            return self._indexes[s]

    def retriever(self, settings: SearchSettings, reranker: Reranker | None = None) -> Retriever:
        return Retriever(self.embeddings, self.index(settings), self.gallery, self.embedder, reranker, self.prepared)

    def embed(self, source: ImageSource, box: Box | Sequence[float] | None = None) -> np.ndarray:
        """Descriptor of a query (a path, a file-like object or a decoded image), cropped by
        ``box`` in its original pixels, whitened like the gallery."""
        return self.embeddings.whiten(self.embedder.embed_image(source, box))

    def search(self, source: ImageSource, box: Box | Sequence[float] | None = None, k: int = 10,
               settings: SearchSettings | None = None, reranker: Reranker | None = None,
               depth: int | None = RANK_DEPTH) -> Results:
        """Embed the query (cropped by ``box`` in original pixels), rank it through the index
        and ``reranker`` (None or "none": the plain ranking) and return the top ``k``. The query
        image is decoded once for every stage that reads it. ``depth``: how much of the rankings
        to build (``Retriever.rank``; at least k); None for full rankings (a query with ground
        truth, scored over the whole gallery)."""
        box = box if box is None or isinstance(box, Box) else Box.of(box)
        reranker = reranker or create_reranker("none")
        if reranker.needs_image and not isinstance(source, Image.Image):
            source = load_image(source)                   # the embedder and the re-ranker share it
        start = time.perf_counter()
        vec = self.embed(source, box)
        embed_ms = (time.perf_counter() - start) * 1000
        return self._ranked(vec, RegionQuery(source, box), k, settings, reranker, depth, embed_ms)

    def search_stored(self, image_id: str, k: int = 10, settings: SearchSettings | None = None,
                      reranker: Reranker | None = None, depth: int | None = RANK_DEPTH) -> Results:
        """Search with the stored descriptor of gallery image ``image_id`` (its whole image) as the
        query, as ``search`` does with an embedded one: nothing is embedded, so its file need not
        be on this machine (an imported gallery's). A re-ranker that reads the query's pixels is
        not applied (the plain ranking, with a note that says why). ``KeyError`` for an id the
        gallery does not hold."""
        row = self.embeddings.row_of(image_id)
        if row is None:
            raise KeyError(f"gallery {self.gallery.name} has no image {image_id!r}")
        vec = np.array(self.embeddings.vectors[row], dtype=np.float32)
        asked = reranker or create_reranker("none")
        runs = create_reranker("none") if asked.needs_image else asked
        results = self._ranked(vec, RegionQuery(None), k, settings, runs, depth, 0.0)
        if runs is asked:
            return results
        return replace(results, rerank_note=f"{asked.title} reads the query's pixels, which a stored descriptor "
                                            "does not have: the plain ranking is shown")

    def _ranked(self, vec: np.ndarray, region: RegionQuery, k: int, settings: SearchSettings | None,
                reranker: Reranker, depth: int | None, embed_ms: float) -> Results:
        """The top ``k`` of query descriptor ``vec`` through the index and ``reranker``."""
        settings = settings or SearchSettings()
        depth = None if depth is None else max(depth, k)
        ranked = self.retriever(settings, reranker).rank(vec, [region], depth=depth)
        return self._results(ranked, vec, k, settings.metric, embed_ms)

    def _results(self, ranked: Ranked, vec: np.ndarray, k: int, metric: str, embed_ms: float) -> Results:
        """The top ``k`` of a ranked query, scored by the metric (cosine after re-ranking)."""
        order = ranked.ranking[0, :k]
        rows = self.embeddings.vectors[order]
        q = np.atleast_2d(vec)[0]
        scores = rows @ q if metric == "cosine" or ranked.reranked else np.linalg.norm(rows - q, axis=1)
        ids = self.embeddings.ids
        evidence = {ids[i]: v for i, v in ranked.evidence[0].items()}
        times = StageTimes(embed_ms, ranked.times.search_ms, ranked.times.rerank_ms, ranked.times.prepare_seconds)
        return Results(results_of(order, scores, ids), vec, ranked.ranking[0], ranked.plain[0], times, evidence,
                       ranked.note, ranked.reranker if ranked.reranked else None)
