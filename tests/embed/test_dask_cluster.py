"""Extraction on a Dask cluster started the way its users start one: a ``dask scheduler`` and two
``dask worker`` processes on 127.0.0.1 (real ports), ``python -m core index --engine dask
--scheduler tcp://...``, and one worker killed (SIGKILL, nanny and all) mid-run: the run
completes, and its cache equals a local run's."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, copy_paris_images

from core.cache.descriptors import cache_dir, load_embeddings
from core.cache.store import MANIFEST, read_manifest
from core.config import EmbeddingConfig
from core.embed.embedder import Embedder

CFG = EmbeddingConfig(max_size=96)          # the default embedding, small images
DASK = Path(sys.executable).with_name("dask")
N_IMAGES, CHUNK = 24, 2


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([str(DASK), *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                                cwd=REPO, start_new_session=True)     # its own group: nanny and worker die together


def _wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.time() + seconds
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def cluster(tmp_path):
    """A scheduler and two single-threaded workers; yields (address, worker processes)."""
    pytest.importorskip("dask.distributed")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    scheduler_file = tmp_path / "scheduler.json"
    procs = [_start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                     "--scheduler-file", str(scheduler_file)], env, tmp_path / "scheduler.log")]
    try:
        _wait_for(scheduler_file.exists, 120, "the scheduler")
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        workers = [_start(["worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
                           "--host", "127.0.0.1"], env, tmp_path / f"worker{i}.log") for i in range(2)]
        procs += workers
        yield address, workers
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_worker_killed_mid_run_loses_nothing(artifacts, tmp_path, cluster):
    address, workers = cluster
    folder = copy_paris_images(tmp_path / "photos", N_IMAGES)
    directory = cache_dir("viacluster", CFG)
    env = dict(os.environ, PYTHONPATH=str(REPO), CBIR_CHECKPOINT_SECONDS="0")     # a commit per image
    run = subprocess.Popen([sys.executable, "-m", "core", "index", "--folder", str(folder), "--name", "viacluster",
                            "--max-size", "96", "--index", "none", "--quiet", "--engine", "dask", "--scheduler", address,
                            "--dask-chunk", str(CHUNK)], env=env, cwd=REPO, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    # both workers are at work once descriptors come back: kill one of them, nanny and worker process
    _wait_for(lambda: (directory / MANIFEST).exists() and read_manifest(directory).n_rows > 0 or run.poll() is not None,
              300, "the first descriptors")
    assert run.poll() is None, run.communicate()[0]
    rows_at_kill = read_manifest(directory).n_rows
    os.killpg(workers[0].pid, signal.SIGKILL)
    output, _ = run.communicate(timeout=600)
    assert run.returncode == 0, output
    assert rows_at_kill < N_IMAGES, "the run had finished before the worker was killed"
    emb = load_embeddings("viacluster", CFG)
    assert sorted(emb.ids) == sorted(p.name for p in folder.iterdir()) and emb.meta["complete"]
    local = Embedder(CFG)
    expected = np.stack([local.embed_image(folder / i) for i in emb.ids])
    np.testing.assert_allclose(emb.vectors, expected, atol=1e-5)
