"""Text from outside (file and folder names, query names from ground-truth files) shown inside
Markdown elements of the app. A file named ``![t](https://host/?leak=1).jpg`` rendered as
Markdown would make every viewer's browser fetch that URL; escaped, it is only text.
"""
from __future__ import annotations

import string

from core.fs import printable

_SPECIAL = frozenset(string.punctuation)          # CommonMark lets a backslash escape any ASCII punctuation


def escape_markdown(text: str) -> str:
    """``text`` as literal Markdown: on one line (``core.fs.printable``), every ASCII punctuation
    character backslash-escaped, so no link, image, emphasis, HTML, math or Streamlit directive
    can start in it."""
    return "".join(f"\\{ch}" if ch in _SPECIAL else ch for ch in printable(text))
