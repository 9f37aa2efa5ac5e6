"""`visionml sample-data`: the files it writes, read back, and the promises of its docstring."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from PIL import Image

from visionml.cli import main
from visionml.data.reader import read_dataset
from visionml.data.sample import CLASSES, coverage, make_sample_data
from visionml.geometry import polygon_norm_to_abs, polygons_abs_to_mask
from visionml.tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION, TASKS, get_task


def _lines(path):
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.mark.parametrize("task", TASKS)
def test_cli_default_set_is_the_documented_size(tmp_path, task, capsys):
    out = tmp_path / "data"
    assert main(["sample-data", "--task", task, "-o", str(out)]) == 0
    assert "160 images" in capsys.readouterr().out
    train, val = _lines(out / "train.jsonl"), _lines(out / "val.jsonl")
    assert (len(train), len(val)) == (160, 40)
    width, height = (192, 192) if task in (MULTICLASS, MULTILABEL) else (224, 168)
    for line in train[:5] + val[:5]:
        assert line["image_details"] == {"format": "jpg", "width": width, "height": height}
        with Image.open(out / line["image_url"]) as img:
            assert img.size == (width, height) and img.format == "JPEG"
    assert len({line["image_url"] for line in train + val}) == 200
    for split, count in (("train", 160), ("val", 40)):  # valid data of the task, read back
        loaded = read_dataset(out / f"{split}.jsonl")
        assert (loaded.task, loaded.labels, len(loaded.records)) == (task, sorted(CLASSES), count)


def test_multiclass_is_balanced_over_four_classes(tmp_path):
    paths = make_sample_data(MULTICLASS, tmp_path, n=40, seed=3)
    labels = [line["label"] for p in paths.values() for line in _lines(p)]
    assert sorted(set(labels)) == sorted(CLASSES)
    assert all(labels.count(c) == 10 for c in CLASSES)


def test_multilabel_has_one_to_three_distinct_classes(tmp_path):
    paths = make_sample_data(MULTILABEL, tmp_path, n=40, seed=1)
    sizes = set()
    for line in _lines(paths["train"]):
        label = line["label"]
        assert label == sorted(set(label)) and set(label) <= set(CLASSES)
        sizes.add(len(label))
    assert sizes == {1, 2, 3}


@pytest.mark.parametrize("task", [DETECTION, SEGMENTATION])
def test_objects_are_inside_and_varied(tmp_path, task):
    paths = make_sample_data(task, tmp_path, n=30, seed=2)
    counts, widths, classes = set(), [], set()
    for line in _lines(paths["train"]):
        counts.add(len(line["label"]))
        for obj in line["label"]:
            assert obj["isCrowd"] == 0
            classes.add(obj["label"])
            if task == DETECTION:
                assert 0 <= obj["topX"] < obj["bottomX"] <= 1 and 0 <= obj["topY"] < obj["bottomY"] <= 1
                widths.append(obj["bottomX"] - obj["topX"])
            else:
                pts = np.array(obj["polygon"][0]).reshape(-1, 2)
                assert len(pts) >= 3 and pts.min() >= 0 and pts.max() <= 1
                widths.append(np.ptp(pts[:, 0]))
    assert counts == {1, 2, 3} and classes == set(CLASSES)
    assert max(widths) > 2.5 * min(widths)  # small and large objects


def test_polygons_are_exactly_where_the_shapes_are_drawn(tmp_path):
    """Inside each polygon the pixels are one flat colour (plus noise), a ring just outside is
    the background: a polygon off by one pixel mixes the two."""
    paths = make_sample_data(SEGMENTATION, tmp_path, n=6, seed=5)
    for line in _lines(paths["train"]):
        image = np.asarray(Image.open(tmp_path / line["image_url"]), dtype=np.float64)
        height, width = image.shape[:2]
        for obj in line["label"]:
            polygon = polygon_norm_to_abs(obj["polygon"], width, height)
            mask = polygons_abs_to_mask(polygon, height, width)
            inner = _erode(mask, 2)
            ring = _dilate(mask, 4) & ~_dilate(mask, 2)
            shape_colour = np.median(image[inner], axis=0)
            near = np.linalg.norm(image[inner] - shape_colour, axis=1) < 40
            assert near.mean() > 0.995 and np.abs(image[inner] - shape_colour).mean() < 7
            assert np.linalg.norm(np.median(image[ring], axis=0) - shape_colour) > 40
            # The drawn coverage and COCO's rasterisation of the written polygon agree.
            drawn = coverage(polygon[0], width, height) > 0.5
            assert (drawn & mask).sum() / (drawn | mask).sum() > 0.93


def test_boxes_are_the_drawn_extent(tmp_path):
    det = make_sample_data(DETECTION, tmp_path / "det", n=6, seed=9)
    seg = make_sample_data(SEGMENTATION, tmp_path / "seg", n=6, seed=9)
    # Same seed, same layout: the detection box is the extent of the segmentation polygon.
    for d, s in zip(_lines(det["train"]), _lines(seg["train"])):
        for box, poly in zip(d["label"], s["label"]):
            pts = np.array(poly["polygon"][0]).reshape(-1, 2)
            expected = [*pts.min(axis=0), *pts.max(axis=0)]
            got = [box["topX"], box["topY"], box["bottomX"], box["bottomY"]]
            assert np.allclose(got, expected, atol=1e-6) and box["label"] == poly["label"]


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    a = make_sample_data(DETECTION, tmp_path / "a", n=5, seed=7)
    b = make_sample_data(DETECTION, tmp_path / "b", n=5, seed=7)
    c = make_sample_data(DETECTION, tmp_path / "c", n=5, seed=8)
    assert a["train"].read_bytes() == b["train"].read_bytes()
    assert a["train"].read_bytes() != c["train"].read_bytes()
    for name in ("sample_00000.jpg", "sample_00004.jpg"):
        assert (tmp_path / "a/images" / name).read_bytes() == (tmp_path / "b/images" / name).read_bytes()


def test_refuses_to_overwrite_unless_forced(tmp_path, capsys):
    out = str(tmp_path)
    assert main(["sample-data", "--task", "multiclass", "-o", out, "--n", "4"]) == 0
    before = (tmp_path / "train.jsonl").read_bytes()
    assert main(["sample-data", "--task", "multiclass", "-o", out, "--n", "6", "--seed", "1"]) == 1
    err = capsys.readouterr().err
    assert "train.jsonl" in err and "--force" in err
    assert (tmp_path / "train.jsonl").read_bytes() == before
    assert main(["sample-data", "--task", "multiclass", "-o", out, "--n", "6", "--seed", "1", "--force"]) == 0
    assert len(_lines(tmp_path / "train.jsonl")) + len(_lines(tmp_path / "val.jsonl")) == 6
    assert len(list((tmp_path / "images").iterdir())) == 6  # the old images went with --force


def test_size_option_and_bad_arguments(tmp_path, capsys):
    assert main(["sample-data", "--task", "object-detection", "-o", str(tmp_path / "s"),
                 "--n", "3", "--size", "256x200"]) == 0
    assert _lines(tmp_path / "s/train.jsonl")[0]["image_details"]["width"] == 256
    assert main(["sample-data", "--task", "detection-ish", "-o", str(tmp_path / "x")]) == 2
    assert main(["sample-data", "--task", "multiclass", "-o", str(tmp_path / "x"), "--n", "1"]) == 2
    assert main(["sample-data", "--task", "multiclass", "-o", str(tmp_path / "x"), "--size", "100x80"]) == 2
    assert "160x120" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["sample-data", "--task", "multiclass", "-o", str(tmp_path / "x"), "--size", "big"])
    assert exc.value.code == 2
    assert not (tmp_path / "x" / "train.jsonl").exists()


def _erode(mask, k):
    from scipy.ndimage import binary_erosion

    return binary_erosion(mask, iterations=k)


def _dilate(mask, k):
    from scipy.ndimage import binary_dilation

    return binary_dilation(mask, iterations=k)


def test_three_large_shapes_always_find_room():
    # Two large shapes placed first can leave no room for a third at its drawn size: the third
    # shrinks instead of failing (this once stopped `sample-data --n 4000` for multi-label).
    from visionml.data.sample import _place_shapes
    from visionml.tasks import MULTILABEL

    shape = get_task(MULTILABEL).inferred_from
    # Seeds whose first image the placement before the fix could not fill (200 tries, shrinking
    # without a floor): found by running that code on seeds 0-2482. If the placement draws its
    # random numbers differently one day, find new ones the same way.
    for seed in (1419, 1802, 2241, 2425, 2482):
        polygons = _place_shapes(shape, ["star", "square", "circle"], 192, 192, np.random.default_rng(seed))
        assert len(polygons) == 3, seed
    rng = np.random.default_rng(0)
    for _ in range(300):  # and any others
        assert len(_place_shapes(shape, ["star", "square", "circle"], 192, 192, rng)) == 3
