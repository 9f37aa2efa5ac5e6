"""The REST endpoint: an Azure AutoML image online endpoint, served by FastAPI around one Predictor.

``create_app(predictor)`` takes a loaded predictor (testable without a process); ``visionml
serve`` wraps it in uvicorn. Model calls never run on the event loop: a request's body is parsed
on the decoder threads (``requests.parse_request``: header-checked, not decoded) and queued to a
worker thread that gathers concurrent requests into one batch (``batching.MicroBatcher``), so
throughput under load approaches offline batch throughput while each client still sends one
image at a time. Requests asking for explanations have their own lane.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

from ..data.images import DEFAULT_MAX_PIXELS
from ..errors import VisionMLError
from ..explain.params import DEFAULT_MAX_STEPS
from ..predict.decode import DecodeError, parse_flag
from ..tasks import get_task
from .batching import (DEFAULT_MAX_BATCH, DEFAULT_MAX_QUEUE, DEFAULT_WINDOW_MS, MAX_EXPLAIN_QUEUE, MicroBatcher,
                       QueueFull, default_max_request_pixels)
from .requests import RequestError, parse_request, read_body

log = logging.getLogger("visionml.serve")

DEFAULT_MAX_BODY_MB = 64
DEFAULT_MAX_EXPLANATIONS = 4  # explanation items per request (XRAI takes ~1.4 s each on 2 cores)


def _json(content, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def _error(status: int, message: str, index: int | None = None, headers: dict | None = None) -> Response:
    response = _json({"error": message, "index": index}, status)
    response.headers.update(headers or {})
    return response


class RequestLog:
    """ASGI middleware: one log line per request with its status, item count and time."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]
        state = scope.setdefault("state", {})

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            log.info("%s %s %d items=%d ms=%.1f", scope["method"], scope["path"], status[0],
                     state.get("items", 0), (time.perf_counter() - start) * 1000)


class _Server:
    """What the routes share: the predictor (possibly still loading), the two lanes (scoring and
    explanations) and the limits."""

    def __init__(self, predictor, loader, api_key, max_body_bytes, max_batch, window_s, max_queue, max_pixels,
                 max_request_pixels, max_explanations, max_xai_steps):
        self.predictor, self.loader = predictor, loader
        self.api_key = api_key
        self.max_body_bytes, self.max_pixels = max_body_bytes, max_pixels
        self.max_request_pixels, self.max_explanations = max_request_pixels, max_explanations
        self.max_xai_steps = max_xai_steps
        self.batcher_args = (max_batch, window_s, max_queue)
        self.batcher: MicroBatcher | None = None
        self.explainer: MicroBatcher | None = None
        self.parse = None
        self.load_error: str | None = None
        # Header reading and decoding have their own few threads: enough to keep the model fed, few
        # enough not to fight it for the cores (and each thread that allocates grows malloc's arenas).
        self.decoder = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="visionml-decode")

    def start(self) -> None:
        if self.predictor is not None:
            self._ready(self.predictor)
        else:
            threading.Thread(target=self._load, name="visionml-load", daemon=True).start()

    def _load(self) -> None:
        try:
            self._ready(self.loader())
        except Exception as exc:  # noqa: BLE001 - reported by /ready, the liveness probe stays up
            log.exception("loading the model failed")
            self.load_error = str(exc)

    def _ready(self, predictor) -> None:
        max_batch, window_s, max_queue = self.batcher_args
        if self.max_request_pixels is None:
            self.max_request_pixels = default_max_request_pixels(getattr(predictor, "task", None))
        log.info("at most %s decoded pixels per request, %d explanation items per request",
                 f"{self.max_request_pixels:,}", self.max_explanations)
        # Only classifiers explain (detectors answer such items with scores): they get a second lane.
        explains = get_task(predictor.task).explainable
        self.parse = functools.partial(
            parse_request, max_pixels=self.max_pixels, size_problem=getattr(predictor, "size_problem", None),
            max_request_pixels=self.max_request_pixels, max_explanations=self.max_explanations if explains else None,
            max_steps=self.max_xai_steps)
        if explains:
            self.explainer = MicroBatcher(predictor, max(1, self.max_explanations), 0.0,
                                          min(max_queue, MAX_EXPLAIN_QUEUE), self.max_request_pixels,
                                          self.decoder, name="visionml-explain")
            self.explainer.start()
        batcher = MicroBatcher(predictor, max_batch, window_s, max_queue, self.max_request_pixels, self.decoder)
        batcher.start()
        self.predictor = predictor
        self.batcher = batcher

    def stop(self) -> None:
        for lane in (self.batcher, self.explainer):
            if lane is not None:
                lane.stop()
        self.decoder.shutdown(wait=False, cancel_futures=True)

    def authorized(self, request: Request) -> bool:
        if not self.api_key:
            return True
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.api_key.encode())

    async def score(self, request: Request) -> Response:
        if not self.authorized(request):
            return _error(401, "missing or wrong API key: send the header 'Authorization: Bearer KEY'",
                          headers={"WWW-Authenticate": "Bearer"})
        if self.batcher is None:
            return _error(503, "the model is still loading; retry when GET /ready answers 200",
                          headers={"Retry-After": "1"})
        featurize = self._featurize(request)
        body = await read_body(request, self.max_body_bytes)
        job = await asyncio.get_running_loop().run_in_executor(
            self.decoder, functools.partial(self.parse, body, content_type=request.headers.get("content-type"),
                                            featurize=featurize))
        request.state.items = len(job.images)
        lane = self.explainer if job.explains and self.explainer is not None else self.batcher
        try:
            future = lane.submit(job)
        except QueueFull:
            what = "explanation" if lane is self.explainer else "request"
            return _error(503, f"the server is busy ({what} queue full); retry shortly", headers={"Retry-After": "1"})
        try:
            outputs = await asyncio.wrap_future(future)
        except RequestError as exc:
            if job.single:  # a one-image body has no item list for the index to point into
                exc.index = None
            raise
        return _json(outputs[0] if job.single else outputs)

    def _featurize(self, request: Request) -> bool:
        """``?featurize=true``: answer feature vectors; 400 when the value or the model does not allow it."""
        value = request.query_params.get("featurize")
        if value is None:
            return False
        try:
            wanted = parse_flag(value, "featurize")
        except DecodeError as exc:
            raise RequestError(400, str(exc)) from None
        if wanted:
            try:
                self.predictor.check_featurize()
            except VisionMLError as exc:
                raise RequestError(400, str(exc)) from None
        return wanted


def create_app(predictor=None, *, loader=None, api_key: str | None = None,
               max_body_mb: float = DEFAULT_MAX_BODY_MB, max_batch: int = DEFAULT_MAX_BATCH,
               batch_window_ms: float = DEFAULT_WINDOW_MS, max_queue: int = DEFAULT_MAX_QUEUE,
               max_pixels: int | None = DEFAULT_MAX_PIXELS, max_request_pixels: int | None = None,
               max_explanations_per_request: int = DEFAULT_MAX_EXPLANATIONS,
               max_xai_steps: int | None = DEFAULT_MAX_STEPS) -> FastAPI:
    """The FastAPI app serving ``predictor`` (or the one ``loader()`` returns, loaded in the
    background after start-up so that liveness answers at once and /ready says when to send).

    ``max_pixels`` caps each image, ``max_request_pixels`` (default: ``default_max_request_pixels(task)``,
    sized to the machine's memory) the decoded pixels of a request and of a batch, and
    ``max_explanations_per_request`` the items of a request with ``model_explainability`` and
    ``max_xai_steps`` their ``xai_parameters.n_steps`` (None: no cap)."""
    if (predictor is None) == (loader is None):
        raise ValueError("pass exactly one of predictor and loader")
    server = _Server(predictor, loader, api_key, int(max_body_mb * 2**20), max_batch,
                     batch_window_ms / 1000, max_queue, max_pixels, max_request_pixels,
                     int(max_explanations_per_request), max_xai_steps)

    async def lifespan(app):
        server.start()
        yield
        server.stop()

    app = FastAPI(title="visionml scoring endpoint", version="1",
                  description="An Azure AutoML for Images online endpoint: POST /score.", lifespan=lifespan)
    app.state.server = server
    app.state.openapi_final = False
    app.add_middleware(RequestLog)
    _routes(app, server)
    app.openapi = functools.partial(_openapi, app, server)
    return app


def _openapi(app: FastAPI, server: _Server) -> dict:
    """FastAPI's description of the routes with ``POST /score``'s body, parameter and answers from
    ``openapi.py``: the served model's answer once it is loaded, every task's until then."""
    from fastapi.openapi.utils import get_openapi

    from .openapi import FEATURIZE_PARAMETER, request_body, responses

    loaded = server.predictor is not None
    if app.openapi_schema is None or (loaded and not app.state.openapi_final):
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        post = schema["paths"]["/score"]["post"]
        # ?featurize only where the model gives features (a detector answers it with a 400).
        post.update(requestBody=request_body(server.max_xai_steps),
                    parameters=[FEATURIZE_PARAMETER] if not loaded or _featurizes(server.predictor) else [],
                    responses=responses(server.predictor.task if loaded else None))
        app.openapi_schema, app.state.openapi_final = schema, loaded
    return app.openapi_schema


def _featurizes(predictor) -> bool:
    try:
        predictor.check_featurize()
    except VisionMLError:
        return False
    return True


def _routes(app: FastAPI, server: _Server) -> None:
    from ..ui import add_score_page

    add_score_page(app, server)  # GET /ui: a page that posts to /score like any client

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError):
        return _error(exc.status, exc.message, exc.index)

    @app.get("/", response_class=PlainTextResponse, summary="Liveness")
    async def healthy():
        return "Healthy"

    @app.get("/ready", response_class=PlainTextResponse, summary="Readiness: 200 once the model is loaded",
             responses={503: {"description": "still loading, or loading failed"}})
    async def ready():
        if server.batcher is not None:
            return "Ready"
        message = f"Loading failed: {server.load_error}" if server.load_error else "Loading"
        return PlainTextResponse(message, status_code=503)

    @app.post("/score", summary="Score images (Azure AutoML image endpoint formats)")  # body: _openapi
    async def score(request: Request):
        try:
            return await server.score(request)
        except RequestError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug answers 500 and is logged; the server lives on
            log.exception("error while scoring")
            return _error(500, f"internal error ({type(exc).__name__}); the server's log has the details")
