"""Instance-mask PNGs (one integer id per instance, 0 = background; the Penn-Fudan layout) ->
polygon records.

Each instance becomes one object: the outer contour of every connected part is one segment,
simplified to the point budget. The JSONL schema unions an object's segments, so it cannot
express a hole: holes are filled, and the number of objects that had one is reported.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import VisionMLError
from ..tasks import BOXES, POLYGONS
from .common import (DEFAULT_MAX_POLYGON_POINTS, IMAGE_SUFFIXES, Converted, Problems, converter_task,
                     box_object_abs, find_image, mask_has_holes, mask_object, new_record,
                     open_image)

# Penn-Fudan names masks 'FudanPed00001_mask.png' for 'FudanPed00001.png'.
_MASK_SUFFIX = re.compile(r"[_\-.]?masks?$", re.IGNORECASE)


def masks_layout(src: Path, images_dir: Path | None) -> tuple[Path, Path]:
    """(masks folder, images folder): ``--images DIR`` with SRC the masks folder, or SRC holding
    a masks folder (a sub-folder whose name contains 'mask') and an images folder beside it."""
    src = Path(src)
    if not src.is_dir():
        raise VisionMLError(f"{src}: not a folder of mask PNGs")
    if images_dir is not None:
        return src, Path(images_dir)
    subdirs = [p for p in sorted(src.iterdir()) if p.is_dir()]
    masks = [p for p in subdirs if "mask" in p.name.lower()]
    others = [p for p in subdirs if "mask" not in p.name.lower() and _has_images(p)]
    if len(masks) != 1 or len(others) != 1:
        raise VisionMLError(f"{src}: expected one masks folder and one images folder inside "
                            f"(like PennFudanPed/PedMasks and PNGImages), found masks {masks} "
                            f"and images {others}; or pass the masks folder with --images DIR")
    return masks[0], others[0]


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


def read_masks(src, *, images_dir=None, task: str | None = None, label: str = "object",
               max_polygon_points: int = DEFAULT_MAX_POLYGON_POINTS) -> Converted:
    task = converter_task(task, (POLYGONS, BOXES), "instance masks give objects")
    mask_dir, img_dir = masks_layout(Path(src), images_dir)
    mask_files = sorted(p for p in mask_dir.iterdir() if p.suffix.lower() == ".png")
    if not mask_files:
        raise VisionMLError(f"{mask_dir}: no .png masks found")
    problems, records, holes = Problems(), [], 0
    for mask_path in mask_files:
        stem = _MASK_SUFFIX.sub("", mask_path.stem)
        image = find_image(img_dir, stem)
        if image is None:
            problems.add(mask_path, "image", f"no image named {stem}.<png|jpg|...> in {img_dir}")
            continue
        info = open_image(image, problems, mask_path, "image")
        if info is None:
            continue
        ids = _instance_ids(mask_path, info, problems)
        if ids is None:
            continue
        rec = new_record(image, info, mask_path)
        for inst in (int(v) for v in np.unique(ids) if v != 0):
            binary = ids == inst
            where = f"instance {inst}"
            if POLYGONS not in task.label_shapes:  # boxes: the pixels' own extent, whatever the point budget
                obj = box_object_abs(label, _pixel_extent(binary), info.width, info.height,
                                     is_crowd=False, problems=problems, source=mask_path,
                                     where=where)
            else:
                holes += mask_has_holes(binary)
                obj = mask_object(label, binary, info.width, info.height, is_crowd=False,
                                  max_points=max_polygon_points, problems=problems,
                                  source=mask_path, where=where)
            if obj is not None:
                rec.objects.append(obj)
        records.append(rec)
    notes = [f"{holes} instance(s) had holes, which were filled in: the JSONL schema unions an "
             "object's polygons and cannot express a hole"] if holes else []
    return Converted(task, [label], records, list(problems), notes)


def _pixel_extent(binary: np.ndarray) -> list[int]:
    """xyxy in pixel-edge coordinates: a pixel at column c spans [c, c + 1]."""
    rows, cols = np.flatnonzero(binary.any(axis=1)), np.flatnonzero(binary.any(axis=0))
    return [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]


def _instance_ids(mask_path: Path, info, problems) -> np.ndarray | None:
    from PIL import Image

    try:
        with Image.open(mask_path) as img:
            if img.mode not in ("1", "L", "P", "I", "I;16"):
                problems.add(mask_path, "mask", f"mode {img.mode}: expected a single-channel PNG "
                             "with one integer id per instance (0 = background)")
                return None
            ids = np.asarray(img)  # 'P' gives the palette indices, i.e. the instance ids
    except OSError as exc:
        problems.add(mask_path, "mask", f"not a readable PNG ({exc})")
        return None
    if ids.shape != (info.height, info.width):
        problems.add(mask_path, "mask", f"mask is {ids.shape[1]}x{ids.shape[0]}, the image "
                     f"{info.width}x{info.height}")
        return None
    return ids
