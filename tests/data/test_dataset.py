"""Datasets over sample data read back through the reader: targets, transforms, errors, the split."""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from visionml.data.dataset import VisionDataset, build_datasets, collate_fn, split_train_val
from visionml.data.reader import read_dataset
from visionml.data.records import ImageRecord, ObjectLabel
from visionml.data.sample import make_sample_data
from visionml.data.transforms import detection_labels_getter
from visionml.errors import UsageError, VisionMLError
from visionml.tasks import DETECTION, MULTICLASS, MULTILABEL, SEGMENTATION, TASKS


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """Each task's sample data (8 train + 2 val images), read back with ``read_dataset``."""
    loaded = {}
    for task in TASKS:
        paths = make_sample_data(task, tmp_path_factory.mktemp(task), n=10, seed=4)
        loaded[task] = read_dataset(paths["train"], task)
    return loaded


def _ds(sample, task, transform=None, **kw):
    data = sample[task]
    return VisionDataset(data.records, task, data.labels, transform, **kw)


def test_multiclass_targets(sample):
    ds = _ds(sample, MULTICLASS)
    for i, record in enumerate(ds.records):
        image, target = ds[i]
        assert image.dtype == torch.float32 and image.shape == (3, 192, 192)
        assert 0.0 <= image.min() and image.max() <= 1.0
        assert target.dtype == torch.int64 and target.shape == ()
        assert ds.labels[int(target)] == record.label


def test_multilabel_targets(sample):
    ds = _ds(sample, MULTILABEL)
    for i, record in enumerate(ds.records):
        _, target = ds[i]
        assert target.dtype == torch.float32 and target.shape == (4,)
        assert {ds.labels[j] for j in torch.nonzero(target).flatten().tolist()} == set(record.label)


@pytest.mark.parametrize("task", [DETECTION, SEGMENTATION])
def test_detection_targets_in_pixels_with_one_based_labels(sample, task):
    ds = _ds(sample, task)
    for i, record in enumerate(ds.records):
        image, target = ds[i]
        n = len(record.objects)
        assert image.shape == (3, 168, 224)
        assert target["boxes"].dtype == torch.float32 and target["boxes"].shape == (n, 4)
        assert type(target["boxes"]) is torch.Tensor  # plain tensors out, no tv_tensors
        assert target["labels"].dtype == torch.int64
        assert target["labels"].tolist() == [ds.labels.index(o.label) + 1 for o in record.objects]
        assert target["iscrowd"].tolist() == [0] * n and target["image_id"] == i
        expected = torch.tensor([o.box for o in record.objects]) * torch.tensor([224, 168, 224, 168])
        assert torch.allclose(target["boxes"], expected.float(), atol=1e-3)
        if task == SEGMENTATION:
            assert target["masks"].dtype == torch.uint8 and target["masks"].shape == (n, 168, 224)
            _assert_masks_match_boxes(target["masks"], target["boxes"], tolerance=3.0)


def _assert_masks_match_boxes(masks, boxes, tolerance):
    """The box is the polygon's exact extent; the mask holds the pixels whose centres it covers,
    so a sharp tip (a star's, 45 degrees) thinner than a pixel leaves out up to ~2.6 px of it."""
    for mask, box in zip(masks, boxes):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        extent = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
        assert torch.allclose(extent, box, atol=tolerance), (extent, box)


def _flip_and_resize(size):
    return v2.Compose([v2.ToImage(), v2.RandomHorizontalFlip(p=1.0), v2.Resize(size, antialias=True),
                       v2.ToDtype(torch.float32, scale=True),
                       v2.SanitizeBoundingBoxes(labels_getter=detection_labels_getter)])


@pytest.mark.parametrize("task", [DETECTION, SEGMENTATION])
def test_boxes_and_masks_stay_on_the_objects_after_flip_and_resize(sample, task):
    """Every box after flip + resize frames the same pixels as the original box flipped and
    resized; every mask still covers one flat-coloured shape and agrees with its box."""
    plain, moved = _ds(sample, task), _ds(sample, task, _flip_and_resize((126, 300)))
    for i in range(len(plain)):
        image, target = plain[i]
        image2, target2 = moved[i]
        assert image2.shape == (3, 126, 300)
        assert target2["labels"].tolist() == target["labels"].tolist()
        expected = _expected_image(image, (126, 300))
        for box, box2 in zip(target["boxes"], target2["boxes"]):
            x0, y0, x1, y1 = box.tolist()
            sx, sy = 300 / 224, 126 / 168
            assert torch.allclose(box2, torch.tensor([(224 - x1) * sx, y0 * sy, (224 - x0) * sx, y1 * sy]), atol=1e-3)
            a, b = _crop(image2, box2), _crop(expected, box2)
            assert (a - b).abs().mean() < 0.03
        if task == SEGMENTATION:
            expected_masks = v2.functional.resize(target["masks"].flip(-1), [126, 300],
                                                  interpolation=v2.InterpolationMode.NEAREST)
            assert torch.equal(target2["masks"], expected_masks)
            _assert_masks_match_boxes(target2["masks"], target2["boxes"], tolerance=3.0 * 300 / 224)
            for mask in target2["masks"].bool():
                inside = image2[:, _erode(mask)]
                assert (inside - inside.median(dim=1, keepdim=True).values).abs().mean() < 0.04


def _expected_image(image, size):
    return F.interpolate(image.flip(-1)[None], size=size, mode="bilinear", antialias=True,
                         align_corners=False)[0]


def _crop(image, box):
    x0, y0, x1, y1 = box.round().int().tolist()
    return image[:, y0:y1, x0:x1]


def _erode(mask):
    m = mask[None, None].float()
    return (-F.max_pool2d(-m, 5, stride=1, padding=2))[0, 0] > 0.5


@pytest.mark.parametrize("task", TASKS)
def test_library_transforms_through_build_datasets(sample, task):
    data = sample[task]
    train, val = build_datasets(data.records, data.records, task, data.labels,
                                {"training_crop_size": 64, "validation_resize_size": 72, "validation_crop_size": 64})
    torch.manual_seed(1)
    for ds in (train, val):
        image, target = ds[0]
        if task in (MULTICLASS, MULTILABEL):
            assert image.shape == (3, 64, 64) and image.min() < 0  # normalised
        else:
            assert image.shape == (3, 168, 224) and 0 <= image.min() and image.max() <= 1
            assert len(target["boxes"]) == len(data.records[0].objects)
            if task == SEGMENTATION:
                _assert_masks_match_boxes(target["masks"], target["boxes"], tolerance=3.0)


def test_crowd_objects_are_kept_and_marked(sample):
    data = sample[SEGMENTATION]
    record = data.records[0]
    record = ImageRecord(record.source, record.line, record.image_url, record.path,
                         objects=[ObjectLabel(o.label, o.box, True if k == 0 else o.is_crowd, o.polygon)
                                  for k, o in enumerate(record.objects)])
    _, target = VisionDataset([record], SEGMENTATION, data.labels)[0]
    assert target["iscrowd"].tolist()[0] == 1 and len(target["boxes"]) == len(record.objects)
    assert target["masks"][0].any()


def test_exif_orientation_is_applied(tmp_path):
    """A JPEG stored 200x120 with EXIF orientation 6 (rotate 90) shows as 120x200; normalised
    boxes are fractions of the image as shown."""
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (200, 120), (10, 200, 30)).save(path, exif=exif)
    record = ImageRecord(str(tmp_path / "d.jsonl"), 1, "rotated.jpg", str(path),
                         objects=[ObjectLabel("a", (0.0, 0.0, 0.5, 0.25))])
    image, target = VisionDataset([record], DETECTION, ["a"])[0]
    assert image.shape == (3, 200, 120)
    assert target["boxes"].tolist() == [[0.0, 0.0, 60.0, 50.0]]


def test_images_are_decoded_per_access_unless_cached(tmp_path, sample):
    data = sample[MULTICLASS]
    path = tmp_path / "img.jpg"
    shutil.copy(data.records[0].path, path)
    record = ImageRecord("x.jsonl", 1, "img.jpg", str(path), label=data.records[0].label)
    fresh = VisionDataset([record], MULTICLASS, data.labels)
    cached = VisionDataset([record], MULTICLASS, data.labels, cache_images=True)
    before, _ = fresh[0]
    assert torch.equal(cached[0][0], before)
    Image.new("RGB", (192, 192), (0, 0, 0)).save(path)
    assert fresh[0][0].max() == 0  # re-read from disk
    assert torch.equal(cached[0][0], before)  # kept in memory


def test_unreadable_image_names_file_and_line_or_is_skipped(tmp_path, sample):
    data = sample[DETECTION]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    record = ImageRecord("/data/train.jsonl", 7, "broken.jpg", str(bad), objects=[])
    good = data.records[0]
    with pytest.raises(VisionMLError, match=r"/data/train.jsonl:7: image_url: .*broken.jpg.*ignore_data_errors=true"):
        VisionDataset([good, record], DETECTION, data.labels)[1]
    skipping = VisionDataset([good, record], DETECTION, data.labels, skip_invalid=True)
    assert skipping[1] is None
    images, targets = collate_fn(DETECTION)([skipping[0], skipping[1]])
    assert len(images) == len(targets) == 1


def test_class_outside_labels_is_an_error_naming_the_line(sample):
    data = sample[MULTICLASS]
    missing = data.records[2].label
    first = next(r for r in data.records if r.label == missing)
    with pytest.raises(VisionMLError, match=rf"train.jsonl:{first.line}: label: class '{missing}' is not among"):
        VisionDataset(data.records, MULTICLASS, [c for c in data.labels if c != missing])


@pytest.mark.parametrize("task", TASKS)
def test_dataloader_with_two_workers(sample, task):
    data = sample[task]
    train, _ = build_datasets(data.records, data.records, task, data.labels,
                              {"training_crop_size": 64})
    loader = DataLoader(train, batch_size=4, num_workers=2, collate_fn=collate_fn(task))
    batches = list(loader)
    assert len(batches) == 2
    images, targets = batches[0]
    if task in (MULTICLASS, MULTILABEL):
        assert images.shape == (4, 3, 64, 64)
        assert targets.shape == ((4,) if task == MULTICLASS else (4, 4))
    else:
        assert isinstance(images, list) and len(images) == 4 and isinstance(targets[0], dict)
        assert [t["image_id"] for t in targets] == [0, 1, 2, 3]


def test_classification_collate_drops_skipped_items():
    batch = [(torch.zeros(3, 4, 4), torch.tensor(1)), None, (torch.ones(3, 4, 4), torch.tensor(0))]
    images, targets = collate_fn(MULTICLASS)(batch)
    assert images.shape == (2, 3, 4, 4) and targets.tolist() == [1, 0]


# ---- split_train_val ----

def _records(labels):
    return [ImageRecord("d.jsonl", i + 1, f"{i}.jpg", f"{i}.jpg", label=lab) for i, lab in enumerate(labels)]


def test_split_is_seeded_and_stratified():
    records = _records(["a"] * 40 + ["b"] * 20 + ["c"] * 20)
    train, val = split_train_val(records, 0.25, seed=3, task=MULTICLASS)
    again = split_train_val(records, 0.25, seed=3, task=MULTICLASS)
    other = split_train_val(records, 0.25, seed=4, task=MULTICLASS)
    assert [r.line for r in val] == [r.line for r in again[1]]
    assert [r.line for r in val] != [r.line for r in other[1]]
    assert Counter(r.label for r in val) == {"a": 10, "b": 5, "c": 5}
    assert len(train) == 60 and {r.line for r in train}.isdisjoint(r.line for r in val)


def test_split_falls_back_to_random_when_a_class_is_too_rare():
    records = _records(["a"] * 10 + ["b"])
    train, val = split_train_val(records, 0.2, seed=0, task=MULTICLASS)
    assert len(train) + len(val) == 11 and len(val) == 2


@pytest.mark.parametrize("n", [2, 3, 5])
def test_split_never_leaves_a_side_empty(n):
    for fraction in (0.01, 0.5, 0.99):
        train, val = split_train_val(_records(["a"] * n), fraction, seed=0, task=MULTILABEL)
        assert train and val and len(train) + len(val) == n


def test_split_refuses_bad_input():
    with pytest.raises(VisionMLError, match="at least 2 images"):
        split_train_val(_records(["a"]), 0.2)
    with pytest.raises(UsageError, match="validation_data_size"):
        split_train_val(_records(["a", "b"]), 1.0)


def test_split_of_detection_sample_data(sample):
    data = sample[DETECTION]
    train, val = split_train_val(data.records, 0.2, seed=0, task=DETECTION)
    assert (len(train), len(val)) == (6, 2)
    assert np.all(np.diff([r.line for r in train]) > 0)  # file order kept on each side
