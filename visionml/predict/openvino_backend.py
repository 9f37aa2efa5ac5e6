"""``--backend openvino``: the exported ``model.onnx`` (fp32, or the int8 QDQ graph of ``visionml
export --quantize int8``) run by Intel's OpenVINO CPU runtime instead of onnxruntime.

Everything but the runtime is the onnx backend's (``OnnxBackend``: the Azure input layout, resizing,
padding, the per-image outputs, masks): OpenVINO gets the same arrays and answers the same ones, so
the two backends agree within float rounding. On the 2-core AVX2 machine of benchmarks/RESULTS.md
OpenVINO ran fasterrcnn_mobilenet_v3_large_fpn at 320 px 2.1x faster than onnxruntime, resnet18's
int8 graph 1.27x, and resnet18 in fp32 slower (0.91x): use it for detectors and int8 models
(``benchmarks/bench_openvino.py`` measures a machine). An optional extra: ``pip install 'visionml[openvino]'``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError, VisionMLError
from .onnx_backend import OnnxBackend

INSTALL = "pip install 'visionml[openvino]'"


def require_openvino():
    """The ``openvino`` module, or a UsageError with the install line."""
    try:
        import openvino
    except ImportError:
        raise UsageError(f"--backend openvino needs the OpenVINO runtime, which is not installed: {INSTALL} "
                         f"(or use --backend onnx)") from None
    return openvino


@dataclass(frozen=True)
class _Port:
    name: str


class OpenVinoSession:
    """The part of an onnxruntime ``InferenceSession`` that ``OnnxBackend`` uses (``get_inputs``,
    ``get_outputs``, ``run(names, feed)``), on an OpenVINO model compiled for the CPU: latency hint,
    ``threads`` inference threads (0: OpenVINO's choice), no pinning of threads to cores (a shared
    machine's other processes would wait on them)."""

    def __init__(self, path, threads: int | None = None):
        openvino = require_openvino()
        core = openvino.Core()
        config = {"PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self.compiled = core.compile_model(str(path), "CPU", config)
        except RuntimeError as exc:  # OpenVINO raises RuntimeError for a graph it cannot read or compile
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise VisionMLError(f"{path}: OpenVINO cannot compile it ({first[:300]}); export the model again with "
                                f"`visionml export --format onnx`, or use --backend onnx") from None
        self.request = self.compiled.create_infer_request()
        self._inputs = [_Port(port.get_any_name()) for port in self.compiled.inputs]
        self._outputs = [_Port(port.get_any_name()) for port in self.compiled.outputs]
        self._index = {port.name: i for i, port in enumerate(self._outputs)}

    def get_inputs(self):
        return self._inputs

    def get_outputs(self):
        return self._outputs

    def run(self, output_names, feed: dict):
        results = self.request.infer(feed)
        values = list(results.values())  # in the compiled model's output order
        names = output_names or [port.name for port in self._outputs]
        # Copies: the request's buffers are reused by the next call.
        return [values[self._index[name]].copy() for name in names]


class OpenVinoBackend(OnnxBackend):
    """``OnnxBackend`` with OpenVINO as the runtime; CPU only (``device``: cpu)."""

    runtime = "OpenVINO"

    def __init__(self, model_dir, manifest: dict, device: str = "cpu", threads: int | None = None):
        if device != "cpu":
            raise UsageError(f"--backend openvino --device {device}: visionml runs OpenVINO on the CPU only; use "
                             f"--device cpu, or --backend onnx / torch for a CUDA GPU")
        super().__init__(model_dir, manifest, device, threads)

    def _open_session(self, device: str, threads: int | None):
        return OpenVinoSession(self.path, threads)
