"""A folder of class sub-folders (``SRC/<class>/<image>``, torchvision's ImageFolder layout) ->
multi-class records."""

from __future__ import annotations

from pathlib import Path

from ..errors import VisionMLError
from ..tasks import CLASS, CLASSES
from .common import IMAGE_SUFFIXES, Converted, Problems, converter_task, new_record, open_image


def read_imagefolder(src, *, task: str | None = None) -> Converted:
    """Every image under ``SRC/<class>/`` (sub-folders included) labelled ``<class>``. With
    ``--task image_classification_multilabel`` each label is a one-element list."""
    src = Path(src)
    task = converter_task(task, (CLASS, CLASSES), "a class-per-folder tree is classification data")
    single = CLASS in task.label_shapes
    if not src.is_dir():
        raise VisionMLError(f"{src}: not a folder of class sub-folders")
    classes = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise VisionMLError(f"{src}: no class sub-folders (expected SRC/<class>/<image>)")
    problems, records, notes = Problems(), [], []
    for folder in classes:
        # Anything named as an image but a folder is checked, so a named pipe or a device is reported.
        images = sorted(p for p in folder.rglob("*")
                        if not p.is_dir() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            notes.append(f"class folder {folder} has no images")
        for image in images:
            info = open_image(image, problems, image, "image")
            if info is None:
                continue
            rec = new_record(image, info, image)
            rec.label = folder.name if single else [folder.name]
            records.append(rec)
    labels = sorted({r.label if single else r.label[0] for r in records})
    return Converted(task, labels, records, list(problems), notes)
