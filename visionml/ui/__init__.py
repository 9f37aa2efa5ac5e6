"""The web pages: plain HTML, CSS and JavaScript in ``static/`` (no build step), served by FastAPI.

``visionml serve`` adds the scoring page at ``/ui`` (``add_score_page``): it posts to the same
``/score`` endpoint as any client. ``visionml view`` serves ``view.html`` (``visionml.view``).
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent / "static"


def add_score_page(app, server) -> None:
    """``GET /ui`` (the page), ``GET /ui/config.json`` (what the page needs to know about the model,
    no secrets: whether a key is needed, never the key) and ``/ui/static``."""
    from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
    from fastapi.staticfiles import StaticFiles

    from ..explain.params import XAI_ALGORITHMS
    from ..tasks import get_task

    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")

    @app.get("/ui", include_in_schema=False)
    async def score_page():
        return FileResponse(STATIC / "score.html", media_type="text/html")

    @app.get("/ui/", include_in_schema=False)
    async def score_page_slash():
        return RedirectResponse("/ui")

    @app.get("/ui/config.json", include_in_schema=False)
    async def config():
        predictor = server.predictor
        if server.batcher is None or predictor is None:
            return JSONResponse({"ready": False, "error": server.load_error}, status_code=503,
                                headers={"Retry-After": "1"})
        task = get_task(predictor.task)
        settings = predictor.settings
        out = {"ready": True, "task": task.name, "objects": task.objects, "explainable": task.explainable,
               "multilabel": bool(getattr(task, "multilabel", False)),
               "model_name": predictor.manifest.get("model_name"), "api_key_required": bool(server.api_key),
               "algorithms": list(XAI_ALGORITHMS) if task.explainable else []}
        if task.objects:
            out["box_score_threshold"] = float(settings["box_score_threshold"])
        if predictor.data_config.classifier:
            out["resize_size"] = int(predictor.data_config.resize_size)
            out["crop_size"] = int(predictor.data_config.crop_size)
        return JSONResponse(out)
