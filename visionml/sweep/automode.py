"""AutoMode: the built-in search space per task when a job gives ``max_trials`` > 1 and no
``search_space`` (as Azure does). On a machine without a GPU it sweeps models that train in
minutes on a CPU; with a GPU, Azure's own larger models."""

from __future__ import annotations

from ..tasks import get_task
from .space import parse_search_space

def automode_space(task, gpu: bool):
    """The parsed AutoMode search space for ``task`` (a list of sub-spaces): ``Task.automode``."""
    task = get_task(task)
    return parse_search_space(task.automode["gpu" if gpu else "cpu"], f"automode[{task}]")
