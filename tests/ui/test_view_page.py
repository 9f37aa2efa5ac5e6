"""`visionml view` in Debian's Chromium against a real server: the invalid lines are listed by
FILE:LINE and lead to their image, the filters narrow the grid, a confusion-matrix cell opens
the images behind it, and the likely label mistakes download as JSONL; the audit's figures show."""

from __future__ import annotations

import json

import httpx
import pytest

from .conftest import with_bad_line
from .helpers import VisionmlProcess, chromium_page, needs_browser, unlabelled_controls

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _browser():
    needs_browser()


def test_a_jsonl_with_bad_lines_lists_them_and_leads_to_the_image(det_data, tmp_path):
    bad, line, last = with_bad_line(det_data["train"], det_data["train"].parent / "page_bad_line.jsonl")
    with VisionmlProcess(tmp_path, "view", str(bad), "--cache-dir", str(tmp_path / "thumbs"),
                         ready_path="/api/dataset") as view, chromium_page(tmp_path / "profile") as page:
        page.goto(view.url + "/")
        page.wait_for_selector("body[data-ready=true]")
        kept = len(bad.read_text().splitlines()) - 1
        assert page.locator("#grid .tile").count() == kept
        page.wait_for_function("() => [...document.querySelectorAll('#grid .tile img')].every(i => i.complete && i.naturalWidth > 0)")
        assert page.locator("#grid .tile svg.overlay rect.box").count() == sum(
            len(json.loads(text)["label"]) for text in bad.read_text().splitlines()[:-1]) - 1  # one box dropped

        assert unlabelled_controls(page) == []
        page.click("#tab-problems")
        assert page.inner_text("#tab-problems") == "Problems (2)"
        assert unlabelled_controls(page) == []
        row = page.locator(f'#problems-table tr[data-where="{bad}:{line}"]')
        assert row.locator("td").nth(1).inner_text() == "label[0].bottomX"
        assert "outside [0, 1]" in row.locator("td").nth(2).inner_text()
        assert page.locator(f'#problems-table tr[data-where="{bad}:{last}"]').inner_text().count("invalid JSON") == 1
        page.screenshot(path=str(tmp_path / "view-problems.png"), full_page=True)
        row.locator("button").click()
        assert page.is_visible("#detail") and f"{bad}:{line}" in page.inner_text("#detail-title")
        assert "1.7 is outside [0, 1]" in page.inner_text("#detail-text")
        page.keyboard.press("Escape")
        assert not page.is_visible("#detail")

        page.click("#tab-images")
        page.select_option("#problem-filter", "data problem")
        assert page.locator("#grid .tile").count() == 1
        page.select_option("#problem-filter", "")
        page.select_option("#class-filter", "star")
        stars = sum(any(o["label"] == "star" for o in json.loads(text)["label"])
                    for text in bad.read_text().splitlines()[:-1])
        assert page.locator("#grid .tile").count() == stars

        # keyboard only: Tab reaches the tabs, the arrow keys move between them, Enter opens a tile
        page.evaluate("document.activeElement.blur()")
        for _ in range(10):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "tab-images":
                break
        assert page.evaluate("document.activeElement.id") == "tab-images"
        page.keyboard.press("ArrowRight")
        assert page.evaluate("document.activeElement.id") == "tab-problems" and page.is_visible("#panel-problems")
        page.keyboard.press("ArrowLeft")
        assert page.is_visible("#panel-images") and not page.is_visible("#panel-problems")
        for _ in range(10):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.classList.contains('tile')"):
                break
        first = page.evaluate("document.activeElement.dataset.id")
        assert first == page.locator("#grid .tile").first.get_attribute("data-id")
        page.keyboard.press("Enter")
        assert page.is_visible("#detail") and page.evaluate("document.activeElement.id") == "detail-close"
        page.keyboard.press("Escape")
        assert not page.is_visible("#detail")
        assert page.errors == []


def test_a_confusion_cell_opens_its_images(det_data, detector, tmp_path):
    with VisionmlProcess(tmp_path, "view", str(det_data["train"]), "--model", str(detector), "--cache-dir",
                         str(tmp_path / "thumbs"), ready_path="/api/dataset") as view, \
            chromium_page(tmp_path / "profile") as page:
        doc = httpx.get(view.url + "/api/dataset", timeout=60).json()
        confusion = doc["predictions"]["confusion"]
        page.goto(view.url + "/")
        page.wait_for_selector("body[data-ready=true]")
        page.click("#tab-confusion")
        cells = [(r, k) for r, row in enumerate(confusion["images"]) for k, ids in enumerate(row) if ids]
        assert page.locator("#confusion button:not([disabled])").count() == len(cells)
        r, k = max(cells, key=lambda c: len(confusion["images"][c[0]][c[1]]))
        button = page.locator(f'#confusion button[data-row="{r}"][data-col="{k}"]')
        assert button.inner_text() == str(confusion["counts"][r][k])
        button.focus()
        page.keyboard.press("Enter")  # keyboard reachable
        ids = [int(t.get_attribute("data-id")) for t in page.locator("#cell-grid .tile").all()]
        assert ids == confusion["images"][r][k]
        assert f"{len(ids)} image(s)" in page.inner_text("#cell-title")
        assert unlabelled_controls(page) == []
        page.screenshot(path=str(tmp_path / "view-confusion.png"), full_page=True)

        page.click("#tab-mistakes")
        suspects = doc["predictions"]["suspects"]
        assert page.locator("#suspects > li").count() == len(suspects) > 0
        assert unlabelled_controls(page) == []
        first = page.locator("#suspects > li").first
        assert int(first.get_attribute("data-id")) == suspects[0]["id"]
        first.locator("input[type=checkbox]").check()
        with page.expect_download() as download:
            page.click("#export-selected")
        saved = tmp_path / "relabel.jsonl"
        download.value.save_as(saved)
        (line,) = [json.loads(text) for text in saved.read_text().splitlines()]
        assert [o["label"] for o in line["label"]] == [o["label"] for o in doc["images"][suspects[0]["id"]]["objects"]]
        assert line["image_url"].endswith(doc["images"][suspects[0]["id"]]["image_url"].split("/")[-1])

        page.click("#tab-audit")
        page.wait_for_function("() => document.querySelectorAll('#audit-figures img').length >= 4")
        page.wait_for_function("() => [...document.querySelectorAll('#audit-figures img')].every(i => i.complete && i.naturalWidth > 0)")
        assert "near-duplicate" in page.inner_text("#audit-status")
        page.screenshot(path=str(tmp_path / "view-audit.png"), full_page=True)
        assert page.errors == []


def test_the_images_training_would_drop_are_listed_once_checked(det_data, tmp_path):
    from .test_view_data import with_broken_images

    data, cut, missing = with_broken_images(det_data["train"], det_data["train"].parent / "page_broken.jsonl")
    with VisionmlProcess(tmp_path, "view", str(data), "--cache-dir", str(tmp_path / "thumbs")) as view, \
            chromium_page(tmp_path / "profile") as page:
        page.goto(view.url + "/")
        page.wait_for_selector("body[data-ready=true]")  # the checked document is drawn
        assert "checking" not in page.inner_text("#summary")
        assert page.inner_text("#tab-problems") == "Problems (2)"
        for line in (cut, missing):
            row = page.locator(f'#problems-table tr[data-where="{data}:{line}"]')
            assert row.locator("td").nth(1).inner_text() == "image_url"
            assert row.locator("td").nth(3).inner_text() == "dropped image"
        assert page.locator("#grid .tile").count() == len(data.read_text().splitlines())
        broken = page.locator('#grid .tile[data-id="0"]')
        assert "1 problem(s)" in broken.inner_text()
        page.wait_for_function("() => document.querySelector('#grid .tile[data-id=\"0\"] .figure').classList.contains('broken')")
        page.select_option("#problem-filter", "data problem")
        assert page.locator("#grid .tile").count() == 2
        page.screenshot(path=str(tmp_path / "view-broken-images.png"), full_page=True)
        assert page.errors == []
