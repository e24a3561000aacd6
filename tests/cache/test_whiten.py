"""``Embeddings.whiten``: the one place queries are made comparable with a gallery's descriptors."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core.cache.descriptors import Embeddings
from core.config import EmbeddingConfig
from core.embed.whitening import learn_pca_whitening


def embeddings(whitening) -> Embeddings:
    return Embeddings("g", EmbeddingConfig(), ["a"], np.zeros((1, 8), np.float32), Path("."), whitening=whitening)


def test_queries_are_whitened_like_the_gallery_and_left_alone_without_whitening():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8)).astype(np.float32)
    w = learn_pca_whitening(x, dim=4)
    q = rng.normal(size=(3, 8)).astype(np.float32)
    whitened = embeddings(w).whiten(q)
    assert whitened.shape == (3, 4) and np.allclose(whitened, w.apply(q))
    assert np.allclose(np.linalg.norm(whitened, axis=1), 1.0)
    assert embeddings(None).whiten(q) is q
    assert embeddings(w).whiten(q[0]).shape == (4,)
