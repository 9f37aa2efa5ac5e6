"""The four attribution methods, each returning a float32 array [3, H, W] for one class.

Computed as Azure AutoML computes them (explainability/methods.py): integrated gradients and
guided backprop inside captum's ``NoiseTunnel`` (smoothgrad: 5 noisy copies of the input, noise
stdev 0.2 on the normalised input, all 5 in one batch), attributing the class logit (the network's
output, before softmax or sigmoid), IG with Azure's internal batch of 5 rows per pass; guided
Grad-CAM plain; XRAI is PAIR's ``saliency`` package on the class probability. What is ours is how
they are fed:

* Every explanation runs on a private copy of the predictor's model (``ExplainModel``):
  captum's guided methods put hooks on the ReLU modules, and a hook on the shared model
  would break a concurrent ``predict`` (a hook cannot be registered on a tensor that does
  not require grad). The copy also has non-inplace ReLUs, so guided backprop sees each
  ReLU's own input.
* The noise is drawn from a generator seeded for each explanation, not from torch's global one:
  the same image gets the same explanation every time, and nothing global changes.
* Integrated gradients run under bfloat16 autocast with a channels-last copy when the CPU
  computes bf16 natively (AVX512-BF16/AMX); elsewhere in float32.
* XRAI gets its integrated-gradients attribution from one batched captum call (both of XRAI's
  baselines at once) instead of running its own IG one sample at a time, and its Felzenszwalb
  segments with a faster (identical) dilation.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import threading
import warnings
import weakref

import numpy as np
import torch
from torch import nn

from ..errors import VisionMLError
from ..tasks import get_task

_STEP_BATCH = 25  # XRAI's IG steps per forward/backward: measured fastest for resnet18 at 224 on CPU
# Azure's NoiseTunnelDefaults and IntegratedGradientsDefaults (explainability/constants.py).
NT_TYPE, NT_SAMPLES, NT_STDEV, NT_SAMPLES_BATCH = "smoothgrad", 5, 0.2, 5
IG_INTERNAL_BATCH = 5  # rows per IG forward/backward; also measured the fastest here (benchmarks/)
NOISE_SEED = 0


def bf16_available(device: torch.device) -> bool:
    """True where bf16 matmuls/convolutions are native (not emulated, which is slower than fp32)."""
    if device.type != "cpu":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class ExplainModel:
    """A private, explanation-ready copy of a classifier and how to run it fast."""

    def __init__(self, model: nn.Module, task: str, fast: bool = True):
        self.device = next(model.parameters()).device
        self.task = get_task(task)
        self.bf16 = fast and bf16_available(self.device)
        self.model = copy.deepcopy(model).eval()
        for module in self.model.modules():
            if isinstance(module, nn.ReLU):
                module.inplace = False
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)  # only input gradients are ever needed
        if self.bf16:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.lock = threading.Lock()  # captum hooks on the copy must not overlap

    def logits(self, x: torch.Tensor, bf16: bool | None = None) -> torch.Tensor:
        """The class logits (what Azure's IG and guided backprop attribute), differentiable in ``x``."""
        if self.bf16 if bf16 is None else bf16:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self.model(x.contiguous(memory_format=torch.channels_last)).float()
        return self.model(x)

    def probabilities(self, x: torch.Tensor, bf16: bool | None = None) -> torch.Tensor:
        """The class probabilities the user sees (softmax or sigmoid), differentiable in ``x``: XRAI's."""
        return self.task.activation(self.logits(x, bf16).float())


_CACHE: "weakref.WeakKeyDictionary[nn.Module, ExplainModel]" = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def explain_model_for(model: nn.Module, task: str) -> ExplainModel:
    """One prepared copy per loaded model, made on first use and dropped with the model."""
    with _CACHE_LOCK:
        prepared = _CACHE.get(model)
        if prepared is None or prepared.task != task:
            prepared = _CACHE[model] = ExplainModel(model, task)
        return prepared


def integrated_gradients(em: ExplainModel, x: torch.Tensor, target: int, n_steps: int, method: str) -> torch.Tensor:
    """Azure's integrated gradients: captum IG of the class logit from a black (all-zero) baseline,
    ``n_steps`` steps of ``method``, inside NoiseTunnel smoothgrad. ``x`` [1,3,H,W] -> [1,3,H,W]."""
    from captum.attr import IntegratedGradients

    def run(forward):
        with em.lock:
            return noise_tunnel(IntegratedGradients(forward), x.device).attribute(
                x, target=target, n_steps=n_steps, method=method, internal_batch_size=IG_INTERNAL_BATCH,
                **_NOISE)

    attr = run(em.logits)
    if em.bf16 and not torch.isfinite(attr).all():
        attr = run(functools.partial(em.logits, bf16=False))  # bf16 overflowed on the path: float32
    return attr


_NOISE = {"nt_type": NT_TYPE, "nt_samples": NT_SAMPLES, "stdevs": NT_STDEV, "nt_samples_batch_size": NT_SAMPLES_BATCH}


def noise_tunnel(attribution_method, device: torch.device):
    """captum's NoiseTunnel around ``attribution_method``, its noise drawn from a generator seeded with
    ``NOISE_SEED`` (captum draws from torch's global generator): the same input gives the same
    attribution, and no other thread's random numbers move. The draw itself is captum's."""
    return _seeded_noise_tunnel()(attribution_method, torch.Generator(device=device).manual_seed(NOISE_SEED))


@functools.cache
def _seeded_noise_tunnel():
    from captum.attr import NoiseTunnel

    class SeededNoiseTunnel(NoiseTunnel):
        def __init__(self, attribution_method, generator: torch.Generator):
            super().__init__(attribution_method)
            self.generator = generator

        def _add_noise_to_input(self, input, stdev, nt_samples_partition):  # noqa: A002 - captum's names
            size = (input.shape[0] * nt_samples_partition, *input.shape[1:])
            noise = torch.normal(0, torch.tensor(stdev, device=input.device).repeat(size), generator=self.generator)
            return input.repeat_interleave(nt_samples_partition, dim=0) + noise

    return SeededNoiseTunnel


def _xrai_integrated_gradients(em: ExplainModel, x: torch.Tensor, target: int, n_steps: int, method: str,
                               baselines: torch.Tensor) -> torch.Tensor:
    """captum IG of the class probability (XRAI's base attribution, as saliency computes it: no noise);
    ``x`` [N,3,H,W] (N baselines of one image) -> [N,3,H,W]."""
    from captum.attr import IntegratedGradients

    def run(bf16):
        with em.lock:
            return IntegratedGradients(functools.partial(em.probabilities, bf16=bf16)).attribute(
                x, baselines=baselines, target=target, n_steps=n_steps, method=method,
                internal_batch_size=_STEP_BATCH)

    attr = run(None)
    if em.bf16 and not torch.isfinite(attr).all():
        attr = run(False)
    return attr


def _needs_grad(x: torch.Tensor) -> torch.Tensor:
    """captum would set requires_grad on the caller's tensor itself, with a warning each time."""
    return x.detach().clone().requires_grad_(True)


@contextlib.contextmanager
def _quiet_relu_hooks():
    """captum's guided methods warn on every call that they hook the ReLUs, which they remove
    again: expected here (on a private copy), so not shown. Other warnings still are."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations",
                                category=UserWarning)
        yield


def guided_backprop(em: ExplainModel, x: torch.Tensor, target: int) -> torch.Tensor:
    """Azure's guided backprop: captum's, of the class logit, inside NoiseTunnel smoothgrad."""
    from captum.attr import GuidedBackprop

    with em.lock, _quiet_relu_hooks():
        return noise_tunnel(GuidedBackprop(em.model), x.device).attribute(_needs_grad(x), target=target, **_NOISE)


def guided_gradcam(em: ExplainModel, x: torch.Tensor, target: int, layer_name: str) -> torch.Tensor:
    """captum guided Grad-CAM of the class logit at ``layer_name`` (a conv stage of the model)."""
    from captum.attr import GuidedGradCam

    layer = em.model.get_submodule(layer_name)
    with em.lock, _quiet_relu_hooks():
        return GuidedGradCam(em.model, layer).attribute(_needs_grad(x), target=target)


def gradcam_layer(model: nn.Module, model_name: str | None) -> str:
    """The registry's Grad-CAM layer for ``model_name``; else the last Conv2d in the module tree."""
    spec = None
    if model_name:
        from ..models.registry import get_spec

        try:
            spec = get_spec(model_name)
        except VisionMLError:
            spec = None  # a model folder from elsewhere: fall back to looking at the modules
    if spec is not None:
        if spec.gradcam_layer is None:
            raise VisionMLError(
                f"xai_algorithm guided_gradcam needs a convolutional layer, and model {model_name!r} "
                "(a vision transformer) has none. Use xrai, integrated_gradients or guided_backprop.")
        return spec.gradcam_layer
    convs = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    if not convs:
        raise VisionMLError(
            f"xai_algorithm guided_gradcam needs a convolutional layer, and model {model_name!r} has none. "
            "Use xrai, integrated_gradients or guided_backprop.")
    return convs[-1]


def xrai(em: ExplainModel, x: torch.Tensor, target: int, n_steps: int, method: str, fast: bool) -> np.ndarray:
    """saliency's XRAI map [H,W] for ``target``, from IG with XRAI's own black and white baselines."""
    import saliency.core as saliency

    # saliency's default baselines: the input's min and max values; both in one captum call.
    baselines = torch.cat([torch.full_like(x, float(x.min())), torch.full_like(x, float(x.max()))])
    attr = _xrai_integrated_gradients(em, x.expand(2, -1, -1, -1), target, n_steps, method, baselines)
    ig_hwc = attr.mean(0).permute(1, 2, 0).detach().cpu().numpy().astype(np.float64)
    x_hwc = x[0].permute(1, 2, 0).detach().cpu().numpy().astype(np.float64)
    parameters = saliency.XRAIParameters(algorithm="fast" if fast else "full")
    result = saliency.XRAI().GetMaskWithDetails(
        x_hwc, call_model_function=None, base_attribution=ig_hwc,
        segments=felzenszwalb_segments(x_hwc), extra_parameters=parameters)
    return result.attribution_mask.astype(np.float32)


def felzenszwalb_segments(image_hwc: np.ndarray) -> list[np.ndarray]:
    """The masks ``saliency.core.xrai._get_segments_felzenszwalb`` makes, dilated with OpenCV.

    skimage's per-mask ``dilation`` is most of XRAI's segmentation time (hundreds of masks);
    ``cv2.dilate`` with the same disk footprint gives the same masks (pinned by a test) ~30x
    faster. The scales, sigma, resize and minimum size are saliency's own constants.
    """
    import cv2
    from saliency.core import xrai as sx
    from skimage import segmentation
    from skimage.morphology import disk
    from skimage.transform import resize

    original_shape = image_hwc.shape[:2]
    image = sx._normalize_image(image_hwc, sx._FELZENSZWALB_IM_VALUE_RANGE, sx._FELZENSZWALB_IM_RESIZE)
    segs = []
    for scale in sx._FELZENSZWALB_SCALE_VALUES:
        for sigma in sx._FELZENSZWALB_SIGMA_VALUES:
            seg = segmentation.felzenszwalb(image, scale=scale, sigma=sigma,
                                            min_size=sx._FELZENSZWALB_MIN_SEGMENT_SIZE)
            segs.append(resize(seg, original_shape, order=0, preserve_range=True, mode="constant",
                               anti_aliasing=False).astype(int))
    footprint = disk(5).astype(np.uint8)  # saliency's default dilation_rad
    return [cv2.dilate(mask.astype(np.uint8), footprint).astype(bool) for mask in sx._unpack_segs_to_masks(segs)]
