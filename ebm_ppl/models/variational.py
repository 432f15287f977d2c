"""Helpers of the mean-field (variational) approximations of every model (Salakhutdinov 2015,
eq. 36-41): the entropy of a factorial Bernoulli ``Q``, the checks of the fixed-point
arguments, and the convergence measure of a sweep. The DBM, the multimodal DBM, the robust
Boltzmann machine and :mod:`ebm_ppl.inference.multilinear` all use them, so they live here,
below all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ebm_ppl import ops
from ebm_ppl.ops import Array

__all__ = ["VisibleSiteMethods", "bernoulli_entropy", "check_mean_field_args", "max_abs_diff"]


def bernoulli_entropy(mu: Array) -> Array:
    """``H(mu) = -sum_j [mu_j log mu_j + (1 - mu_j) log(1 - mu_j)]``: the entropy of
    independent Bernoullis with means ``mu`` ``(..., n)``, summed over the last axis (shape
    ``(...)``), computed stably from the means clipped to ``[1e-7, 1 - 1e-7]``. The entropy
    term of the mean-field bound of eq. 38."""
    eps = 1e-7
    m = ops.where(mu < eps, eps + 0 * mu, ops.where(mu > 1 - eps, (1 - eps) + 0 * mu, mu))
    return -(m * ops.log(m) + (1 - m) * ops.log(1 - m)).sum(-1)


def check_mean_field_args(num_iters: Any, damping: Any, tol: Any) -> None:
    """``ValueError`` unless ``num_iters`` is a positive int, ``damping`` a float in
    ``[0, 1)`` and ``tol`` ``None`` or a positive float (the arguments of a mean-field
    fixed-point iteration, eq. 39-41)."""
    if not isinstance(num_iters, int) or isinstance(num_iters, bool) or num_iters < 1:
        raise ValueError(f"num_iters must be a positive int, got {num_iters!r}")
    if not isinstance(damping, (int, float)) or not 0.0 <= damping < 1.0:
        raise ValueError(f"damping must be a float in [0, 1), got {damping!r}")
    if tol is not None and (not isinstance(tol, (int, float)) or tol <= 0):
        raise ValueError(f"tol must be None or a positive float, got {tol!r}")


def max_abs_diff(a: Sequence[Array], b: Sequence[Array]) -> Array:
    """``max_k max |a_k - b_k|`` over two lists of arrays of matching shapes (a scalar array):
    the largest change of any marginal in a mean-field sweep, the stopping rule of the
    fixed-point iterations."""
    out = None
    for x, y in zip(a, b):
        d = abs(x - y).max()
        out = d if out is None else ops.where(d > out, d, out)
    return out


class VisibleSiteMethods:
    """What every "model seen through its visible units" distribution shares (a DBM's or a
    multimodal DBM's ``visible()`` site, for SA-MLE): ``log_prob`` is its ``_check_value``
    then ``log_prob_unchecked`` (a mean-field bound, eq. 38); the persistent chains are full
    states of the underlying model ``self.dbm`` (``(..., sum of its layer sizes)``), started
    and moved by its ``init_chain`` and ``transition``."""

    dbm: Any
    num_iters: int
    damping: float
    tol: float | None

    def _init_site(
        self,
        attr: str,
        model: Any,
        model_cls: type,
        kind: str,
        num_iters: int,
        damping: float,
        tol: float | None,
    ) -> None:
        """The checks and settings every visible site's constructor makes: ``model`` must be a
        ``model_cls`` (else ``TypeError``: "``attr`` must be ``kind``"), the mean-field
        settings valid (:func:`check_mean_field_args`); stores ``model`` as ``self.<attr>``.
        The caller then gives the event shape (``_finish_init``)."""
        if not isinstance(model, model_cls):
            raise TypeError(f"{attr} must be {kind}, got {type(model).__name__}")
        check_mean_field_args(num_iters, damping, tol)
        setattr(self, attr, model)
        self.num_iters, self.damping, self.tol = num_iters, damping, tol

    def unexpanded(self):
        """Visible sites have no batch dimensions of their own: ``expand`` is undone to ``()``."""
        return self._with_batch_shape(())

    def log_prob(self, value: Array) -> Array:
        """Mean-field lower bound on the unnormalized ``log p~`` of the visible units (eq. 38
        without ``log Z``), shape ``value.shape[:-1]``."""
        self._check_value(value)
        return self.log_prob_unchecked(value)

    def init_chain(self, key: Any, shape: tuple) -> Array:
        return self.dbm.init_chain(key, tuple(shape[:-1]) + (sum(self.dbm.sizes),))

    def transition(self, key: Any, value: Array, num_steps: int = 1, cache: Any = None):
        return self.dbm.transition(key, value, num_steps)
