"""Static int8 ONNX export with an accuracy guard (``visionml export --format onnx --quantize int8``).

The model is exported as ``export_onnx`` writes it (Azure's layout), then ``model.onnx`` is
quantized with onnxruntime's static quantization: QDQ format, weights int8 per output channel,
activations uint8 with ranges calibrated (min/max) on a sample of the training images. The
calibration inputs are what ``--backend onnx`` itself feeds the graph: the predictor's own
decoding, resize, crop and normalisation, recorded at the session, so calibration sees exactly
the pixels a deployment does.

Both graphs are then evaluated on the validation data (``evaluate_model`` with the onnx backend)
by the task's primary metric. When int8 loses more than ``max_drop``, the most sensitive nodes
(the first convolution, which sees raw pixels, and the last Gemm/MatMul, which gives the logits)
are kept in fp32 and the model quantized again; if that still loses too much the export is
refused with both numbers. Everything is built in a staging folder beside OUT, which only an
accepted export reaches (``fileio.staging_folder``): a refusal leaves OUT as it was.

Object detection and instance segmentation quantize their backbone's convolutions (with the
FPN: where the time goes) and keep the rest in fp32: the RPN and RoI heads, box coding, NMS and
RoI Align, whose int8 error would move boxes and whose cost is small.
"""

from __future__ import annotations

import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError, VisionMLError

ONNX_FILE = "model.onnx"
PRECISIONS = ("int8",)
DEFAULT_CALIBRATION_SIZE = 300
DEFAULT_MAX_DROP = 0.01
MAX_CALIBRATION_SIZE = 100_000
CALIBRATION_BATCH = 8


@dataclass(frozen=True)
class QuantizeOptions:
    """``--quantize``'s arguments. ``validation_data`` None: the accuracy check runs on the
    calibration data (a drop measured on training images, said so in the manifest)."""

    calibration_data: str | Path
    validation_data: str | Path | None = None
    max_drop: float = DEFAULT_MAX_DROP
    calibration_size: int = DEFAULT_CALIBRATION_SIZE
    precision: str = "int8"
    datastores: dict | None = None
    seed: int = 0

    def checked(self) -> QuantizeOptions:
        import math

        if self.precision not in PRECISIONS:
            raise UsageError(f"--quantize {self.precision!r}: use one of: {', '.join(PRECISIONS)}")
        if not self.calibration_data:
            raise UsageError("--quantize int8 needs --calibration-data TRAIN.jsonl (the training images "
                             "the activation ranges are calibrated on)")
        drop = self.max_drop
        if isinstance(drop, bool) or not isinstance(drop, (int, float)) or not math.isfinite(drop) or drop < 0:
            raise UsageError(f"--max-drop {drop!r}: expected a number at least 0 (a fraction of the primary "
                             f"metric, e.g. 0.01 for one accuracy point)")
        size = self.calibration_size
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_CALIBRATION_SIZE:
            raise UsageError(f"--calibration-size {size!r}: expected a whole number from 1 to {MAX_CALIBRATION_SIZE}")
        return self


@dataclass(frozen=True)
class Attempt:
    """One quantization of the graph: the nodes it keeps in fp32 and the int8 metric it gave."""

    kept_fp32: tuple[str, ...]
    metric: float


def export_int8(model_dir, out_dir, overrides: dict | None, quantize: QuantizeOptions, **options) -> Path:
    """Export ``model_dir`` to ``out_dir`` as an int8 ONNX model (``options``: ``export_onnx``'s
    ``batch_size``, ``height``, ``width``), or raise ``VisionMLError`` with the fp32 and int8
    metrics when int8 loses more than ``quantize.max_drop`` even with the sensitive nodes in fp32."""
    from ..fileio import publish_folder, staging_folder
    from ..modelio import MANIFEST, read_manifest
    from ..tasks import get_task
    from .onnx import export_onnx

    quantize = quantize.checked()
    task = get_task(read_manifest(model_dir)["task"])
    out_dir = Path(out_dir)
    with staging_folder(out_dir) as tmp:
        fp32_dir = export_onnx(model_dir, tmp / "fp32", overrides, **options)
        evaluation_data = quantize.validation_data or quantize.calibration_data
        fp32 = _primary(fp32_dir, evaluation_data, quantize)
        _log(f"fp32 {fp32['name']} {fp32['value']:.4f} on {fp32['images']} images of {evaluation_data}")
        calibration = _calibration_records(fp32_dir, task, quantize)
        prepared = tmp / "prepared.onnx"
        _prepare(fp32_dir / ONNX_FILE, prepared, detector=task.objects)
        plan = _plan(prepared, detector=task.objects)
        int8_dir = tmp / "int8"
        attempts = []
        for kept in plan.fallbacks:
            _quantize_into(fp32_dir, prepared, int8_dir, calibration, plan, kept)
            int8 = _primary(int8_dir, evaluation_data, quantize)
            attempts.append(Attempt(tuple(kept), int8["value"]))
            _log(f"int8 {int8['name']} {int8['value']:.4f}"
                 + (f" with {len(kept)} node(s) kept in fp32 ({', '.join(kept)})" if kept else "")
                 + f": drop {fp32['value'] - int8['value']:.4f} (allowed {quantize.max_drop:g})")
            if fp32["value"] - int8["value"] <= quantize.max_drop:
                break
        else:
            raise VisionMLError(_refusal(model_dir, fp32, attempts, quantize, evaluation_data))
        _write_manifest(int8_dir, fp32, attempts, quantize, evaluation_data, len(calibration), plan)
        publish_folder(int8_dir, out_dir, last=(MANIFEST,))
    return out_dir


def _log(message: str) -> None:
    print(f"visionml export: {message}", file=sys.stderr, flush=True)


def _refusal(model_dir, fp32: dict, attempts: list[Attempt], quantize: QuantizeOptions, data) -> str:
    tried = "; ".join(f"{a.metric:.4f}" + (f" with {', '.join(a.kept_fp32)} in fp32" if a.kept_fp32 else "")
                      for a in attempts)
    best = max(a.metric for a in attempts)
    return (f"--quantize int8: refused: {fp32['name']} on {data} is {fp32['value']:.4f} in fp32 but "
            f"{best:.4f} in int8 (a drop of {fp32['value'] - best:.4f}, over --max-drop {quantize.max_drop:g}; "
            f"tried: {tried}). Nothing was written. Export {model_dir} without --quantize (fp32 ONNX), allow a "
            f"larger --max-drop, or calibrate on more images (--calibration-size)")


# -- evaluation --------------------------------------------------------------------------------

def _primary(onnx_dir: Path, data, quantize: QuantizeOptions) -> dict:
    """The task's primary metric of the exported folder on ``data``, run by the onnx backend."""
    from ..metrics.evaluate import evaluate_model

    metrics = evaluate_model(onnx_dir, data, datastores=quantize.datastores, backend="onnx", device="cpu")
    name = metrics["primary_metric"]
    images = metrics.get("num_samples", metrics.get("num_images"))
    return {"name": name, "value": float(metrics[name]), "images": images}


# -- calibration -------------------------------------------------------------------------------

def _calibration_records(onnx_dir: Path, task, quantize: QuantizeOptions) -> list:
    """Up to ``calibration_size`` records of the calibration data, drawn at random (seeded), that
    the model can take; the reader's problems are errors only when nothing usable is left."""
    from ..data.reader import read_dataset
    from ..predict import Predictor

    loaded = read_dataset(quantize.calibration_data, task, datastores=quantize.datastores)
    predictor = Predictor.from_folder(onnx_dir, backend="onnx")
    usable = [r for r in loaded.records
              if not (r.width and r.height and predictor.size_problem(r.width, r.height))]
    if not usable:
        raise VisionMLError(f"--calibration-data {quantize.calibration_data}: no image the model can take")
    count = min(quantize.calibration_size, len(usable))
    picked = random.Random(quantize.seed).sample(range(len(usable)), count)
    return [usable[i] for i in sorted(picked)]


class _RecordingSession:
    """An onnxruntime session that keeps each input it is run on: the graph's input exactly as
    the onnx backend prepares it."""

    def __init__(self, session):
        self.session = session
        self.inputs: list = []

    def run(self, names, feeds, *args, **kwargs):
        self.inputs.append(dict(feeds))
        return self.session.run(names, feeds, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.session, name)


def _calibration_reader(onnx_dir: Path, records: list):
    """An onnxruntime ``CalibrationDataReader`` yielding the graph inputs of ``records``, made
    batch by batch by a predictor on the fp32 export (so memory holds one batch)."""
    from onnxruntime.quantization import CalibrationDataReader

    from ..data.images import load_rgb, local_path
    from ..predict import Predictor

    predictor = Predictor.from_folder(onnx_dir, backend="onnx")
    recorder = _RecordingSession(predictor.backend.session)
    predictor.backend.session = recorder

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.next_record = 0

        def get_next(self):
            while not recorder.inputs and self.next_record < len(records):
                chunk = records[self.next_record:self.next_record + CALIBRATION_BATCH]
                self.next_record += len(chunk)
                images = []
                for record in chunk:
                    try:
                        images.append(load_rgb(local_path(record.path)))
                    except ValueError as exc:
                        raise VisionMLError(f"{record.where}: image_url: {record.image_url}: {exc}") from exc
                predictor.raw_predict(images, batch_size=CALIBRATION_BATCH)
            return recorder.inputs.pop(0) if recorder.inputs else None

    return Reader()


# -- quantization ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """What is quantized: ``nodes`` (None: every node onnxruntime can quantize) and, attempt by
    attempt, the nodes kept in fp32."""

    nodes: tuple[str, ...] | None
    fallbacks: tuple[tuple[str, ...], ...]
    scope: str


def _prepare(fp32_path: Path, prepared: Path, detector: bool) -> None:
    """Shape inference and onnxruntime's basic graph optimisation, as its quantization guide asks
    before quantizing; node names are taken from this graph. Detectors skip the symbolic shape
    inference, which cannot follow the data-dependent sizes after NMS (ONNX's own inference runs)."""
    import contextlib
    import tempfile

    from onnxruntime.quantization.shape_inference import quant_pre_process

    # When its symbolic shape inference fails, onnxruntime saves the graph as sym_shape_infer_temp.onnx
    # plus a <uuid>.data file into the current folder: run it from a scratch folder, so nothing lands
    # in the user's.
    with tempfile.TemporaryDirectory(prefix="visionml-quant-") as scratch, contextlib.chdir(scratch):
        quant_pre_process(str(Path(fp32_path).resolve()), str(Path(prepared).resolve()), skip_symbolic_shape=detector)


def _plan(prepared: Path, detector: bool) -> Plan:
    """Classifiers: every quantizable node; kept in fp32 on the second attempt, the first Conv and
    the last Gemm/MatMul (the layers whose int8 error costs most: raw pixels in, logits out).
    Detectors: the backbone's convolutions only (where the time goes; box coding, NMS, RoI Align
    and the heads stay fp32); kept in fp32 on the second attempt, the first Conv."""
    import onnx

    nodes = onnx.load(str(prepared), load_external_data=False).graph.node
    convs = [n.name for n in nodes if n.op_type == "Conv" and n.name]
    if detector:
        backbone = [name for name in convs if "/backbone/" in name]
        return Plan(tuple(backbone), ((), tuple(backbone[:1])), "backbone convolutions")
    heads = [n.name for n in nodes if n.op_type in ("Gemm", "MatMul") and n.name]
    sensitive = tuple(convs[:1] + heads[-1:])
    return Plan(None, ((), sensitive) if sensitive else ((),), "every quantizable node")


def _quantize_into(fp32_dir: Path, prepared: Path, int8_dir: Path, records: list, plan: Plan,
                   kept_fp32: tuple[str, ...]) -> None:
    """``int8_dir``: the fp32 export's files, its graph (``prepared``) quantized as ``plan`` says
    (QDQ, per-channel int8 weights, uint8 activations calibrated on ``records``) with
    ``kept_fp32`` left as they are."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if int8_dir.exists():
        shutil.rmtree(int8_dir)
    int8_dir.mkdir()
    for entry in fp32_dir.iterdir():
        if entry.name != ONNX_FILE:
            shutil.copy2(entry, int8_dir / entry.name)
    nodes = None if plan.nodes is None else [n for n in plan.nodes if n not in kept_fp32]
    # reduce_range: 7-bit weights, so that the u8 x s8 products of CPUs without VNNI (AVX2) cannot
    # saturate their 16-bit accumulators, as onnxruntime's quantization guide advises.
    quantize_static(str(prepared), str(int8_dir / ONNX_FILE), _calibration_reader(fp32_dir, records),
                    quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, nodes_to_quantize=nodes,
                    nodes_to_exclude=list(kept_fp32),
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    _set_sha256(int8_dir)


def _set_sha256(folder: Path) -> None:
    """Record the int8 graph's SHA-256 in the folder's manifest, as ``export_onnx`` does for fp32,
    so that ``--backend onnx``'s check accepts it."""
    from ..fileio import write_json
    from ..modelio import MANIFEST, file_sha256

    manifest = _read_json(folder / MANIFEST)
    manifest["sha256"] = {ONNX_FILE: file_sha256(folder / ONNX_FILE)}
    write_json(folder / MANIFEST, manifest)


def _read_json(path: Path) -> dict:
    import json

    return json.loads(path.read_text(encoding="utf-8"))


def _write_manifest(int8_dir: Path, fp32: dict, attempts: list[Attempt], quantize: QuantizeOptions, data,
                    calibrated: int, plan: Plan) -> None:
    """Add a ``quantization`` block to the int8 folder's manifest: both metrics, the nodes kept
    in fp32, how it was calibrated."""
    import onnxruntime

    from ..fileio import write_json
    from ..modelio import MANIFEST

    manifest = _read_json(int8_dir / MANIFEST)
    chosen = attempts[-1]
    manifest["quantization"] = {
        "precision": "int8", "format": "QDQ", "weights": "int8, per channel, 7-bit range",
        "activations": "uint8", "quantized": plan.scope, "onnxruntime": onnxruntime.__version__,
        "calibration": {"data": str(quantize.calibration_data), "images": calibrated, "method": "minmax",
                        "seed": quantize.seed},
        "nodes_kept_fp32": list(chosen.kept_fp32),
        "evaluation": {"data": str(data), "on_calibration_data": quantize.validation_data is None,
                       "images": fp32["images"], "metric": fp32["name"], "fp32": fp32["value"],
                       "int8": chosen.metric, "drop": fp32["value"] - chosen.metric,
                       "max_drop": quantize.max_drop},
        "attempts": [{"nodes_kept_fp32": list(a.kept_fp32), "int8": a.metric} for a in attempts],
    }
    write_json(int8_dir / MANIFEST, manifest)
