"""DistributedDataParallel set-up for runs launched by ``torchrun`` (one process per device).

Outside torchrun everything here is a no-op on a single process, so the loop calls the same
functions in both cases.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    started_here: bool = False
    """True when this module initialised the process group (and so must destroy it)."""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_kind: str) -> DistInfo:
    """Join the process group that torchrun described in the environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    started = False
    if not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" and torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)  # object collectives use the current device
        dist.init_process_group(backend=backend)
        started = True
    return DistInfo(rank, world_size, local_rank, started)


def cleanup(info: DistInfo) -> None:
    if info.started_here and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast(info: DistInfo, value):
    """Rank 0's ``value`` on every rank (any picklable object)."""
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_lists(info: DistInfo, items: list) -> list:
    """Concatenate every rank's list on every rank (validation predictions)."""
    if not info.enabled:
        return items
    parts = [None] * info.world_size
    dist.all_gather_object(parts, items)
    return [item for part in parts for item in part]


def shard_indices(info: DistInfo, length: int) -> list[int]:
    """This rank's share of the validation set, without the padding DistributedSampler adds."""
    return list(range(info.rank, length, info.world_size))


def sum_scalars(info: DistInfo, values: dict) -> dict:
    """Sum a dict of numbers across ranks (loss sums, image counts)."""
    if not info.enabled:
        return values
    keys = sorted(values)
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"  # NCCL reduces GPU tensors only
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return dict(zip(keys, tensor.tolist()))
