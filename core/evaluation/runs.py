"""Evaluation runs on disk: ``artifacts/runs/<run-id>/``.

- ``summary.json``: dataset, embedding config, counts, mean metrics, timings, versions, machine;
- ``per_query.csv``: one row per evaluated query (metrics, box, first relevant rank, ...);
- ``images.json``: gallery ids, a JSON list in index order (any name a file system allows, newlines
  included); ``images.txt`` holds the same ids one a line, escaped by ``core.fs.printable``, for
  people and shell tools only;
- ``ranking.npy``: int32 [n_queries, n_images], full rankings, gallery indices best first;
- ``pr.json``: {query: {"precision": [...], "recall": [...]}} after junk removal, at each relevant
  image found (``metrics.hit_points``: all the curves and 11-point AP need; runs written before
  kept a point per rank, 24 million numbers for 12 queries at 1M images);
- protocol files (``core.evaluation.reports``): ``classes.csv`` and ``confusion.json`` of class-folder runs.

The app's metrics page and outside tools read runs with ``load_run``/``list_runs``. Run ids are
unique under concurrency (microsecond time, gallery, a random suffix) and a run folder is
created atomically (``mkdir`` that fails if it exists), so two runs never share one.
"""
from __future__ import annotations

import json
import os
import platform
import re
import secrets
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from core.evaluation.summary import RunSummary
from core.files import atomic_path, write_json, write_npy, write_text
from core.fs import printable
from core.index.registry import packages as index_packages
from core.paths import runs_dir

IDS_JSON, IDS_TEXT = "images.json", "images.txt"


class RunError(ValueError):
    """A run folder whose files do not agree with each other."""

PACKAGES = ("torch", "torchvision", "timm", "numpy", "pillow", "streamlit")


def package_versions() -> dict[str, str]:
    """Versions of the packages a run depends on: the pipeline's and every index backend's."""
    out = {}
    for name in (*PACKAGES, *index_packages()):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    out["python"] = platform.python_version()
    return out


def machine_info() -> dict[str, str | int]:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count() or 0}


def new_run_id(dataset: str, label: str, gallery: str = "") -> str:
    """``<date>-<time>.<microseconds>-<gallery>-<dataset>-<label>-<random>``: sorts by start
    time, says what ran, and two runs started at the same instant still differ."""
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f".{int(now % 1 * 1e6):06d}"
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{gallery}-{dataset}-{label}").strip("-").lower()
    return f"{stamp}-{slug[:90]}-{secrets.token_hex(3)}"


def claim_folder(root: Path, run_id: str) -> Path:
    """Create the run folder atomically; a clash (an id already taken) gets a numbered suffix,
    so a folder is never shared or reused."""
    root.mkdir(parents=True, exist_ok=True)
    for attempt in range(1000):
        directory = root / (run_id if attempt == 0 else f"{run_id}-{attempt + 1}")
        try:
            directory.mkdir()
            return directory
        except FileExistsError:
            continue
    raise RunError(f"could not create a folder for run {run_id} under {root}")


@dataclass
class Run:
    run_id: str
    directory: Path
    summary: RunSummary
    per_query: pd.DataFrame

    @property
    def ids(self) -> list[str]:
        """Gallery ids in ranking-column order, checked against the ranking's width (runs written
        before ``images.json`` existed are read from ``images.txt``)."""
        if (self.directory / IDS_JSON).exists():
            ids = json.loads((self.directory / IDS_JSON).read_text(encoding="utf-8"))
        else:
            ids = (self.directory / IDS_TEXT).read_text(encoding="utf-8").split("\n")[:-1]
        columns = self.ranking.shape[1]
        if not isinstance(ids, list) or len(ids) != columns:
            raise RunError(f"run {self.run_id} names {len(ids)} gallery images for {columns} ranking columns; "
                           f"its files do not belong together, evaluate again")
        return ids

    @property
    def ranking(self) -> np.ndarray:
        return np.load(self.directory / "ranking.npy", mmap_mode="r")

    @property
    def pr(self) -> dict[str, dict[str, list[float]]]:
        return json.loads((self.directory / "pr.json").read_text())


def write_run(run_id: str, summary: RunSummary | dict, per_query: pd.DataFrame, ids: list[str], ranking: np.ndarray,
              pr: dict[str, dict[str, list[float]]], root: Path | None = None,
              extra: dict[str, pd.DataFrame | dict] | None = None) -> Path:
    """Write every file of a run in a new folder (``run_id``, or ``run_id-2``... if taken); the
    summary goes last, so a run with a summary is complete, and its "run_id" is the folder's
    name. ``extra`` names further files: a DataFrame is written as CSV, anything else as JSON.
    Returns the folder."""
    ranking = np.asarray(ranking, dtype=np.int32)
    if ranking.ndim != 2 or ranking.shape[1] != len(ids):
        raise RunError(f"a ranking of shape {ranking.shape} does not rank {len(ids)} gallery images")
    directory = claim_folder(root or runs_dir(), run_id)
    write_json(directory / IDS_JSON, list(ids))
    write_text(directory / IDS_TEXT, "".join(printable(i) + "\n" for i in ids))
    write_npy(directory / "ranking.npy", ranking)
    with atomic_path(directory / "per_query.csv") as tmp:
        per_query.to_csv(tmp, index=False)
    write_json(directory / "pr.json", pr)
    for name, content in (extra or {}).items():
        if isinstance(content, pd.DataFrame):
            with atomic_path(directory / name) as tmp:
                content.to_csv(tmp, index=False)
        else:
            write_json(directory / name, content)
    data = summary.to_dict() if isinstance(summary, RunSummary) else dict(summary)
    write_json(directory / "summary.json", {**data, "run_id": directory.name} if "run_id" in data else data)
    return directory


def load_run(run_id: str, root: Path | None = None) -> Run:
    directory = (root or runs_dir()) / run_id
    summary_path = directory / "summary.json"
    if not summary_path.exists():
        raise FileNotFoundError(f"no complete run {run_id!r} under {directory.parent}")
    summary = RunSummary.from_dict({"run_id": run_id, **json.loads(summary_path.read_text())})
    summary.run_dir = str(directory)
    return Run(run_id, directory, summary, pd.read_csv(directory / "per_query.csv"))


def list_runs(root: Path | None = None) -> list[str]:
    """Ids of complete runs (with a summary), oldest first."""
    d = root or runs_dir()
    return sorted(p.parent.name for p in d.glob("*/summary.json")) if d.is_dir() else []
