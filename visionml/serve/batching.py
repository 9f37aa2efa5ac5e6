"""The model's worker threads: requests gathered into batches, decoded when their batch runs,
scored together; and the memory they may use.

``MicroBatcher`` is one lane (a queue and a thread). The server runs two: plain scoring, and
explanations (seconds per item), so that scoring is never held up behind an explanation. An item
the model fails on inside a batch is found by scoring the rest without it, so one client's image
never costs another its answer.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import ctypes.util
import logging
import os
import queue
import threading
import time

from ..errors import VisionMLError
from ..predict.decode import DecodeError
from ..tasks import get_task
from .requests import Job, RequestError

log = logging.getLogger("visionml.serve")

DEFAULT_MAX_BATCH = 16
DEFAULT_WINDOW_MS = 5.0
DEFAULT_MAX_QUEUE = 256  # requests waiting for the model; beyond it new ones get 503
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


class QueueFull(Exception):
    pass


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
        """Score the batch's jobs together: those asking for scores, and those asking for feature
        vectors (``?featurize=true``), each group in one run of the model."""
        for featurize in (False, True):
            group = [job for job in jobs if job.featurize == featurize]
            if group:
                self._score_group(group)

    def _infer(self, job: Job, images: list, batch_size: int) -> list:
        run = self.predictor.features if job.featurize else self.predictor.raw_predict
        return run(images, batch_size=batch_size)

    def _score_group(self, jobs: list[Job]) -> None:
        images = [pil for job in jobs for pil in job.decoded]
        try:
            raws = self._infer(jobs[0], images, self.max_batch)
        except Exception as exc:  # noqa: BLE001 - the thread lives; find whose image it was
            if len(jobs) > 1:
                log.warning("model failed on a batch of %d requests (%s: %s); scoring each alone",
                            len(jobs), type(exc).__name__, exc)
                for job in jobs:
                    self._score_group([job])
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
                    raws.extend(self._infer(job, [pil], 1))
                except Exception as item_exc:  # noqa: BLE001 - this request only
                    exc = item_exc
                    break
            else:
                self._finish(job, raws)  # no image fails alone: it was the batch that failed
                return
        log.error("model failed on item %d of a request", index, exc_info=exc)
        job.decoded = None
        job.future.set_exception(RequestError(500, f"the model failed on this image ({type(exc).__name__}); the "
                                                   f"server's log has the details", index))

    def _finish(self, job: Job, raws: list) -> None:
        try:
            job.future.set_result(self._outputs(job, raws))
        except Exception as exc:  # noqa: BLE001 - e.g. bad xai_parameters: this request only
            job.future.set_exception(exc)
        finally:
            job.decoded = None  # the pixels go now, not when the response has been sent

    def _outputs(self, job: Job, raws: list) -> list[dict]:
        if job.featurize:
            return [self.predictor.feature_output(vector, name) for vector, name in zip(raws, job.names)]
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
