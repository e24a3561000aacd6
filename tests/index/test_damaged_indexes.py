"""A truncated or altered saved index is refused and rebuilt from the cache, never loaded. (Issue 16, hostile input: each test failed on the code before its fix.)"""
from __future__ import annotations

import pytest
from conftest import SMALL, SMALL_FLAGS, copy_paris_images, run_core

from core.cache.descriptors import build_embeddings
from core.cache.galleries import register_gallery
from core.index import IndexMismatch
from core.index.annoy import AnnoyIndex, AnnoyParams
from core.progress import Reporter

CFG, FLAGS, cli = SMALL, SMALL_FLAGS, run_core
QUIET = dict(progress=False, log=lambda m: None)


def _annoy_gallery(tmp_path, small_embedder):
    folder = copy_paris_images(tmp_path / "g", 6)
    emb = build_embeddings(register_gallery("g", folder), CFG, small_embedder, reporter=Reporter.quiet())
    return folder, emb, AnnoyIndex.build(emb, "cosine", PARAMS).path


PARAMS = AnnoyParams(n_trees=3)


def test_a_truncated_annoy_index_never_crashes_the_search_process(artifacts, tmp_path, small_embedder):
    folder, emb, ann = _annoy_gallery(tmp_path, small_embedder)
    good = ann.read_bytes()
    ann.write_bytes(good[: len(good) // 2])                                # its .json is intact
    done = cli("search", str(folder / emb.ids[0]), "--name", "g", "--search", "annoy", "--n-trees", "3", "-k", "3",
               "--rerank", "none", *FLAGS)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])    # the earlier code died of SIGSEGV here
    assert emb.ids[0] in done.stdout.splitlines()[1]
    AnnoyIndex.load(emb, "cosine", PARAMS)      # rebuilt from the cached descriptors
    ann.write_bytes(ann.read_bytes()[:-4096])
    with pytest.raises(IndexMismatch, match="truncated") as err:
        AnnoyIndex.load(emb, "cosine", PARAMS)
    assert err.value.stale                                                 # rebuilding from the cache is safe


def test_an_altered_annoy_index_of_the_right_size_is_refused(artifacts, tmp_path, small_embedder):
    _, emb, ann = _annoy_gallery(tmp_path, small_embedder)
    altered = bytearray(ann.read_bytes())
    altered[len(altered) // 3: len(altered) // 3 + 64] = b"\xff" * 64
    ann.write_bytes(bytes(altered))
    with pytest.raises(IndexMismatch, match="SHA-256 is not the one written") as err:
        AnnoyIndex.load(emb, "cosine", PARAMS)
    assert err.value.stale
    ann.with_suffix(".json").unlink()                                      # an .ann whose build was cut short
    with pytest.raises(IndexMismatch, match="cannot be read") as err:
        AnnoyIndex.load(emb, "cosine", PARAMS)
    assert err.value.stale
