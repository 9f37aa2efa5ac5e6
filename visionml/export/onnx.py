"""ONNX export: a model folder -> ``model.onnx`` + ``labels.json`` + ``visionml.json``.

The graph holds only what the network computes. Decoding, the classification resize/crop/
normalisation, softmax/sigmoid, score and mask thresholds and polygons stay in the predictor's
shared code (``visionml.predict``), so ``--backend onnx`` answers exactly as ``--backend torch``.

* Classification: input ``input`` float32 ``[batch, 3, crop, crop]`` (normalised; dynamic batch),
  output ``logits`` ``[batch, C]``.
* Detection / segmentation: torchvision's detector traced whole (resize, backbone, RPN, heads,
  NMS, boxes scaled back), batch 1 and any image size: input ``image`` float32 ``[3, H, W]`` in
  [0, 1]; outputs ``boxes`` ``[N, 4]`` xyxy pixels, ``labels`` ``[N]`` (1-based: label k is
  ``labels.json[k - 1]``), ``scores`` ``[N]`` and for segmentation ``masks`` ``[N, 1, H, W]``.
  The graph keeps every score above 0; the deployment's ``box_score_threshold`` is applied after
  it, which gives the same boxes as thresholding inside (greedy NMS and the top-k cap never let a
  lower-scoring box change which higher-scoring boxes survive). NMS IoU, the detection cap and
  the resize sizes are fixed in the graph and recorded in the manifest's ``onnx.fixed``.

Everything is written into a temporary folder beside OUT, checked with ``onnx.checker`` and run
once with onnxruntime against PyTorch, then moved into place.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from ..errors import VisionMLError
from ..modelio import MANIFEST
from ..tasks import is_classification

OPSET = 17
ONNX_FILE = "model.onnx"
LABELS_FILE = "labels.json"
# Scores the exported detector keeps: everything above 0, so any deployment threshold works.
GRAPH_SCORE_THRESHOLD = 0.0


def export_onnx(model_dir, out_dir, overrides: dict | None = None) -> Path:
    """Export the model folder ``model_dir`` to ``out_dir`` (created, or files replaced in it).

    ``overrides`` are inference settings to fix in the graph (as ``--set`` on predict), e.g.
    ``{"nms_iou_threshold": "0.6"}`` or ``{"validation_crop_size": "256"}``."""
    from ..modelio import load_model_folder
    from ..predict.settings import resolve_settings
    from .files import publish, staging_folder

    model, manifest = load_model_folder(model_dir)
    settings = resolve_settings(manifest, overrides)
    out_dir = Path(out_dir)
    with staging_folder(out_dir) as tmp:
        if is_classification(manifest["task"]):
            info, example = _export_classifier(model, settings, tmp / ONNX_FILE)
        else:
            info, example = _export_detector(model, settings, tmp / ONNX_FILE)
        verify(tmp / ONNX_FILE, model, example, manifest["task"])
        (tmp / LABELS_FILE).write_text(json.dumps(manifest["labels"], indent=2) + "\n", encoding="utf-8")
        exported = exported_manifest(manifest, settings, info)
        (tmp / MANIFEST).write_text(json.dumps(exported, indent=2) + "\n", encoding="utf-8")
        publish(tmp, out_dir)
    return out_dir


def _export_classifier(model, settings: dict, path: Path):
    import torch

    crop = int(settings["validation_crop_size"])
    example = torch.rand(2, 3, crop, crop, generator=torch.Generator().manual_seed(0))
    example = (example - 0.45) / 0.225  # roughly the normalised range the network sees
    _trace(model, (example,), path, ["input"], ["logits"],
           {"input": {0: "batch"}, "logits": {0: "batch"}})
    info = {"input": {"name": "input", "shape": ["batch", 3, crop, crop], "dtype": "float32",
                      "meaning": "RGB, resized and centre-cropped, normalised with preprocessing.mean/std"},
            "outputs": {"logits": ["batch", "classes"]},
            "fixed": {"validation_crop_size": crop}}
    return info, example


def _export_detector(model, settings: dict, path: Path):
    import torch

    from ..predict.predictor import apply_detector_settings

    apply_detector_settings(model, {**settings, "box_score_threshold": GRAPH_SCORE_THRESHOLD})
    fixed = {"box_score_threshold": GRAPH_SCORE_THRESHOLD,
             "nms_iou_threshold": float(settings["nms_iou_threshold"]),
             "box_detections_per_image": int(settings["box_detections_per_image"])}
    transform = model.transform
    if getattr(transform, "fixed_size", None) is None:  # SSD resizes to its fixed 320x320 anyway
        fixed.update(min_size=int(transform.min_size[-1]), max_size=int(transform.max_size))
    height = min(fixed.get("min_size", 320), 512)
    example = torch.rand(3, height, height * 5 // 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        # The graph's outputs come in the order of the model's result dict, which differs by
        # family (R-CNN: boxes, labels, scores; RetinaNet/SSD: boxes, scores, labels).
        outputs = list(model([example])[0])
    axes = {"image": {1: "height", 2: "width"}, "boxes": {0: "detections"}, "labels": {0: "detections"},
            "scores": {0: "detections"}, "masks": {0: "detections", 2: "height", 3: "width"}}
    _trace(model, ([example],), path, ["image"], outputs, {k: v for k, v in axes.items() if k in ["image", *outputs]})
    shapes = {"boxes": ["detections", 4], "labels": ["detections"], "scores": ["detections"],
              "masks": ["detections", 1, "height", "width"]}
    info = {"input": {"name": "image", "shape": [3, "height", "width"], "dtype": "float32",
                      "meaning": "RGB in [0, 1], any size; one image per run"},
            "outputs": {k: shapes[k] for k in outputs},
            "labels": "1-based: label k is labels.json[k - 1] (0 is the background)",
            "fixed": fixed}
    return info, example


def _trace(model, args, path: Path, inputs, outputs, axes) -> None:
    """TorchScript-based export: the path torchvision's detectors are tested with (dynamic image
    size, NMS and RoIAlign as ONNX ops); the dynamo exporter does not yet handle their
    data-dependent shapes."""
    import torch

    model.eval()
    _plain_attention(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow are expected here
        try:
            torch.onnx.export(model, args, str(path), input_names=inputs, output_names=outputs,
                              dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True, dynamo=False)
        except Exception as exc:  # the exporter raises many types; all mean "this model did not export"
            raise VisionMLError(f"ONNX export failed for this model ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''}); use --backend torch "
                                f"or report it with the model_name") from exc


def _plain_attention(model) -> None:
    """In eval mode nn.MultiheadAttention (ViT) runs a fused kernel that has no ONNX form. Marking
    just those modules as training selects the plain ops instead, with the same result when their
    attention dropout is 0 (as in the registry's ViTs). This is the exporter's own copy of the
    model, so nothing else sees the change."""
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.MultiheadAttention) and module.dropout == 0:
            module.train()


def verify(path: Path, model, example, task: str) -> None:
    """``onnx.checker`` on the file, then one onnxruntime run compared with PyTorch on the same
    input, so a broken export fails here rather than at a user's first request."""
    import numpy as np
    import onnx
    import torch

    from ..predict.onnx_backend import open_session

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise VisionMLError(f"the exported {path.name} is not valid ONNX ({str(exc).splitlines()[0]}); "
                            f"please report it with the model_name") from None
    session = open_session(path, "cpu")
    with torch.no_grad():
        if is_classification(task):
            # Traced at batch 2, checked at batch 1: proves the batch axis is really dynamic.
            expected = model(example[:1]).numpy()
            got = session.run(None, {"input": example[:1].numpy()})[0]
            _compare(path, "logits", expected, got, tolerance=1e-3)
            return
        expected = model([example])[0]
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"image": example.numpy()})))
    if len(got["scores"]) != len(expected["scores"]):
        raise VisionMLError(f"{path.name}: onnxruntime found {len(got['scores'])} detections where PyTorch "
                            f"found {len(expected['scores'])} on the check image; please report it")
    # Sorted: one-stage detectors list boxes class by class, and near-equal scores may swap.
    _compare(path, "scores", np.sort(expected["scores"].numpy()), np.sort(got["scores"]), tolerance=1e-3)


def _compare(path: Path, name: str, expected, got, tolerance: float) -> None:
    import numpy as np

    diff = float(np.max(np.abs(expected - got))) if np.size(expected) else 0.0
    if got.shape != expected.shape or not diff <= tolerance:
        raise VisionMLError(f"{path.name}: onnxruntime's {name} differ from PyTorch's (shape {got.shape} vs "
                            f"{expected.shape}, max difference {diff:.2e}); please report it with the model_name")


def exported_manifest(manifest: dict, settings: dict, info: dict) -> dict:
    """The source manifest with the settings the export used and an ``onnx`` block describing
    the graph (inputs, outputs, what is fixed, the versions that wrote it)."""
    import onnx
    import onnxruntime
    import torch

    out = {k: v for k, v in manifest.items() if k != "onnx"}
    pre = dict(manifest.get("preprocessing") or {})
    fixed = info["fixed"]
    if is_classification(manifest["task"]):
        pre.update(resize_size=int(settings["validation_resize_size"]), crop_size=fixed["validation_crop_size"])
    else:
        pre.update({k: fixed[k] for k in ("min_size", "max_size") if k in fixed})
        inference = dict(manifest.get("inference") or {})
        inference.update({k: settings[k] for k in inference if settings.get(k) is not None})
        out["inference"] = inference
    out["preprocessing"] = pre
    out["onnx"] = {"file": ONNX_FILE, "opset": OPSET, **info,
                   "exported_with": {"torch": torch.__version__, "onnx": onnx.__version__,
                                     "onnxruntime": onnxruntime.__version__}}
    return out
