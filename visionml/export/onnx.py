"""ONNX export as Azure AutoML writes it: a model folder -> ``model.onnx`` + ``labels.json`` +
``visionml.json``, laid out so that the client code of Azure's doc "Make predictions with ONNX on
computer vision models from AutoML" runs on it unchanged (docs/export.md has the client steps).

* Classification: input ``input1`` float32 ``[batch, 3, crop, crop]`` (dynamic batch), output
  ``output1`` ``[batch, classes]``: logits, without softmax or sigmoid, which the doc's client
  applies itself. ``labels.json`` is the class list: ``classes[argmax]``.
* Detection (Faster R-CNN, RetinaNet, SSDlite): input ``input`` float32 ``[N, 3, H, W]``, already
  resized to ``H x W`` and normalised: torchvision's own resize and normalisation are left out of
  the graph, as in Azure's. ``N`` (``--batch-size``, default 1) is a number, not a dynamic axis:
  the graph has one group of outputs per image, ``boxes``, ``labels``, ``scores`` in the model's
  order (RetinaNet and SSDlite: ``boxes``, ``scores``, ``labels``), named without a suffix at
  batch 1 (Azure's ``model.onnx``) and ``boxes_0, labels_0, scores_0, boxes_1, ...`` above (Azure's
  batch generator). Boxes are xyxy pixels of the ``H x W`` input. ``H x W`` (``--height``,
  ``--width``) defaults to the size the model's ``min_size``/``max_size`` give a 4:3 landscape
  image: 600x800 at Azure's defaults (SSDlite: its fixed 320x320).
* Instance segmentation (Mask R-CNN): input ``input`` ``[N, "channel", "height", "width"]``, any
  size (the client resizes; visionml's backend resizes as torchvision does); the outputs of
  detection plus ``masks`` ``[n, 1, height, width]``, per box probabilities at the input's size.
* Labels: label ``k`` is ``labels.json[k]``. Every visionml detector has a background class 0,
  so for detectors ``labels.json`` begins with ``--bg--``, as Azure's does for R-CNN models;
  RetinaNet's boxes of label 0 (its head scores the background like a class) are left out.
* Input pixels: ``(RGB / 255 - mean) / std`` with ImageNet's mean and std, as the doc's client
  normalises (a model trained with other statistics, e.g. a ViT, converts inside the graph);
  with ``enable_onnx_normalization`` (``--set enable_onnx_normalization=true``, or the training
  hyperparameter) the input is RGB in 0-255 and the graph normalises.

Score and mask thresholds stay out of the graph: it keeps every box scoring above 0 and the
deployment's ``box_score_threshold`` (the doc's client's ``score_threshold``) is applied after it,
which gives the same boxes as thresholding inside (greedy NMS and the top-k cap never let a
lower-scoring box change which higher-scoring boxes survive). NMS IoU, the detection cap and the
input size are fixed in the graph and recorded in the manifest's ``onnx`` block, which
``visionml.predict.onnx_backend`` reads to prepare images and map the outputs back.

Everything is written into a temporary folder beside OUT, checked with ``onnx.checker`` and run
with onnxruntime against PyTorch (a classifier once; a detector on check images with every box
kept, with none kept, and as exported), then moved into place. This module is the driver, the
Azure-layout files and the manifest; per model kind, ``onnx_classifier`` and ``onnx_detector``
build and check the graph (``onnx_graph``: what every graph shares; ``onnx_thresholds``: tracing
a detector with every box kept).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError, VisionMLError
from ..modelio import MANIFEST
from .onnx_classifier import export_classifier, verify_classifier
from .onnx_detector import BACKGROUND_LABEL, detection_differences, export_detector, verify_detector
from .onnx_graph import CLIENT_MEAN, CLIENT_STD, OPSET, ExportOptions

# The names of the export's contract; some now live in the modules above and are imported from here.
__all__ = ["BACKGROUND_LABEL", "CLIENT_MEAN", "CLIENT_STD", "LABELS_FILE", "MAX_BATCH", "MAX_SIDE", "ONNX_FILE", "OPSET",
           "ExportOptions", "azure_labels", "detection_differences", "export_onnx", "exported_manifest", "verify"]

ONNX_FILE = "model.onnx"
LABELS_FILE = "labels.json"
MAX_BATCH = 256
MAX_SIDE = 4096


def export_onnx(model_dir, out_dir, overrides: dict | None = None, *, batch_size: int | None = None,
                height: int | None = None, width: int | None = None) -> Path:
    """Export the model folder ``model_dir`` to ``out_dir`` (created, or files replaced in it).

    ``overrides`` are inference settings to fix in the graph (as ``--set`` on predict), e.g.
    ``{"nms_iou_threshold": "0.6"}`` or ``{"validation_crop_size": "256"}``, and
    ``enable_onnx_normalization``. ``batch_size``, ``height``, ``width``: a detector's input
    ``[batch_size, 3, height, width]`` (Azure's ``batch_size``, ``height_onnx``, ``width_onnx``)."""
    from ..data.dataconfig import resolve_data_config
    from ..fileio import publish_folder, staging_folder, write_json
    from ..modelio import load_model_folder
    from ..models.registry import get_spec
    from ..predict.settings import resolve_settings
    from ..tasks import get_task

    model, manifest = load_model_folder(model_dir)
    task = get_task(manifest["task"])
    overrides = dict(overrides or {})
    in_graph = _export_flag(overrides, task)
    settings = resolve_settings(manifest, overrides)
    if in_graph is None:
        in_graph = bool(settings["enable_onnx_normalization"])
    options = ExportOptions(_positive("--batch-size", batch_size, MAX_BATCH), _positive("--height", height, MAX_SIDE),
                            _positive("--width", width, MAX_SIDE), in_graph)
    family = get_spec(settings["model_name"]).family
    if family.kind not in _EXPORTERS:
        raise VisionMLError(f"ONNX export of {family.name} models is not supported; use --backend torch")
    export, check = _EXPORTERS[family.kind]
    data_config = resolve_data_config(settings["model_name"], settings, manifest.get("preprocessing"))
    out_dir = Path(out_dir)
    with staging_folder(out_dir) as tmp:
        info, example = export(model, settings, family, data_config, options, tmp / ONNX_FILE)
        verify(tmp / ONNX_FILE, model, example, check)
        write_json(tmp / LABELS_FILE, azure_labels(manifest["labels"], family.kind))
        write_json(tmp / MANIFEST, exported_manifest(manifest, settings, info, tmp / ONNX_FILE))
        publish_folder(tmp, out_dir, last=(MANIFEST,))
    return out_dir


def _export_flag(overrides: dict, task) -> bool | None:
    """Take ``enable_onnx_normalization`` out of ``overrides`` (it is not an inference setting the
    predictor knows); its parsed value, or None when not given."""
    from ..config import get_param

    raw = overrides.pop("enable_onnx_normalization", None)
    return None if raw is None else bool(get_param("enable_onnx_normalization", task).parse(raw, task))


def _positive(flag: str, value, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise UsageError(f"{flag} {value!r}: expected a whole number from 1 to {high}")
    return value


def azure_labels(labels: list[str], kind: str) -> list[str]:
    """``labels.json`` as Azure writes it: the class list, with ``--bg--`` first for detectors
    (whose label 0 is the background), so that ``labels.json[label_id]`` names a graph's label."""
    return list(labels) if kind == "classifier" else [BACKGROUND_LABEL, *labels]


def verify(path: Path, model, example, check) -> None:
    """``onnx.checker`` on the file, then ``check`` (the family's comparison of onnxruntime with
    PyTorch), so a broken export fails here rather than at a user's first request. Classifiers
    (``example`` the traced module and its input): one run. Detectors (``example`` a
    ``DetectorCheck``): boxes, labels, scores and masks compared with every box kept (the check
    batches), with each score threshold in turn keeping nothing (the first), and as exported."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise VisionMLError(f"the exported {path.name} is not valid ONNX ({str(exc).splitlines()[0]}); "
                            f"please report it with the model_name") from None
    check(path, model, example)


def exported_manifest(manifest: dict, settings: dict, info: dict, onnx_path: Path) -> dict:
    """The source manifest with the settings the export used, an ``onnx`` block describing the
    graph (input and its preprocessing, outputs, what is fixed, the versions that wrote it) and
    the SHA-256 of the graph at ``onnx_path`` (checked when the onnx backend loads it)."""
    import onnx
    import onnxruntime
    import torch

    from ..data.dataconfig import resolve_data_config
    from ..modelio import file_sha256

    out = {k: v for k, v in manifest.items() if k != "onnx"}
    # The sizes and settings the graph was exported with (those of the deployment's --set values).
    pre = {**(manifest.get("preprocessing") or {}),
           **resolve_data_config(settings["model_name"], settings, manifest.get("preprocessing")).to_manifest()}
    inference = dict(manifest.get("inference") or {})
    inference.update({k: settings[k] for k in inference if settings.get(k) is not None})
    out["inference"] = inference
    out["preprocessing"] = pre
    out["onnx"] = {"file": ONNX_FILE, "opset": OPSET, "layout": "azure", "labels_file": LABELS_FILE,
                   "enable_onnx_normalization": info["input"]["pixels"] == "0-255", **info,
                   "exported_with": {"torch": torch.__version__, "onnx": onnx.__version__,
                                     "onnxruntime": onnxruntime.__version__}}
    out["sha256"] = {ONNX_FILE: file_sha256(onnx_path)}  # not the source's weights, which are not here
    return out


# Per model kind (Task.model_kind, ModelFamily.kind): how a network becomes a graph and how the
# graph is checked against PyTorch.
_EXPORTERS = {
    "classifier": (export_classifier, verify_classifier),
    "detector": (export_detector, verify_detector),
    "segmenter": (export_detector, verify_detector),
}
