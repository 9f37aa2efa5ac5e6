"""Export a model folder for other runtimes: ONNX (``onnx.py``) and an MLflow pyfunc model
(``mlflow.py``). ``visionml export`` and Python callers both use ``export_model``."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError

FORMATS = ("onnx", "mlflow")


def export_model(model_dir, out_dir, fmt: str, overrides: dict | None = None, quantize=None, **options) -> Path:
    """Write ``model_dir`` (a visionml model folder) to ``out_dir`` in format ``fmt``; returns ``out_dir``.

    ``overrides``: inference settings (``--set`` values) to fix in the export. ``options`` (onnx
    only): ``batch_size``, ``height``, ``width`` of a detector's input (``visionml.export.onnx``).
    ``quantize`` (onnx only): a ``visionml.export.quantize.QuantizeOptions``, for an int8 graph
    checked against fp32 on validation data (``export_int8``)."""
    if quantize is not None:
        if fmt != "onnx":
            raise UsageError(f"--quantize: only for --format onnx (not {fmt})")
        from .quantize import export_int8

        return export_int8(model_dir, out_dir, overrides, quantize, **options)
    if fmt == "onnx":
        from .onnx import export_onnx

        return export_onnx(model_dir, out_dir, overrides, **options)
    if fmt == "mlflow":
        from .mlflow import export_mlflow

        return export_mlflow(model_dir, out_dir, overrides)
    raise UsageError(f"unknown export format {fmt!r}; use one of: {', '.join(FORMATS)}")


__all__ = ["FORMATS", "export_model"]
