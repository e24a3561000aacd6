"""The fast paths give the same results as the plain ones: the batched extraction pipeline and
OpenVINO against the one-image-at-a-time PyTorch loop, the Dask engine's cache against a local
one, the all-queries metrics against ``score_query``. No test here measures a time."""
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import PARIS, require_shared

from core.config import EmbeddingConfig
from core.embed.backbones import create_backbone
from core.embed.embedder import Embedder, shape_batches
from core.embed.pooling import pool
from core.evaluation.metrics import score_queries, score_query
from core.images import load_image, to_tensor

CFG = EmbeddingConfig(pooling="gem", scales=(1.0,), max_size=128)   # what ``naive`` computes


def paris_files(n):
    require_shared()
    return [str(p) for p in sorted((PARIS / "jpg").glob("*.jpg"))[:n]]


def naive(config, paths):
    model = create_backbone(config.backbone, config.weights)
    with torch.no_grad():
        return np.stack([F.normalize(pool(model(to_tensor(load_image(p, config.max_size))[None]), config.pooling,
                                          config.gem_p), dim=1)[0].numpy() for p in paths])


@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_pipeline_matches_naive_loop_and_skips_unreadable(backend, tmp_path):
    if backend == "openvino":
        pytest.importorskip("openvino")
    paths = paris_files(7)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    embedder = Embedder(CFG, backend=backend)
    got = dict(embedder.iter_files(paths[:4] + [str(broken)] + paths[4:], workers=1, batch_size=3, progress=False))
    assert isinstance(got.pop(4), str)
    fast = np.stack([got[i] for i in sorted(got)])
    cosine = (fast * naive(CFG, paths)).sum(axis=1)
    assert cosine.min() >= 0.999


def test_openvino_matches_torch_for_queries_and_multiscale():
    pytest.importorskip("openvino")
    cfg = EmbeddingConfig(backbone="mobilenet_v2", scales=(1.0, 0.5), max_size=160)
    path = paris_files(1)[0]
    box = (100, 50, 600, 500)
    a = Embedder(cfg, backend="torch").embed_image(path, box)
    b = Embedder(cfg, backend="openvino").embed_image(path, box)
    assert float(a @ b) >= 0.999


def test_shape_batches_never_mix_shapes():
    shapes = [(3, 4), (4, 3), (3, 4), None, (3, 4), (4, 3), None]
    batches = shape_batches(shapes, batch_size=2)
    assert sorted(i for b in batches for i in b) == list(range(len(shapes)))
    for b in batches:
        assert len(b) <= 2 and len({shapes[i] for i in b}) == 1
        assert None not in {shapes[i] for i in b} or len(b) == 1


def test_dask_engine_writes_the_local_cache(artifacts, tmp_path):
    pytest.importorskip("dask.distributed")
    from core.cache.descriptors import load_embeddings
    from core.cli import main

    folder = tmp_path / "photos"
    folder.mkdir()
    for p in paris_files(6):
        shutil.copy(p, folder / p.split("/")[-1])
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    flags = ["--max-size", "96", "--pooling", "gem", "--scales", "1", "--index", "none", "--quiet"]
    assert main(["index", "--name", "viadask", "--folder", str(folder), "--engine", "dask", "--dask-workers", "2",
                 *flags]) == 0
    assert main(["index", "--name", "local", "--folder", str(folder), *flags]) == 0
    cfg = EmbeddingConfig(pooling="gem", scales=(1.0,), max_size=96)
    remote, local = load_embeddings("viadask", cfg), load_embeddings("local", cfg)
    assert remote.ids == local.ids and len(remote.ids) == 6
    assert set(remote.failures) == set(local.failures) == {"broken.jpg"}
    assert remote.meta["complete"]
    assert (remote.vectors * local.vectors).sum(axis=1).min() >= 0.999


def random_case(rng, n_queries, n_images):
    rankings = np.stack([rng.permutation(n_images) for _ in range(n_queries)])
    positives = [rng.choice(n_images, rng.integers(0, 30), replace=False) for _ in range(n_queries)]
    junk = [rng.choice(n_images, rng.integers(0, 20), replace=False) for _ in range(n_queries)]
    return rankings, positives, junk


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_score_queries_equals_score_query(seed):
    rng = np.random.default_rng(seed)
    rankings, positives, junk = random_case(rng, 25, 300)
    positives[0] = []                                       # no relevant image
    junk[1] = list(positives[1][:3]) + list(junk[1])       # junk that is also listed positive
    rankings[2] = np.concatenate([positives[2], np.setdiff1d(np.arange(300), positives[2])])  # perfect
    ks = (1, 5, 10, 100)
    for one, many in zip((score_query(r, p, j, ks) for r, p, j in zip(rankings, positives, junk)),
                         score_queries(rankings, positives, junk, ks)):
        for name in ("ap", "ap_interp11", "ndcg"):
            assert getattr(many, name) == pytest.approx(getattr(one, name), abs=1e-12)
        assert many.first_relevant == one.first_relevant and many.n_relevant == one.n_relevant
        assert many.precision_at == pytest.approx(one.precision_at)
        assert many.recall_at == pytest.approx(one.recall_at)
        assert many.top_k == one.top_k
        np.testing.assert_allclose(many.precision, one.precision)
        np.testing.assert_allclose(many.recall, one.recall)


def test_score_queries_on_partial_rankings():
    rng = np.random.default_rng(5)
    rankings, positives, junk = random_case(rng, 10, 200)
    top = rankings[:, :50]
    for one, many in zip((score_query(r, p, j) for r, p, j in zip(top, positives, junk)),
                         score_queries(top, positives, junk)):
        assert many.ap == pytest.approx(one.ap) and many.ndcg == pytest.approx(one.ndcg)
        assert many.ap_interp11 == pytest.approx(one.ap_interp11)
