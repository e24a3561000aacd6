"""One SearchEngine serves every app session: concurrent searches must give the same, independent
results as sequential ones, and memory must stay flat over hundreds of searches."""
import resource
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import copy_paris_images

from core.cache.descriptors import build_embeddings
from core.cache.galleries import register_gallery
from core.config import EmbeddingConfig
from core.index import SearchSettings
from core.progress import Reporter
from core.search.engine import SearchEngine

CFG = EmbeddingConfig(max_size=128)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    folder = copy_paris_images(tmp_path_factory.mktemp("concurrent"), step=10)
    g = register_gallery("concurrent", folder)
    build_embeddings(g, CFG, reporter=Reporter.quiet())
    return SearchEngine(g, CFG)


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 1e6


def test_concurrent_searches_match_sequential_ones(engine):
    ids = engine.embeddings.ids
    jobs = [(engine.gallery.root / ids[i], [10 + i, 5, 120, 90 + i], method, metric)
            for i in range(len(ids)) for method, metric in (("exact", "cosine"), ("annoy", "euclidean"))]
    sequential = [engine.search(str(p), box, k=5, settings=SearchSettings(m, me)) for p, box, m, me in jobs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(lambda job: engine.search(str(job[0]), job[1], k=5,
                                                             settings=SearchSettings(job[2], job[3])), jobs))
    for a, b in zip(sequential, concurrent):
        assert [r.image_id for r in a.items] == [r.image_id for r in b.items]
        np.testing.assert_allclose([r.score for r in a.items], [r.score for r in b.items], atol=1e-5)


def test_memory_stays_flat_over_hundreds_of_searches(engine):
    vecs = engine.embeddings.vectors
    for _ in range(50):                                          # warm-up: caches, allocator pools
        engine.index(SearchSettings("annoy")).search(vecs[0], 10)
    before = _rss_mb()
    for i in range(400):
        engine.index(SearchSettings("annoy" if i % 2 else "exact")).search(vecs[i % len(vecs)], 10)
    for i in range(40):
        engine.search(str(engine.gallery.root / engine.embeddings.ids[i % len(vecs)]), k=10)
    assert _rss_mb() - before < 60, (before, _rss_mb())
