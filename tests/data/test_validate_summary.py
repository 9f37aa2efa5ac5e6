"""The two ways to a summary (records kept, or counted as they stream by) agree, line for line."""

from __future__ import annotations

import pytest
from .jsonl_testdata import box, poly, write_jsonl

from visionml.data import validate
from visionml.data.reader import load_dataset
from visionml.data.validate import format_summary, scan_dataset, summarize

DETAILS = {"format": "png", "width": "640px", "height": 480}
FILES = {
    "multiclass": [{"image_url": "a.jpg", "label": "cat", "image_details": DETAILS},
                   {"image_url": "b.jpg", "label": "dog"}, {"image_url": "a.jpg", "label": "cat"},
                   {"image_url": "c.jpg", "label": ["cat"]}, "{oops"],
    "multilabel": [{"image_url": "a.jpg", "label": ["cat", "dog"]}, {"image_url": "b.jpg", "label": []},
                   {"image_url": "c.jpg", "label": ["dog"], "image_details": {"width": 10, "height": 20}},
                   {"image_url": "d.jpg", "label": "dog"}],
    "detection": [{"image_url": "a.jpg", "label": [box("cat"), box("dog", isCrowd=1)], "image_details": DETAILS},
                  {"image_url": "b.jpg", "label": []}, {"image_url": "c.jpg", "label": [box("cat", x1=3.0)]},
                  {"image_url": "d.jpg", "label": [poly("cat")]}, {"image_url": "e.jpg", "label": [box("cat")]}],
    "segmentation": [{"image_url": "a.jpg", "label": [poly("can"), poly("can")]},
                     {"image_url": "b.jpg", "label": [poly("carton")]}, {"image_url": "c.jpg", "label": [box()]},
                     {"image_url": "d.jpg", "label": [poly("can")]}],
}


@pytest.mark.parametrize("batch", [1, 2, 1024])
@pytest.mark.parametrize("name", list(FILES))
def test_streamed_summary_equals_the_loaded_one(tmp_path, monkeypatch, name, batch):
    monkeypatch.setattr(validate, "_BATCH", batch)
    src = write_jsonl(tmp_path / f"{name}.jsonl", FILES[name])
    loaded = load_dataset(src, check_images=False)
    streamed, problems, warnings = scan_dataset(src)
    assert streamed == summarize(loaded)
    assert [(p.line, p.field, p.reason, p.raw, p.training) for p in problems] == \
        [(p.line, p.field, p.reason, p.raw, p.training) for p in loaded.problems]
    assert [(w.line, w.field, w.reason) for w in warnings] == [(w.line, w.field, w.reason) for w in loaded.warnings]
    assert problems  # every file above has at least one bad line


def test_summary_figures(tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", FILES["detection"])
    summary, _, _ = scan_dataset(src, "object-detection")
    assert summary["task"] == "image_object_detection" and summary["task_inferred"] is False
    assert (summary["images"], summary["invalid_lines"], summary["objects"], summary["crowd_objects"]) == (3, 2, 3, 1)
    assert summary["classes"] == [{"name": "cat", "boxes": 2}, {"name": "dog", "boxes": 1}]
    assert summary["images_without_labels"] == 1
    assert summary["image_sizes"] == {"known": 1, "min": {"width": 640, "height": 480},
                                      "median": {"width": 640, "height": 480}, "max": {"width": 640, "height": 480}}
    text = format_summary(summary)
    assert "Task:    image_object_detection\n" in text and "Objects: 3 (1 marked isCrowd)" in text
