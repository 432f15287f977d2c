"""The hierarchical-deep prior as a NumPyro program (:mod:`ebm_ppl.models.hd` holds the math
and the program, written once for both PPLs)."""

from __future__ import annotations

from typing import Any

import jax

from ebm_ppl.models.hd import HDPosterior, fit_hd, hd_program
from ebm_ppl.numpyro import ppl

__all__ = ["fit_hd_prior", "hd_prior"]


def hd_prior(
    ones: jax.Array,
    counts: jax.Array,
    num_super: int = 10,
    alpha: float = 5.0,
    a: float = 2.0,
    gamma: float = 1.0,
    assignments: jax.Array | None = None,
) -> None:
    """The HD prior over the categories' top-level DBM features, an ordinary NumPyro program:
    :func:`ebm_ppl.models.hd.hd_program` (sites ``v``, ``m``, ``theta``; super-category
    assignments summed out in a ``factor``, or an observed ``Categorical`` site ``s`` when
    ``assignments`` is given)."""
    hd_program(ppl, ones, counts, num_super, alpha, a, gamma, assignments)


def fit_hd_prior(rng_key: jax.Array, ones: Any, counts: Any, **kwargs: Any) -> HDPosterior:
    """NUTS over the continuous sites of :func:`hd_prior` (assignments enumerated out) from
    ``rng_key``; returns an :class:`~ebm_ppl.models.hd.HDPosterior` (exact assignment
    posteriors per sample, clustering, one-shot predictive). Keyword arguments as
    :func:`ebm_ppl.models.hd.fit_hd`."""
    return fit_hd(ppl, hd_prior, rng_key, ones, counts, **kwargs)
