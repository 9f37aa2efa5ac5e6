"""Transforms per task: sizes from Azure's hyperparameter names, boxes and masks moving with the image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from visionml.config import resolve_hyperparameters
from visionml.data.dataconfig import IMAGENET_MEAN, IMAGENET_STD, resolve_data_config
from visionml.data.transforms import build_transforms, detection_train
from visionml.tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION


def _image(width=200, height=150, value=128):
    return Image.fromarray(np.full((height, width, 3), value, dtype=np.uint8))


@pytest.mark.parametrize("task", [MULTICLASS, MULTILABEL])
def test_classification_sizes_follow_hyperparameters(task):
    img = _image()
    assert build_transforms(task, {}, train=True)(img).shape == (3, 224, 224)
    assert build_transforms(task, None, train=False)(img).shape == (3, 224, 224)
    hp = {"training_crop_size": 96, "validation_resize_size": 80, "validation_crop_size": 64}
    assert build_transforms(task, hp, train=True)(img).shape == (3, 96, 96)
    assert build_transforms(task, hp, train=False)(img).shape == (3, 64, 64)
    # None means "not set": Azure's defaults apply.
    assert build_transforms(task, {"validation_crop_size": None}, train=False)(img).shape == (3, 224, 224)


def test_multilabel_crops_as_azure_does():
    """Azure crops multi-label images as multi-class ones (8% to all of the area): an object in the
    middle fifth of the image is sometimes cut (the box, carried through the same pipeline, touches the edge)."""
    image = _image(100, 100)
    centre = tv_tensors.BoundingBoxes([[40, 40, 60, 60]], format="XYXY", canvas_size=(100, 100))

    def kept_whole(task):
        torch.manual_seed(0)
        pipeline = build_transforms(task, {"training_crop_size": 64}, train=True)
        boxes = [pipeline(image, centre)[1][0] for _ in range(300)]
        return sum(bool(b[0] > 0 and b[1] > 0 and b[2] < 64 and b[3] < 64) for b in boxes) / len(boxes)

    assert kept_whole(MULTILABEL) < 0.95
    assert kept_whole(MULTICLASS) < 0.95


def test_classification_output_is_imagenet_normalised():
    out = build_transforms(MULTICLASS, {}, train=False)(_image(value=255))
    expected = (1.0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert out.dtype == torch.float32
    assert torch.allclose(out.mean(dim=(1, 2)), expected, atol=1e-4)


def test_classification_eval_is_resize_then_centre_crop():
    """A 256x200 image with its left quarter black: resize 100 (short side) and crop 100 keep
    the middle, so the crop's left edge is black only if the crop were not centred."""
    arr = np.full((200, 256, 3), 255, dtype=np.uint8)
    arr[:, :64] = 0
    hp = {"validation_resize_size": 100, "validation_crop_size": 100}
    out = build_transforms(MULTICLASS, hp, train=False)(Image.fromarray(arr))
    white = (1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    # Resized width 128, centre crop 100 drops 14 px a side; black ends at 32 -> columns 0..17 black.
    assert out[0, :, 25:].min() > white - 0.05
    assert out[0, :, :15].max() < 0


def test_preprocessing_for_the_manifest():
    hp = resolve_hyperparameters(MULTICLASS, {"validation_resize_size": 300, "model_name": "resnet18"})
    pre = resolve_data_config("resnet18", hp).to_manifest()
    assert pre == {"resize_size": 300, "crop_size": 224, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


def _scene():
    """A 120x90 black image with a white rectangle at x 10..40, y 20..50 and its targets."""
    arr = np.zeros((90, 120, 3), dtype=np.uint8)
    arr[20:50, 10:40] = 255
    mask = np.zeros((1, 90, 120), dtype=np.uint8)
    mask[0, 20:50, 10:40] = 1
    target = {"boxes": tv_tensors.BoundingBoxes([[10.0, 20.0, 40.0, 50.0]], format="XYXY", canvas_size=(90, 120)),
              "labels": torch.tensor([2]), "iscrowd": torch.tensor([1]), "image_id": 7,
              "masks": tv_tensors.Mask(torch.from_numpy(mask))}
    return Image.fromarray(arr), target


@pytest.mark.parametrize("task", [DETECTION, SEGMENTATION])
def test_detection_train_flip_moves_boxes_and_masks(task):
    transform = detection_train(None, crop_or_expand_p=0.0)  # the flip alone (crops: tests/data/test_azure_augmentation.py)
    torch.manual_seed(0)
    lefts = set()
    for _ in range(12):
        image, target = transform(*_scene())
        assert image.dtype == torch.float32 and image.shape == (3, 90, 120) and image.max() <= 1.0
        x0, y0, x1, y1 = target["boxes"][0].round().int().tolist()
        lefts.add(x0)
        assert (y0, y1, x1 - x0) == (20, 50, 30)
        gray = image.mean(dim=0)
        # The box covers the (jittered) bright rectangle and nothing bright lies outside it.
        assert gray[y0:y1, x0:x1].min() > gray.max() * 0.9
        outside = gray.clone()
        outside[y0:y1, x0:x1] = 0
        assert outside.max() < gray.max() * 0.1
        assert torch.equal(target["masks"][0].bool(), gray > gray.max() * 0.5)
        assert target["labels"].tolist() == [2] and target["iscrowd"].tolist() == [1] and target["image_id"] == 7
    assert lefts == {10, 80}  # both the original and the mirrored position occurred


def test_detection_eval_is_identity_in_float():
    image, target = _scene()
    out, out_target = build_transforms(DETECTION, {}, train=False)(image, target)
    assert torch.equal(out, torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255)
    assert torch.equal(out_target["boxes"], target["boxes"])


def test_sanitize_drops_degenerate_boxes_with_their_labels_crowd_flags_and_masks():
    image, target = _scene()
    target["boxes"] = tv_tensors.BoundingBoxes([[10.0, 20.0, 40.0, 50.0], [60.0, 10.0, 60.0, 30.0]],
                                               format="XYXY", canvas_size=(90, 120))
    target["labels"] = torch.tensor([2, 3])
    target["iscrowd"] = torch.tensor([0, 1])
    target["masks"] = tv_tensors.Mask(torch.cat([target["masks"], torch.zeros(1, 90, 120, dtype=torch.uint8)]))
    _, out = detection_train(None, crop_or_expand_p=0.0)(image, target)
    assert len(out["boxes"]) == 1
    assert out["labels"].tolist() == [2] and out["iscrowd"].tolist() == [0] and out["masks"].shape == (1, 90, 120)


def test_unknown_task_is_a_usage_error():
    from visionml.errors import UsageError

    with pytest.raises(UsageError, match="unknown task"):
        build_transforms("segmentation-ish", {}, train=True)
