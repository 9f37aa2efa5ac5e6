"""Argument types shared by the sub-commands."""

from __future__ import annotations

import argparse


def int_at_least(minimum: int, why: str | None = None):
    """An argparse type: a whole number >= ``minimum``, with ``why`` as the message otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(why or f"must be at least {minimum}")
        return value

    return parse


DEVICE_HELP = "auto (default: cuda when available, else cpu), cpu, cuda or cuda:N"


def add_device(parser) -> None:
    """``--device``, as every command that runs a model takes it."""
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)


def add_backend(parser) -> None:
    """``--backend``, as the commands that score images (predict, serve, evaluate) take it."""
    from ..predict.backends import BACKENDS

    parser.add_argument("--backend", choices=BACKENDS, default="torch",
                        help="torch (the model folder), onnx (a folder from `visionml export --format onnx`, in "
                             "onnxruntime) or openvino (the same folder in OpenVINO: pip install "
                             "'visionml[openvino]'; faster for detectors and int8 models on CPUs)")


def add_datastore(parser, help: str = "map an azureml:// datastore to a local folder (repeatable)") -> None:
    """``--datastore NAME=DIR`` (repeatable), as every command that reads JSONL takes it."""
    parser.add_argument("--datastore", action="append", default=[], metavar="NAME=DIR", help=help)


def add_inference_speed(parser) -> None:
    """``--threads N`` and ``--precision fp32|bf16``, as the commands that score images (predict,
    serve, evaluate) take them."""
    parser.add_argument("--threads", type=int_at_least(1), default=None, metavar="N",
                        help="intra-op threads of PyTorch and onnxruntime (default: one per physical core this "
                        "process may use, within a container's CPU quota; OMP_NUM_THREADS sets it too)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="fp32",
                        help="the torch backend's precision, as train's: fp32 (default); bf16 (autocast) runs where "
                        "the CPU computes it natively (AVX512-BF16, AMX) and as fp32 on the others; fp16 mixed "
                        "precision is for CUDA; auto: fp16 on CUDA, fp32 on CPU")


def load_predictor(args, log=None, device: str | None = None):
    """``Predictor.from_folder`` with a scoring command's --model, --backend, --device (or
    ``device``), --set, --threads and --precision; ``log(line)`` (default: stderr) is told once
    when bf16 runs as fp32."""
    import sys

    from ..config import parse_set_arguments
    from ..predict import Predictor
    from ..predict.backends import precision_note
    from ..predict.threads import use_threads

    threads = use_threads(args.threads)
    predictor = Predictor.from_folder(args.model, backend=args.backend, device=device or args.device,
                                      overrides=parse_set_arguments(args.overrides) or None,
                                      threads=threads, precision=args.precision)
    note = precision_note(predictor.backend)
    if note:
        (log or (lambda line: print(f"visionml {args.command}: {line}", file=sys.stderr)))(note)
    return predictor
