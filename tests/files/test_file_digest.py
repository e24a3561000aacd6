"""``core.files.file_digest``: the one SHA-256 (or MD5) file helper of core/."""
from __future__ import annotations

import hashlib
import os

import pytest

from core import files
from core.files import file_digest


def test_the_digest_is_the_files_sha256_or_md5(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(3 << 20))
    assert file_digest(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert file_digest(path, "md5") == hashlib.md5(path.read_bytes()).hexdigest()


def test_a_rewrite_that_keeps_size_and_mtime_is_read_again(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"a" * 1000)
    before, st = file_digest(path), path.stat()
    path.write_bytes(b"b" * 1000)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_digest(path) == hashlib.sha256(b"b" * 1000).hexdigest() != before


def test_files_read_once_are_not_remembered(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"x")
    n = len(files._digests)
    file_digest(path, remember=False)
    assert len(files._digests) == n
    file_digest(path)
    assert len(files._digests) == n + 1


def test_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError):
        file_digest(tmp_path / "fifo")
