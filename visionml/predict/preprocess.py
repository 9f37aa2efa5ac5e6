"""A classifier's input from an RGB image, bit for bit what ``DataConfig.eval_transform`` gives
(the validation transform of training), in one PyTorch call instead of five.

``eval_transform`` (torchvision v2: to tensor, resize, centre crop, to float, normalise) runs
each step as its own PyTorch operation, and each of the four on the 224x224 crop is a parallel
region of PyTorch's OpenMP pool. At batch 1 on a small CPU that pool is the cost: its threads
spin after every region and then compete with onnxruntime's own intra-op threads, so the onnx
backend's speed did not reach ``m.predict`` (resnet18 at 224, 2 threads, a loaded 2-core
machine: eval_transform took a median 52 ms, this 2.2 ms, for 3 ms of work;
``benchmarks/bench_end_to_end.py``). Here the resize is PyTorch's own antialiased uint8 kernel,
the one ``eval_transform`` calls (Pillow's resize differs by one level in about 1% of the
pixels), and the crop and normalisation are numpy on the main thread, with the same float32
operations in the same order, so the result is identical. ``tests/scoring/test_preprocess.py``
checks that against ``eval_transform`` on images larger, smaller and of the crop's size.
"""

from __future__ import annotations

import numpy as np


def classifier_input(pil, data_config) -> np.ndarray:
    """float32 ``[3, crop, crop]``, C-contiguous: ``pil`` (RGB) with its shorter side resized to
    ``resize_size`` (bilinear, antialiased), centre-cropped to ``crop_size`` and normalised with
    the config's mean and std. Configs and images this does not cover exactly (a crop larger
    than the resize, which torchvision pads; a non-RGB image) go through ``eval_transform``."""
    size, crop = int(data_config.resize_size), int(data_config.crop_size)
    if pil.mode != "RGB" or crop > size:
        return data_config.eval_transform(pil).numpy()
    height, width = resized_size(pil.height, pil.width, size)
    pixels = np.array(pil)  # HWC uint8; a copy PyTorch may write to, as torchvision's ToImage makes
    if (height, width) != (pil.height, pil.width):
        pixels = _resize_uint8(pixels, height, width)
    top, left = int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0))
    return normalise(pixels[top:top + crop, left:left + crop], data_config.mean, data_config.std)


def resized_size(height: int, width: int, shorter: int) -> tuple[int, int]:
    """torchvision's ``Resize(shorter)`` output ``(height, width)``: the shorter side to
    ``shorter``, the longer scaled and truncated."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(shorter * long / short)
    return (new_long, shorter) if width <= height else (shorter, new_long)


def normalise(pixels: np.ndarray, mean, std) -> np.ndarray:
    """uint8 HWC pixels -> float32 CHW ``(x / 255 - mean) / std``, computed as torchvision's
    ``ToDtype(scale=True)`` and ``Normalize`` compute it (x * float32(1/255), then subtract, then
    divide, each rounded to float32), so the values are identical."""
    out = np.empty((3, *pixels.shape[:2]), dtype=np.float32)
    np.multiply(pixels.transpose(2, 0, 1), np.float32(1.0 / 255), out=out, dtype=np.float32)
    out -= np.asarray(mean, dtype=np.float32)[:, None, None]
    out /= np.asarray(std, dtype=np.float32)[:, None, None]
    return out


def _resize_uint8(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """PyTorch's antialiased bilinear resize of uint8 HWC pixels (the kernel torchvision's
    ``Resize(antialias=True)`` calls on a uint8 image), as HWC uint8."""
    import torch
    from torch.nn.functional import interpolate

    image = torch.from_numpy(pixels).permute(2, 0, 1)[None]  # channels-last [1, 3, h, w]
    # As torchvision does for one channels-last image: strides that make the output channels-last
    # too, which spares PyTorch's uint8 kernel a repacking copy.
    image = image.as_strided(image.shape, (image.numel(), *image.stride()[1:]))
    resized = interpolate(image, size=[height, width], mode="bilinear", align_corners=False, antialias=True)
    return resized[0].permute(1, 2, 0).numpy()
