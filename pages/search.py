"""Crop-and-search: pick a gallery and its embedding, a query (ground-truth query, gallery image
picked from a list or from thumbnails, or an upload), select a region with the cropper and search.

The URL holds the view (``core.app.urlstate``): gallery, embedding, query or image, box, k, metric,
index, search effort and re-ranking; a reload or a shared link shows the same search, and says what of
a link could not be restored. The Search button and the results are a fragment: a search reruns
only them.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, fields, replace
from functools import partial

import streamlit as st
from PIL import Image, ImageOps
from streamlit_cropper import st_cropper

from core import (
    DEFAULT_CONFIG,
    DEFAULT_RERANK,
    FRAME,
    LABEL_COLOURS,
    MAX_K,
    MAX_UPLOAD_MB,
    PICKER_MAX_IDS,
    RANK_DEPTH,
    RERANKERS,
    UPLOAD_NAMES,
    Box,
    ImageError,
    IndexMismatch,
    Query,
    Reranker,
    Result,
    Results,
    SearchEngine,
    ViewState,
    auto_description,
    backend,
    backend_names,
    box_from_cropper,
    create_reranker,
    cropper_coords,
    dataset_name,
    decode,
    draw_window,
    embedding_name,
    escape_markdown,
    extraction_rate,
    filter_ids,
    fit_box,
    gallery_entries,
    gallery_image_size,
    image_size,
    label_results,
    list_rerankers,
    missing,
    page_of,
    preview,
    printable,
    query_report,
    read_upload,
    rerank_name,
    results_frame,
    score_kind,
    settings_from,
    to_json,
    trained_configs,
)
from pages.common import (
    PENDING,
    artifacts_key,
    build_demo_widget,
    build_index_widget,
    engine,
    gallery_groups,
    gallery_queries,
    ground_truth,
    image_of,
    missing_uri,
    search_threads,
    through_app,
    thumb_uri,
    warm_thumbnails,
)

PREVIEW = (340, 340)            # the cropper draws on a preview at most this large
QUERY_WIDTH = 350               # the query column; the results take the rest of the row, or go below it
TILES = {"small": 100, "medium": 125, "large": 200}   # least width of a result tile: 3 a row at 1280, 7 at 1920
SLOW = 2.0                      # a search that takes longer shows its progress
PER_PAGE = 24                   # results a page: k = 100 is 5 pages, not a 19,000-pixel page
BROWSE_PER_PAGE = 24
GALLERY, UPLOAD, GT = "Gallery image", "Upload", "Ground-truth query"
LINK, PROBLEMS = "_link", "_link_problems"
KEEP = "session"                # widgets keep their value when the person visits another page and comes back


@dataclass
class QueryImage:
    """The query being edited: a token that names it, what a person calls it, its full image
    (path or loaded upload; None: a gallery image without a file here, searched by its stored
    descriptor), its original size, the box to start the cropper with, its ground-truth query
    and its own id in the gallery, if any."""

    token: str
    name: str
    source: str | Image.Image | None
    size: tuple[int, int] | None
    box: Box | None
    gt: Query | None = None
    image_id: str | None = None


@dataclass(frozen=True)
class Settings:
    """Search controls of the sidebar."""

    k: int
    method: str
    metric: str
    effort: int | None                   # the index's search effort (None: tuned at build time)
    rerank: str = "none"
    hide_self: bool = False


@dataclass
class Shown:
    """The last search of this session, shown until the next one."""

    gallery: str
    token: str
    name: str
    source: str | Image.Image
    results: Results
    gt: Query | None
    k: int
    metric: str
    box: Box | None
    image_id: str | None                                      # the query's own image, if in the gallery
    hidden: list[Result] = field(default_factory=list)        # the query's own image, when hidden
    windows: dict[str, Box] = field(default_factory=dict)     # best windows of local re-ranking
    rerank: str = ""                                          # the re-ranking in words ("" when none)


# ------------------------------------------------------------------ the link

def take_link() -> None:
    """Copy a new link's parameters into widget state; names that turn out not to exist are
    reported when the widgets are built. A URL this session wrote itself is not a new link: the
    browser may send a rerun with the previous URL before it has applied the one just written."""
    params = st.query_params.to_dict()
    link = json.dumps(params, sort_keys=True)
    written = st.session_state.setdefault(LINK, set())
    if not params or link in written:
        return
    written.add(link)
    state, problems = decode(params)
    st.session_state[PENDING] = {f.name: getattr(state, f.name) for f in fields(state)
                                 if getattr(state, f.name) is not None}
    st.session_state[PROBLEMS] = problems
    for key, value in (("k", state.k), ("metric", state.metric), ("method", state.index),
                       ("effort", state.effort), ("rerank", state.rerank)):
        if value is not None:
            st.session_state[key] = value
    if state.query or state.image:
        st.session_state.update(source=GT if state.query else GALLERY, auto_search=True)


def pending(param: str, key: str, options: list, kind: str) -> None:
    """Apply the pending value ``param`` (from a link, or the gallery just built) to widget
    ``key``; a value that is not among ``options`` is reported, not silently replaced."""
    value = st.session_state.get(PENDING, {}).pop(param, None)
    if value is None:
        return
    if value in options:
        st.session_state[key] = value
        return
    shown = st.session_state.get(key) if st.session_state.get(key) in options else (options[0] if options else "nothing")
    st.session_state.setdefault(PROBLEMS, []).append(missing(kind, value, options, repr(shown)))
    if param in ("query", "image"):
        st.session_state["auto_search"] = False


def write_link(view: ViewState) -> None:
    """Put the view in the URL (and remember it, so that it is not taken as a new link)."""
    params = view.to_params()
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)
    st.session_state.setdefault(LINK, set()).add(json.dumps(params, sort_keys=True))


def link_problems() -> None:
    problems = st.session_state.get(PROBLEMS)
    if problems:
        st.warning("  \n".join(problems), icon=":material/link_off:")
        if st.button("Dismiss", key="dismiss_link", type="tertiary"):
            st.session_state.pop(PROBLEMS)
            st.rerun()


# ------------------------------------------------------------------ choosing the query

def empty_state() -> None:
    st.info("There is no gallery yet. A gallery is a folder of images with its descriptors under "
            "`artifacts/`. Build the small demo gallery (photos that ship with scikit-image, plus "
            "cropped, rotated, recoloured and rescaled copies, with its own ground truth) to try "
            "the app now; nothing is downloaded.")
    build_demo_widget()
    st.markdown("Or index your own folder, or evaluate a benchmark, from a terminal:\n\n"
                "```\npython -m core index --folder PATH/TO/IMAGES --name my-gallery\n"
                "python -m core evaluate --dataset paris6k --root ../shared/data/paris6k\n```")


def pick(image_id: str) -> None:
    st.session_state.update(source=GALLERY, gallery_image=image_id, browsing=False)


def stop_browsing() -> None:
    st.session_state["browsing"] = False


@st.dialog("Pick a query image", width="large", on_dismiss=stop_browsing)
def browse(eng: SearchEngine) -> None:
    """Thumbnails of the gallery, filtered by name and group (class folder or name prefix; no
    group list when there are more groups than ``PICKER_MAX_IDS``, for the picker's reason)."""
    ids, root, by_group = eng.embeddings.ids, eng.gallery.root, gallery_groups(eng)
    c = st.columns([2, 2, 1])
    text = c[0].text_input("Name contains", key="browse_text", placeholder="e.g. louvre, 0001")
    options = list(by_group) if len(by_group) <= PICKER_MAX_IDS else []
    group = c[1].selectbox("Class or name group", [None, *options], key="browse_group",
                           format_func=lambda g: "all" if g is None else g)
    chosen = filter_ids(ids if group is None else by_group[group], text)
    page_ids, n_pages = page_of(chosen, st.session_state.get("browse_page", 1), BROWSE_PER_PAGE)
    if st.session_state.get("browse_page", 1) > n_pages:
        st.session_state["browse_page"] = 1
    c[2].caption(f"{len(chosen):,} of {len(ids):,} images")
    grid = st.grid("auto", min_column_width=110, gap="xsmall", key="browse_grid")
    for image_id in page_ids:
        with grid.cell():
            st.image(thumb_uri(root / image_id), caption=escape_markdown(image_id), width="stretch")
            if st.button("Use", key=f"pick-{image_id}", on_click=pick, args=(image_id,), width="stretch"):
                st.rerun()
    if n_pages > 1:
        st.pagination(n_pages, key="browse_page")


def gallery_image(eng: SearchEngine) -> str | None:
    """The "Gallery image" picker, with Browse beside it: a list of the ids of a gallery of at most
    ``PICKER_MAX_IDS`` images, else a text field checked against them. Returns the id, or None
    for a typed id the gallery does not hold (said in one line)."""
    ids = eng.embeddings.ids
    pending("image", "gallery_image", ids, "gallery image")
    row = st.container(horizontal=True, vertical_alignment="bottom", wrap=False)      # the button keeps its label
    if len(ids) <= PICKER_MAX_IDS:
        image_id = row.selectbox("Gallery image", ids, key="gallery_image", persist_state=KEEP)
    else:
        st.session_state.setdefault("gallery_image", ids[0])
        image_id = row.text_input("Gallery image", key="gallery_image", persist_state=KEEP,
                                  help=f"Type an id of the {len(ids):,} images as the results show it, or browse "
                                       "their thumbnails").strip()
    if row.button("Browse", key="browse", icon=":material/grid_view:", help="Pick from thumbnails", width="content"):
        st.session_state["browsing"] = True
    if st.session_state.get("browsing"):       # stays open over reruns until a pick or a dismissal
        browse(eng)
    if eng.embeddings.row_of(image_id) is None:
        st.warning(f"{escape_markdown(eng.gallery.name)} has no image {escape_markdown(repr(image_id))}: type an id "
                   f"as the results show it (e.g. {escape_markdown(ids[0])}), or browse.", icon=":material/search_off:")
        return None
    return image_id


def gallery_query(eng: SearchEngine, image_id: str) -> QueryImage:
    """A gallery image as the query: its file, or, for an imported gallery whose file is not on
    this machine, its stored descriptor (whole image: without pixels there is nothing to crop)."""
    path = eng.gallery.root / image_id
    if eng.gallery.imported and not path.exists():
        st.caption(f"No file of {escape_markdown(image_id)} on this machine (imported descriptors): the search uses "
                   "its stored descriptor, of the whole image.")
        return QueryImage(f"img-{image_id}", image_id, None, None, None, None, image_id)
    return QueryImage(f"img-{image_id}", image_id, str(path), gallery_image_size(path), None, None, image_id)


def choose_query(eng: SearchEngine, gt_queries: list[tuple[Query, str]]) -> QueryImage | None:
    """The query source and the query: a ground-truth query (each with its image's id), a
    gallery image or an upload."""
    sources = ([GT] if gt_queries else []) + [GALLERY, UPLOAD]
    if st.session_state.get("source") not in sources:
        st.session_state["source"] = sources[0]
    source = st.radio("Query from", sources, horizontal=True, key="source", persist_state=KEEP)
    if source == GT:
        by_name = {q.name: (q, image_id) for q, image_id in gt_queries}
        pending("query", "gt_query", list(by_name), "ground-truth query")
        name = st.selectbox("Ground-truth query", list(by_name), key="gt_query", persist_state=KEEP,
                            format_func=lambda n: f"{n}  ({by_name[n][0].image})")
        q, image_id = by_name[name]
        path = eng.gallery.root / image_id
        return QueryImage(f"gt-{name}", name, str(path), gallery_image_size(path), q.box, q, image_id)
    if source == GALLERY:
        image_id = gallery_image(eng)
        return gallery_query(eng, image_id) if image_id is not None else None
    # the server accepts more than the limit (server.maxUploadSize), so that a too large file gets a
    # message that names it, not only the uploader's small error icon
    upload = st.file_uploader(f"Image ({UPLOAD_NAMES}, at most {MAX_UPLOAD_MB} MB)", key="upload")
    if upload is None:
        return None
    try:
        read = read_upload(upload.name, upload.getvalue(), MAX_UPLOAD_MB)
    except ImageError as exc:
        st.error(escape_markdown(str(exc)), icon=":material/broken_image:")
        return None
    if read.note:
        st.warning(escape_markdown(read.note), icon=":material/photo_size_select_large:")
    return QueryImage(f"up-{upload.file_id}", upload.name, read.image, read.image.size, None)


def restart_cropper(token: str, box: Box) -> None:
    """Draw a new cropper for ``token`` starting at ``box`` (a link's box, typed pixels, or the
    box the person left when visiting another page)."""
    st.session_state.update(crop_version=st.session_state.get("crop_version", 0) + 1, crop_start=(token, box),
                            crop_kept=(token, box))


def cropper_key(token: str) -> str:
    return f"crop-{token}-{st.session_state.get('crop_version', 0)}"


def crop(query: QueryImage) -> Box:
    """The cropper over a preview of the query, a hint and the box in numbers; returns the box in
    original pixels (the start box itself when the cropper was not moved)."""
    link_box = st.session_state.get(PENDING, {}).pop("box", None)
    kept = st.session_state.get("crop_kept")
    start_of = st.session_state.get("crop_start")
    if link_box is not None:
        link_box, note = fit_box(link_box, query.size)      # clipped to the image, or dropped, with a line
        if note:
            st.session_state.setdefault(PROBLEMS, []).append(note)
    if link_box is not None:
        restart_cropper(query.token, link_box)
    elif cropper_key(query.token) not in st.session_state and kept and kept[0] == query.token and kept != start_of:
        restart_cropper(query.token, kept[1])                 # back from another page: the box as it was left
    start_of = st.session_state.get("crop_start")
    start = start_of[1] if start_of and start_of[0] == query.token else (query.box or Box(0, 0, *query.size))
    full = query.source if isinstance(query.source, Image.Image) else image_of(query.source, max(PREVIEW))
    small, _ = preview(full, *PREVIEW)
    scale = query.size[0] / small.width
    rect = st_cropper(small, realtime_update=True, box_color="#ff4b4b", return_type="box",
                      default_coords=cropper_coords(start, scale), should_resize_image=False,
                      key=cropper_key(query.token))
    box = box_from_cropper(rect, scale, query.size, start)
    st.session_state["crop_kept"] = (query.token, box)
    st.caption("Drag inside the box to move it, drag a corner to resize it, or type the box in pixels below.")
    box_fields(query, box)
    st.caption(f"Query box in original pixels: x1 {box.x1:g}, y1 {box.y1:g}, x2 {box.x2:g}, y2 {box.y2:g} "
               f"({box.x2 - box.x1:g}×{box.y2 - box.y1:g} of {query.size[0]}×{query.size[1]})")
    return box


BOX_FIELDS = ("x1", "y1", "x2", "y2")


def typed_box(token: str, size: tuple[int, int]) -> None:
    """A callback: the four fields as the cropper's new box (corners ordered, clipped to the
    image); a box with no area is refused with a line that says so."""
    values = [float(st.session_state[f"box_{name}"]) for name in BOX_FIELDS]
    try:
        box = Box.of(values).clamp(*size)
    except ImageError as exc:
        st.session_state["box_problem"] = f"{exc}: the box was not changed."
        return
    restart_cropper(token, box)


def box_fields(query: QueryImage, box: Box) -> None:
    """x1 y1 x2 y2 in original pixels, showing the cropper's box; typing one redraws the cropper."""
    for name, value in zip(BOX_FIELDS, box.as_list()):
        st.session_state[f"box_{name}"] = float(value)
    cells = st.columns(4, gap="xsmall")
    for cell, name, limit in zip(cells, BOX_FIELDS, (*query.size, *query.size)):
        cell.number_input(name, 0.0, float(limit), step=1.0, format="%g", key=f"box_{name}",
                          on_change=typed_box, args=(query.token, query.size))
    if st.session_state.get("box_problem"):
        st.warning(st.session_state.pop("box_problem"))


def query_region(query_source: str | Image.Image, box: Box | None, max_side: int) -> Image.Image:
    if isinstance(query_source, str):
        return image_of(query_source, max_side, box)
    img = query_source.crop(tuple(box.as_list())) if box else query_source
    return ImageOps.contain(img, (max_side, max_side))


# ------------------------------------------------------------------ searching

def window_thumb(path, label: str | None, window: Box) -> Image.Image:
    """A result with its best window drawn, framed like the thumbnails when it has a label."""
    img = draw_window(image_of(str(path), 200), window, image_size(path))
    return ImageOps.expand(img, border=FRAME, fill=LABEL_COLOURS[label]) if label else img


def run_search(eng: SearchEngine, query: QueryImage, box: Box | None, settings: Settings) -> Shown:
    """Search (and re-rank) through the engine; with "hide the query's own image", one more
    result is asked for so that k remain once it is taken out."""
    extra = 1 if settings.hide_self and query.image_id else 0
    effort = backend(settings.method).Params.effort if settings.method != "auto" else None
    search = settings_from(settings.method, settings.metric, {effort: settings.effort} if effort else {})
    reranker = create_reranker(settings.rerank)
    title = RERANKERS[settings.rerank].title
    message = "Searching…" if settings.rerank == "none" else f"Searching and re-ranking by {title}…"
    ask = partial(eng.search_stored, query.image_id) if query.source is None else partial(eng.search, query.source, box)
    with st.spinner(message):
        results = with_progress(search_threads().submit(ask, k=settings.k + extra, settings=search, reranker=reranker,
                                                        depth=None if query.gt else RANK_DEPTH),
                                first_rerank_estimate(eng, reranker),     # AP (ground truth) needs the full ranking
                                "Searching: a saved index is built on its first use" if settings.rerank == "none"
                                else f"Preparing {title} for this gallery, once")
    if results.times.prepare_seconds >= 0.001:            # the first time: say what it cost, apart from the query
        st.status(f"Prepared {title} for {eng.gallery.name} in {results.times.prepare_seconds:.1f} s (once per gallery "
                  "and embedding)", state="complete", expanded=False)
    shown = Shown(eng.gallery.name, query.token, query.name, query.source, results, query.gt, settings.k,
                  settings.metric, box, query.image_id,
                  windows={i: e[1] for i, e in results.evidence.items() if e[1] is not None},
                  rerank=rerank_name(results.reranker.name, results.reranker.params()) if results.reranker else "")
    if extra:
        items = results.items
        shown.hidden = [r for r in items if r.image_id == query.image_id]
        shown.results = replace(results, items=[r for r in items if r.image_id != query.image_id][:settings.k])
    return shown


def first_rerank_estimate(eng: SearchEngine, reranker: Reranker) -> float | None:
    """Seconds a first re-ranking that reads every image (feature maps) may take: the gallery at
    the rate its descriptors were extracted; None when unknown or when the method reads no image."""
    rate = extraction_rate(eng.gallery.name, eng.config.key()) if reranker.needs_image else None
    return len(eng.embeddings.ids) / rate if rate else None


def with_progress(future: Future, estimate: float | None, what: str) -> Results:
    """Wait for a search; past ``SLOW`` seconds (a first re-ranking preparing the gallery, an index
    built on first use) say ``what`` it is doing, the time spent and, when it can be estimated,
    how much is left."""
    start, bar = time.perf_counter(), None
    try:
        while True:
            try:
                return future.result(timeout=0.25)
            except TimeoutError:
                elapsed = time.perf_counter() - start
            if elapsed < SLOW:
                continue
            bar = bar or st.progress(0.0)
            text = f"{what}: {elapsed:.0f} s"
            if estimate:                       # else the bar only creeps on: nothing says how long it takes
                left = estimate - elapsed
                text += f", about {left:.0f} s left" if left >= 1 else ", longer than estimated"
            bar.progress(min(elapsed / (estimate or elapsed + 30), 0.99), text=text)
    finally:
        if bar is not None:
            bar.empty()


def timing_line(shown: Shown) -> str:
    r = shown.results
    t = r.times
    text = f"**{len(r.items)} results** · embed {t.embed_ms:.0f} ms · search {t.search_ms:.1f} ms"
    if shown.rerank:
        text += f" · re-ranked by {shown.rerank} in {t.rerank_ms:.0f} ms"
        if t.prepare_seconds >= 0.001:
            text += f" (the gallery was prepared first, once: {t.prepare_seconds:.1f} s, not counted)"
    if r.rerank_note:
        text += f"  \n{escape_markdown(r.rerank_note)}"
    return text


@st.dialog("Result beside the query", width="large")
def view_result(shown: Shown, item: Result, label: str | None, root) -> None:
    c = st.columns(2)
    c[0].image(missing_uri() if shown.source is None else query_region(shown.source, shown.box, 640),
               caption=f"query: {escape_markdown(shown.name)}", width="stretch")
    path = root / item.image_id
    caption = f"#{item.rank} · {escape_markdown(item.image_id)}" + (f" · {label}" if label else "")
    score = f"{score_kind(shown.metric, shown.rerank)} {item.score:.4f}"
    if not path.exists():                              # an imported gallery's image, not on this machine
        c[1].image(missing_uri(), caption=caption, width="stretch")
        st.caption(f"{score} · no file of this image on this machine")
        return
    window = shown.windows.get(item.image_id)
    full = image_of(str(path), 900)
    c[1].image(draw_window(full, window, image_size(path)) if window else full, width="stretch", caption=caption)
    w, h = image_size(path)
    st.caption(f"{score} · {w}×{h} px · {escape_markdown(str(path))}")


def result_caption(shown: Shown, item: Result, label: str | None) -> str:
    rank = f"**#{item.rank}**"
    before = shown.results.plain_rank([item.index])[item.index] if shown.rerank else item.rank
    if before != item.rank:
        rank += f" (was #{before})"
    score = ("cos" if shown.metric == "cosine" or shown.rerank else "dist") + f" {item.score:.3f}"
    tags = [f"**{label}**"] if label else []
    if item.image_id == shown.image_id:
        tags.append(":violet-badge[query image]")
    return " · ".join([rank, score, *tags])             # the file name goes below, as plain text


def show_results(shown: Shown, root, ids: list[str], eng: SearchEngine, current_token: str | None) -> None:
    results, gt, k = shown.results, shown.gt, shown.k
    if current_token != shown.token:
        st.warning(f"These are the results of the previous query, **{escape_markdown(shown.name)}**"
                   + ("; the current query could not be read." if current_token is None else
                      "; press Search for the current one."), icon=":material/history:")
    st.markdown(timing_line(shown))
    labels = label_results(gt, [r.image_id for r in results.items]) if gt else [None] * len(results.items)
    if gt:
        rep = query_report(gt, results.ranking[:k], results.ranking, ids, k)     # the full ranking a run scores
        st.markdown(f"**AP {rep.ap:.3f}** · AP 11-pt {rep.ap_interp11:.3f} · P@{k} {rep.precision_at_k:.2f} (junk skipped) · "
                    f"missed **{rep.missed}** of {rep.n_relevant} relevant",
                    help=f"Relevant = listed positives present in this gallery; junk is ignored; AP over the "
                         f"whole ranking (re-ranked when a method is chosen), as an evaluation run scores it. AP 11-pt: 11-point "
                         f"interpolated AP. Missed: relevant images that are not in the top {k}.")
        st.caption("Frames: " + ", ".join(f"<span style='color:{LABEL_COLOURS[lab]}'>■</span> {lab}"
                                          for lab in LABEL_COLOURS), unsafe_allow_html=True)
    if shown.hidden:
        st.caption(f"The query's own image ({escape_markdown(shown.image_id)}, #{shown.hidden[0].rank}) is hidden; "
                   "scores still count it.")
    scores = "cosine similarity (higher is closer)" if shown.metric == "cosine" or shown.rerank \
        else "Euclidean distance (lower is closer)"
    st.caption(f"Scores: {scores}" + (f"; order: re-ranking {shown.rerank}, rank before it in brackets"
                                      if shown.rerank else ""))
    result_grid(shown, labels, root)
    export(shown, labels)


def result_grid(shown: Shown, labels: list[str | None], root) -> None:
    """The results, as many tiles a row as the width holds at the chosen tile size, a page at a time."""
    items = shown.results.items
    size = st.segmented_control("Tile size", list(TILES), key="tile_size", persist_state=KEEP, required=True,
                                default="medium", label_visibility="collapsed", help="Size of the result tiles")
    n_pages = max(1, -(-len(items) // PER_PAGE))
    page = st.session_state.get("results_page", 1) if n_pages > 1 else 1
    first = (min(page, n_pages) - 1) * PER_PAGE
    grid = st.grid(24, min_column_width=TILES[size or "medium"], gap="small", key="results")
    for item, label in zip(items[first:first + PER_PAGE], labels[first:first + PER_PAGE]):
        with grid.cell():
            window = shown.windows.get(item.image_id)
            st.image(window_thumb(root / item.image_id, label, window) if window
                     else thumb_uri(root / item.image_id, label), width="stretch")
            st.markdown(result_caption(shown, item, label))
            st.text(printable(item.image_id))              # a file name is plain text, never Markdown
            with st.container(horizontal=True, gap="small"):
                if st.button("View", key=f"view-{item.rank}", type="tertiary", icon=":material/open_in_full:"):
                    view_result(shown, item, label, root)
                st.button("Search", key=f"again-{item.rank}", on_click=search_with, args=(item.image_id,),
                          type="tertiary", icon=":material/image_search:", help="Search with this image")
    if n_pages > 1:
        st.pagination(n_pages, key="results_page")
        st.caption(f"Results {first + 1}–{min(first + PER_PAGE, len(items))} of {len(items)}")


def export(shown: Shown, labels: list[str | None]) -> None:
    frame = results_frame(shown.results.items, labels, score_kind(shown.metric, shown.rerank))
    about = {"gallery": shown.gallery, "query": shown.name, "box": shown.box.as_list() if shown.box else None,
             "k": shown.k, "metric": shown.metric, "rerank": shown.rerank or "none"}
    c = st.columns(2)
    stem = f"results-{shown.gallery}-{shown.name}".replace("/", "_")
    c[0].download_button("Results as CSV", frame.to_csv(index=False), f"{stem}.csv", "text/csv", key="export_csv",
                         on_click="ignore", icon=":material/download:", width="stretch")
    c[1].download_button("Results as JSON", to_json(frame, about), f"{stem}.json", "application/json",
                         key="export_json", on_click="ignore", icon=":material/download:", width="stretch")


def search_with(image_id: str) -> None:
    st.session_state.update(source=GALLERY, gallery_image=image_id, auto_search=True, rerun_app=True,
                            scroll_top=st.session_state.get("scroll_top", 0) + 1)


def scroll_to_top() -> None:
    """After "search with this result": show the new query, not the place the click was made."""
    n = st.session_state.get("scroll_top", 0)
    if n > st.session_state.get("scrolled", 0):
        st.session_state["scrolled"] = n
        st.html(f"<script>/* {n} */ for (const e of [document.querySelector('[data-testid=stMain]'), "
                "document.scrollingElement]) e && e.scrollTo({top: 0});</script>", unsafe_allow_javascript=True)


@st.fragment
def results_panel(eng: SearchEngine, query: QueryImage | None, box: Box | None, settings: Settings) -> None:
    """The Search button and the results. A fragment: pressing Search reruns only this part, not
    the cropper and the rest of the page; "search with this" changes the query, so it reruns all."""
    if st.session_state.pop("rerun_app", False):
        st.rerun()
    clicked = st.button("Search", type="primary", key="search", disabled=query is None, width="stretch",
                        icon=":material/search:")
    if query and (clicked or st.session_state.pop("auto_search", False)):
        try:
            st.session_state["results"] = run_search(eng, query, box, settings)
            st.session_state.pop("results_page", None)
        except (ImageError, IndexMismatch) as exc:
            st.error(escape_markdown(str(exc)))
    shown = st.session_state.get("results")
    if shown and shown.gallery == eng.gallery.name:
        show_results(shown, eng.gallery.root, eng.embeddings.ids, eng, query.token if query else None)


# ------------------------------------------------------------------ the page

def sidebar(entries) -> tuple:
    # galleries that can be searched first: a fresh session, or a link to a vanished gallery, opens one of them
    by_name = {e.gallery.name: e for e in sorted(entries, key=lambda e: not e.indexed)}

    def gallery_name(name: str) -> str:
        dataset = dataset_name(by_name[name].gallery.dataset or name)
        return name if dataset == name else f"{name} ({dataset})"

    with st.sidebar:
        previous = st.session_state.get("gallery")
        pending("gallery", "gallery", list(by_name), "gallery")
        if previous is not None and previous not in by_name and st.session_state.get("gallery") == previous:
            st.session_state.setdefault(PROBLEMS, []).append(
                f"Gallery {previous!r} is not registered any more (deleted on the Galleries page, in another "
                f"tab or from the command line); showing {next(iter(by_name))!r}.")
            del st.session_state["gallery"]
        entry = by_name[st.selectbox("Gallery", list(by_name), key="gallery", persist_state=KEEP,
                                     format_func=gallery_name)]
        # the default embedding first, so that a fresh session searches with the measured default
        caches = {c.key: c for c in sorted(entry.indexed, key=lambda c: c.key != DEFAULT_CONFIG.key())}
        cache = None
        if caches:
            pending("embedding", "embedding", list(caches), "embedding")
            cache = caches[st.selectbox("Embedding", list(caches), key="embedding", persist_state=KEEP,
                                        format_func=lambda key: f"{embedding_name(caches[key].config)} · "
                                                                f"{caches[key].dim}-d")]
        k = st.slider("Results (k)", 1, MAX_K, 10, key="k", persist_state=KEEP)
        metric = st.radio("Similarity", ["cosine", "euclidean"], horizontal=True, key="metric", persist_state=KEEP,
                          help="cosine: similarity, higher is closer; euclidean: distance, lower is closer")
        method = st.radio("Index", list(backend_names()), horizontal=True, key="method", persist_state=KEEP,
                          help=f"auto: {auto_description()} (benchmarks/bench_search.py); saved indexes are built "
                               "on first use")
        effort_name = backend(method).Params.effort if method != "auto" else None
        effort = st.number_input(f"{backend(method).title} {effort_name} (0: tuned at build time for recall@10 ≥ 0.95)",
                                 0, 10_000_000, 0, key="effort", persist_state=KEEP) if effort_name else 0
        methods = list_rerankers()
        if st.session_state.get("rerank") not in methods:
            st.session_state["rerank"] = DEFAULT_RERANK
        rerank = st.selectbox("Re-ranking", methods, key="rerank", persist_state=KEEP,
                              format_func=lambda n: RERANKERS[n].title + (" (default)" if n == DEFAULT_RERANK else ""),
                              help=f"core/rerank/, over the chosen index's ranking. Default {DEFAULT_RERANK}, chosen "
                                   "on the validation protocol (README \"Re-ranking\"). Local windows draw the best "
                                   "window on each result; the metrics page compares the methods' runs.")
        if RERANKERS[rerank].helps:
            st.caption(RERANKERS[rerank].helps)
        if metric == "euclidean" and rerank != "none":
            st.caption(":orange[Euclidean has no effect here]: the re-ranking sets the order and the scores shown are "
                       "cosines (on normalised descriptors Euclidean distance ranks as cosine does).")
        hide_self = st.toggle("Hide the query's own image", key="hide_self", persist_state=KEEP,
                              help="A gallery image used as the query finds itself first; it is marked "
                                   "'query image' when shown.")
        trained = {n: c for n, c in trained_configs().items() if c.key() not in caches}
        if trained:
            with st.expander("Trained models"):
                for model, config in trained.items():
                    build_index_widget(entry.gallery.name, config, key=f"build-{model}")
        if "demo" not in by_name:
            with st.expander("Demo gallery"):
                build_demo_widget(primary=False)
    return entry, cache, Settings(k, method, metric, effort or None, rerank, hide_self)


def main() -> None:
    st.title("Search")
    entries = gallery_entries()
    if not entries:
        empty_state()
        return
    take_link()
    entry, cache, settings = sidebar(entries)
    gallery = entry.gallery
    if cache is None:
        link_problems()
        st.warning(f"Gallery **{gallery.name}** ({escape_markdown(str(gallery.root))}) has no index yet.")
        build_index_widget(gallery.name)
        return
    eng = engine(gallery.name, cache.config)
    ids = eng.embeddings.ids
    warm_thumbnails(gallery.name, gallery.root, ids)
    try:
        gt = ground_truth(artifacts_key(), gallery.name)
    except (ValueError, OSError) as exc:                  # a malformed or refused ground-truth file: one line
        st.warning(f"Ground truth of {gallery.name} not used: {escape_markdown(str(exc))}")
        gt = None
    gt_queries = gallery_queries(eng) if gt else []
    st.caption(f"{gallery.name}: {len(ids):,} images · {embedding_name(cache.config)}"
               + (f" · ground truth: {gt.dataset}, {len(gt_queries)} queries in this gallery" if gt else ""))

    notices = st.container()
    row = st.container(horizontal=True, gap="medium", key="search_row")
    with row.container(width=QUERY_WIDTH, key="query_column"):
        try:
            query = choose_query(eng, gt_queries)
        except ImageError as exc:                          # a photo deleted since indexing: one line
            st.error(escape_markdown(str(exc)), icon=":material/broken_image:")
            query = None
        pixels = query is not None and query.source is not None          # not a stored descriptor
        box = crop(query) if pixels else None
        if pixels:
            st.image(query_region(query.source, box, 320), caption="What is embedded", width=160)
    with notices:
        link_problems()
    with row.container(key="results_column"):
        results_panel(eng, query, box, settings)
    scroll_to_top()
    write_link(ViewState(gallery.name, cache.key, query.name if query and query.gt else None,
                         query.image_id if query and not query.gt else None, box if query else None, settings.k,
                         settings.metric, settings.method, settings.effort,
                         settings.rerank if settings.rerank != DEFAULT_RERANK else None))


through_app()
main()
