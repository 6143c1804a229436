"""The explorer in a real browser: Debian's chromium, headless, driven by Playwright (the
system chromium, no browser download), against `dbksvd serve` in a subprocess and against the
static export opened from file://. Screenshots go to $DBKSVD_ARTIFACTS/screenshots (default
test-artifacts/screenshots)."""

import io
import os
import shutil
from pathlib import Path

import pytest
from explorer_checks import serving

playwright = pytest.importorskip(
    "playwright.sync_api", reason="the browser tests need playwright: pip install playwright"
)

CHROMIUM = os.environ.get("DBKSVD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = Path(os.environ.get("DBKSVD_ARTIFACTS", "test-artifacts")) / "screenshots"
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:  # the README's test command installs it: fail, rather than skip quietly
        pytest.fail("no chromium found: apt-get install -y chromium (or set DBKSVD_CHROMIUM)", pytrace=False)
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(emoji_run):
    """`dbksvd serve` on a port the system chooses; its URL, read from the server's output."""
    with serving(emoji_run) as url:
        yield url


def _page(browser):
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    return page


def _open(page, url):
    page.goto(url)
    page.wait_for_selector("main[data-ready]")


def _shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_function("[...document.images].every(i => i.complete)")
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _browse(page, base, label):
    """Overview, gallery, atom page, search and decompose, asserting on what is rendered."""
    _open(page, base + "#/")
    assert page.inner_text("h1") == "Run emoji"
    table = page.inner_text("table")
    for name in ("model-image", "model-image-topk", "model-text"):
        assert name in table
    assert "descriptions of model-text" in page.inner_text("#missing")
    assert page.locator("svg.chart").count() == 2  # explained signal, faithfulness vs random
    _shot(page, f"{label}-overview")

    _open(page, base + "#/gallery/model-image?sort=faithfulness")
    cards = page.locator(".atom-card")
    assert cards.count() == 48
    assert "page 1 of 2 · 64 of 64 atoms" in page.inner_text(".page-info")
    first = [float(t.split()[1]) for t in cards.locator(".badge").all_inner_texts()[:6:3]]
    assert first == sorted(first, reverse=True)  # F badges of the first two cards
    thumbs = page.locator(".atom-card img.thumb")
    assert thumbs.count() > 48
    page.wait_for_function(
        "[...document.querySelectorAll('.atom-card img.thumb')].slice(0, 8).every(i => i.naturalWidth > 0)"
    )
    page.locator(".pager button", has_text="next").first.click()
    page.wait_for_function(
        "document.querySelector('.page-info') && document.querySelector('.page-info').textContent.includes('page 2')"
    )
    assert page.locator(".atom-card").count() == 16
    _shot(page, f"{label}-gallery")

    page.fill("#gallery-controls input[name=q]", "face")
    page.click("#gallery-controls button[type=submit]")
    page.wait_for_function("location.hash.includes('q=face')")
    page.wait_for_selector("main[data-ready]")
    assert page.locator(".atom-card").count() >= 1
    assert page.locator(".atom-card .description .muted").count() == 0  # every card kept is described
    page.wait_for_function("location.hash.includes('q=face')")
    page.locator(".atom-card").first.click()
    page.wait_for_function("location.hash.startsWith('#/atom/')")
    page.wait_for_selector("#atom-title")
    assert page.inner_text("#atom-title").startswith("Atom ")
    assert page.locator("svg.histogram rect").count() == 21
    assert page.locator("#nearest li").count() == 5
    assert page.locator("section.side .item").count() >= 3
    _shot(page, f"{label}-atom")

    _open(page, base + "#/search")
    page.fill("#search-form input[name=q]", "cat")
    page.click("#search-form button")
    page.wait_for_selector("#search-results")
    items = page.inner_text("#search-items")
    assert "cat face" in items
    assert page.locator("#search-results .atom-card").count() >= 1
    _shot(page, f"{label}-search")

    _open(page, base + "#/decompose")
    page.fill("#item-picker input[name=q]", "coffin")
    page.click("#item-picker button")
    page.locator("#item-list .item", has_text="coffin").first.click()
    page.wait_for_selector(".decompose-model")
    assert page.inner_text("#item-title") == "coffin"
    models = page.locator(".decompose-model")
    assert models.count() == 3
    assert sorted(models.evaluate_all("els => els.map(e => e.dataset.model)")) == [
        "model-image",
        "model-image-topk",
        "model-text",
    ]
    for i in range(3):
        text = models.nth(i).inner_text()
        assert "explained signal 0." in text and models.nth(i).locator("ol.code li").count() >= 1
    _shot(page, f"{label}-decompose")


def test_served_explorer_in_chromium(browser, server, emoji_store):
    page = _page(browser)
    _browse(page, server, "served")
    # upload a real emoji image: its code under both image models
    from dbksvd.data import EmojiDataset, Item

    meta = emoji_store.metadata()
    row = next(i for i, m in enumerate(meta) if m["caption"] == "red apple")
    buf = io.BytesIO()
    EmojiDataset().load(Item(**meta[row])).save(buf, format="PNG")
    _open(page, server + "#/decompose")
    page.set_input_files(
        "#upload-form input[type=file]",
        files=[{"name": "apple.png", "mimeType": "image/png", "buffer": buf.getvalue()}],
    )
    page.click("#upload-form button")
    page.wait_for_selector(".decompose-model")
    assert page.inner_text("#item-title") == "uploaded image"
    assert page.locator(".decompose-model").count() == 2  # the image models
    _shot(page, "served-upload")
    assert not page.errors, page.errors
    page.close()


def test_static_export_in_chromium_from_file_url(browser, emoji_run, tmp_path_factory):
    from dbksvd.web.export import export_site

    out = tmp_path_factory.mktemp("site") / "site"
    counts = export_site(emoji_run, out, show_progress=False)
    assert counts["models"] == 3 and counts["atoms"] == 192 and (out / "index.html").is_file()
    page = _page(browser)
    _browse(page, (out / "index.html").as_uri(), "static")
    assert page.locator("#upload-form").count() == 0  # no server, no upload
    assert not page.errors, page.errors
    page.close()
