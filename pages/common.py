"""What both pages share: the process-wide caches (network, descriptors and indexes load once
per process and serve every session) and the demo-gallery builder widget.

Cache keys include the artifacts folder, so one process never mixes two ``CBIR_ARTIFACTS``
(the tests run several in one interpreter).
"""
from __future__ import annotations

import base64
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import streamlit as st
from PIL import Image

from core import (
    DEFAULT_CONFIG,
    DEMO_NAME,
    LABEL_COLOURS,
    PHOTOS,
    TRANSFORMS,
    Box,
    Embedder,
    EmbeddingConfig,
    GroundTruth,
    ImageError,
    Query,
    Reporter,
    Run,
    SearchEngine,
    ThumbnailStore,
    artifacts_dir,
    build_demo_gallery,
    build_embeddings,
    cache_version,
    embedding_name,
    evaluate_demo,
    frame_jpeg,
    gallery_ground_truth,
    groups,
    list_runs,
    load_gallery,
    load_image,
    load_run,
    missing_thumbnail,
    queries_in_gallery,
    run_ground_truth,
    runs_table,
    thumbnail,
)


def _bar_reporter(bar) -> Reporter:
    """A ``Reporter`` that moves a Streamlit progress bar and prints nothing."""
    return Reporter(bar=False, on_progress=lambda d, t: bar.progress(d / t, text=f"Embedding {d}/{t} images"),
                    log=lambda m: None)


PENDING = "_pending"          # widget values to apply on the next run, before the widgets exist


def artifacts_key() -> str:
    return str(artifacts_dir().resolve())


@st.cache_resource(show_spinner="Loading the network…")
def embedder(config_json: str) -> Embedder:
    return Embedder(EmbeddingConfig.from_dict(json.loads(config_json)))


@st.cache_resource(show_spinner="Loading descriptors…", max_entries=16)
def _engine(artifacts: str, gallery: str, config_json: str, version: int) -> SearchEngine:
    config = EmbeddingConfig.from_dict(json.loads(config_json))
    return SearchEngine(load_gallery(gallery), config, embedder=embedder(json.dumps(config.base().to_dict())))


def _descriptors_key(gallery: str, config: EmbeddingConfig) -> tuple[str, str, str, int]:
    """What names one version of a gallery's descriptors in the process-wide caches."""
    return artifacts_key(), gallery, json.dumps(config.to_dict(), sort_keys=True), cache_version(gallery, config)


def engine(gallery: str, config: EmbeddingConfig) -> SearchEngine:
    """Search engine of one gallery under one embedding, shared by every session; networks are
    shared between galleries. An update of the descriptors (``python -m core index``) gives a
    new engine."""
    return _engine(*_descriptors_key(gallery, config))


@st.cache_resource(show_spinner=False)
def search_threads() -> ThreadPoolExecutor:
    """The threads every session's searches run on, made once: glibc gives a new thread its own
    malloc arena (up to 8 per core), and the memory freed in an arena stays with the process."""
    return ThreadPoolExecutor(SEARCH_THREADS, thread_name_prefix="search")


@st.cache_resource(show_spinner="Grouping the gallery's images…", max_entries=16)
def _groups(artifacts: str, gallery: str, config_json: str, version: int) -> dict[str, list[str]]:
    return groups(_engine(artifacts, gallery, config_json, version).embeddings.ids)


def gallery_groups(eng: SearchEngine) -> dict[str, list[str]]:
    """The groups of the engine's gallery (``core.app.browse.groups``), made once per gallery and
    embedding: the Browse dialog reruns on every page and filter, and at 1M ids they take 4.6 s."""
    return _groups(*_descriptors_key(eng.gallery.name, eng.config))


@st.cache_resource(show_spinner=False, max_entries=16)
def _gt_queries(artifacts: str, gallery: str, config_json: str, version: int) -> list[tuple[Query, str]]:
    gt = ground_truth(artifacts, gallery)
    return queries_in_gallery(gt, _engine(artifacts, gallery, config_json, version).embeddings.ids) if gt else []


def gallery_queries(eng: SearchEngine) -> list[tuple[Query, str]]:
    """The ground-truth queries whose image is in the engine's gallery, with its id
    (``core.app.catalog.queries_in_gallery``), found once per gallery and embedding: at 1M ids
    the pass over them takes 2.3 s. Call it after ``ground_truth`` has loaded without error."""
    return _gt_queries(*_descriptors_key(eng.gallery.name, eng.config))


@st.cache_data(show_spinner=False)
def ground_truth(artifacts: str, gallery: str) -> GroundTruth | None:
    return gallery_ground_truth(load_gallery(gallery))


SEARCH_THREADS = 4             # searches of all sessions at once (more queue): twice the cores here
THUMB_SIDE = 200                # every thumbnail of the app (results, picker, failures) is this large


@st.cache_resource(show_spinner=False)
def thumb_store() -> ThumbnailStore:
    """One store of decoded thumbnails for the process (``core.app.thumbnails``)."""
    return ThumbnailStore(THUMB_SIDE)


def warm_thumbnails(gallery: str, root: Path, ids: list[str]) -> None:
    """Decode a gallery's thumbnails in the background, so that searches only frame them (not a
    gallery larger than the store: ``ThumbnailStore.warm``)."""
    thumb_store().warm(root, ids, f"{artifacts_key()}:{gallery}")


@st.cache_data(max_entries=4000, show_spinner=False)
def _thumb_uri(path: str, mtime_ns: int, label: str | None, box: tuple[float, ...] | None) -> str:
    data = thumbnail(path, THUMB_SIDE, None, Box.of(box), square=True) if box else thumb_store().get(path)
    return "data:image/jpeg;base64," + base64.b64encode(frame_jpeg(data, LABEL_COLOURS.get(label or ""))).decode()


def thumb_uri(path: Path, label: str | None = None, box: tuple[float, ...] | None = None) -> str:
    """A square thumbnail (cropped to ``box``, framed in the colour of ``label``) as a data URI:
    ``st.image`` sends it inside the page update, so a grid of results shows without one HTTP
    request per thumbnail; ``mtime`` renews it when the file changes. A photo that cannot be read
    any more (deleted since indexing) gets a crossed placeholder."""
    try:
        return _thumb_uri(str(path), path.stat().st_mtime_ns, label, box)
    except (OSError, ImageError):
        return missing_uri()


def missing_uri() -> str:
    """The crossed placeholder of a photo that cannot be shown, as a data URI."""
    return "data:image/jpeg;base64," + base64.b64encode(missing_thumbnail(THUMB_SIDE)).decode()


@st.cache_data(max_entries=64, show_spinner=False)
def _image(path: str, mtime_ns: int, max_side: int, box: tuple[float, ...] | None) -> Image.Image:
    return load_image(path, max_side, Box.of(box) if box else None)


def image_of(path: str, max_side: int, box: Box | None = None) -> Image.Image:
    """A gallery image (or its crop), downscaled, decoded once: reruns of the page are cheap."""
    return _image(path, os.stat(path).st_mtime_ns, max_side, tuple(box.as_list()) if box else None)


@st.cache_data(show_spinner=False)
def runs(artifacts: str, run_ids: tuple[str, ...]) -> pd.DataFrame:
    return runs_table()


@st.cache_data(show_spinner=False)
def run(artifacts: str, run_id: str) -> Run:
    return load_run(run_id)


@st.cache_data(show_spinner=False)
def run_gt(artifacts: str, run_id: str) -> GroundTruth | None:
    """The ground truth a run was evaluated with (None when it cannot be found any more)."""
    return run_ground_truth(load_run(run_id).summary)


def all_runs() -> pd.DataFrame:
    return runs(artifacts_key(), tuple(list_runs()))


_navigation_checked = False


def through_app() -> None:
    """Make sure this page runs under app.py's ``st.navigation``. When the first visit after the
    server starts is a page's own URL (a bookmark, a tab reconnecting after a restart), Streamlit
    takes the ``pages/`` folder for an old-style multipage app and runs the page file alone, with
    every file of ``pages/`` (``common.py`` too) listed as a page and no page config, for every
    session until someone opens the app's root. Each page calls this first: on the process's first
    page run it switches Streamlit to the navigation app.py declares and reruns once, which then
    goes through app.py. (Once per process: Streamlit's AppTest resets the flag on every run.)"""
    from streamlit.runtime.pages_manager import PagesManager

    global _navigation_checked
    if _navigation_checked:
        return
    _navigation_checked = True
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def build_demo_widget(primary: bool = True) -> None:
    """One click: write the demo images (from scikit-image's bundled photos), register the
    ``demo`` gallery, embed it and write a first evaluation run of it, with a progress bar."""
    n = len(PHOTOS) * (1 + len(TRANSFORMS))
    if st.button(f"Build the demo gallery ({n} images)", type="primary" if primary else "secondary",
                 key="build_demo", help="Embeds the demo photos and evaluates their 10 queries, so that the "
                                        "Metrics page has a first run to show."):
        bar = st.progress(0.0, text="Writing the demo images…")
        network = embedder(json.dumps(DEFAULT_CONFIG.base().to_dict()))       # the process's, loaded once
        gallery = build_demo_gallery(DEFAULT_CONFIG, network, _bar_reporter(bar))
        bar.progress(1.0, text=f"Evaluating the {len(PHOTOS)} demo queries…")
        evaluate_demo(gallery, DEFAULT_CONFIG, network, log=lambda m: None)
        st.session_state[PENDING] = {"gallery": DEMO_NAME}
        st.rerun()


def build_index_widget(gallery: str, config: EmbeddingConfig = DEFAULT_CONFIG, key: str = "build_index") -> None:
    """Embed a registered gallery under ``config`` (default: the default embedding; the search
    page also offers each trained model's)."""
    if st.button(f"Build the index of {gallery} ({embedding_name(config)})", type="primary", key=key):
        embed_gallery(gallery, config)
        st.rerun()


def embed_gallery(gallery: str, config: EmbeddingConfig = DEFAULT_CONFIG) -> None:
    """Embed (or update) a registered gallery with a progress bar, as ``python -m core index`` does."""
    bar = st.progress(0.0, text="Loading the network…")
    build_embeddings(load_gallery(gallery), config, embedder(json.dumps(config.base().to_dict())), _bar_reporter(bar))
