"""The downloader, run for real against an HTTP server on 127.0.0.1 that serves archives built
here from the real files in ../shared/data: layout after unpacking, resume of an interrupted
transfer by HTTP Range, a corrupt archive, checksums, unsafe archives, the offline message."""
from __future__ import annotations

import errno
import io
import os
import pickle
import socket
import tarfile
import threading
import zipfile
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import PARIS, require_shared
from download_server import Served, _handler, serve_oxford, tgz

from core.cli import main
from core.datasets import download as dl
from core.datasets import load_ground_truth
from core.datasets.revisited import load_gnd
from core.files import file_digest


@pytest.fixture
def server():
    state = Served()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_fetch_oxford5k_unpacks_the_layout_evaluate_reads(server, tmp_path):
    state, url = server
    serve_oxford(state)
    report = dl.fetch("oxford5k", tmp_path, base_url=url, progress=False, log=lambda m: None)
    folder = tmp_path / "oxford5k"
    assert report.folder == folder
    assert sorted(p.name for p in (folder / "jpg").glob("*.jpg")) == ["all_souls_000013.jpg", "all_souls_000055.jpg"]
    assert len(list((folder / "gt").glob("*.txt"))) == 220
    assert len(load_ground_truth("oxford5k", folder / "gt").queries) == 55
    n_requests = len(state.requests)
    again = dl.fetch("oxford5k", tmp_path, base_url=url, progress=False, log=lambda m: None)
    assert len(state.requests) == n_requests                          # archives kept: nothing fetched again
    assert all("already extracted" in line for line in again.files)


def test_interrupted_transfer_resumes_with_a_range_request(server, tmp_path):
    state, url = server
    serve_oxford(state)
    state.cut_once.add("oxbuild_images-v1.tgz")
    size = len(state.files["oxbuild_images-v1.tgz"])
    with pytest.raises(dl.DownloadError, match="run the same command again to resume"):
        dl.fetch("oxford5k", tmp_path, base_url=url, progress=False, log=lambda m: None)
    part = tmp_path / dl.DOWNLOADS / "oxbuild_images-v1.tgz.part"
    assert part.stat().st_size == size // 2
    assert not (tmp_path / "oxford5k" / "jpg").exists()
    dl.fetch("oxford5k", tmp_path, base_url=url, progress=False, log=lambda m: None)
    assert ("oxbuild_images-v1.tgz", f"bytes={size // 2}-") in state.requests
    assert (tmp_path / dl.DOWNLOADS / "oxbuild_images-v1.tgz").read_bytes() == state.files["oxbuild_images-v1.tgz"]
    assert not part.exists()
    assert len(list((tmp_path / "oxford5k" / "jpg").glob("*.jpg"))) == 2


def test_corrupt_archive_is_deleted_and_fetched_afresh(server, tmp_path):
    state, url = server
    serve_oxford(state)
    good = state.files["gt_files_170407.tgz"]
    state.files["gt_files_170407.tgz"] = good[: len(good) // 3]       # a complete transfer of a broken file
    with pytest.raises(dl.DownloadError, match="corrupt or truncated.*deleted it"):
        dl.fetch("oxford5k", tmp_path, base_url=url, progress=False, log=lambda m: None)
    assert not (tmp_path / dl.DOWNLOADS / "gt_files_170407.tgz").exists()
    assert not list((tmp_path / "oxford5k").glob("gt/*.txt"))
    state.files["gt_files_170407.tgz"] = good
    dl.fetch("oxford5k", tmp_path, base_url=url, progress=False, log=lambda m: None)
    assert len(list((tmp_path / "oxford5k" / "gt").glob("*.txt"))) == 220


def test_a_full_disk_while_unpacking_keeps_the_good_archive_and_says_so(server, tmp_path, monkeypatch, capsys):
    state, url = server
    serve_oxford(state)
    real_copy = dl.shutil.copyfileobj

    def disk_full(src, dst, length=0):
        dst.write(src.read(1000))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(dl.shutil, "copyfileobj", disk_full)
    assert main(["data", "fetch", "oxford5k", "--dir", str(tmp_path), "--base-url", url, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "is kept" in err and err.count("\n") == 1
    archives = tmp_path / dl.DOWNLOADS
    assert (archives / "oxbuild_images-v1.tgz").stat().st_size == len(state.files["oxbuild_images-v1.tgz"])
    assert not list(tmp_path.rglob(".extract-*"))                        # the partial extraction is cleaned up
    n_requests = len(state.requests)
    monkeypatch.setattr(dl.shutil, "copyfileobj", real_copy)             # space freed
    assert main(["data", "fetch", "oxford5k", "--dir", str(tmp_path), "--base-url", url, "--quiet"]) == 0
    assert [p for p, _ in state.requests[n_requests:]] == ["gt_files_170407.tgz"]   # the kept archive is not fetched again
    assert len(list((tmp_path / "oxford5k" / "jpg").glob("*.jpg"))) == 2


def test_an_archive_that_does_not_fit_on_the_disk_is_kept_and_not_unpacked(server, tmp_path, monkeypatch):
    state, url = server
    serve_oxford(state)
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda path: dl.shutil._ntuple_diskusage(10 ** 9, 10 ** 9, 1000))
    with pytest.raises(dl.DownloadError, match="only 0.0 MB are free; nothing was deleted"):
        dl.fetch("oxford5k", tmp_path, base_url=url, progress=False, log=lambda m: None)
    assert (tmp_path / dl.DOWNLOADS / "oxbuild_images-v1.tgz").exists() and not (tmp_path / "oxford5k" / "jpg").exists()


def test_checksum_is_verified(server, tmp_path):
    state, url = server
    data = (PARIS / "gnd_rparis6k.mat").read_bytes()
    state.files["gnd.mat"] = data
    with pytest.raises(dl.ChecksumError, match="deleted"):
        dl.download(f"{url}/gnd.mat", tmp_path / "gnd.mat", sha256="0" * 64, progress=False)
    assert not (tmp_path / "gnd.mat").exists() and not (tmp_path / "gnd.mat.part").exists()
    digest = file_digest(PARIS / "gnd_rparis6k.mat")
    assert dl.download(f"{url}/gnd.mat", tmp_path / "gnd.mat", sha256=digest, progress=False).read_bytes() == data


def _tar_with(info: tarfile.TarInfo, data: bytes = b"") -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        ok = tarfile.TarInfo("fine.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        info.size = len(data) if info.isreg() else 0
        tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


@pytest.mark.parametrize("member", [
    _member("../escape.txt"), _member("/tmp/absolute.txt"), _member("a/../../escape.txt"),
    _member("link", tarfile.SYMTYPE, "/etc/passwd"), _member("hard", tarfile.LNKTYPE, "fine.txt"),
    _member("dev", tarfile.CHRTYPE), _member("fifo", tarfile.FIFOTYPE),
], ids=["dotdot", "absolute", "nested-dotdot", "symlink", "hardlink", "device", "fifo"])
def test_unsafe_tar_members_refuse_the_whole_archive(tmp_path, member):
    archive = tmp_path / "bad.tgz"
    archive.write_bytes(_tar_with(member, b"evil"))
    target = tmp_path / "out" / "jpg"
    with pytest.raises(dl.UnsafeArchive, match="refused the whole archive"):
        dl.extract(archive, target)
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["bad.tgz", "out"]


def test_unsafe_zip_members_are_refused(tmp_path):
    escape = tmp_path / "escape.zip"
    with zipfile.ZipFile(escape, "w") as zf:
        zf.writestr("../../escape.txt", b"evil")
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    for archive in (escape, link):
        with pytest.raises(dl.UnsafeArchive):
            dl.extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_real_paris_zip_is_flattened(tmp_path):
    require_shared()
    n = dl.extract(PARIS / "paris_120310.zip", tmp_path / "gt")
    assert n == 220
    assert len(load_ground_truth("paris6k", tmp_path / "gt").queries) == 55


def test_offline_host_gives_a_clear_message(tmp_path):
    with socket.socket() as s:                    # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(dl.OfflineError, match="offline.*put it at .*_downloads"):
        dl.fetch("oxford5k", tmp_path, base_url=f"http://127.0.0.1:{port}", progress=False, log=lambda m: None)


def revisitop_pickle(mat: Path) -> bytes:
    """A ``gnd_r*.pkl`` in revisitop's layout (0-based numpy index arrays), made from the real .mat."""
    g = load_gnd(mat)
    gnd = [{"easy": np.array(e), "hard": np.array(h), "junk": np.array(j), "bbx": np.array(b)}
           for e, h, j, b in zip(g.easy, g.hard, g.junk, g.bbx)]
    return pickle.dumps({"imlist": g.imlist, "qimlist": g.qimlist, "gnd": gnd}, protocol=4)


def test_fetch_rparis6k_with_r1m_list_and_cli(server, tmp_path, capsys):
    require_shared()
    state, url = server
    jpgs = sorted((PARIS / "jpg").glob("*.jpg"))[:6]
    state.files["rparis6k/gnd_rparis6k.pkl"] = revisitop_pickle(PARIS / "gnd_rparis6k.mat")
    state.files["paris_1-v1.tgz"] = tgz({f"paris/{p.name.split('_')[1]}/{p.name}": p.read_bytes() for p in jpgs[:3]})
    state.files["paris_2-v1.tgz"] = tgz({f"paris/{p.name.split('_')[1]}/{p.name}": p.read_bytes() for p in jpgs[3:]})
    state.files["revisitop1m.txt"] = b"".join(f"{p.stem}\n".encode() for p in jpgs)
    code = main(["data", "fetch", "rparis6k", "--dir", str(tmp_path), "--base-url", url, "--with-r1m", "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert f"--dataset rparis6k --root {tmp_path / 'rparis6k'}" in out
    folder = tmp_path / "rparis6k"
    assert sorted(p.name for p in (folder / "jpg").iterdir()) == [p.name for p in jpgs]
    assert (tmp_path / "revisitop1m" / "revisitop1m.txt").read_text().count("\n") == 6
    from_pkl = load_ground_truth("rparis6k", folder, "hard")
    from_mat = load_ground_truth("rparis6k", PARIS, "hard")
    assert from_pkl.info["source"] == "gnd_rparis6k.pkl"
    assert [(q.image, q.box, q.positives, q.junk) for q in from_pkl.queries] == \
           [(q.image, q.box, q.positives, q.junk) for q in from_mat.queries]


def test_data_list_names_the_official_hosts(capsys):
    assert main(["data", "list", "--dir", "/nonexistent"]) == 0
    out = capsys.readouterr().out
    for url in ("https://www.robots.ox.ac.uk/~vgg/data/oxbuildings/oxbuild_images-v1.tgz",
                "https://www.robots.ox.ac.uk/~vgg/data/parisbuildings/paris_120310.tgz",
                "http://cmp.felk.cvut.cz/revisitop/data/datasets/roxford5k/gnd_roxford5k.pkl",
                "http://ptak.felk.cvut.cz/revisitop/revisitop1m/revisitop1m.txt",
                "ftp://ftp.inrialpes.fr/pub/lear/douze/data/jpg1.tar.gz"):
        assert url in out
