"""File names are plain text in the app: Markdown in a name never renders or fetches. (Issue 16, hostile input: each test failed on the code before its fix.)"""
from __future__ import annotations

import html
import re
import shutil

import pytest
from conftest import REPO, SMALL, SMALL_FLAGS, paris_images, run_core
from markdown_it import MarkdownIt

from core.cache.descriptors import build_embeddings
from core.cache.galleries import register_gallery
from core.progress import Reporter

CFG, FLAGS, cli = SMALL, SMALL_FLAGS, run_core
QUIET = dict(progress=False, log=lambda m: None)


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


def test_result_names_are_plain_text_on_the_search_page(artifacts, tmp_path, small_embedder):
    from streamlit.testing.v1 import AppTest

    folder = tmp_path / "md"
    folder.mkdir()
    for name, source in zip(HOSTILE_NAMES[:5], paris_images(5)):
        shutil.copy(source, folder / name)
    build_embeddings(register_gallery("md", folder), CFG, small_embedder, reporter=Reporter.quiet())
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300).run()
    at.radio(key="source").set_value("Gallery image").run()
    at.selectbox(key="gallery_image").set_value(HOSTILE_NAMES[0]).run()
    at.button(key="search").click().run()
    assert not at.exception
    assert sorted(t.value for t in at.text) == sorted(HOSTILE_NAMES[:5])     # every result name, as plain text
    for element in (*at.markdown, *at.caption, *at.warning, *at.info):
        html = _rendered(element.value)
        assert "<img" not in html and "HOST" not in element.value and "javascript" not in element.value, element.value
