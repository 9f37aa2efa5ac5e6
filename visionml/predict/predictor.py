"""The predictor: one loaded model folder, from any image input to Azure's output objects.

REST (``visionml.serve``), batch scoring (``visionml predict``), evaluation, explainers and
exporters all hold one ``Predictor``, so an image gets the same answer everywhere.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

from ..data.dataconfig import resolve_data_config
from ..data.images import DEFAULT_MAX_PIXELS
from ..errors import VisionMLError
from ..tasks import get_task
from .backends import load_backend
from .decode import DecodeError, filename_of, read_header
from .settings import resolve_settings


class Predictor:
    """Load with ``Predictor.from_folder(dir)``; call ``predict(images)``.

    Attributes: ``task`` (a ``visionml.tasks.Task``, equal to its name), ``labels`` (model order),
    ``settings`` (the typed hyperparameters with the inference settings and overrides applied),
    ``data_config`` (how an image becomes the network's input), ``manifest``, ``model`` (the
    nn.Module, torch backend only), ``backend`` (an object with ``run(batch)``), ``model_dir``.
    """

    def __init__(self, backend, manifest: dict, model=None, overrides: dict | None = None,
                 model_dir: Path | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS):
        self.backend = backend
        self.manifest = manifest
        self.model = model
        self.model_dir = model_dir
        self._overrides = overrides
        self.task = get_task(manifest["task"])
        self.labels = list(manifest["labels"])
        self.settings = resolve_settings(manifest, overrides)
        self.data_config = resolve_data_config(self.settings["model_name"], self.settings,
                                               manifest.get("preprocessing"))
        self.max_pixels = max_pixels
        self.batch_size = int(self.settings["validation_batch_size"])
        self._score_floor: float | None = None  # set by scoring_down_to
        self._family = self._spec().family
        self._featurizer = None  # made on the first features() call
        self._featurizer_lock = threading.Lock()
        if model is not None:
            self._family.apply_settings(model, self.settings)
        if hasattr(backend, "check_settings"):  # e.g. ONNX: some settings are fixed in the graph
            backend.check_settings(self.settings)
        step = getattr(backend, "images_per_run", None)  # an ONNX detector exported for N images per run
        if step:
            self.batch_size = -(-self.batch_size // int(step)) * int(step)

    @classmethod
    def from_folder(cls, model_dir, backend: str = "torch", overrides: dict | None = None,
                    device: str = "cpu", threads: int | None = None, precision: str = "fp32") -> Predictor:
        """``threads``: onnxruntime's intra-op threads (default: ``predict.threads.default_threads()``;
        the torch backend uses PyTorch's process-wide count, ``torch.set_num_threads``). ``precision``:
        the torch backend's fp32 or bf16 (bf16 only where the CPU computes it natively, else fp32:
        ``predict.backends.TorchBackend``)."""
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise VisionMLError(f"{model_dir}: not a model folder (expected a folder with visionml.json, "
                                f"e.g. RUN/model from `visionml train`)")
        runner, model, manifest = load_backend(backend, model_dir, device, threads=threads, precision=precision)
        return cls(runner, manifest, model=model, overrides=overrides, model_dir=model_dir)

    def at_precision(self, precision: str) -> Predictor:
        """A predictor sharing this one's network and settings whose torch backend runs at
        ``precision`` (``visionml evaluate --precision bf16`` scores in fp32 too, for the change)."""
        from .backends import TorchBackend

        if self.model is None:
            raise VisionMLError("--precision is for the torch backend; an ONNX model runs as it was exported")
        backend = TorchBackend(self.model, str(self.backend.device), precision)
        return Predictor(backend, self.manifest, model=self.model, overrides=self._overrides,
                         model_dir=self.model_dir, max_pixels=self.max_pixels)

    def _spec(self):
        from ..models.registry import get_spec

        return get_spec(self.settings["model_name"], self.task)

    @contextmanager
    def scoring_down_to(self, threshold: float):
        """Inside the block detectors return boxes down to ``threshold`` (for AP, see
        ``visionml.metrics.evaluate``) while ``settings["box_score_threshold"]`` keeps the deployment's
        value; the model's own threshold is back afterwards. A no-op for classifiers. For a predictor
        of its own (evaluate's): requests served by the same predictor meanwhile would see the floor."""
        if "box_score_threshold" not in self.settings:
            yield
            return
        self._score_floor = min(float(self.settings["box_score_threshold"]), float(threshold))
        try:
            if self.model is None:  # ONNX: the graph keeps low scores, the floor applies after it
                yield
            else:
                with self._family.score_floor(self.model, self._score_floor):
                    yield
        finally:
            self._score_floor = None

    def size_problem(self, width: int, height: int) -> str | None:
        """Why this model cannot take a ``width`` x ``height`` image (a detector would resize a
        100000x1 image to 0 pixels; a classifier would resize it to billions), or None when it
        can: checked from an image's header before it is decoded or batched with others."""
        return self.data_config.size_problem(width, height, self.max_pixels)

    def preprocess(self, pil):
        """One RGB PIL image as the network's input: classification the normalised validation crop
        ``[3, crop, crop]`` (exactly the validation transform of training); detection the image as
        floats in [0, 1] (the detector resizes and normalises itself)."""
        return self.task.preprocess(pil, self.data_config)

    # -- prediction ------------------------------------------------------------------------
    def raw_predict(self, pil_images, batch_size: int | None = None) -> list:
        """Arrays for metrics: classification float32 ``[C]`` probabilities per image; detection a
        dict ``boxes`` ``[N, 4]`` xyxy pixels of the original image, ``scores``, ``labels``
        (0-based), and for segmentation ``masks`` bool ``[N, H, W]``. Runs ``batch_size`` images
        (default ``validation_batch_size``) through the network at a time; with ``tile_grid_size``,
        each image and its tiles, ``batch_size`` inputs at a time and at least one image's worth
        (``visionml.tiling.detect_tiled``), merged per image."""
        step = int(batch_size or self.batch_size)
        out = []
        for start in range(0, len(pil_images), step):
            out.extend(self._raw_batch(pil_images[start:start + step]))
        return out

    def _raw_batch(self, pils) -> list:
        if not pils:
            return []
        # The task runs the batch (detection with tile_grid_size: each image and its tiles, merged).
        outputs = self.task.infer(self._run, [self.preprocess(p) for p in pils], self.settings)
        settings = self.settings
        if self._score_floor is not None:
            settings = {**settings, "box_score_threshold": self._score_floor}
        return self.task.postprocess(outputs, settings)

    def _run(self, batch):
        outputs = self.backend.run(batch)
        check_finite(outputs, self.model_dir)
        return outputs

    def predict(self, images, xai=None, filenames=None) -> list[dict]:
        """Azure's output object for each image (a path, bytes, a base64 string or a PIL image).

        ``xai``: None; one ``xai_parameters`` dict for every image; or a list with a dict (explain
        this image) or None per image. Detection and segmentation ignore it (scores only)."""
        images = list(images)
        names = list(filenames) if filenames is not None else [filename_of(s, i) for i, s in enumerate(images)]
        pils = []
        for i, src in enumerate(images):
            try:
                encoded = read_header(src, self.max_pixels)
                problem = self.size_problem(encoded.width, encoded.height)
                if problem:
                    raise DecodeError(f"{names[i]}: {problem}")
                pils.append(encoded.decode(self.max_pixels))
            except DecodeError as exc:
                exc.index = i
                raise
        xai_list = xai if isinstance(xai, list) else [xai] * len(pils)
        raws = self.raw_predict(pils)
        return [self.to_output(r, p, n, x) for r, p, n, x in zip(raws, pils, names, xai_list)]

    # -- featurization -----------------------------------------------------------------------
    def check_featurize(self):
        """The module giving feature vectors (made once, by the model family), or ``VisionMLError``
        saying why there is none: a detector, or an ONNX deployment."""
        if self.model is None:
            raise VisionMLError("featurization needs the PyTorch model: load the model folder with the torch "
                                "backend (an ONNX deployment scores only)")
        with self._featurizer_lock:
            if self._featurizer is None:
                self._featurizer = self._family.featurizer(self.model)
            return self._featurizer

    def features(self, pil_images, batch_size: int | None = None) -> list:
        """The penultimate-layer embedding of each RGB image, float32 ``[D]`` (what the head takes; the
        model family knows where it is: ``ModelFamily.featurizer``), the input preprocessed exactly as
        for ``raw_predict``."""
        import torch

        featurizer = self.check_featurize()
        device = next(self.model.parameters()).device
        step = int(batch_size or self.batch_size)
        out = []
        for start in range(0, len(pil_images), step):
            batch = self.task.batch([self.preprocess(p) for p in pil_images[start:start + step]])
            with torch.inference_mode():
                vectors = featurizer(batch.to(device)).float().reshape(len(batch), -1).cpu()
            check_finite(vectors, self.model_dir)
            out.extend(vectors.numpy())
        return out

    @staticmethod
    def feature_output(vector, filename: str) -> dict:
        """One line of Azure's featurize output: ``{"filename", "feature_vector"}``."""
        return {"filename": filename, "feature_vector": [float(v) for v in vector]}

    def to_output(self, raw, pil, filename: str, xai_parameters: dict | None = None) -> dict:
        """One wire object from ``raw_predict``'s result for ``pil``; explains it when
        ``xai_parameters`` is a dict (the request's ``model_explainability: true``) and the task
        has explanations (classification: detection and segmentation return their scores only)."""
        explanation = None
        if xai_parameters is not None and self.task.explainable:
            from ..explain import explain

            explanation = explain(self, pil, raw, xai_parameters)
        return self.task.wire(raw, pil.width, pil.height, filename, self.labels, self.settings, explanation)


def check_finite(outputs, model_dir=None) -> None:
    """A NaN or infinity in the network's output means damaged weights or a diverged training,
    never an answer to send: a VisionMLError saying so. ``outputs``: logits, or detector dicts."""
    import torch

    items = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    values = [v for item in items for v in (item.values() if isinstance(item, dict) else [item])]
    if all(bool(torch.isfinite(torch.as_tensor(v)).all()) for v in values):
        return
    where = f"{model_dir}: " if model_dir is not None else ""
    raise VisionMLError(f"{where}the model's output is not finite (NaN or infinity): its weights are damaged "
                        f"or its training diverged. Copy the model folder again, or retrain (e.g. with a "
                        f"lower learning_rate)")
