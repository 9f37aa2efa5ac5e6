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
  Traced with every score threshold open, so that the graph runs on images with objects and
  without (see "tracing with every box kept" below).

Everything is written into a temporary folder beside OUT, checked with ``onnx.checker`` and run
with onnxruntime against PyTorch (a classifier once; a detector on check images with every box
kept, with none kept, and as exported), then moved into place.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import VisionMLError
from ..modelio import MANIFEST

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
    from ..fileio import publish_folder, staging_folder, write_json

    from ..models.registry import get_spec

    model, manifest = load_model_folder(model_dir)
    settings = resolve_settings(manifest, overrides)
    family = get_spec(settings["model_name"]).family
    if family.kind not in _EXPORTERS:
        raise VisionMLError(f"ONNX export of {family.name} models is not supported; use --backend torch")
    export, check = _EXPORTERS[family.kind]
    out_dir = Path(out_dir)
    with staging_folder(out_dir) as tmp:
        info, example = export(model, settings, family, tmp / ONNX_FILE)
        verify(tmp / ONNX_FILE, model, example, check)
        write_json(tmp / LABELS_FILE, manifest["labels"])
        write_json(tmp / MANIFEST, exported_manifest(manifest, settings, info, tmp / ONNX_FILE))
        publish_folder(tmp, out_dir, last=(MANIFEST,))
    return out_dir


def _export_classifier(model, settings, family, path: Path):
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


def _export_detector(model, settings, family, path: Path):
    import torch

    family.apply_settings(model, {**settings, "box_score_threshold": GRAPH_SCORE_THRESHOLD})
    fixed = {"box_score_threshold": GRAPH_SCORE_THRESHOLD,
             "nms_iou_threshold": float(settings["nms_iou_threshold"]),
             "box_detections_per_image": int(settings["box_detections_per_image"])}
    transform = model.transform
    if getattr(transform, "fixed_size", None) is None:  # SSD resizes to its fixed 320x320 anyway
        fixed.update(min_size=int(transform.min_size[-1]), max_size=int(transform.max_size))
    height = min(fixed.get("min_size", 320), 512)
    example = check_image(height, height * 4 // 3, seed=0)
    filters = score_filters(model)
    with forced(filters, [torch.tensor(v) for v in TRACE_VALUES]), _decode_any_count(model):
        with torch.no_grad():
            # The graph's outputs come in the order of the model's result dict, which differs by
            # family (R-CNN: boxes, labels, scores; RetinaNet/SSD: boxes, scores, labels).
            outputs = list(model([example])[0])
        axes = {"image": {1: "height", 2: "width"}, "boxes": {0: "detections"}, "labels": {0: "detections"},
                "scores": {0: "detections"}, "masks": {0: "detections", 2: "height", 3: "width"}}
        _trace(model, ([example],), path, ["image"], outputs,
               {k: v for k, v in axes.items() if k in ["image", *outputs]})
    nodes = _untrace_thresholds(path, filters)
    shapes = {"boxes": ["detections", 4], "labels": ["detections"], "scores": ["detections"],
              "masks": ["detections", 1, "height", "width"]}
    info = {"input": {"name": "image", "shape": [3, "height", "width"], "dtype": "float32",
                      "meaning": "RGB in [0, 1], any size; one image per run"},
            "outputs": {k: shapes[k] for k in outputs},
            "labels": "1-based: label k is labels.json[k - 1] (0 is the background)",
            "fixed": fixed}
    # Another size and aspect. Not a flat image: where every anchor scores the same, the two
    # runtimes break the ties differently and keep other boxes.
    portrait = check_image(height * 3 // 2, height, seed=1)
    return info, DetectorCheck(images=[example, portrait], filters=filters, nodes=nodes,
                               cap=fixed["box_detections_per_image"])


# -- tracing with every box kept --------------------------------------------------------------
#
# The exporter traces: it runs the model once and records the operations it ran. Where a score
# threshold leaves nothing (a trained fasterrcnn_mobilenet_v3_large_fpn proposes nothing scoring
# 0.05 on an image without objects), the rest of the network runs on empty tensors and the
# graph records shapes that only fit zero boxes: it then fails on every image with an object.
# So every score threshold is replaced, while tracing, by a tensor holding a negative marker
# value that keeps every box, and the marker is then set back to the real threshold in the
# graph. Only the thresholds are touched, so the graph computes what the model computes. The
# one branch on "are there boxes" that a trace would freeze the other way is the R-CNN box
# decoder's (``_decode_any_count``). ``verify`` runs the graph both ways.

@dataclass
class ScoreFilter:
    """A score threshold inside a torchvision detector: ``holder.score_thresh`` (the RPN's, the
    R-CNN box head's, RetinaNet's, SSD's), and its value in the exported graph."""

    holder: object
    value: float


@dataclass
class DetectorCheck:
    """What ``verify`` runs a detector's graph on: check images (the first is the traced one),
    the score filters, per filter the names of the graph constants that hold its threshold, and
    the detection cap."""

    images: list
    filters: list
    nodes: list
    cap: int


# Markers for the thresholds while tracing: below any score, and unlike any other constant.
TRACE_VALUES = (-8191.25, -8193.5, -8195.75)
KEEP_ALL, KEEP_NONE = -1.0, 2.0  # thresholds that keep every box / no box (scores are in [0, 1])


def score_filters(model) -> list[ScoreFilter]:
    holders = [getattr(model, "rpn", None), getattr(model, "roi_heads", None), model]
    filters = [ScoreFilter(h, float(h.score_thresh)) for h in holders
               if h is not None and isinstance(getattr(h, "score_thresh", None), (int, float))]
    if len(filters) > len(TRACE_VALUES):
        raise VisionMLError(f"ONNX export: {type(model).__name__} has {len(filters)} score thresholds, more "
                            f"than the exporter knows; please report it with the model_name")
    return filters


@contextlib.contextmanager
def forced(filters: list[ScoreFilter], values):
    """The model with each filter's threshold set to the matching ``values`` item (a float, or a
    0-d tensor, which a trace records as a constant of its own), then as it was."""
    try:
        for f, value in zip(filters, values):
            f.holder.score_thresh = value
        yield
    finally:
        for f in filters:
            f.holder.score_thresh = f.value


@contextlib.contextmanager
def _decode_any_count(model):
    """The R-CNN box head's box decoder without its ``if there are boxes`` branches, which a
    trace freezes: traced with boxes, the graph then fails on an image with no proposal (a
    Reshape to ``[0, -1]``). The same operations, with the shapes spelt out."""
    import torch

    coder = getattr(getattr(model, "roi_heads", None), "box_coder", None)
    if coder is None:
        yield
        return

    def decode(rel_codes, boxes):
        reference = torch.cat(boxes, dim=0)
        decoded = coder.decode_single(rel_codes, reference)  # [N, 4 * classes]
        return decoded.reshape(reference.shape[0], rel_codes.shape[1] // 4, 4)

    coder.decode = decode
    try:
        yield
    finally:
        del coder.decode  # the class's method again


def _float_constants(graph):
    """(owner, tensor) for every one-element float constant in ``graph`` and its subgraphs:
    initializers and the ``value`` of Constant nodes."""
    import onnx

    for tensor in graph.initializer:
        yield tensor.name, tensor
    for node in graph.node:
        for attribute in node.attribute:
            if node.op_type == "Constant" and attribute.type == onnx.AttributeProto.TENSOR:
                yield node.name, attribute.t
            for sub in ([attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)):
                yield from _float_constants(sub)


def _find_thresholds(proto, values) -> dict:
    """{value: [(owner name, tensor)]} for the one-element float constants equal to one of ``values``."""
    from onnx import numpy_helper

    found = {v: [] for v in values}
    for name, tensor in _float_constants(proto.graph):
        if tensor.data_type != 1 or int(np.prod(tensor.dims)) != 1:  # float32 scalars only
            continue
        value = float(numpy_helper.to_array(tensor).reshape(-1)[0])
        if value in found:
            found[value].append((name, tensor))
    return found


def _set_scalar(tensor, value: float) -> None:
    from onnx import numpy_helper

    tensor.CopyFrom(numpy_helper.from_array(np.full(tuple(tensor.dims), value, dtype=np.float32), tensor.name))


def _untrace_thresholds(path: Path, filters: list[ScoreFilter]) -> list[list[str]]:
    """Set each traced marker in ``path`` back to its filter's real threshold; per filter, the
    names of the constants that hold it (several where the trace unrolled a loop: RetinaNet's
    pyramid levels, SSD's classes)."""
    import onnx

    proto = onnx.load(str(path))
    found = _find_thresholds(proto, TRACE_VALUES[:len(filters)])
    names = []
    for f, marker in zip(filters, TRACE_VALUES):
        if not found[marker]:
            raise VisionMLError(f"ONNX export: the score threshold of {type(f.holder).__name__} is not in the "
                                f"traced graph; please report it with the model_name")
        for _, tensor in found[marker]:
            _set_scalar(tensor, f.value)
        names.append([name for name, _ in found[marker]])
    onnx.save(proto, str(path))
    return names


def graph_with_thresholds(path: Path, nodes: list[list[str]], values) -> bytes:
    """``path``'s graph with the thresholds held by ``nodes`` (per filter, as
    ``_untrace_thresholds`` names them) set to ``values``, serialised."""
    import onnx

    proto = onnx.load(str(path))
    constants = list(_float_constants(proto.graph))
    for names, value in zip(nodes, values):
        owners = [tensor for owner, tensor in constants if owner in names]
        if len(owners) != len(names):
            raise VisionMLError(f"{path.name}: {len(owners)} constants named {names} in the graph instead of "
                                f"{len(names)}; please report it with the model_name")
        for tensor in owners:
            _set_scalar(tensor, value)
    return proto.SerializeToString()


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


def verify(path: Path, model, example, check) -> None:
    """``onnx.checker`` on the file, then ``check`` (the family's comparison of onnxruntime with
    PyTorch), so a broken export fails here rather than at a user's first request. Classifiers: one
    run on ``example``. Detectors (``example`` a ``DetectorCheck``): boxes, labels, scores and masks
    compared with every box kept (the check images), with each score threshold in turn keeping
    nothing (the first image), and as exported (the check images)."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise VisionMLError(f"the exported {path.name} is not valid ONNX ({str(exc).splitlines()[0]}); "
                            f"please report it with the model_name") from None
    check(path, model, example)


def _verify_classifier(path: Path, model, example) -> None:
    import torch

    from ..predict.onnx_backend import open_session

    session = open_session(path, "cpu")
    with torch.no_grad():
        # Traced at batch 2, checked at batch 1: proves the batch axis is really dynamic.
        expected = model(example[:1]).numpy()
    got = session.run(None, {"input": example[:1].numpy()})[0]
    _compare(path, "logits", expected, got, tolerance=1e-3)


def _verify_detector(path: Path, model, check: DetectorCheck) -> None:
    import torch

    from ..predict.onnx_backend import open_session

    count = len(check.filters)
    runs = [("with every box kept", [KEEP_ALL] * count, check.images)]
    for i, f in enumerate(check.filters):  # each stage left with nothing, after one that kept everything
        runs.append((f"with no box past {type(f.holder).__name__}'s score threshold",
                     [KEEP_ALL] * i + [KEEP_NONE] * (count - i), check.images[:1]))
    runs.append(("", [f.value for f in check.filters], check.images))
    for what, values, images in runs:
        graph = graph_with_thresholds(path, check.nodes, values) if what else path
        session = open_session(graph, "cpu")
        names = [o.name for o in session.get_outputs()]
        with forced(check.filters, values), torch.no_grad():
            for index, image in enumerate(images):
                where = f"check image {index + 1} ({image.shape[2]}x{image.shape[1]}) {what}".rstrip()
                expected = None if KEEP_NONE in values else {k: v.numpy() for k, v in model([image])[0].items()}
                try:
                    got = dict(zip(names, session.run(None, {"image": image.numpy()})))
                except Exception as exc:  # onnxruntime's errors have no common base class
                    raise VisionMLError(f"{path.name}: onnxruntime fails on {where} ({type(exc).__name__}: "
                                        f"{_first_line(exc)}); please report it with the model_name") from None
                if expected is None:  # nothing passes a threshold of 2: PyTorch need not say so
                    expected = {k: v[:0] for k, v in got.items()}
                problem = detection_differences(expected, got, max(image.shape[1:]), check.cap)
                if problem:
                    raise VisionMLError(f"{path.name}: onnxruntime's detections differ from PyTorch's on {where}: "
                                        f"{problem}; please report it with the model_name")


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


def _compare(path: Path, name: str, expected, got, tolerance: float) -> None:
    diff = float(np.max(np.abs(expected - got))) if np.size(expected) else 0.0
    if got.shape != expected.shape or not diff <= tolerance:
        raise VisionMLError(f"{path.name}: onnxruntime's {name} differ from PyTorch's (shape {got.shape} vs "
                            f"{expected.shape}, max difference {diff:.2e}); please report it with the model_name")


def exported_manifest(manifest: dict, settings: dict, info: dict, onnx_path: Path) -> dict:
    """The source manifest with the settings the export used, an ``onnx`` block describing the
    graph (inputs, outputs, what is fixed, the versions that wrote it) and the SHA-256 of the
    graph at ``onnx_path`` (checked when the onnx backend loads it)."""
    import onnx
    import onnxruntime
    import torch

    from ..modelio import file_sha256

    out = {k: v for k, v in manifest.items() if k != "onnx"}
    from ..data.dataconfig import resolve_data_config

    # The sizes and settings the graph was exported with (those of the deployment's --set values).
    pre = {**(manifest.get("preprocessing") or {}),
           **resolve_data_config(settings["model_name"], settings, manifest.get("preprocessing")).to_manifest()}
    inference = dict(manifest.get("inference") or {})
    inference.update({k: settings[k] for k in inference if settings.get(k) is not None})
    out["inference"] = inference
    out["preprocessing"] = pre
    out["onnx"] = {"file": ONNX_FILE, "opset": OPSET, **info,
                   "exported_with": {"torch": torch.__version__, "onnx": onnx.__version__,
                                     "onnxruntime": onnxruntime.__version__}}
    out["sha256"] = {ONNX_FILE: file_sha256(onnx_path)}  # not the source's weights, which are not here
    return out


# Per model kind (Task.model_kind, ModelFamily.kind): how a network becomes a graph and how the
# graph is checked against PyTorch.
_EXPORTERS = {
    "classifier": (_export_classifier, _verify_classifier),
    "detector": (_export_detector, _verify_detector),
    "segmenter": (_export_detector, _verify_detector),
}
