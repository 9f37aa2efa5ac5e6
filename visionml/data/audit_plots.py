"""The audit's figures (``matplotlib.figure.Figure``, drawn by the Agg canvas, no pyplot): class
balance, box sizes, box aspect ratios and image sizes. ``visionml audit --output`` writes them
as PNG files, ``visionml view`` serves the same PNG bytes on its page.

Training is drawn in blue and validation in orange (Okabe and Ito's colour-blind-safe palette),
validation hatched as well, so the two read apart in grey too.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

COLOURS = {"training": "#0072B2", "validation": "#E69F00"}
HATCHES = {"training": "", "validation": "//"}
FIGURES = ("class_balance", "box_sizes", "aspect_ratios", "image_sizes")
MAX_CLASSES_SHOWN = 40


def figures(report: dict) -> dict:
    """{name: Figure} for the figures this report has data for (box figures: objects tasks only)."""
    out = {"class_balance": _class_balance(report)} if report["class_balance"] else {}
    if "boxes" in report:
        out["box_sizes"] = _box_sizes(report["boxes"])
        out["aspect_ratios"] = _aspect_ratios(report["boxes"])
    out["image_sizes"] = _image_sizes(report["image_sizes"])
    return out


def png_bytes(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def save_figures(report: dict, out_dir) -> list[Path]:
    """Each figure as ``out_dir/NAME.png``, written atomically."""
    from ..fileio import write_bytes_atomic

    out = Path(out_dir)
    return [write_bytes_atomic(out / f"{name}.png", png_bytes(fig)) for name, fig in figures(report).items()]


def _figure(width=6.4, height=4.0):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _bars(ax, positions, values_by_split, width, horizontal=False):
    splits = list(values_by_split)
    step = width / len(splits)
    for k, split in enumerate(splits):
        offset = positions + (k - (len(splits) - 1) / 2) * step
        draw = ax.barh if horizontal else ax.bar
        draw(offset, values_by_split[split], step, label=split, color=COLOURS[split], hatch=HATCHES[split],
             edgecolor="black", linewidth=0.4)
    if len(splits) > 1:
        ax.legend()


def _class_balance(report):
    balance = report["class_balance"]
    names = list(next(iter(balance.values()))["counts"])
    for split in balance.values():
        names += [n for n in split["counts"] if n not in names]
    names = names[:MAX_CLASSES_SHOWN]
    unit = next(iter(balance.values()))["unit"]
    fig = _figure(6.4, max(2.5, 0.3 * len(names) + 1.2))
    ax = fig.add_subplot()
    positions = np.arange(len(names))
    _bars(ax, positions, {split: [b["counts"].get(n, 0) for n in names] for split, b in balance.items()}, 0.8,
          horizontal=True)
    ax.set_yticks(positions, names)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(f"Class balance ({unit} per class)")
    return fig


def _box_sizes(boxes):
    fig = _figure()
    ax = fig.add_subplot()
    first = next(iter(boxes.values()))
    bins = first["size_bins"]
    labels = [f"{bins[i]:g}-{bins[i + 1]:g}" if bins[i + 1] is not None else f">={bins[i]:g}"
              for i in range(len(bins) - 1)]
    _bars(ax, np.arange(len(labels)), {split: s["size_counts"] for split, s in boxes.items()}, 0.8)
    ax.set_xticks(np.arange(len(labels)), labels, rotation=45, ha="right")
    ax.set_xlabel("box size: square root of the area (pixels); COCO: small < 32, large >= 96")
    ax.set_ylabel("objects")
    ax.set_title("Box sizes")
    return fig


def _aspect_ratios(boxes):
    fig = _figure()
    ax = fig.add_subplot()
    edges = np.asarray(next(iter(boxes.values()))["aspect_log2_bins"])
    centres = (edges[:-1] + edges[1:]) / 2
    _bars(ax, centres, {split: s["aspect_counts"] for split, s in boxes.items()}, edges[1] - edges[0])
    ticks = np.arange(-4, 5)
    ax.set_xticks(ticks, [f"1:{2 ** -t:g}" if t < 0 else f"{2 ** t:g}:1" for t in ticks])
    ax.set_xlabel("box aspect ratio, width:height (log scale; values past 1:16 and 16:1 in the end bins)")
    ax.set_ylabel("objects")
    ax.set_title("Box aspect ratios")
    return fig


def _image_sizes(sizes_by_split):
    fig = _figure()
    ax = fig.add_subplot()
    for split, sizes in sizes_by_split.items():
        rows = sizes["sizes"]
        if not rows:
            continue
        counts = np.array([r["images"] for r in rows], dtype=np.float64)
        ax.scatter([r["width"] for r in rows], [r["height"] for r in rows], s=20 + 180 * counts / counts.max(),
                   color=COLOURS[split], marker="o" if split == "training" else "s", alpha=0.7,
                   edgecolors="black", linewidths=0.4, label=f"{split} ({sizes['distinct']} sizes)")
    ax.set_xlabel("width (pixels)")
    ax.set_ylabel("height (pixels)")
    ax.set_title("Images per size (marker area: number of images)")
    if ax.collections:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no image sizes read", ha="center", va="center", transform=ax.transAxes)
    return fig
