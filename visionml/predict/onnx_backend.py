"""The ONNX Runtime backend: runs ``model.onnx`` from a folder written by ``visionml export --format onnx``.

It follows the backend contract of ``backends.py`` (``run(batch)``), so decoding, resizing,
normalisation and the conversion to Azure's objects stay in the predictor's shared code and the
answers match the torch backend. What the exporter fixed inside the graph (the classification
crop size; a detector's resize sizes, NMS IoU and detection cap) is recorded in the manifest's
``onnx`` block; ``check_settings`` refuses deployment settings the graph cannot honour instead of
silently ignoring them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UsageError, VisionMLError

ONNX_FILE = "model.onnx"


def session_options(threads: int | None = None):
    """ORT settings that make small-batch CPU inference fast: every graph optimisation (fusing
    conv+BN+activation, constant folding), sequential execution (these graphs have no parallel
    branches worth a second pool), and no busy-waiting threads, which on a shared or busy CPU
    steal cycles from the work itself. Intra-op threads: ``threads``, else PyTorch's count (one
    per physical core unless ``OMP_NUM_THREADS`` or ``torch.set_num_threads`` says otherwise),
    so one setting governs both backends and the shared pre/post-processing."""
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def providers_for(device: str) -> list[str]:
    """ONNX Runtime execution providers for a visionml ``--device`` value."""
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise VisionMLError(f"--device {device}: this onnxruntime has no CUDA support "
                                f"(install onnxruntime-gpu), or use --device cpu")
        index = device.partition(":")[2] or "0"
        return [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"]
    raise UsageError(f"--device {device!r}: use cpu, cuda or cuda:N")


def open_session(path: Path | bytes, device: str = "cpu", threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` for ``path`` (or a serialised graph); a damaged file is
    a VisionMLError naming it."""
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    try:
        return ort.InferenceSession(path if isinstance(path, bytes) else str(path),
                                    sess_options=session_options(threads), providers=providers_for(device))
    except (state.Fail, state.InvalidGraph, state.InvalidProtobuf, state.NoSuchFile) as exc:
        where = "the exported graph" if isinstance(path, bytes) else path
        raise VisionMLError(f"{where}: onnxruntime cannot load it ({str(exc).splitlines()[0]}); export the "
                            f"model again with `visionml export --format onnx`") from None


class OnnxBackend:
    """``model.onnx`` in an onnxruntime session. Classification: ``run([B,3,H,W]) -> logits [B,C]``;
    detection/segmentation: one image at a time through the graph (exported with batch 1 and any
    image size), one torchvision-style dict per image."""

    def __init__(self, model_dir, manifest: dict, device: str = "cpu", threads: int | None = None):
        self.model_dir = Path(model_dir)
        self.path = self.model_dir / ONNX_FILE
        self.manifest = manifest
        self.task = manifest["task"]
        self.info = manifest.get("onnx") or {}
        if not self.info:
            raise VisionMLError(f"{self.model_dir / 'visionml.json'}: onnx: missing; this folder's model.onnx was "
                                f"not written by `visionml export --format onnx`: export the model again")
        self.session = open_session(self.path, device, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, batch):
        if not isinstance(batch, (list, tuple)):  # a classifier's stacked tensor
            array = np.ascontiguousarray(_numpy(batch), dtype=np.float32)
            return self.session.run(self.output_names[:1], {self.input_name: array})[0]
        return [self._detect(image) for image in batch]

    def _detect(self, image) -> dict:
        array = np.ascontiguousarray(_numpy(image), dtype=np.float32)
        try:
            outputs = self.session.run(self.output_names, {self.input_name: array})
        except Exception as exc:  # onnxruntime's errors have no common base class
            # Not the image's fault: the graph cannot run it. A detector exported by an earlier
            # visionml, traced on an image where it found nothing, fails so on any object.
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise VisionMLError(f"{self.path}: onnxruntime fails on a {array.shape[2]}x{array.shape[1]} image "
                                f"({type(exc).__name__}: {message[:300]}); export the model again with this "
                                f"visionml (`visionml export --model MODEL_DIR --format onnx -o OUT`), or use "
                                f"--backend torch") from None
        return dict(zip(self.output_names, outputs))

    def check_settings(self, settings: dict) -> None:
        """Refuse settings the graph fixed at export and cannot change at run time, naming the
        export command that would bake the wanted value in. Settings applied after the graph
        (score and mask thresholds, a smaller detection cap, polygon points, the classification
        resize) are free."""
        fixed = self.info.get("fixed") or {}
        problems = []
        for key, value in fixed.items():
            wanted = settings.get(key)
            if wanted is None or key == "box_score_threshold":
                continue
            if key == "box_detections_per_image":
                ok = int(wanted) <= int(value)
            else:
                ok = abs(float(wanted) - float(value)) < 1e-9
            if not ok:
                problems.append((key, wanted, value))
        if problems:
            sets = " ".join(f"--set {k}={w}" for k, w, _ in problems)
            what = ", ".join(f"{k}={w} (the graph has {v})" for k, w, v in problems)
            raise UsageError(f"{self.path}: {what}: fixed when the model was exported. Export it again with "
                             f"`visionml export --model MODEL_DIR --format onnx -o OUT {sets}`, "
                             f"or use --backend torch")
        floor = fixed.get("box_score_threshold")
        if floor is not None and float(settings.get("box_score_threshold", floor)) < float(floor):
            raise UsageError(f"{self.path}: box_score_threshold={settings['box_score_threshold']} is below "
                             f"{floor}, the lowest score the exported graph keeps; export it again or use "
                             f"--backend torch")


def _numpy(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
