"""Data-parallel Pyro training and AIS over ``torch.distributed`` ranks.

Start one process per device with ``torchrun`` (``--nproc-per-node N``; several nodes with
``--nnodes``), initialise the process group (``gloo`` on CPUs, ``nccl`` on GPUs; see
:func:`init_distributed`), seed every rank with the *same* ``pyro.set_rng_seed(s)``, and
pass ``distributed=True`` to :class:`~ebm_ppl.pyro.SAMLE` or :func:`~ebm_ppl.pyro.AIS`.
Each rank's random stream is then derived from ``(s, rank)``, so a run is deterministic per
seed and world size, and the ranks' chains differ. The collectives used here are the
plain ``all_reduce`` / ``all_gather`` / ``broadcast`` of ``torch.distributed``.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["init_distributed", "rank_and_world", "rank_seed"]


def init_distributed(backend: str | None = None) -> tuple[int, int]:
    """Initialise the default process group from ``torchrun``'s environment (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ...) if it is not yet; returns ``(rank, world_size)``.

    :param backend: ``None`` picks ``nccl`` when CUDA is available (and then selects the
        rank's GPU, ``LOCAL_RANK``) and ``gloo`` otherwise.
    """

    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed support")
    if not dist.is_initialized():
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            raise RuntimeError(
                "init_distributed needs the environment set by torchrun (RANK, WORLD_SIZE, "
                "MASTER_ADDR, MASTER_PORT): start the script with "
                "`torchrun --nproc-per-node N script.py`"
            )
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def rank_and_world(required: bool = False) -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one
    (``ValueError`` then, when ``required``)."""

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if required:
        raise ValueError(
            "distributed=True needs an initialised torch.distributed process group: start "
            "the script with torchrun and call ebm_ppl.pyro.init_distributed() (or "
            "torch.distributed.init_process_group) first"
        )
    return 0, 1


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """A 63-bit seed for ``rank`` derived from the shared ``seed`` (and a step count, used
    when a run resumes on a different number of ranks)."""

    ss = np.random.SeedSequence([int(seed) % 2**63, int(rank), int(step)])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def comm_device() -> torch.device:
    """The device collectives run on: the current GPU for ``nccl``, else the CPU."""

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_cat(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Every rank's ``x`` (equal shapes) concatenated along ``dim`` in rank order; on the
    device of ``x``."""

    _, world = rank_and_world()
    if world == 1:
        return x
    dev = comm_device()
    y = x.detach().to(dev).contiguous()
    parts = [torch.empty_like(y) for _ in range(world)]
    dist.all_gather(parts, y)
    return torch.cat(parts, dim=dim).to(x.device)


def all_reduce_mean_(grads: list[torch.Tensor]) -> None:
    """Average gradients over ranks in place (one flattened all-reduce)."""

    _, world = rank_and_world()
    if world == 1 or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads]).to(comm_device())
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat = flat.to(grads[0].device) / world
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def broadcast_(tensors: list[torch.Tensor], src: int = 0) -> None:
    """Overwrite ``tensors`` on every rank with rank ``src``'s values, in place."""

    _, world = rank_and_world()
    if world == 1:
        return
    dev = comm_device()
    for t in tensors:
        y = t.detach().to(dev).contiguous()
        dist.broadcast(y, src)
        with torch.no_grad():
            t.copy_(y.to(t.device))


def barrier() -> None:

    if rank_and_world()[1] > 1:
        dist.barrier()


def split_for_rank(x: torch.Tensor, rank: int, world: int, dim: int, what: str) -> torch.Tensor:
    """Rank ``rank``'s contiguous share of ``x`` along ``dim`` (``ValueError`` unless it
    splits evenly)."""
    if x.shape[dim] % world:
        raise ValueError(
            f"{what} must split evenly over the {world} ranks: size {x.shape[dim]} along "
            f"axis {dim}; use a multiple of {world}"
        )
    return x.chunk(world, dim=dim)[rank].contiguous()
