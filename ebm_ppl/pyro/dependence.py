"""Energy sites whose parameters depend on random variables, in Pyro programs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro.poutine as poutine
import torch
from pyro.infer.inspect import get_dependencies

from ebm_ppl.inference import dependence as dep
from ebm_ppl.pyro.handlers import quick_energy_draws

__all__ = ["check_model", "energy_dependencies"]


def _trace(model: Callable, values: dict | None, args: tuple, kwargs: dict):
    model = quick_energy_draws(model)  # a structure trace: no Gibbs runs
    m = model if not values else poutine.condition(model, data=values)
    with torch.no_grad(), poutine.block():
        return poutine.trace(m).get_trace(*args, **kwargs)


def energy_dependencies(
    model: Callable, args: tuple = (), kwargs: dict | None = None, trace: Any = None
) -> dict[str, list[str]]:
    """``{energy site: [latent sites its parameters depend on]}`` for ``model(*args,
    **kwargs)``: the union of ``pyro.infer.inspect.get_dependencies`` (provenance tracking)
    and a perturbation check that changes one latent site at a time (its negation where the
    support allows, then two fresh draws) and compares the energy sites' parameters
    (:func:`ebm_ppl.inference.dependence.by_perturbation`); the latter catches dependence
    that provenance loses (``float(z)``, ``.item()``, Python branches). ``trace`` is an
    existing trace's ``nodes`` (saves one run). torch's global RNG is left untouched."""
    kwargs = {} if kwargs is None else kwargs
    with torch.random.fork_rng(devices=[]):
        nodes = trace if trace is not None else _trace(model, None, args, kwargs).nodes

        def provenance():

            with poutine.block():
                quick = quick_energy_draws(model)
                return get_dependencies(quick, args, kwargs)["prior_dependencies"]

        def fresh_value(name, k):
            torch.manual_seed(k)
            energy = dep.energy_of(nodes[name])
            with torch.no_grad():  # energy sites: a random state, no Gibbs run
                if energy is not None:
                    return energy.init_chain(None, tuple(nodes[name]["value"].shape))
                return nodes[name]["fn"].sample()

        def trace_with(values):
            return _trace(model, values, args, kwargs).nodes

        return dep.find_dependencies(nodes, provenance, trace_with, fresh_value)


def check_model(model: Callable, *args: Any, **kwargs: Any) -> None:
    """Raise ``ValueError`` if an energy site of ``model(*args, **kwargs)`` has parameters
    that depend on a latent sample site and is not ``normalized=True``.

    Call it before running Pyro's own ``NUTS``/``HMC``/``SVI`` on a program with energy
    sites: those use the unnormalized ``log_prob`` and cannot be intercepted. Our kernels,
    guides and trainers run this check themselves.
    """
    nodes = _trace(model, None, args, kwargs).nodes
    dep.check_energy_dependence(
        nodes, energy_dependencies(model, args, kwargs, nodes), "NUTS/HMC/SVI on this model", "pyro"
    )
