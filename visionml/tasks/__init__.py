"""The task table: ``TASKS[name]`` is the only dispatch on a task in visionml.

The four built-in tasks have Azure's CLI v2 names; each also answers to the aliases of
DESIGN.md. ``get_task`` turns any spelling (or a ``Task``) into the task object and fails at
once, with the closest names, for anything else. ``register_task`` adds a task (a plugin or a
test) without editing this package.
"""

from __future__ import annotations

from ..errors import UsageError, did_you_mean
from .base import BOXES, CLASS, CLASSES, EMPTY, POLYGONS, SHAPE_WORDS, Task
from .classification import ClassificationTask, MultilabelTask
from .detection import DetectionTask, SegmentationTask

TASKS: dict[str, Task] = {}
_ALIASES: dict[str, str] = {}


def register_task(task: Task) -> Task:
    """Add ``task`` under its name and aliases; a name already taken is an error."""
    for key in (task.name, *task.aliases):
        if key in _ALIASES:
            raise ValueError(f"task name {key!r} is already registered (for {_ALIASES[key]})")
    TASKS[task.name] = task
    _ALIASES.update({key: task.name for key in (task.name, *task.aliases)})
    return task


def unregister_task(name: str) -> None:
    """Remove a task added with ``register_task`` (tests clean up with it)."""
    task = TASKS.pop(name)
    for key in (task.name, *task.aliases):
        _ALIASES.pop(key, None)


def get_task(name) -> Task:
    """The task for any accepted spelling, or a ``Task`` itself; UsageError with the closest names."""
    if isinstance(name, Task):
        return name
    if not isinstance(name, str):
        raise UsageError(f"a task name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key in _ALIASES:
        return TASKS[_ALIASES[key]]
    raise UsageError(f"unknown task {name!r}.{did_you_mean(key, list(_ALIASES))} "
                     f"Valid tasks: {', '.join(TASKS)}.")


def canonical_task(name) -> str:
    """The canonical name of any accepted spelling."""
    return get_task(name).name


def task_for_shape(shape: str) -> Task | None:
    """The task inferred from a label shape when no task is given."""
    return next((t for t in TASKS.values() if t.inferred_from == shape), None)


MULTICLASS = register_task(ClassificationTask())
MULTILABEL = register_task(MultilabelTask())
DETECTION = register_task(DetectionTask())
SEGMENTATION = register_task(SegmentationTask())

__all__ = [
    "BOXES", "CLASS", "CLASSES", "DETECTION", "EMPTY", "MULTICLASS", "MULTILABEL", "POLYGONS", "SEGMENTATION",
    "SHAPE_WORDS", "TASKS", "Task", "canonical_task", "get_task", "register_task", "task_for_shape",
    "unregister_task",
]

