"""Fault injection, bounded in time: ``index`` and ``evaluate`` killed (SIGKILL) at random moments,
a small full file system (a real tmpfs) under ``index``, ``evaluate`` and ``data fetch``, and two
writers at once. Each ends, after the faults stop, with descriptors, Annoy index and runs equal to
those of a clean run, and with nothing on disk that a reader would take for a complete result.

``CBIR_FAULT_SECONDS`` (default 60) is the time given to each randomised loop, and
``CBIR_FAULT_SEED`` fixes its random choices (the seed is in every failure message), so the suite
can run for hours or for a minute. Small real inputs: 8 shared Paris images and one broken file,
single-scale descriptors at 128 pixels.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, copy_paris_images

from core.config import EmbeddingConfig
from core.index.annoy import AnnoyParams

pytestmark = pytest.mark.slow

CFG = EmbeddingConfig(max_size=128, scales=(1.0,))
FLAGS = ["--max-size", "128", "--scales", "1.0", "--quiet"]
PARAMS = AnnoyParams(n_trees=2)
BUDGET = float(os.environ.get("CBIR_FAULT_SECONDS", 60))
SEED = int(os.environ.get("CBIR_FAULT_SEED", time.time_ns() % 1_000_000))


@dataclass
class Dataset:
    root: Path                 # root/jpg, root/gt: what ``evaluate --dataset paris6k --root`` reads


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Dataset:
    """8 Paris images, one truncated file (a failure every cache must record), two queries."""
    root = tmp_path_factory.mktemp("faults")
    images = copy_paris_images(root / "jpg", 8, step=30)
    (images / "broken.jpg").write_bytes(next(images.iterdir()).read_bytes()[:500])
    stems = sorted(p.stem for p in images.glob("paris_*.jpg"))
    gt = root / "gt"
    gt.mkdir()
    for n, (query, box) in enumerate([(stems[0], "40 30 600 500"), (stems[3], "0 0 500 400")], start=1):
        (gt / f"mine_{n}_query.txt").write_text(f"{query} {box}\n")
        positives = [s for s in stems if s != query][:3]
        (gt / f"mine_{n}_good.txt").write_text("".join(f"{s}\n" for s in positives))
        (gt / f"mine_{n}_ok.txt").write_text("")
        (gt / f"mine_{n}_junk.txt").write_text("")
    return Dataset(root)


def run_cli(artifacts: Path, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, CBIR_ARTIFACTS=str(artifacts), PYTHONPATH=str(REPO), CBIR_CHECKPOINT_SECONDS="0")
    return subprocess.run([sys.executable, "-m", "core", *argv], cwd=REPO, env=env, capture_output=True,
                          encoding="utf-8", errors="replace", timeout=timeout)


def start_cli(artifacts: Path, *argv: str) -> subprocess.Popen:
    env = dict(os.environ, CBIR_ARTIFACTS=str(artifacts), PYTHONPATH=str(REPO), CBIR_CHECKPOINT_SECONDS="0")
    return subprocess.Popen([sys.executable, "-m", "core", *argv], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, encoding="utf-8", errors="replace")


def index_args(ds: Dataset) -> list[str]:
    return ["index", "--folder", str(ds.root / "jpg"), "--name", "g", "--n-trees", str(PARAMS.n_trees), *FLAGS]


def evaluate_args(ds: Dataset) -> list[str]:
    return ["evaluate", "--dataset", "paris6k", "--root", str(ds.root), "--name", "g", *FLAGS]


@contextmanager
def artifacts_at(path: Path):
    """Read ``path`` as the artifacts folder in this process (the readers of ``core``)."""
    old = os.environ.get("CBIR_ARTIFACTS")
    os.environ["CBIR_ARTIFACTS"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CBIR_ARTIFACTS")
        else:
            os.environ["CBIR_ARTIFACTS"] = old


@dataclass
class State:
    """What a reader finds in an artifacts folder: the cache, the Annoy index, the complete runs."""

    ids: list[str]
    vectors: np.ndarray
    failures: dict[str, str]
    complete: bool
    annoy_ok: bool
    runs: list[dict]
    leftovers: list[str]                # temporary files in the cache folder


def read_state(artifacts: Path) -> State | None:
    """Everything a reader can load, checked for consistency on the way (None: no cache yet)."""
    from core.cache.descriptors import CacheError, load_embeddings
    from core.evaluation.runs import list_runs, load_run
    from core.index import IndexMismatch
    from core.index.annoy import AnnoyIndex

    with artifacts_at(artifacts):
        try:
            emb = load_embeddings("g", CFG)
        except CacheError:
            emb = None
        runs = []
        for run_id in list_runs():
            run = load_run(run_id)
            ids, ranking = run.ids, np.asarray(run.ranking)           # .ids checks them against the ranking
            assert run.summary.run_id == run_id and ranking.shape == (run.summary.n_queries, len(ids))
            runs.append({"ids": ids, "ranking": ranking, "ap": run.per_query["ap"].tolist()})
        if emb is None:
            assert not runs
            return None
        assert emb.vectors.shape[0] == len(emb.ids)
        try:
            AnnoyIndex.load(emb, "cosine", PARAMS)
            annoy_ok = True
        except IndexMismatch:
            annoy_ok = False
        leftovers = [p.name for p in emb.directory.iterdir() if ".tmp" in p.name]
        return State(emb.ids, emb.vectors, emb.failures, bool(emb.meta.get("complete")), annoy_ok, runs, leftovers)


def assert_same(state: State | None, clean: State, min_runs: int = 0, note: str = "") -> None:
    """Descriptors, failures and Annoy index as the clean run's; at least ``min_runs`` complete
    runs, each with the clean run's images, rankings (as image ids: the store keeps rows in the
    order they were embedded, which an interrupted run changes) and APs (a run killed after writing
    its summary is complete, so more may exist)."""
    assert state is not None, note
    assert sorted(state.ids) == sorted(clean.ids) and state.failures.keys() == clean.failures.keys(), note
    np.testing.assert_allclose(state.vectors[np.argsort(state.ids)], clean.vectors[np.argsort(clean.ids)],
                               atol=1e-5, err_msg=note)
    assert state.complete and state.annoy_ok and not state.leftovers, (note, state.leftovers)
    assert len(state.runs) >= min_runs, note
    reference = clean.runs[0]
    for run in state.runs:
        assert sorted(run["ids"]) == sorted(reference["ids"]), note
        ranked, expected = np.asarray(run["ids"])[run["ranking"]], np.asarray(reference["ids"])[reference["ranking"]]
        np.testing.assert_array_equal(ranked[:, :10], expected[:, :10], err_msg=note)
        np.testing.assert_allclose(run["ap"], reference["ap"], err_msg=note)


@pytest.fixture(scope="module")
def clean(dataset, tmp_path_factory) -> tuple[State, float, Path]:
    """The reference: ``index`` then ``evaluate`` run once, undisturbed; how long ``index`` took;
    the artifacts folder."""
    artifacts = tmp_path_factory.mktemp("clean") / "artifacts"
    start = time.perf_counter()
    done = run_cli(artifacts, *index_args(dataset))
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    done = run_cli(artifacts, *evaluate_args(dataset))
    assert done.returncode == 0, done.stderr
    state = read_state(artifacts)
    assert state is not None and len(state.runs) == 1 and len(state.ids) == 8 and list(state.failures) == ["broken.jpg"]
    return state, seconds, artifacts


def kill_at_random(artifacts: Path, argv: list[str], span: float, rng: random.Random) -> list[str]:
    """Start ``argv`` again and again, SIGKILL each at a random moment within ``span`` seconds,
    until the time budget is spent (at least 3 times); after each kill what readers find must be
    consistent. Returns what happened, for failure messages."""
    log = []
    deadline = time.time() + BUDGET
    while len(log) < 3 or time.time() < deadline:
        proc = start_cli(artifacts, *argv)
        delay = rng.uniform(0.0, span)
        try:
            proc.wait(timeout=delay)
            log.append(f"finished before the kill at {delay:.2f} s (rc {proc.returncode})")
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            log.append(f"killed at {delay:.2f} s")
        proc.communicate()
        read_state(artifacts)                     # raises if a reader would find a broken cache or run
    return log


def test_random_kills_during_index_end_equal_to_a_clean_run(dataset, clean, tmp_path):
    reference, seconds, _ = clean
    rng = random.Random(SEED)
    artifacts = tmp_path / "artifacts"
    log = kill_at_random(artifacts, index_args(dataset), seconds * 1.2, rng)
    done = run_cli(artifacts, *index_args(dataset))
    note = f"seed {SEED}: {'; '.join(log)}"
    assert done.returncode == 0, (note, done.stderr)
    assert_same(read_state(artifacts), reference, note=note)


def test_random_kills_during_evaluate_end_equal_to_a_clean_run(dataset, clean, tmp_path):
    reference, seconds, _ = clean
    rng = random.Random(SEED + 1)
    artifacts = tmp_path / "artifacts"
    log = kill_at_random(artifacts, evaluate_args(dataset), seconds * 1.5, rng)
    done = run_cli(artifacts, *evaluate_args(dataset))
    note = f"seed {SEED + 1}: {'; '.join(log)}"
    assert done.returncode == 0, (note, done.stderr)
    done = run_cli(artifacts, *index_args(dataset))                        # the Annoy index, as the clean run has it
    assert done.returncode == 0, (note, done.stderr)
    finished = sum("finished" in entry and "rc 0" in entry for entry in log)
    assert_same(read_state(artifacts), reference, min_runs=finished + 1, note=note)   # every complete run is right


def test_two_writers_at_once_end_equal_to_a_clean_run(dataset, clean, tmp_path):
    reference, _, _ = clean
    artifacts = tmp_path / "artifacts"
    procs = [start_cli(artifacts, *index_args(dataset)), start_cli(artifacts, *index_args(dataset))]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    assert_same(read_state(artifacts), reference)
    procs = [start_cli(artifacts, *evaluate_args(dataset)) for _ in range(2)] + [start_cli(artifacts, *index_args(dataset))]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1] for o in outs]
    state = read_state(artifacts)
    assert_same(state, reference, min_runs=2)
    assert len(state.runs) == 2                                            # two runs, in two folders


# ---------------------------------------------------------------- a full file system

@contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the ENOSPC paths are covered by "
                    f"test_download's simulated full disk only")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(mount: Path, leave: int) -> None:
    """Take all free space of ``mount`` but ``leave`` bytes, with a filler file."""
    filler = mount / "filler"
    filler.unlink(missing_ok=True)
    free = shutil.disk_usage(mount).free - leave
    if free > 0:
        with open(filler, "wb") as fh:
            os.posix_fallocate(fh.fileno(), 0, free)


def footprint(path: Path) -> int:
    return sum(p.stat().st_size + 4096 for p in path.rglob("*") if p.is_file())


def assert_one_line_error(done: subprocess.CompletedProcess, note: str) -> None:
    assert done.returncode == 2, (note, done.returncode, done.stderr[-3000:])
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert lines and ("No space left" in lines[-1] or "are free" in lines[-1]), (note, done.stderr[-3000:])
    assert "Traceback" not in done.stderr, (note, done.stderr[-3000:])


def test_a_full_disk_under_index_and_evaluate_loses_nothing(dataset, clean, tmp_path):
    """Artifacts on a 32 MB tmpfs; a filler leaves a little free space, so that ``index`` or
    ``evaluate`` runs out of it at some point (extraction checkpoints, the Annoy index, a run's
    files); each must fail with one line and leave what was there readable; once the filler is
    gone, one more run gives what a clean run gives."""
    reference, _, clean_artifacts = clean
    rng = random.Random(SEED + 2)
    with tmpfs(tmp_path / "small", "32m") as mount:
        artifacts = mount / "artifacts"
        log = []
        deadline = time.time() + BUDGET
        # what each command writes in a clean run; the first round leaves less than a quarter of it
        for argv, needed in ((index_args(dataset), footprint(clean_artifacts) - footprint(clean_artifacts / "runs")),
                             (evaluate_args(dataset), footprint(clean_artifacts / "runs"))):
            rounds = failures = 0
            while rounds < 3 or time.time() < deadline:
                leave = rng.randint(0, needed // 4 if rounds == 0 else needed)
                fill(mount, leave)
                done = run_cli(artifacts, *argv)
                log.append(f"{argv[0]} with {leave:,} of {needed:,} bytes free: rc {done.returncode}")
                if done.returncode != 0:
                    assert_one_line_error(done, f"seed {SEED + 2}: {log[-1]}")
                    failures += 1
                read_state(artifacts)                       # whatever is there is consistent
                rounds += 1
            assert failures, log                            # the full disk was met
            (mount / "filler").unlink(missing_ok=True)       # space freed
            done = run_cli(artifacts, *argv)
            assert done.returncode == 0, (log, done.stderr)
        assert_same(read_state(artifacts), reference, min_runs=1, note=f"seed {SEED + 2}: {'; '.join(log)}")


def test_a_full_disk_under_data_fetch_keeps_the_downloads_and_resumes(tmp_path):
    """``data fetch`` into a small tmpfs: the download or the unpacking runs out of space; the
    .part or the archive is kept with a one-line message; after freeing space the same command
    completes, resuming the transfer, and the dataset equals a clean fetch's."""
    from download_server import Served, _handler, serve_oxford

    from core.cli import main

    state = Served()
    serve_oxford(state)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        clean_dir = tmp_path / "clean"
        assert main(["data", "fetch", "oxford5k", "--dir", str(clean_dir), "--base-url", url, "--quiet"]) == 0
        expected = {p.relative_to(clean_dir / "oxford5k").as_posix(): p.read_bytes()
                    for p in (clean_dir / "oxford5k").rglob("*") if p.is_file() and not p.name.startswith(".")}
        total = sum(len(v) for v in state.files.values())
        rng = random.Random(SEED + 3)
        with tmpfs(tmp_path / "small", "16m") as mount:
            data = mount / "data"
            outcomes = []
            needed = total + sum(len(v) for v in expected.values())    # the archives, then what they unpack to
            for round_ in range(4):
                fill(mount, rng.randint(0, needed // 4 if round_ == 0 else needed))
                before = len(state.requests)
                proc = subprocess.run([sys.executable, "-m", "core", "data", "fetch", "oxford5k", "--dir", str(data),
                                       "--base-url", url, "--quiet"], cwd=REPO, capture_output=True, text=True,
                                      env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
                outcomes.append((proc.returncode, state.requests[before:]))
                if proc.returncode != 0:
                    assert_one_line_error(proc, f"seed {SEED + 3}: {outcomes}")
                    assert "nothing was deleted" in proc.stderr or "run the same command again" in proc.stderr
            assert any(rc != 0 for rc, _ in outcomes), outcomes     # the full disk was met
            (mount / "filler").unlink(missing_ok=True)             # space freed
            downloads = data / "_downloads"
            complete = {p.name for p in downloads.glob("*") if p.name in state.files} if downloads.is_dir() else set()
            partial = {p.name.removesuffix(".part") for p in downloads.glob("*.part")} if downloads.is_dir() else set()
            before = len(state.requests)
            assert main(["data", "fetch", "oxford5k", "--dir", str(data), "--base-url", url, "--quiet"]) == 0
            final = state.requests[before:]
            assert not [path for path, _ in final if path in complete], (final, complete)   # kept, not fetched again
            assert all(rng_header for path, rng_header in final if path in partial), final  # resumed by a Range request
            got = {p.relative_to(data / "oxford5k").as_posix(): p.read_bytes()
                   for p in (data / "oxford5k").rglob("*") if p.is_file() and not p.name.startswith(".")}
            assert got == expected, outcomes
    finally:
        httpd.shutdown()
        httpd.server_close()

