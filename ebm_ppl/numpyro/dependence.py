"""Energy sites whose parameters depend on random variables, in NumPyro programs."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import jax
from numpyro import handlers
from numpyro.infer.inspect import get_dependencies

from ebm_ppl.inference import dependence as dep
from ebm_ppl.numpyro.handlers import quick_energy_draws

try:  # private API (JAX 0.4-0.10): True when no trace is active
    from jax._src.core import trace_state_clean as _trace_state_clean
except ImportError:  # pragma: no cover
    _trace_state_clean = None

__all__ = ["check_model", "energy_dependencies"]


def concrete_eval() -> contextlib.AbstractContextManager:
    """``jax.ensure_compile_time_eval()`` when called under a JAX trace (our set-up checks run
    inside ``pmap`` when ``MCMC(chain_method="parallel")`` calls a kernel's ``init``, and they
    need concrete values), else a no-op. Outside a trace values are concrete anyway, and the
    context would only cost time: under it JAX evaluates the operations on constants inside
    every ``jit`` eagerly, compiling each one on its own (seconds for a small model)."""
    if _trace_state_clean is None:  # pragma: no cover - a JAX without it: always safe to enter
        return jax.ensure_compile_time_eval()
    return contextlib.nullcontext() if _trace_state_clean() else jax.ensure_compile_time_eval()


def _trace(model: Callable, key: Any, values: dict | None, args: tuple, kwargs: dict):
    m = handlers.seed(model, key)
    if values:
        m = handlers.substitute(m, data=values)
    return handlers.trace(quick_energy_draws(m)).get_trace(*args, **kwargs)  # no Gibbs runs


def energy_dependencies(
    model: Callable, args: tuple = (), kwargs: dict | None = None
) -> dict[str, list[str]]:
    """``{energy site: [latent sites its parameters depend on]}`` for ``model(*args,
    **kwargs)``: the union of ``numpyro.infer.inspect.get_dependencies`` (provenance
    tracking) and a perturbation check that changes one latent site at a time (its negation
    where the support allows, then two fresh draws) and compares the energy sites'
    parameters (:func:`ebm_ppl.inference.dependence.by_perturbation`)."""
    kwargs = {} if kwargs is None else kwargs
    key = jax.random.PRNGKey(0)
    with concrete_eval():
        tr = _trace(model, key, None, args, kwargs)

        def provenance():

            quick = quick_energy_draws(model)  # no Gibbs runs while tracing provenance
            return get_dependencies(quick, args, kwargs)["prior_dependencies"]

        def fresh_value(name, k):
            energy = dep.energy_of(tr[name])
            if energy is not None:  # a random state: no Gibbs run
                return energy.init_chain(jax.random.PRNGKey(k), tuple(tr[name]["value"].shape))
            return tr[name]["fn"].sample(jax.random.PRNGKey(k))

        return dep.find_dependencies(
            tr, provenance, lambda values: _trace(model, key, values, args, kwargs), fresh_value
        )


def check_model(model: Callable, *args: Any, **kwargs: Any) -> None:
    """Raise ``ValueError`` if an energy site of ``model(*args, **kwargs)`` has parameters
    that depend on a latent sample site and is not ``normalized=True``.

    Call it before running NumPyro's own ``NUTS``/``HMC``/``SVI`` on a program with energy
    sites: those use the unnormalized ``log_prob`` and cannot be intercepted. Our kernels,
    guides and trainers run this check themselves.
    """
    kwargs = dict(kwargs)
    with concrete_eval():
        tr = _trace(model, jax.random.PRNGKey(0), None, args, kwargs)
    dep.check_energy_dependence(
        tr, energy_dependencies(model, args, kwargs), "NUTS/HMC/SVI on this model", "numpyro"
    )
