"""Network outputs -> raw arrays (for metrics) -> Azure's wire objects (for clients).

Pure functions on tensors and numpy arrays, shared by every backend.
"""

from __future__ import annotations

import numpy as np

from ..geometry import mask_to_polygons_abs, polygon_abs_to_norm, xyxy_abs_to_norm
from ..tasks import MULTILABEL


def check_finite(output, model_dir=None):
    """``output`` (logits, or a detector's dict of arrays) unchanged if every value is finite; a
    NaN or infinity means damaged weights or a diverged training, never an answer to send."""
    import torch

    values = output.values() if isinstance(output, dict) else [output]
    if all(bool(torch.isfinite(torch.as_tensor(v)).all()) for v in values):
        return output
    from ..errors import VisionMLError

    where = f"{model_dir}: " if model_dir is not None else ""
    raise VisionMLError(f"{where}the model's output is not finite (NaN or infinity): its weights are damaged "
                        f"or its training diverged. Copy the model folder again, or retrain (e.g. with a "
                        f"lower learning_rate)")


def class_probabilities(logits, task: str) -> list[np.ndarray]:
    """Softmax over classes for multi-class, an independent sigmoid per class for multi-label."""
    import torch

    logits = torch.as_tensor(logits, dtype=torch.float32)
    probs = torch.sigmoid(logits) if task == MULTILABEL else torch.softmax(logits, dim=1)
    return list(probs.numpy())


def detections(output: dict, settings: dict, with_masks: bool) -> dict:
    """One image's detector output filtered as the settings say: score threshold, per-class NMS,
    at most ``box_detections_per_image``; labels made 0-based; masks thresholded to bool.
    Torch detectors already did this with the same settings, so here it only guarantees the
    contract for backends whose thresholds are baked in (ONNX)."""
    import torch
    from torchvision.ops import batched_nms

    boxes = torch.as_tensor(output["boxes"], dtype=torch.float32).reshape(-1, 4)
    scores = torch.as_tensor(output["scores"], dtype=torch.float32).reshape(-1)
    labels = torch.as_tensor(output["labels"], dtype=torch.int64).reshape(-1)
    keep = torch.nonzero(scores >= settings["box_score_threshold"]).flatten()
    keep = keep[batched_nms(boxes[keep], scores[keep], labels[keep], settings["nms_iou_threshold"])]
    keep = keep[: int(settings["box_detections_per_image"])]
    out = {"boxes": boxes[keep].numpy(), "scores": scores[keep].numpy(), "labels": (labels[keep] - 1).numpy()}
    if with_masks:
        masks = torch.as_tensor(output["masks"])[keep]
        out["masks"] = (masks.reshape(len(keep), *masks.shape[-2:]) > settings["mask_pixel_score_threshold"]).numpy()
    return out


def classification_object(filename: str, probs: np.ndarray, labels: list[str],
                          visualizations=None, attributions=None) -> dict:
    return {"filename": filename, "probs": [float(p) for p in probs], "labels": list(labels),
            "visualizations": visualizations, "attributions": attributions}


def detection_object(filename: str, raw: dict, labels: list[str], width: int, height: int,
                     max_polygon_points: int | None = None) -> dict:
    """Boxes normalised to [0, 1]; with masks, each box gets ``polygon``: its mask's outer contours,
    simplified to at most ``max_polygon_points`` points, normalised, one list per segment."""
    norm = np.clip(xyxy_abs_to_norm(raw["boxes"], width, height), 0.0, 1.0)
    boxes = []
    for i, (x0, y0, x1, y1) in enumerate(norm.tolist()):
        entry = {"box": {"topX": x0, "topY": y0, "bottomX": x1, "bottomY": y1},
                 "label": labels[int(raw["labels"][i])], "score": float(raw["scores"][i])}
        if "masks" in raw:
            segments = mask_to_polygons_abs(raw["masks"][i], max_polygon_points)
            entry["polygon"] = polygon_abs_to_norm(segments, width, height)
        boxes.append(entry)
    return {"filename": filename, "boxes": boxes}
