"""The search page's state as URL query parameters, so that a reload or a shared link shows the
same view: gallery, embedding, query (a ground-truth query or a gallery image), box, k, metric,
index and re-ranking.

``decode`` never guesses: a value it cannot read is dropped and reported in words, so the page
can say what of a link it could not restore instead of silently searching something else.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from core.images import Box
from core.index import METRICS, backend_names
from core.rerank import list_rerankers

INDEXES = backend_names()
MAX_K = 100


@dataclass(frozen=True)
class ViewState:
    """What a link restores; None: not part of the link (the page keeps its default)."""

    gallery: str | None = None
    embedding: str | None = None          # EmbeddingConfig.key() of one of the gallery's caches
    query: str | None = None              # ground-truth query name (e.g. louvre_1)
    image: str | None = None              # gallery image id, when the query is a gallery image
    box: Box | None = None                # in original pixels
    k: int | None = None
    metric: str | None = None
    index: str | None = None
    effort: int | None = None             # the index's search effort; 0: the one tuned at build time
    rerank: str | None = None

    def to_params(self) -> dict[str, str]:
        """Query parameters of the fields that are set (box as ``x1,y1,x2,y2``)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = ",".join(f"{v:g}" for v in value.as_list()) if isinstance(value, Box) else str(value)
        return out


def _box(text: str) -> Box:
    values = [float(v) for v in text.replace(" ", ",").split(",") if v]
    box = Box.of(values)
    if not all(math.isfinite(v) for v in values) or box.x2 <= box.x1 or box.y2 <= box.y1:
        raise ValueError("needs x1 < x2 and y1 < y2")
    return box


def _choice(options: Sequence[str]):
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(f"not one of {', '.join(options)}")
        return text
    return parse


def _count(low: int, high: int):
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"not between {low} and {high}")
        return value
    return parse


PARSERS = {"gallery": str, "embedding": str, "query": str, "image": str, "box": _box, "k": _count(1, MAX_K),
           "metric": _choice(METRICS), "index": _choice(INDEXES), "effort": _count(0, 10_000_000),
           "rerank": _choice(tuple(list_rerankers()))}


def decode(params: Mapping[str, str]) -> tuple[ViewState, list[str]]:
    """The state a link asks for, and one sentence per parameter that could not be used."""
    values, problems = {}, []
    for name, text in params.items():
        parse = PARSERS.get(name)
        if parse is None:
            problems.append(f"unknown link parameter {name!r} ignored")
            continue
        try:
            values[name] = parse(text)
        except ValueError as exc:
            problems.append(f"link parameter {name}={text!r} ignored: {exc}")
    if "query" in values and "image" in values:
        problems.append("a link names either a ground-truth query or a gallery image; the image was ignored")
        del values["image"]
    return ViewState(**values), problems


def missing(kind: str, value: str, available: Sequence[str], shown: str) -> str:
    """The sentence for a linked ``value`` that does not exist: what was asked, what is shown instead."""
    hint = f" ({len(available)} available)" if available else ""
    return f"The link asks for {kind} {value!r}, which does not exist{hint}; showing {shown} instead."
