"""Milvus as an index backend: a gallery's descriptors in one Milvus collection, for users whose
gallery outgrows one machine (a Milvus standalone or cluster, ``--milvus-uri http://host:19530``)
or who want a local file served by Milvus Lite (``--milvus-uri gallery.db``; empty: ``milvus.db``
beside the descriptors). The same ``MilvusClient`` code talks to both.

The same guarantees as a saved index (``core.index.stored``): the collection (``cbir_<gallery>_
<metric>``) records, in its properties, the embedding config, the dimension, the item count and
the digest of the ids and contents (``Embeddings.content_digest``), written last, after every row
is in. A collection of another config or dimension is refused with a message; a stale one (images
added, removed or rewritten since) or one without its description (an interrupted build) is
rebuilt from the cached descriptors. Every hit's stored image id is checked against the gallery's
id for its row. Candidates are re-scored exactly from the stored vectors, so scores are the
metric's whatever Milvus's index does.
"""
from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.cache.descriptors import Embeddings
from core.index.base import Index, IndexFigures, IndexMismatch, IndexParams, Tuning, check_metric, rescored
from core.index.stored import measure_recall

META_KEY = "cbir_meta"
INSERT_CHUNK = 5_000           # rows per insert: memory stays one chunk
CANDIDATES = 64                # hits beyond k asked of Milvus and re-scored exactly
MILVUS_METRIC = {"cosine": "IP", "euclidean": "L2"}
_clients: dict[str, Any] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class MilvusParams(IndexParams):
    """Where the collection lives: a Milvus URI (``http://host:19530``) or a Milvus Lite file
    (empty: ``milvus.db`` beside the descriptors)."""

    milvus_uri: str = ""


def client(uri: str) -> Any:
    """One ``MilvusClient`` per URI and process (Milvus Lite starts one server per file)."""
    with _lock:
        if uri not in _clients:
            from pymilvus import MilvusClient

            _clients[uri] = MilvusClient(uri)
        return _clients[uri]


def collection_name(gallery: str, metric: str) -> str:
    return "cbir_" + re.sub(r"[^A-Za-z0-9_]", "_", gallery) + "_" + metric


def _meta(emb: Embeddings, metric: str, build_seconds: float, tuning: Tuning | None) -> dict[str, Any]:
    return {"config_key": emb.config.key(), "config": emb.config.label(), "dim": emb.dim, "n_items": len(emb.ids),
            "ids_digest": emb.content_digest(), "metric": metric, "build_seconds": build_seconds,
            **(tuning.to_dict("effort") if tuning else {})}


def _problems(meta: dict[str, Any], emb: Embeddings) -> tuple[list[str], bool]:
    """What keeps a collection from serving these descriptors, and whether rebuilding it is safe."""
    foreign = []
    if meta.get("config_key") != emb.config.key():
        foreign.append(f"it holds embedding {meta.get('config')}, not {emb.config.label()}")
    if meta.get("dim") != emb.dim:
        foreign.append(f"its dimension is {meta.get('dim')}, the descriptors have {emb.dim}")
    if foreign:
        return foreign, False
    stale = meta.get("n_items") != len(emb.ids) or meta.get("ids_digest") != emb.content_digest()
    return (["the gallery's images changed since it was filled"] if stale else []), True


class MilvusIndex(Index):
    """A gallery's descriptors in a Milvus collection, its hits re-scored from the stored vectors."""

    name = "milvus"
    title = "Milvus"
    Params = MilvusParams
    packages = ("pymilvus", "milvus-lite")

    def __init__(self, emb: Embeddings, metric: str, params: MilvusParams, meta: dict[str, Any]) -> None:
        self.emb, self.metric, self.params, self.meta = emb, check_metric(metric), params, meta
        self.uri = params.milvus_uri or str(emb.directory / "milvus.db")
        self.collection = collection_name(emb.gallery, metric)

    @classmethod
    def open(cls, emb: Embeddings, metric: str, params: MilvusParams) -> MilvusIndex:
        """The gallery's collection, filled first when absent, stale or unfinished; one of another
        config or dimension is refused (``IndexMismatch``)."""
        index = cls(emb, metric, params, {})
        db = client(index.uri)
        if db.has_collection(index.collection):
            raw = db.describe_collection(index.collection).get("properties", {}).get(META_KEY)
            problems, safe = _problems(json.loads(raw), emb) if raw else (["it has no description"], True)
            if not problems:
                return cls(emb, metric, params, json.loads(raw))
            if not safe:
                raise IndexMismatch(f"refusing Milvus collection {index.collection} at {index.uri}: "
                                    f"{'; '.join(problems)}; drop it or pass another --milvus-uri")
            db.drop_collection(index.collection)
        return index.fill()

    def fill(self) -> MilvusIndex:
        """Create the collection, insert every row in chunks, measure recall, then write the
        description (last: a collection without one is an interrupted build)."""
        from pymilvus import DataType, MilvusClient

        db, start = client(self.uri), time.perf_counter()
        schema = MilvusClient.create_schema(auto_id=False)
        schema.add_field("row", DataType.INT64, is_primary=True)
        schema.add_field("image_id", DataType.VARCHAR, max_length=4096)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.emb.dim)
        index_params = db.prepare_index_params()
        index_params.add_index("vector", index_type="AUTOINDEX", metric_type=MILVUS_METRIC[self.metric])
        db.create_collection(self.collection, schema=schema, index_params=index_params)
        for first in range(0, len(self.emb.ids), INSERT_CHUNK):
            block = np.asarray(self.emb.vectors[first:first + INSERT_CHUNK], np.float32)
            db.insert(self.collection, [{"row": first + i, "image_id": self.emb.ids[first + i], "vector": v}
                                        for i, v in enumerate(block)])
        db.flush(self.collection)
        build_seconds = time.perf_counter() - start
        tuning = measure_recall(lambda q, k, _: self.search(q, k)[0], self._exact_top, self.emb.vectors, [0],
                               strata=self.emb.strata)
        self.meta = _meta(self.emb, self.metric, build_seconds, tuning)
        db.alter_collection_properties(self.collection, properties={META_KEY: json.dumps(self.meta)})
        return self

    def _exact_top(self, queries: np.ndarray, k: int) -> np.ndarray:
        from core.index.exact import ExactIndex

        return ExactIndex(self.emb.vectors, self.metric).search(queries, k)[0]

    def __len__(self) -> int:
        return len(self.emb.ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(k, len(self))
        hits = client(self.uri).search(self.collection, data=list(q), limit=min(k + CANDIDATES, len(self)),
                                       output_fields=["image_id"],
                                       search_params={"metric_type": MILVUS_METRIC[self.metric]})
        rows = [np.array([self._checked(hit) for hit in found], np.int64) for found in hits]
        return rescored(self.emb.vectors, q, rows, k, self.metric)

    def _checked(self, hit: dict[str, Any]) -> int:
        """The gallery row of a hit, after checking that the collection's id for it is the gallery's."""
        row, image_id = int(hit["row"]), hit["entity"]["image_id"]
        if not 0 <= row < len(self.emb.ids) or self.emb.ids[row] != image_id:
            raise IndexMismatch(f"Milvus collection {self.collection} at {self.uri} holds {image_id!r} at row {row}, "
                                f"not the gallery's image: it was changed outside this tool", stale=True)
        return row

    def figures(self) -> IndexFigures:
        tuning = Tuning.from_dict(self.meta, "effort") if "recall@10" in self.meta else None
        return IndexFigures(self.name, self.metric, self.params, self.meta.get("build_seconds"), tuning)

    def source(self) -> str:
        return f"{self.uri}#{self.collection}"
