"""Bag of Local Convolutional Features (BLCF, Mohedano et al., ICMR 2016).

Every cell of a conv feature map is a local descriptor (L2-normalised, PCA-whitened,
L2-normalised again). A k-means vocabulary turns each map into an assignment map of visual
words; an image is the tf-idf weighted, L2-normalised histogram of its words, a sparse vector
searched through an inverted file. Unlike a pooled global descriptor, the query histogram can be
built from the cells inside the query box only, so the background around a small object does not
take part in the search.

The vocabulary and the gallery histograms are cached atomically in ``blcf-<words>.npz`` beside
the feature maps; the cache is valid for one exact set of files and one vocabulary size.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from core.config import EmbeddingConfig
from core.embed.pooling import l2_normalise
from core.embed.whitening import Whitening, learn_pca_whitening
from core.files import write_npz
from core.rerank.base import Reranker, rank_by_scores, register
from core.rerank.featuremaps import FeatureMaps, box_mask, gallery_feature_maps, load_map, maps_path
from core.rerank.local import LOCAL_FUSION, fused, promote
from core.rerank.tunable import tunable

LOCAL_DIM = 128            # whitened local descriptor dimension (Mohedano et al. keep a few hundred)
# Auto vocabulary: one word per FEATURES_PER_WORD local features. Chosen on the validation protocol
# (benchmarks/region_sweep.py, artifacts/bench/region_sweep.json: Paris whole and cropped, fused at
# BLCF_FUSION), not on the 12 official queries, where 500 had been picked: 2000 gave the best
# mean of the two (93.58 against 93.48 for 500; every value from 50 to 2000 within 0.4 points).
FEATURES_PER_WORD = 2000
# BLCF score weight added to the global cosine over the top-N: 0.1 gained on whole (+0.2) and
# cropped (+0.8) Paris queries; BLCF alone (inf, the original BLCF search) lost 7 to 11 points.
BLCF_FUSION = 0.1
MIN_WORDS, MAX_WORDS = 16, 25_000
KMEANS_ITERATIONS = 20
KMEANS_SAMPLE = 30_000     # local descriptors the whitening and k-means learn from
ASSIGN_BLOCK = 8192        # descriptors per distance matrix, bounds memory


def auto_vocabulary_size(n_local: int) -> int:
    """Words for a gallery of ``n_local`` local descriptors: one per FEATURES_PER_WORD, so that
    each word is seen in many images (idf is meaningless for words seen once), within
    [MIN_WORDS, MAX_WORDS]; MAX_WORDS is the 25k of Mohedano et al. on the full datasets."""
    return int(np.clip(round(n_local / FEATURES_PER_WORD), MIN_WORDS, MAX_WORDS))


def nearest_centroid(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index [m] of the nearest row of ``centroids`` [k, d] for each row of ``x`` [m, d]
    (squared Euclidean distance)."""
    c = torch.from_numpy(np.ascontiguousarray(centroids, np.float32))
    c_sq = (c * c).sum(1)
    out = np.empty(len(x), np.int64)
    for start in range(0, len(x), ASSIGN_BLOCK):
        b = torch.from_numpy(np.ascontiguousarray(x[start:start + ASSIGN_BLOCK], np.float32))
        out[start:start + len(b)] = (c_sq[None, :] - 2.0 * b @ c.T).argmin(1).numpy()
    return out


def kmeans(x: np.ndarray, k: int, iterations: int = KMEANS_ITERATIONS, seed: int = 0, restarts: int = 1) -> np.ndarray:
    """k-means of ``x`` [m, d] into ``k`` centroids [k, d] by ``faiss.Kmeans``: Lloyd's
    iterations from ``k`` random rows, multi-threaded, every row used (no subsampling), a cluster
    that empties re-seeded by splitting a large one so that every word stays in use; with
    ``restarts`` > 1 the best of that many starts (the vocabulary uses one: it is learned on
    thousands of features, where starts differ little, and each start costs a full run)."""
    if k > len(x):
        raise ValueError(f"a vocabulary of {k} words needs at least {k} local descriptors, got {len(x)}")
    import faiss  # imported lazily: only BLCF's vocabulary needs it

    km = faiss.Kmeans(x.shape[1], k, niter=iterations, seed=seed, nredo=restarts, max_points_per_centroid=len(x),
                      min_points_per_centroid=1, verbose=False)
    km.train(np.ascontiguousarray(x, np.float32))
    return np.asarray(km.centroids, np.float32)


@dataclass(frozen=True)
class Vocabulary:
    """Local descriptor transform (``whitening`` of L2-normalised cells) and ``centroids``."""

    whitening: Whitening
    centroids: np.ndarray            # [words, LOCAL_DIM]

    @property
    def size(self) -> int:
        return int(self.centroids.shape[0])

    def assign(self, local: np.ndarray) -> np.ndarray:
        """Word of each local descriptor [m, C] → [m] (one assignment map, flattened)."""
        return nearest_centroid(self.whitening.apply(l2_normalise(local.astype(np.float32))), self.centroids)


def learn_vocabulary(local: np.ndarray, words: int, seed: int = 0) -> Vocabulary:
    """Vocabulary of ``words`` learned from local descriptors [m, C] (a sample of
    ``KMEANS_SAMPLE`` when there are more)."""
    rng = np.random.default_rng(seed)
    if len(local) > KMEANS_SAMPLE:
        local = local[rng.choice(len(local), KMEANS_SAMPLE, replace=False)]
    x = l2_normalise(local.astype(np.float32))
    whitening = learn_pca_whitening(x, LOCAL_DIM)
    return Vocabulary(whitening, kmeans(whitening.apply(x), words, seed=seed))


def word_counts(words: list[np.ndarray], n_words: int) -> sp.csr_matrix:
    """Sparse [images, n_words] counts of the word ids of each image."""
    rows = np.repeat(np.arange(len(words)), [len(w) for w in words])
    cols = np.concatenate(words) if words else np.zeros(0, np.int64)
    counts = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(words), n_words))
    counts.sum_duplicates()
    return counts


def inverse_document_frequency(counts: sp.csr_matrix) -> np.ndarray:
    """idf [words] = log(N / df); words in no image get 0 (they cannot match anything)."""
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    return np.where(df > 0, np.log(counts.shape[0] / np.maximum(df, 1)), 0.0).astype(np.float32)


def tfidf(counts: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
    """Rows of ``counts`` weighted by tf (count / total words of the row) × idf, L2-normalised."""
    rows = sp.csr_matrix(counts, dtype=np.float32, copy=True)
    totals = np.maximum(np.asarray(rows.sum(axis=1)).ravel(), 1.0)
    rows = sp.diags(1.0 / totals) @ rows @ sp.diags(idf)
    norms = np.sqrt(np.asarray(rows.multiply(rows).sum(axis=1)).ravel())
    return sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ rows, dtype=np.float32)


class InvertedFile:
    """Posting lists word → (images, weights) of tf-idf histograms [images, words]; a query
    touches only the lists of its own words, the reason BoW search scales to large galleries."""

    def __init__(self, histograms: sp.csr_matrix) -> None:
        by_word = histograms.tocsc()
        self.n_images = histograms.shape[0]
        self.indptr, self.images, self.weights = by_word.indptr, by_word.indices, by_word.data

    def scores(self, query: sp.csr_matrix) -> np.ndarray:
        """Cosine [images] of one tf-idf query row with every image."""
        out = np.zeros(self.n_images, np.float32)
        for word, weight in zip(query.indices, query.data):
            lo, hi = self.indptr[word], self.indptr[word + 1]
            np.add.at(out, self.images[lo:hi], weight * self.weights[lo:hi])
        return out


@dataclass
class BLCFIndex:
    """Vocabulary, idf and inverted file of one gallery's feature maps."""

    vocabulary: Vocabulary
    idf: np.ndarray
    histograms: sp.csr_matrix
    inverted: InvertedFile

    def query_scores(self, local: np.ndarray) -> np.ndarray:
        """Scores [images] of the local descriptors [m, C] of a query region."""
        q = tfidf(word_counts([self.vocabulary.assign(local)], self.vocabulary.size), self.idf)
        return self.inverted.scores(q)


def build_index(maps: FeatureMaps, words: int, seed: int = 0) -> BLCFIndex:
    """Learn the vocabulary on the gallery's own cells, assign every map, weight and index."""
    vocab = learn_vocabulary(maps.features, words, seed)
    assigned = vocab.assign(maps.features)
    counts = word_counts(np.split(assigned, maps.offsets[1:-1]), words)
    idf = inverse_document_frequency(counts)
    hist = tfidf(counts, idf)
    return BLCFIndex(vocab, idf, hist, InvertedFile(hist))


def load_or_build_index(gallery: str, config: EmbeddingConfig, maps: FeatureMaps, words: int,
                        log: Callable[[str], None] = print) -> BLCFIndex:
    """The cached index of ``gallery`` when it was built from the same files as ``maps`` with
    ``words`` words, else built and cached atomically."""
    digest = maps.digest
    path = maps_path(gallery, config).with_name(f"blcf-{words}.npz")
    if path.exists():
        with np.load(path, allow_pickle=False) as d:
            if str(d["digest"]) == digest:
                vocab = Vocabulary(Whitening(d["mean"], d["projection"]), d["centroids"])
                hist = sp.csr_matrix((d["data"], d["indices"], d["indptr"]), shape=tuple(d["shape"]))
                return BLCFIndex(vocab, d["idf"], hist, InvertedFile(hist))
    log(f"{gallery}: learning a BLCF vocabulary of {words} words on {len(maps.features)} local features")
    index = build_index(maps, words)
    h = index.histograms
    write_npz(path, mean=index.vocabulary.whitening.mean, projection=index.vocabulary.whitening.projection,
              centroids=index.vocabulary.centroids, idf=index.idf, data=h.data, indices=h.indices,
              indptr=h.indptr, shape=np.array(h.shape), digest=np.array(digest))
    return index


@register("blcf", "BLCF (bag of local conv features)")
@dataclass(frozen=True)
class BLCF(Reranker):
    """blcf_words: vocabulary size; 0 sizes it to the gallery (``auto_vocabulary_size``).
    fusion: weight of the tf-idf cosine of the query region's visual words added to the global
    cosine over the top_n (inf: the whole gallery ranked by the words alone, the original BLCF
    search, which lost 7 to 11 points on whole and cropped Paris validation queries)."""

    needs_image: ClassVar[bool] = True
    helps: ClassVar[str] = ("validation: +0.2 mAP on whole Paris photos, +0.8 on 30-70 % crops, fused with the "
                            "global score; a region query's words matter most when the box cuts the scene")
    blcf_words: int = tunable(0, "BLCF vocabulary size (default 0: sized to the gallery, e.g. 25000 on full datasets)")
    top_n: int = tunable(50)         # images re-ranked (fusion finite) or whose score is evidence (inf)
    fusion: float = tunable(BLCF_FUSION, f"blcf/local/spatial: weight of the method's score added to the global "
                                         f"cosine (default {BLCF_FUSION:g}, local {LOCAL_FUSION:g}, chosen on the "
                                         f"validation protocol; inf: the method's score alone, which lost on whole photos)")

    def label(self) -> str:
        return f"blcf{self.blcf_words or 'auto'}"

    def state_key(self) -> tuple:
        return (self.blcf_words,)

    def prepare(self, ctx):
        emb = ctx.embeddings
        maps = gallery_feature_maps(ctx.gallery, emb.config, emb.ids, ctx.embedder, ctx.progress, ctx.log)
        words = self.blcf_words or auto_vocabulary_size(len(maps.features))
        return load_or_build_index(ctx.gallery.name, emb.config, maps, words, ctx.log)

    def rerank(self, ranking, queries, regions, ctx, prepared):
        out, evidence = ranking.copy(), []
        for r, region in enumerate(regions):
            fmap, size = load_map(ctx.embedder, region.source)
            scores = prepared.query_scores(fmap[:, box_mask(fmap.shape[1:], region.box, size)].T)
            if math.isinf(self.fusion):              # BLCF search: the whole gallery by its words alone
                out[r] = rank_by_scores(scores[None], ranking[r:r + 1])[0]
            else:
                head = ranking[r, :self.top_n]
                key = fused(ctx.embeddings.vectors[head] @ queries[r], scores[head], self.fusion)
                out[r] = promote(ranking[r], self.top_n, key)
            evidence.append({int(i): (float(scores[i]), None) for i in out[r, :self.top_n]})
        return out, evidence
