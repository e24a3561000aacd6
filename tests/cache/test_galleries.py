"""Any folder is a gallery: incremental update after adding, removing and changing real Paris
images (only those are embedded, and the CLI says what changed), duplicate files, listing with
size, config and index parameters, and deletion."""
from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from conftest import PARIS, copy_paris_images

import core.cache.galleries as galleries
from core.app.markdown import escape_markdown
from core.app.names import embedding_name
from core.cache.descriptors import load_embeddings
from core.cache.galleries import duplicate_groups, list_galleries, load_gallery
from core.cli import main
from core.config import EmbeddingConfig
from core.embed.embedder import Embedder

CFG = EmbeddingConfig(max_size=96)
FLAGS = ["--max-size", "96", "--quiet"]


@pytest.fixture
def photos(tmp_path):
    return copy_paris_images(tmp_path / "photos", 5)


def index(capsys, folder, name="photos", *extra) -> str:
    assert main(["index", "--folder", str(folder), "--name", name, *FLAGS, *extra]) == 0
    return capsys.readouterr().out


def test_add_remove_change_updates_incrementally(artifacts, photos, capsys):
    out = index(capsys, photos, "photos", "--index", "none")
    assert "photos: 5 images embedded" in out
    first = load_embeddings("photos", CFG)
    names = sorted(p.name for p in photos.iterdir())
    extra = sorted((PARIS / "jpg").glob("*.jpg"))[-1]
    shutil.copy(extra, photos / extra.name)                                  # add
    (photos / names[0]).unlink()                                             # remove
    changed = photos / names[1]
    changed.write_bytes((PARIS / "jpg" / "paris_louvre_000081.jpg").read_bytes())   # change content

    out = index(capsys, photos, "photos", "--index", "none")
    assert "photos: 1 added, 1 changed, 1 removed, 3 unchanged" in out
    emb = load_embeddings("photos", CFG)
    assert emb.meta["changes"] == {"added": [extra.name], "changed": [names[1]], "removed": [names[0]], "unchanged": 3}
    assert emb.meta["extraction"]["n_embedded"] == 2                          # only the added and the changed
    assert sorted(emb.ids) == sorted(p.name for p in photos.iterdir())        # new rows are appended
    for image_id in names[2:]:                                               # unchanged vectors reused as they were
        np.testing.assert_array_equal(emb.vectors[emb.ids.index(image_id)], first.vectors[first.ids.index(image_id)])
    fresh = Embedder(CFG).embed_image(changed)
    np.testing.assert_allclose(emb.vectors[emb.ids.index(names[1])], fresh, atol=1e-5)

    out = index(capsys, photos, "photos", "--index", "none")
    assert "up to date, no image added, changed or removed" in out


def test_duplicate_files_are_reported_and_hashes_cached(artifacts, photos, capsys, monkeypatch):
    first = sorted(photos.iterdir())[0]
    shutil.copy(first, photos / "copy_of_first.jpg")
    out = index(capsys, photos, "photos", "--index", "none")
    assert "1 groups of identical files" in out
    assert f"copy_of_first.jpg = {first.name}" in out
    reads = []
    real = galleries.file_digest
    monkeypatch.setattr(galleries, "file_digest", lambda p, **kw: reads.append(p) or real(p, **kw))
    assert duplicate_groups(load_gallery("photos")) == [["copy_of_first.jpg", first.name]]
    assert reads == []                                                       # nothing changed: no file re-read


def test_list_shows_size_config_and_index_parameters_then_delete(artifacts, photos, capsys):
    index(capsys, photos, "photos", "--index", "annoy", "--n-trees", "5")
    assert main(["galleries", "list"]) == 0
    out = capsys.readouterr().out
    size_mb = sum(p.stat().st_size for p in photos.iterdir()) / 1e6
    assert f"photos: {photos} (5 images, {size_mb:.1f} MB)" in out
    assert f"{CFG.key()}  {CFG.label()}  5 images" in out
    assert "annoy cosine, n_trees 5, search_k" in out and "recall@10" in out
    index(capsys, photos, "photos", "--index", "hnsw")                       # listed beside the Annoy one
    assert main(["galleries", "list"]) == 0
    listed = [line.strip() for line in capsys.readouterr().out.splitlines() if "recall@10" in line]
    assert [line.split(",")[0] for line in listed] == ["annoy cosine", "hnsw cosine"]
    assert re.match(r"hnsw cosine, m \d+, ef_construction \d+, ef \d+: recall@10 1\.000, \d+\.\d MB$", listed[1])

    assert main(["galleries", "delete"]) == 2
    assert "name the gallery to delete" in capsys.readouterr().err
    assert main(["galleries", "delete", "photos"]) == 0
    assert "deleted gallery photos" in capsys.readouterr().out
    assert list_galleries() == [] and not (artifacts / "embeddings" / "photos").exists()
    assert len(list(photos.iterdir())) == 5                                  # the images are untouched
    assert main(["galleries", "delete", "photos"]) == 2


def test_app_galleries_page_lists_and_deletes(artifacts, photos, capsys):
    from conftest import REPO
    from streamlit.testing.v1 import AppTest
    index(capsys, photos, "photos", "--index", "annoy", "--n-trees", "5")
    at = AppTest.from_file(str(REPO / "pages" / "galleries.py"), default_timeout=120).run()
    assert not at.exception
    assert [h.value for h in at.subheader] == ["photos"]
    assert any(f"{escape_markdown(str(photos))} · 5 images" in c.value for c in at.caption)   # the path as literal text
    table = at.dataframe[0].value
    assert table.loc[0, "embedding"] == embedding_name(CFG) and "n_trees 5" in table.loc[0, "indexes"]
    at.button(key="ask_forget_photos").click().run()
    assert any("Removes **photos** from the app" in w.value and "images in" in w.value for w in at.warning)
    assert at.button(key="delete_photos").disabled
    at.text_input(key="confirm_photos").input("photo").run()
    assert at.button(key="delete_photos").disabled                           # the name, exactly
    at.text_input(key="confirm_photos").input("photos").run()
    at.button(key="delete_photos").click().run()
    assert not at.exception and list_galleries() == []
    assert any("No gallery yet" in i.value for i in at.info)
    assert len(list(photos.iterdir())) == 5


def test_app_deletes_only_the_descriptors_when_asked(artifacts, photos, capsys):
    from conftest import REPO
    from streamlit.testing.v1 import AppTest
    index(capsys, photos, "photos", "--n-trees", "5")
    at = AppTest.from_file(str(REPO / "pages" / "galleries.py"), default_timeout=120).run()
    at.button(key="ask_descriptors_photos").click().run()
    assert any("The gallery stays in the list" in w.value for w in at.warning)
    at.text_input(key="confirm_photos").input("photos").run()
    at.button(key="delete_photos").click().run()
    assert not at.exception and list_galleries() == ["photos"]
    assert not (artifacts / "embeddings" / "photos").exists() and len(list(photos.iterdir())) == 5
    assert any("No descriptors yet" in c.value for c in at.caption)
