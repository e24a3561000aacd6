"""``RunSummary``: what one evaluation run found, as it travels between the pipeline, the CLI,
the catalogue and the pages. On disk it is ``summary.json`` in the documented run format
(README, "Evaluation runs"): ``to_dict``/``from_dict`` write and read exactly those keys, and
runs written before a key existed read with its default.

Metrics keyed by a cut-off (``p@10``, ``top5``, revisitop's ``mp@5``) stay in their documented
JSON names and are read with ``metric(name)``; what a protocol adds (``dataset_info``, ``mp@k``,
``classes``, ``knn_accuracy``) is kept in ``protocol_extras`` and written back at the top level.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from core.config import EmbeddingConfig
from core.index import IndexFigures, SearchSettings, Tuning, backend, settings_from


@dataclass(frozen=True)
class IndexRun:
    """A run's ``index`` record: the index's own figures, the time to open or build it for this
    run, the search time of all queries, and for an approximate index the recall its rankings
    had on these queries against exact search."""

    figures: IndexFigures
    index_build_seconds: float | None = None
    search_seconds: float = 0.0
    query_recall_at_10: float | None = None
    query_recall_at_100: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {**self.figures.to_dict(), "index_build_seconds": self.index_build_seconds,
               "search_seconds": self.search_seconds}
        if self.query_recall_at_10 is not None:
            out.update({"query_recall@10": self.query_recall_at_10, "query_recall@100": self.query_recall_at_100})
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexRun | None:
        if "method" not in data:
            return None
        params = backend(data["method"]).Params.from_record(data)
        tuning = Tuning.from_dict(data, params.effort) if params.effort and "recall@10" in data else None
        figures = IndexFigures(data["method"], data.get("metric", "cosine"), params, data.get("build_seconds"), tuning)
        return cls(figures, data.get("index_build_seconds"), float(data.get("search_seconds", 0.0)),
                   data.get("query_recall@10"), data.get("query_recall@100"))


@dataclass(frozen=True)
class RerankRun:
    """A run's ``rerank`` record: the method, its parameters as they ran, its short label, the
    once-per-gallery preparation and the extra time per query."""

    method: str = "none"
    params: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    offline_seconds: float = 0.0
    extra_ms_per_query: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **self.params, "label": self.label, "offline_seconds": self.offline_seconds,
                "extra_ms_per_query": self.extra_ms_per_query}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RerankRun:
        timing = ("method", "label", "offline_seconds", "extra_ms_per_query")
        return cls(data.get("method", "none"), {k: v for k, v in data.items() if k not in timing},
                   data.get("label", ""), float(data.get("offline_seconds", 0.0)),
                   float(data.get("extra_ms_per_query", 0.0)))


@dataclass(frozen=True)
class DistractorsRun:
    """A run's ``distractors`` record: the indexed gallery whose images joined the benchmark's
    gallery as negatives (the +R1M protocol, or the user's own photos), and how many."""

    gallery: str
    n_images: int

    @property
    def label(self) -> str:
        """``+1M`` for 1,001,001 images, ``+100k``, ``+250``: how papers name the protocol."""
        if self.n_images >= 1_000_000:
            return f"+{self.n_images / 1e6:.0f}M"
        return f"+{self.n_images / 1e3:.0f}k" if self.n_images >= 10_000 else f"+{self.n_images}"

    def to_dict(self) -> dict[str, Any]:
        return {"gallery": self.gallery, "n_images": self.n_images, "label": self.label}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DistractorsRun | None:
        return cls(str(data["gallery"]), int(data["n_images"])) if data.get("gallery") else None


@dataclass
class RunSummary:
    dataset: str
    protocol: str
    gallery: str
    gallery_root: str
    embedding: EmbeddingConfig
    search: SearchSettings                     # "search": method, metric, the parameters naming the index
    n_images: int
    n_failed_images: int
    n_queries: int
    n_queries_total: int
    n_queries_skipped: int
    skipped_queries: list[str]
    dim: int
    map: float
    map_interp11: float
    ndcg: float
    precision_at: dict[int, float]             # "p@k" in JSON
    top_k: dict[int, float]                    # "topk" in JSON
    random_map: float
    relevance_note: str = "relevant = listed positives present in the gallery; junk removed from rankings"
    extraction_seconds: float | None = None
    images_per_second: float | None = None
    index_build_seconds: float | None = None
    query_embed_ms: float = 0.0
    query_search_ms: float = 0.0
    mean_query_ms: float = 0.0
    queries_from_cache: int = 0
    query_crops_cached: int = 0                # crops read from core.cache.queries (not timed in query_embed_ms)
    index: IndexRun | None = None
    rerank: RerankRun = field(default_factory=RerankRun)
    distractors: DistractorsRun | None = None  # images of another gallery added as negatives
    ground_truth_notes: list[str] = field(default_factory=list)
    protocol_extras: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    timestamp: str = ""
    run_id: str = ""
    run_dir: str = ""

    @property
    def embedding_label(self) -> str:
        return self.embedding.label()

    @property
    def embedding_key(self) -> str:
        return self.embedding.key()

    @property
    def rerank_label(self) -> str:
        return self.rerank.label

    @property
    def protocol_label(self) -> str:
        """The protocol as papers print it: ``Medium +1M`` (revisited, with 1M distractors),
        ``Hard``, or the protocol's own name."""
        name = self.protocol.capitalize() if self.protocol in ("easy", "medium", "hard") else self.protocol
        return " ".join(p for p in (name, self.distractors.label if self.distractors else "") if p)

    def metric(self, name: str) -> float | None:
        """A mean metric by its JSON name: ``map``, ``map_interp11``, ``ndcg``, ``p@k``,
        ``topk``, or a protocol's (``mp@k``, ``knn_accuracy``); None when the run lacks it."""
        if name.startswith("p@") and name[2:].isdigit():
            return self.precision_at.get(int(name[2:]))
        if name.startswith("top") and name[3:].isdigit():
            return self.top_k.get(int(name[3:]))
        if name in ("map", "map_interp11", "ndcg", "random_map"):
            return getattr(self, name)
        value = self.protocol_extras.get(name)
        return float(value) if isinstance(value, (int, float)) else None

    def to_dict(self) -> dict[str, Any]:
        """``summary.json``, key for key in the documented order."""
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "embedding":
                data.update(embedding=value.to_dict(), embedding_label=self.embedding_label,
                            embedding_key=self.embedding_key)
            elif f.name == "precision_at":
                data.update({f"p@{k}": v for k, v in value.items()})
            elif f.name == "top_k":
                data.update({f"top{k}": v for k, v in value.items()})
            elif f.name == "protocol_extras":
                data.update(value)
            elif f.name in ("run_id", "run_dir") and not value:
                continue
            elif f.name in ("search", "index", "rerank", "distractors"):
                data[f.name] = value.to_dict() if value is not None else {}
            else:
                data[f.name] = value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        names = {f.name for f in fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        known["embedding"] = EmbeddingConfig.from_dict(data.get("embedding", {}))
        search = data.get("search") or {}
        known["search"] = settings_from(search.get("method", "exact"), search.get("metric", "cosine"), search)
        known["index"] = IndexRun.from_dict(data.get("index") or {})
        known["rerank"] = RerankRun.from_dict(data.get("rerank") or {})
        known["distractors"] = DistractorsRun.from_dict(data.get("distractors") or {})
        known["precision_at"] = {int(k[2:]): v for k, v in data.items() if k.startswith("p@") and k[2:].isdigit()}
        known["top_k"] = {int(k[3:]): v for k, v in data.items() if k.startswith("top") and k[3:].isdigit()}
        derived = {"embedding_label", "embedding_key"}
        known["protocol_extras"] = {k: v for k, v in data.items() if k not in names and k not in derived
                                    and k not in _keyed(known)}
        for name, default in (("dataset", ""), ("protocol", ""), ("gallery", ""), ("gallery_root", ""),
                              ("n_images", 0), ("n_failed_images", 0), ("n_queries", 0),
                              ("n_queries_total", 0), ("n_queries_skipped", 0), ("skipped_queries", []),
                              ("dim", 0), ("map", 0.0), ("map_interp11", 0.0), ("ndcg", 0.0), ("random_map", 0.0)):
            known.setdefault(name, default)
        return cls(**known)


def _keyed(known: dict[str, Any]) -> set[str]:
    return {f"p@{k}" for k in known["precision_at"]} | {f"top{k}" for k in known["top_k"]}
