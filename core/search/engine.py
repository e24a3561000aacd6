"""Interactive search over one gallery: what the app and ``python -m core search`` use.

``SearchEngine`` loads the network, the cached descriptors and (on demand) the Annoy or HNSW index once,
then answers queries given as files, PIL images or gallery ids, optionally cropped by a box;
method "auto" takes the default index for the gallery's size (``core.index.choice``).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.cache.descriptors import Embeddings, load_embeddings
from core.cache.galleries import Gallery
from core.config import AnnoyParams, EmbeddingConfig, HnswParams
from core.embed.embedder import Embedder
from core.images import Box
from core.index import ANNOY_METRIC, AnnoyIndex, ExactIndex, IndexMismatch, Result, results_of
from core.index.choice import resolve_method
from core.index.hnsw import HnswIndex


@dataclass(frozen=True)
class Results:
    items: list[Result]
    embed_ms: float
    search_ms: float
    query_vector: np.ndarray


class SearchEngine:
    """Network + descriptors + indexes of one gallery under one embedding config."""

    def __init__(self, gallery: Gallery, config: EmbeddingConfig, embedder: Embedder | None = None,
                 embeddings: Embeddings | None = None) -> None:
        self.gallery, self.config = gallery, config
        self.embeddings = embeddings or load_embeddings(gallery.name, config)
        self.embedder = embedder or Embedder(config.base())
        self._exact: dict[tuple[str, str], ExactIndex] = {}
        self._stored: dict[AnnoyParams | HnswParams, AnnoyIndex | HnswIndex] = {}
        self._lock = threading.Lock()      # one engine serves every app session: build indexes once

    def exact(self, metric: str, storage: str = "float32") -> ExactIndex:
        with self._lock:
            if (metric, storage) not in self._exact:
                self._exact[metric, storage] = ExactIndex(self.embeddings.vectors, metric, storage)
            return self._exact[metric, storage]

    def annoy(self, metric: str, n_trees: int = AnnoyParams.n_trees) -> AnnoyIndex:
        """The saved Annoy index (memory-mapped), built first if it does not exist yet."""
        params = AnnoyParams(metric=ANNOY_METRIC[metric], n_trees=n_trees)
        with self._lock:
            return self._stored_locked(params)

    def hnsw(self, metric: str) -> HnswIndex:
        """The saved HNSW index (loaded once per process), built first if it does not exist yet."""
        with self._lock:
            return self._stored_locked(HnswParams(metric=metric))

    def _stored_locked(self, params: AnnoyParams | HnswParams) -> AnnoyIndex | HnswIndex:
        if params not in self._stored:
            emb = self.embeddings
            kind = HnswIndex if isinstance(params, HnswParams) else AnnoyIndex
            path = emb.directory / kind.file_name(params)
            try:
                self._stored[params] = kind.load(emb.directory, self.config, params, emb.dim, emb.ids,
                                                self.gallery.name)
            except IndexMismatch as exc:
                if path.exists() and not exc.stale:
                    raise
                # absent, or older than the descriptors: neither library adds items, rebuild from the cache
                self._stored[params] = kind.build(emb.vectors, emb.directory, self.config, params, emb.ids)
        return self._stored[params]

    def embed(self, source: str | Image.Image, box: Box | Sequence[float] | None = None) -> np.ndarray:
        """Descriptor of a query (a path or file-like object, or a PIL image already cropped)."""
        if isinstance(source, Image.Image):
            vec = self.embedder.embed_pil(source if box is None else source.crop(tuple(Box.of(
                box.as_list() if isinstance(box, Box) else box).clamp(*source.size).as_list())))
        else:
            vec = self.embedder.embed_image(source, box)
        w = self.embeddings.whitening
        return w.apply(vec) if w is not None else vec

    def search_vector(self, vector: np.ndarray, k: int = 10, method: str = "auto", metric: str = "cosine",
                      n_trees: int = AnnoyParams.n_trees, search_k: int | None = None) -> tuple[list[Result], float]:
        method = resolve_method(method, len(self.embeddings.ids), self.embeddings.dim)
        start = time.perf_counter()
        if method == "annoy":
            idx, scores = self.annoy(metric, n_trees).search(vector, k, search_k)
        elif method == "hnsw":
            idx, scores = self.hnsw(metric).search(vector, k)
        else:
            idx, scores = self.exact(metric, "float16" if method == "exact16" else "float32").search(vector, k)
        ms = (time.perf_counter() - start) * 1000
        return results_of(idx[0], scores[0], self.embeddings.ids), ms

    def search(self, source: str | Image.Image, box: Box | Sequence[float] | None = None, k: int = 10,
               method: str = "auto", metric: str = "cosine", n_trees: int = AnnoyParams.n_trees,
               search_k: int | None = None) -> Results:
        """Embed the query (cropped by ``box`` in original pixels) and return the top ``k``."""
        start = time.perf_counter()
        vec = self.embed(source, box)
        embed_ms = (time.perf_counter() - start) * 1000
        items, search_ms = self.search_vector(vec, k, method, metric, n_trees, search_k)
        return Results(items, embed_ms, search_ms, vec)

