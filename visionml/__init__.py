"""visionml: Azure AutoML-for-Images, on your own machine.

>>> import visionml
>>> m = visionml.load_model("runs/fridge/model")      # doctest: +SKIP
>>> m.predict(["image.jpg"])                             # doctest: +SKIP
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load_model"]


def load_model(model_dir, backend: str = "torch", **overrides):
    """Load a model folder once and return its predictor (``.predict(images) -> list[dict]``).

    ``overrides`` are inference settings (e.g. ``box_score_threshold=0.5``), as Azure's settings.json.
    """
    from .predict import Predictor  # torch is imported only when a model is actually loaded

    return Predictor.from_folder(model_dir, backend=backend, overrides=overrides or None)
