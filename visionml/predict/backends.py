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

BACKENDS = ("torch", "onnx", "openvino")  # openvino: the exported model.onnx in OpenVINO (an extra)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # train's --precision


class TorchBackend:
    """The PyTorch module from the model folder, in eval mode, on ``device``. ``precision`` as
    training resolves it (``visionml.train.loop.resolve_precision``): fp32; bf16 (autocast) where
    the device computes it natively, fp32 on a CPU that would emulate it (no AVX512-BF16 or AMX:
    about twice as slow as fp32); fp16 autocast; auto (fp16 on CUDA, fp32 on CPU).
    ``precision.name`` says which one runs."""

    def __init__(self, model, device: str = "cpu", precision: str = "fp32"):
        import torch

        from ..train.loop import resolve_precision

        if precision not in PRECISIONS:
            raise UsageError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.requested_precision = precision
        self.precision = resolve_precision(precision, self.device)

    def run(self, batch):
        import torch

        with torch.inference_mode(), self.precision.autocast():
            if isinstance(batch, torch.Tensor):
                return self.model(batch.to(self.device)).float().cpu()
            outputs = self.model([image.to(self.device) for image in batch])
            return [{k: _float(v).cpu() for k, v in out.items()} for out in outputs]


def _float(value):
    """A detector output as the fp32 run gives it: bf16 boxes, scores and masks back to float32."""
    return value.float() if value.is_floating_point() else value


def precision_note(backend) -> str | None:
    """One line for the user when the precision asked for is not the one that runs (bf16 on a CPU
    without native bf16), else None."""
    requested = getattr(backend, "requested_precision", None)
    if requested != "bf16" or backend.precision.name == requested:
        return None
    return (f"--precision {requested}: this CPU has no native bf16 (AVX512-BF16 or AMX), where it would be "
            f"emulated and about twice as slow as fp32; running {backend.precision.name}, as training does")


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
    return name  # onnx: onnx_backend explains a missing CUDA provider itself; openvino refuses a GPU


def _cuda_available(backend: str) -> bool:
    if backend == "openvino":
        return False
    if backend == "onnx":
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    import torch

    return torch.cuda.is_available()


def load_backend(name: str, model_dir: Path, device: str, threads: int | None = None, precision: str = "fp32"):
    """``(backend, model, manifest)``: ``model`` is the nn.Module for the torch backend, else None.
    ``threads``: onnxruntime's intra-op threads (default ``threads.default_threads()``); the torch
    backend runs on PyTorch's process-wide pool (``torch.set_num_threads``; the commands' ``--threads``
    sets both). ``precision`` (``PRECISIONS``, as ``TorchBackend`` resolves them) is the torch
    backend's: an ONNX graph runs the types it was exported with (for a faster one, ``visionml
    export --quantize int8``), so it takes fp32 or auto only."""
    device = resolve_device(device, name)
    if name == "torch":
        from ..modelio import load_model_folder

        model, manifest = load_model_folder(model_dir, device=device)
        return TorchBackend(model, device, precision), model, manifest
    if name in ("onnx", "openvino"):
        if precision not in ("fp32", "auto"):
            raise UsageError(f"--precision {precision} is for --backend torch; an ONNX model runs as it was "
                             f"exported (for a faster one: visionml export --format onnx --quantize int8)")
        return _load_onnx(model_dir, device, threads, runtime=name)
    raise UsageError(f"unknown backend {name!r}; use one of: {', '.join(BACKENDS)}")


def _load_onnx(model_dir: Path, device: str, threads: int | None = None, runtime: str = "onnx"):
    """The exported folder's model.onnx in onnxruntime (``runtime`` onnx) or OpenVINO (openvino)."""
    if runtime == "openvino":
        from .openvino_backend import require_openvino

        require_openvino()  # the install line before anything else
    onnx_file = model_dir / "model.onnx"
    if not onnx_file.is_file():
        raise VisionMLError(f"{onnx_file}: not found. The {runtime} backend runs an exported model: "
                            f"run `visionml export --model {model_dir} --format onnx -o OUT` and "
                            f"pass --model OUT, or use --backend torch.")
    from ..modelio import check_sha256, read_manifest
    from .onnx_backend import ONNX_FILE, OnnxBackend

    manifest = read_manifest(model_dir)
    # Damaged bytes may still parse as a graph, and answer wrongly rather than fail.
    check_sha256(model_dir, manifest, ONNX_FILE, remedy=f"Copy the exported folder again, or export it again "
                 f"(visionml export --model RUN/model --format onnx -o {model_dir})")
    if runtime == "openvino":
        from .openvino_backend import OpenVinoBackend

        return OpenVinoBackend(model_dir, manifest, device, threads), None, manifest
    return OnnxBackend(model_dir, manifest, device, threads), None, manifest
