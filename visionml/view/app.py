"""The dataset browser's web app: the page, its one JSON document, thumbnails, export and the audit.

The page (``visionml/ui/static/view.html``) is plain HTML, CSS and JavaScript served from the
package: nothing to build. Starlette, not FastAPI on top of it: the page needs no request models
or OpenAPI, and FastAPI's import alone (pydantic's schema models) costs over a second of the
3 seconds a 10,000-image dataset has to open in. Thumbnails made before are read on the event
loop (a few kB from the cache); new ones are made on worker threads, a few at a time (decoding is
CPU work: more threads than cores only queue), and cached on disk.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import time

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..data.thumbnails import LARGE_SIZE, THUMB_SIZE, ThumbnailCache
from ..ui import STATIC
from .dataset import ViewData, export_lines, page_json

log = logging.getLogger("visionml.view")
CACHED = {"Cache-Control": "private, max-age=86400"}


def _json(content, status: int = 200) -> Response:
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json")


class _Audit:
    """The audit of the viewed data, run once in the background when the page first asks for it.
    ``final`` gives the view once its images are checked (it waits for them)."""

    def __init__(self, final):
        self.final = final
        self.state, self.report, self.error = "not started", None, None
        self.pngs: dict[str, bytes] = {}
        self.lock = threading.Lock()

    def start(self) -> None:
        with self.lock:
            if self.state != "not started":
                return
            self.state = "running"
        threading.Thread(target=self._run, name="visionml-audit", daemon=True).start()

    def _run(self) -> None:
        from ..data.audit import audit_dataset
        from ..data.audit_plots import figures, png_bytes

        try:
            view = self.final()
            report = audit_dataset(view.data, loaded=view.training or view.loaded, workers=1)
            self.pngs = {name: png_bytes(fig) for name, fig in figures(report).items()}
            self.report, self.state = report, "done"
        except Exception as exc:  # noqa: BLE001 - shown on the page; the browser keeps working
            log.exception("the audit failed")
            self.error, self.state = f"{type(exc).__name__}: {exc}", "failed"


class _Routes:
    def __init__(self, view: ViewData, thumbnails: ThumbnailCache, complete=None):
        self.view, self.thumbnails, self.complete = view, thumbnails, complete
        self.decoding = threading.BoundedSemaphore(max(1, min(4, os.cpu_count() or 1)))
        self.first, self.final = concurrent.futures.Future(), concurrent.futures.Future()  # documents
        self.final_view = concurrent.futures.Future()
        self.audit = _Audit(self.final_view.result)
        self.asked = threading.Event()  # the page asked for its document
        self.last_picture = 0.0  # time.monotonic() of the last thumbnail or image asked for
        # The documents are written while the server starts and the browser loads the page and
        # its scripts (half a second for 10,000 images), not after the page asks for them.
        threading.Thread(target=self._write_docs, name="visionml-view-doc", daemon=True).start()

    def _write_docs(self) -> None:
        waiting = [self.first, self.final, self.final_view]
        try:
            waiting.pop(0).set_result(page_json(self.view))
            if self.complete is not None:
                self._wait_for_first_screen()
                log.info("checking every image as training does (the page is open meanwhile)")
                view = self.complete(self.view)
                self.view = view  # the same ids: a thumbnail asked for meanwhile is the same image
                doc = page_json(view)
            else:
                view, doc = self.view, self.first.result()
            waiting.pop(0).set_result(doc)
            waiting.pop(0).set_result(view)
        except BaseException as exc:  # noqa: BLE001 - answered to the page as a 500 with the reason
            log.exception("the page's document failed")
            for future in waiting:
                future.set_exception(exc)

    def _wait_for_first_screen(self, quiet: float = 0.3, longest: float = 5.0) -> None:
        """Until the page has its document and its first screen of thumbnails (no picture asked
        for in ``quiet`` seconds), at most ``longest`` seconds after it asked: the checks are CPU
        work that would otherwise slow the server's start and the first screen (a thread holds
        the interpreter in turns with the server). Ten seconds if no page comes."""
        if not self.asked.wait(timeout=10.0):
            return
        deadline = time.monotonic() + longest
        while time.monotonic() < deadline and time.monotonic() - self.last_picture < quiet:
            time.sleep(0.05)

    async def index(self, request):
        return FileResponse(STATIC / "view.html", media_type="text/html")

    async def dataset(self, request):
        """The latest document; with ``?checked=1`` the one with every image checked (waits for it)."""
        wanted = self.final if request.query_params.get("checked") or self.final.done() else self.first
        self.asked.set()
        self.last_picture = time.monotonic()  # the thumbnails come next
        try:
            doc = await asyncio.wrap_future(wanted)
        except Exception as exc:  # noqa: BLE001 - logged where it happened
            return _json({"error": f"{type(exc).__name__}: {exc}"}, 500)
        return Response(doc, media_type="application/json")

    async def thumb(self, request):
        return await self._picture(request, THUMB_SIZE)

    async def image(self, request):
        return await self._picture(request, LARGE_SIZE)

    async def _picture(self, request, longest: int):
        self.last_picture = time.monotonic()
        i = request.path_params["i"]
        if not 0 <= i < len(self.view.records):
            return _json({"error": f"no image {i}"}, 404)
        record = self.view.records[i]
        data = self.thumbnails.cached(record.path, longest)
        if data is None:
            try:
                data = await run_in_threadpool(self._make, record.path, longest)
            except (OSError, ValueError) as exc:
                return _json({"error": f"{record.where}: image_url: {record.image_url}: {exc}"}, 404)
        return Response(data, media_type="image/jpeg", headers=CACHED)

    def _make(self, path, longest: int) -> bytes:
        with self.decoding:
            return self.thumbnails.get(path, longest)

    async def export(self, request):
        try:
            body = export_lines(self.view, orjson.loads(await request.body())["ids"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            return _json({"error": f'expected {{"ids": [image ids]}}: {exc}'}, 400)
        return Response(body, media_type="application/x-ndjson",
                        headers={"Content-Disposition": 'attachment; filename="relabel.jsonl"'})

    async def audit_state(self, request):
        self.audit.start()
        audit = self.audit
        return _json({"state": audit.state, "error": audit.error, "report": audit.report, "figures": list(audit.pngs)})

    async def audit_figure(self, request):
        name = request.path_params["name"]
        if name not in self.audit.pngs:
            return _json({"error": f"no figure {name!r} (yet): GET /api/audit says which there are"}, 404)
        return Response(self.audit.pngs[name], media_type="image/png")


def create_view_app(view: ViewData, *, thumbnails: ThumbnailCache | None = None, complete=None) -> Starlette:
    """The app serving ``view`` (a ``build_view`` or ``lines_view`` result): ``GET /`` the page,
    ``GET /api/dataset`` its document (``?checked=1``: once ``complete(view)``, run in the
    background, has given the view with every image checked), ``GET /api/thumb/{i}`` and
    ``/api/image/{i}`` image ``i`` at 256 and at most 1280 pixels, ``POST /api/export``
    ``{"ids": [...]}`` JSONL, ``GET /api/audit`` (started by the first request) and
    ``/api/audit/{name}.png``."""
    routes = _Routes(view, thumbnails or ThumbnailCache(), complete)
    return Starlette(routes=[
        Route("/", routes.index),
        Route("/api/dataset", routes.dataset),
        Route("/api/thumb/{i:int}", routes.thumb),
        Route("/api/image/{i:int}", routes.image),
        Route("/api/export", routes.export, methods=["POST"]),
        Route("/api/audit", routes.audit_state),
        Route("/api/audit/{name}.png", routes.audit_figure),
        Mount("/ui/static", StaticFiles(directory=STATIC), name="static"),
    ])
