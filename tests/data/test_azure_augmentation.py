"""The training augmentations are Azure AutoML's (issue 15 item 2): classification crops 8%-100% of the
area, flips, and colour-jitters (0.4 each, hue included) half of the images; detection crops around every
box or zooms out half of the images, flips, and never changes colour."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from visionml.data.transforms import IMAGENET_MEAN_255, RandomCropAroundBoxes, build_transforms
from visionml.tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION, get_task


def _steps(pipeline):
    return {type(t).__name__: t for t in pipeline.transforms}


@pytest.mark.parametrize("task", [MULTICLASS, MULTILABEL])
def test_classification_pipeline_is_azures(task):
    steps = _steps(build_transforms(task, {"training_crop_size": 64}, train=True))
    crop = steps["RandomResizedCrop"]
    assert tuple(crop.size) == (64, 64) and tuple(crop.scale) == (0.08, 1.0)
    assert tuple(crop.ratio) == pytest.approx((3 / 4, 4 / 3))
    assert steps["RandomHorizontalFlip"].p == 0.5
    jitter_step = steps["RandomApply"]
    assert jitter_step.p == 0.5
    (jitter,) = jitter_step.transforms
    assert isinstance(jitter, v2.ColorJitter)
    assert jitter.brightness == jitter.contrast == jitter.saturation == pytest.approx((0.6, 1.4))
    assert jitter.hue == pytest.approx((-0.4, 0.4))


def test_colour_jitter_changes_about_half_the_images():
    """A flat grey image stays flat through crop and flip; only the jitter changes its colour."""
    grey = Image.fromarray(np.full((80, 80, 3), (120, 100, 80), dtype=np.uint8))
    pipeline = build_transforms(MULTICLASS, {"training_crop_size": 16}, train=True)
    reference = build_transforms(MULTICLASS, {"validation_resize_size": 16, "validation_crop_size": 16})(grey)
    torch.manual_seed(0)
    changed = [not torch.allclose(pipeline(grey), reference, atol=1e-3) for _ in range(400)]
    assert 0.4 < sum(changed) / len(changed) < 0.6


def _scene(with_mask: bool, boxes=((30.0, 20.0, 60.0, 50.0),)):
    """A 120x90 image, black but for white rectangles at ``boxes``, with their targets."""
    arr = np.zeros((90, 120, 3), dtype=np.uint8)
    masks = np.zeros((len(boxes), 90, 120), dtype=np.uint8)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        arr[int(y0):int(y1), int(x0):int(x1)] = 255
        masks[i, int(y0):int(y1), int(x0):int(x1)] = 1
    target = {"boxes": tv_tensors.BoundingBoxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                                format="XYXY", canvas_size=(90, 120)),
              "labels": torch.arange(1, len(boxes) + 1), "iscrowd": torch.zeros(len(boxes), dtype=torch.int64),
              "image_id": 3}
    if with_mask:
        target["masks"] = tv_tensors.Mask(torch.from_numpy(masks))
    return Image.fromarray(arr), target


@pytest.mark.parametrize("task", [DETECTION, SEGMENTATION])
def test_detection_crops_or_zooms_out_half_the_images_and_never_changes_colour(task):
    pipeline = build_transforms(task, {}, train=True)
    torch.manual_seed(0)
    kinds = {"smaller": 0, "larger": 0, "same": 0}
    flipped = 0
    fill = {round(v / 255, 4) for v in IMAGENET_MEAN_255}
    for _ in range(300):
        image, target = pipeline(*_scene(task == SEGMENTATION))
        height, width = image.shape[-2:]
        area = height * width / (90 * 120)
        kinds["smaller" if area < 0.999 else "larger" if area > 1.001 else "same"] += 1
        assert 0.6 <= area <= 4.0  # a crop keeps >= 60% of the image; a zoom out is at most 2x a side
        # No colour change: only the black, the white and Azure's ImageNet-mean fill.
        values = {round(float(v), 4) for v in image.unique()}
        assert values <= {0.0, 1.0} | fill, values
        # The box is never lost or cut, and still frames the white rectangle.
        assert len(target["boxes"]) == 1 and target["labels"].tolist() == [1]
        x0, y0, x1, y1 = target["boxes"][0].round().int().tolist()
        assert (x1 - x0, y1 - y0) == (30, 30)
        assert image[0, y0:y1, x0:x1].min() == 1.0
        outside = image[0].clone()
        outside[y0:y1, x0:x1] = 0
        assert outside.max() < 1.0
        if task == SEGMENTATION:
            assert torch.equal(target["masks"][0].bool(), image[0] == 1.0)
        flipped += int((height, width) == (90, 120) and x0 == 60)  # 30..60 mirrored in 120 pixels
    share = {k: v / 300 for k, v in kinds.items()}
    assert 0.15 < share["smaller"] < 0.35 and 0.15 < share["larger"] < 0.35 and 0.4 < share["same"] < 0.6
    assert 40 < flipped < 110  # about half of the ~150 unresized images are mirrored


def test_crop_around_boxes_keeps_every_box_and_its_limits():
    crop = RandomCropAroundBoxes()
    boxes = ((5.0, 5.0, 20.0, 20.0), (90.0, 60.0, 110.0, 85.0))
    torch.manual_seed(1)
    for _ in range(100):
        image, target = _scene(False, boxes)
        out, out_target = crop(v2.functional.to_image(image), target)
        height, width = out.shape[-2:]
        assert height * width >= 0.6 * 90 * 120 and 0.5 < height / width < 2
        assert len(out_target["boxes"]) == 2
        widths = (out_target["boxes"][:, 2] - out_target["boxes"][:, 0]).tolist()
        assert widths == pytest.approx([15.0, 20.0])
        assert float(out_target["boxes"].min()) >= 0 and float(out_target["boxes"][:, 2].max()) <= width


def test_images_without_boxes_still_augment():
    """An empty label (an image with nothing in it) is cropped or zoomed like any other, never stuck."""
    image, target = _scene(True, boxes=())
    pipeline = build_transforms(SEGMENTATION, {}, train=True)
    torch.manual_seed(0)
    sizes = {tuple(pipeline(image, dict(target))[0].shape[-2:]) for _ in range(40)}
    assert len(sizes) > 3


def test_the_task_holds_the_parameters():
    classification, detection = get_task(MULTICLASS), get_task(DETECTION)
    assert classification.train_crop_scale == (0.08, 1.0) and classification.color_jitter == (0.4, 0.4, 0.4, 0.4)
    assert classification.color_jitter_p == 0.5 and get_task(MULTILABEL).train_crop_scale == (0.08, 1.0)
    assert detection.crop_or_expand_p == 0.5 and detection.expand_range == (1.0, 2.0)
    assert detection.crop_min_area == 0.6 and detection.flip_p == 0.5
