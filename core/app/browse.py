"""Browsing a gallery to pick a query: images grouped by class (their subfolder) or, in a flat
folder, by the name they share before their number (``paris_defense_000056`` → ``paris_defense``),
filtered by name, one page of thumbnails at a time.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from core.datasets import stem_of
from core.datasets.classes import class_of

_NUMBER = re.compile(r"[\W_]*\d+$")


def image_group(image_id: str) -> str:
    """Class folder of an id, else its file stem without a trailing number."""
    cls = class_of(image_id)
    if cls is not None:
        return cls
    stem = stem_of(image_id)
    return _NUMBER.sub("", stem) or stem


def groups(ids: Sequence[str]) -> list[str]:
    return sorted({image_group(i) for i in ids})


def filter_ids(ids: Sequence[str], text: str = "", group: str | None = None) -> list[str]:
    """Ids whose path contains ``text`` (case-insensitive) and that belong to ``group`` (any when None)."""
    needle = text.strip().lower()
    return [i for i in ids if needle in i.lower() and (group is None or image_group(i) == group)]


def page_of(items: Sequence[str], page: int, per_page: int) -> tuple[list[str], int]:
    """Items of 1-based ``page`` (clipped to the last page) and the number of pages (at least 1)."""
    n_pages = max(1, -(-len(items) // per_page))
    page = min(max(1, page), n_pages)
    return list(items[(page - 1) * per_page: page * per_page]), n_pages
