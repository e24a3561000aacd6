"""Sliding-window re-ranking: map geometry, window GeM from integral images, the best window of a
planted pattern, and the method against the plain global descriptor on the real Paris queries,
with its best windows in original pixels for the app."""
import numpy as np
import pytest
from conftest import REPO, TOLERANCE
from PIL import Image

from core.config import PLAIN_GEM
from core.images import Box, image_size
from core.rerank import create_reranker, list_rerankers
from core.rerank.featuremaps import box_mask, cells_to_box
from core.rerank.local import best_window, draw_window, promote, region_descriptor, window_sides
from core.search.engine import SearchEngine


def test_box_mask_keeps_cells_whose_centre_is_inside_and_cells_map_back_to_pixels():
    # 4x4 map over a 400x200 image: cell centres x = 50,150,250,350 and y = 25,75,125,175
    mask = box_mask((4, 4), Box(100, 50, 300, 150), (400, 200))
    assert np.argwhere(mask).tolist() == [[1, 1], [1, 2], [2, 1], [2, 2]]
    assert cells_to_box(1, 1, 2, 2, (4, 4), (400, 200)) == Box(100, 50, 300, 150)
    tiny = box_mask((4, 4), Box(10, 10, 20, 20), (400, 200))          # holds no centre
    assert np.argwhere(tiny).tolist() == [[0, 0]]


def test_region_descriptor_is_the_normalised_gem_of_the_masked_cells():
    fmap = np.zeros((2, 1, 3), np.float32)
    fmap[:, 0, 0], fmap[:, 0, 1], fmap[:, 0, 2] = (1, 2), (3, 0), (100, 100)
    mask = np.array([[True, True, False]])
    gem = np.array([((1 + 27) / 2) ** (1 / 3), (8 / 2) ** (1 / 3)])       # zeros clamp to ~0
    np.testing.assert_allclose(region_descriptor(fmap, mask), gem / np.linalg.norm(gem), rtol=1e-4)


def test_best_window_finds_a_planted_pattern_with_its_size():
    rng = np.random.default_rng(0)
    fmap = rng.uniform(0, 0.1, (16, 8, 8)).astype(np.float32)
    pattern = rng.uniform(0, 1, (16, 1, 1)).astype(np.float32)
    fmap[:, 2:4, 4:6] = pattern
    query = pattern[:, 0, 0] / np.linalg.norm(pattern)
    win = best_window(fmap, query, scales=(1.0, 0.5, 0.25))
    assert (win.top, win.left, win.height, win.width) == (2, 4, 2, 2)
    assert win.score > 0.999


def test_window_scores_from_integral_images_equal_direct_gem():
    rng = np.random.default_rng(1)
    fmap = rng.uniform(0, 1, (8, 5, 6)).astype(np.float32)
    query = rng.uniform(0, 1, 8).astype(np.float32)
    query /= np.linalg.norm(query)
    win = best_window(fmap, query, scales=(0.6,))                         # 3x4 windows only
    assert window_sides((5, 6), (0.6,)) == [(3, 4)]
    direct = max(float(query @ region_descriptor(fmap[:, t:t + 3, left:left + 4], np.ones((3, 4), bool)))
                 for t in range(3) for left in range(3))
    assert win.score == pytest.approx(direct, abs=1e-5)


def test_draw_window_outlines_the_window_scaled_to_the_thumbnail():
    thumb = Image.new("RGB", (100, 50), "black")                          # a 400x200 original at 1/4
    out = draw_window(thumb, Box(100, 40, 300, 120), (400, 200), colour="#ff0000", width=1)
    assert out.getpixel((25, 10)) == (255, 0, 0) and out.getpixel((74, 29)) == (255, 0, 0)
    assert out.getpixel((50, 20)) == (0, 0, 0) and thumb.getpixel((25, 10)) == (0, 0, 0)


def test_promote_reorders_the_head_only():
    row = np.array([5, 6, 7, 8, 9])
    assert promote(row, 3, np.array([0.1, 0.9, 0.1])).tolist() == [6, 5, 7, 8, 9]


def test_local_rerank_improves_or_preserves_paris_map(paris):
    paris.cache_feature_maps()
    plain, reranked = paris.map(paris.ranking), paris.rerank_map(create_reranker("local"))
    assert reranked >= plain - TOLERANCE, (reranked, plain)


def test_search_page_gets_best_windows_in_original_pixels(paris, paris_gt):
    paris.cache_feature_maps()
    engine = SearchEngine(paris.gallery, PLAIN_GEM, embedder=paris.embedder, embeddings=paris.emb)
    query = next(q for q in paris_gt.queries if q.name == "louvre_1")
    path = paris.gallery.root / f"{query.image}.jpg"
    reranked = engine.search(str(path), query.box, k=5, reranker=create_reranker("local", top_n=10))
    assert len(reranked.items) == 5 and reranked.rerank_label == "local10"
    for item in reranked.items:
        score, window = reranked.evidence[item.image_id]
        width, height = image_size(paris.gallery.root / item.image_id)
        assert 0 <= window.x1 < window.x2 <= width + 1e-6 and 0 <= window.y1 < window.y2 <= height + 1e-6
        assert -1 <= score <= 1 + 1e-6


def test_search_page_offers_the_methods_and_draws_best_windows(paris):
    from streamlit.testing.v1 import AppTest

    paris.cache_feature_maps()
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300).run()
    at.sidebar.selectbox(key="gallery").set_value(paris.gallery.name).run()
    assert len(at.sidebar.selectbox(key="rerank").options) == len(list_rerankers())
    at.sidebar.selectbox(key="rerank").set_value("local").run()
    at.button(key="search").click().run()
    assert not at.exception
    assert any("re-ranked by local windows, top_n = 50" in m.value for m in at.markdown)   # named in words
    shown = at.session_state["results"]                                   # what the thumbnails draw
    assert {item.image_id for item in shown.results.items} <= set(shown.windows)
