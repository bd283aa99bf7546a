"""The few collective operations OOO needs under DDP, all no-ops in a single process.

Lightning's DDP strategy sets up the process group; each rank then runs its own
environment and buffer shard. The gradient all-reduce is done here per update stage,
not by DDP's reducer: a stage back-propagates only some of the networks (IQL's value
stage never touches Q), which DDP's reducer cannot follow across several backward passes
per forward.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def launched_rank() -> int:
    """This process's global rank from the launcher's environment (Lightning's subprocess
    launcher, torchrun, SLURM), readable before the process group exists."""
    for name in ("RANK", "SLURM_PROCID"):
        if name in os.environ:
            return int(os.environ[name])
    # Lightning's own launcher sets LOCAL_RANK and NODE_RANK for the processes it starts.
    local = int(os.environ.get("LOCAL_RANK", 0))
    node = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", 0)))
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return node * per_node + local


def launched_externally() -> bool:
    """Whether a launcher outside this process started its ranks: torchrun (WORLD_SIZE) or
    SLURM with several tasks (srun sets SLURM_NTASKS, not WORLD_SIZE)."""
    return "WORLD_SIZE" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) > 1


def is_rank_zero() -> bool:
    """Whether this process writes the run's files: rank 0 of the process group once it
    exists, else of the launcher's environment (before Lightning sets the group up)."""
    return (rank() if is_distributed() else launched_rank()) == 0


def all_reduce_mean_(tensors: list[torch.Tensor]) -> None:
    """Averages ``tensors`` in place over the ranks, in one flat collective."""
    if not tensors or not is_distributed():
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)  # SUM: gloo has no AVG
    flat /= dist.get_world_size()
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def all_gather_tensor(tensor: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """``[world_size, *tensor.shape]`` from every rank (same shape everywhere). ``device`` is
    where the collective runs: NCCL needs the rank's GPU, gloo the CPU."""
    if not is_distributed():
        return tensor.unsqueeze(0)
    local = tensor.to(device).contiguous()
    out = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(out, local)
    return torch.stack(out).to(tensor.device)


def all_gather_rows(rows, device: torch.device | str = "cpu"):
    """A TensorDict of ``n`` rows from every rank (``n`` equal everywhere): ``[world_size, n]``."""
    return rows.apply(lambda t: all_gather_tensor(t, device), batch_size=[world_size(), *rows.batch_size])


def all_gather_objects(obj: Any) -> list[Any]:
    """One picklable object per rank, in rank order."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def collective_device(module_device: torch.device) -> torch.device:
    """Where tensors must be for the current backend's collectives."""
    if is_distributed() and dist.get_backend() == "nccl":
        return module_device
    return torch.device("cpu")
