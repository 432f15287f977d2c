"""Pyro as the ``ppl`` argument of the programs written once (in :mod:`ebm_ppl.models`).

A program whose Pyro and NumPyro versions would differ only in the PPL module is written once,
taking ``ppl`` (this module or :mod:`ebm_ppl.numpyro.ppl`) and calling ``ppl.sample``,
``ppl.factor``, ``ppl.plate``, ``ppl.param``, ``ppl.deterministic`` and ``ppl.dist``; its array
math goes through :mod:`ebm_ppl.ops`, which serves torch and JAX alike. Both adapters hold the
same names (a test compares them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import MCMC, NUTS
from pyro.infer.autoguide.initialization import init_to_uniform, init_to_value

NAME = "pyro"
sample = pyro.sample
factor = pyro.factor
plate = pyro.plate
param = pyro.param
deterministic = pyro.deterministic

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


_DTYPES = {"float32": torch.float32, "int": torch.long, None: None}


def asarray(x: Any, dtype: str | None = "float32", like: Any = None) -> torch.Tensor:
    """``x`` as a tensor of ``dtype`` (``"float32"``, ``"int"``: the backend's index type, or
    ``None``: ``x``'s own) on ``like``'s device when ``like`` is a tensor, else on ``x``'s own
    device (a tensor keeps its place; anything else lands on the CPU)."""
    device = like.device if isinstance(like, torch.Tensor) else None
    return torch.as_tensor(x, dtype=_DTYPES[dtype], device=device)


def run_nuts(
    model: Callable,
    args: tuple,
    *,
    rng_key: Any = None,
    num_warmup: int,
    num_samples: int,
    num_chains: int = 1,
    init_values: dict | None = None,
    progress_bar: bool = False,
    **nuts_kwargs: Any,
) -> dict:
    """Posterior draws ``{site: (num_chains * num_samples, ...)}`` of ``model(*args)`` by NUTS
    under ``pyro.infer.MCMC``, started at ``init_values`` (a dict of site values) or uniformly;
    ``rng_key`` is unused (seed with ``pyro.set_rng_seed``), kept so one call serves both PPLs."""

    del rng_key
    strategy = init_to_uniform
    if init_values is not None:
        like = next((a for a in args if isinstance(a, torch.Tensor)), None)
        values = {k: asarray(v, None, like) for k, v in init_values.items()}
        strategy = init_to_value(values=values)
    mcmc = MCMC(
        NUTS(model, init_strategy=strategy, **nuts_kwargs),
        num_samples=num_samples,
        warmup_steps=num_warmup,
        num_chains=num_chains,
        disable_progbar=not progress_bar,
    )
    mcmc.run(*args)
    return mcmc.get_samples()


# ---- added for the greedy layer programs (models/dbn.py) ------------------------------------


def param_value(x: torch.Tensor) -> torch.Tensor:
    """The initial value to give ``ppl.param``: a detached copy of ``x`` (Pyro's param store
    keeps the tensor it is given and updates it in place, so ``x`` itself stays untouched)."""
    return x.detach().clone()


# --- programs and loops written once (issue 24, frontends part 1) ---------------------------


def grad(fn: Callable, argnums: tuple[int, ...]) -> Callable:
    """``g(*args) -> (d fn / d args[i] for i in argnums)``: the gradients of the scalar
    ``fn(*args)`` by ``torch.autograd`` (the differentiated arguments are detached copies, so
    it may run under ``torch.no_grad``; the gradients come back detached)."""

    def g(*args: Any) -> tuple:
        with torch.enable_grad():
            args = list(args)
            for i in argnums:
                args[i] = args[i].detach().requires_grad_(True)
            return torch.autograd.grad(fn(*args), [args[i] for i in argnums])

    return g


def iterate(step: Callable, state: Any, num_steps: int) -> Any:
    """``step`` applied ``num_steps`` times to ``state`` (a Python loop)."""
    for _ in range(num_steps):
        state = step(state)
    return state


def compiled(fn: Callable) -> Callable:
    """``fn`` run under ``torch.no_grad()`` (torch runs eagerly: nothing to compile)."""

    def run(*args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            return fn(*args, **kwargs)

    return run


def uniform_init(shape: tuple, low: float, high: float, like: torch.Tensor) -> Callable:
    """A lazy ``param`` initialiser: ``() -> low + (high - low) * U`` with ``U`` uniform on
    ``[0, 1)`` of ``shape`` from torch's global generator, ``like``'s dtype and device."""
    return lambda: low + (high - low) * torch.rand(shape, dtype=like.dtype, device=like.device)
