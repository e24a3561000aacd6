"""The embedded demo gallery: built offline from scikit-image's bundled photos, with its own
ground truth in the Oxford/Paris format, and searchable with the real offline weights."""
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from core.app.catalog import gallery_ground_truth
from core.app.demo import (
    DEMO_NAME,
    PHOTOS,
    TRANSFORMS,
    build_demo_gallery,
    demo_ground_truth,
    demo_root,
    write_demo_images,
)
from core.app.labels import query_report
from core.cache.galleries import load_gallery
from core.config import DEFAULT_CONFIG
from core.datasets import stem_of
from core.progress import Reporter
from core.search.engine import SearchEngine

SMALL = replace(DEFAULT_CONFIG, max_size=256)      # same network, smaller inputs: a faster test


def test_demo_images_and_ground_truth(artifacts):
    images, gt_dir = write_demo_images()
    files = sorted(p.name for p in images.iterdir())
    assert len(files) == len(PHOTOS) * (1 + len(TRANSFORMS)) == 50
    stems = [p.split(".")[0] for p in PHOTOS]
    original, rotated = (Image.open(images / f"{stems[0]}{s}.jpg") for s in ("", "-rotate"))
    assert original.size != rotated.size and max(original.size) <= 640
    gt = demo_ground_truth()
    assert [q.image for q in gt.queries] == sorted(stems) and gt.notes == []
    for q in gt.queries:
        assert q.positives == {q.image, *(f"{q.image}-{t}" for t in TRANSFORMS)} == q.labels["good"]
        w, h = Image.open(images / f"{q.image}.jpg").size
        assert 0 < q.box.x1 < q.box.x2 < w and 0 < q.box.y1 < q.box.y2 < h
    mtimes = {p: p.stat().st_mtime_ns for p in images.iterdir()}
    write_demo_images()
    assert {p: p.stat().st_mtime_ns for p in images.iterdir()} == mtimes     # cache stays valid


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CBIR_ARTIFACTS", str(tmp_path_factory.mktemp("demo-artifacts")))
        progress = []
        gallery = build_demo_gallery(SMALL, reporter=Reporter(bar=False, on_progress=lambda d, n: progress.append((d, n)), log=lambda m: None))
        yield gallery, progress


def test_demo_gallery_is_registered_with_its_ground_truth(demo):
    gallery, progress = demo
    assert progress[-1] == (50, 50)
    assert load_gallery(DEMO_NAME) == gallery and gallery.root == demo_root() / "images"
    assert gallery.dataset == DEMO_NAME and len(gallery_ground_truth(gallery).queries) == len(PHOTOS)


def test_demo_queries_find_their_copies_first(demo):
    gallery, _ = demo
    engine = SearchEngine(gallery, SMALL)
    aps = []
    for q in gallery_ground_truth(gallery).queries:
        results = engine.search(str(gallery.root / f"{q.image}.jpg"), q.box, k=len(engine.embeddings.ids))
        assert stem_of(results.items[0].image_id) in q.positives
        ranking = [r.index for r in results.items]
        aps.append(query_report(q, ranking[:5], ranking, engine.embeddings.ids, 5).ap)
    assert np.mean(aps) >= 0.9, aps
