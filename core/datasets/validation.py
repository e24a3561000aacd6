"""Ground truths with many queries, for choosing defaults on more than a benchmark's few queries.

A benchmark such as Paris6k has 55 queries (12 whose image is in the shared 250-image gallery);
a choice made on them fits them. Its positive lists, though, say for every listed image which
landmark it shows, so every positive image can be a query of its landmark:

- ``landmark_queries``: each positive image present in the gallery queries the other positives
  of its landmark (the union of the landmark's query lists); the image itself is junk, as are
  the landmark's junk images. ``boxes`` turns the whole-image queries into crops.
- ``random_box``: a box covering a seeded random 30–70 % of an image, the region a user might
  draw around part of a scene; ``random_boxes`` gives one per image, drawn from the seed and the
  image name only (so adding images never moves another image's box).

Class galleries (Corel-1k, a Fashion-MNIST export) need nothing here: every image is already a
query (``core.datasets.classes``).
"""
from __future__ import annotations

import math
import zlib
from collections import defaultdict
from collections.abc import Iterable, Mapping

import numpy as np

from core.datasets.types import GroundTruth, Query
from core.images import Box

AREA_RANGE = (0.3, 0.7)
VALIDATION_PROTOCOL = "validation"     # prefix of the protocols built here: validation-whole, validation-crop


def random_box(width: int, height: int, rng: np.random.Generator,
               area: tuple[float, float] = AREA_RANGE) -> Box:
    """A box inside a ``width`` × ``height`` image covering a fraction of its area drawn
    uniformly from ``area``; its width fraction is log-uniform in [fraction, 1] (so wide and
    tall boxes are equally likely) and its position uniform."""
    fraction = rng.uniform(*area)
    fw = math.exp(rng.uniform(math.log(fraction), 0.0))
    fh = fraction / fw
    x1 = rng.uniform(0.0, 1.0 - fw) * width
    y1 = rng.uniform(0.0, 1.0 - fh) * height
    return Box(x1, y1, x1 + fw * width, y1 + fh * height)


def random_boxes(sizes: Mapping[str, tuple[int, int]], seed: int = 0,
                 area: tuple[float, float] = AREA_RANGE) -> dict[str, Box]:
    """One ``random_box`` per image stem of ``sizes`` (stem → original (width, height)), each
    drawn from a generator seeded by ``seed`` and the stem."""
    return {stem: random_box(w, h, np.random.default_rng([seed, zlib.crc32(stem.encode())]), area)
            for stem, (w, h) in sizes.items()}


def landmark_queries(gt: GroundTruth, present: Iterable[str], protocol: str,
                     boxes: Mapping[str, Box] | None = None) -> GroundTruth:
    """Every positive image of ``gt`` that is ``present`` (image stems of the gallery) as a query
    of its landmark (``Query.group``), whole or cropped by ``boxes[stem]``. Landmarks' positive
    and junk lists are the unions over their queries; an image listed for two landmarks queries
    each. Queries with no other present positive are left out."""
    present = set(present)
    positives: dict[str, set[str]] = defaultdict(set)
    junk: dict[str, set[str]] = defaultdict(set)
    for q in gt.queries:
        positives[q.group] |= q.positives
        junk[q.group] |= q.junk
    queries = []
    for landmark in sorted(positives):
        listed = positives[landmark]
        for stem in sorted(listed & present):
            others = listed - {stem}
            if not others & present:
                continue
            box = boxes[stem] if boxes is not None else None
            queries.append(Query(name=f"{landmark}/{stem}", image=stem, box=box, positives=frozenset(others),
                                 junk=frozenset((junk[landmark] | {stem}) - others), group=landmark))
    if not queries:
        raise ValueError(f"no positive image of {gt.dataset} is in the gallery together with another one")
    info = {"derived_from": gt.dataset, "source": gt.info.get("source"), "n_landmarks": len({q.group for q in queries}),
            "cropped": boxes is not None}
    return GroundTruth(dataset=gt.dataset, protocol=protocol, queries=queries, notes=list(gt.notes), info=info)
