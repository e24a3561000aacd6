"""Re-ranking after the global search: query expansion, database-side augmentation, diffusion,
and the dispatch to the region-aware methods (BLCF, local windows, spatial verification).

Global descriptors miss small objects and rank a view of the landmark from another side low;
the instance-search literature recovers part of that by re-ranking. The methods over descriptor
matrices are pure functions here (inputs: L2-normalised rows, rankings best first):

- ``query_expansion``: average QE (Chum et al. 2007; alpha = 0) and alpha-QE (Radenović et al.
  2018): the query plus its top n, weighted by similarity^alpha, searched again.
- ``database_augmentation`` (DBA, Arandjelović & Zisserman 2012): every gallery vector replaced by
  the same weighted mean over its own neighbours, computed once per gallery.
- ``diffusion_scores`` (Iscen et al. 2017): ranking by a random walk on the mutual k-NN graph of
  the gallery, which follows the manifold of a landmark past views that look unlike the query.

``RerankSettings`` names one method and its parameters; ``rerank_rankings`` applies it to the full
rankings of an evaluation and ``rerank_results`` to one query of the search page.
"""
from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from PIL import Image
from scipy.sparse.linalg import cg

from core.images import Box
from core.index import ExactIndex, Result
from core.rerank.blcf import auto_vocabulary_size, load_or_build_index
from core.rerank.featuremaps import MapSource, box_mask, gallery_feature_maps, load_map
from core.rerank.local import local_rerank, region_descriptor
from core.rerank.spatial import LocalFeatures, extract, spatial_rerank

if TYPE_CHECKING:
    from core.cache.descriptors import Embeddings
    from core.cache.galleries import Gallery
    from core.embed.embedder import Embedder
    from core.search.engine import SearchEngine

GLOBAL_METHODS = ("aqe", "alpha_qe", "dba", "dba+alpha_qe", "diffusion")
REGION_METHODS = ("blcf", "local", "spatial")
METHODS = ("none",) + GLOBAL_METHODS + REGION_METHODS
METHOD_NAMES = {"none": "none", "aqe": "average query expansion", "alpha_qe": "alpha query expansion",
                "dba": "database-side augmentation", "dba+alpha_qe": "DBA + alpha-QE", "diffusion": "diffusion",
                "blcf": "BLCF (bag of local conv features)", "local": "local windows (best window drawn)",
                "spatial": "spatial verification (SIFT + RANSAC)"}
DIFFUSION_ITERATIONS = 20     # conjugate-gradient steps per query


@dataclass(frozen=True)
class RerankSettings:
    """One re-ranking method and its parameters (the others are ignored, not hashed).

    qe_n:        neighbours added to the query by (alpha-)QE.
    alpha:       similarity exponent of alpha-QE and DBA (0 = plain average).
    dba_n:       neighbours averaged into each gallery vector by DBA.
    diffusion_k: neighbours of the k-NN graph (and of the query's entry into it).
    diffusion_alpha, diffusion_gamma: random-walk restart and affinity exponent (Iscen et al.).
    top_n:       images re-ranked by the local and spatial methods (the rest keep their order).
    blcf_words:  BLCF vocabulary size; 0 sizes it to the gallery (``blcf.auto_vocabulary_size``:
                 about 100 words for 250 images, 25k for the full Oxford/Paris datasets).
    window_scales: window sides of local re-ranking, as fractions of the map height and width.
    local_features: "sift" or "orb" for spatial verification; min_inliers: RANSAC inliers needed
                 for an image to count as verified.
    """

    method: str = "none"
    qe_n: int = 5
    alpha: float = 3.0
    dba_n: int = 5
    diffusion_k: int = 15
    diffusion_alpha: float = 0.99
    diffusion_gamma: float = 3.0
    top_n: int = 50
    blcf_words: int = 0
    window_scales: tuple[float, ...] = (1.0, 0.75, 0.5, 0.35)
    local_features: str = "sift"
    min_inliers: int = 15

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"re-ranking method must be one of {METHODS}, got {self.method!r}")
        if self.local_features not in ("sift", "orb"):
            raise ValueError(f"local features must be 'sift' or 'orb', got {self.local_features!r}")
        object.__setattr__(self, "window_scales", tuple(float(s) for s in self.window_scales))

    def params(self) -> dict:
        """The parameters the chosen method uses (what a run records)."""
        used = {"aqe": ("qe_n",), "alpha_qe": ("qe_n", "alpha"), "dba": ("dba_n", "alpha"),
                "dba+alpha_qe": ("dba_n", "qe_n", "alpha"),
                "diffusion": ("diffusion_k", "diffusion_alpha", "diffusion_gamma"),
                "blcf": ("blcf_words",), "local": ("top_n", "window_scales"),
                "spatial": ("top_n", "local_features", "min_inliers")}.get(self.method, ())
        data = asdict(self)
        return {"method": self.method, **{k: data[k] for k in used}}

    def label(self) -> str:
        """Short name for run ids and the app, e.g. ``aqe5``, ``dba5+aqe5a3``, ``spatial-sift50``."""
        m, qe = self.method, f"aqe{self.qe_n}"
        return {"none": "", "aqe": qe, "alpha_qe": f"{qe}a{self.alpha:g}",
                "dba": f"dba{self.dba_n}a{self.alpha:g}", "dba+alpha_qe": f"dba{self.dba_n}+{qe}a{self.alpha:g}",
                "diffusion": f"diff{self.diffusion_k}", "blcf": f"blcf{self.blcf_words or 'auto'}",
                "local": f"local{self.top_n}", "spatial": f"spatial-{self.local_features}{self.top_n}"}[m]


# ---------------------------------------------------------------- pure functions

def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def weighted_neighbour_mean(vectors: np.ndarray, neighbours: np.ndarray, alpha: float) -> np.ndarray:
    """Each row of ``vectors`` [q, d] plus its ``neighbours`` [q, n, d], weighted by
    max(0, cosine)^alpha (alpha = 0: plain sum, every neighbour weight 1; the row itself always
    weighs 1), L2-normalised. The common core of QE and DBA."""
    sims = np.einsum("qd,qnd->qn", vectors, neighbours)
    weights = np.maximum(sims, 0.0) ** alpha if alpha > 0 else np.ones_like(sims)
    return _normalise(vectors + np.einsum("qn,qnd->qd", weights, neighbours))


def query_expansion(queries: np.ndarray, database: np.ndarray, ranking: np.ndarray, n: int,
                    alpha: float = 0.0) -> np.ndarray:
    """Expanded queries [q, d]: each query with its top ``n`` of ``ranking`` [q, >= n]
    (average QE for alpha = 0, alpha-QE otherwise). Search again with the result."""
    if n <= 0:
        return np.asarray(queries, np.float32)
    return weighted_neighbour_mean(queries, database[ranking[:, :n]], alpha)


def database_augmentation(database: np.ndarray, n: int, alpha: float = 0.0) -> np.ndarray:
    """DBA: every gallery vector [N, d] replaced by itself plus its ``n`` nearest other gallery
    vectors, weighted as in ``weighted_neighbour_mean``. Queries then search the result."""
    index = ExactIndex(database, "cosine")
    idx, _ = index.search(database, n + 1)
    others = np.array([[j for j in row if j != i][:n] for i, row in enumerate(idx)], dtype=np.int64)
    return weighted_neighbour_mean(database, database[others], alpha)


def knn_affinity(database: np.ndarray, k: int, gamma: float) -> sp.csr_matrix:
    """Symmetric affinity [N, N] of the mutual k-NN graph: max(0, cosine)^gamma where i and j are
    each among the other's k nearest neighbours, zero elsewhere and on the diagonal."""
    n = database.shape[0]
    k = min(k, n - 1)
    idx, sims = ExactIndex(database, "cosine").search(database, k + 1)
    rows = np.repeat(np.arange(n), k + 1)
    a = sp.csr_matrix((np.maximum(sims.ravel(), 0.0) ** gamma, (rows, idx.ravel())), shape=(n, n))
    a.setdiag(0.0)
    a.eliminate_zeros()
    return a.minimum(a.T).tocsr()


def diffusion_scores(queries: np.ndarray, database: np.ndarray, affinity: sp.csr_matrix, k: int,
                     alpha: float, gamma: float, iterations: int = DIFFUSION_ITERATIONS) -> np.ndarray:
    """Diffusion ranking scores [q, N]: f solving (I − alpha·S) f = y by conjugate gradient,
    with S = D^-1/2 A D^-1/2 the normalised ``affinity`` and y the query's max(0, cosine)^gamma
    to its ``k`` nearest gallery vectors (zero elsewhere)."""
    degree = np.asarray(affinity.sum(axis=1)).ravel()
    inv_sqrt = sp.diags(1.0 / np.sqrt(np.maximum(degree, 1e-12)))
    system = sp.identity(affinity.shape[0]) - alpha * (inv_sqrt @ affinity @ inv_sqrt)
    idx, sims = ExactIndex(database, "cosine").search(queries, k)
    out = np.zeros((queries.shape[0], database.shape[0]), np.float32)
    for row in range(queries.shape[0]):
        y = np.zeros(database.shape[0])
        y[idx[row]] = np.maximum(sims[row], 0.0) ** gamma
        out[row], _ = cg(system, y, maxiter=iterations)
    return out


def rank_by_scores(scores: np.ndarray, ranking: np.ndarray) -> np.ndarray:
    """Full rankings [q, N] by ``scores`` [q, N] (higher first); ties, e.g. images diffusion
    never reaches (score 0), keep their order in ``ranking``."""
    position = np.argsort(ranking, axis=1)                      # rank of each image before
    return np.stack([np.lexsort((position[r], -scores[r])) for r in range(scores.shape[0])]).astype(np.int32)


@dataclass
class PreparedGallery:
    """The per-gallery (offline) part of a global method: the database queries search (augmented
    by DBA or as is) and, for diffusion, the k-NN graph. Built once, reused by every query."""

    database: np.ndarray
    affinity: sp.csr_matrix | None = None
    seconds: float = 0.0


def prepare_gallery(settings: RerankSettings, database: np.ndarray) -> PreparedGallery:
    """The offline part of ``settings``' method over gallery vectors [N, d] (O(N²) products in
    blocks: DBA's neighbours, the graph's k-NN)."""
    start = time.perf_counter()
    s = settings
    if s.method in ("dba", "dba+alpha_qe"):
        database = database_augmentation(database, s.dba_n, s.alpha)
    affinity = knn_affinity(database, s.diffusion_k, s.diffusion_gamma) if s.method == "diffusion" else None
    return PreparedGallery(np.asarray(database, np.float32), affinity, time.perf_counter() - start)


def rerank_global(settings: RerankSettings, queries: np.ndarray, prepared: PreparedGallery,
                  ranking: np.ndarray) -> np.ndarray:
    """Full rankings [q, N] after a descriptor-level method (``GLOBAL_METHODS``); ``ranking``
    is the plain cosine ranking of ``queries`` [q, d] over the original gallery vectors."""
    s, database = settings, prepared.database
    index = ExactIndex(database, "cosine")
    if s.method in ("dba", "dba+alpha_qe"):
        ranking = index.rank_all(queries)
    if s.method in ("aqe", "alpha_qe", "dba+alpha_qe"):
        expanded = query_expansion(queries, database, ranking, s.qe_n, 0.0 if s.method == "aqe" else s.alpha)
        ranking = index.rank_all(expanded)
    if s.method == "diffusion":
        scores = diffusion_scores(queries, database, prepared.affinity, s.diffusion_k, s.diffusion_alpha,
                                  s.diffusion_gamma)
        ranking = rank_by_scores(scores, ranking)
    return ranking


# ---------------------------------------------------------------- dispatch: evaluation and app

@dataclass(frozen=True)
class RegionQuery:
    """What the region-aware methods need of a query: the whole image and the box (original
    pixels) that the user drew or the benchmark gives."""

    source: str | Path | IO[bytes] | Image.Image
    box: Box | None = None


Evidence = dict[int, tuple[float, Box | None]]     # gallery index -> (method score, best window)


@dataclass
class RerankOutput:
    """Rankings after re-ranking, what was measured, and per query the method's own evidence
    for each image it scored: (score, best window in original pixels or None)."""

    ranking: np.ndarray
    info: dict
    evidence: list[Evidence] = field(default_factory=list)


def rerank_rankings(settings: RerankSettings, ranking: np.ndarray, queries: np.ndarray, emb: Embeddings,
                    gallery: Gallery, embedder: Embedder, regions: Sequence[RegionQuery],
                    state: dict | None = None, progress: bool = False,
                    log: Callable[[str], None] = print) -> RerankOutput:
    """Apply ``settings`` to the plain rankings [q, N] of ``queries`` [q, d] (one ``RegionQuery``
    each). Per-gallery work (DBA, the k-NN graph, feature maps, the BLCF vocabulary) is timed
    apart as ``offline_seconds`` and kept in ``state`` when given, so that a long-lived caller
    (the search page) pays it once; ``extra_ms_per_query`` is the rest, query feature maps and
    local features included."""
    s, state = settings, state if state is not None else {}
    info: dict = {**s.params(), "label": s.label(), "offline_seconds": 0.0, "extra_ms_per_query": 0.0}
    if s.method == "none":
        return RerankOutput(ranking, info, [{} for _ in regions])
    key = (s.method, s.label(), s.diffusion_alpha, s.diffusion_gamma)
    start = time.perf_counter()
    if s.method in GLOBAL_METHODS:
        if key not in state:
            state[key] = prepare_gallery(s, emb.vectors)
        offline = time.perf_counter() - start
        out = rerank_global(s, queries, state[key], ranking)
        evidence = [{} for _ in regions]
    elif s.method == "spatial":
        out, evidence, offline = _spatial(s, ranking, emb, gallery, regions, state)
    else:
        out, evidence, offline = _with_maps(s, ranking, emb, gallery, embedder, regions, state, progress, log)
    total = time.perf_counter() - start
    info.update({"offline_seconds": offline, "extra_ms_per_query": (total - offline) / max(len(regions), 1) * 1000})
    return RerankOutput(out, info, evidence)


def _with_maps(s: RerankSettings, ranking: np.ndarray, emb: Embeddings, gallery: Gallery, embedder: Embedder,
               regions: Sequence[RegionQuery], state: dict, progress: bool,
               log: Callable[[str], None]) -> tuple[np.ndarray, list[Evidence], float]:
    """BLCF search or local window re-ranking: both read the gallery's feature maps and the
    cells of the query image's map that lie inside its box."""
    start = time.perf_counter()
    if s.method == "blcf":
        if ("blcf", s.blcf_words) not in state:
            maps = gallery_feature_maps(gallery, emb.config, emb.ids, embedder, progress, log)
            words = s.blcf_words or auto_vocabulary_size(len(maps.features))
            state["blcf", s.blcf_words] = load_or_build_index(gallery.name, emb.config, maps, words, log)
        index = state["blcf", s.blcf_words]
    elif "maps" not in state:    # local: the cache if there is one, else only the top-N's maps
        state["maps"] = MapSource.cached_or_lazy(gallery, emb.config, emb.ids, embedder)
    offline = time.perf_counter() - start
    out, evidence = ranking.copy(), []
    for r, region in enumerate(regions):
        fmap, size = load_map(embedder, region.source)
        mask = box_mask(fmap.shape[1:], region.box, size)
        if s.method == "blcf":
            scores = index.query_scores(fmap[:, mask].T)
            out[r] = rank_by_scores(scores[None], ranking[r:r + 1])[0]
            evidence.append({int(i): (float(scores[i]), None) for i in out[r, :s.top_n]})
        else:
            out[r], found = local_rerank(ranking[r], region_descriptor(fmap, mask), state["maps"], s.top_n,
                                         s.window_scales)
            evidence.append(found)
    return out, evidence, offline


def _spatial(s: RerankSettings, ranking: np.ndarray, emb: Embeddings, gallery: Gallery,
             regions: Sequence[RegionQuery], state: dict) -> tuple[np.ndarray, list[Evidence], float]:
    """Spatial verification; gallery local features are extracted when first needed and kept in
    ``state`` (the top-Ns of related queries overlap), so their cost is counted per query."""
    max_size = emb.config.max_size
    features = state.setdefault(("spatial", s.local_features, max_size), {})

    def features_of(i: int) -> LocalFeatures:
        if i not in features:
            features[i] = extract(gallery.root / emb.ids[i], s.local_features, None, max_size)
        return features[i]

    out, evidence = ranking.copy(), []
    for r, region in enumerate(regions):
        source = region.source
        if isinstance(source, Image.Image):       # extract() decodes files; PIL input goes through PNG
            buffer = io.BytesIO()
            source.save(buffer, format="PNG")
            source = buffer
        query = extract(source, s.local_features, region.box, max_size)
        out[r], inliers = spatial_rerank(ranking[r], query, features_of, s.top_n, s.local_features, s.min_inliers)
        evidence.append({i: (float(n), None) for i, n in inliers.items()})
    return out, evidence, 0.0


@dataclass
class Reranked:
    """Re-ranked top-k of one query for the search page; ``evidence`` maps an image id to the
    method's score (window cosine, inliers, BLCF cosine) and best window (local method only)."""

    items: list[Result]
    ms: float                     # this query's re-ranking
    evidence: dict[str, tuple[float, Box | None]]
    label: str
    prepare_ms: float = 0.0       # per-gallery preparation paid by this call (0 once ``state`` holds it)


def rerank_results(engine: SearchEngine, query_vector: np.ndarray, settings: RerankSettings,
                   source: str | Path | IO[bytes] | Image.Image | None = None, box: Box | None = None,
                   k: int = 10, state: dict | None = None) -> Reranked:
    """Re-ranked top-``k`` of one query of ``engine`` (exact cosine search underneath).
    ``source``/``box`` (the query image and region) are needed by the region methods; pass the
    same ``state`` dict between calls (e.g. from ``st.cache_resource``) to build the per-gallery
    parts once. Scores in ``items`` stay the cosine of the query with each image."""
    if settings.method in REGION_METHODS and source is None:
        raise ValueError(f"re-ranking method {settings.method!r} needs the query image")
    vec = np.atleast_2d(query_vector).astype(np.float32)
    cosine = engine.exact("cosine").scores(vec)[0]
    plain = np.argsort(-cosine, kind="stable")[None].astype(np.int32)
    out = rerank_rankings(settings, plain, vec, engine.embeddings, engine.gallery, engine.embedder,
                          [RegionQuery(source, box)], state=state, log=lambda _: None)
    ids = engine.embeddings.ids
    items = [Result(r + 1, int(i), ids[int(i)], float(cosine[i])) for r, i in enumerate(out.ranking[0, :k])]
    return Reranked(items, out.info["extra_ms_per_query"], {ids[i]: v for i, v in out.evidence[0].items()},
                    settings.label(), out.info["offline_seconds"] * 1000)
