"""Local re-ranking of the top-N by sliding windows over feature maps (as in the re-ranking
step of Mohedano et al. 2016 and R-MAC's region search, Tolias et al. 2016).

A global descriptor pools the whole image, so a landmark filling a quarter of a photo is
diluted by everything around it. Here each top-N image is scored by its best window instead:
windows of several sizes slide over its feature map with a stride of one cell, each is GeM-pooled
and compared (cosine) with the GeM of the query region, and the top-N is re-ordered by the best
window's score. GeM of any window is read from an integral image of x^p in four look-ups, so
all windows of all sizes of a map cost about one pass over it.

The best window is returned in the image's original pixels, for the app to draw.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from PIL import Image, ImageDraw

from core.embed.pooling import EPS as POOL_EPS
from core.embed.pooling import gem, l2_normalise
from core.images import Box
from core.rerank.base import Reranker, register
from core.rerank.featuremaps import MapSource, box_mask, cells_to_box, load_map
from core.rerank.tunable import tunable

GEM_P = 3.0
# Window score weight added to the global cosine over the top-N, chosen on the validation protocol
# (benchmarks/region_sweep.py): the largest weight that gains on both whole (+0.05) and cropped
# (+1.0) Paris queries; the best window alone (inf) lost 0.75 points on whole ones.
LOCAL_FUSION = 0.5


def region_descriptor(fmap: np.ndarray, mask: np.ndarray, p: float = GEM_P) -> np.ndarray:
    """L2-normalised GeM [C] of the cells of ``fmap`` [C, h, w] where ``mask`` [h, w] is True."""
    cells = torch.from_numpy(np.ascontiguousarray(fmap[:, mask], np.float64))[None, :, :, None]
    return l2_normalise(gem(cells, p)[0].numpy())


def integral_power(fmap: np.ndarray, p: float = GEM_P) -> np.ndarray:
    """[h+1, w+1, C] integral image of max(x, EPS)^p of a [C, h, w] map, channels last so that
    window sums are contiguous (float64: window sums are differences of large cumulative sums)."""
    c, h, w = fmap.shape
    x = np.clip(fmap, POOL_EPS, None).transpose(1, 2, 0).astype(np.float64)
    out = np.zeros((h + 1, w + 1, c), np.float64)
    out[1:, 1:] = (x * x * x if p == 3.0 else x ** p).cumsum(0).cumsum(1)
    return out


def window_sides(shape: tuple[int, int], scales: Sequence[float]) -> list[tuple[int, int]]:
    """Distinct window (height, width) in cells: every pair of ``scales`` fractions of the map
    height and width, at least one cell."""
    h, w = shape
    sides = {(max(1, round(a * h)), max(1, round(b * w))) for a in scales for b in scales}
    return sorted(sides, reverse=True)


@dataclass(frozen=True)
class Window:
    score: float           # cosine of the window's GeM with the query region's
    top: int               # in map cells
    left: int
    height: int
    width: int


def best_window(fmap: np.ndarray, query: np.ndarray, scales: Sequence[float], p: float = GEM_P) -> Window:
    """The window of ``fmap`` [C, h, w] whose GeM is closest (cosine) to ``query`` [C]."""
    integral = integral_power(fmap, p)
    best = Window(-np.inf, 0, 0, *fmap.shape[1:])
    for a, b in window_sides(fmap.shape[1:], scales):
        sums = integral[a:, b:] - integral[:-a, b:] - integral[a:, :-b] + integral[:-a, :-b]
        mean = np.maximum(sums, 0.0).astype(np.float32) / (a * b)      # differences in float64, then float32
        gem = np.cbrt(mean) if p == 3.0 else mean ** np.float32(1.0 / p)  # [h-a+1, w-b+1, C]
        cos = (gem @ query) / np.maximum(np.linalg.norm(gem, axis=2), 1e-12)
        y, x = np.unravel_index(int(np.argmax(cos)), cos.shape)
        if cos[y, x] > best.score:
            best = Window(float(cos[y, x]), int(y), int(x), a, b)
    return best


def fused(cosines: np.ndarray, scores: np.ndarray, weight: float) -> np.ndarray:
    """The region methods' ordering key: the global cosine plus ``weight`` × the method's own
    score, or that score alone for ``weight`` = inf. The method alone throws away the global
    descriptor's evidence, which is better than a window's or a bag of words' on whole-image
    queries (the validation protocol's finding, README "Re-ranking"); fused, it only breaks
    near-ties of the global ranking."""
    scores = np.asarray(scores, np.float64)
    return scores if math.isinf(weight) else np.asarray(cosines, np.float64) + weight * scores


def promote(row: np.ndarray, top_n: int, scores: np.ndarray) -> np.ndarray:
    """One ranking with its first ``top_n`` reordered by ``scores`` [top_n] (higher first, stable
    on ties) and the tail unchanged."""
    head = row[:top_n]
    return np.concatenate([head[np.argsort(-np.asarray(scores), kind="stable")], row[top_n:]]).astype(row.dtype)


def local_rerank(row: np.ndarray, query: np.ndarray,
                 map_of: Callable[[int], tuple[np.ndarray, tuple[int, int]]], top_n: int,
                 scales: Sequence[float], p: float = GEM_P, cosines: np.ndarray | None = None,
                 weight: float = math.inf) -> tuple[np.ndarray, dict[int, tuple[float, Box]]]:
    """Re-rank the first ``top_n`` of one ranking ``row`` by best-window score against the query
    region descriptor ``query`` [C], ``fused`` with the global ``cosines`` [top_n] by ``weight``.
    ``map_of(i)`` gives gallery image i's map [C, h, w] and original (width, height). Returns the
    new row and, per re-ranked image, its window score and best window in original pixels."""
    head = row[:top_n]
    found: dict[int, tuple[float, Box]] = {}
    for i in head:
        fmap, size = map_of(int(i))
        win = best_window(fmap, query, scales, p)
        found[int(i)] = (win.score, cells_to_box(win.top, win.left, win.height, win.width, fmap.shape[1:], size))
    scores = np.array([found[int(i)][0] for i in head])
    return promote(row, top_n, fused(cosines if cosines is not None else 0.0, scores, weight)), found


def draw_window(img: Image.Image, window: Box, original_size: tuple[int, int], colour: str = "#ffd400",
                width: int = 3) -> Image.Image:
    """Copy of ``img`` (the original image at any scale) with ``window`` (original pixels)
    outlined, for the search page to show where a result matched the query region."""
    sx, sy = img.width / original_size[0], img.height / original_size[1]
    out = img.convert("RGB")
    ImageDraw.Draw(out).rectangle([window.x1 * sx, window.y1 * sy, max(window.x1 * sx, window.x2 * sx - 1),
                                   max(window.y1 * sy, window.y2 * sy - 1)], outline=colour, width=width)
    return out


@register("local", "local windows (best window drawn)")
@dataclass(frozen=True)
class LocalWindows(Reranker):
    """top_n: images re-ranked by their best window; window_scales: window sides as fractions of
    the map height and width. Reads the gallery's feature-map cache when there is one, else
    computes only the top-N's maps."""

    needs_image: ClassVar[bool] = True
    helps: ClassVar[str] = ("validation: +1.0 mAP on 30-70 % crops of Paris photos and +0.05 on whole ones, fused "
                            "with the global score (the best window alone lost 0.75 on whole photos); it draws "
                            "where each result matched the box")
    top_n: int = tunable(50, "images re-ranked by blcf/local/spatial (default {default}), by superglobal/kreciprocal "
                                 "(default 0: by the gallery-size rule / at most 1000)")
    window_scales: tuple[float, ...] = (1.0, 0.75, 0.5, 0.35)
    fusion: float = tunable(LOCAL_FUSION)

    def __post_init__(self) -> None:
        object.__setattr__(self, "window_scales", tuple(float(s) for s in self.window_scales))

    def label(self) -> str:
        return f"local{self.top_n}"

    def state_key(self) -> tuple:
        return ()

    def prepare(self, ctx):
        emb = ctx.embeddings
        return MapSource.cached_or_lazy(ctx.gallery, emb.config, emb.ids, ctx.embedder)

    def rerank(self, ranking, queries, regions, ctx, prepared):
        out, evidence = ranking.copy(), []
        for r, region in enumerate(regions):
            fmap, size = load_map(ctx.embedder, region.source)
            query = region_descriptor(fmap, box_mask(fmap.shape[1:], region.box, size))
            cosines = ctx.embeddings.vectors[ranking[r, :self.top_n]] @ queries[r]
            out[r], found = local_rerank(ranking[r], query, prepared, self.top_n, self.window_scales,
                                         cosines=cosines, weight=self.fusion)
            evidence.append(found)
        return out, evidence
