"""Browsing a gallery to pick a query: images grouped by class (their subfolder) or, in a flat
folder, by the name they share before their number (``paris_defense_000056`` → ``paris_defense``),
filtered by name, one page of thumbnails at a time.
"""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

from core.datasets import stem_of
from core.datasets.classes import class_of

_NUMBER = re.compile(r"[\W_]*\d+$")
# The largest list the search page offers to choose from (gallery ids, groups): a selectbox sends all
# its options to the browser on every rerun of the page (at 1M ids a 10 MB element and 0.4-0.5 s of the
# script a rerun, measured); beyond it the page asks for a typed id, checked against the gallery's.
PICKER_MAX_IDS = 10_000


def image_group(image_id: str) -> str:
    """Class folder of an id, else its file stem without a trailing number."""
    cls = class_of(image_id)
    if cls is not None:
        return cls
    stem = stem_of(image_id)
    return _NUMBER.sub("", stem) or stem


def groups(ids: Sequence[str]) -> dict[str, list[str]]:
    """Each group's ids in gallery order, the groups sorted by name. One pass over the ids (4.6 s
    at 1M here): a caller that browses a large gallery keeps the result."""
    members = defaultdict(list)
    for i in ids:
        members[image_group(i)].append(i)
    return dict(sorted(members.items()))


def filter_ids(ids: Sequence[str], text: str = "") -> list[str]:
    """Ids whose path contains ``text`` (case-insensitive)."""
    needle = text.strip().lower()
    return [i for i in ids if needle in i.lower()]


def page_of(items: Sequence[str], page: int, per_page: int) -> tuple[list[str], int]:
    """Items of 1-based ``page`` (clipped to the last page) and the number of pages (at least 1)."""
    n_pages = max(1, -(-len(items) // per_page))
    page = min(max(1, page), n_pages)
    return list(items[(page - 1) * per_page: page * per_page]), n_pages
