"""`visionml view`'s data over HTTP from a real server: the same matching as `visionml evaluate`,
the problems by FILE:LINE, the export in the training schema, and predictions read from a
`visionml predict` file giving what the model gives."""

from __future__ import annotations

import json

import httpx
import pytest

from visionml.cli import main

from tests.support import ThreadServer

from .conftest import with_bad_line


@pytest.fixture(scope="module")
def scored_view(det_data, detector, tmp_path_factory):
    from visionml.data.thumbnails import ThumbnailCache
    from visionml.view import build_view, create_view_app

    view = build_view(det_data["train"], model=detector)
    with ThreadServer(create_view_app(view, thumbnails=ThumbnailCache(tmp_path_factory.mktemp("thumbs")))) as server:
        yield server, httpx.get(server.url + "/api/dataset", timeout=60).json()


def test_outcomes_add_up_to_what_evaluate_reports(scored_view, det_data, detector, tmp_path):
    _, doc = scored_view
    assert main(["evaluate", "--model", str(detector), "--data", str(det_data["train"]),
                 "--output", str(tmp_path / "metrics.json")]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    labels = doc["labels"]
    per_class = {name: [0, 0] for name in labels}
    for image in doc["images"]:
        for p in image["predictions"]:
            per_class[p["label"]][0 if p["outcome"] == "tp" else 1] += 1
    assert per_class == {name: [metrics["per_label"][name]["true_positives"], metrics["per_label"][name]["false_positives"]]
                         for name in labels}
    # Azure's matrix at the deployed threshold (0.3) is the view's, less its extra row of unmatched boxes
    azure = metrics["confusion_matrix_score_threshold_0.3"]["data"]["matrix"][:-1]
    confusion = doc["predictions"]["confusion"]
    assert confusion["counts"][:-1] == azure
    assert confusion["rows"][:-1] == labels and confusion["columns"] == [*labels, "Missed"]
    # missed: objects no prediction of their class matched (the per-class recall's complement)
    missed = sum(im["outcome"]["missed"] for im in doc["images"])
    assert missed == sum(v["num_ground_truth"] - v["true_positives"] for v in metrics["per_label"].values())
    assert doc["predictions"]["metrics"]["values"]["mean_average_precision"] == pytest.approx(
        metrics["mean_average_precision"])


def test_every_cell_lists_the_images_behind_it(scored_view):
    _, doc = scored_view
    confusion = doc["predictions"]["confusion"]
    for r, row in enumerate(confusion["images"]):
        for k, ids in enumerate(row):
            assert (len(ids) > 0) == (confusion["counts"][r][k] > 0)
            for i in ids:
                image = doc["images"][i]
                if k == len(confusion["columns"]) - 1:  # Missed
                    assert image["outcome"]["missed"] > 0
                elif r == len(confusion["rows"]) - 1:  # predictions overlapping no labelled object
                    assert any(p["label"] == confusion["columns"][k] and p["outcome"] == "fp"
                               for p in image["predictions"])
                else:
                    assert confusion["rows"][r] in image["classes"]


def test_likely_label_mistakes_are_ranked_and_export_as_training_data(scored_view, tmp_path):
    server, doc = scored_view
    suspects = doc["predictions"]["suspects"]
    assert suspects and [s["score"] for s in suspects] == sorted((s["score"] for s in suspects), reverse=True)
    ids = [s["id"] for s in suspects[:3]]
    answer = httpx.post(server.url + "/api/export", json={"ids": ids}, timeout=30)
    assert answer.status_code == 200 and "relabel.jsonl" in answer.headers["content-disposition"]
    exported = tmp_path / "elsewhere" / "relabel.jsonl"
    exported.parent.mkdir()
    exported.write_bytes(answer.content)
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert [len(line["label"]) for line in lines] == [len(doc["images"][i]["objects"]) for i in ids]
    assert all(line["image_url"].startswith("/") and {"label", "topX", "bottomY"} <= set(line["label"][0])
               for line in lines)
    # absolute image paths: the subset validates and converts from another folder
    assert main(["validate", str(exported)]) == 0
    coco = tmp_path / "elsewhere" / "relabel-coco.json"
    assert main(["convert", str(exported), "--from", "jsonl", "--to", "coco", "-o", str(coco)]) == 0
    converted = json.loads(coco.read_text())
    assert len(converted["images"]) == len(ids) and len(converted["annotations"]) == sum(len(x["label"]) for x in lines)
    assert httpx.post(server.url + "/api/export", json={"ids": [10_000]}, timeout=30).status_code == 400


def test_problems_are_listed_by_file_and_line(det_data, tmp_path):
    from visionml.data.thumbnails import ThumbnailCache
    from visionml.view import build_view, create_view_app

    bad = det_data["train"].parent / "with_bad_line.jsonl"  # beside the images its lines name
    bad, line, last = with_bad_line(det_data["train"], bad)
    with ThreadServer(create_view_app(build_view(bad), thumbnails=ThumbnailCache(tmp_path))) as server:
        doc = httpx.get(server.url + "/api/dataset", timeout=60).json()
        thumb = httpx.get(server.url + "/api/thumb/0", timeout=60)
        large = httpx.get(server.url + "/api/image/0", timeout=60)
    listed = [(p["where"], p["field"], p["image"]) for p in doc["problems"]]
    flagged = [im for im in doc["images"] if "data problem" in im["flags"]]
    assert [im["where"] for im in flagged] == [f"{bad}:{line}"]
    assert listed == [(f"{bad}:{line}", "label[0].bottomX", flagged[0]["id"]), (f"{bad}:{last}", "line", None)]
    assert flagged[0]["problems"][0].startswith(f"{bad}:{line}: label[0].bottomX: 1.7 is outside [0, 1]")
    assert thumb.headers["content-type"] == "image/jpeg" and len(thumb.content) > 500
    assert max(_size(thumb.content)) <= 256 and _size(large.content) == (160, 120)


def _size(jpeg: bytes):
    import io

    from PIL import Image

    return Image.open(io.BytesIO(jpeg)).size


def test_a_predictions_file_gives_what_the_model_gives(scored_view, det_data, detector, tmp_path):
    from visionml.view import build_view, page_json

    _, doc = scored_view
    preds = tmp_path / "preds.jsonl"
    assert main(["predict", "--model", str(detector), str(det_data["train"]), "--output", str(preds)]) == 0
    from_file = json.loads(page_json(build_view(det_data["train"], predictions=preds)))
    assert [im["outcome"] for im in from_file["images"]] == [im["outcome"] for im in doc["images"]]
    assert from_file["predictions"]["confusion"]["counts"] == doc["predictions"]["confusion"]["counts"]


def _answer(filename, boxes):
    return {"filename": str(filename), "boxes": [
        {"box": dict(zip(("topX", "topY", "bottomX", "bottomY"), box)), "label": label, "score": score}
        for label, box, score in boxes]}


def test_hand_made_predictions_get_the_outcomes_they_were_made_to_have(det_data, tmp_path):
    """Image 1: every object found; 2: its first object given another class; 3: nothing predicted;
    4: every object found plus a box where nothing is labelled."""
    from visionml.view import build_view, page_json

    lines = [json.loads(line) for line in det_data["train"].read_text().splitlines()][:4]
    images = det_data["train"].parent
    objects = [[(o["label"], [o["topX"], o["topY"], o["bottomX"], o["bottomY"]]) for o in line["label"]]
               for line in lines]
    other = {"circle": "square", "square": "star", "star": "triangle", "triangle": "circle"}
    answers = [
        _answer(images / lines[0]["image_url"], [(label, box, 0.9) for label, box in objects[0]]),
        _answer(images / lines[1]["image_url"], [(other[objects[1][0][0]], objects[1][0][1], 0.8),
                                                 *[(label, box, 0.9) for label, box in objects[1][1:]]]),
        _answer(images / lines[2]["image_url"], []),
        _answer(images / lines[3]["image_url"], [*[(label, box, 0.9) for label, box in objects[3]],
                                                 ("star", [0.0, 0.0, 0.02, 0.02], 0.7)]),
    ]
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(a) + "\n" for a in answers))
    doc = json.loads(page_json(build_view(det_data["train"], predictions=preds)))
    n = [len(o) for o in objects]
    assert [im["outcome"] for im in doc["images"][:4]] == [
        {"tp": n[0], "fp": 0, "missed": 0}, {"tp": n[1] - 1, "fp": 1, "missed": 1},
        {"tp": 0, "fp": 0, "missed": n[2]}, {"tp": n[3], "fp": 1, "missed": 0}]
    assert all("no prediction" in im["flags"] for im in doc["images"][4:])
    confusion = doc["predictions"]["confusion"]
    labels = doc["labels"]
    wrong = (labels.index(objects[1][0][0]), labels.index(other[objects[1][0][0]]))
    assert confusion["images"][wrong[0]][wrong[1]] == [1]
    assert confusion["images"][len(labels)][labels.index("star")] == [3]  # the box on nothing
    assert [s["id"] for s in doc["predictions"]["suspects"]][:2] == [1, 3]  # 0.8 wrong class, then 0.7
    assert doc["predictions"]["suspects"][0]["reasons"][0].startswith(f"the model sees a {other[objects[1][0][0]]}")


def test_thumbnails_are_made_once(det_data, tmp_path):
    from visionml.data.thumbnails import ThumbnailCache

    cache = ThumbnailCache(tmp_path / "thumbs")
    image = sorted((det_data["train"].parent / "images").glob("*.jpg"))[0]
    first = cache.get(image)
    (stored,) = list((tmp_path / "thumbs").rglob("*.jpg"))
    stored.write_bytes(b"cached")  # a second request reads the file instead of decoding again
    assert cache.get(image) == b"cached" and first[:2] == b"\xff\xd8"


def test_a_classifier_view_has_evaluates_confusion_matrix(cls_data, classifier, tmp_path):
    from visionml.data.thumbnails import ThumbnailCache
    from visionml.view import build_view, create_view_app

    assert main(["evaluate", "--model", str(classifier), "--data", str(cls_data["train"]),
                 "--output", str(tmp_path / "metrics.json")]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    view = build_view(cls_data["train"], model=classifier)
    with ThreadServer(create_view_app(view, thumbnails=ThumbnailCache(tmp_path / "thumbs"))) as server:
        doc = httpx.get(server.url + "/api/dataset", timeout=60).json()
    confusion = doc["predictions"]["confusion"]
    assert confusion["rows"] == confusion["columns"] == metrics["confusion_matrix"]["data"]["class_labels"]
    assert confusion["counts"] == metrics["confusion_matrix"]["data"]["matrix"]
    images = doc["images"]
    for r, row in enumerate(confusion["images"]):
        for k, ids in enumerate(row):
            assert all(images[i]["label"] == confusion["rows"][r] and images[i]["prediction"]["label"] ==
                       confusion["columns"][k] for i in ids)
    right = [im["outcome"]["correct"] for im in images]
    assert sum(right) / len(right) == pytest.approx(metrics["accuracy"])
    assert doc["predictions"]["metrics"]["values"]["accuracy"] == pytest.approx(metrics["accuracy"])
    # the likely label mistakes are the images the model gets wrong, its most confident first
    suspects = doc["predictions"]["suspects"]
    assert suspects, "an untrained classifier gets some of the 10 images wrong"
    assert sorted(s["id"] for s in suspects) == [im["id"] for im in images if not im["outcome"]["correct"]]
    assert [s["score"] for s in suspects] == sorted((s["score"] for s in suspects), reverse=True)
    assert all(s["score"] == pytest.approx(images[s["id"]]["prediction"]["score"], abs=1e-4) for s in suspects)
    assert all("model mistake" in images[s["id"]]["flags"] and "wrong class" in images[s["id"]]["flags"]
               for s in suspects)


def test_segmentation_predictions_on_the_labelled_polygons_are_all_found(tmp_path):
    """A predictions file whose masks are the labelled polygons (one shifted off its object):
    every other object is a true positive by mask IoU, and the page draws each prediction's polygon."""
    from visionml.data.sample import make_sample_data
    from visionml.view import build_view, page_json

    data = make_sample_data("image_instance_segmentation", tmp_path / "seg", n=6, seed=0, size=(160, 120))
    lines = [json.loads(line) for line in data["train"].read_text().splitlines()]
    answers = []
    for n, line in enumerate(lines):
        boxes = []
        for k, obj in enumerate(line["label"]):
            polygon = [list(ring) for ring in obj["polygon"]]
            if n == 0 and k == 0:  # moved to the far corner: a false positive and a missed object
                polygon = [[0.0, 0.0, 0.03, 0.0, 0.03, 0.03, 0.0, 0.03]]
            xs, ys = polygon[0][0::2], polygon[0][1::2]
            boxes.append({"box": {"topX": min(xs), "topY": min(ys), "bottomX": max(xs), "bottomY": max(ys)},
                          "label": obj["label"], "score": 0.9, "polygon": polygon})
        answers.append({"filename": str(data["train"].parent / line["image_url"]), "boxes": boxes})
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(a) + "\n" for a in answers))
    doc = json.loads(page_json(build_view(data["train"], predictions=preds)))
    n = [len(line["label"]) for line in lines]
    assert [im["outcome"] for im in doc["images"]] == [
        {"tp": n[0] - 1, "fp": 1, "missed": 1}, *({"tp": k, "fp": 0, "missed": 0} for k in n[1:])]
    first = doc["images"][0]
    assert [p["outcome"] for p in first["predictions"]] == ["fp", *["tp"] * (n[0] - 1)]
    assert first["found"] == [False, *[True] * (n[0] - 1)]
    for image, line in zip(doc["images"], lines):
        assert all(p["polygon"] and len(p["polygon"][0]) >= 6 for p in image["predictions"])
        # the drawn polygon is the mask traced back: within a few pixels of the labelled one
        for p, obj in list(zip(image["predictions"], line["label"]))[1 if image["id"] == 0 else 0:]:
            xs = p["polygon"][0][0::2]
            assert abs(min(xs) - min(obj["polygon"][0][0::2])) * 160 <= 3
    assert doc["predictions"]["suspects"][0]["id"] == 0


def with_broken_images(src, dst):
    """A copy of the JSONL ``src`` at ``dst`` (beside its images) whose first line names a truncated
    copy of its image and whose second names a file that is not there. Returns ``(dst, the
    truncated line's number, the missing one's)``."""
    lines = [json.loads(line) for line in src.read_text(encoding="utf-8").splitlines()]
    image = src.parent / lines[0]["image_url"]
    cut = src.parent / "broken" / "cut_short.jpg"  # not in images/, which other tests list
    cut.parent.mkdir(exist_ok=True)
    cut.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    lines[0]["image_url"] = str(cut.relative_to(src.parent))
    lines[1]["image_url"] = "images/not_there.jpg"
    dst.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return dst, 1, 2


def test_the_page_opens_on_the_lines_and_then_lists_the_images_training_would_drop(det_data, tmp_path):
    """As `visionml view DATA` serves it: the first document comes from the lines alone (no image
    opened), the checked one has training's image problems, and the ids stay those of the first."""
    from visionml.data.thumbnails import ThumbnailCache
    from visionml.view import build_view, checked_view, create_view_app, lines_view, page_json

    data, cut, missing = with_broken_images(det_data["train"], det_data["train"].parent / "broken_images.jsonl")
    first = json.loads(page_json(lines_view(data)))
    assert first["checked"] is False and first["problems"] == []
    assert [im["where"] for im in first["images"][:2]] == [f"{data}:{cut}", f"{data}:{missing}"]
    app = create_view_app(lines_view(data), thumbnails=ThumbnailCache(tmp_path), complete=checked_view)
    with ThreadServer(app) as server:
        checked = httpx.get(server.url + "/api/dataset?checked=1", timeout=120).json()
        latest = httpx.get(server.url + "/api/dataset", timeout=60).json()
        thumb = httpx.get(server.url + "/api/thumb/0", timeout=60)
        audit = _audit(server)
    assert checked["checked"] is True and latest == checked
    assert [im["where"] for im in checked["images"]] == [im["where"] for im in first["images"]]
    # the problems are exactly those training reports, each leading to its image
    training = build_view(data)
    assert [p["text"] for p in checked["problems"]] == [str(p) for p in training.loaded.problems]
    assert [(p["where"], p["field"], p["image"]) for p in checked["problems"]] == [
        (f"{data}:{cut}", "image_url", 0), (f"{data}:{missing}", "image_url", 1)]
    assert all("data problem" in checked["images"][i]["flags"] for i in (0, 1))
    assert thumb.status_code == 404 and f"{data}:{cut}" in thumb.json()["error"]
    assert [im["width"] for im in checked["images"][2:]] == [r.width for r in training.loaded.records]
    assert audit["images"]["training"] == len(training.loaded.records) == len(checked["images"]) - 2


def _audit(server):
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = httpx.get(server.url + "/api/audit", timeout=30).json()
        if state["state"] in ("done", "failed"):
            assert state["state"] == "done", state["error"]
            return state["report"]
        time.sleep(0.2)
    raise AssertionError("the audit did not finish in 120 s")
