"""The MLflow pyfunc model that ``visionml export --format mlflow`` saves: a visionml model folder
(an MLflow artifact) behind MLflow's ``predict(DataFrame)``.

Input, as an Azure AutoML mlflow-model takes it: a pandas DataFrame with an ``image`` column, each
cell a base64 image or Azure's JSON item ``{"image_base64", "model_explainability",
"xai_parameters"}``; the first row's ``model_explainability`` and ``xai_parameters`` apply to every
row that does not set them (as Azure's wrapper reads them, and as ``visionml serve`` does). Output: a
DataFrame with one row per image whose records are exactly the objects ``visionml serve`` answers
(``filename``, ``probs``, ``labels`` ... or ``boxes``), every column of dtype object so that a
missing explanation is None (JSON null), never pandas' NaN.

MLflow loads this through a short models-from-code script written next to the model (see
``mlflow.py``), so nothing is unpickled; this module imports mlflow and is only imported by them.
"""

from __future__ import annotations

import mlflow.pyfunc
from mlflow.exceptions import MlflowException

IMAGE_COLUMN = "image"


class VisionMLPyfunc(mlflow.pyfunc.PythonModel):
    """``model_config`` (from the export): ``overrides`` = inference settings, ``backend``."""

    def load_context(self, context):
        from visionml import load_model

        config = context.model_config or {}
        self.predictor = load_model(context.artifacts["model"], backend=config.get("backend", "torch"),
                                    **(config.get("overrides") or {}))

    def predict(self, context, model_input, params=None):
        import pandas as pd

        from visionml.errors import VisionMLError
        from visionml.explain import parse_xai_parameters
        from visionml.predict.decode import DecodeError

        items = _items(model_input)
        xai = []
        for row, item in enumerate(items):
            try:
                params = parse_xai_parameters(item.xai_parameters, strict=True)
            except VisionMLError as exc:
                raise MlflowException.invalid_parameter_value(f"{IMAGE_COLUMN} row {row}: {exc}") from None
            xai.append(params if item.model_explainability else None)
        try:
            objects = self.predictor.predict([item.image for item in items], xai=xai)
        except DecodeError as exc:  # a bad image: MLflow answers 400 with the message
            raise MlflowException.invalid_parameter_value(f"{IMAGE_COLUMN} row {exc.index}: {exc}") from None
        columns = list(objects[0]) if objects else []
        # object columns: pandas would turn a None beside strings into NaN (a str column's missing value)
        return pd.DataFrame({name: pd.Series([obj[name] for obj in objects], dtype=object) for name in columns})


def _items(model_input) -> list:
    """The request's rows as ``visionml.predict.decode.ScoreItem``s (the REST endpoint's own parser)."""
    import pandas as pd

    from visionml.predict.decode import DecodeError, first_row_defaults, parse_score_item

    if isinstance(model_input, pd.DataFrame):
        if IMAGE_COLUMN not in model_input.columns:
            raise MlflowException.invalid_parameter_value(
                f"the input needs an {IMAGE_COLUMN!r} column of base64 images; got columns "
                f"{', '.join(map(str, model_input.columns)) or '(none)'}")
        cells = list(model_input[IMAGE_COLUMN])
    elif isinstance(model_input, (list, tuple)):
        cells = list(model_input)
    else:
        raise MlflowException.invalid_parameter_value(
            f"expected a DataFrame with an {IMAGE_COLUMN!r} column, got {type(model_input).__name__}")
    items = []
    for i, cell in enumerate(cells):
        try:
            items.append(parse_score_item(cell))
        except DecodeError as exc:
            raise MlflowException.invalid_parameter_value(f"{IMAGE_COLUMN} row {i}: {exc}") from None
    return first_row_defaults(items)
