"""The exchange algorithm as a Pyro MCMC kernel (:mod:`ebm_ppl.inference.exchange`)."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import pyro.poutine as poutine
import torch
from pyro.distributions.transforms import biject_to
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel

from ebm_ppl.inference import exchange as ex
from ebm_ppl.inference import frontend_classes as fc
from ebm_ppl.pyro.dependence import energy_dependencies
from ebm_ppl.pyro.handlers import quick_energy_draws
from ebm_ppl.pyro.kernels import InitialParams, inner_block_gibbs

__all__ = ["Exchange"]


class Exchange(InitialParams, ex.ExchangeSettings, MCMCKernel):
    __doc__ = fc.EXCHANGE_DOC.format(
        mcmc="pyro.infer.MCMC",
        gibbs="""
    (:class:`~ebm_ppl.pyro.BlockGibbs`), so the kernel samples the joint posterior.""",
        host="Pyro",
        aux_sweeps="""), so the chain targets the exact posterior. An int ``K``:
        ``K`` block-Gibbs sweeps started at the site's current value, the **approximate**
        double Metropolis-Hastings sampler of Liang (2010) (check by doubling ``K``).""",
        notes="""
    Randomness comes from torch's global generator (``pyro.set_rng_seed``). The kernel has
    no ``transforms``: ``initial_params`` and the samples are on the constrained scale.
    ``diagnostics()`` reports the acceptance rate and step size.""",
    )

    def _init_frontend(self, model: Callable) -> None:
        self.model = model
        self.transforms: dict = {}
        self._t = 0
        self._warmup = 0
        self._accept_sum = 0.0
        self._accept_n = 0

    # ---- set-up ---------------------------------------------------------------------------

    def _trace(self, values: dict | None, quick: bool = False):
        m = quick_energy_draws(self.model) if quick else self.model
        m = m if not values else poutine.condition(m, data=values)
        with poutine.block():
            return poutine.trace(m).get_trace(*self._args, **self._kwargs)

    def setup(self, warmup_steps: int, *args, **kwargs) -> None:
        self._args, self._kwargs = args, kwargs
        self._warmup = int(warmup_steps)
        with torch.no_grad():  # a structure trace: energy sites get init_chain states
            tr = self._trace(None, quick=True)
        deps = energy_dependencies(self.model, args, kwargs, tr.nodes)
        self._theta, self._energy_latent, self._exchange = ex.plan_sites(
            tr.nodes, deps, self.aux_sweeps
        )
        other, energy_latent = self._theta, self._energy_latent
        self._bijections = {n: biject_to(tr.nodes[n]["fn"].support) for n in other}
        given = self._initial_params if self._user_initial else {}
        theta = {}
        for n in other:
            like = tr.nodes[n]["value"]
            theta[n] = torch.as_tensor(given.get(n, like), dtype=like.dtype, device=like.device)
            theta[n] = theta[n].detach()
        self._theta_values = theta
        self._gibbs = None
        state = dict(theta)
        if energy_latent:
            self._gibbs = inner_block_gibbs(
                self.model,
                lambda: self._theta_values,
                self.gibbs_sweeps,
                given,
                energy_latent,
                warmup_steps,
                args,
                kwargs,
            )
            state.update({n: self._gibbs.initial_params[n] for n in energy_latent})
        self._initial_params = state
        self._step_size = self.step_size
        flat = self._flat({n: t.inv(theta[n]) for n, t in self._bijections.items()})
        self._scale = torch.ones_like(flat)
        self._adapt = (flat.new_zeros(()), torch.zeros_like(flat), torch.zeros_like(flat))
        self._windows = set(ex.warmup_windows(self._warmup))
        self._window_start = 0
        self._t = 0
        self._accept_sum, self._accept_n, self._last_accept = 0.0, 0, float("nan")

    # ---- the step -------------------------------------------------------------------------

    def _flat(self, u: dict) -> torch.Tensor:
        return torch.cat([u[n].reshape(-1) for n in self._theta])

    def _unflat(self, flat: torch.Tensor, like: dict) -> dict:
        out, start = {}, 0
        for n in self._theta:
            k = like[n].numel()
            out[n] = flat[start : start + k].reshape(like[n].shape)
            start += k
        return out

    def _log_joint(self, u: dict, rest: dict):
        values = dict(rest)
        logdet = 0.0
        for n, t in self._bijections.items():
            values[n] = t(u[n])
            logdet = logdet + t.log_abs_det_jacobian(u[n], values[n]).sum()
        tr = self._trace(values)
        return tr.log_prob_sum() + logdet, tr, values

    def sample(self, params: dict) -> dict:
        with torch.no_grad():
            return self._sample(params)

    def _sample(self, params: dict) -> dict:
        theta = {n: params[n].detach() for n in self._theta}
        rest = {}
        if self._gibbs is not None:
            self._theta_values = theta
            self._gibbs.retrace({n: params[n] for n in self._energy_latent})
            new = self._gibbs.sample({n: params[n] for n in self._energy_latent})
            rest = {n: new[n] for n in self._energy_latent}
        u = {n: t.inv(theta[n]) for n, t in self._bijections.items()}
        flat = self._flat(u)
        flat_new = flat + self._step_size * self._scale * torch.randn_like(flat)
        u_new = self._unflat(flat_new, u)
        lj, tr, _ = self._log_joint(u, rest)
        lj_new, tr_new, values_new = self._log_joint(u_new, rest)
        log_a = lj_new - lj
        for n in self._exchange:
            fn, fn_new = tr.nodes[n]["fn"], tr_new.nodes[n]["fn"]
            w = ex.auxiliary_draw(None, fn_new, tr.nodes[n]["value"], self.aux_sweeps)
            log_a = log_a + ex.auxiliary_log_ratio(fn, fn_new, w)
        log_a = float(log_a)
        if math.isnan(log_a):
            log_a = -math.inf
        accept_prob = math.exp(min(log_a, 0.0))
        uniform = torch.rand((), device=flat.device).item()
        accepted = math.log(max(uniform, 1e-300)) < log_a
        if accepted:
            theta = {n: values_new[n].detach() for n in self._theta}
        if self._t < self._warmup:
            self._adapt = ex.welford(*self._adapt, flat_new if accepted else flat)
            if self._t + 1 in self._windows:  # a window closes: new scales, restart the step
                if self._adapt[0] >= ex.MIN_ADAPT_DRAWS:
                    self._scale = ex.proposal_scale(self._adapt[0], self._adapt[2])
                self._adapt = tuple(torch.zeros_like(a) for a in self._adapt)
                self._step_size = ex.restart_step(flat.numel())
                self._window_start = self._t + 1
            else:
                self._step_size = math.exp(
                    ex.adapt_log_step(
                        math.log(self._step_size),
                        accept_prob,
                        self._t - self._window_start,
                        self.target_accept_prob,
                    )
                )
            if self._t + 1 == self._warmup:
                self._accept_sum, self._accept_n = 0.0, 0
        else:
            self._accept_sum += accept_prob
            self._accept_n += 1
        self._t += 1
        self._last_accept = accept_prob
        self._theta_values = theta
        return dict(rest, **theta)

    def logging(self) -> OrderedDict:
        return OrderedDict(
            [("acc. prob", f"{self._last_accept:.2f}"), ("step size", f"{self._step_size:.3g}")]
        )

    def diagnostics(self) -> dict:
        rate = self._accept_sum / self._accept_n if self._accept_n else float("nan")
        return {"acceptance rate": rate, "step_size": self._step_size}

    def cleanup(self) -> None:
        if not self._user_initial:
            self._initial_params = None
        self._user_initial = False

    @property
    def exchange_sites(self) -> list:
        """The energy sites whose normalizers the exchange step cancels (set at set-up)."""
        return list(getattr(self, "_exchange", []))
