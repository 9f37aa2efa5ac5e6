"""``visionml predict --engine ray``: the JSON lines of ``predict/batch.py``, scored on a Ray cluster.

This process (the driver) expands the inputs as the single-process path does
(``batch.collect_inputs``), Ray Data hands them out in batches to a pool of actors that each hold
one ``Predictor`` and score their batch with ``batch.score_inputs`` (the same decoding, the same
reported problems, tiling and every backend included), and the rows come back here, where they are
written in input order through the same writer and sinks. So the output file is the one the
single-process path writes; only where the forward passes run differs.

Ray is an optional extra (``pip install 'visionml[ray]'``), imported only when ``--engine ray`` runs.
"""

from __future__ import annotations

import io
import logging
import os
from contextlib import contextmanager

import numpy as np
import orjson

from ..errors import VisionMLError
from .batch import Input, score_inputs

INSTALL = "pip install 'visionml[ray]'"


def import_ray():
    """The ``ray`` module with Ray Data, or a VisionMLError naming the install line."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra's ray[data]: pyarrow, pandas)
    except ImportError as exc:
        raise VisionMLError(f"--engine ray needs the optional ray extra: {INSTALL} ({exc})") from None
    return ray


def score_on_ray(model_dir, inputs: list[Input], write, batch_size: int, progress=None, sinks=(), *,
                 options: dict | None = None, address: str | None = None, workers: int | None = None,
                 send_raw: bool = False) -> list[str]:
    """``batch.score_inputs`` on Ray: ``write(obj)`` for each result in input order and each of
    ``sinks`` with ``(input, raw, obj)`` after it; returns the problems (unreadable images), in
    input order. ``options``: each worker's ``Predictor.from_folder`` keywords (``backend``,
    ``overrides``, ``device``, ...). ``address``: a running cluster (None: ``RAY_ADDRESS``, else a Ray started on this
    machine for the run). ``workers``: actors, one predictor each (default: one per CPU of the
    cluster, or per GPU with a cuda ``device``, at most one per batch). ``send_raw``: the sinks need
    the raw arrays (mask files), not only the wire object."""
    ray = import_ray()
    if not inputs:
        return []
    options = dict(options or {})
    with _ray_session(ray, address):
        gpus = _gpus_per_worker(ray, options.get("device", "auto"))
        if gpus:
            options["device"] = "cuda"  # the GPU Ray gives the worker, whatever its number on the node
        workers = _pool_size(ray, workers, gpus, -(-len(inputs) // batch_size))
        scored = _dataset(ray, inputs).map_batches(
            _Scorer, batch_size=batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=0 if gpus else 1, num_gpus=gpus,
            fn_constructor_kwargs={"model_dir": os.path.abspath(model_dir), "options": options,
                                   "batch_size": batch_size, "send_raw": send_raw})
        return _collect(scored, inputs, write, progress, sinks)


@contextmanager
def _ray_session(ray, address: str | None):
    """Connected to ``address`` (or ``RAY_ADDRESS``, else a Ray of this machine) for the block, and
    disconnected afterwards; a caller already connected (``ray.init`` before) keeps its session.
    Ray Data's own progress bars and per-dataset log lines are off meanwhile: the command has its bar."""
    from ray.data import DataContext

    context = DataContext.get_current()
    data_log = logging.getLogger("ray.data")
    bars, level = context.enable_progress_bars, data_log.level
    context.enable_progress_bars = False
    data_log.setLevel(logging.WARNING)
    try:
        if ray.is_initialized():
            yield
            return
        _connect(ray, address)
        try:
            yield
        finally:
            ray.shutdown()
    finally:
        context.enable_progress_bars = bars
        data_log.setLevel(level)


def _connect(ray, address: str | None) -> None:
    given = address or os.environ.get("RAY_ADDRESS")
    options = {"address": address, "logging_level": logging.WARNING, "configure_logging": False}
    if given is None:
        options["include_dashboard"] = False  # only a Ray this run starts takes options of its own
    else:
        _check_reachable(given)
    try:
        ray.init(**options)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise _unreachable(given, exc) from None


def _check_reachable(address: str) -> None:
    """Refuse at once an address where nothing listens: ``ray.init`` would retry it for minutes.
    Checked where Ray will connect (it turns ``127.0.0.1`` into this machine's own address)."""
    import socket

    from ray._private.services import canonicalize_bootstrap_address

    if "://" in address or address in ("auto", "local"):
        return  # Ray Client and Ray's own look-ups: Ray says what is wrong with them
    try:
        host, _, port = (canonicalize_bootstrap_address(address) or address).rpartition(":")
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            return
    except (OSError, ValueError) as exc:
        raise _unreachable(address, exc) from None


def _unreachable(address: str, exc: Exception) -> VisionMLError:
    return VisionMLError(f"--address {address}: cannot connect to a Ray cluster there ({exc}); start one with "
                         f"`ray start --head` and pass the address it prints (HOST:6379), or leave --address "
                         f"out to start Ray on this machine")


def _gpus_per_worker(ray, device: str) -> int:
    """1 when the workers score on a GPU (``cuda``, ``cuda:N``, or ``auto`` on a cluster with GPUs), else 0.
    Ray gives each such worker a GPU of its own (``CUDA_VISIBLE_DEVICES``): inside it, that is ``cuda``."""
    if device.startswith("cuda"):
        return 1
    return 1 if device == "auto" and ray.cluster_resources().get("GPU", 0) >= 1 else 0


def _pool_size(ray, workers: int | None, gpus: int, batches: int) -> int:
    """The actor pool's size: ``workers``, refused when the cluster cannot hold that many (Ray would
    wait for them forever), by default one per CPU (GPU) of the cluster; at most one per batch."""
    resource = "GPU" if gpus else "CPU"
    have = int(ray.cluster_resources().get(resource, 0))
    if workers is not None and workers > have:
        raise VisionMLError(f"--workers {workers}: the Ray cluster has {have} {resource}(s) and each worker "
                            f"takes one; pass --workers {max(have, 1)} or add nodes to the cluster")
    if have < 1:
        raise VisionMLError(f"the Ray cluster has no {resource}: a worker needs one (start the nodes with "
                            f"`ray start --num-cpus N`{' --num-gpus N' if gpus else ''})")
    return max(1, min(workers or have, batches))


def _dataset(ray, inputs: list[Input]):
    """The inputs as a Ray Dataset of ``index, name, location`` rows. A local path is made absolute:
    the workers do not run in this process's folder."""
    rows = [{"index": i, "name": item.name,
             "location": item.location if "://" in item.location else os.path.abspath(item.location)}
            for i, item in enumerate(inputs)]
    return ray.data.from_items(rows)


def _collect(scored, inputs: list[Input], write, progress, sinks) -> list[str]:
    """Write the scored rows in input order (they may arrive out of order: those ahead wait here)."""
    problems: list[str] = []
    waiting: dict[int, tuple] = {}
    next_index = 0
    for batch in scored.iter_batches(batch_size=None, batch_format="numpy"):
        fatal = next((str(m) for m in batch["fatal"] if m), None)
        if fatal:
            raise VisionMLError(fatal)
        waiting.update((int(i), row) for i, *row in zip(batch["index"], batch["line"], batch["problem"],
                                                        batch["raw"]))
        while next_index in waiting:
            line, problem, raw = waiting.pop(next_index)
            if problem:
                problems.append(str(problem))
            else:
                obj = orjson.loads(line)
                write(obj)
                for sink in sinks:
                    sink(inputs[next_index], _unpack_raw(raw), obj)
            if progress is not None:
                progress.update(1)
            next_index += 1
    if next_index != len(inputs):  # a row Ray lost would be an image missing from the output
        raise VisionMLError(f"the Ray cluster returned {next_index} of {len(inputs)} results; run again")
    return problems


class _Scorer:
    """A Ray Data actor: one predictor, and a batch of ``index, name, location`` rows in, one row out
    per input: ``line`` (the wire object as JSON) or ``problem`` (why the image was skipped), and
    ``raw`` (the arrays, for the mask files) when asked. A VisionMLError (a model folder this node
    cannot read, a non-finite output) comes back as ``fatal``, which stops the run with its message."""

    def __init__(self, model_dir, options, batch_size, send_raw):
        from .predictor import Predictor

        self.batch_size, self.send_raw, self.error = batch_size, send_raw, None
        try:
            self.predictor = Predictor.from_folder(model_dir, **options)
        except VisionMLError as exc:
            self.error = f"on Ray node {_node()}: {exc}"

    def __call__(self, batch: dict) -> dict:
        inputs = [Input(str(n), str(loc)) for n, loc in zip(batch["name"], batch["location"])]
        out = {"index": batch["index"], "line": [b""] * len(inputs), "problem": [""] * len(inputs),
               "raw": [b""] * len(inputs), "fatal": [""] * len(inputs)}
        if self.error:
            out["fatal"][0] = self.error
            return out
        scored = []  # (input, raw, obj) in input order; the problems' inputs are left out
        try:
            problems = score_inputs(self.predictor, inputs, lambda obj: None, self.batch_size,
                                    sinks=[lambda item, raw, obj: scored.append((item, raw, obj))])
        except VisionMLError as exc:
            out["fatal"][0] = f"on Ray node {_node()}: {exc}"
            return out
        problems, scored = iter(problems), iter(scored)
        pending = next(scored, None)
        for k, item in enumerate(inputs):
            if pending is not None and pending[0] is item:
                out["line"][k] = orjson.dumps(pending[2])
                out["raw"][k] = _pack_raw(pending[1]) if self.send_raw else b""
                pending = next(scored, None)
            else:
                out["problem"][k] = next(problems)
        return {key: np.asarray(value, dtype=object) if key != "index" else value for key, value in out.items()}


def _node() -> str:
    import socket

    return socket.gethostname()


def _pack_raw(raw) -> bytes:
    """A raw prediction (a dict of arrays) as .npz bytes (no pickle)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{key: np.asarray(value) for key, value in raw.items()})
    return buffer.getvalue()


def _unpack_raw(data: bytes):
    if not data:
        return None
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        return {key: arrays[key] for key in arrays.files}
