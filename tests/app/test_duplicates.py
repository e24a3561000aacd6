"""Near-duplicate groups of a gallery from its descriptors, against hand-built vectors."""
import numpy as np

from core.app.duplicates import near_duplicates


def unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_near_copies_form_groups_and_chains_join():
    vectors = unit([[1, 0, 0], [1, 0.05, 0], [1, 0.1, 0.02], [0, 1, 0], [0, 0, 1], [0, 0.02, 1]])
    ids = ["a", "a-small", "a-crop", "b", "c", "c-copy"]
    groups = near_duplicates(vectors, ids, threshold=0.99)
    assert [g.ids for g in groups] == [["a", "a-crop", "a-small"], ["c", "c-copy"]]     # b has no copy
    assert 0.99 <= groups[0].min_cosine < 1.0
    assert near_duplicates(vectors, ids, threshold=0.9999) == []


def test_blocks_and_few_neighbours_give_the_same_groups(monkeypatch):
    rng = np.random.default_rng(0)
    base = unit(rng.normal(size=(50, 16)))
    copies = unit(base[:10] + 0.01 * rng.normal(size=(10, 16)))
    vectors = np.vstack([base, copies])
    ids = [f"img{i}" for i in range(50)] + [f"copy{i}" for i in range(10)]
    whole = near_duplicates(vectors, ids, threshold=0.98)
    monkeypatch.setattr("core.app.duplicates.BLOCK", 7)
    assert near_duplicates(vectors, ids, threshold=0.98, neighbours=3) == whole
    assert sorted(tuple(g.ids) for g in whole) == sorted((f"copy{i}", f"img{i}") for i in range(10))
