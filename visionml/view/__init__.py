"""``visionml view``: a web page over a dataset, its problems and, with a model or its predictions,
the model's mistakes with the evaluator's own matching (``dataset``, ``matching``, ``predictions``,
``app``)."""

from .app import create_view_app
from .dataset import build_view, checked_view, export_lines, lines_view, page_json

__all__ = ["build_view", "checked_view", "create_view_app", "export_lines", "lines_view", "page_json"]
