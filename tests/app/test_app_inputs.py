"""Issue 21, item 12: the app's inputs are checked before use. A photo deleted from disk after
indexing (the default query, or a result) is one line, not a FileNotFoundError; a linked box
outside the image, or of extreme values, is clipped or dropped with a line; an upload of a huge
pixel count is refused before it is decoded (PNG) or decoded downscaled (JPEG), so its memory is
bounded by ``MAX_UPLOAD_PIXELS``."""
from __future__ import annotations

import io
import shutil

import pytest
from conftest import REPO, paris_images
from PIL import Image, ImageFile

import core.app.preview as preview
from core.app.preview import MAX_UPLOAD_PIXELS, check_upload, fit_box, gallery_image_size, missing_thumbnail
from core.images import Box, ImageError
from core.progress import Reporter

# ------------------------------------------------------------------ linked boxes


def test_a_linked_box_outside_the_image_is_dropped_with_a_line():
    box, note = fit_box(Box(5000, 5000, 6000, 6000), (1024, 768))
    assert box is None and "outside the 1024×768 image" in note and "whole image" in note


@pytest.mark.parametrize("values", [(-1e308, -1e308, 1e308, 1e308), (-5, -5, 2000, 2000)])
def test_a_linked_box_over_the_edges_is_clipped_with_a_line(values):
    box, note = fit_box(Box(*values), (1024, 768))
    assert box == Box(0, 0, 1024, 768) and "clipped" in note


def test_a_linked_box_inside_the_image_is_kept_as_it_is():
    assert fit_box(Box(10.5, 20, 300, 400.25), (1024, 768)) == (Box(10.5, 20, 300, 400.25), None)


# ------------------------------------------------------------------ deleted photos

def test_a_deleted_gallery_photo_is_one_line_that_says_to_index_again(tmp_path):
    photo = tmp_path / "gone.jpg"
    shutil.copy(paris_images(1)[0], photo)
    assert gallery_image_size(photo) == Image.open(photo).size
    photo.unlink()
    with pytest.raises(ImageError, match=r"gone\.jpg .*index the gallery again"):
        gallery_image_size(photo)


def test_a_missing_photo_has_a_placeholder_thumbnail():
    with Image.open(io.BytesIO(missing_thumbnail(120))) as img:
        assert img.size == (120, 120) and img.format == "JPEG"


# ------------------------------------------------------------------ uploads

def png_of(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_100_megapixel_png_upload_is_refused_before_it_is_decoded(monkeypatch):
    data = png_of(10_000)                                              # 100 megapixels in a few kB
    assert len(data) < 50_000
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("the upload was decoded"))
    with pytest.raises(ImageError, match=r"^bomb\.png: 10000×10000 is 100 megapixels; .* limit"):
        check_upload("bomb.png", data, 20)


def test_a_jpeg_upload_over_the_pixel_budget_is_decoded_downscaled(monkeypatch):
    monkeypatch.setattr(preview, "MAX_UPLOAD_PIXELS", 200_000)
    photo = paris_images(1)[0]
    with Image.open(photo) as img:
        assert img.width * img.height > 200_000
        full = img.size
    img = check_upload("big.jpg", photo.read_bytes(), 20)
    assert img.width * img.height <= 200_000 and img.mode == "RGB"
    assert abs(img.width / img.height - full[0] / full[1]) < 0.02
    assert MAX_UPLOAD_PIXELS >= 12_000_000                              # an ordinary camera photo is untouched


def test_uploads_within_the_budget_are_decoded_at_full_size():
    photo = paris_images(1)[0]
    with Image.open(photo) as img:
        full = img.size
    assert check_upload("photo.jpg", photo.read_bytes(), 20).size == full


# ------------------------------------------------------------------ the page

@pytest.fixture
def small_gallery(artifacts, tmp_path):
    """4 Paris photos indexed at 128 px; the search page opens on the first one."""
    from core.cache.descriptors import build_embeddings
    from core.cache.galleries import register_gallery
    from core.config import EmbeddingConfig

    folder = tmp_path / "photos"
    folder.mkdir()
    for p in paris_images(4, step=50):
        shutil.copy(p, folder / p.name)
    gallery = register_gallery("small", folder)
    build_embeddings(gallery, EmbeddingConfig(max_size=128, scales=(1.0,)), reporter=Reporter.quiet())
    return folder


def search_page():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(REPO / "pages" / "search.py"), default_timeout=300)


def test_the_search_page_survives_deleted_photos_and_hostile_boxes(small_gallery):
    at = search_page().run()
    assert not at.exception, at.exception
    at.button(key="search").click().run()
    assert not at.exception and len(at.text) == 4
    shown = [t.value for t in at.text]
    (small_gallery / shown[-1]).unlink()                               # a result deleted before re-indexing
    at.run()
    assert not at.exception, at.exception
    (small_gallery / sorted(shown)[0]).unlink()                        # the default query deleted too
    at = search_page().run()
    assert not at.exception, at.exception
    assert any("index the gallery again" in e.value for e in at.error)

    kept = sorted(shown)[1]
    for box, words in (("5000,5000,6000,6000", "outside"), ("-1e308,-1e308,1e308,1e308", "clipped")):
        at = search_page()
        at.query_params.update(gallery="small", image=kept, box=box)
        at.run()
        assert not at.exception, (box, at.exception)
        assert any(words in w.value for w in at.warning), (box, [w.value for w in at.warning])
