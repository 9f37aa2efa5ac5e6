"""Synthetic data in the Azure AutoML-for-Images JSONL schema, for the demo, tests and benchmarks.

Every image shows 4 classes of shapes (circle, square, triangle, star) with random colours,
sizes and rotations on a textured background (smooth noise, gradients or stripes, plus pixel
noise), saved as JPEG. Colour never gives the class away: every shape draws from the same
colour distribution, only kept away from the background's own colour so that it is visible.

Each shape is a polygon (a circle is a 48-gon, under 0.1 px from a true circle at these
sizes); the polygon written to the JSONL is exactly the one drawn (anti-aliased by 4x
supersampling) and the box is its exact extent, so box and mask targets are pixel-true.
Objects never overlap, so no polygon is hidden behind another.

Sizes: classification images are square (192x192 by default) because classification models see a
centre square (Azure's eval resize 256 / crop 224 keeps the middle 87.5% of the short side);
every object stays inside a 7% margin so that crop never hides one. Detection and
segmentation images are 224x168, objects anywhere in the image.

``small_objects`` (detection and segmentation, ``--small-objects``): large images (960x720 by
default) with 6 to 16 objects each whose boxes are 8 to 24 pixels on their longer side, the case
tiling (``tile_grid_size``) is for: resized whole to a detector's input they shrink to a few pixels.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import orjson
from PIL import Image, ImageDraw

from ..errors import UsageError, VisionMLError
from ..fileio import write_bytes_atomic, write_error
from ..tasks import get_task
from ..tasks import base as shape

CLASSES = ("circle", "square", "triangle", "star")
DEFAULT_N = 200
VAL_FRACTION = 0.2
# Everything below is per label shape (the shape a task is inferred from): sample data is made for
# the shapes of the schema, so a task added later gets it by the shape of its labels.
DEFAULT_SIZE = {shape.CLASS: (192, 192), shape.CLASSES: (192, 192), shape.BOXES: (224, 168),
                shape.POLYGONS: (224, 168)}
MIN_SIZE = (160, 120)
JPEG_QUALITY = 92

_SUPERSAMPLE = 4
_CIRCLE_POINTS = 48
_STAR_INNER = 0.45
# Circumradius of a shape as a fraction of the image's short side. Classification has one to
# three objects filling a square; detection objects range from small to large.
_RADIUS_RANGE = {shape.CLASS: (0.14, 0.36), shape.CLASSES: (0.10, 0.22), shape.BOXES: (0.08, 0.25),
                 shape.POLYGONS: (0.08, 0.25)}
_MARGIN = {shape.CLASS: 0.07, shape.CLASSES: 0.07, shape.BOXES: 0.0, shape.POLYGONS: 0.0}
# --small-objects: objects per image, and the longer side of each object's box in pixels.
SMALL_OBJECTS_SIZE = (960, 720)
_SMALL_COUNT = (6, 16)
_SMALL_EXTENT = (8.0, 24.0)
_MIN_CONTRAST = 110.0       # RGB distance between a shape and the mean background under it
_MIN_PIXEL_CONTRAST = 70.0  # ... and from 90% of the background pixels under it
_PIXEL_NOISE = 6.0     # standard deviation of the sensor-like noise over the whole image


def make_sample_data(task: str, out_dir, n: int = DEFAULT_N, seed: int = 0,
                     size: tuple[int, int] | None = None, overwrite: bool = False,
                     small_objects: bool = False) -> dict[str, Path]:
    """Write ``n`` synthetic images to ``out_dir/images/`` and the JSONL files
    ``out_dir/train.jsonl`` (the first 80%) and ``out_dir/val.jsonl`` (the rest; at least one
    each). ``size`` is (width, height). The same ``seed`` gives byte-identical files.
    ``small_objects``: many objects of 8-24 pixels on large images (detection, segmentation).
    Refuses to replace existing JSONL files unless ``overwrite``. Returns {"train", "val"} paths."""
    label_shape = _label_shape(task)
    if small_objects and label_shape not in (shape.BOXES, shape.POLYGONS):
        raise UsageError(f"--small-objects makes objects for detection and segmentation; {get_task(task).name} "
                         "labels whole images")
    width, height = size or default_size(task, small_objects)
    _check_args(n, width, height)
    out = Path(out_dir)
    paths = {"train": out / "train.jsonl", "val": out / "val.jsonl"}
    _refuse_overwrite(paths, overwrite)
    images_dir = out / "images"
    try:
        images_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(images_dir, exc) from None
    if overwrite:
        for old in images_dir.glob("sample_*.jpg"):
            old.unlink()

    rng = np.random.default_rng(seed)
    plan = _plan_classes(label_shape, n, rng, _SMALL_COUNT if small_objects else (1, 3))
    extent = _SMALL_EXTENT if small_objects else None
    lines = [_make_image(label_shape, i, classes, width, height, rng, images_dir, extent)
             for i, classes in enumerate(plan)]
    n_val = min(max(1, round(n * VAL_FRACTION)), n - 1)
    _write_jsonl(paths["train"], lines[: n - n_val])
    _write_jsonl(paths["val"], lines[n - n_val:])
    return paths


def default_size(task, small_objects: bool = False) -> tuple[int, int]:
    """(width, height) of the images made for ``task`` when no size is given."""
    return SMALL_OBJECTS_SIZE if small_objects else DEFAULT_SIZE[_label_shape(task)]


def _label_shape(task) -> str:
    task = get_task(task)
    if task.inferred_from not in DEFAULT_SIZE:
        raise UsageError(f"sample-data makes data with the schema's label shapes; {task.name} has none of them")
    return task.inferred_from


def _check_args(n: int, width: int, height: int) -> None:
    if n < 2:
        raise UsageError(f"--n must be at least 2 (one training and one validation image), got {n}")
    if width < MIN_SIZE[0] or height < MIN_SIZE[1]:
        raise UsageError(f"image size {width}x{height} is too small: at least "
                         f"{MIN_SIZE[0]}x{MIN_SIZE[1]} keeps the smallest shapes recognisable")


def _refuse_overwrite(paths: dict[str, Path], overwrite: bool) -> None:
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise VisionMLError(f"{', '.join(existing)} already exist(s); choose another output folder "
                            "or pass --force to replace the sample data there")


def _plan_classes(label_shape: str, n: int, rng: np.random.Generator,
                  counts: tuple[int, int] = (1, 3)) -> list[list[str]]:
    """The class(es) of the objects in each image, ``counts`` (fewest, most) objects per image unless
    multi-class. Multi-class is balanced (round robin, then shuffled) so that every class has the
    same number of images up to one."""
    k = len(CLASSES)
    if label_shape == shape.CLASS:
        order = rng.permutation(np.arange(n) % k)
        return [[CLASSES[c]] for c in order]
    plan = []
    for _ in range(n):
        count = int(rng.integers(counts[0], counts[1] + 1))
        if label_shape == shape.CLASSES:  # distinct classes: the label is the set
            picked = rng.choice(k, size=count, replace=False)
        else:
            picked = rng.integers(0, k, size=count)
        plan.append([CLASSES[c] for c in picked])
    return plan


def _make_image(label_shape: str, index: int, classes: list[str], width: int, height: int,
                rng: np.random.Generator, images_dir: Path, extent: tuple[float, float] | None = None) -> dict:
    canvas = _background(width, height, rng)
    polygons = _place_shapes(label_shape, classes, width, height, rng, extent)
    for polygon in polygons:
        _paint(canvas, polygon, rng, local=extent is not None)
    canvas += rng.normal(0.0, _PIXEL_NOISE, canvas.shape)
    name = f"sample_{index:05d}.jpg"
    jpeg = io.BytesIO()
    Image.fromarray(np.clip(canvas, 0, 255).round().astype(np.uint8)).save(jpeg, format="JPEG", quality=JPEG_QUALITY)
    write_bytes_atomic(images_dir / name, jpeg.getvalue())
    return {"image_url": f"images/{name}",
            "image_details": {"format": "jpg", "width": width, "height": height},
            "label": _label(label_shape, classes, polygons, width, height)}


def _label(label_shape: str, classes: list[str], polygons: list[np.ndarray], width: int, height: int):
    if label_shape == shape.CLASS:
        return classes[0]
    if label_shape == shape.CLASSES:
        return sorted(classes)
    scale = np.array([width, height])
    objects = []
    for cls, polygon in zip(classes, polygons):
        norm = np.clip(polygon / scale, 0.0, 1.0)
        obj = {"label": cls}
        if label_shape == shape.POLYGONS:
            obj["polygon"] = [[round(float(v), 6) for v in norm.reshape(-1)]]
        else:
            (x0, y0), (x1, y1) = norm.min(axis=0), norm.max(axis=0)
            obj.update(topX=round(float(x0), 6), topY=round(float(y0), 6),
                       bottomX=round(float(x1), 6), bottomY=round(float(y1), 6))
        obj["isCrowd"] = 0
        objects.append(obj)
    return objects


# ---- geometry of the shapes (pixel coordinates: pixel i covers [i, i+1)) ----

def _shape_polygon(cls: str, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    if cls == "circle":
        k, radii = _CIRCLE_POINTS, np.full(_CIRCLE_POINTS, radius)
    elif cls == "square":
        k, radii = 4, np.full(4, radius)
    elif cls == "triangle":
        k, radii = 3, np.full(3, radius)
    elif cls == "star":
        k, radii = 10, np.where(np.arange(10) % 2 == 0, radius, radius * _STAR_INNER)
    else:  # pragma: no cover - CLASSES is closed
        raise ValueError(cls)
    theta = angle + 2 * math.pi * np.arange(k) / k
    return np.stack([cx + radii * np.cos(theta), cy + radii * np.sin(theta)], axis=1)


def _place_shapes(label_shape: str, classes: list[str], width: int, height: int,
                  rng: np.random.Generator, extent: tuple[float, float] | None = None) -> list[np.ndarray]:
    """Random size, rotation and position for each shape, inside the margin and not overlapping
    any shape placed before (boxes at least 3 px apart). Shrinks a shape that does not fit.
    ``extent``: the (least, most) longer side of each shape's box in pixels, instead of a radius
    relative to the image."""
    short = min(width, height)
    lo, hi = _RADIUS_RANGE[label_shape]
    margin = _MARGIN[label_shape] * short + 1.0
    placed: list[np.ndarray] = []
    for cls in classes:
        radius = rng.uniform(lo, hi) * short if extent is None else float(rng.uniform(*extent))
        polygon = None
        # Shrink every 50 tries, down to half the smallest size: with two large shapes already
        # placed the third can need it (1 image in a few thousand multi-label ones).
        for attempt in range(1000):
            if attempt and attempt % 50 == 0 and extent is None:
                radius = max(radius * 0.8, 0.5 * lo * short)
            polygon = _try_place(cls, radius, width, height, margin, rng, sized_by_extent=extent is not None)
            if polygon is not None and not any(_boxes_close(polygon, p, 3.0) for p in placed):
                break
            polygon = None
        if polygon is None:  # pragma: no cover - three half-size shapes always fit
            raise RuntimeError("could not place the sample shapes")
        placed.append(polygon)
    return placed


def _try_place(cls, radius, width, height, margin, rng, sized_by_extent: bool = False) -> np.ndarray | None:
    """``radius``: the circumradius, or with ``sized_by_extent`` the longer side of the shape's box."""
    angle = rng.uniform(0, 2 * math.pi)
    local = _shape_polygon(cls, 0.0, 0.0, 1.0 if sized_by_extent else radius, angle)
    if sized_by_extent:
        local *= radius / float((local.max(axis=0) - local.min(axis=0)).max())
    (x0, y0), (x1, y1) = local.min(axis=0), local.max(axis=0)
    lo_x, hi_x = margin - x0, width - margin - x1
    lo_y, hi_y = margin - y0, height - margin - y1
    if lo_x > hi_x or lo_y > hi_y:
        return None
    return local + np.array([rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)])


def _boxes_close(a: np.ndarray, b: np.ndarray, gap: float) -> bool:
    (ax0, ay0), (ax1, ay1) = a.min(axis=0), a.max(axis=0)
    (bx0, by0), (bx1, by1) = b.min(axis=0), b.max(axis=0)
    return ax0 < bx1 + gap and bx0 < ax1 + gap and ay0 < by1 + gap and by0 < ay1 + gap


def coverage(polygon: np.ndarray, width: int, height: int) -> np.ndarray:
    """Fraction of each pixel covered by ``polygon`` (H, W float in [0, 1]), by supersampling.
    PIL fills the pixels whose centres lie inside, so pixel-edge coordinates shift by half a pixel."""
    s = _SUPERSAMPLE
    big = Image.new("L", (width * s, height * s), 0)
    ImageDraw.Draw(big).polygon([(s * x - 0.5, s * y - 0.5) for x, y in polygon], fill=255)
    return np.asarray(big.resize((width, height), Image.Resampling.BOX), dtype=np.float64) / 255.0


def _paint(canvas: np.ndarray, polygon: np.ndarray, rng: np.random.Generator, local: bool = False) -> None:
    height, width = canvas.shape[:2]
    if local:  # a small shape on a large image: supersample only the pixels around it
        x0, y0 = np.maximum(np.floor(polygon.min(axis=0)).astype(int) - 2, 0)
        x1, y1 = np.minimum(np.ceil(polygon.max(axis=0)).astype(int) + 2, [width, height])
        _paint(canvas[y0:y1, x0:x1], polygon - np.array([x0, y0]), rng)  # a view: painted in place
        return
    alpha = coverage(polygon, width, height)[..., None]
    colour = _contrasting_colour(canvas[alpha[..., 0] > 0.5], rng)
    canvas *= 1.0 - alpha
    canvas += alpha * colour


def _contrasting_colour(under: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random colour that stands out from the background pixels under the shape: far from
    their mean and from nearly all of them (stripes have two colours)."""
    mean = under.mean(axis=0)
    for _ in range(200):
        colour = rng.uniform(0, 255, 3)
        dist = np.linalg.norm(under - colour, axis=1)
        if np.linalg.norm(mean - colour) >= _MIN_CONTRAST and np.percentile(dist, 10) >= _MIN_PIXEL_CONTRAST:
            return colour
    return np.where(mean > 127.5, 0.0, 255.0)  # pragma: no cover - the far corner of the RGB cube


# ---- backgrounds ----

def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    kind = int(rng.integers(0, 3))
    make = (_smooth_noise, _gradient, _stripes)[kind]
    return make(width, height, rng)


def _two_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    a = rng.uniform(0, 255, 3)
    b = np.clip(a + rng.normal(0, 60, 3), 0, 255)
    return a, b


def _blend(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    a, b = _two_colours(rng)
    return a + t[..., None] * (b - a)


def _smooth_noise(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Low-resolution random field upsampled bicubically: blotchy texture at a random scale."""
    cell = int(rng.integers(8, 33))
    small = rng.uniform(0, 255, (max(2, height // cell), max(2, width // cell))).astype(np.float32)
    field = Image.fromarray(small, mode="F").resize((width, height), Image.Resampling.BICUBIC)
    return _blend(np.clip(np.asarray(field, dtype=np.float64) / 255.0, 0, 1), rng)


def _gradient(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:height, 0:width]
    t = xx * math.cos(angle) + yy * math.sin(angle)
    return _blend((t - t.min()) / max(t.max() - t.min(), 1e-9), rng)


def _stripes(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(6, 30)
    yy, xx = np.mgrid[0:height, 0:width]
    t = xx * math.cos(angle) + yy * math.sin(angle)
    return _blend(0.5 + 0.5 * np.sin(2 * math.pi * t / period), rng)


def _write_jsonl(path: Path, lines: list[dict]) -> None:
    write_bytes_atomic(path, b"".join(orjson.dumps(line) + b"\n" for line in lines))

