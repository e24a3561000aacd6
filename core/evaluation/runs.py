"""Evaluation runs on disk: ``artifacts/runs/<run-id>/``.

- ``summary.json``: dataset, embedding config, counts, mean metrics, timings, versions, machine;
- ``per_query.csv``: one row per evaluated query (metrics, box, first relevant rank, ...);
- ``images.txt``: gallery ids, one a line, in index order;
- ``ranking.npy``: int32 [n_queries, n_images], full rankings, gallery indices best first;
- ``pr.json``: {query: {"precision": [...], "recall": [...]}} after junk removal;
- protocol files (``core.evaluation.reports``): ``classes.csv`` and ``confusion.json`` of class-folder runs.

The app's metrics page and outside tools read runs with ``load_run``/``list_runs``.
"""
from __future__ import annotations

import json
import platform
import re
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from core.evaluation.summary import RunSummary
from core.files import atomic_path, write_json, write_npy, write_text
from core.paths import runs_dir

PACKAGES = ("torch", "torchvision", "timm", "numpy", "annoy", "pillow", "streamlit")


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    out["python"] = platform.python_version()
    return out


def machine_info() -> dict[str, str | int]:
    import os
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count() or 0}


def new_run_id(dataset: str, label: str, root: Path | None = None) -> str:
    """``<timestamp>-<dataset>-<label>``, with a ``-2``, ``-3``... suffix when a run of the same
    second already has that name (a validation writes several runs a second)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{dataset}-{label}").strip("-").lower()
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}"[:116]
    run_id, n = base, 1
    while ((root or runs_dir()) / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


@dataclass
class Run:
    run_id: str
    directory: Path
    summary: RunSummary
    per_query: pd.DataFrame

    @property
    def ids(self) -> list[str]:
        return (self.directory / "images.txt").read_text().splitlines()

    @property
    def ranking(self) -> np.ndarray:
        return np.load(self.directory / "ranking.npy", mmap_mode="r")

    @property
    def pr(self) -> dict[str, dict[str, list[float]]]:
        return json.loads((self.directory / "pr.json").read_text())


def write_run(run_id: str, summary: dict, per_query: pd.DataFrame, ids: list[str], ranking: np.ndarray,
              pr: dict[str, dict[str, list[float]]], root: Path | None = None,
              extra: dict[str, pd.DataFrame | dict] | None = None) -> Path:
    """Write every file of a run; the summary goes last, so a run with a summary is complete.
    ``extra`` names further files: a DataFrame is written as CSV, anything else as JSON."""
    directory = (root or runs_dir()) / run_id
    directory.mkdir(parents=True, exist_ok=True)
    write_text(directory / "images.txt", "\n".join(ids) + "\n")
    write_npy(directory / "ranking.npy", np.asarray(ranking, dtype=np.int32))
    with atomic_path(directory / "per_query.csv") as tmp:
        per_query.to_csv(tmp, index=False)
    write_json(directory / "pr.json", pr)
    for name, content in (extra or {}).items():
        if isinstance(content, pd.DataFrame):
            with atomic_path(directory / name) as tmp:
                content.to_csv(tmp, index=False)
        else:
            write_json(directory / name, content)
    write_json(directory / "summary.json", summary)
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
