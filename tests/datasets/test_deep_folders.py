"""Issue 21, item 11: a folder nested 1,100 levels deep (a 2.2 kB path) is scanned without
recursion; what lies deeper than the file system lets a path reach is skipped with a reason, and
the photos that can be reached (the top-level one, the deep one) are kept. The same scan serves
``index``, ``train``, ``data split`` and the app."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import paris_images

from core.images import scan_images

LEVELS = 1_100


def nest(root: Path, levels: int) -> Path:
    """``root/d/d/.../d`` (``levels`` deep), made one level at a time (``os.makedirs`` recurses)."""
    folder = str(root)
    for _ in range(levels):
        folder += "/d"
        os.mkdir(folder)
    return Path(folder)


def unnest(root: Path) -> None:
    """Remove a chain of nested ``d`` folders from the bottom up, relative to each parent
    (``shutil.rmtree`` recurses, and paths past PATH_MAX cannot be named whole)."""
    os.chdir(root)
    depth = 0
    while os.path.isdir("d"):
        os.chdir("d")
        depth += 1
    for _ in range(depth):
        for name in os.listdir("."):
            os.unlink(name)
        os.chdir("..")
        os.rmdir("d")


@pytest.fixture
def deep_root(tmp_path):
    root = tmp_path / "deep"
    root.mkdir()
    cwd = os.getcwd()
    yield root
    unnest(root)
    os.chdir(cwd)


def test_a_folder_nested_1100_deep_is_scanned_and_keeps_every_reachable_photo(deep_root):
    root = deep_root
    photo = paris_images(1)[0]
    shutil.copy(photo, root / "top.jpg")
    bottom = nest(root, LEVELS)
    shutil.copy(photo, bottom / "deep.jpg")
    assert len(str(bottom)) > 2_200
    scan = scan_images(root)
    assert list(scan.files) == ["/".join(["d"] * LEVELS + ["deep.jpg"]), "top.jpg"]
    assert scan.skipped == {}


def test_folders_beyond_the_longest_path_are_skipped_with_a_reason(deep_root):
    root = deep_root
    shutil.copy(paris_images(1)[0], root / "top.jpg")
    # past PATH_MAX (4096 bytes) a folder can be made (relative to its parent) but not listed by path
    os.chdir(root)
    for _ in range(2_100):
        os.mkdir("d")
        os.chdir("d")
    scan = scan_images(root)
    assert list(scan.files) == ["top.jpg"]
    (reason,) = scan.skipped.values()
    assert "cannot be listed" in reason and "too long" in reason.lower(), scan.skipped


def test_index_embeds_the_photos_of_a_folder_nested_1100_deep(deep_root, artifacts, capsys):
    from core.cli import main

    photo = paris_images(1)[0]
    shutil.copy(photo, deep_root / "top.jpg")
    shutil.copy(photo, nest(deep_root, LEVELS) / "deep.jpg")
    assert main(["index", "--folder", str(deep_root), "--name", "deep", "--max-size", "64", "--scales", "1.0",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "deep: 2 added" in out and "2 images embedded" in out, out
