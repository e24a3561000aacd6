"""The Galleries page's view of the caches on disk: a cache being written (its lock held), its size, thumbnails."""
import json

from core.app.activity import cache_bytes, caches_in_progress, extraction_rate, is_locked, sample_images
from core.cache.descriptors import LOCK
from core.files import exclusive_lock
from core.paths import embeddings_dir


def test_a_cache_whose_lock_is_held_is_in_progress(artifacts):
    folder = embeddings_dir() / "photos" / "abc123"
    folder.mkdir(parents=True)
    (folder / LOCK).touch()
    assert caches_in_progress("photos") == [] and not is_locked(folder / LOCK)        # a lock left behind, free
    with exclusive_lock(folder / LOCK):                      # another open file: flock conflicts as between processes
        work = caches_in_progress("photos")
        assert [(w.key, w.label, w.n_done) for w in work] == [("abc123", None, None)]   # before the first checkpoint
        (folder / "meta.json").write_text(json.dumps({"label": "lite0/rmac/ms3/512", "n_images": 120}))
        assert [(w.label, w.n_done) for w in caches_in_progress("photos")] == [("lite0/rmac/ms3/512", 120)]
    assert caches_in_progress("photos") == []
    assert caches_in_progress("nothing") == [] and not is_locked(folder / "absent")


def test_cache_size_and_sample_images(artifacts, tmp_path):
    folder = embeddings_dir() / "photos" / "abc123"
    folder.mkdir(parents=True)
    (folder / "embeddings.npz").write_bytes(b"x" * 1000)
    (folder / "meta.json").write_text("{}")
    assert cache_bytes("photos", "abc123") == 1002 and cache_bytes("photos", "gone") == 0
    for name in ("b.jpg", "a.PNG", ".hidden.jpg", "notes.txt", "c.tif"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.jpg").mkdir()
    assert sample_images(tmp_path) == ["a.PNG", "b.jpg", "c.tif"] and sample_images(tmp_path, 1) == ["a.PNG"]
    assert sample_images(tmp_path / "missing") == []


def test_extraction_rate_of_a_cache(artifacts):
    folder = embeddings_dir() / "photos" / "abc123"
    folder.mkdir(parents=True)
    assert extraction_rate("photos", "abc123") is None                     # no meta yet
    (folder / "meta.json").write_text(json.dumps({"extraction": {"seconds": 10.0, "images_per_second": 4.5}}))
    assert extraction_rate("photos", "abc123") == 4.5
    (folder / "meta.json").write_text(json.dumps({"extraction": {"images_per_second": 0.0}}))
    assert extraction_rate("photos", "abc123") is None
