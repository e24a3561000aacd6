"""Only JPEG/PNG/WebP/BMP/GIF/TIFF reach Pillow; every image opens through core.images. (Issue 16, hostile input: each test failed on the code before its fix.)"""
from __future__ import annotations

import pytest
from conftest import REPO, SMALL, SMALL_FLAGS, paris_images, run_core
from PIL import EpsImagePlugin, Image

from core.app.preview import check_upload
from core.images import ImageError, image_size, load_image

CFG, FLAGS, cli = SMALL, SMALL_FLAGS, run_core
QUIET = dict(progress=False, log=lambda m: None)


EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
       b"0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n")


def test_content_that_only_claims_to_be_a_jpeg_never_reaches_ghostscript(tmp_path, monkeypatch):
    calls = []

    def ghostscript(*args, **kwargs):
        calls.append(args)
        raise OSError("Ghostscript would have run here")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", ghostscript)
    (tmp_path / "x.jpg").write_bytes(EPS)
    with pytest.raises(ImageError, match="not an image in one of the formats"):
        load_image(tmp_path / "x.jpg")
    with pytest.raises(ImageError, match="not an image in one of the formats"):
        image_size(tmp_path / "x.jpg")
    with pytest.raises(ImageError, match="not an image in one of the formats"):
        check_upload("x.jpg", EPS, 20)
    assert calls == []


def test_multi_picture_jpegs_of_phone_cameras_still_open(tmp_path):
    with Image.open(paris_images(1)[0]) as img:
        first = img.convert("RGB")
    first.save(tmp_path / "phone.jpg", "MPO", save_all=True, append_images=[first.rotate(180)])
    assert Image.open(tmp_path / "phone.jpg").format == "MPO"
    assert load_image(tmp_path / "phone.jpg", 64).size == (64, 48)


def test_every_image_is_opened_through_core_images():
    sources = [*(REPO / "core").rglob("*.py"), *(REPO / "pages").rglob("*.py"), REPO / "app.py",
               *(REPO / "benchmarks").rglob("*.py")]
    offenders = [f"{p.relative_to(REPO)}:{n}" for p in sources if p != REPO / "core" / "images.py"
                 for n, line in enumerate(p.read_text().splitlines(), 1) if "Image.open(" in line]
    assert offenders == []
