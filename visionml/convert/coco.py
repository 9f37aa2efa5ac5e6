"""COCO JSON <-> the canonical records: boxes (``[x, y, w, h]`` pixels), polygons and RLE masks."""

from __future__ import annotations

import warnings
from collections import defaultdict
from pathlib import Path

import orjson

from .. import geometry
from ..errors import UsageError, VisionMLError
from ..tasks import BOXES, POLYGONS, get_task, task_for_shape
from .common import (DEFAULT_MAX_POLYGON_POINTS, Converted, Problems, atomic_file, box_object_abs, converter_task,
                     image_url_for, mask_object, new_record, open_image, polygon_object_abs)


def coco_image_dirs(json_path: Path, images_dir: Path | None) -> list[Path]:
    """Where ``file_name``s are looked up: ``--images DIR``; else ``images/`` beside the JSON
    (CVAT, Label Studio and Roboflow exports), then the JSON's own folder (files written by
    ``--to coco``, whose names are relative to it)."""
    if images_dir is not None:
        return [Path(images_dir)]
    beside = json_path.parent / "images"
    return [beside, json_path.parent] if beside.is_dir() else [json_path.parent]


def _find(dirs: list[Path], file_name: str) -> Path:
    for folder in dirs:
        if (folder / file_name).is_file():
            return folder / file_name
    return dirs[0] / file_name


def read_coco(json_path, *, images_dir=None, task: str | None = None,
              max_polygon_points: int = DEFAULT_MAX_POLYGON_POINTS) -> Converted:
    json_path = Path(json_path)
    doc = _load(json_path)
    task = _coco_task(doc, task, json_path)
    dirs = coco_image_dirs(json_path, images_dir)
    problems = Problems()
    categories = {c["id"]: c["name"] for c in sorted(doc["categories"], key=lambda c: c["id"])}
    by_image = defaultdict(list)
    image_ids = {img.get("id") for img in doc["images"]}
    for ann in doc.get("annotations", []):
        if not _is_id(ann.get("image_id")) or ann.get("image_id") not in image_ids:
            problems.add(json_path, f"annotation id {ann.get('id')}",
                         f"image_id {ann.get('image_id')!r} is not in 'images'")
            continue
        by_image[ann["image_id"]].append(ann)
    records = []
    for img in doc["images"]:
        where = f"image id {img.get('id')} {img.get('file_name')!r}"
        if not isinstance(img.get("file_name"), str):
            problems.add(json_path, where, "'file_name' is missing")
            continue
        annotated = (_size(img.get("width")), _size(img.get("height")))
        image = _find(dirs, img["file_name"])
        info = open_image(image, problems, json_path, where, annotated)
        if info is None:
            continue
        rec = new_record(image, info, json_path)
        for ann in by_image.get(img.get("id"), []):
            obj = _object(ann, categories, task, info, max_polygon_points, problems, json_path,
                          img["file_name"])
            if obj is not None:
                rec.objects.append(obj)
        records.append(rec)
    return Converted(task, list(categories.values()), records, list(problems))


def _load(json_path: Path) -> dict:
    try:
        doc = orjson.loads(json_path.read_bytes())
    except FileNotFoundError:
        raise VisionMLError(f"{json_path}: file not found") from None
    except orjson.JSONDecodeError as exc:
        raise VisionMLError(f"{json_path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise VisionMLError(f"{json_path}: a COCO file is a JSON object with 'images', "
                            "'annotations' and 'categories'")
    for key in ("images", "categories"):
        if not isinstance(doc.get(key), list):
            raise VisionMLError(f"{json_path}: '{key}' is missing or not a list; is this a COCO "
                                "annotation file?")
    if not isinstance(doc.get("annotations", []), list):
        raise VisionMLError(f"{json_path}: 'annotations' is not a list")
    for key in ("images", "annotations"):
        for i, item in enumerate(doc.get(key, [])):
            if not isinstance(item, dict) or (key == "images" and not _is_id(item.get("id"))):
                raise VisionMLError(f"{json_path}: {key}[{i}] must be an object" + (
                    " with an 'id' (a number or a string)" if key == "images" else ""))
    for i, cat in enumerate(doc["categories"]):
        if not isinstance(cat, dict) or type(cat.get("id")) is not int or not isinstance(cat.get("name"), str):
            raise VisionMLError(f"{json_path}: categories[{i}] needs an integer 'id' and a string 'name'")
    names = [c["name"] for c in doc["categories"]]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise VisionMLError(f"{json_path}: category names {dupes} are used by more than one id; "
                            "the JSONL schema identifies classes by name, so rename them")
    return doc


def _is_id(value) -> bool:
    return type(value) in (int, str)


def _size(value) -> int:
    """An image's annotated width or height; 0 (not compared) when it is not a whole number."""
    try:
        return int(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def _coco_task(doc: dict, task, json_path: Path):
    if task is not None:
        return converter_task(task, (BOXES, POLYGONS), "COCO input holds objects")
    has_masks = any(ann.get("segmentation") for ann in doc.get("annotations", []))
    return task_for_shape(POLYGONS if has_masks else BOXES)


def _object(ann, categories, task, info, max_points, problems, json_path, file_name):
    name = categories.get(ann.get("category_id")) if _is_id(ann.get("category_id")) else None
    where = f"annotation id {ann.get('id')} (image {file_name!r}, category {name!r})"
    if name is None:
        problems.add(json_path, where, f"category_id {ann.get('category_id')!r} is not in "
                     "'categories'")
        return None
    crowd = bool(ann.get("iscrowd", 0))
    w, h = info.width, info.height
    common = dict(is_crowd=crowd, problems=problems, source=json_path, where=where)
    if POLYGONS not in task.label_shapes:  # boxes only, whatever the segmentation holds
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(type(v) in (int, float) for v in bbox)):
            problems.add(json_path, where, "'bbox' must be [x, y, width, height], four numbers")
            return None
        w_box, h_box = bbox[2], bbox[3]
        if w_box < 0 or h_box < 0:
            problems.add(json_path, where, f"bbox {bbox} has a negative width or height")
            return None
        return box_object_abs(name, geometry.xywh_abs_to_xyxy_abs(bbox)[0], w, h, **common)
    seg = ann.get("segmentation")
    if isinstance(seg, list) and seg:
        return polygon_object_abs(name, seg, w, h, **common)
    if isinstance(seg, dict) and "counts" in seg:
        mask = _decode_rle(seg, h, w, problems, json_path, where)
        if mask is None:
            return None
        return mask_object(name, mask, w, h, max_points=max_points, **common)
    problems.add(json_path, where, "no 'segmentation' (polygons or RLE); pass --task "
                 f"{task_for_shape(BOXES)} to convert the boxes only")
    return None


def _decode_rle(seg: dict, height: int, width: int, problems, json_path, where):
    """Both RLE forms: uncompressed (``counts`` a list of run lengths) and compressed (a string)."""
    from pycocotools import mask as mask_utils

    size = seg.get("size")
    if size != [height, width]:
        problems.add(json_path, where, f"RLE size {size} differs from the image's [{height}, "
                     f"{width}]")
        return None
    counts = seg["counts"]
    try:
        if isinstance(counts, list):
            rle = mask_utils.frPyObjects(seg, height, width)
        else:
            rle = {"size": size, "counts": counts.encode() if isinstance(counts, str) else counts}
        with warnings.catch_warnings():  # pycocotools' own numpy-2 copy= deprecation, not ours
            warnings.simplefilter("ignore", DeprecationWarning)
            return mask_utils.decode(rle).astype(bool)
    except Exception as exc:  # pycocotools raises bare Exceptions/ValueErrors on bad counts
        problems.add(json_path, where, f"RLE cannot be decoded ({exc})")
        return None


def coco_dict(data: Converted, out_dir: Path) -> dict:
    """The dataset as a COCO document; ``file_name`` is relative to ``out_dir`` where possible."""
    if not get_task(data.task).objects:
        raise UsageError(f"COCO holds objects; {data.task} data cannot be written as COCO")
    cat_id = {name: i + 1 for i, name in enumerate(data.labels)}
    images, annotations = [], []
    for image_id, rec in enumerate(data.records, start=1):
        w, h = rec.width, rec.height
        images.append({"id": image_id, "file_name": image_url_for(rec.path, out_dir),
                       "width": w, "height": h})
        for obj in rec.objects:
            annotations.append(_annotation(obj, len(annotations) + 1, image_id, cat_id, w, h))
    return {
        "info": {"description": "written by visionml convert"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n, "supercategory": ""} for n, i in cat_id.items()],
    }


def _annotation(obj, ann_id: int, image_id: int, cat_id: dict, w: int, h: int) -> dict:
    x0, y0, x1, y1 = geometry.xyxy_norm_to_abs(obj.box, w, h)[0]
    ann = {"id": ann_id, "image_id": image_id, "category_id": cat_id[obj.label],
           "bbox": [_r(x0), _r(y0), _r(x1 - x0), _r(y1 - y0)], "iscrowd": int(obj.is_crowd)}
    if obj.polygon is not None:
        segs = geometry.polygon_norm_to_abs(obj.polygon, w, h)
        ann["segmentation"] = [[_r(v) for v in s.reshape(-1)] for s in segs]
        ann["area"] = _r(geometry.polygon_area_abs(segs))
    else:
        ann["segmentation"] = []
        ann["area"] = _r((x1 - x0) * (y1 - y0))
    return ann


def _r(v) -> float:
    return round(float(v), 4)


def write_coco(data: Converted, out: Path, *, force: bool = False) -> None:
    out = Path(out)
    doc = coco_dict(data, out.parent)
    with atomic_file(out, force) as tmp:
        tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
