"""Shared fixtures: the real data in ../shared/data, and an artifacts folder per test session so
that tests never touch the user's artifacts/."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("CBIR_SHARED_DATA", REPO.parent / "shared" / "data"))
PARIS = SHARED_DATA / "paris6k"
OXFORD = SHARED_DATA / "oxford5k"


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
