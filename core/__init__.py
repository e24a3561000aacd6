"""cbir: content-based image retrieval you can run on a laptop.

The pipeline's stages are packages, each importing only those below it (pyproject.toml's
import-linter contract): ``datasets`` (ground truth) → ``embed`` (backbones, pooling, the
``Embedder``) → ``cache`` (descriptors per gallery and config) → ``index`` (exact, Annoy) →
``rerank`` (registered re-rankers) → ``search`` (``SearchEngine``: one call from query to
results) and ``evaluation`` (metrics, runs) → ``app`` (what only the pages need) → ``cli``.

This module is the public surface the app's pages use, in the manner of timm's ``__init__``:
``from core import SearchEngine, create_reranker``. Names load on first use, so importing one
stage does not import all of them.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS: dict[str, tuple[str, ...]] = {
    "core.config": ("DEFAULT_CONFIG", "EmbeddingConfig"),
    "core.images": ("Box", "ImageError", "image_size", "load_image"),
    "core.paths": ("artifacts_dir",),
    "core.fs": ("printable",),
    "core.datasets": ("GroundTruth", "Query", "load_ground_truth"),
    "core.embed.embedder": ("Embedder",),
    "core.cache.descriptors": ("CacheInfo", "build_embeddings", "cache_dir", "cache_version", "gallery_caches",
                               "load_embeddings"),
    "core.progress": ("Reporter",),
    "core.cache.galleries": ("Gallery", "GalleryError", "delete_descriptors", "delete_gallery", "folder_size",
                             "list_galleries", "load_gallery", "register_gallery"),
    "core.index": ("RANK_DEPTH", "IndexMismatch", "Result", "SearchSettings", "backend", "backend_names", "settings_from"),
    "core.index.choice": ("auto_description",),
    "core.rerank": ("DEFAULT_RERANK", "RERANKERS", "Reranker", "create_reranker", "list_rerankers"),
    "core.rerank.local": ("draw_window",),
    "core.search.engine": ("Results", "SearchEngine"),
    "core.evaluation.reports": ("class_results",),
    "core.evaluation.runs": ("Run", "list_runs", "load_run"),
    "core.evaluation.summary": ("RunSummary",),
    "core.app.activity": ("cache_bytes", "caches_in_progress", "extraction_rate", "sample_images"),
    "core.app.browse": ("PICKER_MAX_IDS", "filter_ids", "groups", "page_of"),
    "core.app.catalog": ("ap_comparison", "bench_reports", "chart_columns", "confusion_cell_images", "failure_cases",
                         "gallery_entries",
                         "gallery_ground_truth", "image_id_of", "pr_curves", "queries_in_gallery", "run_ground_truth",
                         "runs_table"),
    "core.app.comparison": ("default_pair", "fitted_domain", "method_colours", "run_names", "variant_labels",
                            "worst_query"),
    "core.app.demo": ("DEMO_NAME", "PHOTOS", "TRANSFORMS", "build_demo_gallery", "evaluate_demo"),
    "core.app.export": ("failure_frame", "results_frame", "score_kind", "to_json"),
    "core.app.duplicates": ("DuplicateGroup", "near_duplicates"),
    "core.app.failures": ("QueryFailure", "analyse_ranking", "failure_reason", "gallery_root", "rank_moves",
                          "ranking_of"),
    "core.app.labels": ("LABEL_COLOURS", "label_results", "query_report"),
    "core.app.markdown": ("escape_markdown",),
    "core.app.models": ("model_table", "side_by_side", "trained_configs", "trained_models", "training_curves"),
    "core.app.names": ("dataset_name", "embedding_name", "rerank_name"),
    "core.app.preview": ("FRAME", "MAX_UPLOAD_MB", "UPLOAD_NAMES", "box_from_cropper", "check_upload", "cropper_coords",
                         "fit_box", "gallery_image_size", "missing_thumbnail", "preview", "read_upload", "thumbnail"),
    "core.app.thumbnails": ("ThumbnailStore", "frame_jpeg"),
    "core.app.urlstate": ("MAX_K", "ViewState", "decode", "missing"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__: list[str] = sorted(_MODULE_OF)  # noqa: PLE0605 (built from the table above)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'core' has no attribute {name!r}")
    value = getattr(import_module(_MODULE_OF[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
