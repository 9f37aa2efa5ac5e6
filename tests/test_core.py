"""The shared core: task names, coordinate conversions, records and the CLI shell."""

import numpy as np
import pytest

from visionml import geometry as g
from visionml.cli import main
from visionml.data.records import ImageRecord, ObjectLabel
from visionml.errors import UsageError
from visionml.tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION, TASKS, canonical_task


@pytest.mark.parametrize("alias,task", [
    ("image_classification", MULTICLASS), ("image-classification", MULTICLASS), ("multiclass", MULTICLASS),
    ("image-classification-multilabel", MULTILABEL), ("multilabel", MULTILABEL),
    ("object-detection", DETECTION), ("image-object-detection", DETECTION),
    ("instance-segmentation", SEGMENTATION), ("Image_Instance_Segmentation", SEGMENTATION),
])
def test_task_aliases(alias, task):
    assert canonical_task(alias) == task


def test_unknown_task_suggests_close_names():
    with pytest.raises(UsageError, match="image_object_detection"):
        canonical_task("image_object_detect")


def test_primary_metrics_are_azures():
    assert {name: task.primary_metric for name, task in TASKS.items()} == {
        MULTICLASS: "accuracy", MULTILABEL: "iou", DETECTION: "mean_average_precision",
        SEGMENTATION: "mean_average_precision"}


def test_box_modes_round_trip():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, size=(20, 2))
    wh = rng.uniform(1, 50, size=(20, 2))
    xywh = np.concatenate([xy, wh], axis=1)
    xyxy = g.xywh_abs_to_xyxy_abs(xywh)
    np.testing.assert_allclose(xyxy[:, 2:], xy + wh)
    np.testing.assert_allclose(g.xyxy_abs_to_xywh_abs(xyxy), xywh)
    norm = g.xyxy_abs_to_norm(xyxy, 640, 480)
    np.testing.assert_allclose(g.xyxy_norm_to_abs(norm, 640, 480), xyxy)
    np.testing.assert_allclose(g.cxcywh_norm_to_xyxy_norm(g.xyxy_norm_to_cxcywh_norm(norm)), norm)


def test_polygon_mask_and_back():
    square = [[10, 10, 50, 10, 50, 40, 10, 40]]
    mask = g.polygons_abs_to_mask(square, 60, 80)
    assert mask.shape == (60, 80)
    assert abs(int(mask.sum()) - g.polygon_area_abs(square)) / g.polygon_area_abs(square) < 0.1
    polys = g.mask_to_polygons_abs(mask, max_points=8)
    assert 3 <= sum(len(p) for p in polys) <= 8
    assert abs(g.polygon_area_abs(polys) - 1200) / 1200 < 0.1
    norm = g.polygon_abs_to_norm(polys, 80, 60)
    assert all(0 <= v <= 1 for seg in norm for v in seg)
    assert g.polygon_extent_norm(square) == (10, 10, 50, 40)


def test_records_serialise_to_the_schema():
    det = ImageRecord("a.jsonl", 3, "img/1.jpg", "/x/img/1.jpg",
                      objects=[ObjectLabel("can", (0.1, 0.2, 0.3, 0.4), is_crowd=True)], width=10, height=20)
    assert det.where == "a.jsonl:3"
    assert det.to_json() == {"image_url": "img/1.jpg", "image_details": {"width": 10, "height": 20},
                             "label": [{"label": "can", "topX": 0.1, "topY": 0.2, "bottomX": 0.3,
                                        "bottomY": 0.4, "isCrowd": 1}]}
    seg = ObjectLabel("can", (0, 0, 1, 1), polygon=[[0, 0, 1, 0, 1, 1]])
    assert seg.to_json() == {"label": "can", "isCrowd": 0, "polygon": [[0, 0, 1, 0, 1, 1]]}
    cls = ImageRecord("a.jsonl", 1, "x.jpg", "x.jpg", label="cat")
    assert cls.to_json() == {"image_url": "x.jpg", "label": "cat"}


def test_cli_help_and_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert "visionml" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
