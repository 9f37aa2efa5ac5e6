"""What every converter shares: the in-between dataset, problem reports, object checks, image
sizes and writing outputs safely.

Every reader returns a :class:`Converted`: canonical ``ImageRecord``s whose ``path`` is the local
image file and whose coordinates are normalised (the JSONL schema's), plus the class names in the
source's order (so COCO category ids and YOLO class indices survive a round trip) and every problem
found. Writers take a ``Converted`` and never see the source format.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import geometry
from ..data.images import IMAGE_EXTENSIONS, open_image_file
from ..data.records import ImageRecord, ObjectLabel
from ..errors import UsageError
from ..fileio import atomic_folder, atomic_path
from ..tasks import TASKS, get_task, task_for_shape

# Coordinates are written with 6 decimals: 1e-6 of a 100,000 px side is 0.1 px, well inside the
# half-pixel round-trip promise, and the files stay readable.
DECIMALS = 6

# Labelling tools often put a box edge one pixel past the border (VOC's 1-based xmax, COCO's float
# rounding). Up to this many pixels outside is clipped; more is reported as a problem.
OUTSIDE_TOLERANCE_PX = 1.0

# Azure's default max_number_of_polygon_points: the budget for polygons traced from masks and RLE.
DEFAULT_MAX_POLYGON_POINTS = 100

# The file endings taken as images: validate's and predict's list (visionml.data.images), in a fixed order.
IMAGE_SUFFIXES = tuple(sorted(IMAGE_EXTENSIONS))


@dataclass(frozen=True, slots=True)
class ConvertProblem:
    """One defect in the source, located well enough to fix it by hand."""

    source: str
    """The file the problem is in (annotation file, label file, image)."""
    where: str
    """Line number (``"12"``) or the object (``"object 3 'RBC'"``)."""
    reason: str

    def __str__(self) -> str:
        sep = ":" if self.where.isdigit() else ": "
        return f"{self.source}{sep}{self.where}: {self.reason}"


@dataclass(slots=True)
class Converted:
    """A dataset between two formats."""

    task: str
    labels: list[str]
    records: list[ImageRecord]
    problems: list[ConvertProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Summary lines for the user (e.g. how many VOC objects were marked difficult)."""


class Problems(list):
    """Collects problems while a reader walks the source."""

    def add(self, source, where, reason) -> None:
        self.append(ConvertProblem(str(source), str(where), reason))


@dataclass(frozen=True, slots=True)
class ImageInfo:
    width: int
    height: int
    format: str


def image_info(path: str | os.PathLike) -> ImageInfo:
    """Size as visionml will see the image (EXIF orientation applied, like ``images.load_rgb``) and
    the format for ``image_details``, read from the header only. Raises ``ValueError``; a named
    pipe or device is refused before it is opened (reading one would block for ever)."""
    from PIL import Image, UnidentifiedImageError

    try:
        handle = open_image_file(path)
    except ValueError as exc:  # not found, a folder, a named pipe or device, no permission
        raise ValueError(str(exc).removesuffix(f": {path}")) from None
    with handle as fp:
        try:
            with Image.open(fp) as img:
                width, height = img.size
                orientation = img.getexif().get(0x0112, 1)
                fmt = (img.format or "").lower()
        except UnidentifiedImageError:
            raise ValueError("not a readable image (Pillow cannot identify its format)") from None
        except (OSError, SyntaxError) as exc:
            raise ValueError(f"not a readable image ({exc})") from exc
    if orientation in (5, 6, 7, 8):  # rotated by 90 degrees: load_rgb swaps the sides
        width, height = height, width
    suffix = Path(path).suffix.lower().lstrip(".")
    # The schema lists file-type names (jpg, png, ...): prefer the file's own suffix when it is one.
    if "." + suffix in IMAGE_SUFFIXES:
        fmt = suffix
    return ImageInfo(width, height, fmt or suffix)


def box_object_abs(label: str, xyxy_abs, width: int, height: int, *, is_crowd: bool,
                   problems: Problems, source, where) -> ObjectLabel | None:
    """An ``ObjectLabel`` from a pixel box, or ``None`` with a problem recorded when the box is
    inverted, empty or outside the image (beyond :data:`OUTSIDE_TOLERANCE_PX`)."""
    x0, y0, x1, y1 = (float(v) for v in np.asarray(xyxy_abs, dtype=np.float64).reshape(4))
    shown = f"[{_num(x0)}, {_num(y0)}, {_num(x1)}, {_num(y1)}]"
    if not all(np.isfinite([x0, y0, x1, y1])):
        problems.add(source, where, f"box {shown} has a non-finite coordinate")
        return None
    if x1 < x0 or y1 < y0:
        problems.add(source, where, f"box {shown} (xmin, ymin, xmax, ymax) is inverted")
        return None
    tol = OUTSIDE_TOLERANCE_PX
    if x0 < -tol or y0 < -tol or x1 > width + tol or y1 > height + tol:
        problems.add(source, where, f"box {shown} reaches outside the {width}x{height} image")
        return None
    x0, x1 = np.clip([x0, x1], 0, width)
    y0, y1 = np.clip([y0, y1], 0, height)
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        problems.add(source, where, f"box {shown} has zero area")
        return None
    norm = geometry.xyxy_abs_to_norm([x0, y0, x1, y1], width, height)[0]
    return ObjectLabel(label, _round_box(norm), is_crowd=bool(is_crowd))


def polygon_object_abs(label: str, segments_abs, width: int, height: int, *, is_crowd: bool,
                       problems: Problems, source, where) -> ObjectLabel | None:
    """An ``ObjectLabel`` from pixel segments (flat lists or (K, 2) arrays), or ``None`` with a
    problem recorded. Segments with fewer than 3 points are dropped with a problem each; the
    object is kept if any segment with area remains."""
    kept = []
    for i, seg in enumerate(segments_abs):
        try:
            flat = np.asarray(seg, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):  # strings, nulls, nested lists: a hostile or damaged file
            problems.add(source, where, f"polygon segment {i} is not a flat list of numbers")
            continue
        if flat.size % 2 or flat.size < 6:
            problems.add(source, where, f"polygon segment {i} has {flat.size} coordinates "
                         "(needs an even number, at least 6)")
            continue
        pts = flat.reshape(-1, 2)
        if not np.isfinite(pts).all():
            problems.add(source, where, f"polygon segment {i} has a non-finite coordinate")
            continue
        tol = OUTSIDE_TOLERANCE_PX
        if (pts < -tol).any() or (pts[:, 0] > width + tol).any() or (pts[:, 1] > height + tol).any():
            problems.add(source, where, f"polygon segment {i} reaches outside the "
                         f"{width}x{height} image")
            continue
        kept.append(pts)
    if not kept:
        return None
    if geometry.polygon_area_abs(kept) <= 0:
        problems.add(source, where, "polygon has zero area")
        return None
    norm = [[round(v, DECIMALS) for v in s]
            for s in geometry.polygon_abs_to_norm(kept, width, height)]
    box = geometry.polygon_extent_norm(norm)
    if box[2] <= box[0] or box[3] <= box[1]:
        problems.add(source, where, "polygon has zero area after normalisation")
        return None
    return ObjectLabel(label, box, is_crowd=bool(is_crowd), polygon=norm)


def mask_object(label: str, mask: np.ndarray, width: int, height: int, *, is_crowd: bool,
                max_points: int, problems: Problems, source, where) -> ObjectLabel | None:
    """An instance-segmentation object traced from a bool mask: the outer contour of each part
    becomes one segment (holes are filled; see docs/converters.md). The outline follows pixel
    edges, so the polygon covers the mask's pixels rather than losing half a pixel all round."""
    segments = geometry.mask_to_polygons_edges_abs(mask, max_points)
    if not segments:
        problems.add(source, where, "mask has no region of 3 or more pixels to trace")
        return None
    return polygon_object_abs(label, segments, width, height, is_crowd=is_crowd,
                              problems=problems, source=source, where=where)


def mask_has_holes(mask: np.ndarray) -> bool:
    import cv2

    _, hierarchy = cv2.findContours(np.ascontiguousarray(mask.astype(np.uint8)), cv2.RETR_CCOMP,
                                    cv2.CHAIN_APPROX_SIMPLE)
    # In RETR_CCOMP's two-level hierarchy, a contour with a parent is a hole.
    return hierarchy is not None and bool((hierarchy[0][:, 3] >= 0).any())


def as_detection(obj: ObjectLabel) -> ObjectLabel:
    """Drop the polygon, keeping its extent as the box (segmentation data used for detection)."""
    return ObjectLabel(obj.label, obj.box, is_crowd=obj.is_crowd)


def _round_box(box) -> tuple[float, float, float, float]:
    return tuple(round(float(v), DECIMALS) for v in box)


def _num(v: float) -> str:
    return f"{v:g}"


def find_image(folder: Path, stem: str) -> Path | None:
    """The image file in ``folder`` named ``stem`` with any image suffix (any case)."""
    for suffix in IMAGE_SUFFIXES:
        for cand in (folder / (stem + suffix), folder / (stem + suffix.upper())):
            if cand.is_file():
                return cand
    return None


def image_url_for(image: str | os.PathLike, out_dir: Path) -> str:
    """How an output file in ``out_dir`` refers to ``image``: relative (forward slashes) when the
    image lies under ``out_dir``, because the reader refuses ``..`` paths that leave the data's
    folder; otherwise absolute. URLs (http images of a JSONL source) stay as they are."""
    if "://" in str(image):
        return str(image)
    image = Path(os.path.abspath(image))
    out_dir = Path(os.path.abspath(out_dir))
    try:
        return image.relative_to(out_dir).as_posix()
    except ValueError:
        return image.as_posix()


def check_not_exists(out: Path, force: bool) -> None:
    from ..errors import UsageError

    if (out.exists() or out.is_symlink()) and not force:
        raise UsageError(f"{out} already exists; choose another -o or pass --force to replace it")


@contextmanager
def atomic_file(out: Path, force: bool):
    """Yield a temporary path beside ``out``; on success it replaces ``out`` in one rename, so a
    failed conversion never leaves half a file."""
    check_not_exists(out, force)
    with atomic_path(out) as tmp:
        yield tmp


@contextmanager
def atomic_dir(out: Path, force: bool):
    """Like :func:`atomic_file` for an output folder (built beside ``out``, then renamed)."""
    check_not_exists(out, force)
    with atomic_folder(out) as tmp:
        yield tmp


def open_image(path: Path, problems: Problems, source, where,
               annotated: tuple[int, int] | None = None) -> ImageInfo | None:
    """Check that the image exists and is readable and, when the annotation states a size, that it
    matches; record a problem and return ``None`` otherwise."""
    if not path.exists():
        problems.add(source, where, f"image file {path} not found")
        return None
    try:
        info = image_info(path)
    except ValueError as exc:
        problems.add(source, where, f"image {path}: {exc}")
        return None
    if annotated and annotated != (info.width, info.height) and all(annotated):
        problems.add(source, where, f"annotated size {annotated[0]}x{annotated[1]} differs from "
                     f"the image {path} ({info.width}x{info.height}); coordinates would be "
                     "scaled wrongly")
        return None
    return info


def new_record(path: Path, info: ImageInfo, source, line: int = 0) -> ImageRecord:
    """A record for ``path``; writers set ``image_url`` relative to where they write."""
    p = os.path.abspath(path)
    return ImageRecord(source=str(source), line=line, image_url=p, path=p, width=info.width,
                       height=info.height, format=info.format)


def converter_task(task, shapes: tuple[str, ...], what: str):
    """The task a converter produces: the given one, which must take one of the label ``shapes``
    the source format holds, else the task inferred from ``shapes[0]``."""
    if task is None:
        return task_for_shape(shapes[0])
    task = get_task(task)
    if not task.label_shapes & set(shapes):
        fitting = [name for name, t in TASKS.items() if t.label_shapes & set(shapes)]
        raise UsageError(f"{what}; use --task {' or '.join(fitting)}")
    return task
