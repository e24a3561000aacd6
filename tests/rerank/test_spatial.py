"""Spatial verification with OpenCV local features on real images, and its effect on the
Paris queries against the plain global descriptor."""
import numpy as np
import pytest
from conftest import PARIS, TOLERANCE

from core.images import Box
from core.rerank import create_reranker
from core.rerank.spatial import count_inliers, extract, verified_order

MIN_INLIERS = create_reranker("spatial").min_inliers


@pytest.mark.parametrize("kind", ["sift", "orb"])
def test_a_crop_verifies_against_its_image_and_not_against_another_landmark(kind):
    image = PARIS / "jpg" / "paris_defense_000056.jpg"
    crop = extract(image, kind, Box(200, 150, 800, 600))
    assert count_inliers(crop, extract(image, kind), kind) >= 2 * MIN_INLIERS
    assert count_inliers(crop, extract(PARIS / "jpg" / "paris_eiffel_000266.jpg", kind), kind) < MIN_INLIERS


def test_verified_images_lead_by_inliers_and_the_rest_keep_their_order():
    scores = verified_order(np.array([3, 40, 0, 20, 14]), min_inliers=15)
    assert np.argsort(-scores, kind="stable").tolist() == [1, 3, 0, 2, 4]


def test_spatial_verification_improves_or_preserves_paris_map(paris):
    plain, reranked = paris.map(paris.ranking), paris.rerank_map(create_reranker("spatial"))
    assert reranked >= plain - TOLERANCE, (reranked, plain)
