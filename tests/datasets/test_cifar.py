"""CIFAR-10 for users: the catalogue entry (official host, md5 enforced) and the export of its
python pickle batches to class folders, tested on small batches written here in the CIFAR
format (the real archive cannot be downloaded on these machines), and the restricted unpickler."""
from __future__ import annotations

import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image
from test_download import server  # noqa: F401 (the local HTTP server fixture)

from core.cli import main
from core.datasets import download as dl
from core.datasets.exporters import CIFAR10_CLASSES, export_cifar10, read_cifar_batch
from core.datasets.safepickle import UnsafePickle


def _batch(n: int, seed: int) -> tuple[bytes, np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [i % 10 for i in range(n)]
    blob = pickle.dumps({b"batch_label": b"testing batch 1 of 1", b"labels": labels, b"data": data,
                         b"filenames": [f"img{i}.png".encode() for i in range(n)]}, protocol=2)
    return blob, data, labels


def test_batch_reads_as_images_and_exports_to_class_folders(tmp_path, capsys):
    blob, data, labels = _batch(25, 0)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "test_batch").write_bytes(blob)
    images, got = read_cifar_batch(tmp_path / "b" / "test_batch")
    assert images.shape == (25, 32, 32, 3) and got.tolist() == labels
    # the red plane comes first, row by row: pixel (row 0, column 1) is data[1], (1, 0) is data[32]
    assert images[3, 0, 1, 0] == data[3, 1] and images[3, 1, 0, 0] == data[3, 32] and images[3, 0, 0, 2] == data[3, 2048]
    counts = export_cifar10(tmp_path / "out", tmp_path / "b", "test", per_class=2, size=32)
    assert counts == dict.fromkeys(CIFAR10_CLASSES, 2)
    png = np.asarray(Image.open(tmp_path / "out" / CIFAR10_CLASSES[3] / "test-00003.png"))
    assert np.array_equal(png, images[3])
    mtime = (tmp_path / "out" / "cat" / "test-00003.png").stat().st_mtime_ns
    assert main(["data", "export-cifar10", "--source", str(tmp_path / "b"), "--out", str(tmp_path / "out"),
                 "--per-class", "3", "--size", "32"]) == 0
    assert (tmp_path / "out" / "cat" / "test-00003.png").stat().st_mtime_ns == mtime     # unchanged: not rewritten
    # 25 labels cycling over 10 classes: 3 images in each of the first five classes, 2 in the others
    assert len(list((tmp_path / "out" / "cat").glob("*.png"))) == 3 and "25 CIFAR-10 test images" in capsys.readouterr().out


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            import os
            return os.system, ("echo owned",)

    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(UnsafePickle, match="system"):
        read_cifar_batch(path)
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, protocol=2))
    with pytest.raises(ValueError, match="not a CIFAR-10 batch"):
        read_cifar_batch(path)
    with pytest.raises(FileNotFoundError, match="data fetch cifar10"):
        export_cifar10(tmp_path / "out", tmp_path / "nowhere")


def test_catalogue_fetches_from_the_official_host_and_checks_the_md5(server, tmp_path):  # noqa: F811
    (res,) = dl.resources_of("cifar10")
    assert res.url() == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert res.md5 == "c58f30108f718f92721af3b95e74349a"       # torchvision's CIFAR10.tgz_md5
    state, url = server
    blob, _, _ = _batch(10, 1)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    state.files["cifar-10-python.tar.gz"] = buf.getvalue()
    with pytest.raises(dl.ChecksumError, match="md5"):          # not the published archive
        dl.fetch("cifar10", tmp_path, base_url=url, progress=False, log=lambda m: None)
    digest = hashlib.md5(buf.getvalue(), usedforsecurity=False).hexdigest()
    path = dl.download(f"{url}/cifar-10-python.tar.gz", tmp_path / "c.tgz", progress=False, md5=digest)
    assert path.read_bytes() == buf.getvalue()
