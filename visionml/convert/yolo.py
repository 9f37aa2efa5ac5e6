"""YOLO txt (Ultralytics layout) <-> the canonical records.

A dataset is a ``data.yaml`` (``path``, ``train``/``val``/``test``, ``names`` as a list or a dict)
or a folder with ``images/`` and ``labels/`` (optionally split into ``train/``, ``val/`` ...) and a
names file. Each image ``.../images/x.jpg`` has ``.../labels/x.txt`` with one object per line:
``class cx cy w h`` (detect) or ``class x1 y1 x2 y2 ...`` (segment), normalised.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import yaml

from .. import geometry
from ..errors import UsageError, VisionMLError
from ..tasks import BOXES, POLYGONS, get_task, task_for_shape
from .common import (DECIMALS, IMAGE_SUFFIXES, Converted, Problems, as_detection, atomic_dir, converter_task,
                     box_object_abs, new_record, open_image, polygon_object_abs)

NAMES_FILES = ("classes.txt", "obj.names", "names.txt")
SPLITS = ("train", "val", "test")


# ---------------------------------------------------------------- reading


def read_yolo(src, *, task: str | None = None, split: str | None = None) -> Converted:
    src = Path(src)
    root, names, split_dirs = _layout(src)
    if split is not None:
        if split not in split_dirs:
            raise UsageError(f"--split {split}: {src} has splits {', '.join(split_dirs) or 'none'}")
        split_dirs = {split: split_dirs[split]}
    images = _images(split_dirs)
    if not images:
        raise VisionMLError(f"{src}: no images found under {', '.join(map(str, _flat(split_dirs)))}")
    task = converter_task(task, (BOXES, POLYGONS), "YOLO labels hold objects") if task else None
    parsed = [(img, _label_path(img), _parse_labels(_label_path(img))) for img in images]
    if task is None:
        any_poly = any(len(row[1]) > 4 for _, _, (rows, _) in parsed for row in rows)
        task = task_for_shape(POLYGONS if any_poly else BOXES)
    problems = Problems()
    records = []
    for img, lbl, (rows, line_problems) in parsed:
        for line, reason in line_problems:
            problems.add(lbl, line, reason)
        info = open_image(img, problems, lbl if lbl.is_file() else img, "image")
        if info is None:
            continue
        rec = new_record(img, info, lbl)
        for cls, coords, line in rows:
            obj = _object(cls, coords, names, task, info, problems, lbl, line)
            if obj is not None:
                rec.objects.append(obj)
        records.append(rec)
    return Converted(task, names, records, list(problems))


def _layout(src: Path) -> tuple[Path, list[str], dict[str, list[Path]]]:
    """(root, class names, {split: [image folders or list files]})."""
    yaml_path = src if src.is_file() else _find_yaml(src)
    if yaml_path is not None:
        return _from_yaml(yaml_path)
    if not (src / "images").is_dir():
        raise VisionMLError(f"{src}: no data.yaml and no images/ folder; --from yolo takes a "
                            "data.yaml or a folder with images/ and labels/")
    names = _names_file(src)
    subdirs = sorted(p for p in (src / "images").iterdir() if p.is_dir())
    splits = {p.name: [p] for p in subdirs} or {"all": [src / "images"]}
    return src, names, splits


def _find_yaml(folder: Path) -> Path | None:
    if not folder.is_dir():
        raise VisionMLError(f"{folder}: not found")
    if (folder / "data.yaml").is_file():
        return folder / "data.yaml"
    found = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))
    return found[0] if len(found) == 1 else None


def _from_yaml(yaml_path: Path):
    try:
        doc = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise VisionMLError(f"{yaml_path}: not readable YAML ({exc})") from None
    if not isinstance(doc, dict) or "names" not in doc:
        raise VisionMLError(f"{yaml_path}: needs 'names' (a list, or a dict of index: name)")
    names = _names_from_yaml(doc["names"], yaml_path)
    # Ultralytics resolves 'path' against the YAML's folder when it is missing; a 'path' that
    # does not exist here (the data set was moved) falls back to the same.
    root = yaml_path.parent
    if doc.get("path"):
        cand = Path(doc["path"])
        cand = cand if cand.is_absolute() else yaml_path.parent / cand
        root = cand if cand.is_dir() else root
    splits = {}
    for key in SPLITS:
        value = doc.get(key)
        if value:
            entries = value if isinstance(value, list) else [value]
            splits[key] = [p if p.is_absolute() else root / p for p in map(Path, entries)]
    if not splits:
        raise VisionMLError(f"{yaml_path}: names no split (train, val or test)")
    return root, names, splits


def _names_from_yaml(names, yaml_path: Path) -> list[str]:
    if isinstance(names, list):
        return [str(n) for n in names]
    if isinstance(names, dict):
        try:
            keys = sorted(int(k) for k in names)
        except ValueError:
            raise VisionMLError(f"{yaml_path}: 'names' keys must be class indices") from None
        if keys != list(range(len(keys))):
            raise VisionMLError(f"{yaml_path}: 'names' indices must be 0..{len(keys) - 1}")
        return [str(names[k] if k in names else names[str(k)]) for k in keys]
    raise VisionMLError(f"{yaml_path}: 'names' must be a list or a dict")


def _names_file(src: Path) -> list[str]:
    for name in NAMES_FILES:
        path = src / name
        if path.is_file():
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise VisionMLError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
            return [ln.strip() for ln in text.splitlines() if ln.strip()]
    raise VisionMLError(f"{src}: no data.yaml and no class names file ({', '.join(NAMES_FILES)})")


def _flat(split_dirs: dict) -> list[Path]:
    return [p for paths in split_dirs.values() for p in paths]


def _images(split_dirs: dict) -> list[Path]:
    """Every image of the splits, once (a 'val' pointing at 'train' does not double the data)."""
    seen, out = set(), []
    for entry in _flat(split_dirs):
        if entry.is_dir():
            found = sorted(p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif entry.is_file() and entry.suffix == ".txt":  # a list of image paths
            found = [p if p.is_absolute() else entry.parent / p
                     for p in map(Path, entry.read_text().split())]
        else:
            raise VisionMLError(f"{entry}: split folder or image list not found")
        for p in found:
            key = os.path.abspath(p)
            if key not in seen:
                seen.add(key)
                out.append(p)
    return out


def _label_path(image: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder in the path becomes ``labels``."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _parse_labels(path: Path):
    """([(class, coords, line)], [(line, reason)]); a missing file is an image with no objects."""
    if not path.is_file():
        return [], []
    rows, problems = [], []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1
        return [], [(line, f"not UTF-8 (byte 0x{exc.object[exc.start]:02x}); save the label file as UTF-8")]
    for n, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            cls, coords = int(tokens[0]), [float(t) for t in tokens[1:]]
        except ValueError:
            problems.append((n, f"expected 'class x y ...' numbers, got {line.strip()!r}"))
            continue
        if len(coords) != 4 and (len(coords) < 6 or len(coords) % 2):
            problems.append((n, f"{len(coords)} coordinates: a box needs 4 (cx cy w h), a polygon "
                                "an even number of at least 6"))
            continue
        rows.append((cls, coords, n))
    return rows, problems


def _object(cls, coords, names, task, info, problems, lbl, line):
    if not 0 <= cls < len(names):
        problems.add(lbl, line, f"class {cls} is not in the names (0..{len(names) - 1})")
        return None
    w, h = info.width, info.height
    if len(coords) == 4:
        if POLYGONS in task.label_shapes:
            problems.add(lbl, line, "a box line (class cx cy w h) in segmentation data")
            return None
        xyxy = geometry.xyxy_norm_to_abs(geometry.cxcywh_norm_to_xyxy_norm(coords), w, h)[0]
        return box_object_abs(names[cls], xyxy, w, h, is_crowd=False, problems=problems,
                              source=lbl, where=line)
    segs = geometry.polygon_norm_to_abs([coords], w, h)
    obj = polygon_object_abs(names[cls], segs, w, h, is_crowd=False, problems=problems,
                             source=lbl, where=line)
    return as_detection(obj) if obj is not None and POLYGONS not in task.label_shapes else obj


# ---------------------------------------------------------------- writing


def write_yolo(data: Converted, out, *, force: bool = False, split: str = "train") -> list[str]:
    """Write ``OUT/images/<split>/`` (images hard-linked, else symlinked, else copied),
    ``OUT/labels/<split>/*.txt`` and ``OUT/data.yaml`` (``val`` points at the same split: edit it
    when you convert a validation set into the same folder layout). Returns notes for the user."""
    if not get_task(data.task).objects:
        raise UsageError(f"--to yolo writes detection or segmentation labels, not {data.task}")
    out = Path(out)
    cls_index = {name: i for i, name in enumerate(data.labels)}
    crowd, used, how = 0, set(), set()
    with atomic_dir(out, force) as tmp:
        img_dir, lbl_dir = tmp / "images" / split, tmp / "labels" / split
        img_dir.mkdir(parents=True)
        lbl_dir.mkdir(parents=True)
        for rec in data.records:
            name = _unique_name(Path(rec.path), used)
            how.add(link_or_copy(_local_image(rec.path), img_dir / name))
            lines = []
            for obj in rec.objects:
                if obj.is_crowd:
                    crowd += 1
                    continue
                lines.append(yolo_line(obj, cls_index[obj.label], data.task))
            (lbl_dir / Path(name).with_suffix(".txt")).write_text("".join(ln + "\n" for ln in lines))
        spec = {"path": str(out.resolve()), "train": f"images/{split}", "val": f"images/{split}",
                "names": dict(enumerate(data.labels))}
        (tmp / "data.yaml").write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    notes = [f"images were {' / '.join(sorted(how))} into {out / 'images' / split}"]
    if crowd:
        notes.append(f"{crowd} crowd object(s) were left out: YOLO has no crowd flag (as "
                     "Ultralytics' own COCO converter does)")
    return notes


def _local_image(path: str) -> Path:
    from .jsonl import _local

    return _local(path)


def _unique_name(image: Path, used: set) -> str:
    """The image's file name, suffixed ``_1``, ``_2``... when another image already took its stem
    (label files are named by stem)."""
    stem, n = image.stem, 0
    while (stem if n == 0 else f"{stem}_{n}") in used:
        n += 1
    stem = stem if n == 0 else f"{stem}_{n}"
    used.add(stem)
    return stem + image.suffix


def link_or_copy(src: Path, dst: Path) -> str:
    """Hard link (no extra space, survives moving the source), else symlink, else copy."""
    try:
        os.link(src, dst)
        return "hard-linked"
    except OSError:
        pass
    try:
        os.symlink(os.path.abspath(src), dst)
        return "symlinked"
    except OSError:
        shutil.copy2(src, dst)
        return "copied"


def yolo_line(obj, cls: int, task: str) -> str:
    if POLYGONS in get_task(task).label_shapes and obj.polygon is not None:
        coords = merge_segments_norm(obj.polygon)
    else:
        coords = geometry.xyxy_norm_to_cxcywh_norm(obj.box)[0]
    return " ".join([str(cls)] + [f"{v:.{DECIMALS}f}" for v in coords])


def merge_segments_norm(segments) -> list[float]:
    """One YOLO polygon for a multi-part object: each part is walked in the same direction and
    joined to the first part's start by a bridge travelled there and back, so the bridges add no
    area and the union of the parts is what a rasteriser fills."""
    parts = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in segments]
    if len(parts) == 1:
        return parts[0].reshape(-1).tolist()
    parts = [p if _signed_area(p) >= 0 else p[::-1] for p in parts]
    anchor = parts[0][0]
    chain = [parts[0], anchor[None]]
    for part in parts[1:]:
        chain += [part, part[0][None], anchor[None]]
    return np.concatenate(chain).reshape(-1).tolist()


def _signed_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
