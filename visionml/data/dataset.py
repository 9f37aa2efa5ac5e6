"""PyTorch datasets over ``ImageRecord``s for the four tasks, and the seeded train/validation split.

Items are ``(image, target)`` in the form torchvision models take:

* multi-class: an int64 scalar class index (into ``labels``);
* multi-label: a float32 multi-hot vector ``[C]``;
* detection: ``{"boxes": float32 [N, 4] xyxy pixels, "labels": int64 [N] 1-based (0 is the
  detectors' background), "iscrowd": int64 [N], "image_id": int}`` - crowd objects are kept and
  marked, the loss and the metrics decide what to do with them;
* segmentation: the same plus ``"masks": uint8 [N, H, W]`` rasterised from the polygons the way
  COCO does (``geometry.polygons_abs_to_mask``), so training and evaluation agree on the pixels.

Images are decoded on every access (EXIF orientation applied, ``images.load_rgb``); nothing is
kept in memory unless ``cache_images=True`` (then each DataLoader worker holds its own copy).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate
from torchvision import tv_tensors
from torchvision.transforms import v2

from .. import geometry
from ..errors import UsageError, VisionMLError
from ..tasks import MULTICLASS, MULTILABEL, SEGMENTATION, canonical_task, is_classification
from .images import DEFAULT_MAX_PIXELS, load_rgb
from .records import ImageRecord
from .transforms import build_transforms

log = logging.getLogger(__name__)

_TO_FLOAT = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])


class VisionDataset(Dataset):
    """``records`` as ``(image, target)`` items for ``task``; ``labels`` fixes the class order.

    ``transform`` is a v2 pipeline (see ``transforms.build_transforms``); without one, images
    come out as float [3, H, W] in [0, 1]. ``skip_invalid``: an image that fails to decode is
    logged and its item is ``None`` (the collate functions drop it) instead of stopping with an
    error that names the file and line.
    """

    def __init__(self, records: Sequence[ImageRecord], task: str, labels: Sequence[str],
                 transform=None, *, cache_images: bool = False, skip_invalid: bool = False,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS):
        self.records = list(records)
        self.task = canonical_task(task)
        self.labels = list(labels)
        self.transform = transform
        self.skip_invalid = skip_invalid
        self.max_pixels = max_pixels
        self._index = {name: i for i, name in enumerate(self.labels)}
        self._cache: dict[int, Image.Image] | None = {} if cache_images else None
        self._check_labels()

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        record = self.records[index]
        try:
            image = self._image(index)
        except VisionMLError:
            if not self.skip_invalid:
                raise
            log.warning("skipping %s (%s): the image cannot be decoded", record.where, record.path)
            return None
        return self._apply(image, self._target(index, record, image.width, image.height))

    def _check_labels(self) -> None:
        """Fail early, naming the line, when a record's class is not in ``labels``."""
        for record in self.records:
            for name in _class_names(record):
                if name not in self._index:
                    raise VisionMLError(f"{record.where}: label: class {name!r} is not among the "
                                        f"model's classes {self.labels}")

    def _image(self, index: int) -> Image.Image:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        record = self.records[index]
        try:
            image = load_rgb(_local(record.path), self.max_pixels)
        except (ValueError, OSError) as exc:
            raise VisionMLError(f"{record.where}: image_url: cannot read {record.path}: {exc}. "
                                "Fix or remove the line, or train with --skip-invalid") from exc
        if self._cache is not None:
            self._cache[index] = image
        return image

    def _target(self, index: int, record: ImageRecord, width: int, height: int):
        if self.task == MULTICLASS:
            return torch.tensor(self._index[record.label], dtype=torch.int64)
        if self.task == MULTILABEL:
            hot = torch.zeros(len(self.labels), dtype=torch.float32)
            hot[[self._index[name] for name in record.label]] = 1.0
            return hot
        return self._objects_target(index, record, width, height)

    def _objects_target(self, index: int, record: ImageRecord, width: int, height: int) -> dict:
        # Coordinates are fractions of the decoded image (after EXIF rotation), whatever
        # image_details claimed.
        boxes = geometry.xyxy_norm_to_abs([o.box for o in record.objects], width, height)
        target = {
            "boxes": tv_tensors.BoundingBoxes(torch.as_tensor(boxes, dtype=torch.float32),
                                              format="XYXY", canvas_size=(height, width)),
            "labels": torch.tensor([self._index[o.label] + 1 for o in record.objects], dtype=torch.int64),
            "iscrowd": torch.tensor([int(o.is_crowd) for o in record.objects], dtype=torch.int64),
            "image_id": index,
        }
        if self.task == SEGMENTATION:
            target["masks"] = tv_tensors.Mask(_masks(record, width, height))
        return target

    def _apply(self, image: Image.Image, target):
        if is_classification(self.task):
            return (self.transform or _TO_FLOAT)(image).as_subclass(torch.Tensor), target
        image, target = (self.transform or _TO_FLOAT)(image, target)
        return image.as_subclass(torch.Tensor), _plain(target)


def _class_names(record: ImageRecord) -> list[str]:
    if isinstance(record.label, str):
        return [record.label]
    if record.label is not None:
        return list(record.label)
    return [o.label for o in record.objects]


def _local(path: str):
    if path.startswith(("http://", "https://")):
        from .images import local_path  # images.py owns the download cache

        return local_path(path)
    return path


def _masks(record: ImageRecord, width: int, height: int) -> torch.Tensor:
    masks = np.zeros((len(record.objects), height, width), dtype=np.uint8)
    for i, obj in enumerate(record.objects):
        if obj.polygon:
            masks[i] = geometry.polygons_abs_to_mask(
                geometry.polygon_norm_to_abs(obj.polygon, width, height), height, width)
    return torch.from_numpy(masks)


def _plain(target: dict) -> dict:
    """tv_tensors back to plain tensors: models and losses expect nothing more."""
    return {k: v.as_subclass(torch.Tensor) if isinstance(v, torch.Tensor) else v for k, v in target.items()}


def detection_collate(batch):
    """Detection/segmentation batches as torchvision's detectors take them: (images, targets),
    two lists; items a ``skip_invalid`` dataset dropped (``None``) are left out."""
    kept = [item for item in batch if item is not None]
    return [image for image, _ in kept], [target for _, target in kept]


def classification_collate(batch):
    """``default_collate`` (stacked images, stacked targets) without the dropped items."""
    return default_collate([item for item in batch if item is not None])


def collate_fn(task: str):
    """The collate function for ``task``."""
    return classification_collate if is_classification(canonical_task(task)) else detection_collate


def build_datasets(train_records, val_records, task: str, labels, hp: dict | None = None,
                   **options) -> tuple[VisionDataset, VisionDataset]:
    """Training (augmenting) and validation (deterministic) datasets with the task's transforms;
    ``options`` go to both ``VisionDataset``s (cache_images, skip_invalid, max_pixels)."""
    task = canonical_task(task)
    return (VisionDataset(train_records, task, labels, build_transforms(task, hp, train=True), **options),
            VisionDataset(val_records, task, labels, build_transforms(task, hp, train=False), **options))


def split_train_val(records: Sequence[ImageRecord], fraction: float = 0.2, seed: int = 0,
                    task: str | None = None) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Hold out ``fraction`` of ``records`` (Azure's ``validation_data_size``) as validation data,
    seeded. Multi-class is stratified when every class has at least 2 images and both sides can
    hold every class; otherwise the split is plain random. Neither side is ever empty."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < fraction < 1.0:
        raise UsageError(f"validation_data_size must be between 0 and 1 (exclusive), got {fraction}")
    records = list(records)
    n = len(records)
    if n < 2:
        raise VisionMLError(f"cannot split {n} image(s) into training and validation data: "
                            "give at least 2 images, or pass separate validation data")
    n_val = min(max(1, round(n * fraction)), n - 1)
    stratify = _strata(records, n_val) if task is not None and canonical_task(task) == MULTICLASS else None
    train_idx, val_idx = train_test_split(np.arange(n), test_size=n_val, random_state=seed,
                                          shuffle=True, stratify=stratify)
    return [records[i] for i in sorted(train_idx)], [records[i] for i in sorted(val_idx)]


def _strata(records: list[ImageRecord], n_val: int) -> list[str] | None:
    classes, counts = np.unique([r.label for r in records], return_counts=True)
    n_train = len(records) - n_val
    if counts.min() < 2 or n_val < len(classes) or n_train < len(classes):
        return None
    return [r.label for r in records]

