"""Autodiff block conditionals and mean field for Pyro models with binary sites
(:mod:`ebm_ppl.inference.multilinear` holds the algorithms)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch

from ebm_ppl import ops
from ebm_ppl.inference import multilinear as ml
from ebm_ppl.inference.dependence import check_energy_dependence
from ebm_ppl.pyro.dependence import energy_dependencies

__all__ = ["MeanFieldGuide"]


class Multilinear:
    """A Pyro model's log joint as a function of its latent binary sites, with its gradient,
    checked to be multilinear, and its Gibbs blocks."""

    def __init__(self, model, names, args, kwargs, blocks=None, trace=None, checked=None):
        self.model, self.names, self.args, self.kwargs = model, list(names), args, kwargs
        tr = trace if trace is not None else self._trace(None)
        self.shapes = {n: tuple(tr.nodes[n]["value"].shape) for n in self.names}
        self.like = tr.nodes[self.names[0]]["value"].float()
        if checked is not None:  # the blocks of an earlier check of the same model
            self.blocks = checked
            return
        states = [self.random_state(None) for _ in range(2)]
        ml.check_multilinear(self.log_joint, self.grad, states, self.names)
        pairs = ml.interactions(self.grad, None, self.shapes, self.like)
        self.blocks = ml.make_blocks(self.names, pairs, blocks)

    def _trace(self, values):
        model = self.model if values is None else poutine.condition(self.model, data=values)
        with poutine.block():
            return poutine.trace(model).get_trace(*self.args, **self.kwargs)

    def log_joint(self, values) -> torch.Tensor:
        # mean field evaluates the log joint at marginals in (0, 1): no support checks
        with pyro.validation_enabled(False):
            tr = self._trace(values)
            for site in tr.nodes.values():
                if site["type"] == "sample":
                    site["fn"]._validate_args = False
            return tr.log_prob_sum()

    def grad(self, values) -> dict:
        with torch.enable_grad():
            vals = {n: values[n].detach().float().requires_grad_(True) for n in self.names}
            lp = self.log_joint(vals)
            gs = torch.autograd.grad(lp, [vals[n] for n in self.names], allow_unused=True)
        return {
            n: torch.zeros_like(vals[n]) if g is None else g.detach()
            for n, g in zip(self.names, gs)
        }

    def random_state(self, key) -> dict:
        return ml._random_states(key, self.shapes, self.like)

    def sweeps(self, key, values, clamps, num_sweeps: int) -> dict:
        with torch.no_grad():
            for _ in range(num_sweeps):
                values = ml.gibbs_sweep(key, self.grad, values, self.blocks, clamps)
        return values


class MeanFieldGuide(ml.MeanFieldGuideBase):
    """A factorized Bernoulli guide for the latent binary sites of a Pyro model whose log
    joint is multilinear (e.g. a DBM written with Bernoulli layer sites and
    ``pyro.factor("energy", -E)``), solved per call by the mean-field fixed point
    (eq. 39-41) instead of learned parameters.

    ``guide(*args, **kwargs)`` computes the marginals ``mu`` for the model run on the same
    arguments (observed data included) and samples each latent site from
    ``Bernoulli(mu)``, so it plugs into ``Trace_ELBO``, ``Predictive(model, guide=...)`` and
    friends. :meth:`mean_field` returns the marginals; :meth:`bound` evaluates the ELBO
    analytically, ``log p(x_obs, mu) + H(mu) - log_z`` (eq. 38; exact for a multilinear log
    joint since ``E_Q[log p] = log p(mu)``), where ``log_z`` normalises the model's joint.

    :param num_iters: largest number of sweeps; ``tol``: stop once no marginal moves more.
    :param damping: ``mu <- damping mu + (1 - damping) g(...)``.
    :param init: ``None`` (all marginals 0.5) or a callable ``(*args, **kwargs) -> {site:
        mu}`` for the start (e.g. a bottom-up pass).
    :param blocks: sites updated together (found automatically, as for ``BlockGibbs``).
    """

    def __init__(self, model: Callable, *args, **kwargs) -> None:
        super().__init__(model, *args, **kwargs)
        self._checked: tuple | None = None

    def _setup(self, args, kwargs) -> Multilinear:
        with poutine.block(), torch.no_grad():
            tr = poutine.trace(self.model).get_trace(*args, **kwargs)
        names = self._binary_sites(tr.nodes, "pyro")
        if not getattr(self, "_dependence_checked", False):
            deps = energy_dependencies(self.model, args, kwargs)
            check_energy_dependence(tr.nodes, deps, "MeanFieldGuide", "pyro")
            self._dependence_checked = True
        # the model is checked (multilinear, blocks) on the first call only
        m = Multilinear(self.model, names, args, kwargs, self.blocks, tr, self._checked)
        self._checked = m.blocks
        return m

    def mean_field(self, *args, **kwargs) -> dict:
        """The mean-field marginals ``{site: mu}`` for the model run on ``args``."""
        m = self._setup(args, kwargs)
        if self.init is None:
            start = {n: 0.5 + ops.zeros(m.shapes[n], m.like) for n in m.names}
        else:
            start = {
                n: torch.as_tensor(v, device=m.like.device).float()
                for n, v in self.init(*args, **kwargs).items()
            }
        return ml.mean_field(m.grad, start, m.blocks, self.num_iters, self.damping, self.tol)

    def bound(self, *args, log_z: Any = 0.0, **kwargs) -> torch.Tensor:
        """``log p(x_obs, mu) + H(mu) - log_z``: the ELBO at the mean-field fixed point."""
        mus = self.mean_field(*args, **kwargs)
        m = self._setup(args, kwargs)
        with torch.no_grad():
            return m.log_joint(mus) + ml.entropy(mus) - log_z

    def __call__(self, *args, **kwargs) -> dict:
        mus = self.mean_field(*args, **kwargs)
        return {
            n: pyro.sample(n, dist.Bernoulli(probs=mu).to_event(mu.dim())) for n, mu in mus.items()
        }
