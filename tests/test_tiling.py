"""Tiling (visionml/tiling.py): the grid, cutting boxes and polygons into tiles, mapping detections
back, the merge across seams, the training items, and a model trained without tiling predicting
with it (``--set tile_grid_size=3x2``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from visionml import tiling
from visionml.config import resolve_hyperparameters
from visionml.data.records import ImageRecord, ObjectLabel
from visionml.errors import UsageError
from visionml.geometry import polygons_abs_to_mask
from visionml.tiling import TileGrid

DETECTION, SEGMENTATION = "image_object_detection", "image_instance_segmentation"


# ---- the grid --------------------------------------------------------------------------------------

@pytest.mark.parametrize("cols,rows,overlap,width,height", [
    (3, 2, 0.25, 960, 720), (2, 2, 0.0, 100, 50), (4, 3, 0.5, 641, 479), (2, 1, 0.25, 7, 5)])
def test_the_grid_covers_the_image_with_overlap_between_tiles_and_ends_at_the_borders(cols, rows, overlap,
                                                                                      width, height):
    tiles = TileGrid(cols, rows, overlap).tiles(width, height)
    assert tiles.shape == (cols * rows, 4)
    grid = tiles.reshape(rows, cols, 4)
    # The first tile starts at the top-left corner, the last ends at the far borders.
    assert grid[0, 0, :2].tolist() == [0, 0] and grid[-1, -1, 2:].tolist() == [width, height]
    assert (grid[:, 0, 0] == 0).all() and (grid[:, -1, 2] == width).all()
    assert (grid[0, :, 1] == 0).all() and (grid[-1, :, 3] == height).all()
    side_w = width / (overlap + (1 - overlap) * cols)
    side_h = height / (overlap + (1 - overlap) * rows)
    assert np.abs((tiles[:, 2] - tiles[:, 0]) - side_w).max() <= 1
    assert np.abs((tiles[:, 3] - tiles[:, 1]) - side_h).max() <= 1
    # Adjacent tiles share `overlap` of a side (whole pixels), and no pixel is left out.
    shared_x = grid[0, :-1, 2] - grid[0, 1:, 0]
    shared_y = grid[:-1, 0, 3] - grid[1:, 0, 1]
    assert (np.abs(shared_x - overlap * side_w) <= 1).all() and (np.abs(shared_y - overlap * side_h) <= 1).all()
    covered = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in tiles:
        covered[y0:y1, x0:x1] = True
    assert covered.all()


def test_the_grid_is_azures_for_3x2():
    # Azure's get_tiles: side = W / (r + (1 - r) * n), starts every (1 - r) sides, corners rounded.
    tiles = TileGrid(3, 2, 0.25).tiles(960, 720)
    assert tiles.tolist() == [[0, 0, 384, 411], [288, 0, 672, 411], [576, 0, 960, 411],
                              [0, 309, 384, 720], [288, 309, 672, 720], [576, 309, 960, 720]]


@pytest.mark.parametrize("spelling", ["3x2", "3X2", "(3, 2)", [3, 2]])
def test_tile_grid_size_takes_azures_spellings_and_tiling_reads_it(spelling):
    hp = resolve_hyperparameters(DETECTION, {"tile_grid_size": spelling, "tile_overlap_ratio": 0.1})
    assert hp["tile_grid_size"] == (3, 2)
    assert tiling.grid_from(hp) == TileGrid(3, 2, 0.1)
    assert tiling.grid_from(resolve_hyperparameters(DETECTION, {})) is None


def test_a_grid_of_one_tile_is_refused_as_azure_does():
    with pytest.raises(UsageError, match="one tile"):
        resolve_hyperparameters(DETECTION, {"tile_grid_size": "1x1"})


# ---- cutting labels into tiles ---------------------------------------------------------------------

TILE = (100, 50, 200, 150)  # 100 x 100


def test_boxes_are_cut_to_the_tile_in_its_pixels_and_slivers_are_dropped():
    boxes = [[120, 60, 140, 80],    # inside: only moved
             [190, 60, 210, 80],    # half inside: cut at the seam
             [198.5, 60, 218.5, 80],  # 1.5 px inside: a sliver, dropped
             [101, 60, 121, 64],    # inside but thin is still the whole object: kept
             [195, 60, 215, 160],   # 5 of 20 px wide inside (25% of it): kept
             [197, 60, 217, 160],   # 3 px wide inside, 15% of it: dropped
             [300, 300, 320, 320],  # elsewhere
             [0, 0, 400, 400]]      # larger than the tile: all of the tile, kept
    cut, kept = tiling.clip_boxes(boxes, TILE)
    assert kept.tolist() == [0, 1, 3, 4, 7]
    assert cut.tolist() == [[20, 10, 40, 30], [90, 10, 100, 30], [1, 10, 21, 14], [95, 10, 100, 100],
                            [0, 0, 100, 100]]


def test_the_remnant_rule_is_the_documented_one():
    assert tiling.keeps_remnant(2, 2, 4, 20, 10_000)          # 20% of the object
    assert not tiling.keeps_remnant(2, 2, 3.9, 20, 10_000)    # below 20%, small beside the tile
    assert not tiling.keeps_remnant(1.9, 50, 95, 95, 10_000)  # under 2 px on a side
    assert tiling.keeps_remnant(50, 20, 1000, 100_000, 10_000)  # 10% of the tile: a large object's part


def test_a_polygon_cut_to_a_tile_covers_the_pixels_of_the_tile_it_covered():
    # A star across the tile's right and bottom sides (concave, so the cut makes several pieces).
    theta = np.linspace(0, 2 * np.pi, 10, endpoint=False)
    radii = np.where(np.arange(10) % 2 == 0, 40.0, 16.0)
    star = np.stack([195 + radii * np.cos(theta), 140 + radii * np.sin(theta)], axis=1)
    cut = tiling.clip_polygon(star, TILE)
    assert cut[:, 0].min() >= 100 and cut[:, 0].max() <= 200 and cut[:, 1].min() >= 50 and cut[:, 1].max() <= 150
    full = polygons_abs_to_mask([star], 300, 300)[50:150, 100:200]
    tiled = polygons_abs_to_mask([cut - [100, 50]], 100, 100)
    assert full.sum() > 300
    assert (full != tiled).sum() <= 2  # the same pixels, up to rounding on the cut sides


def test_a_polygon_outside_the_tile_leaves_nothing():
    square = np.array([[300, 300], [320, 300], [320, 320], [300, 320]], dtype=float)
    assert len(tiling.clip_polygon(square, TILE)) < 3
    segments, area, whole = tiling.clip_polygons([square], TILE)
    assert segments == [] and area == 0 and whole == 400


def test_objects_are_cut_and_normalised_to_the_tile():
    width, height = 400, 200
    box_object = ObjectLabel("a", (190 / width, 60 / height, 210 / width, 80 / height), is_crowd=True)
    triangle = [[180, 100], [220, 100], [180, 140]]  # crosses the tile's right side at x=200
    polygon_object = ObjectLabel("b", (180 / width, 100 / height, 220 / width, 140 / height),
                                 polygon=[(np.array(triangle) / [width, height]).reshape(-1).tolist()])
    sliver = ObjectLabel("c", (199 / width, 10 / height, 219 / width, 30 / height))
    cut = tiling.cut_objects([box_object, polygon_object, sliver], TILE, width, height)
    assert [o.label for o in cut] == ["a", "b"] and cut[0].is_crowd
    assert cut[0].box == pytest.approx((0.9, 0.1, 1.0, 0.3))
    # The polygon's box is the extent of what is visible of it (not the cut box, which would be larger).
    assert cut[1].box == pytest.approx((0.8, 0.5, 1.0, 0.9))
    points = np.array(cut[1].polygon[0]).reshape(-1, 2)
    assert points.min(axis=0) == pytest.approx([0.8, 0.5]) and points.max(axis=0) == pytest.approx([1.0, 0.9])


# ---- back to the image, and the merge ---------------------------------------------------------------

def test_tile_detections_map_back_to_image_pixels():
    boxes = tiling.boxes_to_image([[0, 0, 10, 20], [5, 5, 6, 6]], (288, 309, 672, 720))
    assert boxes.tolist() == [[288, 309, 298, 329], [293, 314, 294, 315]]
    mask = torch.zeros((1, 4, 3))
    mask[0, 1, 2] = 0.7
    pasted = tiling.paste_mask(mask, (5, 2, 8, 6), 10, 12)
    assert pasted.shape == (1, 10, 12) and pasted.sum() == pytest.approx(0.7) and pasted[0, 3, 7] == pytest.approx(0.7)


def _output(boxes, scores, labels, masks=None):
    out = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
           "scores": torch.tensor(scores, dtype=torch.float32), "labels": torch.tensor(labels)}
    if masks is not None:
        out["masks"] = masks
    return out


def test_the_merge_removes_the_duplicates_of_an_object_seen_across_a_seam():
    # One object at image x 90..110 (tiles 0..120 and 80..200 overlap at 80..120), seen by the whole
    # image, both tiles; a second class at the same place, and two neighbours in one tile.
    whole = (0, 0, 200, 100)
    left, right = (0, 0, 120, 100), (80, 0, 200, 100)
    parts = [
        (whole, _output([[89, 10, 111, 30], [90, 10, 110, 30]], [0.6, 0.5], [1, 2])),
        (left, _output([[90, 11, 110, 31], [10, 50, 30, 70], [16, 50, 36, 70]], [0.9, 0.8, 0.7], [1, 1, 1])),
        (right, _output([[11, 10, 31, 30]], [0.7], [1])),   # x 91..111 in the image
    ]
    merged = tiling.merge(parts, threshold=0.25, height=100, width=200)
    # The best of the three views of the object is kept; the other class is not a duplicate; the
    # two neighbours (IoU 0.54) come from one tile, whose own NMS already kept both.
    assert merged["scores"].tolist() == pytest.approx([0.9, 0.8, 0.7, 0.5])
    assert merged["boxes"].tolist() == [[90, 11, 110, 31], [10, 50, 30, 70], [16, 50, 36, 70], [90, 10, 110, 30]]
    assert merged["labels"].tolist() == [1, 1, 1, 2]
    assert tiling.merge(parts, threshold=0.25, height=100, width=200, limit=2)["scores"].tolist() == \
        pytest.approx([0.9, 0.8])


def test_the_merge_keeps_boxes_that_overlap_less_than_the_threshold():
    parts = [((0, 0, 100, 100), _output([[0, 0, 20, 20]], [0.9], [1])),
             ((50, 0, 150, 100), _output([[-40, 0, -20, 20]], [0.8], [1]))]  # x 10..30: IoU 1/3
    assert len(tiling.merge(parts, 0.5, 100, 150)["scores"]) == 2
    assert len(tiling.merge(parts, 0.25, 100, 150)["scores"]) == 1


def test_the_masks_of_merged_detections_are_combined():
    # An object at image x 40..60 cut by a seam: the left tile (0..50) sees its left half, the right
    # tile (50..100) its right half, with boxes overlapping enough to be one detection.
    left_mask = torch.zeros((1, 1, 20, 50))
    left_mask[0, 0, 5:15, 40:50] = 0.9
    right_mask = torch.zeros((1, 1, 20, 50))
    right_mask[0, 0, 5:15, 0:10] = 0.8
    parts = [((0, 0, 50, 20), _output([[38, 5, 50, 15]], [0.9], [1], left_mask)),
             ((50, 0, 100, 20), _output([[-10, 5, 8, 15]], [0.8], [1], right_mask))]
    merged = tiling.merge(parts, 0.25, 20, 100)
    assert len(merged["scores"]) == 1 and merged["masks"].shape == (1, 1, 20, 100)
    combined = merged["masks"][0, 0]
    assert (combined[5:15, 40:50] == pytest.approx(0.9)) and (combined[5:15, 50:60] == pytest.approx(0.8))
    assert combined.sum() == pytest.approx(10 * 10 * 0.9 + 10 * 10 * 0.8)


def test_nothing_found_anywhere_is_an_empty_result():
    empty = _output([], [], [])
    merged = tiling.merge([((0, 0, 10, 10), empty), ((0, 0, 5, 10), empty)], 0.25, 10, 10)
    assert merged["boxes"].shape == (0, 4) and len(merged["scores"]) == 0


class _BrightSquareDetector:
    """A stand-in detector: one box around the bright pixels of each input, in its own pixels,
    score 0.9 when the whole square is in the input, 0.5 when it is cut; records each call."""

    def __init__(self):
        self.calls = []

    def __call__(self, inputs):
        self.calls.append([tuple(x.shape[-2:]) for x in inputs])
        outputs = []
        for x in inputs:
            ys, xs = torch.nonzero(x[0] > 0.5, as_tuple=True)
            if len(xs) == 0:
                outputs.append(_output([], [], []))
                continue
            box = [float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1]
            outputs.append(_output([box], [0.9 if len(xs) == 100 else 0.5], [1]))
        return outputs


def test_detect_tiled_runs_the_images_and_tiles_in_batches_and_finds_each_object_once():
    images = [torch.zeros((3, 120, 160)) for _ in range(2)]
    images[0][:, 50:60, 75:85] = 1.0   # in the overlaps of a 2x2 grid (x 69..91, y 51..69), cut by two tiles
    images[1][:, 5:15, 5:15] = 1.0     # in one corner tile only
    detector = _BrightSquareDetector()
    merged = tiling.detect_tiled(detector, images, TileGrid(2, 2, 0.25), threshold=0.25)
    # 2 images x (whole + 4 tiles) = 10 inputs, 5 at a time: one image's worth, more than the 2 images.
    assert [len(c) for c in detector.calls] == [5, 5]
    assert detector.calls[0] == [(120, 160), (69, 91), (69, 91), (69, 91), (69, 91)]
    assert [m["boxes"].tolist() for m in merged] == [[[75, 50, 85, 60]], [[5, 5, 15, 15]]]
    assert [m["scores"].tolist() for m in merged] == [pytest.approx([0.9]), pytest.approx([0.9])]


# ---- training items ---------------------------------------------------------------------------------

def _record(tmp_path, task, objects, size=(200, 100)):
    from PIL import Image

    path = tmp_path / "image.png"
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    pixels[:, :, 0] = np.arange(size[0], dtype=np.uint8)[None, :]  # x, to check which part was cut
    Image.fromarray(pixels).save(path)
    return ImageRecord("train.jsonl", 1, "image.png", str(path), None, objects, size[0], size[1], "png")


def test_training_sees_the_image_and_each_tile_that_holds_an_object(tmp_path):
    from visionml.data.dataset import VisionDataset

    width, height = 200, 100
    objects = [ObjectLabel("a", (10 / width, 10 / height, 30 / width, 30 / height)),     # top-left tile
               ObjectLabel("b", (90 / width, 60 / height, 110 / width, 80 / height))]    # both bottom tiles
    record = _record(tmp_path, DETECTION, objects)
    grid = TileGrid(2, 2, 0.25)  # tiles 0..114 / 86..200 across, 0..57 / 43..100 down
    dataset = VisionDataset([record], DETECTION, ["a", "b"], tiling=grid)
    assert dataset.items == [(0, None), (0, 0), (0, 2), (0, 3)]
    image, target = dataset[0]
    assert image.shape == (3, 100, 200) and target["labels"].tolist() == [1, 2]
    image, target = dataset[3]  # the bottom-right tile, from x 86, y 43
    assert image.shape == (3, 57, 114)
    assert image[0, 0, 0] * 255 == pytest.approx(86)
    assert target["boxes"].tolist() == [[4, 17, 24, 37]] and target["labels"].tolist() == [2]
    assert len(VisionDataset([record], DETECTION, ["a", "b"])) == 1


def test_segmentation_tiles_carry_the_masks_of_the_cut_polygons(tmp_path):
    from visionml.data.dataset import VisionDataset

    width, height = 200, 100
    square = np.array([[100, 40], [120, 40], [120, 60], [100, 60]], dtype=float)  # across the 2x1 seam
    obj = ObjectLabel("a", (0.5, 0.4, 0.6, 0.6), polygon=[(square / [width, height]).reshape(-1).tolist()])
    record = _record(tmp_path, SEGMENTATION, [obj])
    dataset = VisionDataset([record], SEGMENTATION, ["a"], tiling=TileGrid(2, 1, 0.25))
    tiles = TileGrid(2, 1, 0.25).tiles(width, height).tolist()  # 0..114 and 86..200
    assert dataset.items == [(0, None), (0, 0), (0, 1)]
    whole = dataset[0][1]["masks"][0].bool().numpy()
    for item, (x0, y0, x1, y1) in zip((1, 2), tiles):
        image, target = dataset[item]
        assert target["masks"].shape == (1, y1 - y0, x1 - x0)
        assert (target["masks"][0].bool().numpy() != whole[y0:y1, x0:x1]).sum() <= 2
        mx0, my0, mx1, my1 = target["boxes"][0].tolist()
        assert (mx0 + x0, my0, mx1 + x0, my1) == pytest.approx((max(100, x0), 40, min(120, x1), 60))


# ---- inference: a model trained without tiling, tiled at inference ----------------------------------

class _CountingBackend:
    def __init__(self, backend):
        self.backend = backend
        self.batches = []

    def run(self, batch):
        self.batches.append([tuple(x.shape[-2:]) for x in batch])
        return self.backend.run(batch)


def test_a_model_trained_without_tiling_predicts_with_tiling_set_at_inference(model_folder, tmp_path):
    from PIL import Image

    from visionml.predict import Predictor
    from visionml.predict.backends import TorchBackend

    folder = model_folder(DETECTION, box_score_threshold=0.0)
    manifest = json.loads((folder / "visionml.json").read_text())
    assert manifest["inference"]["tile_grid_size"] is None  # trained without it
    rng = np.random.default_rng(0)
    pils = [Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)) for _ in range(3)]

    plain = Predictor.from_folder(folder)
    tiled = Predictor.from_folder(folder, overrides={"tile_grid_size": "3x2", "tile_overlap_ratio": "0.25"})
    assert tiled.settings["tile_grid_size"] == (3, 2) and plain.settings["tile_grid_size"] is None
    tiled.backend = _CountingBackend(tiled.backend)
    tiled.raw_predict(pils, batch_size=2)
    # Each image whole and its 6 tiles, batched: an image's worth (7 inputs) at a time, the first
    # image whole, then its tiles.
    sizes = [s for batch in tiled.backend.batches for s in batch]
    assert [len(b) for b in tiled.backend.batches] == [7, 7, 7]
    assert sizes[:7] == [(120, 160), *[(y1 - y0, x1 - x0) for x0, y0, x1, y1 in TileGrid(3, 2).tiles(160, 120)]]

    # The same as running the image and its tiles by hand in one batch and merging the outputs.
    raws = tiled.raw_predict(pils, batch_size=1)
    model = TorchBackend(plain.model)
    settings = tiled.settings
    for pil, raw in zip(pils, raws):
        image = plain.preprocess(pil)
        tiles = [(0, 0, 160, 120), *map(tuple, TileGrid(3, 2).tiles(160, 120).tolist())]
        outputs = model.run([image[:, y0:y1, x0:x1] for x0, y0, x1, y1 in tiles])
        parts = list(zip(tiles, outputs))
        expected = tiled.task.postprocess([tiling.merge(parts, 0.25, 120, 160, limit=100)], settings)[0]
        assert len(raw["boxes"]) > 0
        np.testing.assert_allclose(raw["boxes"], expected["boxes"], atol=1e-3)
        np.testing.assert_allclose(raw["scores"], expected["scores"], atol=1e-5)
        assert (raw["boxes"][:, [0, 2]] <= 160).all() and (raw["boxes"][:, [1, 3]] <= 120).all()

    # And on the command line, as a user switches it on.
    from visionml.cli import main

    pils[0].save(tmp_path / "a.png")
    out = tmp_path / "preds.jsonl"
    assert main(["predict", "--model", str(folder), str(tmp_path / "a.png"), "--output", str(out),
                 "--set", "tile_grid_size=3x2"]) == 0
    line = json.loads(out.read_text().splitlines()[0])
    assert len(line["boxes"]) == len(raws[0]["boxes"])


def test_segmentation_predicts_tiled_with_masks_in_image_pixels(model_folder):
    from PIL import Image

    from visionml.predict import Predictor

    folder = model_folder(SEGMENTATION, box_score_threshold=0.0, mask_pixel_score_threshold=0.0)
    rng = np.random.default_rng(1)
    pil = Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    predictor = Predictor.from_folder(folder, overrides={"tile_grid_size": "2x2"})
    raw = predictor.raw_predict([pil])[0]
    assert len(raw["boxes"]) > 0 and raw["masks"].shape == (len(raw["boxes"]), 96, 128)
    wire = predictor.predict([pil])[0]
    assert all("polygon" in box for box in wire["boxes"])


def test_the_tiling_settings_are_inference_settings_saved_in_the_manifest(tmp_path):
    from visionml.modelio import make_manifest
    from visionml.predict.settings import allowed_overrides, resolve_settings

    for task in (DETECTION, SEGMENTATION):
        assert {"tile_grid_size", "tile_overlap_ratio", "tile_predictions_nms_threshold"} <= set(allowed_overrides(task))
    hp = resolve_hyperparameters(DETECTION, {"model_name": "fasterrcnn_mobilenet_v3_large_fpn",
                                             "tile_grid_size": "(3, 2)", "tile_predictions_nms_thresh": 0.4})
    manifest = json.loads(json.dumps(make_manifest(DETECTION, "fasterrcnn_mobilenet_v3_large_fpn", ["a"], hp)))
    assert manifest["inference"]["tile_grid_size"] == [3, 2]
    assert manifest["inference"]["tile_predictions_nms_threshold"] == 0.4
    assert resolve_settings(manifest)["tile_grid_size"] == (3, 2)
    # A deployment may switch it off (or change it) without retraining.
    assert resolve_settings(manifest, {"tile_grid_size": "none"})["tile_grid_size"] is None
    assert resolve_settings(manifest, {"tile_predictions_nms_thresh": "0.3"})["tile_predictions_nms_threshold"] == 0.3
