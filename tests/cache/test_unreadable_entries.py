"""Folders that block, loop or fail: FIFOs, devices, dangling links, EACCES/EIO are skipped and the rest indexed. (Issue 16, hostile input: each test failed on the code before its fix.)"""
from __future__ import annotations

import errno
import os
import shutil
import socket
from itertools import takewhile

import pytest
from conftest import REPO, SMALL, SMALL_FLAGS, copy_paris_images, paris_images, run_core

from core.cache.descriptors import load_embeddings
from core.cache.galleries import register_gallery
from core.cli import main

CFG, FLAGS, cli = SMALL, SMALL_FLAGS, run_core
QUIET = dict(progress=False, log=lambda m: None)


def test_a_fifo_and_a_link_to_dev_zero_never_block_index(artifacts, tmp_path):
    folder = copy_paris_images(tmp_path / "g", 3)
    os.mkfifo(folder / "fifo.jpg")                                          # open() would wait for a writer forever
    (folder / "zero.jpg").symlink_to("/dev/zero")                           # reading would never end
    done = cli("index", "--folder", str(folder), "--name", "g", "--n-trees", "2", *FLAGS, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "fifo.jpg: a FIFO, not a regular file" in done.stdout
    assert "zero.jpg: a character device, not a regular file" in done.stdout
    assert len(load_embeddings("g", CFG).ids) == 3


def _dangling(folder):
    (folder / "gone.jpg").symlink_to(folder / "nowhere.jpg")
    return {"gone.jpg": "dangling symbolic link"}


def _loop(folder):
    (folder / "loop1.jpg").symlink_to(folder / "loop2.jpg")
    (folder / "loop2.jpg").symlink_to(folder / "loop1.jpg")
    return {"loop1.jpg": "symbolic link loop", "loop2.jpg": "symbolic link loop"}


def _socket(folder):
    (folder / "sub.jpg").mkdir()                                           # a folder named like an image: not a file
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "sock.jpg"))
    sock.close()
    return {"sock.jpg": "a socket"}


def _latin1(folder):
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.jpg"), "wb") as fh:   # Latin-1, not UTF-8
        fh.write(paris_images(1)[0].read_bytes())
    return {"caf\\xe9.jpg": "not valid UTF-8"}


@pytest.mark.parametrize("make", [_dangling, _loop, _socket, _latin1], ids=["dangling", "loop", "socket", "latin1"])
def test_entries_that_cannot_be_read_are_skipped_and_the_rest_indexed(artifacts, tmp_path, make):
    folder = copy_paris_images(tmp_path / "hostile", 4)
    shutil.copy(paris_images(5)[-1], folder / "new\nline.jpg")                # odd, but a photo: indexed
    skipped = make(folder)
    done = cli("index", "--folder", str(folder), "--name", "hostile", "--n-trees", "2", *FLAGS)
    assert done.returncode == 0, done.stderr
    listing = list(takewhile(lambda line: line.startswith("  "), done.stdout.split("files skipped:\n")[1].splitlines()))
    assert len(listing) == len(skipped), done.stdout
    for name, reason in skipped.items():
        assert any(line.strip().startswith(f"{name}:") and reason in line for line in listing), (name, done.stdout)
    assert "Annoy cosine: built in" in done.stdout and "n_trees 2" in done.stdout
    emb = load_embeddings("hostile", CFG)
    assert len(emb.ids) == 5 and "new\nline.jpg" in emb.ids
    assert sorted(p.name for p in emb.directory.glob("annoy-*")) == ["annoy-angular-2.ann", "annoy-angular-2.json"]
    listed = cli("galleries")
    assert listed.returncode == 0 and "hostile: " in listed.stdout and "5 images" in listed.stdout, listed.stderr


def test_a_folder_of_nothing_but_unusable_files_indexes_to_an_empty_gallery(artifacts, tmp_path, capsys):
    folder = tmp_path / "g"
    folder.mkdir()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.png").write_text("not an image")
    os.mkfifo(folder / "fifo.jpg")
    assert main(["index", "--folder", str(folder), "--name", "g", *FLAGS]) == 0
    out = capsys.readouterr().out
    assert "g: 0 images embedded" in out and "3 files skipped" in out
    emb = load_embeddings("g", CFG)
    assert emb.ids == [] and sorted(emb.failures) == ["empty.jpg", "fifo.jpg", "text.png"]


def test_files_failing_with_eacces_or_eio_are_skipped_and_the_rest_indexed(artifacts, tmp_path, monkeypatch, capsys):
    folder = copy_paris_images(tmp_path / "g", 4)
    denied, broken = sorted(os.listdir(folder))[:2]
    failing = {os.fsencode(folder / denied): errno.EACCES, os.fsencode(folder / broken): errno.EIO}
    real_os_open, real_open = os.open, open

    def check(path):
        code = failing.get(os.fsencode(os.fspath(path))) if isinstance(path, (str, bytes, os.PathLike)) else None
        if code:
            raise OSError(code, os.strerror(code), os.fspath(path))

    monkeypatch.setattr(os, "open", lambda path, *a, **k: check(path) or real_os_open(path, *a, **k))
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: check(path) or real_open(path, *a, **k))
    assert main(["index", "--folder", str(folder), "--name", "g", "--n-trees", "2", *FLAGS]) == 0
    out = capsys.readouterr().out
    assert f"{denied}: cannot read" in out and "Permission denied" in out
    assert f"{broken}: cannot read" in out and "Input/output error" in out
    assert "Annoy cosine: built in" in out and "n_trees 2" in out
    assert len(load_embeddings("g", CFG).ids) == 2


def test_galleries_page_lists_a_folder_with_a_dangling_link(artifacts, tmp_path):
    from streamlit.testing.v1 import AppTest

    folder = copy_paris_images(tmp_path / "g", 3)
    (folder / "gone.jpg").symlink_to(folder / "nowhere.jpg")
    register_gallery("g", folder)
    at = AppTest.from_file(str(REPO / "pages" / "galleries.py"), default_timeout=120).run()
    assert not at.exception
    assert any("3 images" in c.value for c in at.caption)
