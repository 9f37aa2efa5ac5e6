"""Pascal VOC XML (one file per image, pixel ``xmin ymin xmax ymax``) -> the canonical records.

Coordinates are taken as written (``topX = xmin / width``), as the tools that export VOC today
(LabelImg, CVAT, Roboflow) write them. VOC's ``difficult`` and ``truncated`` flags have no field in
the JSONL schema: ``truncated`` is counted and reported; ``difficult`` is kept as a normal object
by default and ``difficult_mode`` can mark such objects crowd (ignored by the metrics, as VOC's
own evaluation ignores them) or drop them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from ..errors import UsageError, VisionMLError
from ..tasks import BOXES
from .common import Converted, Problems, box_object_abs, converter_task, find_image, new_record, open_image

DIFFICULT_MODES = ("keep", "crowd", "drop")


def voc_layout(src: Path, images_dir: Path | None) -> tuple[Path, Path]:
    """(folder of XML files, folder of images): ``SRC/Annotations`` + ``SRC/JPEGImages``, or a
    folder of XML files plus ``--images`` (default: the same folder)."""
    src = Path(src)
    if not src.is_dir():
        raise VisionMLError(f"{src}: not a folder; --from voc takes a folder with Annotations/ "
                            "and JPEGImages/, or a folder of XML files with --images DIR")
    if (src / "Annotations").is_dir():
        return src / "Annotations", Path(images_dir) if images_dir else src / "JPEGImages"
    return src, Path(images_dir) if images_dir else src


def read_voc(src, *, images_dir=None, task: str | None = None, split: str | None = None,
             difficult_mode: str = "keep") -> Converted:
    task = converter_task(task, (BOXES,), "Pascal VOC XML holds boxes only")
    if difficult_mode not in DIFFICULT_MODES:
        raise UsageError(f"--voc-difficult must be one of {', '.join(DIFFICULT_MODES)}")
    xml_dir, img_dir = voc_layout(Path(src), images_dir)
    xml_files = _xml_files(Path(src), xml_dir, split)
    problems = Problems()
    records, counts = [], {"difficult": 0, "truncated": 0}
    for xml_path in xml_files:
        rec = _read_one(xml_path, img_dir, difficult_mode, problems, counts)
        if rec is not None:
            records.append(rec)
    labels = sorted({o.label for r in records for o in r.objects})
    return Converted(task, labels, records, list(problems), _notes(counts, difficult_mode))


def _xml_files(src: Path, xml_dir: Path, split: str | None) -> list[Path]:
    if split is None:
        files = sorted(xml_dir.glob("*.xml"))
    else:
        listing = src / "ImageSets" / "Main" / f"{split}.txt"
        if not listing.is_file():
            raise UsageError(f"--split {split}: {listing} not found")
        ids = [ln.split()[0] for ln in listing.read_text().splitlines() if ln.strip()]
        files = [xml_dir / f"{i}.xml" for i in ids]
    if not files:
        raise VisionMLError(f"{xml_dir}: no .xml annotation files found")
    return files


def _read_one(xml_path: Path, img_dir: Path, difficult_mode, problems, counts):
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as exc:
        problems.add(xml_path, "file", f"not readable VOC XML ({exc})")
        return None
    name = (root.findtext("filename") or "").strip()
    image = img_dir / name if name else None
    if image is None or not image.is_file():
        image = find_image(img_dir, Path(name).stem if name else xml_path.stem) or image
    annotated = (_int(root.findtext("size/width")), _int(root.findtext("size/height")))
    info = open_image(image or img_dir / f"{xml_path.stem}.jpg", problems, xml_path, "filename",
                      annotated)
    if info is None:
        return None
    rec = new_record(image, info, xml_path)
    for i, node in enumerate(root.iter("object"), start=1):
        obj = _object(node, i, info, difficult_mode, problems, counts, xml_path)
        if obj is not None:
            rec.objects.append(obj)
    return rec


def _object(node, index, info, difficult_mode, problems, counts, xml_path):
    label = (node.findtext("name") or "").strip()
    where = f"object {index} {label!r}"
    if not label:
        problems.add(xml_path, where, "<name> is empty")
        return None
    coords = [node.findtext(f"bndbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax")]
    try:
        box = [float(c) for c in coords]
    except (TypeError, ValueError):
        problems.add(xml_path, where, f"<bndbox> needs numeric xmin, ymin, xmax, ymax (got {coords})")
        return None
    difficult = _int(node.findtext("difficult")) == 1
    counts["difficult"] += difficult
    counts["truncated"] += _int(node.findtext("truncated")) == 1
    if difficult and difficult_mode == "drop":
        return None
    crowd = difficult and difficult_mode == "crowd"
    return box_object_abs(label, box, info.width, info.height, is_crowd=crowd, problems=problems,
                          source=xml_path, where=where)


def _int(text) -> int:
    try:
        return int(float(text))
    except (TypeError, ValueError, OverflowError):  # "inf" is a float but no int
        return 0


def _notes(counts: dict, difficult_mode: str) -> list[str]:
    notes = []
    if counts["difficult"]:
        what = {"keep": "kept as normal objects", "crowd": "marked isCrowd",
                "drop": "dropped"}[difficult_mode]
        notes.append(f"{counts['difficult']} object(s) marked difficult were {what} "
                     "(--voc-difficult keep|crowd|drop)")
    if counts["truncated"]:
        notes.append(f"{counts['truncated']} object(s) marked truncated were kept; the JSONL "
                     "schema has no field for truncation")
    return notes
