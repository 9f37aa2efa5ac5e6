"""The predictor: one loaded model folder, from any image input to Azure's output objects.

REST (``visionml.serve``), batch scoring (``visionml predict``), evaluation, explainers and
exporters all hold one ``Predictor``, so an image gets the same answer everywhere.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from ..data.images import DEFAULT_MAX_PIXELS
from ..decode import DecodeError, filename_of, read_header
from ..errors import VisionMLError
from ..tasks import SEGMENTATION, is_classification
from . import postprocess
from .backends import load_backend
from .settings import resolve_settings

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Predictor:
    """Load with ``Predictor.from_folder(dir)``; call ``predict(images)``.

    Attributes: ``task``, ``labels`` (model order), ``settings`` (hyperparameters with the
    inference settings and overrides applied), ``manifest``, ``model`` (the nn.Module, torch
    backend only), ``backend`` (an object with ``run(batch)``), ``model_dir``.
    """

    def __init__(self, backend, manifest: dict, model=None, overrides: dict | None = None,
                 model_dir: Path | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS):
        self.backend = backend
        self.manifest = manifest
        self.model = model
        self.model_dir = model_dir
        self.task = manifest["task"]
        self.labels = list(manifest["labels"])
        self.settings = resolve_settings(manifest, overrides)
        self.max_pixels = max_pixels
        self.batch_size = int(self.settings["validation_batch_size"])
        self._score_floor: float | None = None  # set by scoring_down_to
        self._size_rule = None  # (width, height) -> reason or None, made on first use
        if is_classification(self.task):
            self._transform = self._classification_transform()
        elif model is not None:
            apply_detector_settings(model, self.settings)
        if hasattr(backend, "check_settings"):  # e.g. ONNX: some settings are fixed in the graph
            backend.check_settings(self.settings)

    @classmethod
    def from_folder(cls, model_dir, backend: str = "torch", overrides: dict | None = None,
                    device: str = "cpu") -> Predictor:
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise VisionMLError(f"{model_dir}: not a model folder (expected a folder with visionml.json, "
                                f"e.g. RUN/model from `visionml train`)")
        runner, model, manifest = load_backend(backend, model_dir, device)
        return cls(runner, manifest, model=model, overrides=overrides, model_dir=model_dir)

    @contextmanager
    def scoring_down_to(self, threshold: float):
        """Inside the block detectors return boxes down to ``threshold`` (for AP, see
        ``visionml.evaluate``) while ``settings["box_score_threshold"]`` keeps the deployment's
        value; the model's own threshold is back afterwards. A no-op for classifiers. For a predictor
        of its own (evaluate's): requests served by the same predictor meanwhile would see the floor."""
        from ..models.detection import score_threshold_at_most

        if is_classification(self.task):
            yield
            return
        self._score_floor = min(float(self.settings["box_score_threshold"]), float(threshold))
        try:
            with score_threshold_at_most(self.model, self._score_floor):  # model None (ONNX): nothing to set
                yield
        finally:
            self._score_floor = None

    def size_problem(self, width: int, height: int) -> str | None:
        """Why this model cannot take a ``width`` x ``height`` image (a detector would resize a
        100000x1 image to 0 pixels; a classifier would resize it to billions), or None when it
        can: checked from an image's header before it is decoded or batched with others."""
        if self._size_rule is None:
            from ..data.reader import size_rule

            settings = self.settings  # its model_name tells ssdlite (any shape fits) from the others
            transform = getattr(self.model, "transform", None)
            if getattr(transform, "fixed_size", None) is None and hasattr(transform, "min_size"):
                # the sizes the network really resizes to (the folder's, or those it was built with)
                settings = {**settings, "min_size": transform.min_size[-1], "max_size": transform.max_size}
            self._size_rule = size_rule(self.task, settings, self.max_pixels)
        return self._size_rule(width, height)

    # -- preprocessing ---------------------------------------------------------------------
    def _classification_transform(self):
        import torch
        from torchvision.transforms import v2

        pre = self.manifest.get("preprocessing") or {}
        # The same steps, in the same order, as the trainer's evaluation transform.
        return v2.Compose([
            v2.ToImage(),
            v2.Resize(int(self.settings["validation_resize_size"]), antialias=True),
            v2.CenterCrop(int(self.settings["validation_crop_size"])),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(pre.get("mean", IMAGENET_MEAN)), list(pre.get("std", IMAGENET_STD))),
        ])

    def preprocess(self, pil):
        """One RGB PIL image as the network's input: classification the normalised validation crop
        ``[3, crop, crop]``; detection the image as floats in [0, 1] (the detector resizes itself)."""
        if is_classification(self.task):
            return self._transform(pil)
        from torchvision.transforms.v2.functional import pil_to_tensor

        return pil_to_tensor(pil).float().div_(255)

    # -- prediction ------------------------------------------------------------------------
    def raw_predict(self, pil_images, batch_size: int | None = None) -> list:
        """Arrays for metrics: classification float32 ``[C]`` probabilities per image; detection a
        dict ``boxes`` ``[N, 4]`` xyxy pixels of the original image, ``scores``, ``labels``
        (0-based), and for segmentation ``masks`` bool ``[N, H, W]``. Runs ``batch_size`` images
        (default ``validation_batch_size``) through the network at a time."""
        step = int(batch_size or self.batch_size)
        out = []
        for start in range(0, len(pil_images), step):
            out.extend(self._raw_batch(pil_images[start:start + step]))
        return out

    def _raw_batch(self, pils) -> list:
        if not pils:
            return []
        inputs = [self.preprocess(p) for p in pils]
        if is_classification(self.task):
            import torch

            logits = postprocess.check_finite(self.backend.run(torch.stack(inputs)), self.model_dir)
            return postprocess.class_probabilities(logits, self.task)
        with_masks = self.task == SEGMENTATION
        settings = self.settings if self._score_floor is None else {**self.settings,
                                                                   "box_score_threshold": self._score_floor}
        return [postprocess.detections(postprocess.check_finite(o, self.model_dir), settings, with_masks)
                for o in self.backend.run(inputs)]

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

    def to_output(self, raw, pil, filename: str, xai_parameters: dict | None = None) -> dict:
        """One wire object from ``raw_predict``'s result for ``pil``; explains classification when
        ``xai_parameters`` is a dict (the request's ``model_explainability: true``)."""
        if is_classification(self.task):
            viz, attr = self._explain(pil, raw, xai_parameters) if xai_parameters is not None else (None, None)
            return postprocess.classification_object(filename, raw, self.labels, viz, attr)
        return postprocess.detection_object(filename, raw, self.labels, pil.width, pil.height,
                                            self.settings.get("max_number_of_polygon_points"))

    def _explain(self, pil, probs, params: dict):
        try:
            from ..explain import explain
        except ModuleNotFoundError as exc:
            if exc.name != "visionml.explain":
                raise
            return None, None  # explainers not installed in this build: scores only
        return explain(self, pil, probs, params)


def apply_detector_settings(model, settings: dict) -> None:
    """Push thresholds and sizes into a torchvision detector, wherever its family keeps them
    (R-CNNs in ``roi_heads``; RetinaNet, FCOS and SSD on the model), so a deployment's
    ``--set box_score_threshold=...`` takes effect without rebuilding the model."""
    holders = [m for m in (model, getattr(model, "roi_heads", None)) if m is not None]
    for holder in holders:
        if hasattr(holder, "score_thresh"):
            holder.score_thresh = float(settings["box_score_threshold"])
        if hasattr(holder, "nms_thresh"):
            holder.nms_thresh = float(settings["nms_iou_threshold"])
        if hasattr(holder, "detections_per_img"):
            holder.detections_per_img = int(settings["box_detections_per_image"])
    transform = getattr(model, "transform", None)
    # SSD resizes to a fixed size; the others take min_size/max_size when the folder names them
    # (otherwise the model keeps the sizes it was built with).
    if transform is not None and getattr(transform, "fixed_size", None) is None:
        if settings.get("min_size") is not None:
            transform.min_size = (int(settings["min_size"]),)
        if settings.get("max_size") is not None:
            transform.max_size = int(settings["max_size"])
