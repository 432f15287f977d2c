"""HMC-within-Gibbs for Pyro: our block Gibbs on the energy sites, NUTS/HMC on the rest."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pyro.poutine as poutine
import torch
from pyro.distributions import constraints
from pyro.infer.mcmc import HMC, NUTS
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel

from ebm_ppl.inference.dependence import check_energy_dependence
from ebm_ppl.inference.gibbs import check_kernel_args, classify_sites
from ebm_ppl.pyro.dependence import energy_dependencies
from ebm_ppl.pyro.handlers import quick_energy_draws
from ebm_ppl.pyro.kernels import InitialParams, inner_block_gibbs

__all__ = ["HMCGibbs"]


def _is_real(fn: Any) -> bool:
    support = fn.support
    while hasattr(support, "base_constraint"):
        support = support.base_constraint
    return support is constraints.real


class HMCGibbs(InitialParams, MCMCKernel):
    """Alternate :class:`~ebm_ppl.pyro.BlockGibbs` on a model's energy sites with NUTS (or
    HMC) on its other latent sites, for ``pyro.infer.MCMC`` (the Pyro counterpart of
    ``numpyro.infer.HMCGibbs(NUTS(model), gibbs_fn=BlockGibbs(model).gibbs_fn(...))``).

    Each step: the energy sites take ``num_sweeps`` block-Gibbs sweeps with the continuous
    sites held at their current values (observation factors folded into the conditionals,
    :class:`~ebm_ppl.models.fields.Field`); then one NUTS step on the continuous sites,
    whose potential is the model's negative log joint with the energy sites held at their
    new values (the kernel's cache is cleared, since the potential changed). NUTS adapts
    its step size (and mass matrix) during warmup as usual.

    :param model: a Pyro model whose latent sites are energy sites (sampled by block Gibbs)
        and real-valued sites (unconstrained support, sampled by NUTS/HMC). NUTS uses the
        energy sites' ``log_prob``, which is unnormalized, so an energy site whose parameters
        depend on a continuous site must be built with ``normalized=True`` (exact ``log Z``,
        small models; the energy distributions are then re-read at every step); otherwise
        set-up raises a ``ValueError``. For larger models see :class:`~ebm_ppl.pyro.Exchange`.
    :param num_sweeps: block-Gibbs sweeps per step.
    :param hmc: ``"nuts"`` or ``"hmc"``.
    :param hmc_kwargs: passed to ``NUTS`` / ``HMC`` (``step_size``, ``max_tree_depth``,
        ``adapt_mass_matrix``, ...).
    """

    def __init__(
        self, model: Callable, num_sweeps: int = 1, hmc: str = "nuts", **hmc_kwargs: Any
    ) -> None:
        check_kernel_args(model, num_sweeps)
        if hmc not in ("nuts", "hmc"):
            raise ValueError(f'hmc must be "nuts" or "hmc", got {hmc!r}')
        self.model, self.num_sweeps, self.hmc, self.hmc_kwargs = model, num_sweeps, hmc, hmc_kwargs
        self.transforms: dict = {}
        self._hmc_values: dict = {}
        self._gibbs_values: dict = {}

    def setup(self, warmup_steps: int, *args, **kwargs) -> None:
        self._args, self._kwargs = args, kwargs
        with torch.no_grad():  # a structure trace: energy sites get init_chain states
            tr = poutine.trace(quick_energy_draws(self.model)).get_trace(*args, **kwargs)
        energy, _, other = classify_sites(tr.nodes)
        if not energy:
            raise ValueError("HMCGibbs needs at least one latent energy site for block Gibbs")
        if not other:
            raise ValueError("the model has no continuous latent site; use BlockGibbs(model)")
        bad = [n for n in other if not _is_real(tr.nodes[n]["fn"])]
        if bad:
            raise ValueError(
                f"HMCGibbs samples real-valued sites with NUTS; sites {bad} have a constrained "
                "or discrete support (reparametrise them onto the real line)"
            )
        deps = energy_dependencies(self.model, args, kwargs, tr.nodes)
        check_energy_dependence(tr.nodes, deps, "HMCGibbs (NUTS on the unnormalized joint)", "pyro")
        self._retrace = bool(deps)
        self._energy, self._continuous = energy, other
        given = self._initial_params or {}
        self._hmc_values = {n: given.get(n, tr.nodes[n]["value"]).detach() for n in other}
        self._gibbs = inner_block_gibbs(
            self.model,
            lambda: self._hmc_values,
            self.num_sweeps,
            given,
            energy,
            warmup_steps,
            args,
            kwargs,
        )
        self._gibbs_values = dict(self._gibbs.initial_params)

        def potential(params):
            data = dict(self._gibbs_values, **params)
            t = poutine.trace(poutine.condition(self.model, data=data)).get_trace(*args, **kwargs)
            return -t.log_prob_sum()

        cls = NUTS if self.hmc == "nuts" else HMC
        self._hmc_kernel = cls(potential_fn=potential, **self.hmc_kwargs)
        self._hmc_kernel.initial_params = dict(self._hmc_values)
        self._hmc_kernel.setup(warmup_steps)
        self._initial_params = dict(self._gibbs_values, **self._hmc_values)

    def sample(self, params: dict) -> dict:
        self._hmc_values = {n: params[n].detach() for n in self._continuous}
        if self._retrace:  # energy parameters follow the continuous sites
            self._gibbs.retrace({n: params[n] for n in self._energy})
        gibbs = self._gibbs.sample({n: params[n] for n in self._energy})
        self._gibbs_values = {n: gibbs[n] for n in self._energy}
        self._hmc_kernel.clear_cache()
        new = self._hmc_kernel.sample(dict(self._hmc_values))
        self._hmc_values = {n: new[n].detach() for n in self._continuous}
        return dict(self._gibbs_values, **self._hmc_values)

    def logging(self) -> OrderedDict:
        return self._hmc_kernel.logging()

    def diagnostics(self) -> dict:
        out = dict(self._hmc_kernel.diagnostics())
        out.update({f"gibbs_{k}": v for k, v in self._gibbs.diagnostics().items()})
        return out

    def cleanup(self) -> None:
        self._hmc_kernel.cleanup()
        self._gibbs.cleanup()
