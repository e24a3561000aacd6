"""Where artifacts live. ``CBIR_ARTIFACTS`` overrides the default ``<repo>/artifacts``."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def artifacts_dir() -> Path:
    return Path(os.environ.get("CBIR_ARTIFACTS", REPO_ROOT / "artifacts"))


def embeddings_dir() -> Path:
    return artifacts_dir() / "embeddings"


def runs_dir() -> Path:
    return artifacts_dir() / "runs"


def galleries_dir() -> Path:
    return artifacts_dir() / "galleries"


def models_dir() -> Path:
    """Trained models: ``models/<name>/model.pt`` and ``model.json`` (``python -m core train``)."""
    return artifacts_dir() / "models"
