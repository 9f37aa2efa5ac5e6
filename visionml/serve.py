"""The REST endpoint: an Azure AutoML image online endpoint, served by FastAPI around one Predictor.

``create_app(predictor)`` takes a loaded predictor (testable without a process); ``visionml
serve`` wraps it in uvicorn. Model calls never run on the event loop: requests are queued to a
worker thread that gathers concurrent requests into one batch (``MicroBatcher``), so throughput
under load approaches offline batch throughput while each client still sends one image at a time.

One client's image never costs another its answer. A request is checked from the image headers
alone (per-image and per-request pixel caps, whether the model can take each image's shape)
before any pixel is decoded; pixels are decoded when the batch runs, so a queue of requests holds
compressed bytes only; an item the model fails on inside a batch is found by scoring the rest
without it. Requests asking for explanations (seconds per item) have their own worker thread and
queue, so plain scoring is never held up behind them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import ctypes.util
import functools
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
from .decode import DecodeError, parse_score_item, read_header
from .errors import VisionMLError
from .tasks import get_task

log = logging.getLogger("visionml.serve")

DEFAULT_MAX_BODY_MB = 64
DEFAULT_MAX_BATCH = 16
DEFAULT_WINDOW_MS = 5.0
DEFAULT_MAX_QUEUE = 256  # requests waiting for the model; beyond it new ones get 503
DEFAULT_MAX_EXPLANATIONS = 4  # explanation items per request (XRAI takes ~1.4 s each on 2 cores)
MAX_EXPLAIN_QUEUE = 16  # explanation requests waiting; more get 503 rather than minutes of waiting
IDLE_TRIM_S = 1.0  # after this long without requests, freed memory goes back to the OS
# The default cap on decoded pixels per request (and per batch the model runs) lets a batch's
# pixels use at most MEMORY_FRACTION of the machine's memory. Peak bytes per decoded pixel, measured
# with Predictor.raw_predict on a 36-megapixel JPEG: a classifier 11 (the RGB image and its uint8
# tensor, resized before anything else), a detector 44 (the RGB image, its float32 tensor and the
# detector's normalised copy, all at full size); rounded up.
BYTES_PER_PIXEL = {"classifier": 16, "detector": 48, "segmenter": 48}  # by Task.model_kind
MEMORY_FRACTION = 1 / 8
MIN_REQUEST_PIXELS = 4096 * 4096  # even a small container takes one 16-megapixel photo


class RequestError(Exception):
    """A request the server refuses; ``index`` names the bad item of ``input_data.data``."""

    def __init__(self, status: int, message: str, index: int | None = None):
        super().__init__(message)
        self.status, self.message, self.index = status, message, index


class QueueFull(Exception):
    pass


@dataclass
class Job:
    """One request's images, header-checked but not decoded, waiting for the model."""

    images: list  # decode.EncodedImage: compressed bytes and the size from the header
    names: list[str]
    xai: list
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    decoded: list | None = None  # the RGB images, only while its batch runs

    @property
    def pixels(self) -> int:
        return sum(image.pixels for image in self.images)

    @property
    def explains(self) -> bool:
        return any(x is not None for x in self.xai)


class MicroBatcher:
    """A worker thread running the model. A job is a request's images; the worker takes the
    oldest job and, for at most ``window_s``, more (or whatever queued up while the model was
    busy) while the batch has fewer than ``max_batch`` images and the next job keeps it within
    ``max_pixels`` (else that job starts the next batch). It decodes them (on ``decoder``'s
    threads when given), runs them through the model together, and resolves each job's future
    with its own wire objects."""

    _STOP = object()

    def __init__(self, predictor, max_batch: int = DEFAULT_MAX_BATCH, window_s: float = DEFAULT_WINDOW_MS / 1000,
                 max_queue: int = DEFAULT_MAX_QUEUE, max_pixels: int | None = None, decoder=None,
                 name: str = "visionml-model"):
        self.predictor = predictor
        self.max_batch = max(1, int(max_batch))
        self.window_s = window_s
        self.max_pixels = max_pixels
        self.decoder = decoder
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(max_queue)))
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

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
        worked, carry = False, None
        while True:
            if carry is not None:
                job, carry = carry, None
            else:
                try:
                    job = self._queue.get(timeout=IDLE_TRIM_S if worked else None)
                except queue.Empty:
                    release_free_memory()
                    worked = False
                    continue
            if job is self._STOP:
                return
            batch, carry = self._gather(job)
            self._run(batch)
            worked = True

    def _gather(self, first: Job) -> tuple[list[Job], object]:
        """The batch starting with ``first``, and the job (or stop) taken from the queue that did
        not fit in it, to start the next one."""
        batch, count, pixels = [first], len(first.images), first.pixels
        deadline = time.monotonic() + self.window_s
        while count < self.max_batch:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is self._STOP or (self.max_pixels and pixels + job.pixels > self.max_pixels):
                return batch, job
            batch.append(job)
            count += len(job.images)
            pixels += job.pixels
        return batch, None

    def _run(self, batch: list[Job]) -> None:
        jobs = [job for job in batch if job.future.set_running_or_notify_cancel()]
        try:
            decoded = self._decode(jobs)
            if decoded:
                self._score(decoded)
        except Exception as exc:  # noqa: BLE001 - a bug: these requests get 500, the thread lives
            log.exception("error while running a batch of %d request(s)", len(jobs))
            for job in jobs:
                job.decoded = None
                if not job.future.done():
                    job.future.set_exception(exc)

    def _decode(self, jobs: list[Job]) -> list[Job]:
        """Decode every image of ``jobs``; a job with an image that does not decode (cut short, say)
        gets its 400 here, and the jobs whose images all decoded are returned."""
        images = [image for job in jobs for image in job.images]
        if self.decoder is not None and len(images) > 1:
            results = iter(self.decoder.map(_decode_one, images))
        else:
            results = map(_decode_one, images)
        ready = []
        for job in jobs:
            pairs = [next(results) for _ in job.images]
            bad = next((index for index, (_, error) in enumerate(pairs) if error is not None), None)
            if bad is None:
                job.decoded = [pil for pil, _ in pairs]
                ready.append(job)
            else:
                job.future.set_exception(RequestError(400, pairs[bad][1], bad))
        return ready

    def _score(self, jobs: list[Job]) -> None:
        images = [pil for job in jobs for pil in job.decoded]
        try:
            raws = self.predictor.raw_predict(images, batch_size=self.max_batch)
        except Exception as exc:  # noqa: BLE001 - the thread lives; find whose image it was
            if len(jobs) > 1:
                log.warning("model failed on a batch of %d requests (%s: %s); scoring each alone",
                            len(jobs), type(exc).__name__, exc)
                for job in jobs:
                    self._score([job])
            else:
                self._score_alone(jobs[0], exc)
            return
        offset = 0
        for job in jobs:
            self._finish(job, raws[offset:offset + len(job.images)])
            offset += len(job.images)

    def _score_alone(self, job: Job, exc: Exception) -> None:
        """A request the model failed on: one image at a time, so the answer names the item it
        fails on (500: nothing says the image is at fault), or is complete if none fails alone."""
        index = 0
        if len(job.decoded) > 1:
            raws = []
            for index, pil in enumerate(job.decoded):
                try:
                    raws.extend(self.predictor.raw_predict([pil], batch_size=1))
                except Exception as item_exc:  # noqa: BLE001 - this request only
                    exc = item_exc
                    break
            else:
                self._finish(job, raws)  # no image fails alone: it was the batch that failed
                return
        log.error("model failed on item %d of a request", index, exc_info=exc)
        job.decoded = None
        job.future.set_exception(RequestError(500, f"the model failed on this image: {type(exc).__name__}: {exc}",
                                              index))

    def _finish(self, job: Job, raws: list) -> None:
        try:
            job.future.set_result(self._outputs(job, raws))
        except Exception as exc:  # noqa: BLE001 - e.g. bad xai_parameters: this request only
            job.future.set_exception(exc)
        finally:
            job.decoded = None  # the pixels go now, not when the response has been sent

    def _outputs(self, job: Job, raws: list) -> list[dict]:
        outputs = []
        for index, (raw, image, name, xai) in enumerate(zip(raws, job.decoded, job.names, job.xai)):
            try:
                outputs.append(self.predictor.to_output(raw, image, name, xai))
            except VisionMLError as exc:
                raise RequestError(400, str(exc), index) from exc
        return outputs


def _decode_one(image) -> tuple:
    """``(pil, None)`` or ``(None, message)``; the header (and its pixel limit) was checked already."""
    try:
        return image.decode(None), None
    except DecodeError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - e.g. a plugin's own error on malformed data: this item only
        return None, f"not a readable image ({type(exc).__name__})"


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


def default_max_request_pixels(task=None) -> int:
    """The default ``max_request_pixels`` for a model of ``task``: a batch's decoded pixels use at
    most ``MEMORY_FRACTION`` of the memory this process may use (the machine's, or its container's
    limit), at the ``BYTES_PER_PIXEL`` of the task's models (the most when the task is not known)."""
    per_pixel = BYTES_PER_PIXEL[get_task(task).model_kind] if task else max(BYTES_PER_PIXEL.values())
    return max(MIN_REQUEST_PIXELS, int(machine_memory_bytes() * MEMORY_FRACTION) // per_pixel)


def machine_memory_bytes() -> int:
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system that reports it
        memory = 8 * 2**30
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(limit) as fp:
                text = fp.read().strip()
        except OSError:
            continue
        if text.isdigit():
            memory = min(memory, int(text))
    return memory


# -- request parsing (pure, runs in the thread pool) ---------------------------------------------

def parse_request(body: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS, *, size_problem=None,
                  max_request_pixels: int | None = None, max_explanations: int | None = None) -> Job:
    """The body of ``POST /score`` as header-checked images, none decoded: ``RequestError(400)``
    naming the bad item (not base64, not an image, over ``max_pixels``, or a shape the model
    cannot take per ``size_problem(width, height)``), ``RequestError(413)`` when the images'
    pixels add up to more than ``max_request_pixels`` or more than ``max_explanations`` items ask
    for an explanation."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, f"the body is not valid JSON ({exc})") from None
    data = _data_list(payload)
    images, names, xai = [], [], []
    pixels = explanations = 0
    for index, entry in enumerate(data):
        try:
            item = parse_score_item(entry)
            explanations += bool(item.model_explainability)
            if max_explanations is not None and explanations > max_explanations:
                raise RequestError(413, f"item {index} is explanation number {explanations}: this server explains "
                                        f"at most {max_explanations} items per request (--max-explanations-per-"
                                        f"request); send the rest in further requests", index)
            image = read_header(item.image, max_pixels)
        except DecodeError as exc:
            raise RequestError(400, str(exc), index) from None
        problem = size_problem(image.width, image.height) if size_problem is not None else None
        if problem:
            raise RequestError(400, problem, index)
        pixels += image.pixels
        if max_request_pixels and pixels > max_request_pixels:
            raise RequestError(413, f"the images up to item {index} have {pixels:,} pixels, over this server's "
                                    f"limit of {max_request_pixels:,} decoded pixels per request "
                                    f"(--max-request-pixels); send fewer or smaller images per request", index)
        images.append(image)
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
    """What the routes share: the predictor (possibly still loading), the two lanes (scoring and
    explanations) and the limits."""

    def __init__(self, predictor, loader, api_key, max_body_bytes, max_batch, window_s, max_queue, max_pixels,
                 max_request_pixels, max_explanations):
        self.predictor, self.loader = predictor, loader
        self.api_key = api_key
        self.max_body_bytes, self.max_pixels = max_body_bytes, max_pixels
        self.max_request_pixels, self.max_explanations = max_request_pixels, max_explanations
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
            max_request_pixels=self.max_request_pixels, max_explanations=self.max_explanations if explains else None)
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
        body = await read_body(request, self.max_body_bytes)
        job = await asyncio.get_running_loop().run_in_executor(self.decoder, self.parse, body)
        request.state.items = len(job.images)
        lane = self.explainer if job.explains and self.explainer is not None else self.batcher
        try:
            future = lane.submit(job)
        except QueueFull:
            what = "explanation" if lane is self.explainer else "request"
            return _error(503, f"the server is busy ({what} queue full); retry shortly", headers={"Retry-After": "1"})
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
               max_pixels: int | None = DEFAULT_MAX_PIXELS, max_request_pixels: int | None = None,
               max_explanations_per_request: int = DEFAULT_MAX_EXPLANATIONS) -> FastAPI:
    """The FastAPI app serving ``predictor`` (or the one ``loader()`` returns, loaded in the
    background after start-up so that liveness answers at once and /ready says when to send).

    ``max_pixels`` caps each image, ``max_request_pixels`` (default: ``default_max_request_pixels(task)``,
    sized to the machine's memory) the decoded pixels of a request and of a batch, and
    ``max_explanations_per_request`` the items of a request with ``model_explainability``."""
    if (predictor is None) == (loader is None):
        raise ValueError("pass exactly one of predictor and loader")
    server = _Server(predictor, loader, api_key, int(max_body_mb * 2**20), max_batch,
                     batch_window_ms / 1000, max_queue, max_pixels, max_request_pixels,
                     int(max_explanations_per_request))

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
                                              (401, "missing or wrong API key"),
                                              (413, "body, pixels or explanation items over the server's limits"),
                                              (503, "loading, or the queue is full"))}})
    async def score(request: Request):
        try:
            return await server.score(request)
        except RequestError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug answers 500 and is logged; the server lives on
            log.exception("error while scoring")
            return _error(500, f"internal error: {type(exc).__name__}: {exc}")
