"""The exchange algorithm as a NumPyro MCMC kernel (:mod:`ebm_ppl.inference.exchange`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions import biject_to
from numpyro.infer.mcmc import MCMCKernel
from numpyro.infer.util import log_density
from numpyro.util import is_prng_key

from ebm_ppl.inference import exchange as ex
from ebm_ppl.inference import frontend_classes as fc
from ebm_ppl.inference.dependence import latent_sites
from ebm_ppl.numpyro.dependence import concrete_eval, energy_dependencies
from ebm_ppl.numpyro.handlers import quick_energy_draws
from ebm_ppl.numpyro.kernels import BlockGibbs, ZKernel

__all__ = ["Exchange", "ExchangeState"]


class ExchangeState(NamedTuple):
    """State of :class:`Exchange`.

    - **i**: iteration number.
    - **z**: the latent values (parameters on their constrained scale, latent energy sites).
    - **accept_prob**: acceptance probability of the last exchange proposal.
    - **mean_accept_prob**: running mean of it (over warmup, then over sampling).
    - **step_size**: the random-walk step on the unconstrained parameters.
    - **scale**: per-coordinate proposal scales (the flattened unconstrained parameters'
      standard deviations over the warmup, ones before; see
      :func:`~ebm_ppl.inference.exchange.proposal_scale`).
    - **adapt**: ``(count, mean, m2)``, the running moments of the warmup draws.
    - **rng_key**: the PRNG key for the next step.
    """

    i: jax.Array
    z: dict
    accept_prob: jax.Array
    mean_accept_prob: jax.Array
    step_size: jax.Array
    scale: jax.Array
    adapt: tuple
    rng_key: jax.Array


class Exchange(ZKernel, ex.ExchangeSettings, MCMCKernel):
    __doc__ = fc.EXCHANGE_DOC.format(
        mcmc="numpyro.infer.MCMC",
        gibbs=""" (as
    :class:`~ebm_ppl.numpyro.BlockGibbs`), so the kernel samples the joint posterior.""",
        host="NumPyro",
        aux_sweeps=""", e.g. an RBM with at most 20 hidden units or a small
        :class:`~ebm_ppl.numpyro.Ising` lattice), so the chain targets the exact posterior.
        An int ``K``: ``K`` block-Gibbs sweeps started at the site's current value, the
        **approximate** double Metropolis-Hastings sampler of Liang (2010), whose bias
        shrinks as ``K`` grows (check by doubling ``K``).""",
        notes="""
    ``extra_fields=("accept_prob",)`` records the acceptance probabilities; works with
    ``chain_method`` ``"sequential"``, ``"parallel"`` and ``"vectorized"``.""",
    )

    def _init_frontend(self, model: Callable) -> None:
        self._model = model
        self._num_warmup = 0

    # ---- set-up -------------------------------------------------------------------------

    def _trace(self, key, values, args, kwargs):
        model = handlers.seed(self._model, key)
        if values is not None:
            model = handlers.substitute(model, data=values)
        else:  # a structure trace: energy sites get init_chain states, no Gibbs run
            model = quick_energy_draws(model)
        return handlers.trace(model).get_trace(*args, **kwargs)

    def _setup(self, args, kwargs) -> dict:
        tr = self._trace(jax.random.PRNGKey(0), None, args, kwargs)
        deps = energy_dependencies(self._model, args, kwargs)
        self._theta, self._energy_latent, self._exchange = ex.plan_sites(tr, deps, self.aux_sweeps)
        self._transforms = {n: biject_to(tr[n]["fn"].support) for n in self._theta}
        self._gibbs = None
        if self._energy_latent:
            self._gibbs = BlockGibbs(self._model, num_sweeps=self.gibbs_sweeps).gibbs_fn(
                *args, check_dependence=False, **kwargs
            )
        return {n: tr[n]["value"] for n in latent_sites(tr)}

    # ---- the step -----------------------------------------------------------------------

    def _log_joint(self, u: dict, rest: dict, args, kwargs):
        """Log joint (unnormalized energy sites) at unconstrained ``u``, with the Jacobian;
        also ``{exchange site: (distribution, value)}`` from the trace, and the values."""
        values = dict(rest)
        logdet = 0.0
        for n, t in self._transforms.items():
            values[n] = t(u[n])
            logdet = logdet + t.log_abs_det_jacobian(u[n], values[n]).sum()
        lp, tr = log_density(handlers.seed(self._model, 0), args, kwargs, values)
        sites = {n: (tr[n]["fn"], tr[n]["value"]) for n in self._exchange}
        return lp + logdet, sites, values

    def _flat(self, u: dict) -> jax.Array:
        return ravel_pytree({n: u[n] for n in self._theta})[0]

    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        model_kwargs = {} if model_kwargs is None else model_kwargs
        self._num_warmup = int(num_warmup)
        with concrete_eval():
            start = self._setup(model_args, model_kwargs)

        if init_params is not None:
            missing = sorted(set(start) - set(init_params))
            if missing:
                raise ValueError(
                    f"init_params must give every latent site {sorted(start)} (constrained "
                    f"values); missing {missing}"
                )

        def one(key, params):
            z = dict(start) if params is None else {n: jnp.asarray(params[n]) for n in start}
            if params is None:
                keys = jax.random.split(key, len(self._energy_latent) + 1)
                tr = self._trace(keys[0], None, model_args, model_kwargs)
                z = {n: tr[n]["value"] for n in start}
            flat = self._flat({n: t.inv(z[n]) for n, t in self._transforms.items()})
            zeros = jnp.zeros_like(flat)
            return ExchangeState(
                jnp.array(0),
                z,
                jnp.array(0.0),
                jnp.array(0.0),
                jnp.array(self.step_size),
                jnp.ones_like(flat),
                (jnp.array(0.0), zeros, zeros),
                jax.random.fold_in(key, 1),
            )

        if is_prng_key(rng_key):
            return one(rng_key, init_params)
        if init_params is None:
            return jax.vmap(lambda k: one(k, None))(rng_key)
        return jax.vmap(one)(rng_key, init_params)

    def _sample_one(self, state: ExchangeState, args, kwargs) -> ExchangeState:
        k_gibbs, k_prop, k_aux, k_acc, k_next = jax.random.split(state.rng_key, 5)
        z = dict(state.z)
        theta = {n: z[n] for n in self._theta}
        if self._gibbs is not None:
            gibbs_sites = {n: z[n] for n in self._energy_latent}
            z.update(self._gibbs(k_gibbs, gibbs_sites, theta))
        rest = {n: z[n] for n in self._energy_latent}
        u = {n: t.inv(theta[n]) for n, t in self._transforms.items()}
        flat, unravel = ravel_pytree({n: u[n] for n in self._theta})
        noise = jax.random.normal(k_prop, flat.shape, flat.dtype)
        u_new = unravel(flat + state.step_size * state.scale * noise)
        lj, sites, _ = self._log_joint(u, rest, args, kwargs)
        lj_new, sites_new, values_new = self._log_joint(u_new, rest, args, kwargs)
        log_a = lj_new - lj
        for k, n in zip(jax.random.split(k_aux, len(self._exchange)), self._exchange):
            (fn, value), fn_new = sites[n], sites_new[n][0]
            w = jax.lax.stop_gradient(ex.auxiliary_draw(k, fn_new, value, self.aux_sweeps))
            log_a = log_a + ex.auxiliary_log_ratio(fn, fn_new, w)
        log_a = jnp.where(jnp.isnan(log_a), -jnp.inf, log_a)
        accept_prob = jnp.exp(jnp.minimum(log_a, 0.0))
        accept = jnp.log(jax.random.uniform(k_acc)) < log_a
        for n in self._theta:
            z[n] = jnp.where(accept, values_new[n], theta[n])
        warm = state.i < self._num_warmup
        flat_now = jnp.where(accept, ravel_pytree({n: u_new[n] for n in self._theta})[0], flat)
        bounds = jnp.asarray(ex.warmup_windows(self._num_warmup) or (-1,))
        closing = warm & jnp.any(bounds == state.i + 1)
        moments = ex.welford(*state.adapt, flat_now)
        enough = moments[0] >= ex.MIN_ADAPT_DRAWS
        scale = jnp.where(closing & enough, ex.proposal_scale(moments[0], moments[2]), state.scale)
        reset = jax.tree_util.tree_map(jnp.zeros_like, moments)
        adapt = jax.tree_util.tree_map(
            lambda r, m, old: jnp.where(closing, r, jnp.where(warm, m, old)),
            reset,
            moments,
            state.adapt,
        )
        start = jnp.max(jnp.where(bounds <= state.i, bounds, 0))
        log_step = ex.adapt_log_step(
            jnp.log(state.step_size), accept_prob, state.i - start, self.target_accept_prob
        )
        step = jnp.where(
            closing,
            ex.restart_step(flat.shape[0]),
            jnp.where(warm, jnp.exp(log_step), state.step_size),
        )
        # the running mean restarts when sampling begins
        n_seen = jnp.where(warm, state.i, state.i - self._num_warmup)
        mean = jnp.where(
            n_seen == 0,
            accept_prob,
            state.mean_accept_prob + (accept_prob - state.mean_accept_prob) / (n_seen + 1),
        )
        return ExchangeState(state.i + 1, z, accept_prob, mean, step, scale, adapt, k_next)

    def get_diagnostics_str(self, state: ExchangeState) -> str:
        return (
            f"acc. prob {float(np.mean(state.mean_accept_prob)):.2f}, "
            f"step {float(np.mean(state.step_size)):.3g}"
        )

    @property
    def exchange_sites(self) -> list:
        """The energy sites whose normalizers the exchange step cancels (set at ``init``)."""
        return list(getattr(self, "_exchange", []))
