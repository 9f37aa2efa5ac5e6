"""The REST endpoint around one Predictor, in the order a request meets it:

* ``requests``: the body and Azure's request format, each image checked from its header (no
  decoding), the OpenAPI schemas, ``RequestError``;
* ``batching``: the model's worker threads (``MicroBatcher``: concurrent requests scored as one
  batch, explanations in their own lane) and the memory they may use;
* ``app``: ``create_app(predictor)``, the FastAPI routes and what they share.

``visionml serve`` (commands/serve.py) runs ``create_app`` under uvicorn.
"""

from .app import DEFAULT_MAX_BODY_MB, DEFAULT_MAX_EXPLANATIONS, create_app
from .batching import (DEFAULT_MAX_BATCH, DEFAULT_MAX_QUEUE, DEFAULT_WINDOW_MS, MicroBatcher, QueueFull,
                       default_max_request_pixels, machine_memory_bytes, release_free_memory)
from .requests import Job, RequestError, parse_request, read_body

__all__ = [
    "DEFAULT_MAX_BATCH", "DEFAULT_MAX_BODY_MB", "DEFAULT_MAX_EXPLANATIONS", "DEFAULT_MAX_QUEUE", "DEFAULT_WINDOW_MS",
    "Job", "MicroBatcher", "QueueFull", "RequestError", "create_app", "default_max_request_pixels",
    "machine_memory_bytes", "parse_request", "read_body", "release_free_memory",
]
