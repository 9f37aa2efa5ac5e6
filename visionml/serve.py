"""The REST endpoint: an Azure AutoML image online endpoint, served by FastAPI around one Predictor.

``create_app(predictor)`` takes a loaded predictor (testable without a process); ``visionml
serve`` wraps it in uvicorn. Model calls never run on the event loop: requests are queued to a
single worker thread that gathers concurrent requests into one batch (``MicroBatcher``), so
throughput under load approaches offline batch throughput while each client still sends one
image at a time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import ctypes.util
import hmac
import logging
import queue
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

from .data.images import DEFAULT_MAX_PIXELS
from .decode import DecodeError, decode_image, parse_score_item
from .errors import VisionMLError

log = logging.getLogger("visionml.serve")

DEFAULT_MAX_BODY_MB = 64
DEFAULT_MAX_BATCH = 16
DEFAULT_WINDOW_MS = 5.0
DEFAULT_MAX_QUEUE = 256  # requests waiting for the model; beyond it new ones get 503
IDLE_TRIM_S = 1.0  # after this long without requests, freed memory goes back to the OS


class RequestError(Exception):
    """A request the server refuses; ``index`` names the bad item of ``input_data.data``."""

    def __init__(self, status: int, message: str, index: int | None = None):
        super().__init__(message)
        self.status, self.message, self.index = status, message, index


class QueueFull(Exception):
    pass


@dataclass
class Job:
    """One request's decoded images, waiting for the model."""

    images: list
    names: list[str]
    xai: list
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


class MicroBatcher:
    """A single worker thread running the model. A job is a request's images; the worker takes
    the oldest job, waits at most ``window_s`` for more (or takes whatever queued up while the
    model was busy), runs them as one batch of at most ``max_batch`` images, and resolves each
    job's future with its own wire objects."""

    _STOP = object()

    def __init__(self, predictor, max_batch: int = DEFAULT_MAX_BATCH, window_s: float = DEFAULT_WINDOW_MS / 1000,
                 max_queue: int = DEFAULT_MAX_QUEUE):
        self.predictor = predictor
        self.max_batch = max(1, int(max_batch))
        self.window_s = window_s
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(max_queue)))
        self._thread = threading.Thread(target=self._loop, name="visionml-model", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(self._STOP)
            self._thread.join(timeout=30)

    def submit(self, job: Job) -> concurrent.futures.Future:
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull from None
        return job.future

    def _loop(self) -> None:
        worked = False
        while True:
            try:
                job = self._queue.get(timeout=IDLE_TRIM_S if worked else None)
            except queue.Empty:
                release_free_memory()
                worked = False
                continue
            if job is self._STOP:
                return
            batch, stop = self._gather(job)
            self._run(batch)
            worked = True
            if stop:
                return

    def _gather(self, first: Job) -> tuple[list[Job], bool]:
        batch, count = [first], len(first.images)
        deadline = time.monotonic() + self.window_s
        while count < self.max_batch:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is self._STOP:
                return batch, True
            batch.append(job)
            count += len(job.images)
        return batch, False

    def _run(self, batch: list[Job]) -> None:
        jobs = [job for job in batch if job.future.set_running_or_notify_cancel()]
        images = [image for job in jobs for image in job.images]
        try:
            raws = self.predictor.raw_predict(images, batch_size=self.max_batch)
        except Exception as exc:  # noqa: BLE001 - the failure goes to the waiting requests, the thread lives
            log.exception("model failed on a batch of %d image(s)", len(images))
            for job in jobs:
                job.future.set_exception(exc)
            return
        offset = 0
        for job in jobs:
            part = raws[offset:offset + len(job.images)]
            offset += len(job.images)
            try:
                job.future.set_result(self._outputs(job, part))
            except Exception as exc:  # noqa: BLE001 - e.g. bad xai_parameters: this request only
                job.future.set_exception(exc)

    def _outputs(self, job: Job, raws: list) -> list[dict]:
        outputs = []
        for index, (raw, image, name, xai) in enumerate(zip(raws, job.images, job.names, job.xai)):
            try:
                outputs.append(self.predictor.to_output(raw, image, name, xai))
            except VisionMLError as exc:
                raise RequestError(400, str(exc), index) from exc
        return outputs


def release_free_memory() -> None:
    """Return freed heap pages to the OS (glibc's malloc_trim). Batches of varying size leave
    glibc holding freed activation memory, which reads as a slowly growing RSS; trimming when
    idle keeps a long-running server's footprint flat without slowing it under load."""
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC = None


# -- request parsing (pure, runs in the thread pool) ---------------------------------------------

def parse_request(body: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Job:
    """The body of ``POST /score`` as decoded images; ``RequestError(400)`` naming the problem."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, f"the body is not valid JSON ({exc})") from None
    data = _data_list(payload)
    images, names, xai = [], [], []
    for index, entry in enumerate(data):
        try:
            item = parse_score_item(entry)
            images.append(decode_image(item.image, max_pixels))
        except DecodeError as exc:
            raise RequestError(400, str(exc), index) from None
        names.append(f"image_{index}")
        xai.append(item.xai_parameters if item.model_explainability else None)
    return Job(images=images, names=names, xai=xai)


_SHAPE = 'the body must be {"input_data": {"columns": ["image"], "data": [BASE64_IMAGE, ...]}}'


def _data_list(payload) -> list:
    if not isinstance(payload, dict) or "input_data" not in payload:
        raise RequestError(400, f"'input_data' is missing: {_SHAPE}")
    input_data = payload["input_data"]
    if not isinstance(input_data, dict):
        raise RequestError(400, f"'input_data' must be an object: {_SHAPE}")
    if input_data.get("columns") != ["image"]:
        raise RequestError(400, f"'columns' must be [\"image\"], got {input_data.get('columns')!r}: {_SHAPE}")
    data = input_data.get("data")
    if not isinstance(data, list):
        raise RequestError(400, f"'data' must be a list of base64 images, got {type(data).__name__}")
    if not data:
        raise RequestError(400, "'data' is empty: send at least one image")
    return data


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``max_bytes``: from
    Content-Length before reading anything, else while streaming (chunked uploads)."""
    declared = request.headers.get("content-length")
    too_big = RequestError(413, f"the body is over the limit of {max_bytes / 2**20:g} MB; send fewer "
                                f"or smaller images per request (the server's --max-body-mb)")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


# -- the app -------------------------------------------------------------------------------------

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
    """What the routes share: the predictor (possibly still loading), the batcher and the limits."""

    def __init__(self, predictor, loader, api_key, max_body_bytes, max_batch, window_s, max_queue, max_pixels):
        self.predictor, self.loader = predictor, loader
        self.api_key = api_key
        self.max_body_bytes, self.max_pixels = max_body_bytes, max_pixels
        self.batcher_args = (max_batch, window_s, max_queue)
        self.batcher: MicroBatcher | None = None
        self.load_error: str | None = None
        # Decoding has its own few threads: enough to keep the model fed, few enough not to fight
        # it for the cores (and each thread that allocates grows malloc's per-thread arenas).
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
        self.batcher = MicroBatcher(predictor, *self.batcher_args)
        self.batcher.start()
        self.predictor = predictor

    def stop(self) -> None:
        if self.batcher is not None:
            self.batcher.stop()
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
        body = await read_body(request, self.max_body_bytes)
        job = await asyncio.get_running_loop().run_in_executor(self.decoder, parse_request, body, self.max_pixels)
        request.state.items = len(job.images)
        try:
            future = self.batcher.submit(job)
        except QueueFull:
            return _error(503, "the server is busy (request queue full); retry shortly", headers={"Retry-After": "1"})
        return _json(await asyncio.wrap_future(future))


_REQUEST_SCHEMA = {
    "type": "object",
    "required": ["input_data"],
    "properties": {"input_data": {
        "type": "object",
        "required": ["columns", "data"],
        "properties": {
            "columns": {"type": "array", "items": {"type": "string", "enum": ["image"]}},
            "data": {"type": "array", "minItems": 1, "items": {"type": "string", "description":
                     "a base64 image, or a JSON string {image_base64, model_explainability, xai_parameters}"}},
        },
    }},
}
_ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "string"},
                                                  "index": {"type": ["integer", "null"]}}}


def create_app(predictor=None, *, loader=None, api_key: str | None = None,
               max_body_mb: float = DEFAULT_MAX_BODY_MB, max_batch: int = DEFAULT_MAX_BATCH,
               batch_window_ms: float = DEFAULT_WINDOW_MS, max_queue: int = DEFAULT_MAX_QUEUE,
               max_pixels: int | None = DEFAULT_MAX_PIXELS) -> FastAPI:
    """The FastAPI app serving ``predictor`` (or the one ``loader()`` returns, loaded in the
    background after start-up so that liveness answers at once and /ready says when to send)."""
    if (predictor is None) == (loader is None):
        raise ValueError("pass exactly one of predictor and loader")
    server = _Server(predictor, loader, api_key, int(max_body_mb * 2**20), max_batch,
                     batch_window_ms / 1000, max_queue, max_pixels)

    async def lifespan(app):
        server.start()
        yield
        server.stop()

    app = FastAPI(title="visionml scoring endpoint", version="1",
                  description="An Azure AutoML for Images online endpoint: POST /score.", lifespan=lifespan)
    app.state.server = server
    app.add_middleware(RequestLog)
    _routes(app, server)
    return app


def _routes(app: FastAPI, server: _Server) -> None:
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

    @app.post("/score", summary="Score images (Azure AutoML image endpoint format)",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": _REQUEST_SCHEMA}}}},
              responses={200: {"description": "one output object per item, in order"},
                         **{code: {"description": why, "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
                            for code, why in ((400, "bad request; index names the bad item"),
                                              (401, "missing or wrong API key"), (413, "body too large"),
                                              (503, "loading, or the queue is full"))}})
    async def score(request: Request):
        try:
            return await server.score(request)
        except RequestError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug answers 500 and is logged; the server lives on
            log.exception("error while scoring")
            return _error(500, f"internal error: {type(exc).__name__}: {exc}")
