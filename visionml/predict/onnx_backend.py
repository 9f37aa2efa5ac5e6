"""The ONNX Runtime backend: runs ``model.onnx`` from a folder written by ``visionml export --format onnx``.

It follows the backend contract of ``backends.py`` (``run(batch)``), so decoding, thresholds,
polygons and the conversion to Azure's objects stay in the predictor's shared code and the
answers match the torch backend. The graph is laid out as Azure's (``visionml.export.onnx``): it
takes images already resized and normalised, so this backend does what the torch model does
inside itself, as the manifest's ``onnx`` block describes it:

* classification: the predictor's normalised crops, converted to the graph's input pixels
  (ImageNet-normalised, or 0-255 with ``enable_onnx_normalization``), one run per batch;
* detection with a fixed input ``[N, 3, H, W]`` (Faster R-CNN, RetinaNet, SSDlite): each image
  resized to ``H x W`` (bilinear, as torchvision resizes), normalised, ``N`` at a time (the last
  run filled up with copies), boxes scaled back to the image. On an image whose own resize by
  ``min_size``/``max_size`` is ``H x W`` (a 4:3 landscape one, at the export's default size) that
  is exactly what the torch model computes; other aspects are stretched to ``H x W``, as Azure's
  ONNX client does;
* instance segmentation (Mask R-CNN, any input size): each image resized as torchvision does
  (``min_size``/``max_size``, free at run time), ``N`` at a time (padded to a common size, as
  torchvision batches), boxes scaled back and masks resized to the image.

What the exporter fixed inside the graph (the classification crop size; a detector's NMS IoU,
detection cap and input size) is recorded in ``onnx.fixed``; ``check_settings`` refuses
deployment settings the graph cannot honour instead of silently ignoring them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UsageError, VisionMLError

ONNX_FILE = "model.onnx"


def session_options(threads: int | None = None):
    """ORT settings that make small-batch CPU inference fast: every graph optimisation (fusing
    conv+BN+activation, constant folding), sequential execution (these graphs have no parallel
    branches worth a second pool), and no busy-waiting threads, which on a shared or busy CPU
    steal cycles from the work itself. Intra-op threads: ``threads``, else
    ``threads.default_threads()`` (PyTorch's count, within the CPUs and CPU quota this process
    has), so one setting governs both backends and the shared pre/post-processing."""
    import onnxruntime as ort

    from .threads import default_threads

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = int(threads or default_threads())
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def providers_for(device: str) -> list[str]:
    """ONNX Runtime execution providers for a visionml ``--device`` value."""
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise VisionMLError(f"--device {device}: this onnxruntime has no CUDA support "
                                f"(install onnxruntime-gpu), or use --device cpu")
        index = device.partition(":")[2] or "0"
        return [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"]
    raise UsageError(f"--device {device!r}: use cpu, cuda or cuda:N")


def open_session(path: Path | bytes, device: str = "cpu", threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` for ``path`` (or a serialised graph); a damaged file is
    a VisionMLError naming it."""
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    try:
        return ort.InferenceSession(path if isinstance(path, bytes) else str(path),
                                    sess_options=session_options(threads), providers=providers_for(device))
    except (state.Fail, state.InvalidGraph, state.InvalidProtobuf, state.NoSuchFile) as exc:
        where = "the exported graph" if isinstance(path, bytes) else path
        raise VisionMLError(f"{where}: onnxruntime cannot load it ({str(exc).splitlines()[0]}); export the "
                            f"model again with `visionml export --format onnx`") from None


class OnnxBackend:
    """``model.onnx`` in an onnxruntime session. Classification: ``run([B,3,H,W]) -> logits [B,C]``;
    detection/segmentation: ``run([image, ...])`` with images ``[3, H_i, W_i]`` in [0, 1], one
    torchvision-style dict per image (boxes in the image's pixels, labels 1-based, masks as
    probabilities at the image's size). ``images_per_run``: the graph's fixed batch (detectors),
    which the predictor feeds in multiples of."""

    runtime = "onnxruntime"  # the name errors give (OpenVinoBackend: OpenVINO)

    def __init__(self, model_dir, manifest: dict, device: str = "cpu", threads: int | None = None):
        self.model_dir = Path(model_dir)
        self.path = self.model_dir / ONNX_FILE
        self.manifest = manifest
        self.task = manifest["task"]
        self.info = manifest.get("onnx") or {}
        where = self.model_dir / "visionml.json"
        if not self.info:
            raise VisionMLError(f"{where}: onnx: missing; this folder's model.onnx was not written by "
                                f"`visionml export --format onnx`: export the model again")
        if self.info.get("layout") != "azure":
            name = (self.info.get("input") or {}).get("name")
            raise VisionMLError(f"{where}: onnx: this model.onnx has the input {name!r} "
                                f"of an earlier visionml, not Azure's layout that this visionml runs: export the "
                                f"model again (`visionml export --model MODEL_DIR --format onnx -o OUT`)")
        self.session = self._open_session(device, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        source = self.info["input"]
        self.raw_pixels = source["pixels"] == "0-255"
        self.client_mean = np.asarray(source["mean"], np.float32)
        self.client_std = np.asarray(source["std"], np.float32)
        self.network_mean = np.asarray(self.info["network"]["mean"], np.float32)
        self.network_std = np.asarray(self.info["network"]["std"], np.float32)
        self.resize = source["resize"]
        self.fields = self.info.get("per_image")
        self.images_per_run = self.info.get("batch")  # None: any batch (classification)
        # The predictor's crops are normalised with the network's statistics: the graph takes them
        # as they are unless it was exported for other statistics or for 0-255 pixels.
        self._crops_as_input = not self.raw_pixels and np.array_equal(self.network_mean, self.client_mean) \
            and np.array_equal(self.network_std, self.client_std)
        self._sizes = None  # (min_size, max_size) of a min_max graph, from check_settings

    # -- classification --------------------------------------------------------------------
    def run(self, batch):
        if not isinstance(batch, (list, tuple)):  # a classifier's stacked tensor
            array = self._classifier_input(np.ascontiguousarray(_numpy(batch), dtype=np.float32))
            return self.session.run(self.output_names[:1], {self.input_name: array})[0]
        out = []
        step = int(self.images_per_run or 1)
        for start in range(0, len(batch), step):
            out.extend(self._detect(list(batch[start:start + step])))
        return out

    def _classifier_input(self, array: np.ndarray) -> np.ndarray:
        """The predictor's crops (normalised with the network's statistics) as the graph takes them."""
        if self._crops_as_input:
            return array
        pixels = array * self.network_std[:, None, None] + self.network_mean[:, None, None]
        return self._to_input(pixels)

    def _to_input(self, pixels: np.ndarray) -> np.ndarray:
        """Pixels in [0, 1] (``[..., 3, H, W]``) as the graph's input."""
        if self.raw_pixels:
            return np.ascontiguousarray(pixels * 255, dtype=np.float32)
        return np.ascontiguousarray((pixels - self.client_mean[:, None, None]) / self.client_std[:, None, None],
                                    dtype=np.float32)

    # -- detection -------------------------------------------------------------------------
    def _resized(self, image):
        """One image ``[3, h, w]`` in [0, 1] at the size the graph expects, as torchvision's
        detector transform would resize it (bilinear, no antialiasing)."""
        import torch
        from torch.nn.functional import interpolate

        image = torch.as_tensor(image, dtype=torch.float32)
        if self.resize["mode"] == "fixed":
            size = (int(self.resize["height"]), int(self.resize["width"]))
            if tuple(image.shape[-2:]) == size:
                return image
            return interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        min_size, max_size = self._sizes or (self.manifest["preprocessing"]["min_size"],
                                             self.manifest["preprocessing"]["max_size"])
        height, width = image.shape[-2:]
        scale = min(float(min_size) / min(height, width), float(max_size) / max(height, width))
        return interpolate(image[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True,
                           align_corners=False)[0]

    def _detect(self, images: list) -> list[dict]:
        import torch

        originals = [tuple(int(v) for v in image.shape[-2:]) for image in images]
        resized = [self._resized(image).numpy() for image in images]
        sizes = [r.shape[-2:] for r in resized]
        count = int(self.images_per_run or 1)
        height, width = max(s[0] for s in sizes), max(s[1] for s in sizes)
        # Padding (a min_max graph's batch of images of different sizes; torchvision pads its
        # batches too): the input the network sees as 0, the value torchvision pads with.
        batch = np.empty((count, 3, height, width), dtype=np.float32)
        batch[:] = self._to_input(self.network_mean[:, None, None])
        for i in range(count):  # a short last run is filled up with copies of its last image
            r = resized[min(i, len(resized) - 1)]
            batch[i, :, :r.shape[1], :r.shape[2]] = self._to_input(r)
        try:
            flat = self.session.run(self.output_names, {self.input_name: batch})
        except Exception as exc:  # onnxruntime's errors have no common base class
            # Not the image's fault: the graph cannot run it. A detector exported by an earlier
            # visionml, traced on an image where it found nothing, fails so on any object.
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            h, w = originals[0]
            what = f"a {w}x{h} image" if len(images) == 1 else f"{len(images)} images (the first {w}x{h})"
            raise VisionMLError(f"{self.path}: {self.runtime} fails on {what} ({type(exc).__name__}: "
                                f"{message[:300]}); export the model again with this visionml (`visionml export "
                                f"--model MODEL_DIR --format onnx -o OUT`), or use --backend torch") from None
        width_of = len(self.fields)
        out = []
        for i, ((oh, ow), (rh, rw)) in enumerate(zip(originals, sizes)):
            result = dict(zip(self.fields, flat[i * width_of:(i + 1) * width_of]))
            boxes = np.asarray(result["boxes"], dtype=np.float32).reshape(-1, 4)
            boxes = np.clip(boxes, 0, np.array([rw, rh, rw, rh], dtype=np.float32))  # a padded image's stop at its edge
            scale = np.array([ow / rw, oh / rh, ow / rw, oh / rh], dtype=np.float32)
            result["boxes"] = boxes * scale
            if "masks" in result:
                result["masks"] = _masks_to_image(result["masks"], boxes, result["boxes"], (rh, rw), (oh, ow),
                                                  self.info.get("mask_resolution"))
            out.append({k: torch.as_tensor(np.asarray(v)) for k, v in result.items()})
        return out

    def _open_session(self, device: str, threads: int | None):
        """The runtime's session: onnxruntime here (``OpenVinoBackend`` overrides it)."""
        return open_session(self.path, device, threads)

    def check_settings(self, settings: dict) -> None:
        """Refuse settings the graph fixed at export and cannot change at run time, naming the
        export command that would bake the wanted value in. Settings applied after the graph
        (score and mask thresholds, a smaller detection cap, polygon points, the classification
        resize, a Mask R-CNN's min_size/max_size) are free; the predictor calls this with its
        resolved settings, which is also where this backend takes those sizes from."""
        fixed = self.info.get("fixed") or {}
        problems = []
        for key, value in fixed.items():
            wanted = settings.get(key)
            if wanted is None or key == "box_score_threshold":
                continue
            if key == "box_detections_per_image":
                ok = int(wanted) <= int(value)
            else:
                ok = abs(float(wanted) - float(value)) < 1e-9
            if not ok:
                problems.append((key, wanted, value))
        if problems:
            sets = " ".join(f"--set {k}={w}" for k, w, _ in problems)
            what = ", ".join(f"{k}={w} (the graph has {v})" for k, w, v in problems)
            sizes = any(k in ("min_size", "max_size") for k, _, _ in problems)
            hint = (f" (the graph takes {self.resize['width']}x{self.resize['height']} images, sized from them; "
                    f"or pick the size with --height H --width W)") if sizes else ""
            raise UsageError(f"{self.path}: {what}: fixed when the model was exported. Export it again with "
                             f"`visionml export --model MODEL_DIR --format onnx -o OUT {sets}`{hint}, "
                             f"or use --backend torch")
        floor = fixed.get("box_score_threshold")
        if floor is not None and float(settings.get("box_score_threshold", floor)) < float(floor):
            raise UsageError(f"{self.path}: box_score_threshold={settings['box_score_threshold']} is below "
                             f"{floor}, the lowest score the exported graph keeps; export it again or use "
                             f"--backend torch")
        if self.resize.get("mode") == "min_max" and settings.get("min_size") is not None:
            self._sizes = (int(settings["min_size"]), int(settings["max_size"]))


def _masks_to_image(masks, boxes_in, boxes_out, resized, original, resolution):
    """``[n, 1, rh', rw']`` probabilities at the (padded) input's size -> ``[n, 1, oh, ow]`` at the
    image's. The graph pasted each box's ``resolution`` x ``resolution`` mask into the box's
    pixels at the input's size, as torchvision does (``paste_masks_in_image``: the box widened by
    the mask's one-pixel border, cut to whole pixels); each such region is resized onto the
    region torchvision fills for the box at the image's size, so the mask's edges fall where the
    torch model's do rather than within an input pixel of them (thresholded later by the predictor)."""
    masks = np.asarray(masks, dtype=np.float32)
    (rh, rw), (oh, ow) = resized, original
    out = np.zeros((masks.shape[0], 1, oh, ow), dtype=np.float32)
    if not masks.shape[0]:
        return out
    if (rh, rw) == (oh, ow):
        out[...] = masks[..., :rh, :rw]
        return out
    if not resolution:  # not recorded: the input-size masks resized whole
        return _resize(masks[..., :rh, :rw], (oh, ow))
    widen = (resolution + 2) / resolution  # torchvision's one-pixel border around the mask
    for k in range(masks.shape[0]):
        x0, y0, x1, y1 = _paste_region(boxes_in[k], widen)
        # Where the region runs past the image, its edge repeated: the torch model's mask runs up
        # to the image's edge there, which zeros would blur away in the resize.
        rows = np.clip(np.arange(y0, y1 + 1), 0, rh - 1)
        cols = np.clip(np.arange(x0, x1 + 1), 0, rw - 1)
        region = masks[k, 0][np.ix_(rows, cols)]
        X0, Y0, X1, Y1 = _paste_region(boxes_out[k], widen)
        pasted = _resize(region[None, None], (Y1 - Y0 + 1, X1 - X0 + 1))[0, 0]
        top, left, bottom, right = max(Y0, 0), max(X0, 0), min(Y1 + 1, oh), min(X1 + 1, ow)
        if bottom > top and right > left:
            out[k, 0, top:bottom, left:right] = pasted[top - Y0:bottom - Y0, left - X0:right - X0]
    return out


def _paste_region(box, widen: float) -> tuple[int, int, int, int]:
    """The pixels torchvision pastes a box's mask into: the box widened by ``widen`` about its
    centre, in float32, truncated to whole pixels (last row and column included)."""
    import torch

    x0, y0, x1, y1 = torch.as_tensor(np.asarray(box, dtype=np.float32))
    half_w, half_h = (x1 - x0) * 0.5 * widen, (y1 - y0) * 0.5 * widen
    cx, cy = (x1 + x0) * 0.5, (y1 + y0) * 0.5
    corners = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h]).to(torch.int64).tolist()
    x0, y0, x1, y1 = corners
    return x0, y0, max(x1, x0), max(y1, y0)


def _resize(masks: np.ndarray, size) -> np.ndarray:
    import torch
    from torch.nn.functional import interpolate

    return interpolate(torch.from_numpy(np.ascontiguousarray(masks)), size=tuple(size), mode="bilinear",
                       align_corners=False).numpy()


def _numpy(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
