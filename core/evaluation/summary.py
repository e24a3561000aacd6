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


@dataclass
class RunSummary:
    dataset: str
    protocol: str
    gallery: str
    gallery_root: str
    embedding: EmbeddingConfig
    search: dict[str, Any]                     # method, metric, and n_trees for Annoy
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
    index: dict[str, Any] = field(default_factory=dict)     # index figures (Annoy: n_trees, search_k, recall)
    rerank: dict[str, Any] = field(default_factory=dict)    # method, parameters, label, timings
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
        return self.rerank.get("label") or ""

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
            else:
                data[f.name] = value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        names = {f.name for f in fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        known["embedding"] = EmbeddingConfig.from_dict(data.get("embedding", {}))
        known["precision_at"] = {int(k[2:]): v for k, v in data.items() if k.startswith("p@") and k[2:].isdigit()}
        known["top_k"] = {int(k[3:]): v for k, v in data.items() if k.startswith("top") and k[3:].isdigit()}
        derived = {"embedding_label", "embedding_key"}
        known["protocol_extras"] = {k: v for k, v in data.items() if k not in names and k not in derived
                                    and k not in _keyed(known)}
        for name, default in (("dataset", ""), ("protocol", ""), ("gallery", ""), ("gallery_root", ""),
                              ("search", {}), ("n_images", 0), ("n_failed_images", 0), ("n_queries", 0),
                              ("n_queries_total", 0), ("n_queries_skipped", 0), ("skipped_queries", []),
                              ("dim", 0), ("map", 0.0), ("map_interp11", 0.0), ("ndcg", 0.0), ("random_map", 0.0)):
            known.setdefault(name, default)
        return cls(**known)


def _keyed(known: dict[str, Any]) -> set[str]:
    return {f"p@{k}" for k in known["precision_at"]} | {f"top{k}" for k in known["top_k"]}
