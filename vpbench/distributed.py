"""Data-parallel training on PyTorch's own engine (``torchrun`` + DistributedDataParallel).

``torchrun --nproc-per-node N -m vpbench run MODEL ...`` starts N processes; each finds its
rank in the environment, joins the process group (NCCL on CUDA, gloo on CPU) and trains on its
slice of every global batch (:class:`vpbench.train.IndexStream`), so the optimisation sees the
same global batches as one process with ``train.batch_size`` clips. Only rank 0 writes files.
Evaluation shards the clips over ranks and gathers every per-clip score on rank 0 before any
aggregate is computed. Checkpoints hold the unwrapped model, so a run resumes on any number
of processes (with the same global batch size). No model needs code for any of this.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from vpbench.errors import ConfigError


class StepModule(nn.Module):
    """Routes DDP's ``forward`` to the model's ``training_step`` (what the trainer calls)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch, stage: str):
        return self.model.training_step(batch, stage)


@dataclass
class Context:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    def wrap(self, model: nn.Module) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(StepModule(model), device_ids=ids)

    def all_true(self, flag: bool) -> bool:
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item() > 0)

    def any_true(self, flag: bool) -> bool:
        return not self.all_true(not flag)

    def gather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        dist.barrier()


def from_env(device_name: str = "auto") -> Context | None:
    """The process group of a ``torchrun`` launch, or ``None`` for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if use_cuda:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Context(rank, world, local_rank, device)


def check_batch(batch_size: int, ctx: Context | None, what: str = "train.batch_size") -> None:
    """Every process trains on an equal slice of each global batch."""
    if ctx is not None and batch_size % ctx.world:
        raise ConfigError(f"{what} ({batch_size}) must be divisible by the number of processes ({ctx.world})")


def shutdown(ctx: Context | None, finished: bool = True) -> None:
    """Leave the process group. After a finished command every rank arrives first, so none
    tears its connections down while another still talks to it; after an error there is no
    barrier (the other ranks may be anywhere)."""
    if ctx is not None and dist.is_initialized():
        if finished:
            try:
                dist.barrier()
            except RuntimeError:
                pass  # another rank is already gone: tear down all the same
        dist.destroy_process_group()
