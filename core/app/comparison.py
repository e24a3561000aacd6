"""How the metrics page names and groups runs so that charts can be read: a run is called by its
embedding and options (not its timestamp), points are coloured by the options that actually differ
between the runs on a chart, comparisons default to two runs of one dataset, and query views
start at the worst query.

Inputs are the runs table of ``core.app.catalog.runs_table`` (newest first).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pandas as pd

from core.evaluation.runs import Run

OPTION_COLUMNS = ("backbone", "pooling", "scales", "max_size", "whitening", "dim", "search", "rerank")
PLAIN = {"search": "exact/cosine", "rerank": "none"}     # options left out of a name when they have these values


def run_name(row: pd.Series | dict) -> str:
    """``embedding · search · re-ranking`` in words (``core.app.names``; the codes when a row has
    no names), the last two only when not plain exact cosine search without re-ranking; the
    gallery is added when it is not named after the dataset."""
    parts = [str(row.get("embedding") or row.get("label") or row.get("run_id"))]
    parts += [str(row.get(f"{c}_name") or row[c]) for c in ("search", "rerank") if row.get(c) not in (None, PLAIN[c])]
    if row.get("gallery") not in (None, row.get("dataset")):
        parts.append(f"gallery {row['gallery']}")
    return " · ".join(parts)


def run_names(df: pd.DataFrame) -> dict[str, str]:
    """A unique name per run id: identical names (the same configuration evaluated again) get
    ``(2)``, ``(3)``... from the oldest run on."""
    names = {r: run_name(row) for r, row in zip(df["run_id"], df.to_dict("records"))}
    seen: Counter[str] = Counter()
    ordered = df.sort_values("timestamp", kind="stable")["run_id"] if "timestamp" in df else df["run_id"]
    out = {}
    total = Counter(names.values())
    for run_id in ordered:
        name = names[run_id]
        seen[name] += 1
        out[run_id] = f"{name} ({seen[name]})" if total[name] > 1 else name
    return out


def varying_options(df: pd.DataFrame, columns: Sequence[str] = OPTION_COLUMNS) -> list[str]:
    """The option columns whose value is not the same for every run of ``df``."""
    return [c for c in columns if c in df and df[c].astype(str).nunique() > 1]


def variant_labels(df: pd.DataFrame, columns: Sequence[str] = OPTION_COLUMNS) -> pd.Series:
    """Per run, the values of the options that differ between the runs of ``df``
    (``pooling rmac · scales 3``), to colour points by; "same options" when nothing differs."""
    varying = varying_options(df, columns)
    if not varying:
        return pd.Series("same options", index=df.index)
    return df[varying].astype(str).apply(lambda row: " · ".join(f"{c} {v}" for c, v in row.items()), axis=1)


def default_pair(df: pd.DataFrame) -> list[str]:
    """Two runs to compare query by query: the two newest of the newest run's dataset, else of
    any dataset with two runs, else the newest run alone."""
    if df.empty:
        return []
    datasets = [df["dataset"].iloc[0]] + [d for d in df["dataset"].unique() if d != df["dataset"].iloc[0]]
    for dataset in datasets:
        ids = df.loc[df["dataset"] == dataset, "run_id"].tolist()
        if len(ids) >= 2:
            return ids[:2]
    return df["run_id"].tolist()[:1]


def worst_query(runs: Sequence[Run]) -> str | None:
    """The query with the lowest AP averaged over ``runs`` (among the queries they share)."""
    if not runs:
        return None
    common = set.intersection(*(set(r.per_query["query"]) for r in runs))
    if not common:
        return None
    aps = pd.concat([r.per_query.set_index("query").loc[sorted(common), "ap"] for r in runs], axis=1).mean(axis=1)
    return str(aps.idxmin())


# Tableau 10 then its lighter half: a run keeps its colour in every chart of the metrics page
PALETTE = ("#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d",
           "#bab0ac", "#9ecae9", "#ffbf79", "#ff9d98", "#88d27a", "#d6a5c9", "#fcbfd2", "#d8b5a5", "#79706e")


def method_colours(names: Sequence[str]) -> dict[str, str]:
    """One colour per run name (a method: embedding, search and re-ranking), the same in every
    chart: names sorted, colours taken in turn from ``PALETTE`` (repeating past its end)."""
    return {name: PALETTE[n % len(PALETTE)] for n, name in enumerate(sorted(set(names)))}


def fitted_domain(values: Sequence[float], pad: float = 0.15, least: float = 0.02) -> tuple[float, float]:
    """An axis range around ``values`` within [0, 1] (a score): the data's span, widened by
    ``pad`` of it on each side and to at least ``least``, so that close scores do not overlap."""
    lo, hi = float(min(values)), float(max(values))
    margin = max((hi - lo) * pad, (least - (hi - lo)) / 2, 0.0) + 1e-9
    lo, hi = lo - margin, hi + margin
    if lo < 0:
        lo, hi = 0.0, min(1.0, hi - lo)
    if hi > 1:
        lo, hi = max(0.0, lo - (hi - 1)), 1.0
    return round(lo, 4), round(hi, 4)
