"""Tiling for small objects (Azure's ``tile_grid_size``, ``tile_overlap_ratio``,
``tile_predictions_nms_threshold``): the geometry, as pure functions, and the one inference path.

A detector resizes every input to ``min_size``/``max_size``, so an object of 10 pixels in a large
image shrinks to a few. Cutting the image into a grid of overlapping tiles and running each at the
same resize enlarges its objects by about the grid size. As Azure does:

* the grid (``TileGrid.tiles``): ``cols x rows`` tiles of one size that cover the image exactly, the
  first at the top-left corner and the last at the far borders, adjacent tiles sharing
  ``overlap`` of a tile's width (height); corners rounded to whole pixels;
* training sees every image whole plus each tile that holds an object (``cut_objects``);
* inference runs the whole image and every tile (``detect_tiled``), moves the tiles' detections
  back into image pixels and merges them (``merge``): a detection is dropped as a duplicate when a
  higher-scoring one of the same class from another tile (the whole image counts as one) overlaps
  it with IoU above ``tile_predictions_nms_threshold``. Two detections from the same tile never
  suppress each other there: the detector's own NMS (``nms_iou_threshold``) already judged them,
  and in a dense scene neighbours often overlap more than 0.25. The masks of the detections a kept
  one absorbed are combined with its own (pixel-wise maximum of the probabilities), so an object cut
  by a seam gets the mask of all its parts.

Remnants (what a tile keeps of an object it cuts; visionml's rule, where Azure keeps any remnant of
at least one pixel): a remnant is kept when it is at least ``MIN_REMNANT_SIDE`` pixels wide and
tall and holds at least ``MIN_REMNANT_FRACTION`` of the object's area, or is large in its own right
(``MIN_REMNANT_TILE_FRACTION`` of the tile's area, for objects larger than a tile). Smaller slivers
are dropped from that tile's labels: a sliver labelled as the object teaches the detector to fire on
fragments at tile borders, whose boxes then overlap the whole object too little to be merged away.
The object is still labelled whole in the image and in every tile that holds enough of it.

Coordinates are pixels of the image unless a name says ``norm`` (fractions, as in the JSONL schema).
A tile is ``(x0, y0, x1, y1)`` in whole pixels, ``x1``/``y1`` exclusive.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

MIN_REMNANT_SIDE = 2.0
"""Pixels (of the image, before the detector's resize) a kept remnant has at least on each side."""
MIN_REMNANT_FRACTION = 0.2
"""The share of an object's area a kept remnant holds at least (unless ``MIN_REMNANT_TILE_FRACTION``)."""
MIN_REMNANT_TILE_FRACTION = 0.1
"""A remnant covering this share of the tile is kept whatever share of its object it is."""


@dataclass(frozen=True)
class TileGrid:
    """``cols`` tiles across the width, ``rows`` down the height (Azure's ``tile_grid_size`` "3x2"
    is 3 across, 2 down), adjacent ones overlapping by ``overlap`` of a tile's side."""

    cols: int
    rows: int
    overlap: float = 0.25

    def __post_init__(self):
        if self.cols < 1 or self.rows < 1 or self.cols * self.rows < 2:
            raise ValueError(f"a tile grid needs at least 2 tiles, got {self.cols}x{self.rows}")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"tile overlap must be in [0, 1), got {self.overlap}")

    def tiles(self, width: int, height: int) -> np.ndarray:
        """``[cols * rows, 4]`` int64 tiles of a ``width`` x ``height`` image, row by row from the
        top left. Tile side ``W / (r + (1 - r) * cols)``, steps of ``(1 - r)`` sides, as Azure's."""
        xs = _spans(width, self.cols, self.overlap)
        ys = _spans(height, self.rows, self.overlap)
        return np.array([(x0, y0, x1, y1) for y0, y1 in ys for x0, x1 in xs], dtype=np.int64).reshape(-1, 4)

    def __str__(self) -> str:
        return f"{self.cols}x{self.rows}"


def _spans(length: int, count: int, overlap: float) -> list[tuple[int, int]]:
    side = length / (overlap + (1.0 - overlap) * count)
    starts = np.round(np.arange(count) * (1.0 - overlap) * side)
    ends = np.minimum(np.round(np.arange(count) * (1.0 - overlap) * side + side), length)
    ends[-1] = length  # the last tile reaches the border whatever the float rounding did
    return [(int(a), int(b)) for a, b in zip(starts, ends)]


def grid_from(settings) -> TileGrid | None:
    """The grid ``tile_grid_size`` and ``tile_overlap_ratio`` of resolved settings ask for (None: off)."""
    size = settings["tile_grid_size"]
    if size is None:
        return None
    return TileGrid(int(size[0]), int(size[1]), float(settings["tile_overlap_ratio"]))


# ---- cutting labels to a tile ----------------------------------------------------------------------

def keeps_remnant(width: float, height: float, area: float, object_area: float, tile_area: float) -> bool:
    """Whether a remnant ``width`` x ``height`` of visible ``area`` of an object of ``object_area``
    stays labelled in a tile of ``tile_area`` (the module's remnant rule)."""
    if width < MIN_REMNANT_SIDE or height < MIN_REMNANT_SIDE or area <= 0:
        return False
    return area >= MIN_REMNANT_FRACTION * object_area or area >= MIN_REMNANT_TILE_FRACTION * tile_area


def clip_boxes(boxes, tile) -> tuple[np.ndarray, np.ndarray]:
    """``(boxes in tile pixels [K, 4], indices [K] of the boxes kept)``: xyxy image-pixel ``boxes``
    cut to ``tile``, those whose remnant the rule drops (or that miss the tile) left out."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x0, y0, x1, y1 = (float(v) for v in tile)
    cut = np.stack([np.clip(b[:, 0], x0, x1), np.clip(b[:, 1], y0, y1),
                    np.clip(b[:, 2], x0, x1), np.clip(b[:, 3], y0, y1)], axis=1)
    w, h = cut[:, 2] - cut[:, 0], cut[:, 3] - cut[:, 1]
    full = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    tile_area = (x1 - x0) * (y1 - y0)
    keep = np.array([keeps_remnant(w[i], h[i], w[i] * h[i], full[i], tile_area) for i in range(len(b))],
                    dtype=bool)
    index = np.flatnonzero(keep)
    return cut[index] - np.array([x0, y0, x0, y0]), index


def clip_polygon(points, tile) -> np.ndarray:
    """One polygon ``[K, 2]`` (image pixels) cut to ``tile`` (Sutherland-Hodgman against its four
    sides), in the same pixels; fewer than 3 points when nothing of it is inside."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x0, y0, x1, y1 = (float(v) for v in tile)
    for axis, bound, keep_above in ((0, x0, True), (0, x1, False), (1, y0, True), (1, y1, False)):
        pts = _clip_half_plane(pts, axis, bound, keep_above)
        if len(pts) < 3:
            return pts.reshape(-1, 2)
    return pts


def _clip_half_plane(pts: np.ndarray, axis: int, bound: float, keep_above: bool) -> np.ndarray:
    if len(pts) == 0:
        return pts
    inside = pts[:, axis] >= bound if keep_above else pts[:, axis] <= bound
    out = []
    for i in range(len(pts)):
        cur, prev = pts[i], pts[i - 1]
        if inside[i] != inside[i - 1]:
            t = (bound - prev[axis]) / (cur[axis] - prev[axis])
            crossing = prev + t * (cur - prev)
            crossing[axis] = bound  # exactly on the side, whatever the float division gave
            out.append(crossing)
        if inside[i]:
            out.append(cur)
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def clip_polygons(segments, tile) -> tuple[list[np.ndarray], float, float]:
    """Segments (``[K, 2]`` image pixels) cut to ``tile``, in tile pixels, with the visible and the
    whole area (the sums of the segments' areas); segments with nothing inside left out."""
    from .geometry import polygon_area_abs

    offset = np.asarray(tile[:2], dtype=np.float64)
    whole = polygon_area_abs(segments)
    cut = [clip_polygon(s, tile) for s in segments]
    cut = [c - offset for c in cut if len(c) >= 3 and polygon_area_abs([c]) > 0]
    return cut, polygon_area_abs(cut), whole


def cut_objects(objects, tile, width: int, height: int) -> list:
    """``ObjectLabel``s of a ``width`` x ``height`` image (normalised to the image) cut to ``tile``
    and normalised to it, the remnants the rule drops left out. Objects with polygons are cut as
    polygons (the box becomes the extent of what is visible); others as boxes."""
    x0, y0, x1, y1 = (float(v) for v in tile)
    size = np.array([x1 - x0, y1 - y0], dtype=np.float64)
    out = []
    for obj in objects:
        box = _cut_polygon_box(obj, tile, width, height, size) if obj.polygon else _cut_box(obj, tile, width, height)
        if box is None:
            continue
        norm = np.clip(np.asarray(box[0], dtype=np.float64) / np.tile(size, 2), 0.0, 1.0)
        out.append(replace(obj, box=tuple(float(v) for v in norm), **({"polygon": box[1]} if obj.polygon else {})))
    return out


def _cut_box(obj, tile, width, height):
    from .geometry import xyxy_norm_to_abs

    boxes, kept = clip_boxes(xyxy_norm_to_abs([obj.box], width, height), tile)
    return (boxes[0], None) if len(kept) else None


def _cut_polygon_box(obj, tile, width, height, size):
    """(the visible extent in tile pixels, the visible segments normalised to the tile) or None."""
    from .geometry import polygon_norm_to_abs

    segments, area, whole = clip_polygons(polygon_norm_to_abs(obj.polygon, width, height), tile)
    if not segments:
        return None
    pts = np.concatenate(segments)
    (ex0, ey0), (ex1, ey1) = pts.min(axis=0), pts.max(axis=0)
    if not keeps_remnant(ex1 - ex0, ey1 - ey0, area, whole, float(size[0] * size[1])):
        return None
    return (ex0, ey0, ex1, ey1), [np.clip(s / size, 0.0, 1.0).reshape(-1).tolist() for s in segments]


# ---- back to the image, and the merge ---------------------------------------------------------------

def boxes_to_image(boxes, tile):
    """Boxes in tile pixels -> image pixels (a tile is cut from the image at its own resolution)."""
    import torch

    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return boxes + torch.tensor([tile[0], tile[1], tile[0], tile[1]], dtype=torch.float32)


def paste_mask(mask, tile, height: int, width: int):
    """One tile's mask (``[h, w]`` or ``[1, h, w]``, the tile's size) placed in a ``[1, H, W]`` image."""
    import torch

    mask = torch.as_tensor(mask, dtype=torch.float32)
    mask = mask.reshape(1, *mask.shape[-2:])
    x0, y0 = int(tile[0]), int(tile[1])
    full = torch.zeros((1, height, width), dtype=torch.float32)
    h, w = min(mask.shape[-2], height - y0), min(mask.shape[-1], width - x0)
    full[:, y0:y0 + h, x0:x0 + w] = mask[:, :h, :w]
    return full


def merge(parts, threshold: float, height: int, width: int, limit: int | None = None) -> dict:
    """One image's detections from ``parts`` = ``[(tile, output), ...]`` (the whole image is the tile
    ``(0, 0, W, H)``; outputs in the detector contract: ``boxes`` in that tile's pixels, ``scores``,
    ``labels``, optional ``masks`` ``[N, 1, h, w]``) as one output in image pixels, best first, at
    most ``limit``: duplicates across tiles removed (see the module's docstring), masks combined."""
    import torch
    from torchvision.ops import box_iou

    boxes, scores, labels, source, row = [], [], [], [], []
    for k, (tile, out) in enumerate(parts):
        s = torch.as_tensor(out["scores"], dtype=torch.float32).reshape(-1)
        boxes.append(boxes_to_image(out["boxes"], tile))
        scores.append(s)
        labels.append(torch.as_tensor(out["labels"], dtype=torch.int64).reshape(-1))
        source.append(torch.full((len(s),), k, dtype=torch.int64))
        row.append(torch.arange(len(s)))
    scores = torch.cat(scores)
    order = torch.argsort(scores, descending=True, stable=True)
    boxes, scores = torch.cat(boxes)[order], scores[order]
    labels, source, row = torch.cat(labels)[order], torch.cat(source)[order], torch.cat(row)[order]

    owner = _owners(box_iou(boxes, boxes).numpy(), labels.numpy(), source.numpy(), threshold)
    kept = np.flatnonzero(owner == np.arange(len(owner)))[:limit]
    out = {"boxes": boxes[kept], "scores": scores[kept], "labels": labels[kept]}
    if "masks" in parts[0][1]:
        masks = torch.zeros((len(kept), 1, height, width), dtype=torch.float32)
        for k, i in enumerate(kept):
            for j in np.flatnonzero(owner == i):  # itself and the duplicates it absorbed
                tile, part = parts[int(source[j])]
                masks[k] = torch.maximum(masks[k], paste_mask(torch.as_tensor(part["masks"])[int(row[j])],
                                                              tile, height, width))
        out["masks"] = masks
    return out


def _owners(iou: np.ndarray, labels: np.ndarray, source: np.ndarray, threshold: float) -> np.ndarray:
    """For detections sorted best first, the index of the detection each one is kept as (its own
    index when it is kept, else the kept one that suppressed it): Azure's greedy rule, class-aware,
    only across sources."""
    n = len(labels)
    owner = np.arange(n)
    duplicate = (iou > threshold) & (labels[:, None] == labels[None, :]) & (source[:, None] != source[None, :])
    duplicate &= np.triu(np.ones((n, n), dtype=bool), k=1)  # only lower-scoring ones are suppressed
    suppressed = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(duplicate.any(axis=1)):
        if suppressed[i]:
            continue
        absorbed = duplicate[i] & ~suppressed
        suppressed |= absorbed
        owner[absorbed] = i
    return owner


def detect_tiled(run, images, grid: TileGrid, threshold: float, limit: int | None = None) -> list[dict]:
    """Detections for ``images`` (``[3, H, W]`` tensors) from each whole image and its tiles,
    merged per image (``merge``). ``run(list of tensors) -> list of outputs`` is the detector (a
    torch model or a backend's ``run``); it takes as many inputs at a time as the caller's batch
    has images, and at least one image's worth (the image and its tiles): tiles go through it
    batched, never one by one, and a batch holds no more inputs than that."""
    inputs, owners = [], []
    for i, image in enumerate(images):
        height, width = (int(v) for v in image.shape[-2:])
        inputs.append(image)
        owners.append((i, (0, 0, width, height)))
        for tile in grid.tiles(width, height).tolist():
            x0, y0, x1, y1 = tile
            if x1 - x0 >= 1 and y1 - y0 >= 1:
                inputs.append(image[..., y0:y1, x0:x1])
                owners.append((i, tuple(tile)))
    step = max(len(images), 1 + grid.cols * grid.rows)
    outputs = []
    for start in range(0, len(inputs), step):
        outputs.extend(run(inputs[start:start + step]))
    parts: list[list] = [[] for _ in images]
    for (i, tile), output in zip(owners, outputs):
        parts[i].append((tile, output))
    return [merge(p, threshold, int(img.shape[-2]), int(img.shape[-1]), limit) for p, img in zip(parts, images)]
