"""Shared fixtures: the real data in ../shared/data, an artifacts folder per test session so
that tests never touch the user's artifacts/, and the plain global descriptor of the real Paris
queries that the re-ranking tests measure against."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from core.cache.descriptors import Embeddings, build_embeddings
from core.cache.galleries import Gallery
from core.config import PLAIN_GEM, EmbeddingConfig
from core.datasets import ResolvedQuery, resolve
from core.embed.embedder import Embedder
from core.evaluation.metrics import score_query
from core.index import ExactIndex
from core.paths import artifacts_dir
from core.progress import Reporter
from core.rerank import RegionQuery, RerankContext, Reranker, apply_reranker
from core.rerank.featuremaps import gallery_feature_maps

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("CBIR_SHARED_DATA", REPO.parent / "shared" / "data"))
PARIS = SHARED_DATA / "paris6k"
OXFORD = SHARED_DATA / "oxford5k"


# What makes a test slow: a real network on real images (the Embedder, evaluate, index/search
# commands, a search engine, the demo gallery), the app (AppTest or a browser), or a fixture that
# builds descriptors. Such tests are marked ``slow``: ``pytest -m "not slow"`` runs the unit tests.
SLOW_CALLS = ("Embedder(", "evaluate(", "build_embeddings(", 'main(["evaluate"', 'main(["index"', 'main(["search"',
              '"evaluate", "--dataset"', "SearchEngine(", "build_demo_gallery(", "AppTest", "sync_playwright",
              "subprocess")
SLOW_FIXTURES = {"paris", "paris_gallery", "engine", "default_run", "page", "app_url", "demo", "embedder",
                 "small_embedder"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    import inspect

    for item in items:
        func = getattr(item, "function", None)
        source = inspect.getsource(func) if func is not None else ""
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or any(c in source for c in SLOW_CALLS):
            item.add_marker(pytest.mark.slow)


def write_legacy_cache(directory: Path, emb: Embeddings, fingerprints: list[str] | None = None) -> None:
    """Turn the cache in ``directory`` back into the single ``embeddings.npz`` that earlier
    versions wrote (``fingerprints`` in place of the stored ones, e.g. the older "size:mtime")."""
    from core.files import write_npz

    failed = sorted(emb.failures)
    arrays = {"vectors": np.array(emb.vectors), "ids": np.array(emb.ids, dtype=str),
              "fingerprints": np.array(fingerprints or emb.fingerprints, dtype=str),
              "failed_ids": np.array(failed, dtype=str),
              "failed_reasons": np.array([emb.failures[f] for f in failed], dtype=str),
              "failed_fingerprints": np.array([""] * len(failed), dtype=str)}
    if emb.whitening is not None:
        arrays.update(emb.whitening.to_arrays())
    for old in [*directory.glob("vectors-*.f32"), *directory.glob("rows-*.jsonl"), directory / "manifest.json",
                directory / "whitening.npz"]:
        old.unlink(missing_ok=True)
    write_npz(directory / "embeddings.npz", **arrays)


# Small real galleries (shared Paris images at 64 pixels): the input-robustness tests' embedding.
SMALL = EmbeddingConfig(max_size=64, scales=(1.0,))
SMALL_FLAGS = ["--max-size", "64", "--scales", "1.0", "--quiet"]


@pytest.fixture(scope="session")
def small_embedder() -> Embedder:
    return Embedder(SMALL)


def run_core(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m core`` in a child process: a hang or a segfault there fails the test, not the suite."""
    try:
        return subprocess.run([sys.executable, "-m", "core", *argv], cwd=REPO, capture_output=True,
                              encoding="utf-8", errors="replace", env=dict(os.environ, PYTHONPATH=str(REPO)),
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"python -m core {' '.join(argv)} still running after {timeout} s (it hangs)")


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """``n`` random unit vectors of ``dim`` (float32, normal then L2-normalised): the toy galleries
    of the index tests."""
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class Reduce:
    """A pickle payload that calls ``func(*args)`` when unpickled: what hostile pickles carry."""

    def __init__(self, func, args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def require_shared() -> None:
    if not (PARIS / "jpg").is_dir():
        pytest.fail(f"real test data missing: {PARIS}/jpg (CI has ../shared beside the checkout)")


@pytest.fixture(scope="session")
def session_artifacts(tmp_path_factory) -> Path:
    """One artifacts folder for the whole session: descriptor caches are shared between tests."""
    path = tmp_path_factory.mktemp("artifacts")
    os.environ["CBIR_ARTIFACTS"] = str(path)
    return path


@pytest.fixture
def artifacts(tmp_path, monkeypatch) -> Path:
    """A fresh, empty artifacts folder for one test."""
    path = tmp_path / "artifacts"
    monkeypatch.setenv("CBIR_ARTIFACTS", str(path))
    return path


@pytest.fixture(scope="session")
def paris_gallery(session_artifacts):
    from core.cache.galleries import register_gallery

    require_shared()
    return register_gallery("paris6k", PARIS / "jpg")


@pytest.fixture(scope="session")
def paris_gt():
    from core.datasets import load_ground_truth

    require_shared()
    return load_ground_truth("paris6k", PARIS / "gt")


def paris_images(count: int | None = None, step: int = 1) -> list[Path]:
    """The shared Paris JPEGs, sorted; the first ``count`` of every ``step``-th."""
    require_shared()
    return sorted((PARIS / "jpg").glob("*.jpg"))[::step][:count]


def copy_paris_images(folder: Path, count: int | None = None, step: int = 1) -> Path:
    """A real photo folder for a test: copies of shared Paris images in ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    for p in paris_images(count, step):
        shutil.copy(p, folder / p.name)
    return folder


# Half an mAP point: on 12 queries with 30-50 positives each, one positive swapping places with a
# negative around rank 10 moves mAP by about 0.1-0.3 points; a real loss is larger than that.
TOLERANCE = 0.005


@dataclass
class PlainParis:
    """The plain global descriptor on the Paris queries, shared by the re-ranking test files
    (one embedding pass per test process)."""

    gallery: Gallery
    emb: Embeddings
    embedder: Embedder
    queries: list[ResolvedQuery]
    qvecs: np.ndarray
    ranking: np.ndarray
    regions: list[RegionQuery]

    def map(self, ranking: np.ndarray) -> float:
        return float(np.mean([score_query(r, q.positives, q.junk).ap for r, q in zip(ranking, self.queries)]))

    def cache_feature_maps(self) -> None:
        """Cache the gallery's feature maps (once; BLCF and local windows read them)."""
        gallery_feature_maps(self.gallery, PLAIN_GEM, self.emb.ids, self.embedder, progress=False,
                             log=lambda m: None)

    def rerank(self, reranker: Reranker) -> np.ndarray:
        """Rankings of the Paris queries after ``reranker``."""
        ctx = RerankContext(self.emb, self.gallery, self.embedder, log=lambda m: None)
        return apply_reranker(reranker, self.ranking, self.qvecs, self.regions, ctx).ranking

    def rerank_map(self, reranker: Reranker) -> float:
        return self.map(self.rerank(reranker))


_PLAIN: dict[str, PlainParis] = {}


@pytest.fixture
def paris(paris_gallery, paris_gt) -> PlainParis:
    """Computed once per artifacts folder, i.e. once per test session, whichever file asks first."""
    key = str(artifacts_dir())
    if key not in _PLAIN:
        emb = build_embeddings(paris_gallery, PLAIN_GEM, reporter=Reporter.quiet())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            queries = resolve(paris_gt, emb.ids).queries
        embedder = Embedder(PLAIN_GEM)
        paths = [paris_gallery.root / emb.ids[q.image_index] for q in queries]
        qvecs = np.stack([embedder.embed_image(p, q.query.box) for p, q in zip(paths, queries)])
        _PLAIN[key] = PlainParis(paris_gallery, emb, embedder, queries, qvecs, ExactIndex(emb.vectors).rank_all(qvecs),
                                 [RegionQuery(p, q.query.box) for p, q in zip(paths, queries)])
    return _PLAIN[key]
