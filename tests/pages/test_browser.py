"""End to end in a real browser at a laptop's size (1280×800, and 800 px wide): ``streamlit run
app.py`` on a free loopback port over a small real gallery (40 Paris images with their ground truth
and two evaluation runs), driven by Debian's Chromium through Playwright. Every request the pages
make is recorded: none may leave the app's own address. Screenshots go to ``artifacts/screens/``
for a person to look at.
"""
import re
from dataclasses import replace
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from conftest import PARIS, REPO, require_shared

from benchmarks.browser import CHROMIUM, CROPPER, app_server, choose, chromium_page, search, wait_idle, wait_rerun
from core.cache.galleries import register_gallery
from core.config import DEFAULT_CONFIG
from core.datasets import load_ground_truth
from core.evaluation.pipeline import RunOptions, evaluate
from core.evaluation.runs import load_run

pytestmark = pytest.mark.slow

SCREENS = REPO / "artifacts" / "screens"
LANDMARKS = ("defense", "eiffel", "invalides", "louvre", "moulinrouge")
QUERY_IMAGES = ("paris_louvre_000081.jpg", "paris_defense_000056.jpg")     # louvre_1, defense_4
QUIET = dict(options=RunOptions(progress=False, log=lambda m: None))
WIDTH, HEIGHT = 1280, 800
LOCAL = ("data:", "blob:", "about:")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app over 40 real Paris images (8 per landmark and two query images), with two runs:
    (url, [the runs])."""
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
        runs = [evaluate(gallery, gt, replace(DEFAULT_CONFIG, whitening=w), **QUIET) for w in ("none", "gallery")]
    SCREENS.mkdir(parents=True, exist_ok=True)
    with app_server(artifacts, artifacts / "streamlit.log") as url:
        yield url, [load_run(r.run_id, artifacts / "runs") for r in runs]


@pytest.fixture(scope="module")
def requests(app):
    """Every URL any page of this module asked for (filled as the tests run)."""
    return []


@pytest.fixture(scope="module")
def page(app, requests):
    url, _ = app
    with chromium_page(WIDTH, HEIGHT) as page:
        page.on("request", lambda r: requests.append(r.url))
        page.goto(url)
        page.get_by_role("heading", name="Search").wait_for(timeout=120_000)
        wait_idle(page)
        yield page


def open_search(page, url: str, query: str = "") -> None:
    page.goto(url + query)
    page.get_by_role("heading", name="Search").wait_for(timeout=120_000)
    wait_idle(page)
    page.frame_locator(CROPPER).locator("canvas").first.wait_for(timeout=60_000)


def set_source(page, source: str) -> None:
    page.get_by_role("radiogroup", name="Query from").get_by_text(source, exact=True).click()
    wait_idle(page)


def box_caption(page) -> str:
    return page.get_by_text("Query box in original pixels").inner_text()


def canvas_fits(page) -> None:
    """The cropper's canvas lies inside its frame, and the frame inside the window."""
    page.frame_locator(CROPPER).locator("canvas").first.wait_for(timeout=60_000)
    page.wait_for_timeout(300)                              # the component sets its frame's size once drawn
    frame = page.locator(CROPPER).bounding_box()
    canvas = page.frame_locator(CROPPER).locator("canvas").first.bounding_box()
    viewport = page.viewport_size["width"]
    assert canvas["x"] >= frame["x"] - 0.5 and canvas["x"] + canvas["width"] <= frame["x"] + frame["width"] + 0.5, \
        (canvas, frame)
    assert frame["x"] + frame["width"] <= viewport, (frame, viewport)


def test_cropper_canvas_fits_its_frame_at_1280_and_800(app, page):
    url, _ = app
    choose(page, "gt_query", "louvre_1")
    canvas_fits(page)
    page.set_viewport_size({"width": 800, "height": HEIGHT})
    try:
        wait_idle(page)
        page.wait_for_timeout(500)                       # the grid reflows to one column
        canvas_fits(page)
        page.screenshot(path=str(SCREENS / "search-800.png"))
    finally:
        page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
        wait_idle(page)


def test_crop_and_search(page):
    choose(page, "gt_query", "louvre_1")
    before = box_caption(page)
    assert "x1 107, y1 69, x2 936, y2 445 (829×376 of 1024×768)" in before, before   # louvre_1's box, exactly
    area = page.locator(CROPPER).bounding_box()
    # the box covers about (40, 26)-(347, 165) of the 380-pixel preview: drag it by its middle
    page.mouse.move(area["x"] + 190, area["y"] + 95)
    page.mouse.down()
    page.mouse.move(area["x"] + 170, area["y"] + 110, steps=8)
    page.mouse.up()
    page.wait_for_function("(before) => !document.body.innerText.includes(before)", arg=before, timeout=60_000)
    wait_rerun(page)
    moved = [int(v) for v in re.findall(r"x1 (\d+), y1 (\d+)", box_caption(page))[0]]
    assert moved[0] < 107 and moved[1] > 69, box_caption(page)
    assert f"box={moved[0]}%2C{moved[1]}" in page.url or f"box={moved[0]},{moved[1]}" in page.url, page.url

    seconds = search(page, 10)
    grid = page.locator(".st-key-results")
    cells = grid.locator("[data-testid='stGridCell']")
    text = grid.inner_text()
    # the page's default re-ranking (core.rerank.DEFAULT_RERANK) orders them; scores stay the cosines
    assert len(re.findall(r"#\d+(?: \(was #\d+\))? · cos \d\.\d{3}", text)) == 10, text
    assert "louvre" in cells.first.inner_text()
    body = page.inner_text("body")
    assert re.search(r"embed \d+ ms · search [\d.]+ ms · re-ranked by", body) and "AP 11-pt" in body and "missed" in body
    page.screenshot(path=str(SCREENS / "search.png"))
    assert seconds < 60

    cells.nth(1).get_by_role("button", name="View").click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for(timeout=60_000)
    page.wait_for_function("() => [...document.querySelectorAll('[role=dialog] img')].filter(i => i.complete "
                           "&& i.naturalWidth > 0).length === 2", timeout=60_000)
    page.screenshot(path=str(SCREENS / "search-result-beside-query.png"))
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden", timeout=30_000)

    second = re.search(r"paris_\w+\.jpg", cells.nth(1).inner_text())[0]
    cells.nth(1).get_by_role("button", name="Search").click()
    page.wait_for_function(
        "(id) => { const c = document.querySelector('.st-key-results [data-testid=\"stGridCell\"]');"
        " return c && c.innerText.includes(id) && !document.querySelector('[data-stale=\"true\"]'); }",
        arg=second, timeout=60_000)
    assert page.locator(".st-key-gallery_image input").input_value() == second
    assert "query image" in cells.first.inner_text()
    assert f"image={second}" in page.url


def test_browse_thumbnails_to_pick_a_query(page):
    set_source(page, "Gallery image")
    page.get_by_role("button", name="Browse").click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for(timeout=60_000)
    page.wait_for_function("() => document.querySelectorAll('.st-key-browse_grid img').length === 24", timeout=60_000)
    dialog.locator(".st-key-browse_text input").fill("eiffel")
    dialog.locator(".st-key-browse_text input").press("Enter")
    page.wait_for_function("() => { const imgs = document.querySelectorAll('.st-key-browse_grid img');"
                           " return imgs.length === 8 && !document.querySelector('[data-stale=\"true\"]'); }",
                           timeout=60_000)
    page.screenshot(path=str(SCREENS / "search-browse.png"))
    picked = dialog.locator("[data-testid='stGridCell']").nth(2)
    image_id = re.search(r"paris_eiffel_\d+\.jpg", picked.inner_text())[0]
    picked.get_by_role("button", name="Use").click()
    dialog.wait_for(state="hidden", timeout=30_000)
    wait_idle(page)
    assert page.locator(".st-key-gallery_image input").input_value() == image_id


def test_too_large_upload_gets_a_message(page, tmp_path):
    set_source(page, "Upload")
    big = tmp_path / "huge.jpg"
    big.write_bytes(b"\xff" * (21 * 1024 * 1024))
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(big))
    page.get_by_text("huge.jpg is 21.0 MB; the limit is 20 MB").wait_for(timeout=120_000)
    assert page.get_by_text("These are the results of the previous query").is_visible()


def test_sidebar_collapses_and_the_page_uses_the_room(app, page):
    url, _ = app
    open_search(page, url)
    before = page.locator("[data-testid='stMainBlockContainer']").bounding_box()["width"]
    page.locator("[data-testid='stSidebar']").hover()
    page.locator("[data-testid='stSidebarCollapseButton'] button").click()
    try:
        page.wait_for_function("() => document.querySelector('[data-testid=stSidebar]')"
                               ".dataset.collapsed === 'true'", timeout=30_000)
        page.wait_for_timeout(600)                               # the slide-out animation
        after = page.locator("[data-testid='stMainBlockContainer']").bounding_box()["width"]
        assert after > before + 200, (before, after)
        canvas_fits(page)
        page.screenshot(path=str(SCREENS / "search-sidebar-collapsed.png"))
    finally:
        page.locator("[data-testid='stExpandSidebarButton']").click()
        page.wait_for_function("() => document.querySelector('[data-testid=stSidebar]')"
                               ".dataset.collapsed === 'false'", timeout=30_000)


def test_deep_link_restores_the_full_state_after_a_reload(app, page):
    url, _ = app
    link = (f"/?gallery=paris40&embedding={DEFAULT_CONFIG.key()}&query=louvre_1&box=150,100,700,400&k=6"
            "&metric=euclidean&index=exact&rerank=none")
    open_search(page, url, link)
    for attempt in range(2):                                     # the link, then a reload of what it became
        page.wait_for_function("() => document.querySelectorAll('.st-key-results img').length === 6", timeout=120_000)
        wait_idle(page)
        assert "x1 150, y1 100, x2 700, y2 400 (550×300 of 1024×768)" in box_caption(page)
        assert page.locator(".st-key-gt_query input").input_value().startswith("louvre_1")
        assert page.locator(".st-key-k input[type=range]").input_value() == "6"
        assert page.get_by_role("radio", name="euclidean").is_checked()
        assert "#1 · dist 0.000" not in page.locator(".st-key-results").inner_text()   # a crop: not itself
        assert re.findall(r"#\d+ · dist", page.locator(".st-key-results").inner_text())
        params = parse_qs(urlparse(page.url).query)
        assert params["box"] == ["150,100,700,400"] and params["k"] == ["6"] and params["metric"] == ["euclidean"]
        assert params["rerank"] == ["none"]                      # not the page's default: kept in the link
        if attempt == 0:
            page.reload()
            page.get_by_role("heading", name="Search").wait_for(timeout=120_000)
    page.screenshot(path=str(SCREENS / "search-deep-link.png"))


def test_a_link_to_a_missing_gallery_says_so(app, page):
    url, _ = app
    open_search(page, url, "/?gallery=oxford105k&query=all_souls_1")
    page.get_by_text("gallery 'oxford105k', which does not exist").wait_for(timeout=60_000)
    assert page.get_by_text("ground-truth query 'all_souls_1', which does not exist").is_visible()
    assert page.locator(".st-key-results img").count() == 0


def independent_missed(run, query: str, k: int) -> list[int]:
    """Ranks (1-based, junk included) of the relevant images of ``query`` below ``k``, from the
    run's files and the ground truth, without core.app."""
    row = int(np.flatnonzero(run.per_query["query"].to_numpy() == query)[0])
    q = next(q for q in load_ground_truth("paris6k", PARIS / "gt").queries if q.name == query)
    stems = [i.rsplit(".", 1)[0] for i in run.ids]
    return [r + 1 for r, i in enumerate(run.ranking[row]) if r + 1 > k and stems[i] in q.positives]


def junk_above(run, query: str) -> int:
    """Junk images ranked above the last relevant image of ``query`` (neither relevant nor negative)."""
    row = int(np.flatnonzero(run.per_query["query"].to_numpy() == query)[0])
    q = next(q for q in load_ground_truth("paris6k", PARIS / "gt").queries if q.name == query)
    stems = [run.ids[i].rsplit(".", 1)[0] for i in run.ranking[row]]
    last = max(r for r, s in enumerate(stems) if s in q.positives)
    return sum(s in q.junk and s not in q.positives for s in stems[:last])


def open_metrics_tab(page, tab: str) -> None:
    if not page.get_by_role("heading", name="Metrics").is_visible():
        page.get_by_role("link", name="Metrics").click()
        page.get_by_role("heading", name="Metrics").wait_for(timeout=60_000)
        wait_idle(page)
    page.get_by_role("tab", name=tab).click()
    wait_idle(page)


@pytest.mark.parametrize("tab,charts", [("Runs", 0), ("Trade-off", 1), ("Per-query AP", 2), ("PR curves", 1),
                                        ("Performance", 0)])
def test_metrics_tabs_render(page, tab, charts):
    open_metrics_tab(page, tab)
    page.wait_for_function("(n) => [...document.querySelectorAll(\"[data-testid='stVegaLiteChart'] canvas, "
                           "[data-testid='stVegaLiteChart'] svg.marks\")].filter(e => e.getBoundingClientRect().width > 50)"
                           ".length >= n", arg=charts, timeout=60_000)
    if tab == "Runs":
        page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=60_000)
    page.screenshot(path=str(SCREENS / f"metrics-{tab.lower().replace(' ', '-')}.png"))


def test_failure_view_of_a_real_run_shows_each_missed_positive_with_its_rank(app, page):
    url, runs = app
    open_metrics_tab(page, "Failures")
    run = runs[1]                                                         # the newest run, shown first
    query = run.per_query.sort_values("ap")["query"].iloc[0]
    assert page.locator(".st-key-fail_query input").input_value().startswith(query)        # the worst first
    relevant = independent_missed(run, query, 0)                         # every relevant image's rank
    k = len(relevant)                                                    # the view opens at k = the relevant images
    page.wait_for_function("(k) => document.querySelector('.st-key-fail_k input').value === String(k)", arg=k,
                           timeout=60_000)
    expected = [r for r in relevant if r > k]
    assert expected
    page.wait_for_function("(n) => document.querySelectorAll('.st-key-fail_missed img').length === n",
                           arg=min(len(expected), 40), timeout=60_000)
    shown = [int(r) for r in re.findall(r"#(\d+) · \d+ negatives above", page.locator(".st-key-fail_missed").inner_text())]
    assert shown == expected[:40]
    negatives = [int(r) for r in re.findall(r"#(\d+)\n", page.locator(".st-key-fail_intruders").inner_text())]
    assert negatives and max(negatives) < relevant[-1] and len(negatives) == min(40, relevant[-1] - len(relevant)
                                                                                 - junk_above(run, query))
    assert "outrank" in page.locator("p", has_text="Why:").inner_text()
    page.screenshot(path=str(SCREENS / "metrics-failures.png"))
    ap = float(run.per_query.set_index("query").loc[query, "ap"])
    link = page.get_by_role("link", name="Open in search")
    assert f"query={query}" in link.get_attribute("href")
    link.click()
    page.get_by_role("heading", name="Search").wait_for(timeout=60_000)
    page.wait_for_function("() => document.querySelectorAll('.st-key-results img').length === 10", timeout=120_000)
    wait_idle(page)
    assert f"AP {ap:.3f}" in page.inner_text("body")             # the run's AP: the exact box was searched


def test_clicking_a_bar_opens_that_query(page):
    open_metrics_tab(page, "Per-query AP")
    bar = page.locator("[data-testid='stVegaLiteChart'] g.mark-rect path[aria-roledescription=bar]").nth(2)
    bar.wait_for(timeout=60_000)
    query = re.match(r"query: ([^;]+);", bar.get_attribute("aria-label"))[1]
    bar.click()
    page.wait_for_function("() => document.querySelector('[role=tab][aria-selected=true]')"
                           ".innerText.includes('Failures')", timeout=30_000)
    wait_idle(page)
    assert page.locator(".st-key-fail_query input").input_value().startswith(query)


def test_selecting_a_row_of_the_differences_opens_that_query(app, page):
    _, runs = app
    newest, older = (r.per_query.set_index("query")["ap"] for r in (runs[1], runs[0]))
    diff = (older - newest)[lambda d: d.abs() >= 0.05]          # second run minus first, as the table
    expected = diff.idxmin()                                     # its first row: the largest loss
    open_metrics_tab(page, "Per-query AP")
    table = page.locator(".st-key-pq_wins [data-testid='stDataFrame']")
    table.wait_for(timeout=60_000)
    page.wait_for_timeout(500)
    table.scroll_into_view_if_needed()
    box = table.bounding_box()
    page.mouse.click(box["x"] + 14, box["y"] + 35 + 17)         # the row marker of the first row
    page.wait_for_function("() => document.querySelector('[role=tab][aria-selected=true]')"
                           ".innerText.includes('Failures')", timeout=30_000)
    wait_idle(page)
    assert page.locator(".st-key-fail_query input").input_value().split(" · ")[0] == expected


def test_galleries_page(page):
    page.get_by_role("link", name="Galleries").click()
    page.get_by_role("heading", name="Galleries").wait_for(timeout=60_000)
    wait_idle(page)
    page.locator(".st-key-ask_forget_paris40 button").click()
    page.get_by_text("Removes paris40 from the app").wait_for(timeout=30_000)
    assert page.locator(".st-key-delete_paris40 button").is_disabled()
    page.screenshot(path=str(SCREENS / "galleries.png"))
    page.locator(".st-key-cancel_paris40 button").click()
    wait_idle(page)


def tiles_in_first_row(page) -> int:
    return page.evaluate("""() => { const cells = [...document.querySelectorAll(
        '.st-key-results [data-testid=stGridCell]')].map(c => Math.round(c.getBoundingClientRect().top));
        return cells.filter(t => t === cells[0]).length; }""")


def test_results_fill_the_width_and_the_search_is_kept_across_pages(app, page):
    url, _ = app
    open_search(page, url, f"/?gallery=paris40&embedding={DEFAULT_CONFIG.key()}&query=defense_4&k=12&rerank=none")
    page.wait_for_function("() => document.querySelectorAll('.st-key-results img').length === 12", timeout=120_000)
    wait_idle(page)
    try:
        for width, least in ((1280, 3), (1920, 4)):
            page.set_viewport_size({"width": width, "height": 1080 if width > 1280 else HEIGHT})
            page.wait_for_timeout(800)                            # the grid reflows
            assert tiles_in_first_row(page) >= least, (width, tiles_in_first_row(page))
            page.screenshot(path=str(SCREENS / f"search-results-{width}.png"))
    finally:
        page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    first = page.locator(".st-key-results [data-testid=stGridCell]").first.inner_text()
    for link in ("Galleries", "Metrics", "Search"):                # away and back by the navigation
        page.get_by_role("link", name=link).click()
        page.get_by_role("heading", name=link).wait_for(timeout=60_000)
        wait_idle(page)
    page.wait_for_function("() => document.querySelectorAll('.st-key-results img').length === 12", timeout=120_000)
    assert page.locator(".st-key-gt_query input").input_value().startswith("defense_4")
    assert page.locator(".st-key-results [data-testid=stGridCell]").first.inner_text() == first
    page.get_by_role("link", name="Metrics").click()
    page.get_by_role("heading", name="Metrics").wait_for(timeout=60_000)
    page.go_back()                                                # and by the browser's Back
    page.get_by_role("heading", name="Search").wait_for(timeout=60_000)
    page.wait_for_function("() => document.querySelectorAll('.st-key-results img').length === 12", timeout=120_000)
    assert page.locator(".st-key-gt_query input").input_value().startswith("defense_4")


def test_no_page_or_tab_scrolls_sideways_at_800(app, page):
    url, _ = app
    page.set_viewport_size({"width": 800, "height": HEIGHT})
    try:
        open_search(page, url, f"/?gallery=paris40&embedding={DEFAULT_CONFIG.key()}&query=louvre_1")
        assert page.locator(".st-key-search button").bounding_box()["y"] < HEIGHT       # on the first screen
        widths = {"search": page.evaluate("() => document.documentElement.scrollWidth")}
        for tab in ("Runs", "Trade-off", "Per-query AP", "PR curves", "Failures"):
            open_metrics_tab(page, tab)
            page.wait_for_timeout(1500)                           # charts size themselves once drawn
            widths[tab] = page.evaluate("() => document.documentElement.scrollWidth")
            page.screenshot(path=str(SCREENS / f"metrics-{tab.lower().replace(' ', '-')}-800.png"), full_page=True)
        page.get_by_role("link", name="Galleries").click()
        page.get_by_role("heading", name="Galleries").wait_for(timeout=60_000)
        wait_idle(page)
        widths["galleries"] = page.evaluate("() => document.documentElement.scrollWidth")
        assert all(w <= 800 for w in widths.values()), widths
    finally:
        page.set_viewport_size({"width": WIDTH, "height": HEIGHT})


def test_every_request_went_to_the_app_itself(app, requests):
    url, _ = app
    assert len(requests) > 20
    outside = sorted({r for r in requests if not r.startswith(url) and not r.startswith(LOCAL)})
    assert outside == []


def test_a_page_url_opened_first_after_a_restart_gets_the_apps_navigation(page, tmp_path):
    """The first visit to a fresh server is /metrics (a bookmark, a tab reconnecting): Streamlit
    would run pages/metrics.py alone and list every file of pages/ as a page (common.py too), for
    every later session as well; the page reruns itself through app.py instead."""
    fresh = page.context.browser.new_page(viewport=page.viewport_size)      # the same Playwright, a new tab
    with app_server(tmp_path, tmp_path / "streamlit.log") as url:
        fresh.goto(url + "/metrics")
        fresh.get_by_role("heading", name="Metrics").wait_for(timeout=120_000)
        wait_idle(fresh)
        nav = fresh.locator('[data-testid="stSidebarNav"] a')
        assert [re.sub(r"^\w+\s+", "", t).strip() for t in nav.all_inner_texts()] == ["Search", "Metrics", "Galleries"]
        fresh.get_by_text("No evaluation runs yet").wait_for(timeout=60_000)   # the heading can come first (a CI run read the body between them)
        assert fresh.url.endswith("/metrics")
        fresh.goto(url + "/galleries")                        # and a second session is not sent back to v1
        fresh.get_by_role("heading", name="Galleries").wait_for(timeout=60_000)
        assert len(fresh.locator('[data-testid="stSidebarNav"] a').all()) == 3
    fresh.close()
