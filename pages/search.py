"""Crop-and-search: pick a gallery and its embedding, a query (upload, gallery image, ground-truth
query or a previous result), select a region with the cropper and search.

Deep links (from the metrics page): ``?gallery=NAME&embedding=KEY&query=GT_QUERY`` or
``&image=IMAGE_ID`` open a query and search at once.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st
from PIL import Image, ImageOps
from streamlit_cropper import st_cropper

from core import (
    DEFAULT_CONFIG,
    DEFAULT_RERANK,
    FRAME,
    LABEL_COLOURS,
    RERANKERS,
    AnnoyParams,
    Box,
    ImageError,
    IndexMismatch,
    Query,
    Results,
    SearchEngine,
    SearchSettings,
    auto_description,
    box_from_cropper,
    check_upload,
    create_reranker,
    cropper_coords,
    draw_window,
    escape_markdown,
    gallery_entries,
    image_id_of,
    image_size,
    label_results,
    list_rerankers,
    preview,
    printable,
    queries_in_gallery,
    query_report,
    trained_configs,
)
from pages.common import (
    PENDING,
    artifacts_key,
    build_demo_widget,
    build_index_widget,
    engine,
    ground_truth,
    image_of,
    thumb_of,
)

PREVIEW = (440, 480)                   # the cropper draws on a preview at most this large (fits its column)
COLUMNS = 3
GALLERY, UPLOAD, GT = "Gallery image", "Upload", "Ground-truth query"


@dataclass
class QueryImage:
    """The query being edited: a token that names it, its full image (path or loaded upload),
    its original size, the box to start the cropper with, and its ground-truth query if any."""

    token: str
    source: str | Image.Image
    size: tuple[int, int]
    box: Box | None
    gt: Query | None = None


@dataclass(frozen=True)
class Settings:
    """Search controls of the sidebar."""

    k: int
    method: str
    metric: str
    search_k: int | None
    rerank: str = "none"


@dataclass
class Shown:
    """The last search of this session, shown until the next one."""

    gallery: str
    results: Results
    gt: Query | None
    k: int
    metric: str
    windows: dict[str, Box] = field(default_factory=dict)   # best windows of local re-ranking
    rerank: str = ""                                          # label of the re-ranking method


def take_link() -> None:
    """Copy deep-link parameters into widget state once per distinct link; values that turn out
    not to exist are ignored when the widgets are built."""
    params = st.query_params.to_dict()
    link = json.dumps(params, sort_keys=True)
    if not params or st.session_state.get("_link") == link:
        return
    st.session_state["_link"] = link
    st.session_state[PENDING] = params
    if "query" in params or "image" in params:
        st.session_state.update(source=GT if "query" in params else GALLERY, auto_search=True)


def pending(param: str, key: str, options: list) -> None:
    """Apply pending value ``param`` (a deep-link parameter, or the gallery just built) to widget
    ``key`` when it is one of ``options``."""
    value = st.session_state.get(PENDING, {}).pop(param, None)
    if value is not None and value in options:
        st.session_state[key] = value


def search_with(image_id: str) -> None:
    st.session_state.update(source=GALLERY, gallery_image=image_id, auto_search=True, rerun_app=True)


def empty_state() -> None:
    st.info("There is no gallery yet. A gallery is a folder of images with its descriptors under "
            "`artifacts/`. Build the small demo gallery (photos that ship with scikit-image, plus "
            "cropped, rotated, recoloured and rescaled copies, with its own ground truth) to try "
            "the app now; nothing is downloaded.")
    build_demo_widget()
    st.markdown("Or index your own folder, or evaluate a benchmark, from a terminal:\n\n"
                "```\npython -m core index --folder PATH/TO/IMAGES --name my-gallery\n"
                "python -m core evaluate --dataset paris6k --root ../shared/data/paris6k\n```")


def choose_query(ids: list[str], root: Path, gt_queries: list[Query]) -> QueryImage | None:
    sources = ([GT] if gt_queries else []) + [GALLERY, UPLOAD]
    if st.session_state.get("source") not in sources:
        st.session_state["source"] = sources[0]
    source = st.radio("Query from", sources, horizontal=True, key="source")
    if source == GT:
        by_name = {q.name: q for q in gt_queries}
        pending("query", "gt_query", list(by_name))
        name = st.selectbox("Ground-truth query", list(by_name), key="gt_query",
                            format_func=lambda n: f"{n}  ({by_name[n].image})")
        q = by_name[name]
        path = root / image_id_of(q.image, ids)
        return QueryImage(f"gt-{name}", str(path), image_size(path), q.box, q)
    if source == GALLERY:
        pending("image", "gallery_image", ids)
        image_id = st.selectbox("Gallery image", ids, key="gallery_image")
        path = root / image_id
        return QueryImage(f"img-{image_id}", str(path), image_size(path), None)
    upload = st.file_uploader("Image (jpg, png, webp, bmp)", key="upload")
    if upload is None:
        return None
    try:
        img = check_upload(upload.name, upload.getvalue(), st.get_option("server.maxUploadSize"))
    except ImageError as exc:
        st.error(str(exc))
        return None
    return QueryImage(f"up-{upload.file_id}", img, img.size, None)


def crop(query: QueryImage) -> Box:
    """The cropper over a preview of the query; returns the box in original pixels."""
    full = query.source if isinstance(query.source, Image.Image) else image_of(query.source, max(PREVIEW))
    small, _ = preview(full, *PREVIEW)
    scale = query.size[0] / small.width
    start = query.box or Box(0, 0, *query.size)
    rect = st_cropper(small, realtime_update=True, box_color="#ff4b4b", return_type="box",
                      default_coords=cropper_coords(start, scale), should_resize_image=False,
                      key=f"crop-{query.token}")
    box = box_from_cropper(rect, scale, query.size)
    st.caption(f"Query box in original pixels: x1 {box.x1:g}, y1 {box.y1:g}, x2 {box.x2:g}, y2 {box.y2:g} "
               f"({box.x2 - box.x1:g}×{box.y2 - box.y1:g} of {query.size[0]}×{query.size[1]})")
    return box


def window_thumb(path: Path, label: str | None, window: Box) -> Image.Image:
    """A result with its best window drawn, framed like ``thumb_of`` when it has a label."""
    img = draw_window(image_of(str(path), 200), window, image_size(path))
    return ImageOps.expand(img, border=FRAME, fill=LABEL_COLOURS[label]) if label else img


def show_results(shown: Shown, root: Path, ids: list[str], eng: SearchEngine) -> None:
    results, gt, k = shown.results, shown.gt, shown.k
    st.markdown(f"**{len(results.items)} results** · embed {results.embed_ms:.0f} ms · "
                f"search {results.search_ms:.1f} ms" + (f" · re-ranked by {shown.rerank}" if shown.rerank else ""))
    labels = label_results(gt, [r.image_id for r in results.items]) if gt else [None] * len(results.items)
    if gt:
        ranking, _ = eng.search_vector(results.query_vector, len(ids), SearchSettings("exact", shown.metric))
        rep = query_report(gt, [r.index for r in results.items], [r.index for r in ranking], ids, k)
        c = st.columns(4)
        c[0].metric("AP", f"{rep.ap:.3f}")
        c[1].metric("AP 11-pt", f"{rep.ap_interp11:.3f}", help="11-point interpolated AP")
        c[2].metric(f"P@{k}", f"{rep.precision_at_k:.2f}")
        c[3].metric("Missed", f"{rep.missed}/{rep.n_relevant}",
                    help=f"Relevant images of this gallery that are not in the top {k}")
        st.caption("Relevant = listed positives present in this gallery; junk is ignored; AP over the "
                   "results shown, then the rest of the gallery in exact-search order. Frames: " + ", ".join(
                       f"<span style='color:{LABEL_COLOURS[lab]}'>■</span> {lab}" for lab in LABEL_COLOURS),
                   unsafe_allow_html=True)
    grid = st.container(key="results")
    for start in range(0, len(results.items), COLUMNS):
        for col, item, label in zip(grid.columns(COLUMNS), results.items[start:start + COLUMNS],
                                    labels[start:start + COLUMNS]):
            with col:
                window = shown.windows.get(item.image_id)
                st.image(window_thumb(root / item.image_id, label, window) if window
                         else thumb_of(root / item.image_id, label, max_side=200), width="stretch")
                st.markdown(f"**#{item.rank}** · {item.score:.3f}" + (f" · **{label}**" if label else ""))
                st.text(printable(item.image_id))          # a file name is plain text, never Markdown
                st.button("Search with this", key=f"again-{item.rank}", on_click=search_with,
                          args=(item.image_id,), type="tertiary", icon=":material/image_search:")


@st.fragment
def results_panel(eng: SearchEngine, query: QueryImage | None, box: Box | None, settings: Settings) -> None:
    """The Search button and the results. A fragment: pressing Search reruns only this part, not
    the cropper and the rest of the page; "search with this" changes the query, so it reruns all."""
    if st.session_state.pop("rerun_app", False):
        st.rerun()
    clicked = st.button("Search", type="primary", key="search", disabled=query is None, width="stretch")
    if query and (clicked or st.session_state.pop("auto_search", False)):
        try:
            with st.spinner("Searching…"):
                results = eng.search(query.source, box, k=settings.k,
                                     settings=SearchSettings(settings.method, settings.metric,
                                                             AnnoyParams(search_k=settings.search_k)),
                                     reranker=create_reranker(settings.rerank))
            windows = {i: e[1] for i, e in results.evidence.items() if e[1] is not None}
            label = results.rerank_label
        except (ImageError, IndexMismatch) as exc:
            st.error(str(exc))
        else:
            st.session_state["results"] = Shown(eng.gallery.name, results, query.gt, settings.k, settings.metric,
                                                windows, label)
    shown = st.session_state.get("results")
    if shown and shown.gallery == eng.gallery.name:
        show_results(shown, eng.gallery.root, eng.embeddings.ids, eng)


def main() -> None:
    st.title("Search")
    entries = gallery_entries()
    if not entries:
        empty_state()
        return
    take_link()
    by_name = {e.gallery.name: e for e in entries}
    with st.sidebar:
        pending("gallery", "gallery", list(by_name))
        entry = by_name[st.selectbox("Gallery", list(by_name), key="gallery")]
        # the default embedding first, so that a fresh session searches with the measured default
        caches = {c.key: c for c in sorted(entry.indexed, key=lambda c: c.key != DEFAULT_CONFIG.key())}
        if caches:
            pending("embedding", "embedding", list(caches))
            cache = caches[st.selectbox("Embedding", list(caches), key="embedding",
                                        format_func=lambda key: f"{caches[key].label} · {caches[key].dim}-d")]
        k = st.slider("Results (k)", 1, 100, 10, key="k")
        metric = st.radio("Similarity", ["cosine", "euclidean"], horizontal=True, key="metric")
        method = st.radio("Index", ["auto", "exact", "annoy", "hnsw"], horizontal=True, key="method",
                          help=f"auto: {auto_description()} (benchmarks/bench_search.py); Annoy and HNSW are built "
                               "on first use")
        search_k = st.number_input("Annoy search_k (0: tuned at build time for recall@10 ≥ 0.95)", 0, 10_000_000,
                                   0, step=1000, key="search_k") if method == "annoy" else 0
        methods = list_rerankers()
        rerank = st.selectbox("Re-ranking", methods, index=methods.index(DEFAULT_RERANK),
                              format_func=lambda n: RERANKERS[n].title + (" (default)" if n == DEFAULT_RERANK else ""),
                              key="rerank",
                              help=f"core/rerank/, over the chosen index's ranking. Default {DEFAULT_RERANK}, chosen "
                                   "on the validation protocol (README \"Re-ranking\"). Local windows draw the best "
                                   "window on each result; the metrics page compares the methods' runs.")
        if RERANKERS[rerank].helps:
            st.caption(RERANKERS[rerank].helps)
        trained = {n: c for n, c in trained_configs().items() if c.key() not in caches}
        if trained:
            with st.expander("Trained models"):
                for model, config in trained.items():
                    build_index_widget(entry.gallery.name, config, key=f"build-{model}")
        if "demo" not in by_name:
            with st.expander("Demo gallery"):
                build_demo_widget(primary=False)
    gallery = entry.gallery
    if not caches:
        st.warning(f"Gallery **{gallery.name}** ({escape_markdown(str(gallery.root))}) has no index yet.")
        build_index_widget(gallery.name)
        return
    eng = engine(gallery.name, cache.config)
    ids = eng.embeddings.ids
    try:
        gt = ground_truth(artifacts_key(), gallery.name)
    except (ValueError, OSError) as exc:                  # a malformed or refused ground-truth file: one line
        st.warning(f"Ground truth of {gallery.name} not used: {escape_markdown(str(exc))}")
        gt = None
    gt_queries = queries_in_gallery(gt, ids) if gt else []
    st.caption(f"{gallery.name}: {len(ids)} images · {cache.label}"
               + (f" · ground truth: {gt.dataset}, {len(gt_queries)} queries in this gallery" if gt else ""))

    left, right = st.columns([1, 1], gap="large")
    with left:
        query = choose_query(ids, gallery.root, gt_queries)
        box = crop(query) if query else None
        if query:
            st.image(image_of(query.source, 320, box) if isinstance(query.source, str)
                     else query.source.crop(tuple(box.as_list())), caption="What is embedded", width=160)
    with right:
        results_panel(eng, query, box, Settings(k, method, metric, search_k or None, rerank))


main()
