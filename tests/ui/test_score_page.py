"""The scoring page of a real `visionml serve` (GET /ui) in Debian's Chromium: an uploaded image is
drawn with exactly the boxes the API returns above the slider's threshold (one image or several),
the slider (by mouse or keyboard) redraws without a request, explanations are drawn as heat maps, and an API key is
asked once and kept for the tab only."""

from __future__ import annotations

import base64

import httpx
import pytest

from .helpers import API_KEY, VisionmlProcess, chromium_page, needs_browser, unlabelled_controls

pytestmark = pytest.mark.slow
ALGORITHMS = ("xrai", "integrated_gradients", "guided_gradcam", "guided_backprop")


@pytest.fixture(scope="module")
def det_server(detector, tmp_path_factory):
    needs_browser()
    with VisionmlProcess(tmp_path_factory.mktemp("serve-det"), "serve", "--model", str(detector),
                         ready_path="/ready") as server:
        yield server


@pytest.fixture(scope="module")
def cls_server(classifier, tmp_path_factory):
    needs_browser()
    with VisionmlProcess(tmp_path_factory.mktemp("serve-cls"), "serve", "--model", str(classifier),
                         "--api-key", API_KEY, ready_path="/ready") as server:
        yield server


def _score(server, image, key=None):
    body = {"input_data": {"columns": ["image"], "data": [base64.b64encode(image.read_bytes()).decode()]}}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    answer = httpx.post(server.url + "/score", json=body, headers=headers, timeout=120)
    assert answer.status_code == 200, answer.text
    return answer.json()[0]


def _score_requests(page) -> int:
    return page.requests.count(("POST", "/score"))


def _drawn(page) -> int:
    return page.locator("article.result svg.overlay rect.box").count()


def test_the_boxes_drawn_are_the_apis_above_the_threshold(det_server, det_data, tmp_path):
    images = sorted((det_data["train"].parent / "images").glob("*.jpg"))
    image = images[0]
    scores = sorted(b["score"] for b in _score(det_server, image)["boxes"])
    assert len(scores) >= 4 and scores[-1] - scores[0] > 0.1, f"the detector should spread its scores: {scores}"
    with chromium_page(tmp_path / "profile") as page:
        page.goto(det_server.url + "/ui")
        page.wait_for_selector("body[data-ready=true]")
        assert page.input_value("#threshold") == "0.3"  # the server's box_score_threshold
        page.set_input_files("#file", str(image))
        page.wait_for_selector("article.result[data-state=drawn]")
        assert _drawn(page) == len(scores)  # the API returns the boxes at or above 0.3
        requests = _score_requests(page)
        middle = round(scores[len(scores) // 2], 2)
        page.fill("#threshold", f"{middle:.2f}")
        assert _drawn(page) == sum(s >= middle for s in scores) < len(scores)
        assert page.locator("article.result .message").inner_text().startswith(
            f"{sum(s >= middle for s in scores)} of {len(scores)} boxes")
        for _ in range(25):  # the slider is reached with Tab and moved with the keys
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "threshold":
                break
        assert page.evaluate("document.activeElement.id") == "threshold"
        page.keyboard.press("End")
        assert _drawn(page) == sum(s >= 1.0 for s in scores) == 0
        page.keyboard.press("Home")
        assert _drawn(page) == len(scores)
        page.keyboard.press("PageUp")
        step = float(page.input_value("#threshold"))
        assert 0 < step < 1 and _drawn(page) == sum(s >= step for s in scores)
        labels = page.locator("article.result svg.overlay text").all_text_contents()
        assert len(labels) == _drawn(page) and all(text.rsplit(" ", 1)[0] in
                                                   ("circle", "square", "star", "triangle") for text in labels)
        assert _score_requests(page) == requests == 1  # the slider redraws from the answer already here

        page.fill("#threshold", f"{middle:.2f}")
        others = images[1:3]  # several at once: each drawn with its own answer above the slider
        page.set_input_files("#file", [str(p) for p in others])
        page.wait_for_function("() => document.querySelectorAll('article.result[data-state=drawn]').length === 3")
        for other in others:
            answer = [b["score"] for b in _score(det_server, other)["boxes"]]
            drawn = page.locator(f'article.result[data-name="{other.name}"] svg.overlay rect.box').count()
            assert drawn == sum(s >= middle for s in answer), other.name
        dropped = images[3]  # dropped on the page rather than picked
        page.evaluate("""([b64, name]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const data = new DataTransfer();
            data.items.add(new File([bytes], name, {type: 'image/jpeg'}));
            document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));
        }""", [base64.b64encode(dropped.read_bytes()).decode(), dropped.name])
        page.wait_for_selector(f'article.result[data-name="{dropped.name}"][data-state=drawn]')
        answer = [b["score"] for b in _score(det_server, dropped)["boxes"]]
        assert page.locator(f'article.result[data-name="{dropped.name}"] svg.overlay rect.box').count() == sum(
            s >= middle for s in answer)
        assert unlabelled_controls(page) == []
        page.screenshot(path=str(tmp_path / "score-detection.png"), full_page=True)
        assert page.errors == []
        assert httpx.get(det_server.url + "/ui/config.json").json()["api_key_required"] is False


def test_explanations_are_drawn_and_the_key_is_kept_for_the_tab_only(cls_server, cls_data, tmp_path):
    image = sorted((cls_data["train"].parent / "images").glob("*.jpg"))[0]
    expected = _score(cls_server, image, API_KEY)
    with chromium_page(tmp_path / "profile") as page:
        page.goto(cls_server.url + "/ui")
        page.wait_for_selector("body[data-ready=true]")
        assert page.is_visible("#key-form")  # asked at once: the server needs a key
        page.set_input_files("#file", str(image))
        page.fill("#api-key", "not-the-key")
        page.click("#key-form button[type=submit]")
        page.wait_for_selector("#key-error:has-text('refused')")  # a 401 asks again
        page.fill("#api-key", API_KEY)
        page.press("#api-key", "Enter")
        page.wait_for_selector("article.result[data-state=drawn]")
        assert page.evaluate("sessionStorage.getItem('visionml-api-key')") == API_KEY
        assert page.evaluate("localStorage.length") == 0 and "page-test-key" not in page.context.cookies().__repr__()
        top = max(range(len(expected["probs"])), key=expected["probs"].__getitem__)
        assert page.locator("article.result .message").inner_text().startswith(expected["labels"][top])
        assert page.locator("article.result .probs li").count() == len(expected["labels"])
        assert unlabelled_controls(page) == []
        for algorithm in ALGORITHMS:
            page.select_option("#algorithm", algorithm)
            page.click("article.result button.explain")
            page.wait_for_function("a => document.querySelector('article.result').dataset.explained === a && "
                                   "!document.querySelector('article.result button.explain').disabled", arg=algorithm)
            heat = page.evaluate("""() => {
                const c = document.querySelector('article.result canvas.heatmap');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let lit = 0, colours = new Set();
                for (let i = 0; i < d.length; i += 4) { if (d[i + 3] > 0) lit++; colours.add(d[i] * 65536 + d[i + 1] * 256 + d[i + 2]); }
                return {hidden: c.hidden, width: c.width, lit, colours: colours.size, shown: c.getBoundingClientRect().width};
            }""")
            assert not heat["hidden"] and heat["width"] == 64 and heat["lit"] == 64 * 64 and heat["shown"] > 50
            assert heat["colours"] > 1, f"{algorithm}: the heat map is one flat colour"
            picture = page.locator("article.result .visualization img")
            assert picture.count() == 1 and picture.evaluate("img => img.complete && img.naturalWidth > 0")
            page.screenshot(path=str(tmp_path / f"explain-{algorithm}.png"), full_page=True)
        assert page.errors == []
        other_tab = page.context.new_page()  # sessionStorage is per tab: a new tab asks again
        other_tab.goto(cls_server.url + "/ui")
        other_tab.wait_for_selector("body[data-ready=true]")
        assert other_tab.is_visible("#key-form")
        assert other_tab.evaluate("sessionStorage.getItem('visionml-api-key')") is None
