"""The CPU-time hint: when settings will take hours on a CPU, name ``--preset cpu``."""

from __future__ import annotations

from collections.abc import Mapping

from ..tasks import get_task


def cpu_time_hint(task, hp: Mapping, n_images: int | None = None, *, device: str = "cpu",
                  preset: str | None = None) -> str | None:
    """A one-line hint naming ``--preset cpu`` when these settings will take hours on a CPU.

    A rough estimate: seconds per training image for the model at its input size, measured on a
    2-core CPU (see docs/models.md), times images and epochs. None on a GPU, when fast enough, or
    when the run already uses the ``cpu`` preset (the hint's only advice).
    """
    if not str(device).startswith("cpu") or preset == "cpu":
        return None
    task = get_task(task)
    seconds = _cpu_seconds_per_image(task, hp)
    images = n_images if n_images is not None else 500
    hours = seconds * images * hp["number_of_epochs"] / 3600
    if hours < 0.5:
        return None
    cpu_model = task.cpu_preset.get("model_name", task.default_model)
    size = f"{images} images" if n_images is not None else "500 images (a guess)"
    return (f"hint: {hp['model_name']} with these settings needs roughly {hours:.1f} hours on this CPU for "
            f"{size} x {hp['number_of_epochs']} epochs. `--preset cpu` trains {cpu_model} at a small image "
            f"size in minutes (add --no-pretrained to train from scratch); --set values still override it.")


def _cpu_seconds_per_image(task, hp: Mapping) -> float:
    """Training seconds per image on a 2-core CPU in fp32 at a reference size (pixels of the shorter
    side), scaled by image area: measured per model where the registry has a figure, else the
    family's, scaled by parameters relative to the model the family's figure was measured on."""
    from ..models.registry import get_spec, parameter_count

    spec = get_spec(hp["model_name"], task)
    family = spec.family
    if spec.cpu_cost is not None:
        seconds, ref = spec.cpu_cost
    else:
        seconds, ref = family.cpu_seconds, family.cpu_reference_size
        if family.cpu_reference_model:
            seconds *= parameter_count(spec.name) / parameter_count(family.cpu_reference_model)
    if hp["precision"] == "bf16" and _native_bf16():  # bf16 autocast about halves conv-net time where native
        seconds *= 0.5
    return seconds * (family.cpu_size(hp) / ref) ** 2


def _native_bf16() -> bool:
    from ..explain.methods import bf16_available

    import torch

    return bf16_available(torch.device("cpu"))
