"""How many intra-op threads inference uses on this machine.

One count governs both backends and the shared preprocessing: onnxruntime's session is created
with it, and PyTorch's pool has it when a command sets it (``--threads``). The default is
PyTorch's own (``OMP_NUM_THREADS`` when set, else one per physical core of the CPUs this process
may run on: ``taskset`` and cpusets count), capped by a container's CPU quota, which PyTorch
does not read: a ``docker run --cpus 2`` on a 32-core host would otherwise run 16 threads on two
cores' worth of time, each of PyTorch's barriers waiting for threads the quota has paused.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

_CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1 = (Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))


def default_threads() -> int:
    """Intra-op threads for inference here: ``torch.get_num_threads()``, at most the CPUs this
    process may use and the container's CPU quota (rounded up), at least 1."""
    import torch

    threads = torch.get_num_threads()
    limits = [threads, _affinity_cpus()]
    quota = cpu_quota()
    if quota is not None:
        limits.append(math.ceil(quota))
    return max(1, min(limits))


def use_threads(requested: int | None) -> int:
    """For a command, which owns its process: ``requested`` (its ``--threads``) or
    ``default_threads()``, made PyTorch's intra-op count (process-wide) and returned for the
    onnxruntime session. Library code leaves PyTorch's setting alone and passes ``threads`` to
    ``Predictor.from_folder`` instead."""
    import torch

    threads = int(requested or default_threads())
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads


def cpu_quota() -> float | None:
    """CPUs' worth of time the cgroup allows (``cpu.max`` of cgroup v2, ``cfs_quota_us`` of v1),
    or None when unlimited or unknown."""
    try:
        if _CGROUP_V2.is_file():
            quota, period = _CGROUP_V2.read_text().split()[:2]  # "200000 100000", or "max 100000"
            return None if quota == "max" else int(quota) / int(period)
        quota_file, period_file = _CGROUP_V1
        if quota_file.is_file() and period_file.is_file():
            quota = int(quota_file.read_text())
            return None if quota <= 0 else quota / int(period_file.read_text())
    except (OSError, ValueError, ZeroDivisionError):
        return None
    return None


def _affinity_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1
