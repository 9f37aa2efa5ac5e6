"""``visionml serve``: an Azure AutoML image online endpoint on your own machine."""

from __future__ import annotations

import argparse

from ._args import add_backend, add_device, add_inference_speed, int_at_least, load_predictor

API_KEY_ENV = "VISIONML_API_KEY"
# --workers: what each worker process loads, handed over in its environment (uvicorn starts them).
_WORKER_ENV = "VISIONML_SERVE_WORKER"


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve", help="serve a model folder as an Azure AutoML-compatible REST endpoint",
        description="Serve a model over HTTP like an Azure AutoML image online endpoint: GET / "
        "(liveness), GET /ready, POST /score with {\"input_data\": {\"columns\": [\"image\"], "
        "\"data\": [BASE64, ...]}}. OpenAPI at /openapi.json.")
    parser.add_argument("--model", required=True, metavar="MODEL_DIR", help="a model folder (RUN/model)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 exposes it to the network)")
    parser.add_argument("--port", type=int, default=5001, help="port (default 5001)")
    parser.add_argument("--api-key", default=None,
                        help=f"require 'Authorization: Bearer KEY' on /score (default: ${API_KEY_ENV} if set; prefer the "
                        f"variable on shared machines: a command-line key shows in ps)")
    add_backend(parser)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change an inference setting, e.g. --set box_score_threshold=0.5 (repeatable)")
    add_device(parser)
    add_inference_speed(parser)
    parser.add_argument("--workers", type=int_at_least(1), default=1, metavar="N",
                        help="model processes answering on the port (default 1), each with its own copy of the "
                        "model and --threads threads (default: this machine's threads shared out among them); "
                        "several one-thread processes answered 1.3-1.7x the images/s of one process with the same "
                        "threads on a busy 2-core machine (docs/scoring.md)")
    parser.add_argument("--max-body-mb", type=float, default=None, metavar="N",
                        help="refuse request bodies over N MB with 413 (default 64)")
    parser.add_argument("--max-batch", type=int, default=None, metavar="N",
                        help="most images the model runs at once when requests arrive together (default 16)")
    parser.add_argument("--max-queue", type=int, default=None, metavar="N",
                        help="requests allowed to wait for the model; more get 503 (default 256)")
    parser.add_argument("--max-request-pixels", type=int, default=None, metavar="N",
                        help="refuse a request whose images add up to more than N decoded pixels with 413, "
                        "before decoding them; also the most pixels one batch decodes (default: an eighth "
                        "of this machine's memory at 16 bytes per pixel for classifiers, 48 for detectors; "
                        "the server logs the value)")
    parser.add_argument("--max-explanations-per-request", type=int, default=None, metavar="N",
                        help="refuse a request with more than N items asking for model_explainability with "
                        "413 (default 4; each XRAI item takes seconds: docs/explainability.md)")
    parser.add_argument("--max-xai-steps", type=int, default=None, metavar="N",
                        help="refuse xai_parameters.n_steps above N with 400 (default 1000; integrated "
                        "gradients run 5 passes per step: docs/explainability.md)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    import logging
    import os

    import uvicorn

    from ..errors import UsageError
    from ..serve import create_app

    limits = {"max_body_mb": args.max_body_mb, "max_batch": args.max_batch, "max_queue": args.max_queue,
              "max_request_pixels": args.max_request_pixels,
              "max_explanations_per_request": args.max_explanations_per_request, "max_xai_steps": args.max_xai_steps}
    for name, value in limits.items():
        if value is not None and value <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {value}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    if args.workers > 1:
        return _serve_workers(args, limits, api_key)
    predictor = load_predictor(args, logging.getLogger("visionml.serve").warning)
    app = create_app(predictor, api_key=api_key, **{k: v for k, v in limits.items() if v is not None})
    logging.getLogger("visionml.serve").info(
        "%s model %s (%d labels, %s backend, %s) on http://%s:%d  POST /score%s", predictor.task,
        predictor.manifest.get("model_name"), len(predictor.labels), args.backend, _speed(predictor),
        args.host, args.port, " (API key required)" if api_key else "")
    # Our middleware logs each request once (status, items, ms): uvicorn's access log would repeat it.
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="info")
    return 0


def _speed(predictor) -> str:
    """The precision and thread count the model runs with, for the start-up line."""
    import torch

    precision = getattr(predictor.backend, "precision", None)
    session = getattr(predictor.backend, "session", None)
    threads = session.get_session_options().intra_op_num_threads if session is not None else torch.get_num_threads()
    return f"{precision.name + ', ' if precision is not None else ''}{threads} thread(s)"


def _serve_workers(args, limits: dict, api_key: str | None) -> int:
    """``--workers N``: uvicorn's supervisor starts N processes on one socket, each loading the model
    through ``worker_app`` with ``--threads`` threads (default: ``default_threads()`` shared out)."""
    import json
    import logging
    import os

    import uvicorn

    from ..predict.threads import default_threads

    threads = args.threads or max(1, default_threads() // args.workers)
    spec = {"model": args.model, "backend": args.backend, "device": args.device, "overrides": args.overrides,
            "threads": threads, "precision": args.precision,
            "limits": {k: v for k, v in limits.items() if v is not None}}
    os.environ[_WORKER_ENV] = json.dumps(spec)
    if api_key:
        os.environ[API_KEY_ENV] = api_key  # the workers read it as `serve` does; never on a command line
    logging.getLogger("visionml.serve").info("model %s: %d worker processes of %d thread(s) on http://%s:%d  POST /score%s",
                                             args.model, args.workers, threads, args.host, args.port,
                                             " (API key required)" if api_key else "")
    uvicorn.run("visionml.commands.serve:worker_app", factory=True, workers=args.workers, host=args.host,
                port=args.port, access_log=False, log_level="info")
    return 0


def worker_app():
    """The app of one ``--workers`` process (uvicorn imports and calls this in each)."""
    import argparse
    import json
    import logging
    import os

    from ..serve import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = json.loads(os.environ[_WORKER_ENV])
    limits = spec.pop("limits")
    args = argparse.Namespace(command="serve", **spec)
    predictor = load_predictor(args, logging.getLogger("visionml.serve").warning)
    return create_app(predictor, api_key=os.environ.get(API_KEY_ENV) or None, **limits)
