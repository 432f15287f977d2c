"""The hierarchical-deep prior as a Pyro program (:mod:`ebm_ppl.models.hd` holds the math and
the program, written once for both PPLs)."""

from __future__ import annotations

from typing import Any

import torch

from ebm_ppl.models.hd import (
    HDNormalPosterior,
    HDPosterior,
    fit_hd,
    fit_hd_normal,
    hd_normal_program,
    hd_program,
)
from ebm_ppl.models.hd_cov import HDCovPosterior, fit_hd_cov
from ebm_ppl.pyro import ppl

__all__ = ["fit_hd_cov_prior", "fit_hd_normal_prior", "fit_hd_prior", "hd_normal_prior", "hd_prior"]


def hd_prior(
    ones: torch.Tensor,
    counts: torch.Tensor,
    num_super: int = 10,
    alpha: float = 5.0,
    a: float = 2.0,
    gamma: float | None = 1.0,
    assignments: torch.Tensor | None = None,
) -> None:
    """The HD prior over the categories' top-level DBM features, an ordinary Pyro program:
    :func:`ebm_ppl.models.hd.hd_program` (sites ``v``, ``m``, ``theta``; super-category
    assignments summed out in a ``factor``, or an observed ``Categorical`` site ``s`` when
    ``assignments`` is given). ``gamma``: the stick-breaking concentration, ``v_k ~ Beta(1,
    gamma)``; ``None`` learns it, a scalar site ``gamma ~ Gamma(1, 1)``."""
    hd_program(ppl, ones, counts, num_super, alpha, a, gamma, assignments)


def fit_hd_prior(ones: Any, counts: Any, **kwargs: Any) -> HDPosterior:
    """NUTS (``pyro.infer.MCMC``) over the continuous sites of :func:`hd_prior` with the
    assignments enumerated out; returns an :class:`~ebm_ppl.models.hd.HDPosterior`. Keyword
    arguments as :func:`ebm_ppl.models.hd.fit_hd` (``num_super``, ``alpha``, ``a``,
    ``gamma``, ``num_warmup``, ``num_samples``, ``num_chains``, ``max_tree_depth``, ``init``,
    ``progress_bar``). Seed with ``pyro.set_rng_seed``."""
    return fit_hd(ppl, hd_prior, None, ones, counts, **kwargs)


def hd_normal_prior(
    counts: torch.Tensor,
    sums: torch.Tensor,
    sumsq: torch.Tensor,
    num_super: int = 10,
    gamma: float | None = 1.0,
    spread: float = 0.5,
    assignments: torch.Tensor | None = None,
    shared_variances: bool = False,
    learn_spread: bool = False,
) -> None:
    """The Normal HD prior over real-valued (standardised) top-level features, an ordinary
    Pyro program: :func:`ebm_ppl.models.hd.hd_normal_program` (sites ``v``, ``m``, ``lam``,
    ``mu``, ``s``, ``sigma``, ``t``, ``tau``; each category's mean integrated out, its
    super-category summed out in a ``factor``, or an observed ``Categorical`` site ``s_c`` when
    ``assignments`` is given; ``shared_variances``: one ``sigma`` and ``tau`` for all
    super-categories; ``learn_spread``: how far the super-categories' variances stray from the
    typical ones is learned, sites ``spread_sigma``, ``spread_tau``; ``gamma=None``: the
    stick-breaking concentration is learned, site ``gamma ~ Gamma(1, 1)``). ``counts``,
    ``sums``, ``sumsq``: :func:`ebm_ppl.models.hd.category_moments`."""
    hd_normal_program(
        ppl,
        counts,
        sums,
        sumsq,
        num_super,
        gamma,
        spread,
        assignments,
        shared_variances,
        learn_spread,
    )


def fit_hd_normal_prior(counts: Any, sums: Any, sumsq: Any, **kwargs: Any) -> HDNormalPosterior:
    """NUTS (``pyro.infer.MCMC``) over the continuous sites of :func:`hd_normal_prior` with
    the assignments enumerated out; returns an
    :class:`~ebm_ppl.models.hd.HDNormalPosterior`. Keyword arguments as
    :func:`ebm_ppl.models.hd.fit_hd_normal`. Seed with ``pyro.set_rng_seed``."""
    return fit_hd_normal(ppl, hd_normal_prior, None, counts, sums, sumsq, **kwargs)


def fit_hd_cov_prior(
    counts: Any, sums: Any, sumsq: Any, scatter: Any, **kwargs: Any
) -> HDCovPosterior:
    """:func:`fit_hd_normal_prior` (seed with ``pyro.set_rng_seed``) on the known
    categories' moments, then
    full-covariance super-categories: each gets the conjugate inverse-Wishart posterior mean of
    its within-category covariance from the ``scatter`` matrices ``(C, F, F)`` of the
    categories assigned to it (:func:`ebm_ppl.models.hd_cov.category_scatter`), and a new
    category is scored with its super-category's metric. Returns an
    :class:`~ebm_ppl.models.hd_cov.HDCovPosterior`; keyword arguments ``nu0``, ``prior_cov``,
    ``max_samples`` as :func:`ebm_ppl.models.hd_cov.fit_hd_cov`, the rest as
    :func:`ebm_ppl.models.hd.fit_hd_normal`."""
    return fit_hd_cov(fit_hd_normal_prior, None, counts, sums, sumsq, scatter, **kwargs)
