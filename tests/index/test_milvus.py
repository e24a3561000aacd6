"""Milvus (Lite, on a file under tmp_path) as an index backend: a round trip of a few thousand
vectors with the guarantees of the saved indexes (foreign refused, stale rebuilt, ids checked)
and its URI as a string command-line option."""
from dataclasses import replace

import numpy as np
import pytest
from conftest import unit_vectors

pytest.importorskip("milvus_lite")

from core.cache.descriptors import Embeddings  # noqa: E402
from core.cli import build_parser  # noqa: E402
from core.config import EmbeddingConfig  # noqa: E402
from core.index import ExactIndex, IndexMismatch, SearchSettings, open_index, param_flags, recall_at, settings_from  # noqa: E402
from core.index.milvus import MilvusParams, client, collection_name  # noqa: E402

CFG = EmbeddingConfig(pooling="gem", scales=(1.0,))


@pytest.fixture
def vectors():
    return unit_vectors(3000, 32, seed=3)


def gallery(vectors, directory, config=CFG, ids=None) -> Embeddings:
    return Embeddings("my photos", config, ids or [f"img{i:05d}.jpg" for i in range(len(vectors))], vectors, directory)


def test_milvus_lite_round_trip_with_the_guarantees_of_a_saved_index(tmp_path, vectors):
    settings = SearchSettings("milvus", params=MilvusParams(str(tmp_path / "gallery.db")))
    emb = gallery(vectors, tmp_path)
    index = open_index(emb, settings)
    q = vectors[:20] + 0.05
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    idx, scores = index.search(q, 10)
    exact = ExactIndex(vectors)
    assert recall_at(idx, exact.search(q, 10)[0], 10) >= 0.95
    np.testing.assert_allclose(scores, exact.scores(q)[np.arange(20)[:, None], idx], atol=1e-5)
    assert index.figures().tuning.recall_at_10 >= 0.95
    again = open_index(emb, settings)                                 # found filled: not filled again
    assert again.meta["build_seconds"] == index.meta["build_seconds"]

    with pytest.raises(IndexMismatch, match="holds embedding .*another --milvus-uri"):
        open_index(gallery(vectors, tmp_path, replace(CFG, pooling="mac")), settings)
    ids = [f"img{i:05d}.jpg" for i in range(len(vectors) - 1)] + ["new.jpg"]
    rebuilt = open_index(gallery(vectors, tmp_path, ids=ids), settings)  # stale: filled again
    assert rebuilt.meta["ids_digest"] != index.meta["ids_digest"]
    assert rebuilt.search(vectors[-1:], 1)[0][0, 0] == len(vectors) - 1

    db = client(settings.params.milvus_uri)                          # a row rewritten outside this tool
    db.upsert(collection_name("my photos", "cosine"), [{"row": 0, "image_id": "intruder.jpg", "vector": vectors[0]}])
    with pytest.raises(IndexMismatch, match="intruder.jpg"):
        rebuilt.search(vectors[:1], 5)


def test_the_milvus_uri_is_a_string_option():
    flag = next(p for p in param_flags() if p.name == "milvus_uri")
    assert flag.kind is str and flag.flag == "--milvus-uri"
    a = build_parser().parse_args(["search", "q.jpg", "--name", "g", "--search", "milvus", "--milvus-uri", "http://host:19530"])
    assert settings_from(a.search, a.metric, vars(a)).params == MilvusParams("http://host:19530")
