"""The graph around the network, for every kind of model: the input conversion from what Azure's
client sends (normalised with ImageNet's statistics, or RGB in 0-255) to what the network expects,
the module that is traced, and the TorchScript-based trace itself (``visionml.export.onnx`` drives
the export; the module docstring there describes the layout).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.dataconfig import IMAGENET_MEAN, IMAGENET_STD
from ..errors import VisionMLError

OPSET = 17
# What the input is normalised with: Azure's doc's client uses ImageNet's statistics for every model.
CLIENT_MEAN, CLIENT_STD = IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class ExportOptions:
    """``visionml export``'s ONNX arguments (Azure's batch generator's): images per run for
    detectors, the input height and width (None: the model's default), 0-255 input."""

    batch_size: int | None = None
    height: int | None = None
    width: int | None = None
    normalize_in_graph: bool = False


def input_affine(network_mean, network_std, in_graph: bool):
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


def graph_module(model, affine, fields):
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


def input_info(name, shape, options: ExportOptions, resize: dict) -> dict:
    pixels = "0-255" if options.normalize_in_graph else "normalised"
    meaning = ("RGB in 0-255; the graph normalises" if options.normalize_in_graph else
               "RGB / 255, normalised with mean/std (ImageNet's, as Azure's client does)")
    return {"name": name, "shape": shape, "dtype": "float32", "pixels": pixels, "mean": list(CLIENT_MEAN),
            "std": list(CLIENT_STD), "resize": resize, "meaning": meaning}


def trace(model, args, path: Path, inputs, outputs, axes) -> None:
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
