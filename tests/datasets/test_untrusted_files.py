"""Pickles, .mat files and archives are bounded before they are read; written files respect the umask; writers wait for each other. (Issue 16, hostile input: each test failed on the code before its fix.)"""
from __future__ import annotations

import os
import pickle
import stat
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.io
from conftest import PARIS, SMALL, SMALL_FLAGS, copy_paris_images, run_core
from conftest import Reduce as _Reduce
from download_server import tgz

from core.cache.descriptors import build_embeddings, cache_dir
from core.cache.galleries import register_gallery
from core.cache.store import MANIFEST
from core.cli import main
from core.datasets import GroundTruthError
from core.datasets.revisited import UnsafePickle, load_gnd
from core.files import write_json, write_npz
from core.progress import Reporter

CFG, FLAGS, cli = SMALL, SMALL_FLAGS, run_core
QUIET = dict(progress=False, log=lambda m: None)


HUGE = 1 << 45            # 32 TiB: refused by the kernel too, so the earlier code fails fast instead of swapping


@pytest.mark.parametrize("payload", [
    _Reduce(np._core.multiarray._reconstruct, (np.ndarray, (HUGE,), b"b")),
    _Reduce(np.ndarray, ((HUGE // 8,),)), _Reduce(bytes, (HUGE,)), _Reduce(bytearray, (HUGE,))],
    ids=["_reconstruct", "ndarray", "bytes", "bytearray"])
def test_pickles_asking_for_terabytes_are_refused_before_allocating(tmp_path, payload):
    path = tmp_path / "gnd_rtest.pkl"
    path.write_bytes(pickle.dumps({"imlist": [], "qimlist": [], "gnd": [payload]}, protocol=2))
    with pytest.raises(UnsafePickle, match="more than the"):
        load_gnd(path)


def test_a_refused_pickle_is_one_line_on_the_command_line(tmp_path, capsys):
    (tmp_path / "gnd_rparis6k.pkl").write_bytes(pickle.dumps(_Reduce(os.system, ("echo pwned",))))
    assert main(["evaluate", "--dataset", "rparis6k", "--root", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: gnd_rparis6k.pkl: refused to load") and err.count("\n") == 1


def _mat_bomb(path, megabytes: int = 64) -> None:
    """A MAT v5 file of about 64 kB whose one compressed element inflates to ``megabytes`` MB."""
    scipy.io.savemat(path, {"gnd": np.zeros(megabytes << 20, np.uint8)}, do_compression=True)


def test_compressed_mat_bombs_are_refused_before_scipy_inflates_them(tmp_path, monkeypatch, capsys):
    import core.datasets.safemat as safemat
    from core.datasets.holidays import holidays_from_mat

    monkeypatch.setattr(safemat, "MAX_MAT_BYTES", 16 << 20)
    inflated = []
    monkeypatch.setattr(safemat.scipy.io, "loadmat", lambda *a, **k: inflated.append(a) or {})
    _mat_bomb(tmp_path / "gnd_rparis6k.mat")
    assert (tmp_path / "gnd_rparis6k.mat").stat().st_size < 100_000
    with pytest.raises(safemat.UnsafeMat, match=r"^gnd_rparis6k.mat: refused: .* inflate to more than 16,777,216"):
        load_gnd(tmp_path / "gnd_rparis6k.mat")
    _mat_bomb(tmp_path / "gnd_holidays.mat")
    with pytest.raises(safemat.UnsafeMat, match=r"^gnd_holidays.mat: refused"):
        holidays_from_mat(tmp_path / "gnd_holidays.mat")
    assert main(["evaluate", "--dataset", "rparis6k", "--root", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: gnd_rparis6k.mat: refused") and err.count("\n") == 1
    assert inflated == []                                    # scipy never saw the files


def test_real_mat_ground_truths_pass_the_check_and_a_corrupt_one_is_one_line(tmp_path):
    from core.datasets.safemat import check_mat

    real = PARIS / "gnd_rparis6k.mat"
    assert 0 < check_mat(real.read_bytes()) < 10 << 20 and len(load_gnd(real).imlist) == 6322
    corrupt = bytearray(real.read_bytes())
    corrupt[200:260] = b"x" * 60                             # inside the first compressed element
    (tmp_path / "gnd_rparis6k.mat").write_bytes(bytes(corrupt))
    with pytest.raises(GroundTruthError, match=r"^gnd_rparis6k.mat: not a revisited ground-truth file \(ValueError: "
                                               r"a compressed element is corrupt"):
        load_gnd(tmp_path / "gnd_rparis6k.mat")


def test_archives_are_bounded_in_expansion_count_and_size(tmp_path, monkeypatch):
    from core.datasets import download as dl

    bomb = tmp_path / "bomb.tgz"
    bomb.write_bytes(tgz({"zeros.jpg": bytes(64 << 20)}))                 # 64 MB of zeros in about 64 kB
    with pytest.raises(dl.UnsafeArchive, match="decompression bomb"):
        dl.extract(bomb, tmp_path / "out")
    assert bomb.exists() and not (tmp_path / "out").exists()
    many = tmp_path / "many.tgz"
    many.write_bytes(tgz({f"{i}.txt": b"x" for i in range(5)}))
    monkeypatch.setattr(dl, "MAX_MEMBERS", 4)
    with pytest.raises(dl.UnsafeArchive, match="holds 5 files"):
        dl.extract(many, tmp_path / "out")
    monkeypatch.setattr(dl, "MAX_MEMBERS", 10)
    monkeypatch.setattr(dl, "MAX_EXTRACTED_BYTES", 4)
    with pytest.raises(dl.UnsafeArchive, match="would unpack to 5 bytes"):
        dl.extract(many, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_written_files_respect_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        write_npz(tmp_path / "b.npz", x=np.zeros(3))
    finally:
        os.umask(old)
    for name in ("a.json", "b.npz"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o666 & ~mask


def test_index_waits_for_another_writer_of_the_same_cache(artifacts, tmp_path, small_embedder):
    """Two writers of one cache: the second waits for the first (an advisory lock the kernel drops
    if the holder dies), then finds everything up to date."""
    from core.cache.descriptors import LOCK
    from core.files import exclusive_lock

    folder = copy_paris_images(tmp_path / "g", 2)
    gallery = register_gallery("g", folder)
    messages = []
    with ThreadPoolExecutor(1) as pool, exclusive_lock(cache_dir("g", CFG) / LOCK):
        waiting = pool.submit(build_embeddings, gallery, CFG, small_embedder, Reporter(bar=False, log=messages.append))
        deadline = time.time() + 60
        while not any("waiting for another process" in m for m in messages) and time.time() < deadline:
            time.sleep(0.05)
        assert not waiting.done() and not (cache_dir("g", CFG) / MANIFEST).exists()
    assert len(waiting.result(timeout=300).ids) == 2
