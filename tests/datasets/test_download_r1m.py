"""``data fetch revisitop1m``: the distractor images' archives (``jpg/revisitop1m.N.tar.gz``)
fetched from a local server, a subset by ``--parts``, resumed after a cut transfer, each
unpacked into ``revisitop1m/jpg`` and then deleted, never fetched again once unpacked."""
from __future__ import annotations

import pytest
from conftest import PARIS, require_shared
from download_server import local_server, tgz

from core.cli import main
from core.datasets.download import DOWNLOADS, R1M_PARTS, parse_parts, resources_of


def test_parts_are_parsed_and_checked():
    assert parse_parts("1-3,7") == (1, 2, 3, 7) and parse_parts("5") == (5,)
    assert len(resources_of("revisitop1m")) == 1 + R1M_PARTS
    assert [r.path for r in resources_of("revisitop1m", parts=(2,))] == ["revisitop1m.txt", "jpg/revisitop1m.2.tar.gz"]
    for bad in ("0-3", "99-101", "a-b", "4-2"):
        with pytest.raises(ValueError, match="--parts"):
            parse_parts(bad)
    with pytest.raises(ValueError, match="revisitop1m only"):
        resources_of("oxford5k", parts=(1,))


def test_fetch_parts_resumes_unpacks_deletes_and_skips_what_is_done(tmp_path, capsys):
    require_shared()
    jpgs = sorted((PARIS / "jpg").glob("*.jpg"))[:6]
    with local_server() as (state, url):
        state.files["revisitop1m.txt"] = b"".join(f"{p.name}\n".encode() for p in jpgs)
        for part in (1, 2, 3):                        # two images per archive, nested as revisitop's are
            state.files[f"jpg/revisitop1m.{part}.tar.gz"] = tgz(
                {f"jpg/{p.name[:2]}/{p.name}": p.read_bytes() for p in jpgs[2 * part - 2:2 * part]})
        state.cut_once.add("jpg/revisitop1m.2.tar.gz")
        fetch = ["data", "fetch", "revisitop1m", "--dir", str(tmp_path), "--base-url", url, "--quiet"]

        assert main([*fetch, "--parts", "1-2"]) == 2                 # archive 2 cut half-way
        assert "interrupted" in capsys.readouterr().err
        assert main([*fetch, "--parts", "1-2"]) == 0                 # resumed
        ranges = [r for path, r in state.requests if path == "jpg/revisitop1m.2.tar.gz"]
        assert ranges[0] is None and ranges[-1].startswith("bytes=")
        images = tmp_path / "revisitop1m" / "jpg"
        assert sorted(p.name for p in images.iterdir()) == sorted(p.name for p in jpgs[:4])
        assert not list((tmp_path / DOWNLOADS).glob("revisitop1m.*.tar.gz"))    # deleted once unpacked

        before = len(state.requests)
        assert main([*fetch, "--parts", "1-3"]) == 0
        fetched = [path for path, _ in state.requests[before:]]
        assert fetched == ["jpg/revisitop1m.3.tar.gz"]           # 1 and 2 (and the kept list) are not fetched again
        assert sorted(p.name for p in images.iterdir()) == sorted(p.name for p in jpgs)
        out = capsys.readouterr().out
        assert "revisitop1m.1.tar.gz: already extracted" in out
        assert f"python -m core index --folder {images} --name r1m" in out
