"""End to end in a real browser: ``streamlit run app.py`` on a free loopback port over a small
real gallery (40 Paris images with their ground truth and two evaluation runs), driven by
Debian's Chromium through Playwright. Screenshots go to ``artifacts/screens/`` for a person to
look at.
"""
import re
from dataclasses import replace

import pytest
from conftest import PARIS, REPO, require_shared

from benchmarks.browser import CHROMIUM, app_server, choose, chromium_page, search, wait_idle, wait_rerun
from core.cache.galleries import register_gallery
from core.config import DEFAULT_CONFIG
from core.datasets import load_ground_truth
from core.evaluation.pipeline import evaluate

SCREENS = REPO / "artifacts" / "screens"
LANDMARKS = ("defense", "eiffel", "invalides", "louvre", "moulinrouge")
QUERY_IMAGES = ("paris_louvre_000081.jpg", "paris_defense_000056.jpg")     # louvre_1, defense_4
QUIET = dict(progress=False, log=lambda m: None)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """The app over 40 real Paris images (8 per landmark and two query images), with two runs."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run installs it)")
    require_shared()
    artifacts = tmp_path_factory.mktemp("browser-artifacts")
    folder = tmp_path_factory.mktemp("paris40")
    names = set(QUERY_IMAGES)
    for landmark in LANDMARKS:
        names |= set(sorted(p.name for p in (PARIS / "jpg").glob(f"paris_{landmark}_*.jpg"))[:8])
    for name in sorted(names)[:40]:
        (folder / name).symlink_to(PARIS / "jpg" / name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CBIR_ARTIFACTS", str(artifacts))
        gallery = register_gallery("paris40", folder, PARIS / "gt", "paris6k")
        gt = load_ground_truth("paris6k", PARIS / "gt")
        for whitening in ("none", "gallery"):
            evaluate(gallery, gt, replace(DEFAULT_CONFIG, whitening=whitening), **QUIET)
    SCREENS.mkdir(parents=True, exist_ok=True)
    with app_server(artifacts, artifacts / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def page(app_url):
    with chromium_page(1400, 1500) as page:
        page.goto(app_url)
        page.get_by_role("heading", name="Search").wait_for(timeout=120_000)
        wait_idle(page)
        yield page


def box_caption(page) -> str:
    return page.get_by_text("Query box in original pixels").inner_text()


def test_crop_and_search(page):
    choose(page, "gt_query", "louvre_1")
    before = box_caption(page)
    assert re.search(r"x1 10\d, y1 (69|70), x2 93\d, y2 44\d .* of 1024×768", before), before
    frame = page.locator("iframe[title='streamlit_cropper.st_cropper']")
    page.frame_locator("iframe[title='streamlit_cropper.st_cropper']").locator("canvas").first.wait_for(timeout=60_000)
    area = frame.bounding_box()
    # the box covers roughly (46, 30)-(402, 191) of the 440-pixel preview: drag it by its middle
    page.mouse.move(area["x"] + 224, area["y"] + 110)
    page.mouse.down()
    page.mouse.move(area["x"] + 200, area["y"] + 125, steps=8)
    page.mouse.up()
    page.wait_for_function("(before) => !document.body.innerText.includes(before)", arg=before, timeout=60_000)
    wait_rerun(page)
    moved = [int(v) for v in re.findall(r"x1 (\d+), y1 (\d+)", box_caption(page))[0]]
    assert moved[0] < 107 and moved[1] > 69, box_caption(page)

    seconds = search(page, 10)
    grid = page.locator(".st-key-results")
    cells = grid.locator("[data-testid='stColumn']")
    text = grid.inner_text()
    scores = [float(s) for s in re.findall(r"#\d+ · (\d\.\d{3})", text)]
    assert len(scores) == 10 and scores == sorted(scores, reverse=True), text
    assert "louvre" in cells.first.inner_text()
    body = page.inner_text("body")
    assert re.search(r"embed \d+ ms · search [\d.]+ ms", body) and "AP 11-pt" in body and "Missed" in body
    page.screenshot(path=str(SCREENS / "search.png"))
    assert seconds < 60

    second = re.search(r"paris_\w+\.jpg", cells.nth(1).inner_text())[0]
    cells.nth(1).get_by_role("button", name="Search with this").click()
    page.wait_for_function(
        "(id) => { const c = document.querySelector('.st-key-results [data-testid=\"stColumn\"]');"
        " return c && c.innerText.includes(id) && !document.querySelector('[data-stale=\"true\"]'); }",
        arg=second, timeout=60_000)
    assert page.locator(".st-key-gallery_image input").input_value() == second
    page.screenshot(path=str(SCREENS / "search-with-this.png"))


@pytest.mark.parametrize("tab,charts", [("Trade-off", 2), ("Per-query AP", 2), ("PR curves", 2)])
def test_metrics_charts_render(page, tab, charts):
    if not page.get_by_role("heading", name="Metrics").is_visible():
        page.get_by_role("link", name="Metrics").click()
        page.get_by_role("heading", name="Metrics").wait_for(timeout=60_000)
        wait_idle(page)
        page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=60_000)
        page.screenshot(path=str(SCREENS / "metrics-runs.png"))
    page.get_by_role("tab", name=tab).click()
    wait_idle(page)
    drawn = page.locator("[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg.marks")
    page.wait_for_function("(n) => [...document.querySelectorAll(\"[data-testid='stVegaLiteChart'] canvas, "
                           "[data-testid='stVegaLiteChart'] svg.marks\")].filter(e => e.getBoundingClientRect().width > 50)"
                           ".length >= n", arg=charts, timeout=60_000)
    assert drawn.count() >= charts
    page.screenshot(path=str(SCREENS / f"metrics-{tab.lower().replace(' ', '-')}.png"))


def test_failure_inspection_links_to_search(page):
    page.get_by_role("tab", name="Failures").click()
    wait_idle(page)
    link = page.get_by_role("link", name="Open in search").first
    link.wait_for(timeout=60_000)
    page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stImage\"] img').length >= 5", timeout=60_000)
    page.screenshot(path=str(SCREENS / "metrics-failures.png"))
    href = link.get_attribute("href")
    assert "gallery=paris40" in href and "query=" in href
    link.click()
    page.get_by_role("heading", name="Search").wait_for(timeout=60_000)
    page.wait_for_function("() => document.querySelectorAll('.st-key-results img').length === 10", timeout=120_000)
    assert "AP" in page.inner_text("body")
