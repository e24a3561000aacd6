"""Issue 21, item 13: ``data split`` refuses, in one line and before writing anything, folder
names that would merge the queries into the gallery (``same same``), put one inside the other
(``'' q``, ``a a/b``) or write outside ``--out`` (``../../x q``), an ``--out`` inside ``--root``
(after which ``evaluate`` refuses the input folder), and a count of images that is not positive."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.cli import main
from core.datasets.classes import split_class_folder


@pytest.fixture
def classes(tmp_path) -> Path:
    """Two classes of three tiny PNG files: the split only links them."""
    from PIL import Image

    root = tmp_path / "classes"
    for cls in ("cats", "dogs"):
        (root / cls).mkdir(parents=True)
        for n in range(3):
            Image.new("RGB", (8, 8), (n * 40, 0, 0)).save(root / cls / f"{cls}{n}.png")
    return root


def written(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


@pytest.mark.parametrize("names, reason", [
    (("same", "same"), "differ"),
    (("", "q"), "folder name"),
    (("a", "a/b"), "folder name"),
    (("../../x", "q"), "folder name"),
    ((".", "q"), "folder name"),
    (("g", ".."), "folder name"),
])
def test_folder_names_that_merge_nest_or_escape_are_refused(classes, tmp_path, names, reason):
    out = tmp_path / "out" / "deeper"
    with pytest.raises(ValueError, match=reason):
        split_class_folder(classes, out, 2, names=names)
    assert written(tmp_path / "out") == [] and written(tmp_path) == sorted(
        ["classes", *[f"classes/{c}" for c in ("cats", "dogs")],
         *[f"classes/{c}/{c}{n}.png" for c in ("cats", "dogs") for n in range(3)]])


@pytest.mark.parametrize("inside", [".", "split", "cats/split"])
def test_an_out_folder_inside_the_root_is_refused(classes, inside):
    with pytest.raises(ValueError, match="inside --root"):
        split_class_folder(classes, classes / inside, 2)
    assert written(classes) == sorted([*[c for c in ("cats", "dogs")],
                                       *[f"{c}/{c}{n}.png" for c in ("cats", "dogs") for n in range(3)]])


@pytest.mark.parametrize("per_class", [0, -3])
def test_a_count_that_is_not_positive_is_refused(classes, tmp_path, per_class):
    with pytest.raises(ValueError, match="at least 1"):
        split_class_folder(classes, tmp_path / "out", per_class)
    assert not (tmp_path / "out").exists()


def test_the_cli_says_so_in_one_line(classes, tmp_path, capsys):
    assert main(["data", "split", "--root", str(classes), "--out", str(tmp_path / "out"), "--per-class", "2",
                 "--names", "../../x", "q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--names" in err


def test_good_names_still_split(classes, tmp_path):
    counts = split_class_folder(classes, tmp_path / "out", 2, names=("train", "test"))
    assert counts == {"train": {"cats": 2, "dogs": 2}, "test": {"cats": 1, "dogs": 1}}
    assert len(written(tmp_path / "out" / "train")) == 2 + 4 and len(written(tmp_path / "out" / "test")) == 2 + 2
