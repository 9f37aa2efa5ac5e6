"""Tracing a detector with every box kept, and setting the graph's score thresholds afterwards.

The exporter traces: it runs the model once and records the operations it ran. Where a score
threshold leaves nothing (a trained fasterrcnn_mobilenet_v3_large_fpn proposes nothing scoring
0.05 on an image without objects), the rest of the network runs on empty tensors and the
graph records shapes that only fit zero boxes: it then fails on every image with an object.
So every score threshold is replaced, while tracing, by a tensor holding a negative marker
value that keeps every box, and the marker is then set back to the real threshold in the
graph. Only the thresholds are touched, so the graph computes what the model computes. The
one branch on "are there boxes" that a trace would freeze the other way is the R-CNN box
decoder's (``decode_any_count``). ``verify`` runs the graph both ways.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import VisionMLError


@dataclass
class ScoreFilter:
    """A score threshold inside a torchvision detector: ``holder.score_thresh`` (the RPN's, the
    R-CNN box head's, RetinaNet's, SSD's), and its value in the exported graph."""

    holder: object
    value: float


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
def decode_any_count(model):
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


def untrace_thresholds(path: Path, filters: list[ScoreFilter]) -> list[list[str]]:
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
    ``untrace_thresholds`` names them) set to ``values``, serialised."""
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
