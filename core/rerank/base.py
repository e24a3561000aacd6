"""The re-ranking interface and its registry, in the manner of timm's model registry and
PyRetri's re-rankers: each method is a frozen dataclass that registers itself under a name,
owns its parameters and their defaults, and answers one call shape.

A re-ranker takes the plain rankings [q, N] (best first) of query descriptors [q, d] over a
gallery and returns new full rankings, plus per query its own evidence for the images it scored
(a score and, for window methods, the best window in original pixels). Work that depends only
on the gallery (DBA's augmented vectors, the diffusion graph, BLCF's vocabulary, feature maps)
is done by ``prepare`` once and kept in a ``PreparedStore``, which serialises its building
across threads: one search engine serves every session of the app.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any, ClassVar

import numpy as np
from PIL import Image

from core.cache.descriptors import Embeddings
from core.cache.galleries import Gallery
from core.embed.embedder import Embedder
from core.images import Box
from core.index import ExactIndex, Index

Evidence = dict[int, tuple[float, Box | None]]     # gallery index -> (method score, best window)
# Rows whose neighbours' vectors are gathered at once when cosines are computed: k-reciprocal asks
# for the lists of every gallery image, and gathering [n, k1 + 1, d] at once took 10.7 GB at 50,000
# x 1280 (k1 80) before the process was killed (benchmarks/bench_rerank_scale.py); 256 rows: 106 MB.
NEIGHBOUR_BLOCK = 256


@dataclass(frozen=True)
class RegionQuery:
    """What the region-aware methods need of a query: the whole image (a file, or an image the
    caller decoded already; None for a stored descriptor, which has no pixels) and the box
    (original pixels) the user drew or the benchmark gives."""

    source: str | Path | IO[bytes] | Image.Image | None
    box: Box | None = None


@dataclass
class RerankContext:
    """The gallery a re-ranker works on: its descriptors, its images and the network that made
    them (feature maps are taken with the same backbone), and the index of the first search
    (None: exact cosine), which methods that search the gallery again use too."""

    embeddings: Embeddings
    gallery: Gallery
    embedder: Embedder
    progress: bool = False
    log: Callable[[str], None] = print
    index: Index | None = None

    def _approximate(self) -> Index | None:
        """The context's index when its lists are approximate (None: exact cosine lists)."""
        return None if self.index is None or self.index.exact else self.index

    def neighbours(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest gallery images [q, k] of each row of ``vectors`` through the
        context's index (an approximate index's lists may be shorter: padded with -1), and their
        exact cosines."""
        index = self._approximate()
        if index is None:
            return ExactIndex(self.embeddings.vectors, "cosine").search(vectors, k)
        idx, _ = index.search(vectors, k)
        db = self.embeddings.vectors
        cos = np.empty(idx.shape, np.float32)
        for start in range(0, len(idx), NEIGHBOUR_BLOCK):       # [rows, k, d] gathered a block at a time
            rows = slice(start, start + NEIGHBOUR_BLOCK)
            cos[rows] = np.where(idx[rows] >= 0, np.einsum("qkd,qd->qk", db[np.maximum(idx[rows], 0)], vectors[rows]),
                                 -np.inf)
        return idx, cos

    def neighbour_source(self) -> str:
        """Where ``neighbours`` and ``rank`` get their lists: "exact", or the approximate index's
        source (a graph prepared from approximate lists is not the one prepared from exact ones)."""
        index = self._approximate()
        return "exact" if index is None else index.source()

    def rank(self, vectors: np.ndarray) -> np.ndarray:
        """Full rankings [q, N] of ``vectors`` over the gallery's descriptors by the context's
        index: exact cosine, or an approximate index's list followed by what it missed."""
        index = self._approximate()
        return ExactIndex(self.embeddings.vectors, "cosine").rank_all(vectors) if index is None else index.rank_all(vectors)


@dataclass(frozen=True)
class Reranker:
    """Base of every method. Subclasses are frozen dataclasses whose fields are the method's
    parameters; ``name`` and ``title`` are set by ``register``."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    needs_image: ClassVar[bool] = False      # region methods read the query image and box
    helps: ClassVar[str] = ""               # when the method is worth its cost, for CLI help and the app
    head_only: ClassVar[bool] = False       # reads only the head of the plain ranking: any index can give it
    max_images: ClassVar[int | None] = None  # largest gallery its preparation fits the bound of rules.py (None: any)

    def params(self) -> dict[str, Any]:
        """The method and its parameters: what a run records under "rerank"."""
        return {"method": self.name, **asdict(self)}

    def label(self) -> str:
        """Short name for run ids and the app, e.g. ``aqe5``, ``dba5+aqe5a3``, ``spatial-sift50``."""
        return self.name

    def for_gallery(self, n_images: int) -> Reranker:
        """This method with the parameters left to a gallery-size rule (``core.rerank.rules``,
        written 0) set for a gallery of ``n_images``; what runs record and queries use."""
        return self

    def state_key(self) -> tuple:
        """The parameters that ``prepare`` depends on (all of them unless a method says less)."""
        return tuple(sorted(asdict(self).items()))

    def prepare(self, ctx: RerankContext) -> Any:
        """Per-gallery work, done once and shared by every query (None: nothing to prepare)."""
        return None

    def rerank(self, ranking: np.ndarray, queries: np.ndarray, regions: Sequence[RegionQuery],
               ctx: RerankContext, prepared: Any) -> tuple[np.ndarray, list[Evidence]]:
        """New full rankings [q, N] and per query the method's evidence."""
        raise NotImplementedError


RERANKERS: dict[str, type[Reranker]] = {}


def register(name: str, title: str) -> Callable[[type[Reranker]], type[Reranker]]:
    """Class decorator: ``@register("alpha_qe", "alpha query expansion") class AlphaQE(Reranker)``."""
    def add(cls: type[Reranker]) -> type[Reranker]:
        if name in RERANKERS:
            raise ValueError(f"re-ranker {name!r} is registered twice")
        cls.name, cls.title = name, title
        RERANKERS[name] = cls
        return cls
    return add


def list_rerankers() -> list[str]:
    """Registered method names: "none", then the descriptor-level methods, then those that read
    the query image, each group by name."""
    return sorted(RERANKERS, key=lambda n: (n != "none", RERANKERS[n].needs_image, n))


def reranker_parameters(name: str) -> list[str]:
    """The parameter names of method ``name``."""
    return [f.name for f in fields(_class_of(name))]


def create_reranker(name: str, **params: Any) -> Reranker:
    """The method ``name`` with ``params`` (the others keep the method's defaults); parameters
    the method does not have are refused, so a typo never silently does nothing."""
    cls = _class_of(name)
    unknown = sorted(set(params) - set(reranker_parameters(name)))
    if unknown:
        raise ValueError(f"re-ranking method {name!r} has no parameter {', '.join(unknown)}; "
                         f"its parameters: {', '.join(reranker_parameters(name)) or 'none'}")
    return cls(**params)


def _class_of(name: str) -> type[Reranker]:
    if name not in RERANKERS:
        raise ValueError(f"re-ranking method must be one of {', '.join(list_rerankers())}, got {name!r}")
    return RERANKERS[name]


class PreparedStore:
    """Prepared per-gallery parts, keyed by method, parameters, descriptors and the source of
    their neighbour lists (exact or an approximate index). Each entry is
    built once; concurrent callers asking for the same entry wait for that one build."""

    def __init__(self) -> None:
        self._items: dict[tuple, Any] = {}
        self._locks: dict[tuple, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, reranker: Reranker, ctx: RerankContext) -> tuple[Any, float]:
        """The prepared part and the seconds this call spent building it (0 when it existed)."""
        emb = ctx.embeddings
        key = (reranker.name, reranker.state_key(), str(emb.directory), emb.config.key(), len(emb.ids),
               ctx.neighbour_source())
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key in self._items:
                return self._items[key], 0.0
            start = time.perf_counter()
            self._items[key] = reranker.prepare(ctx)
            return self._items[key], time.perf_counter() - start


@dataclass
class RerankOutput:
    """Rankings after re-ranking, the time split into once-per-gallery preparation and the
    rest per query, and per query the method's evidence."""

    ranking: np.ndarray
    offline_seconds: float = 0.0
    extra_ms_per_query: float = 0.0
    evidence: list[Evidence] = field(default_factory=list)


def apply_reranker(reranker: Reranker, ranking: np.ndarray, queries: np.ndarray, regions: Sequence[RegionQuery],
                   ctx: RerankContext, store: PreparedStore | None = None) -> RerankOutput:
    """Re-rank the plain rankings [q, N] of ``queries`` [q, d] (one ``RegionQuery`` each).
    Pass a long-lived ``store`` (the search engine's) so that per-gallery work is paid once."""
    if reranker.needs_image and any(r.source is None for r in regions):
        raise ValueError(f"re-ranking method {reranker.name!r} needs the query image")
    store = store if store is not None else PreparedStore()
    reranker = reranker.for_gallery(len(ctx.embeddings.ids))
    start = time.perf_counter()
    prepared, offline = store.get(reranker, ctx)
    out, evidence = reranker.rerank(ranking, np.atleast_2d(queries).astype(np.float32), regions, ctx, prepared)
    total = time.perf_counter() - start
    return RerankOutput(out, offline, (total - offline) / max(len(regions), 1) * 1000, evidence)


def rank_by_scores(scores: np.ndarray, ranking: np.ndarray) -> np.ndarray:
    """Full rankings [q, N] by ``scores`` [q, N] (higher first); ties, e.g. images diffusion
    never reaches (score 0), keep their order in ``ranking``."""
    position = np.argsort(ranking, axis=1)                      # rank of each image before
    return np.stack([np.lexsort((position[r], -scores[r])) for r in range(scores.shape[0])]).astype(np.int32)


@register("none", "none")
@dataclass(frozen=True)
class NoRerank(Reranker):
    """The plain global ranking."""

    def label(self) -> str:
        return ""

    def rerank(self, ranking, queries, regions, ctx, prepared):
        return ranking, [{} for _ in regions]
