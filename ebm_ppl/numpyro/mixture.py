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
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.distributions import constraints

from ebm_ppl.models.mixture import (
    BernoulliMixtureFit,
    add_statistics,
    bernoulli_mixture_init,
    check_data,
    check_num_components,
    check_params,
    em_statistics,
    fit_em,
    log_prior,
    m_step,
    natural_params,
    statistics_from_log_joint,
)

__all__ = [
    "bernoulli_mixture",
    "bernoulli_mixture_log_density",
    "bernoulli_mixture_log_joint",
    "fit_bernoulli_mixture",
]


def _as_data(data: Any, name: str = "data") -> jax.Array:
    """A float JAX array (integer / boolean 0/1 data become float32)."""
    if isinstance(data, jax.Array):
        x = data
    else:
        x = np.asarray(data.detach().cpu() if hasattr(data, "detach") else data)
        x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    check_data(x, name)
    return x


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
    k = check_num_components(num_components)
    check_data(data)
    n, d = data.shape
    pi = numpyro.param("pi", jnp.full((k,), 1.0 / k, data.dtype), constraint=constraints.simplex)
    mu = numpyro.param(
        "mu",
        lambda key: 0.25 + 0.5 * jax.random.uniform(key, (k, d), data.dtype),
        constraint=constraints.unit_interval,
    )
    with numpyro.plate("data", n):
        z = numpyro.sample("z", dist.Categorical(pi), infer={"enumerate": "parallel"})
        numpyro.sample("x", dist.Bernoulli(probs=mu[z]).to_event(1), obs=data)


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
    x = _as_data(data)
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
_closed_form_estep = jax.jit(
    lambda totals, x, pi, mu, bias, weight: add_statistics(totals, em_statistics(x, bias, weight))
)
_program_estep = jax.jit(
    lambda totals, x, pi, mu, bias, weight: add_statistics(
        totals, statistics_from_log_joint(x, _log_joint(x, pi, mu))
    )
)
_natural = jax.jit(natural_params)
_m_step = jax.jit(m_step, static_argnums=(2,))
_log_prior = jax.jit(log_prior)


def fit_bernoulli_mixture(
    data: Any,
    num_components: int,
    init: tuple[Any, Any] | None = None,
    seed: int = 0,
    num_iters: int = 100,
    tol: float | None = 1e-5,
    batch_size: int = 1000,
    smoothing: float = 0.01,
    estep: str = "closed_form",
    callback: Callable[[int, float, float], Any] | None = None,
) -> BernoulliMixtureFit:
    """Fit :func:`bernoulli_mixture` to ``data`` ``(N, D)`` (0/1; numpy or JAX) by EM
    (:func:`ebm_ppl.models.mixture.fit_em`), with jitted minibatch E-steps and M-step:
    minibatches of ``batch_size`` rows, at most ``num_iters`` iterations, stopping when the
    objective's relative improvement falls below ``tol``; closed-form M-step with
    pseudo-count ``smoothing``.

    ``init``: ``(pi, mu)``; default :func:`~ebm_ppl.models.mixture.bernoulli_mixture_init`
    with ``seed`` (numpy, so the Pyro frontend starts from the same point). ``estep``:
    ``"closed_form"`` (one matrix product per minibatch) or ``"program"`` (responsibilities
    from :func:`bernoulli_mixture_log_joint`, the enumerated program; ``O(K B D)`` memory).
    Returns a :class:`~ebm_ppl.models.mixture.BernoulliMixtureFit` with JAX arrays.
    """
    k = check_num_components(num_components)
    x = _as_data(data)
    if estep not in ("closed_form", "program"):
        raise ValueError(f"estep must be 'closed_form' or 'program', got {estep!r}")
    if init is None:
        init = bernoulli_mixture_init(x, k, seed=seed, smoothing=smoothing)
    pi, mu = (jnp.asarray(a, x.dtype) for a in init)
    if pi.ndim != 1 or int(pi.shape[0]) != k:
        raise ValueError(f"init: pi must have shape ({k},), got {tuple(pi.shape)}")
    return fit_em(
        x,
        (pi, mu),
        num_iters=num_iters,
        tol=tol,
        batch_size=batch_size,
        smoothing=smoothing,
        estep=_program_estep if estep == "program" else _closed_form_estep,
        natural=_natural,
        mstep=_m_step,
        prior=_log_prior,
        callback=callback,
    )
