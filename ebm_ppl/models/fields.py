"""External fields on an energy site's visible units: the closed-form factors that other parts
of a program contribute to a site's block conditional (an observation of the site, a mask).

The models that define such observation models (robust Boltzmann machines, the deep Lambertian
model, Gaussian visible units) and the block-Gibbs machinery in :mod:`ebm_ppl.inference.gibbs`
both use them, so they live here, below both.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["Field", "combine_gaussian", "gaussian_field"]


class Field(NamedTuple):
    """An external factor ``exp(linear . x - precision . x**2 / 2)`` on an energy site's
    visible units, from the rest of a program (e.g. an observation whose likelihood depends
    on the site's value). Multiplying it into the visible conditional keeps that conditional
    exact and in closed form: Bernoulli units get ``linear`` added to their logits (for
    ``x in {0, 1}``, ``x**2 = x``, so ``precision`` must be zero there); Gaussian units
    ``N(m, s^2)`` become ``N((m / s^2 + linear) / q, 1 / q)`` with ``q = 1 / s^2 + precision``.
    Both arrays have the shape of the site's value; ``precision`` is ``None`` for binary
    units."""

    linear: Any
    precision: Any = None


def gaussian_field(g0: Any, g1: Any, x0: Any) -> Field:
    """The :class:`Field` of a factor ``r(x)`` quadratic in each coordinate without cross
    terms, from its gradients ``g0`` at ``x0`` and ``g1`` at ``x0 + 1``: ``precision =
    g0 - g1`` and ``linear = g0 + precision x0``."""
    precision = g0 - g1
    return Field(g0 + precision * x0, precision)


def combine_gaussian(mean: Any, var: Any, field: Field | None) -> tuple[Any, Any]:
    """The mean and variance of ``N(mean, var) * exp(linear x - precision x^2 / 2)``."""
    if field is None:
        return mean, var
    q = 1.0 / var + (0.0 if field.precision is None else field.precision)
    return (mean / var + field.linear) / q, 1.0 / q
