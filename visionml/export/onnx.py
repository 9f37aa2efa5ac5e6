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
kept, with none kept, and as exported), then moved into place.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.dataconfig import IMAGENET_MEAN, IMAGENET_STD
from ..errors import UsageError, VisionMLError
from ..modelio import MANIFEST

OPSET = 17
ONNX_FILE = "model.onnx"
LABELS_FILE = "labels.json"
BACKGROUND_LABEL = "--bg--"  # Azure's name for class 0 of R-CNN models in labels.json
# Scores the exported detector keeps: everything above 0, so any deployment threshold works.
GRAPH_SCORE_THRESHOLD = 0.0
# What the input is normalised with: Azure's doc's client uses ImageNet's statistics for every model.
CLIENT_MEAN, CLIENT_STD = IMAGENET_MEAN, IMAGENET_STD
MAX_BATCH = 256
MAX_SIDE = 4096


@dataclass(frozen=True)
class ExportOptions:
    """``visionml export``'s ONNX arguments (Azure's batch generator's): images per run for
    detectors, the input height and width (None: the model's default), 0-255 input."""

    batch_size: int | None = None
    height: int | None = None
    width: int | None = None
    normalize_in_graph: bool = False


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


# -- the graph around the network -------------------------------------------------------------

def _affine(network_mean, network_std, in_graph: bool):
    """``(scale, shift)`` per channel taking the graph's input to what the network expects
    (``(pixels / 255 - mean) / std`` with the network's statistics), or None where they coincide.
    The input is RGB in 0-255 (``in_graph``) or normalised with ``CLIENT_MEAN``/``CLIENT_STD``."""
    mean, std = np.asarray(network_mean, np.float64), np.asarray(network_std, np.float64)
    if in_graph:
        return 1 / (255 * std), -mean / std
    if np.allclose(mean, CLIENT_MEAN, rtol=0, atol=1e-7) and np.allclose(std, CLIENT_STD, rtol=0, atol=1e-7):
        return None
    client_mean, client_std = np.asarray(CLIENT_MEAN), np.asarray(CLIENT_STD)
    return client_std / std, (client_mean - mean) / std


def graph_input(pixels, in_graph: bool):
    """Pixels in [0, 1] (a tensor ``[..., 3, H, W]``) as the graph takes them."""
    import torch

    if in_graph:
        return pixels * 255
    mean = torch.tensor(CLIENT_MEAN, dtype=pixels.dtype).view(3, 1, 1)
    std = torch.tensor(CLIENT_STD, dtype=pixels.dtype).view(3, 1, 1)
    return (pixels - mean) / std


def _graph_module(model, affine, fields):
    """The module that is traced: the affine input conversion, the network, and for detectors
    (``fields``: the keys of one image's result, in the model's order) its results as one flat
    tuple, image by image. A RetinaNet's boxes of label 0 (the background, which its head scores
    like any class, unlike the R-CNN and SSD heads) are left out, so no client names one."""
    import torch
    from torchvision.models.detection import RetinaNet

    background_scored = isinstance(model, RetinaNet)

    class Graph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.convert = affine is not None
            if self.convert:
                self.register_buffer("scale", torch.tensor(affine[0], dtype=torch.float32).view(1, 3, 1, 1))
                self.register_buffer("shift", torch.tensor(affine[1], dtype=torch.float32).view(1, 3, 1, 1))

        def forward(self, x):
            if self.convert:
                x = x * self.scale + self.shift
            if fields is None:
                return self.model(x)
            results = self.model(list(x.unbind(0)))
            if background_scored:
                results = [{k: v[r["labels"] != 0] for k, v in r.items()} for r in results]
            return tuple(result[k] for result in results for k in fields)

    return Graph().eval()


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


def _export_classifier(model, settings, family, data_config, options: ExportOptions, path: Path):
    import torch

    if options.height or options.width:
        raise UsageError("--height/--width are for detectors: a classifier's input is its validation crop; "
                         "export with --set validation_crop_size=N (and validation_resize_size) instead")
    crop = int(settings["validation_crop_size"])
    affine = _affine(data_config.mean, data_config.std, options.normalize_in_graph)
    graph = _graph_module(model, affine, None)
    pixels = torch.rand(2, 3, crop, crop, generator=torch.Generator().manual_seed(0))
    example = graph_input(pixels, options.normalize_in_graph)
    _trace(graph, (example,), path, ["input1"], ["output1"], {"input1": {0: "batch"}, "output1": {0: "batch"}})
    info = {"input": _input_info("input1", ["batch", 3, crop, crop], options,
                                 {"mode": "resize_crop", "resize_size": int(settings["validation_resize_size"]),
                                  "crop_size": crop}),
            "network": {"mean": list(data_config.mean), "std": list(data_config.std)},
            "batch": None,
            "outputs": ["output1"],
            "output1": "logits [batch, classes], without softmax/sigmoid; labels.json[k] names class k",
            "fixed": {"validation_crop_size": crop}}
    return info, (graph, example)


def _input_info(name, shape, options: ExportOptions, resize: dict) -> dict:
    pixels = "0-255" if options.normalize_in_graph else "normalised"
    meaning = ("RGB in 0-255; the graph normalises" if options.normalize_in_graph else
               "RGB / 255, normalised with mean/std (ImageNet's, as Azure's client does)")
    return {"name": name, "shape": shape, "dtype": "float32", "pixels": pixels, "mean": list(CLIENT_MEAN),
            "std": list(CLIENT_STD), "resize": resize, "meaning": meaning}


def default_size(settings, transform) -> tuple[int, int]:
    """``(height, width)`` of a fixed-size detector graph when ``--height/--width`` are not given:
    what the model's own resize makes of a 4:3 landscape image (Azure's 600x800 at its default
    min_size 600, max_size 1333), or the model's fixed size (SSDlite)."""
    fixed = getattr(transform, "fixed_size", None)
    if fixed is not None:
        return int(fixed[1]), int(fixed[0])  # torchvision's fixed_size is (width, height)
    scale = min(float(settings["min_size"]) / 3, float(settings["max_size"]) / 4)
    return int(3 * scale), int(4 * scale)


def _export_detector(model, settings, family, data_config, options: ExportOptions, path: Path):
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
    affine = _affine(transform.image_mean, transform.image_std, options.normalize_in_graph)

    def batch_of(images):
        return graph_input(torch.stack(images), options.normalize_in_graph)

    traced = [check_image(height, width, seed) for seed in range(count)]
    filters = score_filters(model)
    with _prepared_inputs(model):
        with forced(filters, [torch.tensor(v) for v in TRACE_VALUES]), _decode_any_count(model), torch.no_grad():
            # The model's result keys, in its order (R-CNN: boxes, labels, scores[, masks];
            # RetinaNet/SSD: boxes, scores, labels): Azure's order of the outputs.
            seen = []
            head = getattr(getattr(model, "roi_heads", None), "mask_predictor", None)
            hook = head.register_forward_hook(lambda _m, _i, out: seen.append(out.shape[-1])) if head else None
            fields = list(model([_network_input(traced[0], transform)])[0])
            if hook is not None:
                hook.remove()
            graph = _graph_module(model, affine, fields)
            names, axes = _output_names(fields, count, any_size)
            _trace(graph, (batch_of(traced),), path, ["input"], names,
                   {"input": {1: "channel", 2: "height", 3: "width"}, **axes} if any_size else axes)
    nodes = _untrace_thresholds(path, filters)
    info = {"input": _input_info("input", shape, options, resize),
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
    pyramid levels, SSD's classes, a batch's images)."""
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
    """TorchScript-based export: the path torchvision's detectors are tested with (NMS and
    RoIAlign as ONNX ops); the dynamo exporter does not yet handle their data-dependent shapes."""
    import torch

    model.eval()
    _plain_attention(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow are expected here
        try:
            torch.onnx.export(model, args, str(path), input_names=inputs, output_names=outputs,
                              dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True, dynamo=False)
        except OSError:  # writing model.onnx failed (a full disk, ...): the caller names the file and what to do
            raise
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


def _verify_classifier(path: Path, model, example) -> None:
    import torch

    from ..predict.onnx_backend import open_session

    graph, inputs = example
    session = open_session(path, "cpu")
    with torch.no_grad():
        # Traced at batch 2, checked at batch 1: proves the batch axis is really dynamic.
        expected = graph(inputs[:1]).numpy()
    got = session.run(None, {"input1": inputs[:1].numpy()})[0]
    _compare(path, "logits", expected, got, tolerance=1e-3)


def _verify_detector(path: Path, model, check: DetectorCheck) -> None:
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


def _compare(path: Path, name: str, expected, got, tolerance: float) -> None:
    diff = float(np.max(np.abs(expected - got))) if np.size(expected) else 0.0
    if got.shape != expected.shape or not diff <= tolerance:
        raise VisionMLError(f"{path.name}: onnxruntime's {name} differ from PyTorch's (shape {got.shape} vs "
                            f"{expected.shape}, max difference {diff:.2e}); please report it with the model_name")


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
    "classifier": (_export_classifier, _verify_classifier),
    "detector": (_export_detector, _verify_detector),
    "segmenter": (_export_detector, _verify_detector),
}
