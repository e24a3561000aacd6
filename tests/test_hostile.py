"""Hostile input (issue 16): one test per defect an outside attack found, each failing on the code
before the fix. Files that block or never end, entries that cannot be read, names with newlines
or invalid UTF-8 or Markdown, malformed ground truth, damaged indexes, pickles that ask for
terabytes, content that only claims to be a JPEG, runs started at the same instant, rewrites
that keep size and mtime, the umask. Small real galleries (shared Paris images) at 64 pixels."""
from __future__ import annotations

import errno
import html
import os
import pickle
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import takewhile

import numpy as np
import pandas as pd
import pytest
import scipy.io
from conftest import PARIS, REPO, copy_paris_images, paris_images, write_legacy_cache
from download_server import tgz
from markdown_it import MarkdownIt
from PIL import EpsImagePlugin, Image

import core.evaluation.runs as runs
from core.app.preview import check_upload
from core.cache.descriptors import CacheError, Embeddings, build_embeddings, cache_dir, load_embeddings
from core.cache.galleries import duplicate_groups, register_gallery
from core.cache.store import MANIFEST
from core.cli import build_parser, config_from_args, main
from core.config import DEFAULT_CONFIG, PLAIN_GEM, EmbeddingConfig
from core.datasets import GroundTruthError, load_oxford_paris
from core.datasets.classes import load_class_folders
from core.datasets.revisited import UnsafePickle, load_gnd, revisited_ground_truth
from core.embed.embedder import Embedder
from core.evaluation.pipeline import RunOptions, evaluate
from core.evaluation.runs import load_run, new_run_id, write_run
from core.files import write_json, write_npz
from core.images import ImageError, image_size, load_image
from core.index import IndexMismatch
from core.index.annoy import AnnoyIndex, AnnoyParams
from core.progress import Reporter

CFG = EmbeddingConfig(max_size=64, scales=(1.0,))
FLAGS = ["--max-size", "64", "--scales", "1.0", "--quiet"]
QUIET = dict(progress=False, log=lambda m: None)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(CFG)


def cli(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m core`` in a child process: a hang or a segfault there fails the test, not the suite."""
    try:
        return subprocess.run([sys.executable, "-m", "core", *argv], cwd=REPO, capture_output=True,
                              encoding="utf-8", errors="replace", env=dict(os.environ, PYTHONPATH=str(REPO)),
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"python -m core {' '.join(argv)} still running after {timeout} s (it hangs)")


# ---------------------------------------------------------------- the rebuild command

@pytest.mark.parametrize("config", [
    DEFAULT_CONFIG, PLAIN_GEM, EmbeddingConfig(pooling="gem", gem_p=2.718281828, scales=(1.0, 2 ** -0.5, 0.5, 1 / 3)),
    EmbeddingConfig(weights="/tmp/my weights/it's.pth", whitening="other-gallery", whiten_dim=64, max_size=300),
    EmbeddingConfig(whitening="gallery", pooling="mac")], ids=lambda c: c.label())
def test_printed_rebuild_flags_parse_back_to_the_same_config(config):
    args = build_parser().parse_args(["index", "--name", "g", *shlex.split(config.cli_flags())])
    assert config_from_args(args) == config and config_from_args(args).key() == config.key()


def _command_in(message: str) -> list[str]:
    return shlex.split(message.split("python -m core ", 1)[1])


def test_rebuild_commands_in_error_messages_reproduce_the_config(artifacts, tmp_path):
    with pytest.raises(CacheError) as err:
        load_embeddings("g", DEFAULT_CONFIG)
    assert config_from_args(build_parser().parse_args(_command_in(str(err.value)))).key() == DEFAULT_CONFIG.key()
    params = AnnoyParams(n_trees=7)
    with pytest.raises(IndexMismatch) as err:
        AnnoyIndex.load(Embeddings("g", PLAIN_GEM, ["a"], np.zeros((1, 8), np.float32), tmp_path), "euclidean", params)
    args = build_parser().parse_args(_command_in(str(err.value)))
    assert config_from_args(args).key() == PLAIN_GEM.key() and (args.index, args.metric, args.n_trees) == ("annoy", "euclidean", 7)


# ---------------------------------------------------------------- run ids

def test_runs_started_at_the_same_instant_get_folders_of_their_own(tmp_path, monkeypatch):
    monkeypatch.setattr(runs.time, "time", lambda: 1_700_000_000.25)        # every run starts at this instant
    assert len({new_run_id("paris6k", "tf_efficientnet_lite0/rmac/ss/64-exact", "g") for _ in range(50)}) == 50

    def write(k: int):
        return write_run("same-id", {"run_id": "same-id", "k": k}, pd.DataFrame({"query": ["q"], "ap": [k / 8]}),
                         ["a.jpg", "b.jpg"], np.array([[k % 2, 1 - k % 2]]), {}, root=tmp_path)

    with ThreadPoolExecutor(8) as pool:
        folders = list(pool.map(write, range(8)))
    assert len(set(folders)) == 8                                          # none shared, none overwritten
    loaded = [load_run(f.name, tmp_path) for f in folders]
    assert sorted(r.summary.protocol_extras["k"] for r in loaded) == list(range(8))
    assert all(r.summary.run_id == r.directory.name and r.ranking[0].tolist() == [r.summary.protocol_extras["k"] % 2,
                                                                                  1 - r.summary.protocol_extras["k"] % 2]
               for r in loaded)


# ---------------------------------------------------------------- fingerprints

def _bmp(source, path) -> None:
    """Every 64x48 RGB BMP has the same size in bytes, whatever its pixels."""
    with Image.open(source) as img:
        img.convert("RGB").resize((64, 48)).save(path, "BMP")


def test_a_rewrite_that_keeps_size_and_mtime_is_embedded_again(artifacts, tmp_path, embedder):
    folder = tmp_path / "g"
    folder.mkdir()
    first, other = paris_images(2)
    _bmp(first, folder / "x.bmp")
    _bmp(first, folder / "copy.bmp")
    gallery = register_gallery("g", folder)
    build_embeddings(gallery, CFG, embedder, reporter=Reporter.quiet())
    assert duplicate_groups(gallery) == [["copy.bmp", "x.bmp"]]
    before = os.stat(folder / "x.bmp")
    _bmp(other, folder / "x.bmp")                                          # new pixels, same size...
    os.utime(folder / "x.bmp", ns=(before.st_atime_ns, before.st_mtime_ns))  # ...and the old mtime
    after = os.stat(folder / "x.bmp")
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    emb = build_embeddings(gallery, CFG, embedder, reporter=Reporter.quiet())
    assert emb.meta["changes"]["changed"] == ["x.bmp"]
    np.testing.assert_allclose(emb.vectors[emb.ids.index("x.bmp")], embedder.embed_image(folder / "x.bmp"), atol=1e-5)
    assert duplicate_groups(gallery) == []                                 # the hash was not kept by a stale fingerprint


def test_caches_with_older_size_mtime_fingerprints_are_renewed_without_re_embedding(artifacts, tmp_path, embedder):
    folder = copy_paris_images(tmp_path / "g", 3)
    gallery = register_gallery("g", folder)
    first = build_embeddings(gallery, CFG, embedder, reporter=Reporter.quiet())
    old = [f"{s.st_size}:{s.st_mtime_ns}" for s in (os.stat(folder / i) for i in first.ids)]
    write_legacy_cache(cache_dir("g", CFG), first, old)                    # a cache as the earlier code wrote it

    class NoEmbedding:
        def iter_files(self, *args, **kwargs):
            raise AssertionError("an unchanged file was embedded again")

    again = build_embeddings(gallery, CFG, NoEmbedding(), reporter=Reporter.quiet())
    np.testing.assert_array_equal(again.vectors, first.vectors)
    assert all(fp.count(":") == 3 for fp in load_embeddings("g", CFG).fingerprints)


# ---------------------------------------------------------------- names with newlines

def test_a_newline_in_a_file_name_keeps_run_ids_and_rankings_aligned(artifacts, tmp_path, embedder):
    root = tmp_path / "classes"
    names = ["a/one.jpg", "a/two\nlines.jpg", "a/three.jpg", "b/four.jpg", "b/five.jpg", "b/six.jpg"]
    for name, source in zip(names, paris_images(6, step=40)):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, root / name)
    gallery = register_gallery("cls", root)
    summary = evaluate(gallery, load_class_folders(root), CFG, embedder=embedder, options=RunOptions(**QUIET))
    run = load_run(summary.run_id)
    emb = load_embeddings("cls", CFG)
    assert run.ids == emb.ids and "a/two\nlines.jpg" in run.ids and run.ranking.shape[1] == len(names)
    assert len((run.directory / "images.txt").read_text().splitlines()) == len(names)   # one line per image, for people
    assert set(run.per_query["query"]) == set(names)


def test_a_run_whose_ids_disagree_with_its_ranking_is_refused(tmp_path):
    from core.evaluation.runs import RunError

    d = write_run("r", {"run_id": "r"}, pd.DataFrame({"query": ["q"], "ap": [1.0]}), ["a.jpg", "b.jpg"],
                  np.array([[1, 0]]), {}, root=tmp_path)
    (d / "images.json").unlink()                                           # a run written before images.json
    (d / "images.txt").write_text("a\nb\nc.jpg\n")
    with pytest.raises(RunError, match="3 gallery images for 2 ranking columns"):
        load_run("r", tmp_path).ids


# ---------------------------------------------------------------- folders that block, loop or fail

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
    assert "Annoy angular, 2 trees" in out
    assert len(load_embeddings("g", CFG).ids) == 2


def test_galleries_page_lists_a_folder_with_a_dangling_link(artifacts, tmp_path):
    from streamlit.testing.v1 import AppTest

    folder = copy_paris_images(tmp_path / "g", 3)
    (folder / "gone.jpg").symlink_to(folder / "nowhere.jpg")
    register_gallery("g", folder)
    at = AppTest.from_file(str(REPO / "pages" / "galleries.py"), default_timeout=120).run()
    assert not at.exception
    assert any("3 images" in c.value for c in at.caption)


# ---------------------------------------------------------------- ground truth

BAD_BOXES = {"defense_1": "nan 1 200 300", "defense_2": "0 0 inf 300", "defense_3": "left top right bottom",
             "defense_4": "0x10 0x10 0x200 0x200", "defense_5": "10 10 10 300"}


def test_malformed_ground_truth_entries_are_counted_and_skipped(tmp_path):
    gt_dir = tmp_path / "gt"
    shutil.copytree(PARIS / "gt", gt_dir)
    for query, box in BAD_BOXES.items():
        image = (gt_dir / f"{query}_query.txt").read_text().split()[0]
        (gt_dir / f"{query}_query.txt").write_text(f"{image} {box}\n")
    (gt_dir / "eiffel_1_ok.txt").write_bytes(bytes(range(256)) * 4)                 # binary
    (gt_dir / "eiffel_2_junk.txt").write_bytes(b"paris_eiffel_000001\n\xff\xfe caf\xe9\n")   # not UTF-8
    (gt_dir / "eiffel_3_query.txt").write_bytes(b"\xff\xd8\xff\xe0 JFIF")            # an image, not a query line
    (gt_dir / "eiffel_4_good.txt").unlink()
    os.mkfifo(gt_dir / "eiffel_4_good.txt")                                        # would block a plain read
    (gt_dir / "extra_1_query.txt").mkdir()                                          # a folder named like a query
    gt = load_oxford_paris(gt_dir, "paris6k")
    skipped = [n for n in gt.notes if n.endswith("query skipped")]
    assert len(skipped) == 10 and len(gt.queries) == 55 - 9
    for name, reason in [("defense_1_query.txt", "finite"), ("defense_2_query.txt", "finite"),
                         ("defense_3_query.txt", "decimal numbers"), ("defense_4_query.txt", "decimal numbers"),
                         ("defense_5_query.txt", "no area"), ("eiffel_1_ok.txt", "binary"),
                         ("eiffel_2_junk.txt", "not UTF-8"), ("eiffel_3_query.txt", "not UTF-8"),
                         ("eiffel_4_good.txt", "FIFO"), ("extra_1_query.txt", "directory")]:
        assert any(n.startswith(name) and reason in n and "\n" not in n for n in skipped), (name, skipped)


def test_query_boxes_outside_their_image_are_skipped_and_evaluation_goes_on(artifacts, tmp_path, embedder):
    images = copy_paris_images(tmp_path / "jpg", 6, step=40)
    stems = sorted(p.stem for p in images.iterdir())
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    for n, box in enumerate(["10 10 300 300", "5000 5000 6000 6000", "-900 -900 -10 -10"], start=1):
        (gt_dir / f"mine_{n}_query.txt").write_text(f"{stems[0]} {box}\n")
        (gt_dir / f"mine_{n}_good.txt").write_text(f"{stems[1]}\n{stems[2]}\n")
        for label in ("ok", "junk"):
            (gt_dir / f"mine_{n}_{label}.txt").write_text("")
    summary = evaluate(register_gallery("mine", images), load_oxford_paris(gt_dir, "mine"), CFG, embedder=embedder,
                       options=RunOptions(**QUIET))
    assert summary.n_queries == 1 and summary.skipped_queries == ["mine_2", "mine_3"]
    assert sum("no area inside" in n for n in summary.ground_truth_notes) == 2


class _Reduce:
    def __init__(self, func, args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def test_revisited_queries_with_malformed_boxes_are_skipped(tmp_path):
    path = tmp_path / "gnd_rtest.pkl"
    gnd = [{"easy": [0], "hard": [], "junk": [], "bbx": box}
           for box in ([1, 2, 30, 40], [float("nan"), 0, 10, 10], ["a", "b", "c", "d"], [5, 5, 5, 9])]
    path.write_bytes(pickle.dumps({"imlist": ["a"], "qimlist": ["q1", "q2", "q3", "q4"], "gnd": gnd}))
    gt = revisited_ground_truth(load_gnd(path), "rtest")
    assert [q.name for q in gt.queries] == ["q01"] and len(gt.notes) == 3
    assert all("query skipped" in n for n in gt.notes)


def test_search_with_an_infinite_box_says_so_in_one_line(artifacts, tmp_path, embedder, capsys):
    folder = copy_paris_images(tmp_path / "g", 3)
    build_embeddings(register_gallery("g", folder), CFG, embedder, reporter=Reporter.quiet())
    assert main(["search", str(next(folder.iterdir())), "--box", "0", "0", "inf", "inf", "--name", "g", *FLAGS]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "finite" in err and err.count("\n") == 1


# ---------------------------------------------------------------- damaged Annoy indexes

def _annoy_gallery(tmp_path, embedder):
    folder = copy_paris_images(tmp_path / "g", 6)
    emb = build_embeddings(register_gallery("g", folder), CFG, embedder, reporter=Reporter.quiet())
    return folder, emb, AnnoyIndex.build(emb, "cosine", PARAMS).path


PARAMS = AnnoyParams(n_trees=3)


def test_a_truncated_annoy_index_never_crashes_the_search_process(artifacts, tmp_path, embedder):
    folder, emb, ann = _annoy_gallery(tmp_path, embedder)
    good = ann.read_bytes()
    ann.write_bytes(good[: len(good) // 2])                                # its .json is intact
    done = cli("search", str(folder / emb.ids[0]), "--name", "g", "--search", "annoy", "--n-trees", "3", "-k", "3",
               "--rerank", "none", *FLAGS)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])    # the earlier code died of SIGSEGV here
    assert emb.ids[0] in done.stdout.splitlines()[1]
    AnnoyIndex.load(emb, "cosine", PARAMS)      # rebuilt from the cached descriptors
    ann.write_bytes(ann.read_bytes()[:-4096])
    with pytest.raises(IndexMismatch, match="truncated") as err:
        AnnoyIndex.load(emb, "cosine", PARAMS)
    assert err.value.stale                                                 # rebuilding from the cache is safe


def test_an_altered_annoy_index_of_the_right_size_is_refused(artifacts, tmp_path, embedder):
    _, emb, ann = _annoy_gallery(tmp_path, embedder)
    altered = bytearray(ann.read_bytes())
    altered[len(altered) // 3: len(altered) // 3 + 64] = b"\xff" * 64
    ann.write_bytes(bytes(altered))
    with pytest.raises(IndexMismatch, match="SHA-256 is not the one written") as err:
        AnnoyIndex.load(emb, "cosine", PARAMS)
    assert err.value.stale
    ann.with_suffix(".json").unlink()                                      # an .ann whose build was cut short
    with pytest.raises(IndexMismatch, match="cannot be read") as err:
        AnnoyIndex.load(emb, "cosine", PARAMS)
    assert err.value.stale


# ---------------------------------------------------------------- Markdown injection

HOSTILE_NAMES = ["![t](https:HOST?leak=1).jpg", "[click](javascript:alert(1)).jpg", "<img src=x onerror=alert(1)>.jpg",
                 "**bold** _it_ `code`.jpg", "$x^2$ :red[c] :smile:.jpg", "www.example.com.jpg",
                 "# title\n- item.jpg"]


def _rendered(markdown: str) -> str:
    return MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_escaped_names_render_as_their_own_text(name):
    from core.app.markdown import escape_markdown
    from core.fs import printable

    rendered = _rendered(f"#1 · 0.9 · {escape_markdown(name)}")
    assert re.findall(r"<(\w+)", rendered) == ["p"]                         # one paragraph: no image, link, emphasis
    assert html.unescape(re.sub(r"<[^>]+>", "", rendered)).strip() == f"#1 · 0.9 · {printable(name)}"


def test_result_names_are_plain_text_on_the_search_page(artifacts, tmp_path, embedder):
    from streamlit.testing.v1 import AppTest

    folder = tmp_path / "md"
    folder.mkdir()
    for name, source in zip(HOSTILE_NAMES[:5], paris_images(5)):
        shutil.copy(source, folder / name)
    build_embeddings(register_gallery("md", folder), CFG, embedder, reporter=Reporter.quiet())
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300).run()
    at.radio(key="source").set_value("Gallery image").run()
    at.selectbox(key="gallery_image").set_value(HOSTILE_NAMES[0]).run()
    at.button(key="search").click().run()
    assert not at.exception
    assert sorted(t.value for t in at.text) == sorted(HOSTILE_NAMES[:5])     # every result name, as plain text
    for element in (*at.markdown, *at.caption, *at.warning, *at.info):
        html = _rendered(element.value)
        assert "<img" not in html and "HOST" not in element.value and "javascript" not in element.value, element.value


# ---------------------------------------------------------------- Pillow formats

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


# ---------------------------------------------------------------- pickles, archives, umask

HUGE = 1 << 45            # 32 TiB: refused by the kernel too, so the earlier code fails fast instead of swapping


@pytest.mark.parametrize("payload", [
    _Reduce(np._core.multiarray._reconstruct, (np.ndarray, (HUGE,), b"b")),
    _Reduce(np.ndarray, ((HUGE // 8,),)), _Reduce(bytes, (HUGE,)), _Reduce(bytearray, (HUGE,))],
    ids=["_reconstruct", "ndarray", "bytes", "bytearray"])
def test_pickles_asking_for_terabytes_are_refused_before_allocating(tmp_path, payload):
    path = tmp_path / "gnd_rtest.pkl"
    path.write_bytes(pickle.dumps({"imlist": [], "qimlist": [], "gnd": [payload]}, protocol=2))
    with pytest.raises(UnsafePickle, match="more than the"):
        load_gnd(path)


def test_a_refused_pickle_is_one_line_on_the_command_line(tmp_path, capsys):
    (tmp_path / "gnd_rparis6k.pkl").write_bytes(pickle.dumps(_Reduce(os.system, ("echo pwned",))))
    assert main(["evaluate", "--dataset", "rparis6k", "--root", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: gnd_rparis6k.pkl: refused to load") and err.count("\n") == 1


def _mat_bomb(path, megabytes: int = 64) -> None:
    """A MAT v5 file of about 64 kB whose one compressed element inflates to ``megabytes`` MB."""
    scipy.io.savemat(path, {"gnd": np.zeros(megabytes << 20, np.uint8)}, do_compression=True)


def test_compressed_mat_bombs_are_refused_before_scipy_inflates_them(tmp_path, monkeypatch, capsys):
    import core.datasets.safemat as safemat
    from core.datasets.holidays import holidays_from_mat

    monkeypatch.setattr(safemat, "MAX_MAT_BYTES", 16 << 20)
    inflated = []
    monkeypatch.setattr(safemat.scipy.io, "loadmat", lambda *a, **k: inflated.append(a) or {})
    _mat_bomb(tmp_path / "gnd_rparis6k.mat")
    assert (tmp_path / "gnd_rparis6k.mat").stat().st_size < 100_000
    with pytest.raises(safemat.UnsafeMat, match=r"^gnd_rparis6k.mat: refused: .* inflate to more than 16,777,216"):
        load_gnd(tmp_path / "gnd_rparis6k.mat")
    _mat_bomb(tmp_path / "gnd_holidays.mat")
    with pytest.raises(safemat.UnsafeMat, match=r"^gnd_holidays.mat: refused"):
        holidays_from_mat(tmp_path / "gnd_holidays.mat")
    assert main(["evaluate", "--dataset", "rparis6k", "--root", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: gnd_rparis6k.mat: refused") and err.count("\n") == 1
    assert inflated == []                                    # scipy never saw the files


def test_real_mat_ground_truths_pass_the_check_and_a_corrupt_one_is_one_line(tmp_path):
    from core.datasets.safemat import check_mat

    real = PARIS / "gnd_rparis6k.mat"
    assert 0 < check_mat(real.read_bytes()) < 10 << 20 and len(load_gnd(real).imlist) == 6322
    corrupt = bytearray(real.read_bytes())
    corrupt[200:260] = b"x" * 60                             # inside the first compressed element
    (tmp_path / "gnd_rparis6k.mat").write_bytes(bytes(corrupt))
    with pytest.raises(GroundTruthError, match=r"^gnd_rparis6k.mat: not a revisited ground-truth file \(ValueError: "
                                               r"a compressed element is corrupt"):
        load_gnd(tmp_path / "gnd_rparis6k.mat")


def test_archives_are_bounded_in_expansion_count_and_size(tmp_path, monkeypatch):
    from core.datasets import download as dl

    bomb = tmp_path / "bomb.tgz"
    bomb.write_bytes(tgz({"zeros.jpg": bytes(64 << 20)}))                 # 64 MB of zeros in about 64 kB
    with pytest.raises(dl.UnsafeArchive, match="decompression bomb"):
        dl.extract(bomb, tmp_path / "out")
    assert bomb.exists() and not (tmp_path / "out").exists()
    many = tmp_path / "many.tgz"
    many.write_bytes(tgz({f"{i}.txt": b"x" for i in range(5)}))
    monkeypatch.setattr(dl, "MAX_MEMBERS", 4)
    with pytest.raises(dl.UnsafeArchive, match="holds 5 files"):
        dl.extract(many, tmp_path / "out")
    monkeypatch.setattr(dl, "MAX_MEMBERS", 10)
    monkeypatch.setattr(dl, "MAX_EXTRACTED_BYTES", 4)
    with pytest.raises(dl.UnsafeArchive, match="would unpack to 5 bytes"):
        dl.extract(many, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_written_files_respect_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        write_npz(tmp_path / "b.npz", x=np.zeros(3))
    finally:
        os.umask(old)
    for name in ("a.json", "b.npz"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o666 & ~mask


def test_index_waits_for_another_writer_of_the_same_cache(artifacts, tmp_path, embedder):
    """Two writers of one cache: the second waits for the first (an advisory lock the kernel drops
    if the holder dies), then finds everything up to date."""
    from core.cache.descriptors import LOCK
    from core.files import exclusive_lock

    folder = copy_paris_images(tmp_path / "g", 2)
    gallery = register_gallery("g", folder)
    messages = []
    with ThreadPoolExecutor(1) as pool, exclusive_lock(cache_dir("g", CFG) / LOCK):
        waiting = pool.submit(build_embeddings, gallery, CFG, embedder, Reporter(bar=False, log=messages.append))
        deadline = time.time() + 60
        while not any("waiting for another process" in m for m in messages) and time.time() < deadline:
            time.sleep(0.05)
        assert not waiting.done() and not (cache_dir("g", CFG) / MANIFEST).exists()
    assert len(waiting.result(timeout=300).ids) == 2
