"""Descriptors computed elsewhere: ``python -m core import`` creates and extends a gallery (an id
already there replaced, another dimension refused), ``galleries export`` writes them back, and a
search of the imported gallery answers with ids whose images are not on this machine."""
from __future__ import annotations

import numpy as np
from conftest import PARIS

from core.cache.descriptors import load_embeddings
from core.cache.galleries import load_gallery
from core.cli import main
from core.config import EmbeddingConfig
from core.embed.embedder import Embedder

CFG = EmbeddingConfig(max_size=96)
FLAGS = ["--max-size", "96"]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _save(tmp_path, name, vectors, ids=None):
    np.save(tmp_path / f"{name}.npy", vectors)
    if ids is not None:
        (tmp_path / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    return str(tmp_path / f"{name}.npy"), str(tmp_path / f"{name}.txt")


def test_import_append_replace_export_round_trip_and_search(artifacts, tmp_path, capsys):
    embedder = Embedder(CFG)
    query = PARIS / "jpg" / "paris_louvre_000081.jpg"
    rng = np.random.default_rng(0)
    first = unit(rng.standard_normal((6, embedder.dim))).astype(np.float32)
    first[2] = embedder.embed_image(query)                 # the one a search with the query finds first
    vec, ids = _save(tmp_path, "first", first, [f"remote/{i}.jpg" for i in range(6)])
    assert main(["import", "--name", "ext", "--vectors", vec, "--ids", ids, *FLAGS]) == 0
    assert "6 added, 0 replaced, 6 images" in capsys.readouterr().out
    assert load_gallery("ext").imported

    second = 3 * rng.standard_normal((3, embedder.dim))         # float64, not unit: stored normalised, float32
    vec2, ids2 = _save(tmp_path, "second", second, ["remote/5.jpg", "remote/6.jpg", "remote/7.jpg"])
    assert main(["import", "--name", "ext", "--vectors", vec2, "--ids", ids2, *FLAGS]) == 0
    assert "2 added, 1 replaced, 8 images" in capsys.readouterr().out

    out = tmp_path / "export.npy"
    assert main(["galleries", "export", "ext", "--out", str(out), *FLAGS]) == 0
    exported, exported_ids = np.load(out), (tmp_path / "export.ids.txt").read_text().splitlines()
    expected = {f"remote/{i}.jpg": first[i] for i in range(5)} | {
        f"remote/{i}.jpg": unit(second)[i - 5].astype(np.float32) for i in range(5, 8)}
    assert sorted(exported_ids) == sorted(expected)
    for i, image_id in enumerate(exported_ids):
        np.testing.assert_allclose(exported[i], expected[image_id], atol=1e-6)
    emb = load_embeddings("ext", CFG)
    assert emb.ids == exported_ids and len(set(emb.fingerprints)) == 8

    capsys.readouterr()
    assert main(["search", str(query), "--name", "ext", "-k", "3", "--rerank", "none", *FLAGS]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "remote/2.jpg" in lines[1] and "cosine 1.0000" in lines[1], lines


def test_import_refuses_another_dimension_and_folder_galleries_refuse_imports(artifacts, tmp_path, capsys):
    vec, _ = _save(tmp_path, "bad", np.ones((2, 7), np.float32))
    assert main(["import", "--name", "ext2", "--vectors", vec, *FLAGS]) == 2
    err = capsys.readouterr().err
    assert "dimension 7" in err and "1280" in err and len(err.strip().splitlines()) == 1
    assert main(["galleries", "export", "ext2", "--out", str(tmp_path / "x.npy"), *FLAGS]) == 2   # nothing created

    folder = tmp_path / "photos"
    folder.mkdir()
    assert main(["index", "--folder", str(folder), "--name", "photos", "--index", "none", "--quiet", *FLAGS]) == 0
    ok, _ = _save(tmp_path, "ok", np.ones((2, 1280), np.float32))
    capsys.readouterr()
    assert main(["import", "--name", "photos", "--vectors", ok, *FLAGS]) == 2
    assert "indexed from the folder" in capsys.readouterr().err
    assert main(["import", "--name", "ext3", "--vectors", ok, *FLAGS]) == 0
    capsys.readouterr()
    assert main(["index", "--name", "ext3", "--index", "none", "--quiet", *FLAGS]) == 2
    assert "holds imported descriptors" in capsys.readouterr().err
