"""Issue 21, item 9 (calibration part): a calibration folder whose images cannot be read is
refused in one line naming the folder, before the network is converted, and nothing is cached as
a calibrated model."""
from __future__ import annotations

import pytest

from core.cli import main


@pytest.fixture
def unreadable(tmp_path):
    """Files named like images with no image in them: a truncated JPEG header, text, nothing."""
    folder = tmp_path / "calibration"
    folder.mkdir()
    (folder / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF")
    (folder / "text.png").write_text("not a picture")
    (folder / "empty.jpg").write_bytes(b"")
    return folder


def test_a_calibration_folder_with_no_readable_image_is_one_line(artifacts, unreadable, capsys, tmp_path,
                                                                 monkeypatch):
    cached = tmp_path / "model-cache"
    monkeypatch.setenv("CBIR_MODEL_CACHE", str(cached))
    code = main(["quantize", "--precision", "int8", "--calibration", str(unreadable), "--scales", "1.0",
                 "--max-size", "64", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "none of the 3 calibration images" in err and str(unreadable) in err
    assert not cached.exists() or not list(cached.glob("*int8*.xml"))        # no calibrated model cached
