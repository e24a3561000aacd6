"""The descriptor cache: resume after a killed run, unreadable files skipped and reported,
atomic files, refusal of a foreign cache. Real Paris images and real offline weights, small size."""
import shutil

import numpy as np
import pytest
from conftest import copy_paris_images

import core.cache.descriptors as store
from core.cache.descriptors import CacheError, build_embeddings, cache_dir, load_embeddings
from core.cache.galleries import register_gallery
from core.config import EmbeddingConfig
from core.embed.embedder import Embedder
from core.progress import Reporter

CFG = EmbeddingConfig(pooling="gem", scales=(1.0,), max_size=96)


@pytest.fixture(scope="module")
def embedder():
    return Embedder(CFG)


@pytest.fixture
def folder(tmp_path):
    return copy_paris_images(tmp_path / "photos", 6)


class CountingEmbedder:
    """Wraps an Embedder, counts embedded files, and can die after ``die_after`` of them."""

    def __init__(self, inner, die_after=None):
        self.inner, self.die_after, self.count = inner, die_after, 0

    def iter_files(self, paths, **kw):
        for item in self.inner.iter_files(paths, **kw):
            if self.die_after is not None and self.count == self.die_after:
                raise KeyboardInterrupt("killed")
            self.count += 1
            yield item


def test_killed_run_resumes_without_recomputing(artifacts, folder, embedder, monkeypatch):
    monkeypatch.setattr(store, "CHECKPOINT_SECONDS", 0.0)       # checkpoint after every image
    g = register_gallery("photos", folder)
    dying = CountingEmbedder(embedder, die_after=4)
    with pytest.raises(KeyboardInterrupt):
        build_embeddings(g, CFG, dying, reporter=Reporter.quiet())
    partial = load_embeddings("photos", CFG)
    assert 1 <= len(partial.ids) <= 4 and partial.meta["complete"] is False
    again = CountingEmbedder(embedder)
    full = build_embeddings(g, CFG, again, reporter=Reporter.quiet())
    assert again.count == 6 - len(partial.ids)
    assert len(full.ids) == 6 and full.meta["complete"] is True
    fresh = embedder.embed_image(folder / full.ids[0])
    np.testing.assert_allclose(full.vectors[0], fresh, atol=1e-5)
    leftovers = [p.name for p in cache_dir("photos", CFG).iterdir() if ".tmp" in p.name]
    assert leftovers == []


def test_unreadable_files_are_skipped_reported_and_not_retried(artifacts, folder, embedder):
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    (folder / "empty.png").write_bytes(b"")
    logs = []
    g = register_gallery("photos", folder)
    emb = build_embeddings(g, CFG, embedder, reporter=Reporter(bar=False, log=logs.append))
    assert len(emb.ids) == 6
    assert set(emb.failures) == {"broken.jpg", "empty.png"}
    assert "not an image" in emb.failures["broken.jpg"]
    assert any("skipped broken.jpg" in m for m in logs)
    counting = CountingEmbedder(embedder)
    build_embeddings(g, CFG, counting, reporter=Reporter.quiet())
    assert counting.count == 0                                   # nothing changed, nothing re-read


def test_missing_cache_names_the_build_command(artifacts):
    with pytest.raises(CacheError, match="python -m core index --name nowhere .*--pooling gem"):
        load_embeddings("nowhere", CFG)


def test_foreign_config_in_cache_dir_is_refused(artifacts, folder, embedder):
    g = register_gallery("photos", folder)
    build_embeddings(g, CFG, embedder, reporter=Reporter.quiet())
    other = EmbeddingConfig(max_size=97)
    shutil.copytree(cache_dir("photos", CFG), cache_dir("photos", other))
    with pytest.raises(CacheError, match="holds config"):
        load_embeddings("photos", other)


def test_whitening_learned_on_gallery_is_recorded(artifacts, folder, embedder):
    g = register_gallery("photos", folder)
    cfg = EmbeddingConfig(max_size=96, whitening="gallery", whiten_dim=4)
    emb = build_embeddings(g, cfg, embedder, reporter=Reporter.quiet())
    assert emb.dim == 4 and emb.whitening is not None
    assert emb.meta["whitening_learned_on"] == {"gallery": "photos", "n": 6}
    np.testing.assert_allclose(np.linalg.norm(emb.vectors, axis=1), 1.0, atol=1e-5)
