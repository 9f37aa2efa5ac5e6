"""The visualization PNG: the input beside its heat map, titled with class and probability.

Drawn with Pillow and a matplotlib colormap (no pyplot, so no global figure state and
no backend to pick in a server thread).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_TITLES = {
    "xrai": "XRAI",
    "integrated_gradients": "integrated gradients",
    "guided_gradcam": "guided Grad-CAM",
    "guided_backprop": "guided backprop",
}
_MIN_PANEL = 224  # small crops are enlarged so that a person can read the picture
_TOP_FRACTION = 0.3  # XRAI's usual view: the 30% most salient area


def heat_from_attribution(attr_chw: np.ndarray) -> np.ndarray:
    """[3,H,W] pixel attributions -> [H,W] in [0,1]: |attr| summed, clipped at the 99th percentile."""
    magnitude = np.abs(attr_chw).sum(axis=0)
    low, high = magnitude.min(), np.percentile(magnitude, 99)
    if high <= low:
        return np.zeros_like(magnitude)
    return np.clip((magnitude - low) / (high - low), 0.0, 1.0)


def heat_from_xrai(xrai_hw: np.ndarray) -> np.ndarray:
    """XRAI region scores (any sign) -> [H,W] in [0,1]."""
    low, high = float(xrai_hw.min()), float(xrai_hw.max())
    if high <= low:
        return np.zeros_like(xrai_hw)
    return (xrai_hw - low) / (high - low)


def _overlay(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    from matplotlib import colormaps

    colors = colormaps["inferno"](heat)[..., :3] * 255.0
    alpha = 0.25 + 0.6 * heat[..., None]  # cold areas stay visible, hot ones are coloured
    return (image * (1.0 - alpha) + colors * alpha).astype(np.uint8)


def top_regions_mask(xrai_hw: np.ndarray, fraction: float = _TOP_FRACTION) -> np.ndarray:
    """XRAI's best regions whose area adds up to at most ``fraction`` of the image (at least one).

    Whole regions, best first: a percentile cut would split the tie of a large region's pixels
    and show, say, all of a low-scoring background that happens to straddle the cut."""
    values, counts = np.unique(xrai_hw, return_counts=True)
    values, counts = values[::-1], counts[::-1]
    fits = np.cumsum(counts) <= fraction * xrai_hw.size
    fits[0] = True
    return np.isin(xrai_hw, values[fits])


def _top_regions(image: np.ndarray, xrai_hw: np.ndarray) -> np.ndarray:
    keep = top_regions_mask(xrai_hw)
    return np.where(keep[..., None], image, (image * 0.15).astype(np.uint8))


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def render_png(image: np.ndarray, algorithm: str, label: str, probability: float,
               attribution: np.ndarray | None = None, xrai_map: np.ndarray | None = None) -> bytes:
    """PNG bytes: panels [input | heat overlay (| XRAI top 30%)] under a title line.

    ``image`` is the model's crop as uint8 [H,W,3]; give ``attribution`` [3,H,W] or,
    for XRAI, ``xrai_map`` [H,W].
    """
    if xrai_map is not None:
        panels = [(image, "input"), (_overlay(image, heat_from_xrai(xrai_map)), "XRAI heat map"),
                  (_top_regions(image, xrai_map), f"top {int(_TOP_FRACTION * 100)}% regions")]
    else:
        panels = [(image, "input"),
                  (_overlay(image, heat_from_attribution(attribution)), _TITLES[algorithm])]
    height, width = image.shape[:2]
    scale = max(1.0, _MIN_PANEL / min(height, width))
    panel_w, panel_h = round(width * scale), round(height * scale)
    title_h, caption_h, gap = 28, 20, 6
    canvas = Image.new("RGB", (len(panels) * (panel_w + gap) + gap, title_h + panel_h + caption_h + gap), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((gap, 6), f"{label}: {probability:.3f}  ({_TITLES[algorithm]})", fill="black", font=_font(16))
    for i, (pixels, caption) in enumerate(panels):
        left = gap + i * (panel_w + gap)
        panel = Image.fromarray(pixels).resize((panel_w, panel_h), Image.Resampling.NEAREST)
        canvas.paste(panel, (left, title_h))
        draw.text((left, title_h + panel_h + 3), caption, fill="black", font=_font(13))
    buffer = io.BytesIO()
    # zlib level 1: a fifth of the default level's time for a file ~10% larger (photos barely compress)
    canvas.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
