"""A detector's ONNX graph as Azure lays it out (Faster R-CNN, RetinaNet, SSDlite; Mask R-CNN with
masks): input ``input`` ``[N, 3, H, W]`` already resized and normalised, one group of outputs per
image; and its check against PyTorch on synthetic pictures (``verify_detector``), with every box
kept, with none kept, and as exported (``visionml.export.onnx``'s docstring has the layout).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import VisionMLError
from .onnx_graph import ExportOptions, graph_input, graph_module, input_affine, input_info, trace
from .onnx_thresholds import (KEEP_ALL, KEEP_NONE, TRACE_VALUES, decode_any_count, forced, graph_with_thresholds,
                              score_filters, untrace_thresholds)

BACKGROUND_LABEL = "--bg--"  # Azure's name for class 0 of R-CNN models in labels.json
# Scores the exported detector keeps: everything above 0, so any deployment threshold works.
GRAPH_SCORE_THRESHOLD = 0.0


@dataclass
class DetectorCheck:
    """What ``verify`` runs a detector's graph on: the traced module (``graph``, with the result
    keys ``fields`` per image), check batches in the graph's input form (the first is the traced
    one), the score filters, per filter the names of the graph constants that hold its threshold,
    and the detection cap."""

    graph: object
    fields: list
    batches: list
    filters: list
    nodes: list
    cap: int


@contextlib.contextmanager
def _prepared_inputs(model):
    """The detector with torchvision's resize and normalisation skipped: Azure's graph takes
    images already resized and normalised (the padding to a multiple of 32 stays)."""
    transform = model.transform
    transform.resize = lambda image, target=None: (image, target)
    transform.normalize = lambda image: image
    try:
        yield
    finally:
        del transform.resize, transform.normalize  # the class's methods again


def default_size(settings, transform) -> tuple[int, int]:
    """``(height, width)`` of a fixed-size detector graph when ``--height/--width`` are not given:
    what the model's own resize makes of a 4:3 landscape image (Azure's 600x800 at its default
    min_size 600, max_size 1333), or the model's fixed size (SSDlite)."""
    fixed = getattr(transform, "fixed_size", None)
    if fixed is not None:
        return int(fixed[1]), int(fixed[0])  # torchvision's fixed_size is (width, height)
    scale = min(float(settings["min_size"]) / 3, float(settings["max_size"]) / 4)
    return int(3 * scale), int(4 * scale)


def export_detector(model, settings, family, data_config, options: ExportOptions, path: Path):
    import torch

    family.apply_settings(model, {**settings, "box_score_threshold": GRAPH_SCORE_THRESHOLD})
    fixed = {"box_score_threshold": GRAPH_SCORE_THRESHOLD,
             "nms_iou_threshold": float(settings["nms_iou_threshold"]),
             "box_detections_per_image": int(settings["box_detections_per_image"])}
    transform = model.transform
    any_size = family.kind == "segmenter"  # Mask R-CNN: Azure's input is open in every axis
    height, width = default_size(settings, transform)
    height, width = options.height or height, options.width or width
    count = options.batch_size or 1
    if any_size:
        resize = {"mode": "min_max", "trace_height": height, "trace_width": width}
        shape = [count, "channel", "height", "width"]
    else:
        resize = {"mode": "fixed", "height": height, "width": width}
        shape = [count, 3, height, width]
        if family.sizes_settable:  # the graph's size came from them: another value needs another export
            fixed.update(min_size=int(settings["min_size"]), max_size=int(settings["max_size"]))
    affine = input_affine(transform.image_mean, transform.image_std, options.normalize_in_graph)

    def batch_of(images):
        return graph_input(torch.stack(images), options.normalize_in_graph)

    traced = [check_image(height, width, seed) for seed in range(count)]
    filters = score_filters(model)
    with _prepared_inputs(model):
        with forced(filters, [torch.tensor(v) for v in TRACE_VALUES]), decode_any_count(model), torch.no_grad():
            # The model's result keys, in its order (R-CNN: boxes, labels, scores[, masks];
            # RetinaNet/SSD: boxes, scores, labels): Azure's order of the outputs.
            seen = []
            head = getattr(getattr(model, "roi_heads", None), "mask_predictor", None)
            hook = head.register_forward_hook(lambda _m, _i, out: seen.append(out.shape[-1])) if head else None
            fields = list(model([_network_input(traced[0], transform)])[0])
            if hook is not None:
                hook.remove()
            graph = graph_module(model, affine, fields)
            names, axes = _output_names(fields, count, any_size)
            trace(graph, (batch_of(traced),), path, ["input"], names,
                  {"input": {1: "channel", 2: "height", 3: "width"}, **axes} if any_size else axes)
    nodes = untrace_thresholds(path, filters)
    info = {"input": input_info("input", shape, options, resize),
            "network": {"mean": [float(v) for v in transform.image_mean],
                        "std": [float(v) for v in transform.image_std]},
            "batch": count,
            "outputs": names,
            "per_image": fields,
            "labels": f"labels.json[k] names label k; labels.json[0] is {BACKGROUND_LABEL} (the background)",
            "boxes": "xyxy pixels of the input image",
            "fixed": fixed}
    if any_size:
        info["masks"] = "[n, 1, height, width]: per box, pixel probabilities at the input's size"
    if seen:  # the side of the mask head's output, which torchvision pastes into each box
        info["mask_resolution"] = int(seen[0])
    # Check batches: the traced one, then (another size where the graph allows) more images; not
    # flat images: where every anchor scores the same, the two runtimes break the ties differently.
    batches = [batch_of(traced)]
    if any_size:
        batches.append(batch_of([check_image(height * 3 // 2, height, seed=count + i) for i in range(count)]))
    elif count == 1:
        batches.append(batch_of([check_image(height, width, seed=1)]))
    return info, DetectorCheck(graph=graph, fields=fields, batches=batches, filters=filters, nodes=nodes,
                               cap=fixed["box_detections_per_image"])


def _network_input(pixels, transform):
    """Pixels in [0, 1] normalised as the network expects (its transform's statistics)."""
    import torch

    mean = torch.tensor(transform.image_mean, dtype=pixels.dtype).view(3, 1, 1)
    std = torch.tensor(transform.image_std, dtype=pixels.dtype).view(3, 1, 1)
    return (pixels - mean) / std


def _output_names(fields: list[str], count: int, any_size: bool):
    """Azure's output names (``boxes``... at batch 1, ``boxes_0``... above) and their dynamic axes."""
    names, axes = [], {}
    for i in range(count):
        suffix = f"_{i}" if count > 1 else ""
        for field in fields:
            name = f"{field}{suffix}"
            names.append(name)
            axes[name] = {0: f"detections{suffix}"}
            if field == "masks" and any_size:
                axes[name].update({2: "height", 3: "width"})
    return names, axes


def check_image(height: int, width: int, seed: int):
    """A synthetic photo-like picture, float32 [3, H, W] in [0, 1]: a smooth two-colour
    background, a few flat-coloured rectangles and discs, mild pixel noise."""
    import torch

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (x / width + y / height)[..., None] / 2
    a, b = rng.uniform(0, 1, (2, 3)).astype(np.float32)
    pixels = a * (1 - t) + b * t
    for k in range(4):
        size = rng.uniform(0.1, 0.3) * min(height, width)
        cy, cx = rng.uniform(size, height - size), rng.uniform(size, width - size)
        inside = ((np.abs(x - cx) < size) & (np.abs(y - cy) < size * 0.7) if k % 2
                  else (x - cx) ** 2 + (y - cy) ** 2 < size ** 2)
        pixels[inside] = rng.uniform(0, 1, 3)
    pixels += rng.normal(0, 0.02, pixels.shape).astype(np.float32)
    return torch.from_numpy(np.clip(pixels, 0, 1).transpose(2, 0, 1).copy())


def verify_detector(path: Path, model, check: DetectorCheck) -> None:
    import torch

    from ..predict.onnx_backend import open_session

    count = len(check.filters)
    runs = [("with every box kept", [KEEP_ALL] * count, check.batches)]
    for i, f in enumerate(check.filters):  # each stage left with nothing, after one that kept everything
        runs.append((f"with no box past {type(f.holder).__name__}'s score threshold",
                     [KEEP_ALL] * i + [KEEP_NONE] * (count - i), check.batches[:1]))
    runs.append(("", [f.value for f in check.filters], check.batches))
    width = len(check.fields)
    with _prepared_inputs(model):
        for what, values, batches in runs:
            graph = graph_with_thresholds(path, check.nodes, values) if what else path
            session = open_session(graph, "cpu")
            for number, batch in enumerate(batches, 1):
                where = (f"check batch {number} ({batch.shape[0]} x {batch.shape[3]}x{batch.shape[2]}) "
                         f"{what}").rstrip() if batch.shape[0] > 1 else \
                        f"check image {number} ({batch.shape[3]}x{batch.shape[2]}) {what}".rstrip()
                try:
                    flat = session.run(None, {"input": batch.numpy()})
                except Exception as exc:  # onnxruntime's errors have no common base class
                    raise VisionMLError(f"{path.name}: onnxruntime fails on {where} ({type(exc).__name__}: "
                                        f"{_first_line(exc)}); please report it with the model_name") from None
                with forced(check.filters, values), torch.no_grad():
                    expected_flat = None if KEEP_NONE in values else [t.numpy() for t in check.graph(batch)]
                for i in range(batch.shape[0]):
                    got = dict(zip(check.fields, flat[i * width:(i + 1) * width]))
                    # nothing passes a threshold of 2: PyTorch need not say so
                    expected = ({k: v[:0] for k, v in got.items()} if expected_flat is None else
                                dict(zip(check.fields, expected_flat[i * width:(i + 1) * width])))
                    problem = detection_differences(expected, got, max(batch.shape[2:]), check.cap)
                    if problem:
                        image = f" (image {i + 1})" if batch.shape[0] > 1 else ""
                        raise VisionMLError(f"{path.name}: onnxruntime's detections differ from PyTorch's on "
                                            f"{where}{image}: {problem}; please report it with the model_name")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else ""


# How close onnxruntime's detections must be to PyTorch's: box corners within 0.1% of the image's
# longer side, scores within 0.001, mask probabilities within 0.01 on average. Some may be on one
# side only: those scoring under NEGLIGIBLE_SCORE (a score that underflows to 0 in one runtime is
# dropped by the graph's "above 0"), one tied with the last at the cap, and up to UNMATCHED of
# the rest: where a confident network's scores round to the same float (a sigmoid at 1.0), the
# two runtimes break the tie differently in NMS and may keep another of two overlapping boxes.
# A graph traced wrong differs wholesale (no boxes, other boxes, or an error).
BOX_TOLERANCE = 1e-3
SCORE_TOLERANCE = 1e-3
MASK_TOLERANCE = 1e-2
NEGLIGIBLE_SCORE = 1e-3
UNMATCHED = 0.1


def detection_differences(expected: dict, got: dict, size: int, cap: int) -> str | None:
    """None when ``got`` (onnxruntime) holds ``expected``'s (PyTorch) detections, one to one;
    else what differs. Both are dicts of arrays (boxes, labels, scores, maybe masks)."""
    e_scores, g_scores = expected["scores"], got["scores"]
    differ = np.abs(expected["boxes"][:, None, :] - got["boxes"][None, :, :]).max(axis=-1, initial=0.0)
    close = ((differ <= BOX_TOLERANCE * size) & (expected["labels"][:, None] == got["labels"][None, :])
             & (np.abs(e_scores[:, None] - g_scores[None, :]) <= SCORE_TOLERANCE))
    pairs, taken = [], set()
    for i in np.argsort(-e_scores, kind="stable"):
        candidates = [j for j in np.flatnonzero(close[i]) if j not in taken]
        if candidates:
            j = min(candidates, key=lambda j: differ[i, j])
            taken.add(j)
            pairs.append((i, j))
    matched = {i for i, _ in pairs}

    def spare(scores, index):  # may be missing on the other side
        tied_at_cap = len(scores) >= cap and scores[index] <= scores.min() + SCORE_TOLERANCE
        return scores[index] < NEGLIGIBLE_SCORE or tied_at_cap

    missing = [i for i in range(len(e_scores)) if i not in matched and not spare(e_scores, i)]
    extra = [j for j in range(len(g_scores)) if j not in taken and not spare(g_scores, j)]
    allowed = int(UNMATCHED * max(len(e_scores), len(g_scores))) if pairs else 0
    if len(missing) > allowed or len(extra) > allowed:
        first = (f"PyTorch's box {expected['boxes'][missing[0]].round(2).tolist()} (label "
                 f"{int(expected['labels'][missing[0]])}, score {e_scores[missing[0]]:.4f}) has no match" if missing
                 else f"onnxruntime's box {got['boxes'][extra[0]].round(2).tolist()} has no match")
        return f"{len(e_scores)} detections against {len(g_scores)}; {first}"
    if "masks" in expected:
        for i, j in pairs:
            mean = float(np.abs(expected["masks"][i] - got["masks"][j]).mean())
            if not mean <= MASK_TOLERANCE:
                return f"the masks of detection {i + 1} differ by {mean:.3f} on average"
    return None
