"""Near-duplicates in a gallery: groups of images whose descriptors are almost the same (the same
photo resized, recompressed, lightly cropped or recoloured), for cleaning a photo folder and for
spotting leaks between the query and gallery sets of a benchmark.

Two images are linked when the cosine of their descriptors is at least ``threshold``; a group is
a connected set of links (union-find), so a chain of near-copies forms one group. Each image's
links come from its ``neighbours`` nearest images, computed in blocks of rows: memory stays
``block × n`` however large the gallery.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BLOCK = 1024


@dataclass(frozen=True)
class DuplicateGroup:
    """Images that are near-copies of each other (gallery ids, sorted) and the lowest cosine of a
    link that joined them."""

    ids: list[str]
    min_cosine: float


def near_duplicates(vectors: np.ndarray, ids: Sequence[str], threshold: float = 0.95,
                    neighbours: int = 10) -> list[DuplicateGroup]:
    """Groups of near-duplicates among L2-normalised ``vectors`` [n, d] (rows named by ``ids``),
    largest first; images without a near-copy are left out."""
    n = len(ids)
    parent = list(range(n))
    weakest: dict[tuple[int, int], float] = {}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    k = min(neighbours + 1, n)
    for start in range(0, n, BLOCK):
        sims = vectors[start:start + BLOCK] @ vectors.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (len(sims), 1))
        for row, cols in enumerate(top):
            i = start + row
            for j in cols:
                if j != i and sims[row, j] >= threshold:
                    weakest[(min(i, j), max(i, j))] = float(sims[row, j])
    for i, j in weakest:
        parent[root(i)] = root(j)
    members: dict[int, list[int]] = {}
    for i in {i for pair in weakest for i in pair}:
        members.setdefault(root(i), []).append(i)
    groups = []
    for rows in members.values():
        inside = set(rows)
        low = min(c for (i, j), c in weakest.items() if i in inside and j in inside)
        groups.append(DuplicateGroup(sorted(ids[i] for i in rows), low))
    return sorted(groups, key=lambda g: (-len(g.ids), g.ids))
