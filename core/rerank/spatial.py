"""Spatial verification of the top-N with local features (Philbin et al. 2007), the classic
baseline of instance search: SIFT or ORB keypoints (OpenCV), Lowe's ratio test, a RANSAC
homography, and the number of inliers as the score of an image.

Two photos of the same facade share many matches that one planar transform explains; two
similar-looking but different buildings share matches that no single transform does. Images
with at least ``min_inliers`` inliers move to the head of the top-N, most inliers first; the
others keep their order after them, so an unverifiable query (few features, a textureless
crop) leaves the ranking as it was.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from core.images import Box, ImageSource, load_region
from core.rerank.base import Reranker, register
from core.rerank.local import fused, promote
from core.rerank.tunable import tunable

N_FEATURES = 1000          # keypoints per image: enough for a facade at 512 px, cheap to match
RATIO = 0.8                # Lowe's ratio test
RANSAC_PIXELS = 6.0        # reprojection threshold at max side 512 (about 1 % of the image)
MIN_MATCHES = 4            # a homography needs four correspondences
INLIER_CAP = 50            # inliers beyond this add nothing to the fused score
# Inlier score weight added to the global cosine over the top-N, chosen on the validation protocol
# (benchmarks/region_sweep.py): 0.1 gained on whole (+0.1) and cropped (+0.3) Paris queries;
# promoting verified images (inf) lost 0.8 and 0.9 points.
SPATIAL_FUSION = 0.1


def _cv2():
    try:
        import cv2
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError("spatial verification needs OpenCV: pip install opencv-python-headless") from exc
    return cv2


@dataclass(frozen=True)
class LocalFeatures:
    points: np.ndarray             # [k, 2] float32 pixel coordinates in the loaded image
    descriptors: np.ndarray | None  # [k, 128] float32 (SIFT) or [k, 32] uint8 (ORB); None if no keypoint


def extract(source: ImageSource, kind: str = "sift", box: Box | None = None,
            max_size: int = 512, n_features: int = N_FEATURES) -> LocalFeatures:
    """Keypoints and descriptors of an image (cropped by ``box`` in original pixels), decoded at
    longer side ``max_size`` in grey."""
    cv2 = _cv2()
    gray = np.asarray(load_region(source, max_size, box).convert("L"))
    detector = cv2.SIFT_create(nfeatures=n_features) if kind == "sift" else cv2.ORB_create(nfeatures=n_features)
    keypoints, descriptors = detector.detectAndCompute(gray, None)
    points = np.array([k.pt for k in keypoints], np.float32).reshape(-1, 2)
    return LocalFeatures(points, descriptors)


def count_inliers(a: LocalFeatures, b: LocalFeatures, kind: str = "sift", ratio: float = RATIO,
                  reprojection: float = RANSAC_PIXELS) -> int:
    """RANSAC-homography inliers among the ratio-test matches from ``a`` to ``b`` (0 when fewer
    than four matches survive)."""
    if a.descriptors is None or b.descriptors is None or len(a.points) < 2 or len(b.points) < 2:
        return 0
    cv2 = _cv2()
    matcher = cv2.BFMatcher(cv2.NORM_L2 if kind == "sift" else cv2.NORM_HAMMING)
    pairs = matcher.knnMatch(a.descriptors, b.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    if len(good) < MIN_MATCHES:
        return 0
    src = a.points[[m.queryIdx for m in good]]
    dst = b.points[[m.trainIdx for m in good]]
    _, mask = cv2.findHomography(src, dst, cv2.RANSAC, reprojection)
    return int(mask.sum()) if mask is not None else 0


def verified_order(inliers: np.ndarray, min_inliers: int) -> np.ndarray:
    """Scores that put verified images (``inliers`` >= ``min_inliers``) first, most inliers
    first, and leave the unverified in their order (equal scores, stable sort)."""
    return np.where(inliers >= min_inliers, inliers, -1).astype(np.float64)


def inlier_score(inliers: np.ndarray, cap: int = INLIER_CAP) -> np.ndarray:
    """Inliers as a score in [0, 1] for fusion with the global cosine: min(inliers, cap) / cap."""
    return np.minimum(np.asarray(inliers, np.float64), cap) / cap


def spatial_rerank(row: np.ndarray, query: LocalFeatures, features_of: Callable[[int], LocalFeatures],
                   top_n: int, kind: str = "sift", min_inliers: int = 15, cosines: np.ndarray | None = None,
                   weight: float = math.inf) -> tuple[np.ndarray, dict[int, int]]:
    """Re-rank the first ``top_n`` of ranking ``row`` by verified inliers with ``query``'s
    features; ``features_of(i)`` gives gallery image i's. ``weight`` = inf: verified images
    first (``verified_order``); finite: the global ``cosines`` [top_n] plus ``weight`` ×
    ``inlier_score``. Returns the row and inliers per image."""
    inliers = {int(i): count_inliers(query, features_of(int(i)), kind) for i in row[:top_n]}
    counts = np.array([inliers[int(i)] for i in row[:top_n]])
    if math.isinf(weight):
        return promote(row, top_n, verified_order(counts, min_inliers)), inliers
    return promote(row, top_n, fused(cosines, inlier_score(counts), weight)), inliers


@register("spatial", "spatial verification (SIFT + RANSAC)")
@dataclass(frozen=True)
class SpatialVerification(Reranker):
    """top_n: images verified (the rest keep their order); local_features: "sift" or "orb";
    min_inliers: RANSAC inliers needed for an image to count as verified. Gallery features are
    extracted when first needed and kept (the top-Ns of related queries overlap)."""

    needs_image: ClassVar[bool] = True
    helps: ClassVar[str] = ("validation: +0.3 mAP on 30-70 % crops of Paris photos and +0.1 on whole ones, fused "
                            "with the global score (promoting verified images alone lost 0.8 and 0.9); for planar "
                            "facades seen from another angle")
    top_n: int = tunable(50)
    local_features: str = tunable("sift", "spatial verification features (default {default})", ("sift", "orb"))
    min_inliers: int = 15
    fusion: float = tunable(SPATIAL_FUSION)

    def __post_init__(self) -> None:
        if self.local_features not in ("sift", "orb"):
            raise ValueError(f"local features must be 'sift' or 'orb', got {self.local_features!r}")

    def label(self) -> str:
        return f"spatial-{self.local_features}{self.top_n}"

    def state_key(self) -> tuple:
        return (self.local_features,)

    def prepare(self, ctx):
        return {}                      # gallery index -> LocalFeatures, filled on demand

    def rerank(self, ranking, queries, regions, ctx, prepared):
        emb, max_size = ctx.embeddings, ctx.embeddings.config.max_size

        def features_of(i: int) -> LocalFeatures:
            if i not in prepared:
                prepared[i] = extract(ctx.gallery.root / emb.ids[i], self.local_features, None, max_size)
            return prepared[i]

        out, evidence = ranking.copy(), []
        for r, region in enumerate(regions):
            query = extract(region.source, self.local_features, region.box, max_size)
            cosines = emb.vectors[ranking[r, :self.top_n]] @ queries[r]
            out[r], inliers = spatial_rerank(ranking[r], query, features_of, self.top_n, self.local_features,
                                             self.min_inliers, cosines, self.fusion)
            evidence.append({i: (float(n), None) for i, n in inliers.items()})
        return out, evidence
