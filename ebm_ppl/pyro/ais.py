"""Annealed importance sampling for Pyro energy distributions (:mod:`ebm_ppl.inference.ais`)."""

from __future__ import annotations

from typing import Any

import torch

from ebm_ppl.inference.ais import AISResult, RAISEResult, run_ais, run_raise
from ebm_ppl.models.protocols import AnnealingPath, RaisePath
from ebm_ppl.pyro import distributed as dist_utils

__all__ = ["AIS", "RAISE"]


def AIS(  # noqa: N802 (the public name of the algorithm)
    target: AnnealingPath,
    base: Any = None,
    betas: Any = None,
    num_runs: int = 100,
    reverse_samples: torch.Tensor | None = None,
    progress_bar: bool | None = None,
    generator: torch.Generator | None = None,
    distributed: bool = False,
    start_samples: torch.Tensor | None = None,
) -> AISResult:
    """Estimate ``log Z`` of ``target`` (e.g. :class:`~ebm_ppl.pyro.RBM`) by annealed
    importance sampling; all ``num_runs`` runs advance together.

    :param base: ``None`` (the uniform model), :func:`~ebm_ppl.pyro.base_rate` of the
        training data (Salakhutdinov & Murray's base-rate model) or visible logits; for a
        DBM also a :class:`~ebm_ppl.pyro.DBMBase` (e.g. ``dbm.matched_base(train)``, the
        better start for trained models) or a :class:`~ebm_ppl.pyro.DBMPath`
        (``dbm.ais_path(...)``: which layers the state carries, or a path from another DBM).
    :param betas: increasing inverse temperatures from 0 to 1 (default: the 14,501-value
        :func:`~ebm_ppl.pyro.salakhutdinov_murray_schedule`).
    :param reverse_samples: ``(runs, D)`` samples of the target (data or long-run chains) to
        also run reverse AIS, which gives the other side of a bracket on ``log Z``; a
        ``RuntimeWarning`` says when the two disagree beyond their error bars.
    :param generator: optional ``torch.Generator`` (default: torch's global RNG).
    :param distributed: split the runs over the ranks of the initialised
        ``torch.distributed`` process group (see :mod:`ebm_ppl.pyro.distributed`).
        ``num_runs`` (and the rows of ``reverse_samples``, the same on every rank) are the
        totals; each rank anneals its contiguous share with its own generator, seeded from
        ``(seed, rank)`` where ``seed`` is ``generator``'s (or the global RNG's) initial
        seed, so a run is deterministic per seed and world size. The log-weights are
        all-gathered and every rank returns the same estimate over all runs.
    :param start_samples: ``(num_runs, D)`` states at ``beta = 0`` for a path that starts at
        a model without exact samples (a :class:`~ebm_ppl.pyro.DBMPath` from another DBM).
    """
    if not distributed:
        return run_ais(
            generator,
            target,
            base,
            betas,
            num_runs,
            reverse_samples,
            progress_bar,
            start_samples=start_samples,
        )
    if start_samples is not None:
        raise ValueError("start_samples is not supported with distributed=True")
    rank, world = dist_utils.rank_and_world(required=True)
    if not isinstance(num_runs, int) or isinstance(num_runs, bool) or num_runs % world:
        raise ValueError(
            f"num_runs={num_runs!r} must be a multiple of the {world} ranks (each anneals an "
            "equal share of the runs)"
        )
    seed = (generator if generator is not None else torch.random.default_generator).initial_seed()
    device = _device_of(target)
    local = torch.Generator(device=device).manual_seed(dist_utils.rank_seed(seed, rank))
    if reverse_samples is not None:
        reverse_samples = dist_utils.split_for_rank(
            reverse_samples, rank, world, 0, "reverse_samples (rows)"
        )

    def gather(log_w):
        t = torch.as_tensor(log_w, dtype=torch.float64)
        return dist_utils.all_gather_cat(t, dim=0).numpy()

    return run_ais(
        local,
        target,
        base,
        betas,
        num_runs // world,
        reverse_samples,
        progress_bar if rank == 0 else False,
        gather=gather,
    )


def _device_of(target: Any) -> torch.device:
    """The device of the first tensor among ``target``'s attributes (lists included)."""
    for value in vars(target).values():
        for v in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(v, torch.Tensor):
                return v.device
    return torch.device("cpu")


def RAISE(  # noqa: N802 (the public name of the algorithm)
    target: RaisePath,
    data: torch.Tensor,
    base: Any = None,
    betas: Any = None,
    num_samples: int = 1,
    progress_bar: bool | None = None,
    generator: torch.Generator | None = None,
) -> RAISEResult:
    """RAISE (Burda, Grosse & Salakhutdinov 2015): a conservative estimate of ``log p(v)``
    for every row of ``data`` by reverse annealing from it to ``base``, with no estimate of
    ``log Z`` (see :func:`ebm_ppl.inference.ais.run_raise`). ``num_samples`` reverse runs
    per data point; all run together."""
    return run_raise(generator, target, data, base, betas, num_samples, progress_bar)
