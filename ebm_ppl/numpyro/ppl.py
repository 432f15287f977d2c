"""NumPyro as the ``ppl`` argument of the programs written once (in :mod:`ebm_ppl.models`).

The NumPyro twin of :mod:`ebm_ppl.pyro.ppl` (same names; a test compares them): a program
written once takes ``ppl`` and calls ``ppl.sample``, ``ppl.factor``, ``ppl.plate``,
``ppl.param``, ``ppl.deterministic`` and ``ppl.dist``; array math goes through
:mod:`ebm_ppl.ops`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS, init_to_uniform, init_to_value

NAME = "numpyro"
sample = numpyro.sample
factor = numpyro.factor
plate = numpyro.plate
param = numpyro.param
deterministic = numpyro.deterministic

__all__ = [
    "NAME",
    "asarray",
    "compiled",
    "deterministic",
    "dist",
    "factor",
    "grad",
    "iterate",
    "param",
    "param_value",
    "plate",
    "run_nuts",
    "sample",
    "uniform_init",
]


_DTYPES = {"float32": jnp.float32, "int": jnp.int32, None: None}


def asarray(x: Any, dtype: str | None = "float32", like: Any = None) -> jax.Array:
    """``x`` as a JAX array of ``dtype`` (``"float32"``, ``"int"``: the backend's index type,
    or ``None``: ``x``'s own); ``like`` is unused (JAX places arrays itself), kept so one call
    serves both PPLs."""
    del like
    return jnp.asarray(x, dtype=_DTYPES[dtype])


def run_nuts(
    model: Callable,
    args: tuple,
    *,
    rng_key: jax.Array,
    num_warmup: int,
    num_samples: int,
    num_chains: int = 1,
    init_values: dict | None = None,
    progress_bar: bool = False,
    **nuts_kwargs: Any,
) -> dict:
    """Posterior draws ``{site: (num_chains * num_samples, ...)}`` of ``model(*args)`` by NUTS
    under ``numpyro.infer.MCMC`` from ``rng_key``, started at ``init_values`` (a dict of site
    values) or uniformly."""
    strategy = init_to_uniform
    if init_values is not None:
        strategy = init_to_value(values={k: jnp.asarray(v) for k, v in init_values.items()})
    mcmc = MCMC(
        NUTS(model, init_strategy=strategy, **nuts_kwargs),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        progress_bar=progress_bar,
    )
    mcmc.run(rng_key, *args)
    return mcmc.get_samples()


# ---- added for the greedy layer programs (models/dbn.py) ------------------------------------


def param_value(x: jax.Array) -> jax.Array:
    """The initial value to give ``ppl.param``: ``x`` itself (JAX arrays are immutable)."""
    return x


# --- programs and loops written once (issue 24, frontends part 1) ---------------------------


def grad(fn: Callable, argnums: tuple[int, ...]) -> Callable:
    """``g(*args) -> (d fn / d args[i] for i in argnums)``: the gradients of the scalar
    ``fn(*args)`` by ``jax.grad``."""
    return jax.grad(fn, argnums=argnums)


def iterate(step: Callable, state: Any, num_steps: int) -> Any:
    """``step`` applied ``num_steps`` times to ``state`` (one ``jax.lax.scan``)."""
    return jax.lax.scan(lambda s, _: (step(s), None), state, None, length=num_steps)[0]


def compiled(fn: Callable) -> Callable:
    """``fn`` compiled by ``jax.jit``."""
    return jax.jit(fn)


def uniform_init(shape: tuple, low: float, high: float, like: jax.Array) -> Callable:
    """A lazy ``param`` initialiser: ``key -> low + (high - low) * U`` with ``U`` uniform on
    ``[0, 1)`` of ``shape`` drawn from the ``seed`` handler's ``key``, ``like``'s dtype."""
    return lambda key: low + (high - low) * jax.random.uniform(key, shape, like.dtype)
