"""The search page on an imported gallery whose images are not on this machine, and on a gallery
larger than the id picker lists (its bound monkeypatched down to a small imported gallery): the id
is typed and checked against the gallery's, a gallery image is searched by its stored descriptor,
and results without a file show their id."""
import numpy as np
import pytest
from conftest import REPO, unit_vectors
from streamlit.testing.v1 import AppTest

import core
from core.app.markdown import escape_markdown
from core.cache.transfer import import_vectors
from core.config import DEFAULT_CONFIG

pytestmark = pytest.mark.slow              # the app (AppTest)
TIMEOUT = 300
DIM = 1280                       # the default embedding's descriptors
IDS = [f"d{i:04d}" for i in range(40)]


@pytest.fixture
def far(artifacts):
    """Gallery "far": 40 imported descriptors, no image files."""
    import_vectors("far", DEFAULT_CONFIG, IDS, unit_vectors(len(IDS), DIM, seed=3), DIM)
    return "far"


def gallery_page(name: str) -> AppTest:
    """The search page on gallery ``name``, Gallery-image queries, plain ranking."""
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.query_params.update(gallery=name, embedding=DEFAULT_CONFIG.key(), rerank="none")
    at.run()
    assert at.radio(key="source").value == "Gallery image"
    return at


def result_ids(at: AppTest) -> list[str]:
    return [t.value for t in at.text]


def test_a_small_imported_gallery_lists_its_ids_and_searches_a_stored_descriptor(far):
    at = gallery_page(far)
    assert at.selectbox(key="gallery_image").options == IDS                  # as for any small gallery
    at.selectbox(key="gallery_image").set_value("d0007").run()
    assert any("No file of d0007 on this machine" in c.value for c in at.caption)
    at.button(key="search").click().run()
    assert not at.exception
    assert result_ids(at)[:1] == ["d0007"] and len(result_ids(at)) == 10   # a result without a file shows its id
    assert "embed 0 ms" in next(m.value for m in at.markdown if m.value.startswith("**10 results**"))
    at.button(key="view-2").click().run()
    assert not at.exception and any("no file of this image on this machine" in c.value for c in at.caption)


def test_above_the_picker_bound_the_id_is_typed_and_checked(far, monkeypatch):
    monkeypatch.setattr(core, "PICKER_MAX_IDS", len(IDS) - 1)
    at = gallery_page(far)
    assert not [s for s in at.selectbox if s.key == "gallery_image"]
    field = at.text_input(key="gallery_image")
    assert field.value == IDS[0]
    field.input("d0031").run()
    at.button(key="search").click().run()
    assert not at.exception and result_ids(at)[0] == "d0031"
    at.text_input(key="gallery_image").input("d9999").run()
    assert not at.exception
    assert f"far has no image {escape_markdown(repr('d9999'))}: type an id as the results show it (e.g. d0000), " \
           "or browse." == at.warning[0].value
    assert "results of the previous query, **d0031**; the current query could not be read" in at.warning[1].value
    assert at.button(key="search").disabled
    at.text_input(key="gallery_image").input(" d0005 ").run()                # spaces around a pasted id
    assert len(at.warning) == 1 and not at.button(key="search").disabled        # only the previous results' one


def test_a_link_to_an_image_of_a_large_gallery_searches_it(far, monkeypatch):
    monkeypatch.setattr(core, "PICKER_MAX_IDS", len(IDS) - 1)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.query_params.update(gallery=far, embedding=DEFAULT_CONFIG.key(), image="d0012", rerank="none")
    at.run()
    assert not at.exception and at.text_input(key="gallery_image").value == "d0012"
    assert result_ids(at)[0] == "d0012"
    at.button(key="again-3").click().run()                                    # "search with this result"
    assert at.text_input(key="gallery_image").value == result_ids(at)[0]


def test_a_stored_query_is_not_re_ranked_by_a_method_that_reads_its_pixels(far):
    at = gallery_page(far)
    at.sidebar.selectbox(key="rerank").set_value("blcf").run()
    at.button(key="search").click().run()
    assert not at.exception and result_ids(at)[0] == "d0000"
    assert "which a stored descriptor does not have" in " ".join(m.value for m in at.markdown)


def test_the_engine_searches_a_stored_descriptor_without_embedding(far):
    from core.cache.galleries import load_gallery
    from core.rerank import create_reranker
    from core.search.engine import SearchEngine

    engine = SearchEngine(load_gallery(far), DEFAULT_CONFIG, embedder=object())          # never called
    results = engine.search_stored("d0021", k=5)
    assert [r.image_id for r in results.items][:1] == ["d0021"] and len(results.items) == 5
    assert results.items[0].score == pytest.approx(1.0, abs=1e-5) and results.times.embed_ms == 0
    np.testing.assert_allclose(results.query_vector, engine.embeddings.vectors[21])
    local = engine.search_stored("d0021", k=5, reranker=create_reranker("local"))
    assert local.reranker is None and "reads the query's pixels" in local.rerank_note
    with pytest.raises(KeyError, match="no image 'nope'"):
        engine.search_stored("nope")

