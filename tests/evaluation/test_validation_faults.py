"""Issue 21, items 7 and 8: two ``validate`` runs at once write folders of their own (one
``validation.json`` never overwrites the other), and ``validate --data WRONG`` registers no
gallery before it fails, so the next ``validate`` with the right folder is not refused."""
from __future__ import annotations

import time

import pytest
from conftest import PARIS, SHARED_DATA

from core.cache.galleries import GalleryError, list_galleries, load_gallery
from core.cli import main
from core.evaluation.validation import SetScore, Validation, load_validation, validation_sets, write_validation


def a_validation(label: str, value: float) -> Validation:
    score = SetScore("paris-whole", True, value, 10, 20, 0.0, 0.0, None, f"run-{label}")
    return Validation(label, {}, {"method": "exact", "metric": "cosine"}, {}, [score])


def test_validations_written_in_the_same_second_under_one_label_keep_their_own_folders(artifacts, monkeypatch):
    monkeypatch.setattr(time, "strftime", lambda fmt, *args: "20260101-000000")     # the same instant
    first = write_validation([a_validation("x", 0.5)], "x")
    second = write_validation([a_validation("x", 0.7)], "x")
    assert first != second
    assert [r["scores"][0]["map"] for r in load_validation(first)] == [0.5]
    assert [r["scores"][0]["map"] for r in load_validation(second)] == [0.7]
    assert sorted(p.name for p in first.iterdir()) == ["table.md", "validation.json"]
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")]        # no half-written folder left


@pytest.fixture
def wrong_data(tmp_path):
    """A data folder with a Paris6k layout (10 real images, the real ground truth) and no corel1k."""
    paris = tmp_path / "wrong" / "paris6k"
    (paris / "jpg").mkdir(parents=True)
    for p in sorted((PARIS / "jpg").glob("*.jpg"))[:10]:
        (paris / "jpg" / p.name).symlink_to(p)
    (paris / "gt").symlink_to(PARIS / "gt")
    return tmp_path / "wrong"


def test_validation_sets_of_a_wrong_data_folder_register_nothing(artifacts, wrong_data):
    with pytest.raises(GalleryError, match="corel1k"):
        validation_sets(wrong_data, ("paris-whole", "corel1k"))
    assert list_galleries() == []
    sets = validation_sets(SHARED_DATA, ("paris-whole", "corel1k"))           # the right folder is not refused
    assert [s.name for s in sets] == ["paris-whole", "corel1k"]
    assert load_gallery("paris6k").root == (PARIS / "jpg").resolve()


def test_validate_with_a_wrong_data_folder_is_one_line_and_registers_nothing(artifacts, wrong_data, capsys):
    assert main(["validate", "--data", str(wrong_data), "--sets", "paris-whole", "corel1k", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "corel1k" in err
    assert list_galleries() == []
