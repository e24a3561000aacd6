"""One gallery made of two: a benchmark's images followed by distractors, as one store on disk.

Every index and re-ranker takes a gallery's descriptors as one memory-mapped array. Joining two
galleries in memory would read every vector of both (5 GB at 1M x 1280) into each process that
evaluates with distractors; instead the two are written once, in blocks of bounded size, into
a store of their own (``<embeddings>/<benchmark>+<distractors>/<config key>/``), mapped like any
other and reused while both are unchanged: a second run reads no vector before it needs one,
and an index of the joined gallery is built once and kept beside it.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from core.cache import store
from core.cache.descriptors import LOCK, Embeddings, cache_dir, write_config
from core.files import exclusive_lock

BLOCK_ROWS = store.REWRITE_ROWS


def _blocks(*arrays: np.ndarray) -> Iterator[np.ndarray]:
    for array in arrays:
        for start in range(0, len(array), BLOCK_ROWS):
            yield np.asarray(array[start:start + BLOCK_ROWS], np.float32)


def joined(first: Embeddings, second: Embeddings, second_ids: list[str], meta: dict) -> Embeddings:
    """``first`` followed by ``second`` (its rows named ``second_ids``): rows of ``first`` keep
    their numbers; ``strata`` marks where ``second``'s begin. Written (atomically, under the
    store's lock) only when the joined store is absent or either gallery changed since."""
    directory = cache_dir(f"{first.gallery}+{second.gallery}", first.config)
    ids, fingerprints = first.ids + second_ids, first.fingerprints + second.fingerprints
    with exclusive_lock(directory / LOCK):
        contents = store.open_contents(directory)
        if contents is None or contents.ids != ids or contents.fingerprints != fingerprints:
            store.rewrite(directory, ids, fingerprints, _blocks(first.vectors, second.vectors), {})
            write_config(directory, first.config)
            contents = store.open_contents(directory)
    return replace(first, ids=ids, vectors=contents.vectors, directory=directory, fingerprints=fingerprints,
                   meta={**first.meta, **meta}, strata=(0, len(first.ids)))
