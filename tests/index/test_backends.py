"""HNSW beside Annoy with the same guarantees (refused when absent, stale, foreign or corrupted;
ef tuned by measured recall; loaded once per process), float16 exact search, the choice of
the default backend by gallery size, and the registry every caller opens indexes through."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import unit_vectors

from core.cache.descriptors import Embeddings
from core.config import EmbeddingConfig
from core.index import ExactIndex, IndexMismatch, SearchSettings, backend, open_index, param_flags, recall_at
from core.index import exact as exact_module
from core.index.annoy import AnnoyIndex, AnnoyParams
from core.index.choice import (
    EXACT_UP_TO_MACS,
    Measured,
    default_at_size,
    default_method,
    fastest_at_target,
    resolve_method,
)
from core.index.hnsw import HnswIndex, HnswParams
from core.index.stored import RECALL_SAMPLE, RECALL_TARGET, load_once, sample_queries, tune_by_recall

CFG = EmbeddingConfig(pooling="gem", scales=(1.0,))


@pytest.fixture
def vectors():
    return unit_vectors(2000, 48, seed=5)


@pytest.fixture
def ids(vectors):
    return [f"img{i:05d}.jpg" for i in range(len(vectors))]


def gallery(vectors: np.ndarray, ids: list[str], directory: Path, config: EmbeddingConfig = CFG,
            fingerprints: list[str] | None = None) -> Embeddings:
    return Embeddings("toy", config, ids, vectors, directory, fingerprints=fingerprints or [])


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_hnsw_scores_are_exact_scores_and_recall_is_measured(tmp_path, vectors, ids, metric):
    hn = HnswIndex.build(gallery(vectors, ids, tmp_path), metric, HnswParams())
    assert hn.meta.tuning.target_met and hn.meta.tuning.recall_at_10 >= RECALL_TARGET
    q = vectors[:20] + 0.02
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    idx, scores = hn.search(q, 10)
    exact = ExactIndex(vectors, metric)
    ex_i, _ = exact.search(q, 10)
    assert recall_at(idx, ex_i, 10) >= 0.9
    own = exact.scores(q)[np.arange(20)[:, None], idx]          # scores are the metric's, not hnswlib's distances
    np.testing.assert_allclose(scores, own, atol=1e-4)
    step = np.diff(scores, axis=1)
    assert (step <= 1e-6).all() if metric == "cosine" else (step >= -1e-6).all()
    trials = hn.meta.tuning.trials
    assert hn.effort == next(t.effort for t in trials if min(t.recall_at_10, t.recall_at_100) >= RECALL_TARGET)


def test_hnsw_refuses_foreign_stale_or_damaged_files(tmp_path, vectors, ids):
    params, emb = HnswParams(), gallery(vectors, ids, tmp_path)
    hn = HnswIndex.build(emb, "cosine", params)
    loaded = HnswIndex.load(emb, "cosine", params)
    np.testing.assert_array_equal(loaded.search(vectors[:3], 5)[0], hn.search(vectors[:3], 5)[0])
    with pytest.raises(IndexMismatch, match="built with embedding .*--index hnsw"):
        HnswIndex.load(gallery(vectors, ids, tmp_path, replace(CFG, pooling="mac")), "cosine", params)
    with pytest.raises(IndexMismatch, match="dimension is 48"):
        HnswIndex.load(gallery(np.zeros((len(ids), 64), np.float32), ids, tmp_path), "cosine", params)
    with pytest.raises(IndexMismatch, match="images changed") as stale:
        HnswIndex.load(gallery(vectors, ids[:-1] + ["new.jpg"], tmp_path), "cosine", params)
    assert stale.value.stale
    with pytest.raises(IndexMismatch, match="no HNSW index"):
        HnswIndex.load(emb, "cosine", HnswParams(m=8))
    path = tmp_path / HnswIndex.file_name("cosine", params)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF                                  # same size, one byte flipped
    path.write_bytes(bytes(data))
    with pytest.raises(IndexMismatch, match="SHA-256") as bad:
        HnswIndex.load(emb, "cosine", params)
    assert bad.value.stale                                        # damaged: rebuilt from the cache, never loaded
    path.write_bytes(bytes(data[:-100]))
    with pytest.raises(IndexMismatch, match="bytes"):
        HnswIndex.load(emb, "cosine", params)


def test_annoy_checks_its_file_too(tmp_path, vectors, ids):
    params, emb = AnnoyParams(n_trees=5), gallery(vectors[:300], ids[:300], tmp_path)
    AnnoyIndex.build(emb, "cosine", params)
    path = tmp_path / AnnoyIndex.file_name("cosine", params)
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(IndexMismatch, match="bytes"):
        AnnoyIndex.load(emb, "cosine", params)


@pytest.mark.parametrize("method", ["annoy", "hnsw"])
def test_a_photo_rewritten_under_the_same_name_makes_a_saved_index_stale(tmp_path, vectors, ids, method):
    """Issue 21, item 2: the index records the images' content fingerprints, not only their names,
    so an edited photo is searched with its new descriptor, never through the old index."""
    fps = [f"{i}:1:1:{i}" for i in range(len(ids))]
    built = open_index(gallery(vectors, ids, tmp_path, fingerprints=fps), SearchSettings(method))
    edited = vectors.copy()
    edited[7] = -vectors[7]                                         # img00007.jpg's content changed
    fps[7] = "7:2:2:7"                                              # ... and so did its fingerprint
    emb = gallery(edited, ids, tmp_path, fingerprints=fps)
    with pytest.raises(IndexMismatch, match="images changed") as stale:
        backend(method).load(emb, "cosine", backend(method).Params())
    assert stale.value.stale
    reopened = open_index(emb, SearchSettings(method))             # rebuilt from the cache, not the old file
    assert reopened.figures().tuning is not None and reopened is not built
    assert reopened.search(edited[7:8], 1)[0][0, 0] == 7            # the edited photo finds itself again


def test_every_backend_answers_the_same_interface(tmp_path, vectors, ids):
    emb = gallery(vectors[:400], ids[:400], tmp_path)
    q = vectors[:5]
    exact = open_index(emb, SearchSettings("exact")).search(q, 10)[0]
    for method in ("exact", "exact16", "annoy", "hnsw"):
        index = open_index(emb, SearchSettings(method))
        top, _ = index.search(q, 10)
        full = index.rank_all(q)
        assert full.shape == (5, 400) and (np.sort(full, axis=1) == np.arange(400)).all()
        assert recall_at(top, exact, 10) >= 0.9 and (full[:, 0] == np.arange(5)).all()
        figures = index.figures()
        assert figures.method == method and (figures.tuning is None) == index.exact
        assert index.saved == (figures.tuning is not None)


def test_the_search_effort_comes_from_the_backends_own_parameters(tmp_path, vectors, ids):
    emb = gallery(vectors, ids, tmp_path)
    tuned = open_index(emb, SearchSettings("hnsw"))
    low = open_index(emb, SearchSettings("hnsw", params=HnswParams(ef=10)))
    assert low.effort == 10 and tuned.effort == tuned.meta.tuning.effort
    assert low.native is tuned.native                               # one loaded graph, two efforts
    assert SearchSettings("annoy").resolved(10, 4).to_dict() == {"method": "annoy", "metric": "cosine", "n_trees": 25}
    with pytest.raises(TypeError, match="AnnoyParams"):
        SearchSettings("annoy", params=HnswParams())
    flags = {p.flag: p for p in param_flags()}
    assert flags["--ef"].effort and flags["--search-k"].effort and not flags["--n-trees"].effort
    assert flags["--n-trees"].default == AnnoyParams.n_trees


def test_an_index_is_loaded_once_per_process_until_its_file_changes(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"one")
    made = []
    first = load_once(path, lambda: made.append(1) or object())
    assert load_once(path, lambda: made.append(1) or object()) is first and len(made) == 1
    path.write_bytes(b"three")                                    # rewritten: a new copy
    assert load_once(path, lambda: made.append(1) or object()) is not first and len(made) == 2


def test_tune_by_recall_keeps_the_smallest_effort_reaching_the_target_at_10_and_100():
    truth = np.tile(np.arange(100), (4, 1))

    def search(q, k, effort):            # effort e finds the first e of the true top 100
        out = np.full((len(q), k), -1)
        found = np.arange(min(effort, 100))
        out[:, :min(k, len(found))] = found[:k]
        return out

    got = tune_by_recall(search, truth, np.zeros((4, 3)), [5, 9, 10, 96, 100])
    assert got.effort == 96 and got.recall_at_100 == 0.96            # 10 finds the top 10, not the top 100
    assert [t.effort for t in got.trials] == [5, 9, 10, 96]         # stops once both reach 0.95
    shallow = tune_by_recall(search, truth, np.zeros((4, 3)), [5, 9, 10, 20])
    assert shallow.effort == 10 and shallow.target_met              # recall@100 never reached: recall@10 decides
    none = tune_by_recall(search, truth, np.zeros((4, 3)), [2, 3])
    assert not none.target_met and none.effort == 3


def test_each_stratum_of_a_joined_gallery_gets_its_own_sample_queries_and_the_lowest_recall_decides():
    rows, sample, groups = sample_queries(np.eye(1000, 4, dtype=np.float32), strata=(0, 40))
    assert [len(g) for g in groups] == [40, RECALL_SAMPLE]                      # all 40 of the few, 100 of the rest
    assert (rows[groups[0]] < 40).all() and (rows[groups[1]] >= 40).all()
    truth = np.tile(np.arange(100), (4, 1))

    def search(q, k, effort):            # the last two queries (another stratum) need effort 50 to find anything
        out = np.tile(np.arange(k), (len(q), 1))
        out[2:] = -1 if effort < 50 else out[2:]
        return out

    one = tune_by_recall(search, truth, np.zeros((4, 3)), [1, 10, 50])
    both = tune_by_recall(search, truth, np.zeros((4, 3)), [1, 10, 50], [np.arange(2), np.arange(2, 4)])
    assert one.effort == 50 and one.trials[0].recall_at_10 == 0.5
    assert both.effort == 50 and both.trials[0].recall_at_10 == 0.0
    assert tune_by_recall(search, truth[:2], np.zeros((2, 3)), [1, 10, 50]).effort == 1


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_float16_exact_search_keeps_top_k_and_halves_memory(vectors, metric):
    q = vectors[:50] + 0.3 * np.random.default_rng(0).normal(size=(50, 48)).astype(np.float32) / 7
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    full, half = ExactIndex(vectors, metric), ExactIndex(vectors, metric, storage="float16")
    assert half.nbytes * 2 == full.nbytes
    fi, fs = full.search(q, 10)
    hi, hs = half.search(q, 10)
    assert recall_at(hi, fi, 10) >= 0.99
    np.testing.assert_allclose(hs, fs, atol=2e-3)
    assert (half.search(vectors[:5], 1)[0][:, 0] == np.arange(5)).all()   # an item finds itself first
    with pytest.raises(ValueError, match="storage"):
        ExactIndex(vectors, storage="int8")


def test_fastest_at_target_and_default_by_size():
    points = [Measured("exact", 3.0, 1.0), Measured("hnsw", 0.2, 0.97), Measured("annoy", 0.1, 0.90),
              Measured("annoy", 0.4, 0.96)]
    assert fastest_at_target(points) == Measured("hnsw", 0.2, 0.97)
    assert fastest_at_target(points, target=0.99) == Measured("exact", 3.0, 1.0)
    assert fastest_at_target([Measured("annoy", 0.1, 0.5)]) is None
    assert default_at_size(points) == Measured("hnsw", 0.2, 0.97)               # exact over the 1 ms budget
    cheap = [Measured("exact", 0.9, 1.0), Measured("hnsw", 0.05, 0.99)]
    assert default_at_size(cheap) == Measured("exact", 0.9, 1.0)                 # within it: exact, no build
    assert default_method(EXACT_UP_TO_MACS // 1280, 1280) == "exact"
    assert default_method(EXACT_UP_TO_MACS // 1280 + 1, 1280) == "hnsw"
    assert default_method(EXACT_UP_TO_MACS // 512, 512) == "exact"               # cost is n x dim
    assert resolve_method("auto", 10, 1280) == "exact" and resolve_method("annoy", 10**6, 512) == "annoy"
    with pytest.raises(ValueError, match="search method"):
        SearchSettings("faiss")


def test_cli_builds_and_searches_hnsw_and_auto_picks_exact_for_small_galleries(artifacts, tmp_path, capsys):
    from conftest import copy_paris_images

    from core.cli import main

    photos = copy_paris_images(tmp_path / "photos", 6)
    flags = ["--max-size", "96", "--pooling", "gem", "--scales", "1", "--quiet"]
    assert main(["index", "--folder", str(photos), "--name", "photos", *flags]) == 0
    assert "no index built: at 6 images exact search is within its time budget" in capsys.readouterr().out
    assert main(["index", "--name", "photos", "--index", "hnsw", *flags]) == 0
    assert "HNSW cosine: built in" in capsys.readouterr().out
    query = str(sorted(photos.iterdir())[2])
    tops = {}
    for method in ("hnsw", "auto", "exact16"):
        assert main(["search", query, "--name", "photos", "--search", method, "-k", "3", *flags]) == 0
        lines = [x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("1 ")]
        tops[method] = lines[0].split()[-1]
    assert set(tops.values()) == {sorted(p.name for p in photos.iterdir())[2]}    # the image finds itself
    assert main(["quantize", *flags]) == 2
    assert "choose the precision" in capsys.readouterr().err
    assert main(["quantize", "--precision", "int8", *flags]) == 2
    assert "--name GALLERY" in capsys.readouterr().err


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_exact_search_scores_queries_in_blocks_bounded_by_the_gallery_size(vectors, metric, monkeypatch):
    q = vectors[:37] + 0.1
    whole = ExactIndex(vectors, metric)
    top, ranks = whole.search(q, 15), whole.rank_all(q)
    assert whole.query_block() == exact_module.QUERY_BLOCK                                 # all 37 at once
    monkeypatch.setattr(exact_module, "SCORE_BLOCK_BYTES", 4 * len(vectors) * 5)         # 5 queries a block
    blocked = ExactIndex(vectors, metric)
    assert blocked.query_block() == 5
    np.testing.assert_array_equal(blocked.search(q, 15)[0], top[0])
    np.testing.assert_allclose(blocked.search(q, 15)[1], top[1], rtol=1e-6)
    np.testing.assert_array_equal(blocked.rank_all(q), ranks)
