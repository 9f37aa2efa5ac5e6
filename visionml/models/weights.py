"""Pretrained weights through torch's normal hub cache, honouring offline mode.

torchvision's builders read ``torch.hub.get_dir()/checkpoints/<file from the URL>`` and only
download when the file is absent. We make sure the file is there first (downloading it when
allowed), so a missing file fails fast with the exact name, folder and URL instead of a
stack trace from deep inside a builder. timm weights use the same folder, downloaded from
the Hugging Face Hub URL that timm's pretrained config names.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from ..errors import VisionMLError

OFFLINE_VARIABLES = ("VISIONML_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def offline() -> bool:
    """True when the user asked for no network (any of OFFLINE_VARIABLES set to 1/true/yes)."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in OFFLINE_VARIABLES)


def checkpoints_dir() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def torchvision_weights(ref: str):
    """``"ResNet18_Weights.IMAGENET1K_V1"`` -> the torchvision Weights enum member."""
    from torchvision.models import get_weight

    return get_weight(ref)


def timm_weights_url(ref: str) -> tuple[str, str]:
    """``"seresnext50_32x4d.racm_in1k"`` -> (download URL, cache file name)."""
    import timm.models

    cfg = timm.models.get_pretrained_cfg(ref)
    if cfg is None:
        raise VisionMLError(f"timm has no pretrained weights named {ref!r}; pass --no-pretrained")
    if cfg.hf_hub_id:
        url = f"https://huggingface.co/{cfg.hf_hub_id}/resolve/main/model.safetensors"
        return url, f"{ref}.safetensors"
    if cfg.url:
        return cfg.url, os.path.basename(urlparse(cfg.url).path)
    raise VisionMLError(f"timm's pretrained config for {ref!r} names no download location; pass --no-pretrained")


def weights_location(ref: str) -> tuple[str, Path]:
    """(URL, expected cache path) for a registry weights reference ``source:name``."""
    source, _, name = ref.partition(":")
    if source == "torchvision":
        url = torchvision_weights(name).url
        file_name = os.path.basename(urlparse(url).path)
    elif source == "timm":
        url, file_name = timm_weights_url(name)
    else:
        raise ValueError(f"unknown weights source in {ref!r}")
    return url, checkpoints_dir() / file_name


def ensure_cached(ref: str, model_name: str) -> Path:
    """Return the cached weights file for ``ref``, downloading it when allowed.

    Raises VisionMLError naming the file, the folder to put it in and the URL when the file
    is neither cached nor downloadable (offline mode, no network, HTTP error).
    """
    url, path = weights_location(ref)
    if path.is_file():
        return path
    if offline():
        raise _missing(model_name, url, path, "offline mode is on (VISIONML_OFFLINE / HF_HUB_OFFLINE)")
    import torch.hub

    from .weights_store import source_url

    url = source_url(url, path.name)  # a mirror, when VISIONML_WEIGHTS_BASE_URL names one
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Writes to a temporary name and renames, so an interrupted download leaves no half file.
        torch.hub.download_url_to_file(url, str(path), progress=True)
    except Exception as exc:  # any network/HTTP/filesystem failure means the same thing to the user
        raise _missing(model_name, url, path, f"the download failed ({type(exc).__name__}: {exc})") from exc
    return path


def load_cached_state(ref: str, model_name: str) -> dict:
    """The state dict of ``ref``'s cached weights file (``ensure_cached``), read with
    ``weights_only=True``. A file that is damaged, cut short or not a plain tensor file (torch
    refuses to unpickle anything else) is one error naming it and what to do, not a traceback."""
    import torch

    path = ensure_cached(ref, model_name)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError (zip), EOFError, ...: all a bad file
        raise VisionMLError(
            f"{path}: the pretrained weights for {model_name} cannot be read ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else 'no detail'}). Delete the file and run again to "
            f"download it, or place a good copy (`visionml weights download {model_name} -o DIR` on a machine "
            f"with network, then `visionml weights install DIR`); or train with --no-pretrained.") from None
    if not isinstance(state, dict):
        raise VisionMLError(f"{path}: the pretrained weights for {model_name} are not a state dict "
                            f"(got {type(state).__name__}); delete the file and run again")
    return state


def _missing(model_name: str, url: str, path: Path, why: str) -> VisionMLError:
    return VisionMLError(
        f"pretrained weights for {model_name} are not cached and {why}. "
        f"Download {url} and save it as {path.name} in {path.parent} "
        f"(set TORCH_HOME to use another cache folder); or, on a machine with network, run "
        f"`visionml weights download {model_name} -o DIR`, copy DIR here and run `visionml weights install DIR`; "
        f"or train from scratch with --no-pretrained."
    )
