"""PyTorch datasets over ``ImageRecord``s for the four tasks, and the seeded train/validation split.

Items are ``(image, target)`` in the form torchvision models take (each task makes its own
target, ``Task.target``):

* multi-class: an int64 scalar class index (into ``labels``);
* multi-label: a float32 multi-hot vector ``[C]``;
* detection: ``{"boxes": float32 [N, 4] xyxy pixels, "labels": int64 [N] 1-based (0 is the
  detectors' background), "iscrowd": int64 [N], "image_id": int}`` - crowd objects are kept and
  marked, the loss and the metrics decide what to do with them;
* segmentation: the same plus ``"masks": uint8 [N, H, W]`` rasterised from the polygons the way
  COCO does (``geometry.polygons_abs_to_mask``), so training and evaluation agree on the pixels.

Images are decoded on every access (EXIF orientation applied, ``images.load_rgb``); nothing is
kept in memory unless ``cache_images=True`` (then each DataLoader worker holds its own copy).

With a ``tiling`` grid (``tile_grid_size``, training only) every image is an item whole and again
once per tile that holds an object, as Azure trains: the tile is cut from the decoded image and its
objects cut to it (``Task.tile_record``, remnants below ``visionml.tiling``'s rule left out), then
transformed like any image.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ..errors import UsageError, VisionMLError
from ..tasks import get_task
from .images import DEFAULT_MAX_PIXELS, load_rgb, local_path
from .records import ImageRecord

log = logging.getLogger(__name__)

_TO_FLOAT = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])


class VisionDataset(Dataset):
    """``records`` as ``(image, target)`` items for ``task``; ``labels`` fixes the class order.

    ``transform`` is a v2 pipeline (see ``transforms.build_transforms``); without one, images
    come out as float [3, H, W] in [0, 1]. ``skip_invalid``: an image that fails to decode is
    logged and its item is ``None`` (the collate functions drop it) instead of stopping with an
    error that names the file and line. ``tiling``: a ``visionml.tiling.TileGrid`` (the task's
    ``tiling(hp)``); ``items`` lists ``(record index, tile number or None for the whole image)``.
    """

    def __init__(self, records: Sequence[ImageRecord], task, labels: Sequence[str],
                 transform=None, *, cache_images: bool = False, skip_invalid: bool = False,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, tiling=None):
        self.records = list(records)
        self.task = get_task(task)
        self.labels = list(labels)
        self.transform = transform
        self.skip_invalid = skip_invalid
        self.max_pixels = max_pixels
        self._index = {name: i for i, name in enumerate(self.labels)}
        self._cache: dict[int, Image.Image] | None = {} if cache_images else None
        self._check_labels()
        self.tiling = tiling
        self.items = [(i, tile) for i, record in enumerate(self.records) for tile in (None, *self._tiles_of(record))]
        if tiling is not None:
            log.info("tiling %s: %d images and %d tiles with objects", tiling, len(self.records),
                     len(self.items) - len(self.records))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        record_index, tile_number = self.items[index]
        record = self.records[record_index]
        try:
            image = self._image(record_index)
        except VisionMLError:
            if not self.skip_invalid:
                raise
            log.warning("skipping %s (%s): the image cannot be decoded", record.where, record.path)
            return None
        if tile_number is not None:
            tile = self.tiling.tiles(image.width, image.height)[tile_number].tolist()
            record = self.task.tile_record(record, tile, image.width, image.height)
            image = image.crop(tuple(tile))
        target = self.task.target(record, self._index, image.width, image.height, index)
        return self.task.apply_transform(self.transform or _TO_FLOAT, image, target)

    def _tiles_of(self, record: ImageRecord) -> list[int]:
        """The numbers of the tiles of ``record`` that hold an object (Azure trains on those), from
        the size the reader took from the image; every tile when that size is unknown."""
        if self.tiling is None:
            return []
        if not (record.width and record.height):
            return list(range(self.tiling.cols * self.tiling.rows))
        tiles = self.tiling.tiles(record.width, record.height).tolist()
        return [k for k, tile in enumerate(tiles)
                if self.task.tile_record(record, tile, record.width, record.height).objects]

    def _check_labels(self) -> None:
        """Fail early, naming the line, when a record's class is not in ``labels``."""
        for record in self.records:
            for name in self.task.class_names(record):
                if name not in self._index:
                    raise VisionMLError(f"{record.where}: label: class {name!r} is not among the "
                                        f"model's classes {self.labels}")

    def _image(self, index: int) -> Image.Image:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        record = self.records[index]
        try:
            image = load_rgb(local_path(record.path), self.max_pixels)
        except (ValueError, OSError) as exc:
            raise VisionMLError(f"{record.where}: image_url: cannot read {record.path}: {exc}. "
                                "Fix or remove the line, or train with ignore_data_errors=true (the default)") from exc
        if self._cache is not None:
            self._cache[index] = image
        return image


def collate_fn(task):
    """The collate function for ``task``: items a skipping dataset dropped (``None``) are left out."""
    return get_task(task).collate


def build_datasets(train_records, val_records, task, labels, hp=None, **options) -> tuple[VisionDataset, VisionDataset]:
    """Training (augmenting) and validation (deterministic) datasets with the task's transforms for
    hyperparameters ``hp`` (see ``transforms.build_transforms``); ``options`` go to both
    ``VisionDataset``s (cache_images, skip_invalid, max_pixels)."""
    from .transforms import build_transforms

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
    stratify = _strata(records, n_val, get_task(task)) if task is not None else None
    train_idx, val_idx = train_test_split(np.arange(n), test_size=n_val, random_state=seed,
                                          shuffle=True, stratify=stratify)
    return [records[i] for i in sorted(train_idx)], [records[i] for i in sorted(val_idx)]


def _strata(records: list[ImageRecord], n_val: int, task) -> list[str] | None:
    """Per record the stratum the split keeps balanced (the task's ``stratum``), or None."""
    strata = [task.stratum(r) for r in records]
    if any(s is None for s in strata):
        return None
    classes, counts = np.unique(strata, return_counts=True)
    n_train = len(records) - n_val
    if counts.min() < 2 or n_val < len(classes) or n_train < len(classes):
        return None
    return strata

