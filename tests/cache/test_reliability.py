"""Broken input and interrupted work: a gallery full of bad files still builds, a killed
extraction resumes without recomputing and never leaves a half-written cache, bad ground truth is
counted and reported."""
import io
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import PARIS, REPO, copy_paris_images, paris_images, require_shared
from PIL import Image

from core.cache.descriptors import build_embeddings, cache_dir, load_embeddings
from core.cache.galleries import GalleryError, register_gallery
from core.config import EmbeddingConfig
from core.datasets import load_oxford_paris, resolve
from core.embed.embedder import Embedder
from core.images import ImageError
from core.progress import Reporter

CFG = EmbeddingConfig(max_size=96)
QUIET = dict(progress=False, log=lambda m: None)


def _bad_files(folder):
    """Every kind of broken or odd file a photo folder meets, with whether it must be readable."""
    good = Image.open(paris_images(1)[0]).convert("RGB")
    buf = io.BytesIO()
    good.save(buf, "JPEG")
    jpeg = buf.getvalue()
    files = {
        "zero.jpg": (b"", False),
        "truncated.jpg": (jpeg[: len(jpeg) // 3], False),
        "corrupt.jpg": (jpeg[:200] + bytes(range(256)) * 20, False),
        "text.jpg": (b"hello, I am a text file", False),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data[0] if isinstance(data, tuple) else data)
    readable = {
        "alpha.png": good.convert("RGBA"),
        "palette.png": good.convert("P"),
        "sixteen.png": Image.fromarray(np.asarray(good.convert("L"), np.uint16) * 257),
        "cmyk.jpg": good.convert("CMYK"),
        "grey.jpg": good.convert("L"),
        "one pixel ü.png": Image.new("RGB", (1, 1), (200, 10, 10)),
    }
    for name, img in readable.items():
        img.save(folder / name)
    exif = Image.Exif()
    exif[0x0112] = 6
    good.save(folder / "rotated.jpg", exif=exif)
    frames = [good.resize((64, 48)), good.resize((64, 48)).rotate(90)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    side = 11_000
    Image.new("1", (side, side)).save(folder / "bomb.png")                   # 121 Mpx > limit
    return {"zero.jpg", "truncated.jpg", "corrupt.jpg", "text.jpg", "bomb.png"}


def test_gallery_of_broken_files_builds_and_reports_each(artifacts, tmp_path):
    folder = copy_paris_images(tmp_path / "my photos", 3)
    unreadable = _bad_files(folder)
    emb = build_embeddings(register_gallery("mixed", folder), CFG, reporter=Reporter.quiet())
    assert set(emb.failures) == unreadable
    assert len(emb.ids) == 3 + 8          # 6 odd modes, EXIF-rotated, animated GIF
    assert "one pixel ü.png" in emb.ids and "animated.gif" in emb.ids
    assert np.isfinite(emb.vectors).all()
    np.testing.assert_allclose(np.linalg.norm(emb.vectors, axis=1), 1.0, atol=1e-4)
    assert "exceeds the limit" in emb.failures["bomb.png"] or "bomb" in emb.failures["bomb.png"]


def test_gallery_paths_cannot_escape_the_folder(artifacts, tmp_path):
    g = register_gallery("g", tmp_path)
    with pytest.raises(GalleryError, match="outside gallery"):
        g.path("../../etc/passwd")
    with pytest.raises(GalleryError, match="must be"):
        register_gallery("../evil", tmp_path)


def test_killed_extraction_resumes_and_never_leaves_a_broken_cache(artifacts, tmp_path):
    folder = copy_paris_images(tmp_path / "photos", 16)
    env = dict(os.environ, CBIR_CHECKPOINT_SECONDS="0", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "core", "index", "--folder", str(folder), "--name", "killme",
           "--max-size", "96", "--index", "none", "--quiet"]
    rng = random.Random(5)
    directory = cache_dir("killme", CFG)
    seen = []
    for _ in range(3):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
        # wait until the run is past start-up (a first checkpoint exists or grew), then kill at random
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            n = len(load_embeddings("killme", CFG).ids) if (directory / "manifest.json").exists() else 0
            if n > (seen[-1] if seen else 0):
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if (directory / "manifest.json").exists():
            emb = load_embeddings("killme", CFG)                   # always readable
            assert len(emb.ids) == emb.vectors.shape[0]
            seen.append(len(emb.ids))
    assert seen and seen[-1] > 0
    before = seen[-1]
    logs = []
    emb = build_embeddings(register_gallery("killme", folder), CFG, reporter=Reporter(bar=False, log=logs.append))
    assert len(emb.ids) == 16 and emb.meta["complete"]
    if before < 16:                                  # only what the killed runs had not saved is embedded
        assert emb.meta["extraction"]["n_embedded"] == 16 - before
    else:                                            # killed after its last checkpoint: nothing to embed
        assert not any("embedding" in m for m in logs), logs
    clean = Embedder(CFG).embed_image(folder / emb.ids[-1])
    np.testing.assert_allclose(emb.vectors[-1], clean, atol=1e-5)
    assert not [p for p in directory.iterdir() if ".tmp" in p.name]


def test_bad_ground_truth_is_counted_and_evaluation_goes_on(tmp_path):
    require_shared()
    gt_dir = tmp_path / "gt"
    shutil.copytree(PARIS / "gt", gt_dir)
    (gt_dir / "louvre_1_junk.txt").unlink()                                  # missing file
    ok = gt_dir / "louvre_2_ok.txt"
    ok.write_text(ok.read_text() + "paris_louvre_000081\nparis_nowhere_000001\n")   # duplicate + absent
    (gt_dir / "louvre_3_query.txt").write_text("paris_louvre_000050 1 2\n")       # malformed
    gt = load_oxford_paris(gt_dir, "paris6k")
    notes = "\n".join(gt.notes)
    assert "louvre_1_junk.txt is missing" in notes
    assert "louvre_2_ok.txt: 1 duplicate" in notes
    assert "louvre_3_query.txt: expected" in notes
    assert len(gt.queries) == 54
    ids = [p.name for p in paris_images()]
    with pytest.warns(UserWarning, match="skipped"):
        res = resolve(gt, ids)
    louvre2 = next(q for q in res.queries if q.query.name == "louvre_2")
    assert len(louvre2.positives) == 39                                      # absent names not counted
    assert len(res.queries) == 11


def test_every_bad_upload_gets_a_clear_message_and_good_ones_load(tmp_path):
    from core.app.preview import check_upload

    unreadable = _bad_files(tmp_path)
    for path in sorted(tmp_path.iterdir()):
        data = path.read_bytes()
        if path.name in unreadable:
            with pytest.raises(ImageError) as err:
                check_upload(path.name, data, max_mb=20)
            assert path.name in str(err.value) or "not" in str(err.value) or "bomb" in str(err.value) \
                or "limit" in str(err.value), str(err.value)
        else:
            img = check_upload(path.name, data, max_mb=20)
            assert img.mode == "RGB" and img.width >= 1
    with pytest.raises(ImageError, match="the limit is 0.001 MB"):
        check_upload("big.png", (tmp_path / "alpha.png").read_bytes(), max_mb=0.001)
    with pytest.raises(ImageError, match="not supported"):
        check_upload("../../etc/passwd", b"root:x:0:0", max_mb=20)
