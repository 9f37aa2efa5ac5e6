"""OpenVINO against onnxruntime on visionml's exported graphs (issue 21, item 3): is a second CPU
runtime worth an optional backend here?

The same ``model.onnx`` files that ``visionml export --format onnx`` writes (fp32, and the int8 QDQ
graph of ``--quantize int8``; bench_quantize.make_exports builds both from untrained weights:
speed does not depend on them) are run by onnxruntime in visionml's own session settings
(``predict.onnx_backend.open_session``) and by OpenVINO's CPU plugin (``Core().compile_model`` on
the same file, latency hint, the same thread count). The runtimes are timed in turns, --repeats
rounds, so that load from other processes falls on all of them alike; medians and ratios to
onnxruntime fp32 are printed.

    .venv/bin/python -m pip install openvino          # not a visionml dependency
    .venv/bin/python benchmarks/bench_openvino.py [--model resnet18|fasterrcnn_mobilenet_v3_large_fpn] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quantize import CASES, make_exports  # noqa: E402


def rate(run, batch: np.ndarray, seconds: float) -> float:
    run(batch)  # warm-up
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run(batch)
        runs += 1
    return runs * len(batch) / (time.perf_counter() - start)


def onnxruntime_runner(path: Path, threads: int | None):
    from visionml.predict.onnx_backend import open_session

    session = open_session(path, "cpu", threads)
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})


def openvino_runner(path: Path, threads: int | None, batch_size: int):
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    if model.inputs[0].get_partial_shape().is_dynamic:  # a fixed batch, as the timed one
        shape = model.inputs[0].get_partial_shape()
        model.reshape({model.inputs[0]: [batch_size, *[d.get_length() for d in list(shape)[1:]]]})
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    return lambda batch: request.infer({0: batch})


def main() -> None:
    import openvino as ov
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=tuple(CASES), default="resnet18")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's count)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per runtime, graph, batch and round")
    args = parser.parse_args()
    threads = args.threads or torch.get_num_threads()
    _, _, _, _, shape = CASES[args.model]
    print(f"openvino {ov.__version__}, {threads} threads, {args.model} {shape[1]}x{shape[2]}")
    with tempfile.TemporaryDirectory() as tmp:
        graphs = dict(zip(("fp32", "int8"), make_exports(Path(tmp), args.model)))
        for batch_size in (1, 16) if args.model == "resnet18" else (1,):  # a detector graph's batch is fixed
            runners = {}
            for precision, folder in graphs.items():
                runners[f"onnxruntime {precision}"] = onnxruntime_runner(folder / "model.onnx", threads)
                try:
                    runners[f"openvino {precision}"] = openvino_runner(folder / "model.onnx", threads, batch_size)
                except Exception as error:  # noqa: BLE001 - a graph OpenVINO cannot compile is a result too
                    print(f"  openvino {precision}: cannot compile the graph: {str(error).splitlines()[0][:200]}")
            batch = np.random.default_rng(0).standard_normal((batch_size, *shape), dtype=np.float32)
            rates = {name: [] for name in runners}
            for _ in range(args.repeats):
                for name, run in runners.items():
                    rates[name].append(rate(run, batch, args.seconds))
            base = statistics.median(rates["onnxruntime fp32"])
            print(f"batch {batch_size}:")
            for name, values in rates.items():
                median = statistics.median(values)
                print(f"  {name:18s} {median:7.1f} img/s ({min(values):.1f}-{max(values):.1f})  "
                      f"{median / base:.2f}x onnxruntime fp32")


if __name__ == "__main__":
    main()
