"""The compressed indexes (faiss IVF-PQ and IVF-SQ): exact scores after re-scoring, nprobe tuned
by measured recall, filled in chunks from a memory-mapped store, and the checks every saved index has."""
from dataclasses import replace

import numpy as np
import pytest

from core.cache.descriptors import Embeddings
from core.config import EmbeddingConfig
from core.index import ExactIndex, IndexMismatch, SearchSettings, ivf, open_index, param_flags, recall_at
from core.index.ivf import default_lists, training_rows
from core.index.ivfpq import IvfPqIndex, IvfPqParams, default_sub_quantisers
from core.index.ivfsq import IvfSqIndex, IvfSqParams
from core.index.stored import RECALL_TARGET

CFG = EmbeddingConfig(pooling="gem", scales=(1.0,))
PARAMS = IvfPqParams(pq_m=8)
BACKENDS = [(IvfPqIndex, PARAMS), (IvfSqIndex, IvfSqParams())]


@pytest.fixture
def vectors():
    """3,000 unit vectors around 60 centres: neighbourhoods as real descriptors have them."""
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(60, 32)).astype(np.float32)
    v = centres[rng.integers(0, 60, 3000)] + 0.6 * rng.normal(size=(3000, 32)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def gallery(vectors: np.ndarray, directory, config: EmbeddingConfig = CFG, ids: list[str] | None = None) -> Embeddings:
    return Embeddings("toy", config, ids or [f"img{i:05d}.jpg" for i in range(len(vectors))], vectors, directory)


@pytest.mark.parametrize("backend, params", BACKENDS)
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_ivf_scores_are_exact_and_nprobe_is_tuned_by_recall(tmp_path, vectors, metric, backend, params):
    index = backend.build(gallery(vectors, tmp_path), metric, params)
    tuning = index.meta.tuning
    assert tuning.target_met and tuning.recall_at_10 >= RECALL_TARGET
    assert index.effort == next(t.effort for t in tuning.trials if min(t.recall_at_10, t.recall_at_100) >= RECALL_TARGET)
    q = vectors[:30] + 0.05 * np.random.default_rng(1).normal(size=(30, 32)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    idx, scores = index.search(q, 10)
    exact = ExactIndex(vectors, metric)
    assert recall_at(idx, exact.search(q, 10)[0], 10) >= 0.9
    own = exact.scores(q)[np.arange(30)[:, None], idx]            # re-scored from the vectors, not PQ distances
    np.testing.assert_allclose(scores, own, atol=1e-5)
    step = np.diff(scores, axis=1)
    assert (step <= 1e-6).all() if metric == "cosine" else (step >= -1e-6).all()


@pytest.mark.parametrize("backend, params", BACKENDS)
def test_ivf_is_filled_in_chunks_from_a_memory_map(tmp_path, vectors, monkeypatch, backend, params):
    path = tmp_path / "vectors.f32"
    stored = np.memmap(path, np.float32, "w+", shape=vectors.shape)
    stored[:] = vectors
    stored.flush()
    mapped = np.memmap(path, np.float32, "r", shape=vectors.shape)
    chunks = []
    original = ivf.np.ascontiguousarray

    def spy(a, *args, **kwargs):
        chunks.append(len(a))
        return original(a, *args, **kwargs)

    monkeypatch.setattr(ivf, "ADD_CHUNK", 700)
    monkeypatch.setattr(ivf, "TRAIN_SAMPLE", 1500)
    monkeypatch.setattr(ivf.np, "ascontiguousarray", spy)
    native = backend._build(mapped, "cosine", params)
    monkeypatch.undo()
    assert native.ntotal == len(vectors)
    assert max(chunks) == 1500 and chunks.count(700) >= len(vectors) // 700   # a sample, then chunks: never all
    index = backend.build(gallery(mapped, tmp_path), "cosine", params)
    assert isinstance(index.vectors, np.memmap)                      # re-scoring reads the store's map


def test_ivfpq_refuses_foreign_and_rebuilds_stale(tmp_path, vectors):
    emb = gallery(vectors, tmp_path)
    built = open_index(emb, SearchSettings("ivfpq", params=PARAMS))
    with pytest.raises(IndexMismatch, match="built with embedding .*--index ivfpq"):
        IvfPqIndex.load(gallery(vectors, tmp_path, replace(CFG, pooling="mac")), "cosine", PARAMS)
    with pytest.raises(IndexMismatch, match="dimension is 32"):
        open_index(gallery(np.zeros((len(vectors), 64), np.float32), tmp_path),
                   SearchSettings("ivfpq", params=PARAMS))
    ids = [f"img{i:05d}.jpg" for i in range(len(vectors) - 1)] + ["new.jpg"]
    rebuilt = open_index(gallery(vectors, tmp_path, ids=ids), SearchSettings("ivfpq", params=PARAMS))
    assert rebuilt.meta.ids_digest != built.meta.ids_digest
    low = open_index(gallery(vectors, tmp_path, ids=ids), SearchSettings("ivfpq", params=replace(PARAMS, nprobe=1)))
    assert low.effort == 1 and low.native is rebuilt.native


def test_ivfpq_parameters_and_lists():
    flags = {p.flag: p for p in param_flags()}
    assert flags["--nprobe"].effort and not flags["--nlist"].effort and flags["--pq-m"].kind is int
    assert default_lists(1_000_000) == ivf.MAX_LISTS and default_lists(10_000) == 100 and default_lists(20) == 1 and default_lists(100_000) == 256
    with pytest.raises(ValueError, match="pq_m"):
        IvfPqParams(pq_m=-1)
    assert default_sub_quantisers(1280) == 128 and default_sub_quantisers(500) == 125 and default_sub_quantisers(7) == 7
    assert flags["--bits"].kind is int and IvfSqParams().bits == 4
    with pytest.raises(ValueError, match="bits must be one of 4, 6, 8"):
        IvfSqParams(bits=5)


def test_ivfpq_refuses_a_pq_m_that_does_not_divide_the_dimension(tmp_path, vectors):
    with pytest.raises(ValueError, match="does not divide the dimension 32"):
        IvfPqIndex.build(gallery(vectors, tmp_path), "cosine", IvfPqParams(pq_m=12))


def test_auto_is_exact_then_hnsw_then_the_compressed_indexes_as_each_outgrows_memory():
    from core.index.choice import EXACT_UP_TO_MACS, INDEX_MEMORY_BYTES, default_method, hnsw_bytes, sq_bytes

    largest_hnsw = INDEX_MEMORY_BYTES // hnsw_bytes(1, 1280)
    largest_sq = INDEX_MEMORY_BYTES // sq_bytes(1, 1280)
    assert default_method(EXACT_UP_TO_MACS // 1280, 1280) == "exact"
    assert default_method(largest_hnsw, 1280) == "hnsw"
    assert default_method(largest_hnsw + 1, 1280) == "ivfsq" and default_method(1_000_000, 1280) == "ivfsq"
    assert default_method(largest_sq, 1280) == "ivfsq" and default_method(largest_sq + 1, 1280) == "ivfpq"
    assert default_method(1_000_000, 128) == "hnsw" and sq_bytes(1_000_000, 1280) == 648_000_000


def test_the_quantisers_learn_from_an_equal_share_of_each_stratum():
    rows = training_rows(1_000_250, (0, 250), np.random.default_rng(0))
    assert len(rows) == ivf.TRAIN_SAMPLE and (rows < 250).sum() == 250              # every benchmark photo
    assert len(set(rows.tolist())) == len(rows) and rows.max() < 1_000_250
    even = training_rows(200_000, (0, 100_000), np.random.default_rng(0))
    assert (even < 100_000).sum() == ivf.TRAIN_SAMPLE // 2
    assert sorted(training_rows(300, (0,), np.random.default_rng(0)).tolist()) == list(range(300))
