"""Annealed importance sampling for Pyro energy distributions (:mod:`ebm_ppl.inference.ais`)."""

from __future__ import annotations

from typing import Any

import torch

from ebm_ppl.inference.ais import AISResult, run_ais

__all__ = ["AIS"]


def AIS(  # noqa: N802 (the public name of the algorithm)
    target: Any,
    base: Any = None,
    betas: Any = None,
    num_runs: int = 100,
    reverse_samples: torch.Tensor | None = None,
    progress_bar: bool | None = None,
    generator: torch.Generator | None = None,
) -> AISResult:
    """Estimate ``log Z`` of ``target`` (e.g. :class:`~ebm_ppl.pyro.RBM`) by annealed
    importance sampling; all ``num_runs`` runs advance together.

    :param base: ``None`` (the uniform model), :func:`~ebm_ppl.pyro.base_rate` of the
        training data (Salakhutdinov & Murray's base-rate model) or visible logits.
    :param betas: increasing inverse temperatures from 0 to 1 (default: the 14,501-value
        :func:`~ebm_ppl.pyro.salakhutdinov_murray_schedule`).
    :param reverse_samples: ``(runs, D)`` samples of the target (data or long-run chains) to
        also run reverse AIS, which gives the other side of a bracket on ``log Z``; a
        ``RuntimeWarning`` says when the two disagree beyond their error bars.
    :param generator: optional ``torch.Generator`` (default: torch's global RNG).
    """
    return run_ais(generator, target, base, betas, num_runs, reverse_samples, progress_bar)
