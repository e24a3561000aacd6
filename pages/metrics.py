"""Evaluation runs: the table of runs, the quality/time trade-off, per-query AP and PR curves of
chosen runs, the worst queries of a run, trained models (training curves, their runs beside the
off-the-shelf ones) and the benchmark reports under ``artifacts/bench/``."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from core import (
    LABEL_COLOURS,
    ap_comparison,
    bench_reports,
    chart_columns,
    class_results,
    escape_markdown,
    failure_cases,
    list_galleries,
    model_table,
    pr_curves,
    side_by_side,
    trained_models,
    training_curves,
)
from pages.common import all_runs, artifacts_key, run, thumb_of

TABS = ["Runs", "Trade-off", "Per-query AP", "PR curves", "Failures", "Classes", "Training", "Performance"]
SHOWN = ["dataset", "backbone", "pooling", "whitening", "dim", "mAP", "mAP_interp11", "NDCG", "P@10",
         "extraction_s", "query_ms", "search", "rerank", "rerank_ms", "scales", "max_size", "n_images", "n_queries", "gallery",
         "timestamp", "run_id"]
LEGEND = alt.Legend(orient="top", direction="vertical", labelLimit=0, titleOrient="left")
QUERY_AXIS = alt.Axis(labelAngle=-45, title=None)
PERCENT = {c: st.column_config.NumberColumn(c, format="%.3f") for c in ("mAP", "mAP_interp11", "NDCG", "P@10")}


def runs_tab(df: pd.DataFrame) -> None:
    c = st.columns(4)
    datasets = c[0].multiselect("Dataset", sorted(df["dataset"].dropna().unique()), key="f_dataset")
    backbones = c[1].multiselect("Backbone", sorted(df["backbone"].dropna().unique()), key="f_backbone")
    reranks = c[2].multiselect("Re-ranking", sorted(df["rerank"].dropna().unique()), key="f_rerank",
                               help="core/rerank/ method of the run (none: the plain global descriptor)")
    text = c[3].text_input("Contains", key="f_text", placeholder="e.g. gem, white, annoy")
    view = df
    if datasets:
        view = view[view["dataset"].isin(datasets)]
    if backbones:
        view = view[view["backbone"].isin(backbones)]
    if reranks:
        view = view[view["rerank"].isin(reranks)]
    if text:
        view = view[view.astype(str).apply(lambda col: col.str.contains(text, case=False, regex=False)).any(axis=1)]
    st.dataframe(view[SHOWN], hide_index=True, column_config={
        **PERCENT, "extraction_s": st.column_config.NumberColumn("extraction (s)", format="%.1f"),
        "query_ms": st.column_config.NumberColumn("query (ms)", format="%.1f"),
        "rerank_ms": st.column_config.NumberColumn("re-ranking (ms/query)", format="%.1f")})
    st.download_button("Download CSV", view.to_csv(index=False), file_name="runs.csv", mime="text/csv")
    st.caption(f"{len(view)} of {len(df)} runs. Relevant images are the listed positives present in each "
               "gallery: figures on partial galleries are not comparable with published full-dataset mAP.")


def tradeoff_tab(df: pd.DataFrame) -> None:
    tooltip = ["run_id", "label", "dataset", alt.Tooltip("mAP:Q", format=".3f"), alt.Tooltip("extraction_s:Q", format=".1f"),
               alt.Tooltip("query_ms:Q", format=".1f"), "dim", "pooling", "whitening", "search"]
    base = alt.Chart(df).mark_circle(opacity=0.8).encode(
        y=alt.Y("mAP:Q", scale=alt.Scale(zero=False, padding=24), axis=alt.Axis(format=".2f")),
        color=alt.Color("backbone:N", legend=alt.Legend(orient="bottom", columns=2, labelLimit=300)),
        size=alt.Size("dim:Q", scale=alt.Scale(range=[40, 400]), legend=alt.Legend(orient="bottom", values=[256, 512, 1024, 2048])),
        tooltip=tooltip)
    c = st.columns(2)
    c[0].altair_chart(base.encode(x=alt.X("extraction_s:Q", title="extraction time (s)", scale=alt.Scale(padding=24))).properties(
        title="mAP against extraction time", height=420).interactive(), width="stretch")
    c[1].altair_chart(base.encode(x=alt.X("query_ms:Q", title="query latency (ms)", scale=alt.Scale(padding=24))).properties(
        title="mAP against query latency", height=420).interactive(), width="stretch")
    st.caption("One point per run; colour: backbone, size: descriptor dimension. Timings come from the "
               "machine each run was made on.")


def pick_runs(df: pd.DataFrame, key: str, max_runs: int) -> list:
    ids = df["run_id"].tolist()
    chosen = st.multiselect("Runs", ids, default=ids[:min(2, max_runs)], max_selections=max_runs, key=key,
                            format_func=lambda r: f"{r}")
    return [run(artifacts_key(), r) for r in chosen]


def per_query_tab(df: pd.DataFrame) -> None:
    chosen = pick_runs(df, "pq_runs", 2)
    if not chosen:
        st.info("Choose one or two runs.")
        return
    data = ap_comparison(chosen)
    if data.empty:
        st.warning("These runs share no query.")
        return
    order = data.drop_duplicates("query")["query"].tolist()
    bars = alt.Chart(data).mark_bar().encode(
        x=alt.X("query:N", sort=order, axis=QUERY_AXIS), y=alt.Y("ap:Q", title="AP", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("run:N", legend=LEGEND), xOffset="run:N",
        tooltip=["query", "run", alt.Tooltip("ap:Q", format=".3f")])
    st.altair_chart(bars.properties(title="AP per query", height=440), width="stretch")
    if len(chosen) == 2:
        diff = data.drop_duplicates("query")
        st.altair_chart(alt.Chart(diff).mark_bar().encode(
            x=alt.X("query:N", sort=order, axis=QUERY_AXIS), y=alt.Y("diff:Q", title="AP (second − first)"),
            color=alt.Color("better:N", title="better run", legend=LEGEND),
            tooltip=["query", "better", alt.Tooltip("diff:Q", format="+.3f")]).properties(
            title="Where one run beats the other", height=360), width="stretch")
        wins = diff[diff["diff"].abs() >= 0.05][["query", "better", "diff"]]
        st.dataframe(wins, hide_index=True, column_config={"diff": st.column_config.NumberColumn(format="%+.3f")})


def pr_tab(df: pd.DataFrame) -> None:
    chosen = pick_runs(df, "pr_runs", 4)
    if not chosen:
        st.info("Choose runs to compare.")
        return
    queries = sorted(set().union(*(set(r.per_query["query"]) for r in chosen)))
    query = st.selectbox("Query", queries, key="pr_query")
    line = dict(x=alt.X("recall:Q", scale=alt.Scale(domain=[0, 1])),
                y=alt.Y("precision:Q", scale=alt.Scale(domain=[0, 1])),
                color=alt.Color("run:N", legend=LEGEND),
                tooltip=["run", "curve", alt.Tooltip("recall:Q", format=".2f"), alt.Tooltip("precision:Q", format=".2f")])
    c = st.columns(2)
    c[0].altair_chart(alt.Chart(pr_curves(chosen, query)).mark_line(interpolate="step-after").encode(
        **line, strokeDash=alt.StrokeDash("curve:N", legend=LEGEND)).properties(title=f"PR curve of {query}", height=480), width="stretch")
    c[1].altair_chart(alt.Chart(pr_curves(chosen)).mark_line(point=True).encode(**line).properties(
        title="Mean interpolated PR curve over each run's queries", height=480), width="stretch")


def failures_tab(df: pd.DataFrame) -> None:
    c = st.columns([3, 1, 1])
    run_id = c[0].selectbox("Run", df["run_id"].tolist(), key="fail_run")
    n = c[1].slider("Worst queries", 1, 20, 5, key="fail_n")
    k = c[2].slider("Results", 1, 20, 8, key="fail_k")
    r = run(artifacts_key(), run_id)
    root_ok = r.summary.gallery in list_galleries()
    try:
        cases = failure_cases(r, n, k)
    except (ValueError, OSError) as exc:                  # a run whose files disagree, an unusable ground truth
        st.error(escape_markdown(str(exc)))
        return
    for case in cases:
        st.markdown(f"**{escape_markdown(case.query)}** · AP {case.ap:.3f} · first relevant rank "
                    f"{case.first_relevant if case.first_relevant is not None else 'none'}")
        cols = st.columns([2] + [1] * k)
        if case.image_path is not None and case.image_path.exists():
            box = tuple(case.box.as_list()) if case.box else None
            cols[0].image(thumb_of(case.image_path, None, box, 200), caption="query crop")
        if root_ok:
            cols[0].page_link("pages/search.py", label="Open in search", icon=":material/image_search:", query_params={
                "gallery": r.summary.gallery, "embedding": r.summary.embedding_key, "query": case.query})
        root = case.image_path.parent if case.image_path else None
        for col, (image_id, label) in zip(cols[1:], case.results):
            if root is not None and (root / image_id).exists():
                col.image(thumb_of(root / image_id, label, None, 160))
            col.caption(f"{label}")
        st.divider()
    st.caption("Frames: " + ", ".join(f"<span style='color:{c}'>■</span> {lab}" for lab, c in LABEL_COLOURS.items()),
               unsafe_allow_html=True)


def classes_tab(df: pd.DataFrame) -> None:
    class_runs = df[df["dataset"] == "classes"]["run_id"].tolist()
    if not class_runs:
        st.info("No class-folder run yet. Any folder of class subfolders is a class benchmark, e.g. Fashion-MNIST:\n\n"
                "```\npython -m core data export-fashion-mnist --out data/fashion --per-class 100\n"
                "python -m core evaluate --dataset classes --root data/fashion --max-size 64\n```")
        return
    r = run(artifacts_key(), st.selectbox("Run", class_runs, key="classes_run"))
    table, confusion = class_results(r.directory)
    s = r.summary.protocol_extras["classes"]
    st.markdown(f"**{s['n_classes']} classes** · {s['knn_k']}-NN accuracy {s['knn_accuracy']:.3f} · "
                f"class-mean P@10 {s.get('class_mean_p@10', float('nan')):.3f} · chance precision "
                f"{s['chance_precision']:.3f}")
    st.dataframe(table, hide_index=True, column_config={c: st.column_config.NumberColumn(c, format="%.3f")
                                                        for c in table.columns if c not in ("class", "n_queries")})
    base = alt.Chart(confusion).encode(x=alt.X("predicted:N", title="predicted class"),
                                       y=alt.Y("true:N", title="true class"))
    heat = base.mark_rect().encode(color=alt.Color("share:Q", scale=alt.Scale(scheme="blues"), title="share of row"),
                                   tooltip=["true", "predicted", "count", alt.Tooltip("share:Q", format=".2f")])
    labels = base.mark_text(fontSize=11).encode(text="count:Q", color=alt.condition(
        "datum.share > 0.5", alt.value("white"), alt.value("black")))
    st.altair_chart((heat + labels).properties(title=f"Confusion matrix of the {s['knn_k']}-NN vote", height=420),
                    width="stretch")
    st.caption("Every image is a query; the other images of its class are relevant, the query itself is ignored. "
               "Rows: true class; columns: the class voted by its nearest neighbours.")


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
        for i, (title, table) in enumerate(rep.tables):
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
                st.info("No evaluation runs yet. Evaluate an embedding on a benchmark, for example:\n\n"
                        "```\npython -m core evaluate --dataset paris6k --root ../shared/data/paris6k\n```")
            else:
                {"Runs": runs_tab, "Trade-off": tradeoff_tab, "Per-query AP": per_query_tab,
                 "PR curves": pr_tab, "Failures": failures_tab, "Classes": classes_tab}[name](df)


main()
