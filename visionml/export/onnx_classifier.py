"""A classifier's ONNX graph: input ``input1`` ``[batch, 3, crop, crop]`` (dynamic batch) -> output
``output1``, the logits; checked once against PyTorch at another batch size than it was traced at."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UsageError, VisionMLError
from .onnx_graph import ExportOptions, graph_input, graph_module, input_affine, input_info, trace


def export_classifier(model, settings, family, data_config, options: ExportOptions, path: Path):
    import torch

    if options.height or options.width:
        raise UsageError("--height/--width are for detectors: a classifier's input is its validation crop; "
                         "export with --set validation_crop_size=N (and validation_resize_size) instead")
    crop = int(settings["validation_crop_size"])
    affine = input_affine(data_config.mean, data_config.std, options.normalize_in_graph)
    graph = graph_module(model, affine, None)
    pixels = torch.rand(2, 3, crop, crop, generator=torch.Generator().manual_seed(0))
    example = graph_input(pixels, options.normalize_in_graph)
    trace(graph, (example,), path, ["input1"], ["output1"], {"input1": {0: "batch"}, "output1": {0: "batch"}})
    info = {"input": input_info("input1", ["batch", 3, crop, crop], options,
                                {"mode": "resize_crop", "resize_size": int(settings["validation_resize_size"]),
                                 "crop_size": crop}),
            "network": {"mean": list(data_config.mean), "std": list(data_config.std)},
            "batch": None,
            "outputs": ["output1"],
            "output1": "logits [batch, classes], without softmax/sigmoid; labels.json[k] names class k",
            "fixed": {"validation_crop_size": crop}}
    return info, (graph, example)


def verify_classifier(path: Path, model, example) -> None:
    import torch

    from ..predict.onnx_backend import open_session

    graph, inputs = example
    session = open_session(path, "cpu")
    with torch.no_grad():
        # Traced at batch 2, checked at batch 1: proves the batch axis is really dynamic.
        expected = graph(inputs[:1]).numpy()
    got = session.run(None, {"input1": inputs[:1].numpy()})[0]
    _compare(path, "logits", expected, got, tolerance=1e-3)


def _compare(path: Path, name: str, expected, got, tolerance: float) -> None:
    diff = float(np.max(np.abs(expected - got))) if np.size(expected) else 0.0
    if got.shape != expected.shape or not diff <= tolerance:
        raise VisionMLError(f"{path.name}: onnxruntime's {name} differ from PyTorch's (shape {got.shape} vs "
                            f"{expected.shape}, max difference {diff:.2e}); please report it with the model_name")
