"""``torch.distributed`` plumbing for cache building and training.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the process group is
started with NCCL when the device is a GPU and gloo on the CPU; a plain
``python`` run is a world of one and needs no process group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: ``rank`` of ``world_size``, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when a GPU exists, else ``cpu``."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    return device


def setup(
    device: str = "auto", backend: str | None = None, timeout: timedelta | None = None
) -> DistEnv:
    """Read the torchrun environment and start the process group if needed.

    ``backend`` defaults to NCCL on GPU and gloo on CPU. The cache builder uses
    gloo with a long ``timeout``: it only waits for the slowest rank at the end.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
        kwargs: dict[str, Any] = {"backend": backend}
        if timeout is not None:
            kwargs["timeout"] = timeout
        dist.init_process_group(**kwargs)
    return DistEnv(rank, world, local_rank, dev)


def barrier(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        if env.device.type == "cuda" and dist.get_backend() == "nccl":
            dist.barrier(device_ids=[env.device.index])
        else:
            dist.barrier()


def all_gather_object(env: DistEnv, obj: Any) -> list[Any]:
    """Every rank's ``obj`` (a one-element list outside torchrun)."""
    if not (env.distributed and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def _collective_device(env: DistEnv) -> torch.device:
    return env.device if dist.get_backend() == "nccl" else torch.device("cpu")


def mean_across_ranks(env: DistEnv, value: float) -> float:
    """Average a Python float over all ranks."""
    if not (env.distributed and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_collective_device(env))
    dist.all_reduce(t)
    return float(t.item()) / env.world_size


def sum_across_ranks(env: DistEnv, value: int) -> int:
    if not (env.distributed and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_collective_device(env))
    dist.all_reduce(t)
    return int(t.item())


def teardown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()
