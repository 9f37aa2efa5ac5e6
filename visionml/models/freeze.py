"""``layers_to_freeze``: freeze the first N layer groups of a backbone, as Azure counts them.

Azure freezes whole stages in order from the input: for ResNets ``(conv1, bn1)``, ``layer1``
... ``layer4``; for MobileNet/EfficientNet each ``features.i``; for ViT the patch embedding
then each encoder block; for detectors the same groups inside ``backbone.body``.
"""

from __future__ import annotations

from ..errors import UsageError
from .registry import get_spec


def freeze_groups(model) -> list[tuple[str, ...]]:
    """Parameter-name prefixes of each freezable group, from the input side."""
    names = dict(model.named_modules())
    for root in ("backbone.body.", "backbone.features.", ""):
        base = names.get(root.rstrip("."))
        if base is None:
            continue
        groups = _groups_of(base, root)
        if groups:
            return groups
    return []


def _groups_of(module, prefix: str) -> list[tuple[str, ...]]:
    children = dict(module.named_children())
    if "layer1" in children:  # torchvision/timm ResNet family (incl. SE-ResNeXt, ResNeSt)
        stem = tuple(f"{prefix}{n}." for n in children if not n.startswith("layer") and n not in ("fc", "avgpool"))
        layers = [(f"{prefix}{n}.",) for n in children if n.startswith("layer")]
        return [stem, *layers]
    if "features" in children:  # MobileNet, EfficientNet classifiers
        return [(f"{prefix}features.{n}.",) for n, _ in children["features"].named_children()]
    if "encoder" in children and "conv_proj" in children:  # torchvision ViT
        stem = (f"{prefix}conv_proj.", f"{prefix}class_token", f"{prefix}encoder.pos_embedding")
        blocks = [(f"{prefix}encoder.layers.{n}.",) for n, _ in children["encoder"].layers.named_children()]
        return [stem, *blocks]
    if "blocks" in children and "patch_embed" in children:  # timm ViT
        stem = (f"{prefix}patch_embed.", f"{prefix}cls_token", f"{prefix}pos_embed")
        return [stem, *[(f"{prefix}blocks.{n}.",) for n, _ in children["blocks"].named_children()]]
    if prefix and all(n.isdigit() for n in children):  # MobileNet detector bodies: numbered stages
        return [(f"{prefix}{n}.",) for n in children]
    return []


def freeze_layers(model, name: str, n: int | None) -> int:
    """Freeze (``requires_grad=False``) the first ``n`` groups of model ``name``; returns params frozen."""
    if not n:
        return 0
    groups = freeze_groups(model)
    if n > len(groups):
        raise UsageError(f"layers_to_freeze={n} but {get_spec(name).name} has {len(groups)} freezable layer "
                         f"groups; use a value from 0 to {len(groups)}")
    prefixes = tuple(p for group in groups[:n] for p in group)
    frozen = 0
    for pname, param in model.named_parameters():
        if pname.startswith(prefixes):
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen
