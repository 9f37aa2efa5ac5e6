"""Backends run the network and nothing else; decoding, preprocessing and postprocessing are
shared in ``predictor.py``, so every backend returns the same objects for the same image.

A backend is any object with ``run(batch)``:

* classification: ``batch`` is a float tensor ``[B, 3, H, W]`` (normalised); returns the logits
  ``[B, C]`` (tensor or numpy array);
* detection / segmentation: ``batch`` is a list of float tensors ``[3, H_i, W_i]`` in [0, 1];
  returns one dict per image in torchvision's detection format: ``boxes`` ``[N, 4]`` xyxy pixels of
  that image, ``scores`` ``[N]``, ``labels`` ``[N]`` (1-based, 0 is background), and for
  segmentation ``masks`` ``[N, 1, H_i, W_i]`` pixel probabilities.

``visionml.predict.onnx_backend.OnnxBackend(model_dir, manifest, device)`` (issue 9) follows the same
contract for ``model.onnx``. A backend whose settings were fixed at export may define
``check_settings(settings)``; the predictor calls it with the resolved settings.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError, VisionMLError

BACKENDS = ("torch", "onnx")


class TorchBackend:
    """The PyTorch module from the model folder, in eval mode, on ``device``."""

    def __init__(self, model, device: str = "cpu"):
        import torch

        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    def run(self, batch):
        import torch

        with torch.inference_mode():
            if isinstance(batch, torch.Tensor):
                return self.model(batch.to(self.device)).float().cpu()
            outputs = self.model([image.to(self.device) for image in batch])
            return [{k: v.cpu() for k, v in out.items()} for out in outputs]


def resolve_device(name: str, backend: str = "torch") -> str:
    """A ``--device`` value as the backend takes it: ``auto`` is cuda when this backend can use a
    GPU here, else cpu; ``cuda[:N]`` is refused where there is none."""
    name = str(name or "auto")
    if name == "auto":
        return "cuda" if _cuda_available(backend) else "cpu"
    if name == "cpu":
        return name
    if name != "cuda" and not (name.startswith("cuda:") and name[5:].isdecimal()):
        raise UsageError(f"--device {name!r} is not one of auto, cpu, cuda or cuda:N")
    if backend == "torch" and not _cuda_available(backend):
        raise UsageError(f"--device {name}: no CUDA device is available here; use --device cpu (or auto)")
    return name  # onnx: onnx_backend explains a missing CUDA provider itself


def _cuda_available(backend: str) -> bool:
    if backend == "onnx":
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    import torch

    return torch.cuda.is_available()


def load_backend(name: str, model_dir: Path, device: str):
    """``(backend, model, manifest)``: ``model`` is the nn.Module for the torch backend, else None."""
    device = resolve_device(device, name)
    if name == "torch":
        from ..modelio import load_model_folder

        model, manifest = load_model_folder(model_dir, device=device)
        return TorchBackend(model, device), model, manifest
    if name == "onnx":
        return _load_onnx(model_dir, device)
    raise UsageError(f"unknown backend {name!r}; use one of: {', '.join(BACKENDS)}")


def _load_onnx(model_dir: Path, device: str):
    onnx_file = model_dir / "model.onnx"
    if not onnx_file.is_file():
        raise VisionMLError(f"{onnx_file}: not found. The onnx backend runs an exported model: "
                            f"run `visionml export --model {model_dir} --format onnx -o OUT` and "
                            f"pass --model OUT, or use --backend torch.")
    from ..modelio import check_sha256, read_manifest
    from .onnx_backend import ONNX_FILE, OnnxBackend

    manifest = read_manifest(model_dir)
    # Damaged bytes may still parse as a graph, and answer wrongly rather than fail.
    check_sha256(model_dir, manifest, ONNX_FILE, remedy=f"Copy the exported folder again, or export it again "
                 f"(visionml export --model RUN/model --format onnx -o {model_dir})")
    return OnnxBackend(model_dir, manifest, device), None, manifest
