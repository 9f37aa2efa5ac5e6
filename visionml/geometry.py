"""Coordinate conversions between box and polygon modes, as pure functions named by their modes.

Modes: ``xyxy`` = corners (x0, y0, x1, y1); ``xywh`` = COCO (x0, y0, width, height);
``cxcywh`` = YOLO centre and size. ``norm`` = fractions of the image size (the JSONL schema),
``abs`` = pixels. Arrays are float64 numpy arrays of shape (N, 4) unless said otherwise.
"""

from __future__ import annotations

import numpy as np


def _as_boxes(boxes) -> np.ndarray:
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def xyxy_norm_to_abs(boxes, width: float, height: float) -> np.ndarray:
    return _as_boxes(boxes) * np.array([width, height, width, height], dtype=np.float64)


def xyxy_abs_to_norm(boxes, width: float, height: float) -> np.ndarray:
    return _as_boxes(boxes) / np.array([width, height, width, height], dtype=np.float64)


def xywh_abs_to_xyxy_abs(boxes) -> np.ndarray:
    b = _as_boxes(boxes).copy()
    b[:, 2:] += b[:, :2]
    return b


def xyxy_abs_to_xywh_abs(boxes) -> np.ndarray:
    b = _as_boxes(boxes).copy()
    b[:, 2:] -= b[:, :2]
    return b


def cxcywh_norm_to_xyxy_norm(boxes) -> np.ndarray:
    b = _as_boxes(boxes)
    half = b[:, 2:] / 2
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1)


def xyxy_norm_to_cxcywh_norm(boxes) -> np.ndarray:
    b = _as_boxes(boxes)
    return np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], axis=1)


def polygon_norm_to_abs(segments, width: float, height: float) -> list[np.ndarray]:
    """Segments ``[[x1, y1, x2, y2, ...], ...]`` normalised -> list of (K, 2) pixel arrays."""
    scale = np.array([width, height], dtype=np.float64)
    return [np.asarray(s, dtype=np.float64).reshape(-1, 2) * scale for s in segments]


def polygon_abs_to_norm(segments, width: float, height: float) -> list[list[float]]:
    """List of (K, 2) pixel arrays (or flat lists) -> normalised flat segments, clipped to [0, 1]."""
    scale = np.array([width, height], dtype=np.float64)
    out = []
    for s in segments:
        pts = np.clip(np.asarray(s, dtype=np.float64).reshape(-1, 2) / scale, 0.0, 1.0)
        out.append(pts.reshape(-1).tolist())
    return out


def polygon_extent_norm(segments) -> tuple[float, float, float, float]:
    """The xyxy box around all segments (same mode in and out)."""
    pts = np.concatenate([np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in segments])
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def polygon_area_abs(segments) -> float:
    """Sum of the shoelace areas of pixel segments (each (K, 2) or flat). Taken about each segment's
    first vertex: about the origin, a one-pixel polygon at x ~ 2,600 loses ~1e-9 of its area to the
    cancellation of products ~7e6 (found by `make fuzz`)."""
    total = 0.0
    for s in segments:
        p = np.asarray(s, dtype=np.float64).reshape(-1, 2)
        if len(p) == 0:
            continue
        p = p - p[0]
        x, y = p[:, 0], p[:, 1]
        total += 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    return total


def polygons_abs_to_mask(segments, height: int, width: int) -> np.ndarray:
    """Rasterise pixel segments to a (H, W) bool mask the way COCO does (pycocotools), so
    training targets and evaluation agree on which pixels an object covers."""
    from pycocotools import mask as mask_utils

    flat = [np.asarray(s, dtype=np.float64).reshape(-1).tolist() for s in segments]
    flat = [s for s in flat if len(s) >= 6]
    if not flat:
        return np.zeros((height, width), dtype=bool)
    rles = mask_utils.frPyObjects(flat, height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def mask_to_polygons_abs(mask: np.ndarray, max_points: int | None = None) -> list[np.ndarray]:
    """Outer contours of a bool/uint8 mask as (K, 2) pixel arrays, largest first, each with at
    least 3 points. With ``max_points``, contours are simplified (Douglas-Peucker, growing
    tolerance) until all segments together have at most that many points."""
    import cv2

    m = np.ascontiguousarray(mask.astype(np.uint8))
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contours = sorted((c for c in contours if len(c) >= 3), key=cv2.contourArea, reverse=True)
    if not contours:
        return []
    if max_points is not None:
        eps = 0.5
        while sum(len(c) for c in contours) > max_points:
            contours = [cv2.approxPolyDP(c, eps, True) for c in contours]
            contours = [c for c in contours if len(c) >= 3] or contours[:1]
            eps *= 1.5
            if eps > max(m.shape) and sum(len(c) for c in contours) > max_points:
                contours = contours[: max(1, max_points // 3)]
    return [c.reshape(-1, 2).astype(np.float64) for c in contours]


def mask_to_polygons_edges_abs(mask: np.ndarray, max_points: int | None = None) -> list[np.ndarray]:
    """Like ``mask_to_polygons_abs`` but the outline follows the pixels' outer edges rather than
    their centres, so rasterising the polygons (``polygons_abs_to_mask``) gives back the mask's
    area: tracing through centres loses half a pixel on every side (8% of a 20x30 object).
    Holes are filled first, since the schema's segments are unioned and cannot express them."""
    import cv2
    from scipy import ndimage
    from skimage import measure

    filled = ndimage.binary_fill_holes(np.asarray(mask, dtype=bool))
    # Marching squares at level 0.5 on a zero-padded mask walks the midpoints between inside and
    # outside pixel centres; +0.5 - 1 (the pad) turns row/col indices into pixel-edge coordinates.
    padded = np.pad(filled, 1).astype(np.float32)
    contours = [np.ascontiguousarray(c[:, ::-1] - 0.5, dtype=np.float32)
                for c in measure.find_contours(padded, 0.5)]
    contours = sorted((c for c in contours if len(c) >= 4), key=lambda c: abs(cv2.contourArea(c)),
                      reverse=True)
    contours = [c[:-1] if np.array_equal(c[0], c[-1]) else c for c in contours]  # closed: drop repeat
    # A first tiny tolerance only removes the collinear points of straight pixel runs.
    eps = 0.05
    while True:
        simpler = [cv2.approxPolyDP(c.reshape(-1, 1, 2), eps, True).reshape(-1, 2)
                   for c in contours]
        simpler = [c for c in simpler if len(c) >= 3]
        if not simpler:  # the budget is below what any part can keep: the largest part, as is
            return [c.astype(np.float64) for c in contours[:1]]
        contours = simpler
        if max_points is None or sum(len(c) for c in contours) <= max_points:
            return [c.astype(np.float64) for c in contours]
        eps = max(eps * 1.5, 0.25)
        if eps > max(filled.shape):  # too many parts for the budget: keep the largest ones
            contours = contours[: max(1, max_points // 3)]
