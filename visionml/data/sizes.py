"""Can a model take an image of this size? Pure arithmetic on (width, height), shared by
``validate`` (flags), training (drops and reports), ``predict``/``evaluate`` (skip and report)
and the server (400 for that item only), so every command gives the same answer for the same
image.

A valid image can still be unusable: torchvision's detectors scale an image so that its
shorter side reaches ``min_size`` unless its longer side would pass ``max_size``; a 100000x1
image scales to 1333x0 and the network fails inside a batch. A classifier resizes the shorter
side to ``validation_resize_size`` (and crops), so a very long, thin image would be resized to
billions of pixels first.
"""

from __future__ import annotations

import math

from .images import DEFAULT_MAX_PIXELS


def detector_size_problem(width: int, height: int, min_size: int, max_size: int) -> str | None:
    """Why a detector with ``min_size``/``max_size`` cannot take a ``width`` x ``height`` image
    (the rescale torchvision's ``GeneralizedRCNNTransform`` does), or None when it can."""
    if width < 1 or height < 1:
        return f"image is {width}x{height} pixels: it has no area"
    scale = min(min_size / min(width, height), max_size / max(width, height))
    new_w, new_h = math.floor(width * scale), math.floor(height * scale)
    if new_w < 1 or new_h < 1:
        return (f"image is {width}x{height} pixels (aspect ratio {max(width, height) / min(width, height):.0f}:1): "
                f"resized to fit min_size {min_size} / max_size {max_size} it would be {new_w}x{new_h}, "
                f"which no detector can take; crop or pad it to a less extreme shape")
    return None


def classifier_size_problem(width: int, height: int, resize_size: int,
                            max_pixels: int | None = DEFAULT_MAX_PIXELS) -> str | None:
    """Why a classifier that resizes the shorter side to ``resize_size`` cannot take the image
    (the resized image would exceed ``max_pixels``), or None when it can."""
    if width < 1 or height < 1:
        return f"image is {width}x{height} pixels: it has no area"
    short, long = min(width, height), max(width, height)
    resized_long = math.floor(long * resize_size / short)
    if max_pixels and resized_long * resize_size > max_pixels:
        return (f"image is {width}x{height} pixels (aspect ratio {long / short:.0f}:1): resizing its shorter side "
                f"to {resize_size} would make it {resized_long}x{resize_size} = {resized_long * resize_size:,} "
                f"pixels, over the limit of {max_pixels:,}; crop it to a less extreme shape")
    return None
