"""Evaluation runs: the table of runs, the quality/time trade-off per dataset, per-query AP and PR
curves of chosen runs, the failure view of one query (where its relevant images landed, what it
missed, which negatives beat them, what moved between two runs), class results, trained models
(training curves, their runs beside the off-the-shelf ones) and benchmark reports under
``artifacts/bench/``.

Runs are called by their embedding and options (``core.app.comparison.run_names``); clicking a bar
of the per-query chart or a row of a table opens that query in the Failures tab.
"""
from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from core import (
    LABEL_COLOURS,
    Query,
    QueryFailure,
    Run,
    analyse_ranking,
    ap_comparison,
    backend_names,
    bench_reports,
    chart_columns,
    class_results,
    confusion_cell_images,
    default_pair,
    escape_markdown,
    failure_cases,
    failure_frame,
    failure_reason,
    fitted_domain,
    gallery_root,
    image_id_of,
    list_galleries,
    method_colours,
    model_table,
    pr_curves,
    printable,
    rank_moves,
    ranking_of,
    run_names,
    side_by_side,
    to_json,
    trained_models,
    training_curves,
    variant_labels,
    worst_query,
)
from pages.common import all_runs, artifacts_key, build_demo_widget, run, run_gt, through_app, thumb_uri

TABS = ["Runs", "Trade-off", "Per-query AP", "PR curves", "Failures", "Classes", "Training", "Performance"]
# mAP beside the run's name: at 800 px the table shows the name and the first figures, the rest scrolls
SHOWN = ["name", "mAP", "dataset", "protocol", "model", "mAP_interp11", "NDCG", "P@10", "backbone", "pooling", "scales", "whitening",
         "dim", "max_size", "search", "rerank", "extraction_s", "query_ms", "rerank_ms", "n_images", "n_queries",
         "gallery", "timestamp", "run_id"]
LEGEND = alt.Legend(orient="bottom", direction="vertical", labelLimit=0, title=None)
QUERY_AXIS = alt.Axis(labelAngle=-45, title=None)
PERCENT = {c: st.column_config.NumberColumn(c, format="%.3f") for c in ("mAP", "mAP_interp11", "NDCG", "P@10")}
THUMB = 120


def open_query(run_id: str, query: str) -> None:
    """Show ``query`` of ``run_id`` in the Failures tab (a callback: runs before the widgets)."""
    st.session_state.update(tab="Failures", fail_run=run_id, fail_query=query)


def runs_tab(df: pd.DataFrame) -> None:
    c = st.columns(4)
    datasets = c[0].multiselect("Dataset", sorted(df["dataset"].dropna().unique()), key="f_dataset")
    backbones = c[1].multiselect("Backbone", sorted(df["backbone"].dropna().unique()), key="f_backbone")
    reranks = c[2].multiselect("Re-ranking", sorted(df["rerank"].dropna().unique()), key="f_rerank",
                               help="core/rerank/ method of the run (none: the plain global descriptor)")
    text = c[3].text_input("Contains", key="f_text", placeholder="e.g. gem, white")
    view = df.assign(name=df["run_id"].map(run_names(df)))
    if datasets:
        view = view[view["dataset"].isin(datasets)]
    if backbones:
        view = view[view["backbone"].isin(backbones)]
    if reranks:
        view = view[view["rerank"].isin(reranks)]
    if text:
        view = view[view.astype(str).apply(lambda col: col.str.contains(text, case=False, regex=False)).any(axis=1)]
    st.dataframe(view[SHOWN], hide_index=True, column_config={
        **PERCENT, "name": st.column_config.TextColumn("run", width="medium", pinned=True),
        "extraction_s": st.column_config.NumberColumn("extraction (s)", format="%.1f"),
        "query_ms": st.column_config.NumberColumn("query (ms)", format="%.1f"),
        "rerank_ms": st.column_config.NumberColumn("re-ranking (ms/query)", format="%.1f")})
    st.download_button("Download CSV", view[SHOWN].to_csv(index=False), file_name="runs.csv", mime="text/csv",
                       on_click="ignore", icon=":material/download:")
    st.caption(f"{len(view)} of {len(df)} runs. Relevant images are the listed positives present in each "
               "gallery: figures on partial galleries are not comparable with published full-dataset mAP.")


def colour_of(names: dict[str, str]) -> alt.Scale:
    """Each run's colour, the same in every chart of the page (``method_colours``)."""
    colours = method_colours(list(names.values()))
    return alt.Scale(domain=list(colours), range=list(colours.values()))


def run_legend(names: dict[str, str], shown: list[str]) -> None:
    """One legend under a tab's charts, in the page's own text: a chart's legend of long run names
    would take the chart's height, or be cut at 800 px."""
    colours = method_colours(list(names.values()))
    st.caption("  \n".join(f"<span style='color:{colours[n]}'>■</span> {escape_markdown(html.escape(n))}"
                           for n in sorted(set(shown))), unsafe_allow_html=True)


def tradeoff_tab(df: pd.DataFrame) -> None:
    names = run_names(df)
    colours = colour_of(names)
    for dataset, sub in df.groupby("dataset", sort=True):
        sub = sub.assign(run=sub["run_id"].map(names), variant=variant_labels(sub))
        st.subheader(f"{dataset} · {len(sub)} runs")
        grid = st.grid("auto", min_column_width=340, gap="medium", key=f"tradeoff-{dataset}")
        for field, title in (("fresh_query_ms", "query time, fresh embedding (ms)"),
                             ("extraction_s", "gallery extraction (s)")):
            with grid.cell():
                st.altair_chart(tradeoff_chart(sub, field, title, colours), width="stretch")
        with grid.cell():
            st.altair_chart(stage_chart(sub), width="stretch")
        run_legend(names, sub["run"].tolist())
    st.caption("One point per run, one colour per method (embedding · search · re-ranking) in every chart. Query time "
               "is embed + search + re-rank with the query's descriptor computed, not read from a cache: the mean "
               "over the queries the run embedded, else the gallery's extraction time per image. Timings come from "
               "the machine each run was made on.")


def tradeoff_chart(sub: pd.DataFrame, field: str, title: str, colours: alt.Scale) -> alt.Chart:
    """mAP against one cost, the mAP axis fitted to the runs."""
    top = float(sub[field].max()) if sub[field].notna().any() else 1.0
    return alt.Chart(sub).mark_point(filled=True, size=120, opacity=0.85).encode(
        x=alt.X(f"{field}:Q", title=title, scale=alt.Scale(domain=[0, max(top * 1.1, 1e-3)], nice=True)),
        y=alt.Y("mAP:Q", scale=alt.Scale(domain=list(fitted_domain(sub["mAP"].tolist())), zero=False),
                axis=alt.Axis(format=".2f")),
        color=alt.Color("run:N", scale=colours, legend=None),
        tooltip=["run", "variant", alt.Tooltip("mAP:Q", format=".3f"), alt.Tooltip(f"{field}:Q", format=".1f"),
                 "embed_measured_on", "dim", "run_id"]).properties(title=f"mAP against {title.split(',')[0].split(' (')[0]}",
                                                                   height=260)


def stage_chart(sub: pd.DataFrame) -> alt.Chart:
    """Where a query's time goes, per run: embed, search, re-rank (ms)."""
    stages = sub.melt(id_vars=["run", "variant"], value_vars=["embed_ms", "search_ms", "rerank_ms"], var_name="stage",
                      value_name="ms").dropna(subset=["ms"])
    stages["stage"] = stages["stage"].map({"embed_ms": "embed", "search_ms": "search", "rerank_ms": "re-rank"})
    return alt.Chart(stages).mark_bar().encode(           # runs by what differs between them: names share a prefix
        y=alt.Y("variant:N", title=None, axis=alt.Axis(labelLimit=220)),
        x=alt.X("ms:Q", title="ms per query", stack=True),
        color=alt.Color("stage:N", scale=alt.Scale(domain=["embed", "search", "re-rank"],
                                                   range=["#9ecae9", "#4c78a8", "#1f3b5a"]),
                        legend=alt.Legend(orient="top", direction="horizontal", title=None, labelLimit=0)),
        tooltip=["run", "stage", alt.Tooltip("ms:Q", format=".1f")]).properties(
        title="Query time by stage (fresh embedding)")


def pick_runs(df: pd.DataFrame, key: str, max_runs: int, empty: str) -> list[Run]:
    """Up to ``max_runs`` runs chosen in a multiselect (the default pair first); none chosen:
    the ``empty`` hint is shown."""
    names = run_names(df)
    ids = df["run_id"].tolist()
    chosen = st.multiselect("Runs", ids, default=default_pair(df)[:max_runs], max_selections=max_runs, key=key,
                            format_func=lambda r: f"{names[r]} · {df.set_index('run_id').loc[r, 'dataset']}")
    if not chosen:
        st.info(empty)
    return [run(artifacts_key(), r) for r in chosen]


def compare_tab(df: pd.DataFrame, key: str, max_runs: int, empty: str,
                draw: Callable[[list[Run], dict[str, str]], None]) -> None:
    """A tab that compares chosen runs (per-query AP, PR curves): the runs, then its charts."""
    chosen = pick_runs(df, key, max_runs, empty)
    if chosen:
        draw(chosen, run_names(df))


def per_query_charts(chosen: list[Run], names: dict[str, str]) -> None:
    data = ap_comparison(chosen)
    if data.empty:
        st.warning("These runs share no query (are they of the same dataset?).")
        return
    data["run_id"] = data["run"]
    data["run"] = data["run"].map(names)
    order = data.drop_duplicates("query")["query"].tolist()
    pick = alt.selection_point(name="pick", fields=["query", "run_id"], on="click")
    bars = alt.Chart(data).mark_bar().encode(
        x=alt.X("query:N", sort=order, axis=QUERY_AXIS), y=alt.Y("ap:Q", title="AP", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("run:N", scale=colour_of(names), legend=None), xOffset="run:N",
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.45)),
        tooltip=["query", "run", alt.Tooltip("ap:Q", format=".3f")]).add_params(pick)

    def clicked() -> None:
        points = st.session_state["pq_bars"].selection.get("pick") or []
        if points:
            open_query(points[0].get("run_id", chosen[0].run_id), points[0]["query"])

    st.altair_chart(bars.properties(title="AP per query (click a bar to inspect that query)", height=420),
                    width="stretch", key="pq_bars", on_select=clicked, selection_mode="pick")
    run_legend(names, [names[r.run_id] for r in chosen])
    if len(chosen) == 2:
        diff = data.drop_duplicates("query").assign(better=lambda d: d["better"].map(lambda b: names.get(b, b)))
        st.altair_chart(alt.Chart(diff).mark_bar().encode(
            x=alt.X("query:N", sort=order, axis=QUERY_AXIS), y=alt.Y("diff:Q", title="AP (second − first)"),
            color=alt.Color("better:N", title="better run", legend=LEGEND),
            tooltip=["query", "better", alt.Tooltip("diff:Q", format="+.3f")]).properties(
            title="Where one run beats the other", height=340), width="stretch")
        wins = diff[diff["diff"].abs() >= 0.05][["query", "better", "diff"]]

        def row_clicked() -> None:
            rows = st.session_state["pq_wins"].selection.rows
            if rows:
                open_query(chosen[0].run_id, wins.iloc[rows[0]]["query"])

        st.dataframe(wins, hide_index=True, key="pq_wins", on_select=row_clicked, selection_mode="single-row",
                     column_config={"diff": st.column_config.NumberColumn(format="%+.3f")})
        st.caption(f"Queries where the runs differ by 0.05 AP or more; select a row to inspect it in {names[chosen[0].run_id]}.")


def pr_charts(chosen: list[Run], names: dict[str, str]) -> None:
    worst = worst_query(chosen)
    queries = sorted(set().union(*(set(r.per_query["query"]) for r in chosen)))
    if st.session_state.get("pr_query") not in queries and worst:
        st.session_state["pr_query"] = worst
    query = st.selectbox("Query", queries, key="pr_query",
                         help="Starts at the query with the lowest AP averaged over the chosen runs")
    line = dict(x=alt.X("recall:Q", scale=alt.Scale(domain=[0, 1])),
                y=alt.Y("precision:Q", scale=alt.Scale(domain=[0, 1])),
                color=alt.Color("run:N", scale=colour_of(names), legend=None),
                tooltip=["run", "curve", alt.Tooltip("recall:Q", format=".2f"), alt.Tooltip("precision:Q", format=".2f")])
    one = pr_curves(chosen, query).assign(run=lambda d: d["run"].map(names))
    mean = pr_curves(chosen).assign(run=lambda d: d["run"].map(names))
    curves = alt.Chart(one).mark_line(interpolate="step-after").encode(
        **line, strokeDash=alt.StrokeDash("curve:N", legend=alt.Legend(orient="top", title=None))).properties(
        title=f"PR curve of {query}" + (" (the worst query)" if query == worst else ""), height=260)
    means = alt.Chart(mean).mark_line(point=True).encode(**line).properties(
        title="Mean interpolated PR curve over each run's queries", height=260)
    grid = st.grid("auto", min_column_width=340, gap="medium", key="pr_grid")
    for chart in (curves, means):
        with grid.cell():
            st.altair_chart(chart, width="stretch")
    run_legend(names, [names[r.run_id] for r in chosen])


# ------------------------------------------------------------------ failures

@st.dialog("Image", width="large")
def view_image(path: Path, caption: str) -> None:
    st.image(str(path), caption=caption, width="stretch")


def thumbs(root: Path, entries: list[tuple[str, str, str]], key: str, link: dict[str, str] | None = None) -> None:
    """A grid of framed thumbnails (image id, label, caption), each with its name; with ``link``
    (the search page's parameters of the run's gallery), buttons to view it and to search with it."""
    grid = st.grid("auto", min_column_width=THUMB, gap="xsmall", key=key)
    for n, (image_id, label, caption) in enumerate(entries):
        with grid.cell():
            path = root / image_id
            if path.exists():
                st.image(thumb_uri(path, label), width="stretch")
            st.caption(caption)
            st.text(printable(image_id))
            if link is not None and path.exists():
                with st.container(horizontal=True, gap="small"):
                    if st.button("View", key=f"{key}-view-{n}", type="tertiary", icon=":material/open_in_full:"):
                        view_image(path, f"{caption} · {escape_markdown(image_id)}")
                    st.page_link("pages/search.py", label="Search", icon=":material/image_search:",
                                 query_params={**link, "image": image_id}, help="Search with this image")


def pick_failure(df: pd.DataFrame, names: dict[str, str]) -> tuple[Run, Query, DeltaGenerator] | None:
    """The run and query chosen (the newest run and its worst query first) and the column left for
    k; None, with a warning, when the run's ground truth is gone."""
    ids_all = df["run_id"].tolist()
    if st.session_state.get("fail_run") not in ids_all:
        st.session_state["fail_run"] = ids_all[0]
    c = st.columns([3, 2, 1])
    run_id = c[0].selectbox("Run", ids_all, key="fail_run", format_func=lambda r: f"{names[r]} · "
                            f"{df.set_index('run_id').loc[r, 'dataset']}")
    r = run(artifacts_key(), run_id)
    gt = run_gt(artifacts_key(), run_id)
    if gt is None:
        st.warning("The ground truth of this run cannot be found any more (its gallery record and the `gt` folder "
                   "beside its images are gone), so its failures cannot be explained.")
        return None
    pq = r.per_query.sort_values("ap", kind="stable")
    if st.session_state.get("fail_query") not in pq["query"].tolist():
        st.session_state["fail_query"] = pq["query"].iloc[0]
    by_ap = dict(zip(pq["query"], pq["ap"]))
    query = c[1].selectbox("Query (worst first)", list(by_ap), key="fail_query",
                           format_func=lambda q: f"{q} · AP {by_ap[q]:.3f}")
    q = {q.name: q for q in gt.queries}.get(query)
    if q is None:
        st.warning(f"{escape_markdown(query)} is not a query of this run's ground truth any more.")
    return (r, q, c[2]) if q else None


def found_within(failure: QueryFailure, n_images: int, col: DeltaGenerator) -> QueryFailure:
    """The "found within k" control, reset to the number of relevant images for each new query."""
    shown_for = (failure.query, n_images, failure.k)
    if st.session_state.get("fail_k_for") != shown_for:
        st.session_state.update(fail_k_for=shown_for, fail_k=max(1, failure.k))
    k = col.number_input("Found within k", 1, max(1, n_images), key="fail_k",
                         help="Starts at the number of relevant images: a perfect ranking finds them all.")
    return replace(failure, k=int(k))


def failures_tab(df: pd.DataFrame) -> None:
    names = run_names(df)
    picked = pick_failure(df, names)
    if picked is None:
        return
    r, q, k_column = picked
    try:
        ids, root = r.ids, gallery_root(r)
        failure = analyse_ranking(q, ranking_of(r, q.name), ids)
    except (ValueError, OSError) as exc:                  # a run whose files disagree, an unusable ground truth
        st.error(escape_markdown(str(exc)))
        return
    failure = found_within(failure, len(ids), k_column)
    link = image_link(r)
    failure_head(r, q, failure, root, link is not None)
    st.markdown(f"**Negatives ranked above the last relevant image** ({failure.n_intruders}"
                + (f"; the first {len(failure.intruders)}" if failure.n_intruders > len(failure.intruders) else "")
                + "), with their rank")
    thumbs(root, [(p.image_id, p.label, f"#{p.rank}") for p in failure.intruders], "fail_intruders", link)
    st.markdown(f"**Missed relevant images** ({len(failure.missed)}: not in the top {failure.k}), with their rank")
    thumbs(root, [(p.image_id, p.label, f"#{p.rank} · {p.negatives_above} negatives above")
                  for p in failure.missed[:40]], "fail_missed", link)
    if len(failure.missed) > 40:
        st.caption(f"… and {len(failure.missed) - 40} more (all in the export).")
    compare_runs(df, r, q, names)
    failure_export(r, failure, names[r.run_id])
    with st.expander("Top results of the worst queries"):
        worst_overview(r, root)
    st.caption("Ranks are positions in the run's full ranking (junk included). Frames: " + ", ".join(
        f"<span style='color:{c}'>■</span> {lab}" for lab, c in LABEL_COLOURS.items()), unsafe_allow_html=True)


def failure_head(r: Run, q: Query, failure: QueryFailure, root: Path, searchable: bool) -> None:
    """The query's region, its scores in the run, the one-line reason and where its relevant images landed."""
    head = st.columns([1, 4])
    image_id = image_id_of(q.image, r.ids)
    if image_id and (root / image_id).exists():
        head[0].image(thumb_uri(root / image_id, None, tuple(q.box.as_list()) if q.box else None),
                      caption="query region" if q.box else "query image", width="stretch")
    ap = float(r.per_query.set_index("query").loc[q.name, "ap"])
    with head[1]:
        st.markdown(f"**{escape_markdown(q.name)}** · AP {ap:.3f} · {len(failure.found)} of {len(failure.positives)} "
                    f"relevant images in the top {failure.k} · {len(failure.missed)} missed")
        st.markdown(f"**Why:** {escape_markdown(failure_reason(failure))}")
        if searchable:
            st.page_link("pages/search.py", label="Open in search", icon=":material/image_search:",
                         query_params=search_link(r, q.name))
        rank_chart(failure, len(r.ids))


def failure_export(r: Run, failure: QueryFailure, name: str) -> None:
    frame = failure_frame(failure)
    ap = float(r.per_query.set_index("query").loc[failure.query, "ap"])
    about = {"run_id": r.run_id, "run": name, "query": failure.query, "ap": ap, "k": failure.k}
    stem = f"failure-{failure.query}".replace("/", "_")
    e = st.columns(2)
    e[0].download_button("Failure case as CSV", frame.to_csv(index=False), f"{stem}.csv", "text/csv",
                         on_click="ignore", icon=":material/download:", key="fail_csv")
    e[1].download_button("Failure case as JSON", to_json(frame, about), f"{stem}.json", "application/json",
                         on_click="ignore", icon=":material/download:", key="fail_json")


def image_link(r: Run) -> dict[str, str] | None:
    """The search page's parameters for an image of the run's gallery searched as the run searched
    (None when the gallery or its embedding is not there any more)."""
    if r.summary.gallery not in list_galleries() or not r.summary.embedding_key:
        return None
    link = search_link(r, "")
    del link["query"]
    return link


def search_link(r: Run, query: str) -> dict[str, str]:
    """The search page's link to ``query`` searched as the run searched it: its embedding, index,
    metric and re-ranking (the search page's default re-ranking may differ from the run's)."""
    search = r.summary.search
    link = {"gallery": r.summary.gallery, "embedding": r.summary.embedding_key, "query": query,
            "rerank": r.summary.rerank.method}
    if search.method in backend_names():
        link.update(index=search.method, metric=search.metric)
    return link


def rank_chart(failure, n_images: int) -> None:
    """Where the relevant images landed: one tick per relevant image along the whole ranking."""
    strip = pd.DataFrame([{"rank": p.rank, "image": p.image_id, "where": "found" if p.rank <= failure.k else "missed"}
                          for p in failure.positives])
    colours = alt.Scale(domain=["found", "missed"], range=[LABEL_COLOURS["good"], LABEL_COLOURS["bad"]])
    st.markdown(f"**Where the relevant images landed**: rank in the full ranking (1–{n_images})")
    st.altair_chart(alt.Chart(strip).mark_tick(thickness=3, size=30).encode(
        x=alt.X("rank:Q", scale=alt.Scale(domain=[1, n_images]), title=None),
        color=alt.Color("where:N", scale=colours, legend=alt.Legend(orient="top", direction="horizontal", title=None)),
        tooltip=["image", "rank", "where"]).properties(height=120),
        width="stretch")


def compare_runs(df: pd.DataFrame, r: Run, q, names: dict[str, str]) -> None:
    others = [i for i in df.loc[df["dataset"] == r.summary.dataset, "run_id"] if i != r.run_id]
    if not others:
        return
    other_id = st.selectbox("Compare with", [None, *others], index=1, key="fail_other",
                            format_func=lambda i: "no other run" if i is None else names[i])
    if other_id is None:
        return
    other = run(artifacts_key(), other_id)
    ranking_b = ranking_of(other, q.name)
    if ranking_b is None:
        st.info(f"{names[other_id]} did not evaluate {escape_markdown(q.name)}.")
        return
    b_ap = float(other.per_query.set_index("query").loc[q.name, "ap"])
    a_ap = float(r.per_query.set_index("query").loc[q.name, "ap"])
    try:
        moves = rank_moves(q, r.ids, ranking_of(r, q.name), other.ids, ranking_b, top=20)
    except ValueError as exc:                             # the other run's files disagree
        st.error(escape_markdown(str(exc)))
        return
    st.markdown(f"**Images that moved** in the top 20 of either run: AP {a_ap:.3f} → {b_ap:.3f} "
                f"({len(moves)} moved)")

    def text(m) -> str:
        if m.gain is None:
            return f"#{m.rank_a or '–'} → #{m.rank_b or '–'} (not in both galleries)"
        return f"#{m.rank_a} → #{m.rank_b} ({'up' if m.gain > 0 else 'down'} {abs(m.gain)})"

    thumbs(gallery_root(other), [(m.image_id, m.label, text(m)) for m in moves[:24]], "fail_moves")


def worst_overview(r: Run, root) -> None:
    try:
        cases = failure_cases(r, 5, 8)
    except (ValueError, OSError) as exc:                  # a run whose files disagree, an unusable ground truth
        st.error(escape_markdown(str(exc)))
        return
    for case in cases:
        st.markdown(f"**{escape_markdown(case.query)}** · AP {case.ap:.3f} · first relevant rank "
                    f"{case.first_relevant if case.first_relevant is not None else 'none'}")
        st.button("Inspect", key=f"inspect-{case.query}", on_click=open_query, args=(r.run_id, case.query),
                  type="tertiary", icon=":material/troubleshoot:")
        thumbs(root, [(i, label, f"#{n + 1} {label}") for n, (i, label) in enumerate(case.results)],
               f"worst-{case.query}")


def classes_tab(df: pd.DataFrame) -> None:
    class_runs = df[df["dataset"] == "classes"]["run_id"].tolist()
    if not class_runs:
        st.info("No class-folder run yet. Any folder of class subfolders is a class benchmark, e.g. Fashion-MNIST:\n\n"
                "```\npython -m core data export-fashion-mnist --out data/fashion --per-class 100\n"
                "python -m core evaluate --dataset classes --root data/fashion --max-size 64\n```")
        return
    names = run_names(df)
    r = run(artifacts_key(), st.selectbox("Run", class_runs, key="classes_run", format_func=names.get))
    table, confusion = class_results(r.directory)
    s = r.summary.protocol_extras["classes"]
    st.markdown(f"**{s['n_classes']} classes** · {s['knn_k']}-NN accuracy {s['knn_accuracy']:.3f} · "
                f"class-mean P@10 {s.get('class_mean_p@10', float('nan')):.3f} · chance precision "
                f"{s['chance_precision']:.3f}")
    st.dataframe(table, hide_index=True, column_config={c: st.column_config.NumberColumn(c, format="%.3f")
                                                        for c in table.columns if c not in ("class", "n_queries")})
    confusion_chart(confusion, s["knn_k"])
    st.caption("Every image is a query; the other images of its class are relevant, the query itself is ignored. "
               "Rows: true class; columns: the class voted by its nearest neighbours. Click a cell for its images.")
    cell = st.session_state.get("confusion_cell")
    if cell:
        images = confusion_cell_images(r, *cell)
        st.markdown(f"**{escape_markdown(cell[0])} voted {escape_markdown(cell[1])}**: {len(images)} images")
        thumbs(gallery_root(r), [(i, "good" if cell[0] == cell[1] else "bad", cell[1]) for i in images[:48]],
               "confusion_images", image_link(r))


def confusion_chart(confusion: pd.DataFrame, knn_k: int) -> None:
    """The k-NN confusion matrix; a click on a cell keeps it in ``confusion_cell`` (true, predicted)."""
    base = alt.Chart(confusion).encode(x=alt.X("predicted:N", title="predicted class"),
                                       y=alt.Y("true:N", title="true class"))
    cell = alt.selection_point(name="cell", fields=["true", "predicted"], on="click")
    # empty cells stay white: the colour scale starts at the smallest non-zero share, not at 0
    heat = base.mark_rect(stroke="#eeeeee").encode(
        color=alt.condition("datum.count > 0", alt.Color("share:Q", scale=alt.Scale(scheme="blues", zero=False),
                                                         title="share of row"), alt.value("white")),
        tooltip=["true", "predicted", "count", alt.Tooltip("share:Q", format=".2f")]).add_params(cell)
    labels = base.mark_text(fontSize=11).transform_filter("datum.count > 0").encode(
        text="count:Q", color=alt.condition("datum.share > 0.5", alt.value("white"), alt.value("black")))

    def clicked() -> None:
        points = st.session_state["confusion"].selection.get("cell") or []
        st.session_state["confusion_cell"] = (str(points[0]["true"]), str(points[0]["predicted"])) if points else None

    st.altair_chart((heat + labels).properties(title=f"Confusion matrix of the {knn_k}-NN vote", height=420),
                    width="stretch", key="confusion", on_select=clicked, selection_mode="cell")


def training_tab(df: pd.DataFrame) -> None:
    models = trained_models()
    if not models:
        st.info("No trained model yet. Fine-tune one on a folder of class subfolders, for example:\n\n"
                "```\npython -m core train --root data/fashion --name fashion\n```")
        return
    table = model_table(models)
    st.dataframe(table, hide_index=True, column_config={c: st.column_config.NumberColumn(c, format="%.3f")
                                                        for c in ("val_loss", "val_acc")})
    chosen = st.multiselect("Models", table["model"].tolist(), default=table["model"].tolist()[:2], key="train_models")
    curves = training_curves([m for m in models if m.name in chosen])
    c = st.columns(2)
    for col, metric in zip(c, ("loss", "accuracy")):
        col.altair_chart(alt.Chart(curves[curves["metric"] == metric]).mark_line(point=True).encode(
            x=alt.X("epoch:Q"), y=alt.Y("value:Q", title=metric), color=alt.Color("model:N", legend=LEGEND),
            strokeDash=alt.StrokeDash("split:N", legend=LEGEND), tooltip=["model", "split", "epoch", "value"]).properties(
            title=f"{metric} per epoch", height=360), width="stretch")
    model = st.selectbox("Runs of a model beside the off-the-shelf runs of its galleries", table["model"].tolist(),
                         key="train_model_runs")
    view = side_by_side(df, model) if not df.empty else df
    if view.empty:
        st.caption(f"No evaluation run with {model} yet: evaluate with `--weights artifacts/models/{model}/model.pt`.")
    else:
        st.dataframe(view[["weights", "dataset", "gallery", "label", "mAP", "P@10", "n_queries", "run_id"]],
                     hide_index=True, column_config=PERCENT)


def performance_tab() -> None:
    reports = bench_reports()
    if not reports:
        st.info("No benchmark results yet: the scripts in `benchmarks/` write JSON files to `artifacts/bench/`, "
                "e.g. `python benchmarks/bench_app_latency.py`.")
        return
    for rep in reports:
        st.subheader(escape_markdown(rep.name))
        if rep.scalars:
            st.dataframe(pd.DataFrame({"value": {k: str(v) for k, v in rep.scalars.items()}}))
        for title, table in rep.tables:
            st.markdown(f"`{title}`")
            st.dataframe(table, hide_index=True)
            cols = chart_columns(table)
            if cols:
                label, value = cols
                data = table.reset_index() if label is None else table
                label = label or "index"
                st.altair_chart(alt.Chart(data).mark_bar().encode(
                    x=alt.X(f"{label}:N", sort=None), y=f"{value}:Q", tooltip=list(map(str, data.columns[:8]))),
                    width="stretch")


COMPARE = {"Per-query AP": ("pq_runs", 2, "Choose one or two runs.", per_query_charts),
           "PR curves": ("pr_runs", 4, "Choose runs to compare.", pr_charts)}


def no_runs() -> None:
    st.info("No evaluation runs yet. Build the demo gallery for a first run of its 10 queries, or evaluate an "
            "embedding on a benchmark (the download comes from the benchmark's official host):\n\n"
            "```\npython -m core data fetch paris6k\npython -m core evaluate --dataset paris6k --root data/paris6k\n```")
    build_demo_widget()


def main() -> None:
    st.title("Metrics")
    df = all_runs()
    tabs = st.tabs(TABS, key="tab", on_change="rerun")
    for name, tab in zip(TABS, tabs):
        if not tab.open:
            continue
        with tab:
            if name == "Performance":
                performance_tab()
            elif name == "Training":
                training_tab(df)
            elif df.empty:
                no_runs()
            elif name in COMPARE:
                compare_tab(df, *COMPARE[name])
            else:
                {"Runs": runs_tab, "Trade-off": tradeoff_tab, "Failures": failures_tab, "Classes": classes_tab}[name](df)


through_app()
main()
