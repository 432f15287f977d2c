"""Mixture of Bernoullis as a NumPyro program (:mod:`ebm_ppl.models.mixture` holds the math).

The program, :func:`bernoulli_mixture`, is the same as the Pyro one: two ``numpyro.param``
sites and, per data point, ``z ~ Categorical(pi)`` marked ``infer={"enumerate":
"parallel"}``. NumPyro's own enumeration (``numpyro.contrib.funsor``) needs ``funsor``, which
this package does not depend on, and without it ``numpyro.infer.util.log_density`` tries to
*sample* ``z``. So ``z`` is enumerated here by hand, the way parallel enumeration works: the
program is traced with ``z`` substituted by all ``K`` values on a new leftmost batch dimension
(``Categorical.enumerate_support(expand=False)``, shape ``(K, 1)``), the plate broadcasts
every site to ``(K, N)``, and the sites' log-probabilities add up to the log joint of every
assignment (:func:`bernoulli_mixture_log_joint`); ``logsumexp`` over ``K`` sums ``z`` out
(:func:`bernoulli_mixture_log_density`). This is exact for a program with one enumerated site
whose dependants all live in its plate, which :func:`bernoulli_mixture` is.

:func:`fit_bernoulli_mixture` runs EM with jitted minibatch steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from numpyro import handlers

from ebm_ppl.models import mixture
from ebm_ppl.models.mixture import BernoulliMixtureFit, check_params
from ebm_ppl.numpyro import ppl

__all__ = [
    "bernoulli_mixture",
    "bernoulli_mixture_log_density",
    "bernoulli_mixture_log_joint",
    "fit_bernoulli_mixture",
]


def bernoulli_mixture(data: jax.Array, num_components: int) -> None:
    """A mixture of ``num_components`` product-Bernoulli distributions over the rows of
    ``data`` ``(N, D)`` (0/1 floats), as a NumPyro program:

    * ``pi = numpyro.param("pi", ..., constraint=simplex)``, ``(K,)``, initially uniform;
    * ``mu = numpyro.param("mu", ..., constraint=unit_interval)``, ``(K, D)``, initially
      uniform on ``(0.25, 0.75)`` (drawn from the ``seed`` handler's key);
    * in ``numpyro.plate("data", N)``: ``z ~ Categorical(pi)`` with
      ``infer={"enumerate": "parallel"}`` and ``x ~ Bernoulli(mu[z]).to_event(1)``,
      observed at ``data``.

    Fix the parameters with ``handlers.substitute(..., data={"pi": pi, "mu": mu})``; sum
    ``z`` out with :func:`bernoulli_mixture_log_density` (or ``numpyro.contrib.funsor`` where
    ``funsor`` is installed).
    """
    mixture.bernoulli_mixture_program(ppl, data, num_components)


def _enumerated_log_joint(model: Callable, args: tuple, kwargs: dict, params: dict) -> jax.Array:
    """Sum of all sample sites' log-probabilities of ``model`` with ``params`` substituted and
    its single ``enumerate="parallel"`` site set to each value of its support in turn, on a new
    leftmost dimension: shape ``(K, *plate_shape)``."""
    fixed = handlers.substitute(model, data=params)
    probe = handlers.trace(handlers.seed(fixed, 0)).get_trace(*args, **kwargs)
    enum = [
        name
        for name, site in probe.items()
        if site["type"] == "sample" and site["infer"].get("enumerate") == "parallel"
    ]
    if len(enum) != 1:
        raise ValueError(f"expected exactly one site marked for parallel enumeration, got {enum}")
    site = probe[enum[0]]
    values = site["fn"].enumerate_support(expand=False)  # (K, 1, ..., 1)
    tr = handlers.trace(handlers.substitute(fixed, data={enum[0]: values})).get_trace(
        *args, **kwargs
    )
    total = 0.0
    for s in tr.values():
        if s["type"] == "sample":
            if s["name"] != enum[0] and not s["is_observed"]:
                raise ValueError(f"site {s['name']!r} is latent and not enumerated")
            total = total + s["fn"].log_prob(s["value"])
    return total


@jax.jit
def _log_joint(x: jax.Array, pi: jax.Array, mu: jax.Array) -> jax.Array:
    k = pi.shape[0]
    return _enumerated_log_joint(bernoulli_mixture, (x, k), {}, {"pi": pi, "mu": mu}).T


def _checked(data: Any, pi: Any, mu: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
    x = mixture.as_float_data(ppl, data)
    pi, mu = jnp.asarray(pi, x.dtype), jnp.asarray(mu, x.dtype)
    check_params(pi, mu, int(x.shape[1]))
    return x, pi, mu


def bernoulli_mixture_log_joint(data: Any, pi: Any, mu: Any) -> jax.Array:
    """``log p(x_n, z_n = k)`` ``(N, K)`` from a trace of :func:`bernoulli_mixture` with its
    parameters fixed at ``(pi, mu)`` and ``z`` enumerated (see the module docstring): the sum
    of the sites' log-probabilities. Its ``logsumexp`` over ``k`` is the exact log-likelihood
    of each row, its softmax the posterior of ``z`` (EM's responsibilities). Jitted; builds a
    ``(K, N, D)`` array: pass modest minibatches."""
    return _log_joint(*_checked(data, pi, mu))


def bernoulli_mixture_log_density(data: Any, pi: Any, mu: Any) -> jax.Array:
    """Exact ``log p(data) = sum_n log p(x_n)`` (a scalar) of :func:`bernoulli_mixture` at
    ``(pi, mu)``: the enumerated log joint with ``z`` summed out by ``logsumexp`` (the
    funsor-free counterpart of ``numpyro.contrib.funsor.log_density``)."""
    return jax.scipy.special.logsumexp(bernoulli_mixture_log_joint(data, pi, mu), axis=-1).sum()


# jitted pieces of EM (a minibatch's E-step with the running sums, the M-step, the prior)
_JITTED_STEPS = {
    "estep_closed_form": jax.jit(
        lambda totals, x, pi, mu, bias, weight: mixture.add_statistics(
            totals, mixture.em_statistics(x, bias, weight)
        )
    ),
    "estep_program": jax.jit(mixture.program_estep(_log_joint)),
    "natural": jax.jit(mixture.natural_params),
    "mstep": jax.jit(mixture.m_step, static_argnums=(2,)),
    "prior": jax.jit(mixture.log_prior),
}


def fit_bernoulli_mixture(data: Any, num_components: int, **kwargs: Any) -> BernoulliMixtureFit:
    """Fit :func:`bernoulli_mixture` to ``data`` ``(N, D)`` (0/1; numpy or JAX) by EM
    (:func:`ebm_ppl.models.mixture.fit_mixture`) with jitted minibatch E-steps and M-step.
    Keyword arguments as for :func:`ebm_ppl.pyro.fit_bernoulli_mixture`: ``init``, ``seed``
    (the default ``init`` is the same numpy start in both frontends), ``num_iters``, ``tol``,
    ``batch_size``, ``smoothing``, ``estep`` (``"closed_form"`` or ``"program"``: the
    enumerated :func:`bernoulli_mixture_log_joint`) and ``callback``. Returns a
    :class:`~ebm_ppl.models.mixture.BernoulliMixtureFit` with JAX arrays.
    """
    return mixture.fit_mixture(data, num_components, ppl=ppl, **_JITTED_STEPS, **kwargs)
