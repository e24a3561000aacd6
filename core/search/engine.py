"""Interactive search over one gallery: what the app and ``python -m core search`` call.

``SearchEngine`` holds the network, the cached descriptors, their indexes and the re-rankers'
per-gallery parts, built once and shared by every caller (the app keeps one engine per gallery
and embedding for all its sessions). ``search`` is the one call: embed the query (cropped by its
box), search the index, re-rank, and return the top ``k`` with the time of each stage.
Method "auto" takes the default index for the gallery's size (``core.index.choice``).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from core.cache.descriptors import Embeddings, load_embeddings
from core.cache.galleries import Gallery
from core.config import AnnoyParams, EmbeddingConfig, HnswParams
from core.embed.embedder import Embedder
from core.images import Box, ImageSource, load_image
from core.index import (
    AnnoyIndex,
    ExactIndex,
    HnswIndex,
    Index,
    Result,
    SearchSettings,
    full_ranking,
    open_stored,
    results_of,
)
from core.index.base import resolved_settings
from core.rerank import PreparedStore, RegionQuery, RerankContext, Reranker, apply_reranker


@dataclass(frozen=True)
class Results:
    """The top ``k`` of one query. ``items`` scores are the cosine similarity (or, for a plain
    Euclidean search, the distance) of the query with each image; after re-ranking they stay the
    cosine, in the re-ranked order, and the method's own scores are in ``evidence`` (image id →
    method score and best window in original pixels, or None)."""

    items: list[Result]
    embed_ms: float
    search_ms: float
    query_vector: np.ndarray
    rerank_label: str = ""
    rerank_ms: float = 0.0                 # per query, without the one-time gallery preparation
    prepare_seconds: float = 0.0           # one-time per-gallery preparation paid by this query
    evidence: dict[str, tuple[float, Box | None]] = field(default_factory=dict)


class SearchEngine:
    """Network + descriptors + indexes + prepared re-rankers of one gallery under one config."""

    def __init__(self, gallery: Gallery, config: EmbeddingConfig, embedder: Embedder | None = None,
                 embeddings: Embeddings | None = None) -> None:
        self.gallery, self.config = gallery, config
        self.embeddings = embeddings or load_embeddings(gallery.name, config)
        self.embedder = embedder or Embedder(config.base())
        self.prepared = PreparedStore()
        self._indexes: dict[tuple, Index] = {}
        self._lock = threading.Lock()      # one engine serves every app session: build indexes once

    def index(self, settings: SearchSettings) -> Index:
        """The index ``settings`` name ("auto": the default for this gallery's size): exact in
        float32 or float16 storage, or the saved Annoy or HNSW index (built first if absent or
        stale; neither library adds items, so a stale one is rebuilt from the cache)."""
        emb = self.embeddings
        s = resolved_settings(settings, len(emb.ids), emb.dim)
        key = (s.method, s.metric, s.annoy.n_trees)
        with self._lock:
            if key not in self._indexes:
                if s.method in ("exact", "exact16"):
                    self._indexes[key] = ExactIndex(emb.vectors, s.metric, "float16" if s.method == "exact16" else "float32")
                elif s.method == "annoy":
                    self._indexes[key] = open_stored(AnnoyIndex, emb, s.annoy)
                else:
                    self._indexes[key] = open_stored(HnswIndex, emb, HnswParams(metric=s.metric))
            return self._indexes[key]

    def exact(self, metric: str = "cosine") -> ExactIndex:
        return self.index(SearchSettings("exact", metric))

    def annoy(self, metric: str = "cosine", n_trees: int = AnnoyParams.n_trees) -> AnnoyIndex:
        return self.index(SearchSettings("annoy", metric, AnnoyParams(n_trees=n_trees)))

    def hnsw(self, metric: str = "cosine") -> HnswIndex:
        return self.index(SearchSettings("hnsw", metric))

    def embed(self, source: ImageSource, box: Box | Sequence[float] | None = None) -> np.ndarray:
        """Descriptor of a query (a path, a file-like object or a decoded image), cropped by
        ``box`` in its original pixels, whitened like the gallery."""
        vec = self.embedder.embed_image(source, box)
        w = self.embeddings.whitening
        return w.apply(vec) if w is not None else vec

    def search_vector(self, vector: np.ndarray, k: int = 10,
                      settings: SearchSettings | None = None) -> tuple[list[Result], float]:
        """Top ``k`` of a query descriptor, and the search time in ms."""
        settings = settings or SearchSettings()
        index = self.index(settings)
        start = time.perf_counter()
        idx, scores = self._search(index, settings, vector, k)
        return results_of(idx[0], scores[0], self.embeddings.ids), (time.perf_counter() - start) * 1000

    @staticmethod
    def _search(index: Index, settings: SearchSettings, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(index, AnnoyIndex):
            return index.search(vector, k, settings.annoy.search_k)
        return index.search(vector, k)

    def search(self, source: ImageSource, box: Box | Sequence[float] | None = None, k: int = 10,
               settings: SearchSettings | None = None, reranker: Reranker | None = None) -> Results:
        """Embed the query (cropped by ``box`` in original pixels), search, re-rank with
        ``reranker`` (None or "none": the plain ranking) and return the top ``k``. The query
        image is decoded once for every stage that reads it."""
        settings = settings or SearchSettings()
        box = box if box is None or isinstance(box, Box) else Box.of(box)
        rerank = reranker is not None and reranker.name != "none"
        if rerank and reranker.needs_image and not isinstance(source, Image.Image):
            source = load_image(source)                   # the embedder and the re-ranker share it
        start = time.perf_counter()
        vec = self.embed(source, box)
        embed_ms = (time.perf_counter() - start) * 1000
        if not rerank:
            items, search_ms = self.search_vector(vec, k, settings)
            return Results(items, embed_ms, search_ms, vec)
        return self._reranked(source, box, vec, k, settings, reranker, embed_ms)

    def _reranked(self, source: ImageSource, box: Box | None, vec: np.ndarray, k: int, settings: SearchSettings,
                  reranker: Reranker, embed_ms: float) -> Results:
        """Re-ranking reads the full plain ranking of the chosen index: exact cosine, or Annoy's
        list followed by what it missed (``full_ranking``); the methods that read only its head
        (``Reranker.head_only``) then never touch an exact ranking. Scores shown stay cosines."""
        reranker = reranker.for_gallery(len(self.embeddings.ids))
        start = time.perf_counter()
        cosine = self.exact("cosine").scores(vec)[0]
        settings = resolved_settings(settings, len(self.embeddings.ids), self.embeddings.dim)
        approximate = settings.method in ("annoy", "hnsw")
        if approximate:
            top, _ = self._search(self.index(settings), settings, vec, len(cosine))
            plain = full_ranking(top, len(cosine))
        else:
            plain = np.argsort(-cosine, kind="stable")[None].astype(np.int32)
        search_ms = (time.perf_counter() - start) * 1000
        ctx = RerankContext(self.embeddings, self.gallery, self.embedder, log=lambda _: None,
                            index=self.index(settings) if approximate else None)
        out = apply_reranker(reranker, plain, vec, [RegionQuery(source, box)], ctx, self.prepared)
        order = out.ranking[0, :k]
        ids = self.embeddings.ids
        items = results_of(order, cosine[order], ids)
        evidence = {ids[i]: v for i, v in out.evidence[0].items()}
        return Results(items, embed_ms, search_ms, vec, reranker.label(), out.extra_ms_per_query,
                       out.offline_seconds, evidence)
