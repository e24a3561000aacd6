"""The index backends by name, in the manner of fiftyone-brain's similarity backends: one entry
per backend (its module and class, imported when first used, so that a library nobody asked
for is never loaded), one ``open_index`` for every caller, and the parameters every backend
declares, from which the CLI and the app build their controls.

Adding a backend is one module (a subclass of ``core.index.base.Index``, or of
``core.index.stored.StoredIndex`` for a saved one, with its ``Params`` dataclass) and one line
in ``BACKENDS``.
"""
from __future__ import annotations

import importlib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from functools import cache
from typing import Any

from core.cache.descriptors import Embeddings
from core.index.base import Index, IndexParams, check_metric
from core.index.choice import resolve_method

BACKENDS: dict[str, str] = {
    "exact": "core.index.exact:ExactIndex",
    "exact16": "core.index.exact:Exact16Index",
    "annoy": "core.index.annoy:AnnoyIndex",
    "hnsw": "core.index.hnsw:HnswIndex",
    "ivfpq": "core.index.ivfpq:IvfPqIndex",
    "ivfsq": "core.index.ivfsq:IvfSqIndex",
    "milvus": "core.index.milvus:MilvusIndex",
}
AUTO = "auto"


def backend_names() -> tuple[str, ...]:
    """What ``--search`` and the app offer: "auto", then every registered backend."""
    return (AUTO, *BACKENDS)


@cache
def backend(name: str) -> type[Index]:
    """The class of backend ``name``."""
    if name not in BACKENDS:
        raise ValueError(f"search method must be one of {', '.join(backend_names())}, got {name!r}")
    module, _, cls_name = BACKENDS[name].partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    if cls.name != name:
        raise TypeError(f"index backend {BACKENDS[name]} calls itself {cls.name!r}, registered as {name!r}")
    return cls


@dataclass(frozen=True)
class SearchSettings:
    """How rankings are produced: which backend ("auto": the default for the gallery's size,
    ``core.index.choice``), with which metric, and the backend's parameters (None: its
    defaults, with the search effort tuned at build time)."""

    method: str = "exact"
    metric: str = "cosine"
    params: IndexParams | None = None

    def __post_init__(self) -> None:
        if self.method != AUTO:
            expected = backend(self.method).Params
            if self.params is not None and not isinstance(self.params, expected):
                raise TypeError(f"{self.method} takes {expected.__name__}, got {type(self.params).__name__}")
        check_metric(self.metric)

    def resolved(self, n_items: int, dim: int) -> SearchSettings:
        """These settings with "auto" replaced by the backend it stands for at this gallery size
        and the parameters filled with that backend's defaults."""
        method = resolve_method(self.method, n_items, dim)
        params = self.params if self.params is not None and method == self.method else backend(method).Params()
        return SearchSettings(method, self.metric, params)

    def to_dict(self) -> dict[str, Any]:
        """A run's ``search`` record: method, metric and the parameters that name the index."""
        named = self.params.build_fields() if self.params is not None else {}
        return {"method": self.method, "metric": self.metric, **{k: v for k, v in named.items() if v is not None}}


def open_index(emb: Embeddings, settings: SearchSettings) -> Index:
    """The index ``settings`` name for these descriptors ("auto" resolved by their size)."""
    s = settings.resolved(len(emb.ids), emb.dim)
    return backend(s.method).open(emb, s.metric, s.params)


@dataclass(frozen=True)
class ParamFlag:
    """One backend parameter as a command-line option: ``--n-trees`` for Annoy's ``n_trees``,
    ``--milvus-uri`` for Milvus's ``milvus_uri``; ``kind`` is the type its value is parsed as
    (from the dataclass annotation: ``int``, ``float`` or ``str``, optional or not). Backends whose
    parameters share a base (``nlist``, ``nprobe`` of the inverted-file indexes) share its option."""

    backends: tuple[str, ...]
    name: str
    default: Any
    effort: bool
    kind: type = int

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def value_type(params: type[IndexParams], name: str) -> type:
    """The type of field ``name`` of a parameters dataclass, ``X`` for ``X | None``."""
    hint = typing.get_type_hints(params)[name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint not in (int, float, str):
        raise TypeError(f"index parameter {params.__name__}.{name} must be an int, float or str, not {hint}")
    return hint


def param_flags() -> list[ParamFlag]:
    """Every backend's parameters, each name once: backends may share a parameter only as the
    same field of a common base (same default, type and role)."""
    out: dict[str, ParamFlag] = {}
    for name in BACKENDS:
        params = backend(name).Params
        for f in fields(params):
            flag = ParamFlag((name,), f.name, f.default, f.name == params.effort, value_type(params, f.name))
            seen = out.get(f.name)
            if seen is not None and replace(seen, backends=flag.backends) != flag:
                raise TypeError(f"index parameter {f.name!r} is declared by {', '.join(seen.backends)} and {name}")
            out[f.name] = replace(flag, backends=(*seen.backends, name)) if seen else flag
    return list(out.values())


def settings_from(method: str, metric: str, values: Mapping[str, Any]) -> SearchSettings:
    """Settings whose backend parameters are taken from ``values`` (e.g. parsed CLI options, None
    for unset): each backend reads its own, the rest keep their defaults."""
    if method == AUTO:
        return SearchSettings(method, metric)
    params = backend(method).Params
    given = {f.name: values[f.name] for f in fields(params) if values.get(f.name) is not None}
    return SearchSettings(method, metric, params(**given))


def packages() -> tuple[str, ...]:
    """The libraries of every backend, whose versions a run records."""
    return tuple(p for name in BACKENDS for p in backend(name).packages)
