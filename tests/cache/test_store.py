"""The append-only descriptor store: round trips, a SIGKILL during appends, migration of the
single-file caches of earlier versions, and incremental updates that touch only new rows."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO, copy_paris_images, write_legacy_cache

from core.cache import store
from core.cache.descriptors import LEGACY_NPZ, build_embeddings, cache_dir, load_embeddings
from core.cache.galleries import register_gallery
from core.config import EmbeddingConfig
from core.embed.whitening import learn_pca_whitening
from core.files import write_json, write_npz
from core.progress import Reporter

CFG = EmbeddingConfig(pooling="gem", scales=(1.0,), max_size=96)


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_appended_rows_read_back_memory_mapped(tmp_path):
    rng = np.random.default_rng(0)
    a, b = _unit(rng, 5, 8), _unit(rng, 3, 8)
    store.append(tmp_path, [f"a{i}" for i in range(5)], ["fa"] * 5, a, failures={"bad.jpg": ("truncated", "1:2")})
    store.append(tmp_path, ["b0", "b1", "name\nwith \"quotes\" é"], ["fb"] * 3, b)
    got = store.open_contents(tmp_path)
    assert got.ids == ["a0", "a1", "a2", "a3", "a4", "b0", "b1", "name\nwith \"quotes\" é"]
    assert isinstance(got.vectors, np.memmap) and not got.vectors.flags.writeable
    np.testing.assert_array_equal(got.vectors, np.vstack([a, b]))
    assert got.failures == {"bad.jpg": ("truncated", "1:2")}        # kept when an append passes None


def test_other_dimensions_and_non_finite_vectors_are_refused_and_nothing_is_written(tmp_path):
    rng = np.random.default_rng(1)
    store.append(tmp_path, ["a"], ["f"], _unit(rng, 1, 8))
    before = (tmp_path / store.MANIFEST).read_bytes()
    with pytest.raises(store.StoreError, match="dimension 4 cannot join a gallery of dimension 8"):
        store.append(tmp_path, ["b"], ["f"], _unit(rng, 1, 4))
    with pytest.raises(store.StoreError, match="NaN"):
        store.append(tmp_path, ["c"], ["f"], np.full((1, 8), np.nan, np.float32))
    assert (tmp_path / store.MANIFEST).read_bytes() == before


def test_bytes_of_a_killed_append_are_cut_off_by_the_next_one(tmp_path):
    rng = np.random.default_rng(2)
    a, b = _unit(rng, 4, 8), _unit(rng, 2, 8)
    m = store.append(tmp_path, ["a0", "a1", "a2", "a3"], ["f"] * 4, a)
    with open(tmp_path / m.vectors_file, "ab") as fh:                # what a killed append leaves:
        fh.write(b"\x01" * 100)                                      # bytes past the committed end,
    with open(tmp_path / m.rows_file, "ab") as fh:
        fh.write(b"[[\"half a li")                                     # and no new manifest
    assert store.open_contents(tmp_path).ids == ["a0", "a1", "a2", "a3"]
    store.append(tmp_path, ["b0", "b1"], ["f"] * 2, b)
    got = store.open_contents(tmp_path)
    assert got.ids == ["a0", "a1", "a2", "a3", "b0", "b1"]
    np.testing.assert_array_equal(got.vectors, np.vstack([a, b]))


def test_dead_rows_are_hidden_then_dropped_by_compaction(tmp_path):
    rng = np.random.default_rng(3)
    x = _unit(rng, 6, 8)
    store.append(tmp_path, [str(i) for i in range(6)], [f"f{i}" for i in range(6)], x, dead=[])
    store.append(tmp_path, [], [], np.zeros((0, 0), np.float32), dead=[1, 4])
    got = store.open_contents(tmp_path)
    assert got.ids == ["0", "2", "3", "5"]
    np.testing.assert_array_equal(got.vectors, x[[0, 2, 3, 5]])
    m = store.compact(tmp_path, {"2": "renewed"})
    assert m.generation == 2 and m.dead == [] and m.n_rows == 4
    assert sorted(p.name for p in tmp_path.glob("vectors-*")) == ["vectors-2.f32"]     # generation 1 is gone
    got = store.open_contents(tmp_path)
    assert got.fingerprints == ["f0", "renewed", "f3", "f5"]
    np.testing.assert_array_equal(got.vectors, x[[0, 2, 3, 5]])


APPENDER = """
import sys, numpy as np
from pathlib import Path
from core.cache import store
directory, n_chunks, rows = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
manifest = store.read_manifest(directory)
done = store.read_rows(directory, manifest)[0] if manifest else []
for c in range(len(done) // rows, n_chunks):           # resume after the last committed chunk
    x = np.random.default_rng(c).standard_normal((rows, 256)).astype(np.float32)
    store.append(directory, [f"{c}-{i}" for i in range(rows)], [f"fp{c}"] * rows, x)
"""


def _appender(directory, n_chunks, rows):
    return subprocess.Popen([sys.executable, "-c", APPENDER, str(directory), str(n_chunks), str(rows)],
                            cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))


def test_appends_killed_by_sigkill_end_equal_to_a_clean_run(tmp_path):
    """Kill an appending process at random moments (most land inside an append: writing or
    fsyncing 2 MB), check the store is readable each time, finish the run: equal to a clean one."""
    n_chunks, rows = 40, 2000
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    assert _appender(clean, n_chunks, rows).wait() == 0
    rng, counts = random.Random(7), []
    for _ in range(5):
        proc = _appender(killed, n_chunks, rows)
        deadline = time.time() + 60                                  # past start-up: a new commit landed
        before = (killed / store.MANIFEST).stat().st_mtime_ns if (killed / store.MANIFEST).exists() else 0
        while time.time() < deadline and proc.poll() is None and (
                not (killed / store.MANIFEST).exists() or (killed / store.MANIFEST).stat().st_mtime_ns == before):
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        got = store.open_contents(killed)
        if got is not None:
            assert len(got.ids) % rows == 0 and len(got.ids) == got.vectors.shape[0]   # whole chunks only
            counts.append(len(got.ids))
    assert counts and counts[0] < n_chunks * rows, counts            # the kills did interrupt the run
    assert _appender(killed, n_chunks, rows).wait() == 0
    a, b = store.open_contents(clean), store.open_contents(killed)
    assert a.ids == b.ids and a.fingerprints == b.fingerprints
    np.testing.assert_array_equal(a.vectors, b.vectors)


def _legacy(directory, ids, vectors, fingerprints, whitening=None):
    write_json(directory / "config.json", CFG.to_dict())
    write_json(directory / "meta.json", {"complete": True, "n_images": len(ids)})
    write_npz(directory / LEGACY_NPZ, vectors=vectors, ids=np.array(ids, dtype=str),
              fingerprints=np.array(fingerprints, dtype=str), failed_ids=np.array(["x.jpg"], dtype=str),
              failed_reasons=np.array(["truncated"], dtype=str), failed_fingerprints=np.array(["9:9"], dtype=str),
              **(whitening or {}))


def test_an_npz_cache_of_earlier_versions_is_migrated_on_first_read(artifacts):
    rng = np.random.default_rng(4)
    x = _unit(rng, 7, 16)
    whitening = learn_pca_whitening(x, 4)
    directory = cache_dir("old", CFG)
    directory.mkdir(parents=True)
    _legacy(directory, [f"{i}.jpg" for i in range(7)], x, [f"{i}:1" for i in range(7)], whitening.to_arrays())
    emb = load_embeddings("old", CFG)
    assert not (directory / LEGACY_NPZ).exists() and (directory / store.MANIFEST).exists()
    assert emb.ids == [f"{i}.jpg" for i in range(7)] and emb.fingerprints == [f"{i}:1" for i in range(7)]
    np.testing.assert_array_equal(emb.vectors, x)
    assert emb.failures == {"x.jpg": "truncated"} and emb.meta["complete"] is True
    np.testing.assert_array_equal(emb.whitening.projection, whitening.projection)
    assert json.loads((directory / store.MANIFEST).read_text())["failures"] == {"x.jpg": ["truncated", "9:9"]}


def test_a_migrated_real_cache_is_updated_without_re_embedding(artifacts, tmp_path):
    folder = copy_paris_images(tmp_path / "g", 4)
    gallery = register_gallery("g", folder)
    first = build_embeddings(gallery, CFG, reporter=Reporter.quiet())
    write_legacy_cache(cache_dir("g", CFG), first)
    (folder / first.ids[0]).unlink()

    class NoEmbedding:
        def iter_files(self, *args, **kwargs):
            raise AssertionError("an unchanged file was embedded again")

    again = build_embeddings(gallery, CFG, NoEmbedding(), reporter=Reporter.quiet())
    assert again.ids == first.ids[1:] and again.meta["changes"]["removed"] == [first.ids[0]]
    np.testing.assert_array_equal(again.vectors, first.vectors[1:])
    assert isinstance(again.vectors, np.memmap)                      # the removed row was compacted away


def test_gather_reads_rows_of_a_memory_map_by_position_as_indexing_would(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((500, 12)).astype(np.float32)
    store.append(tmp_path / "s", [f"{i}" for i in range(500)], ["f"] * 500, vectors)
    mapped = store.open_contents(tmp_path / "s").vectors
    np.save(tmp_path / "v.npy", vectors)                       # a header before row 0
    npy = np.load(tmp_path / "v.npy", mmap_mode="r")
    rows = np.sort(rng.choice(400, 60, replace=False))
    for source in (mapped, npy, npy[100:], mapped[7:], vectors):
        assert store._file_position(source) is None if source is vectors else store._file_position(source) >= 0
        np.testing.assert_array_equal(store.gather(source, rows), np.asarray(source[rows]))
    np.testing.assert_array_equal(store.gather(npy[:, :6], rows), vectors[rows, :6])       # not contiguous: indexed
    assert store.gather(mapped, []).shape == (0, 12)
