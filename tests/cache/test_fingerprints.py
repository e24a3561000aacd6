"""A file's fingerprint (size:mtime:ctime:inode) catches rewrites that keep size and mtime. (Issue 16, hostile input: each test failed on the code before its fix.)"""
from __future__ import annotations

import os

import numpy as np
from conftest import SMALL, SMALL_FLAGS, copy_paris_images, paris_images, run_core, write_legacy_cache
from PIL import Image

from core.cache.descriptors import build_embeddings, cache_dir, load_embeddings
from core.cache.galleries import duplicate_groups, register_gallery
from core.progress import Reporter

CFG, FLAGS, cli = SMALL, SMALL_FLAGS, run_core
QUIET = dict(progress=False, log=lambda m: None)


def _bmp(source, path) -> None:
    """Every 64x48 RGB BMP has the same size in bytes, whatever its pixels."""
    with Image.open(source) as img:
        img.convert("RGB").resize((64, 48)).save(path, "BMP")


def test_a_rewrite_that_keeps_size_and_mtime_is_embedded_again(artifacts, tmp_path, small_embedder):
    folder = tmp_path / "g"
    folder.mkdir()
    first, other = paris_images(2)
    _bmp(first, folder / "x.bmp")
    _bmp(first, folder / "copy.bmp")
    gallery = register_gallery("g", folder)
    build_embeddings(gallery, CFG, small_embedder, reporter=Reporter.quiet())
    assert duplicate_groups(gallery) == [["copy.bmp", "x.bmp"]]
    before = os.stat(folder / "x.bmp")
    _bmp(other, folder / "x.bmp")                                          # new pixels, same size...
    os.utime(folder / "x.bmp", ns=(before.st_atime_ns, before.st_mtime_ns))  # ...and the old mtime
    after = os.stat(folder / "x.bmp")
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    emb = build_embeddings(gallery, CFG, small_embedder, reporter=Reporter.quiet())
    assert emb.meta["changes"]["changed"] == ["x.bmp"]
    np.testing.assert_allclose(emb.vectors[emb.ids.index("x.bmp")], small_embedder.embed_image(folder / "x.bmp"), atol=1e-5)
    assert duplicate_groups(gallery) == []                                 # the hash was not kept by a stale fingerprint


def test_caches_with_older_size_mtime_fingerprints_are_renewed_without_re_embedding(artifacts, tmp_path, small_embedder):
    folder = copy_paris_images(tmp_path / "g", 3)
    gallery = register_gallery("g", folder)
    first = build_embeddings(gallery, CFG, small_embedder, reporter=Reporter.quiet())
    old = [f"{s.st_size}:{s.st_mtime_ns}" for s in (os.stat(folder / i) for i in first.ids)]
    write_legacy_cache(cache_dir("g", CFG), first, old)                    # a cache as the earlier code wrote it

    class NoEmbedding:
        def iter_files(self, *args, **kwargs):
            raise AssertionError("an unchanged file was embedded again")

    again = build_embeddings(gallery, CFG, NoEmbedding(), reporter=Reporter.quiet())
    np.testing.assert_array_equal(again.vectors, first.vectors)
    assert all(fp.count(":") == 3 for fp in load_embeddings("g", CFG).fingerprints)
