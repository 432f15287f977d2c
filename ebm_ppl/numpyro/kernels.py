"""Block-Gibbs MCMC kernel for NumPyro models with energy sites."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.infer.mcmc import MCMCKernel
from numpyro.infer.util import log_density
from numpyro.util import is_prng_key

from ebm_ppl import ops
from ebm_ppl.inference import multilinear as ml
from ebm_ppl.inference.dependence import check_energy_dependence
from ebm_ppl.inference.gibbs import (
    HIDDEN_SUFFIX,
    BlockGibbsSettings,
    apply_clamps,
    block_gibbs_step,
    classify_sites,
    find_field_sites,
    make_clamps,
    site_field,
    tempered_block_step,
)
from ebm_ppl.inference.multilinear import binary_sites
from ebm_ppl.numpyro.dependence import concrete_eval, energy_dependencies
from ebm_ppl.numpyro.handlers import quick_energy_draws
from ebm_ppl.numpyro.multilinear import Multilinear

__all__ = ["BlockGibbs", "BlockGibbsState"]


class BlockGibbsState(NamedTuple):
    """State of :class:`BlockGibbs`.

    - **i**: iteration number.
    - **z**: latent energy-site values (and ``"<site>_hidden"`` with ``report_hidden``).
    - **free_energy**: total free energy of the latent energy sites at ``z`` (an energy
      trace for diagnostics; collect it with ``extra_fields=("free_energy",)``).
    - **rng_key**: the PRNG key for the next step.
    - **tempering**: per-site states of a tempered ``transition`` (e.g. the parallel-tempering
      ladders); empty for plain block Gibbs.
    """

    i: jax.Array
    z: dict
    free_energy: jax.Array
    rng_key: jax.Array
    tempering: dict = {}


class ZKernel:
    """Shared parts of our NumPyro kernels: the samples live in the state's ``z`` field, the
    model is read-only, and :meth:`sample` runs the kernel's ``_sample_one`` on one chain or,
    under ``chain_method="vectorized"``, maps it over the chains."""

    sample_field = "z"
    _model: Callable

    @property
    def model(self) -> Callable:
        return self._model

    @property
    def default_fields(self) -> tuple:
        return ("z",)

    def sample(self, state: NamedTuple, model_args, model_kwargs) -> NamedTuple:
        model_kwargs = {} if model_kwargs is None else model_kwargs
        if not is_prng_key(state.rng_key):  # chain_method="vectorized"
            return jax.vmap(lambda s: self._sample_one(s, model_args, model_kwargs))(state)
        return self._sample_one(state, model_args, model_kwargs)

    # NumPyro's contract of the method, as each kernel inherited it from ``MCMCKernel``
    sample.__doc__ = MCMCKernel.sample.__doc__

    @abc.abstractmethod
    def _sample_one(self, state: NamedTuple, model_args, model_kwargs) -> NamedTuple:
        """One transition of one chain (``state.rng_key`` a single key); :meth:`sample` maps
        it over the chains of ``chain_method="vectorized"``."""


class BlockGibbs(ZKernel, BlockGibbsSettings, MCMCKernel):
    """Block-Gibbs sampling of the latent energy sites of a NumPyro model.

    Runs under ``numpyro.infer.MCMC`` with any ``chain_method`` (``"sequential"``,
    ``"parallel"``, ``"vectorized"``). Every latent site whose distribution is one of ours
    (e.g. :class:`~ebm_ppl.numpyro.RBM`) is advanced by its exact block conditionals,
    alternating layers (for an RBM ``h ~ p(h|v)`` then ``v ~ p(v|h)``, eq. 6-8); hidden
    layers are auxiliary state, recorded as ``"<site>_hidden"`` with ``report_hidden=True``.

    :param model: a NumPyro model whose latent sample sites are all energy sites. To combine
        with continuous latent sites, use :meth:`gibbs_fn` inside ``numpyro.infer.HMCGibbs``
        (energy parameters that depend on those sites need ``normalized=True``), or
        :class:`~ebm_ppl.numpyro.Exchange` for parameters of energy sites. An energy site
        whose parameters depend on another latent site is refused unless it is
        ``normalized=True`` (its ``log_prob`` omits ``log Z``).
    :param clamp: ``{"site": (mask, values)}`` holds the coordinates where the boolean
        ``mask`` is true at ``values`` (inpainting): the chain samples the exact conditional
        of the rest. Same form as in the Pyro kernel.
    :param report_hidden: also record hidden states.
    :param num_sweeps: block-Gibbs sweeps per MCMC step (with ``transition``: operator
        steps).
    :param transition: ``None`` (block Gibbs) or a tempered operator,
        ``ParallelTempering(betas)`` (the ladders live in the state's ``tempering`` field) or
        ``TemperedTransitions(betas)``; not combinable with ``clamp``.
    :param blocks: for plain-PPL models (below), the sites of each block; automatic when
        ``None``.

    **Plain-PPL energies.** When the latent sites are Bernoulli sites (e.g. a DBM written as
    one ``numpyro.sample("h1", dist.Bernoulli(logits=...).to_event(1))`` per layer plus
    ``numpyro.factor("energy", -E(v, h1, h2))``) and the log joint is multilinear, the
    exact block conditionals come from autodiff, as in :class:`ebm_ppl.pyro.BlockGibbs`
    (:mod:`ebm_ppl.inference.multilinear`); the state's ``free_energy`` field then holds
    ``-log p`` of the joint.

    Other factors of the model must not depend on the energy sites' values (checked at
    ``init`` on random states).
    """

    def _init_frontend(self, model: Callable) -> None:
        self._model = model

    # ---- tracing --------------------------------------------------------------------------

    def _trace(self, key, values, args, kwargs):
        model = handlers.seed(self._model, key)
        if values is not None:
            model = handlers.condition(model, data=values)
        # energy sites without a value get init_chain states: tracing needs no Gibbs run
        return handlers.trace(quick_energy_draws(model)).get_trace(*args, **kwargs)

    def _setup(self, args, kwargs) -> None:
        tr = self._trace(jax.random.PRNGKey(0), None, args, kwargs)
        latent, _, other = classify_sites(tr)
        binary, rest, _ = binary_sites(tr)
        self._multilinear = None
        if binary and not latent and not rest:
            if self.transition is not None:
                raise ValueError("a tempered transition needs energy sites, not Bernoulli sites")
            shapes = {n: tuple(tr[n]["value"].shape) for n in binary}
            self._latent, self._dists = binary, {}
            self._multilinear = Multilinear(self._model, binary, shapes, args, kwargs, self.blocks)
            values = {n: jnp.asarray(tr[n]["value"], jnp.float32) for n in binary}
            self._clamps = make_clamps(self.clamp, values, binary)
            return
        if other:
            raise ValueError(
                f"BlockGibbs samples energy sites only, but the model has other latent sites "
                f"{other}. Use numpyro.infer.HMCGibbs(NUTS(model), "
                "gibbs_fn=BlockGibbs(model).gibbs_fn(*args), gibbs_sites=[...]) to combine it "
                "with NUTS for continuous sites."
            )
        if not latent:
            raise ValueError(
                "the model has no latent energy site to sample (every energy site is observed)"
            )
        for n in latent:
            if n + HIDDEN_SUFFIX in tr:
                raise ValueError(f"site name {n + HIDDEN_SUFFIX!r} is reserved for hidden states")
        check_energy_dependence(
            tr, energy_dependencies(self._model, args, kwargs), "BlockGibbs", "numpyro"
        )
        self._latent = latent
        self._dists = {n: tr[n]["fn"] for n in latent}
        self._fields = self._find_fields(args, kwargs, latent, self._dists)
        values = {n: tr[n]["value"] for n in latent}
        self._clamps = make_clamps(self.clamp, values, latent, self._dists)

    def _residual_fn(self, args, kwargs, latent: list[str]) -> Callable:
        """``values -> log joint - the latent energy sites' own log-densities`` (``values``
        may include continuous sites, e.g. HMC's)."""

        def residual(values):
            total, tr = log_density(handlers.seed(self._model, 0), args, kwargs, values)
            for n in latent:
                total = total - tr[n]["fn"].log_prob(values[n]).sum()
            return total

        return residual

    def _find_fields(self, args, kwargs, latent, dists, extra: Mapping | None = None) -> dict:
        """The checked fields other factors put on the energy sites (:func:`find_field_sites`)."""
        # compiled once: the set-up checks evaluate these a few dozen times
        residual = jax.jit(self._residual_fn(args, kwargs, latent))
        grad = jax.jit(jax.grad(self._residual_fn(args, kwargs, latent)))
        keys = jax.random.split(jax.random.PRNGKey(1), 3)
        draws = [
            dict(extra or {}, **{n: fn.init_chain(k, fn.shape()) for n, fn in dists.items()})
            for k in keys
        ]
        fields = find_field_sites(residual, grad, dists, draws)
        if fields and self.transition is not None:
            raise ValueError(
                f"other factors of the model depend on energy sites {sorted(fields)}; "
                "a tempered transition cannot include them. Use plain block Gibbs."
            )
        return fields

    def _field_fn(
        self, args, kwargs, fields: dict, latent: list[str], extra: Mapping | None = None
    ) -> Callable | None:
        """``field_of(name, values)`` for :func:`block_gibbs_step`, or None."""
        if not fields:
            return None
        grad = jax.grad(self._residual_fn(args, kwargs, latent))

        def field_of(name, values):
            spec = fields.get(name)
            if spec is None:
                return None
            full = dict(extra or {}, **values)
            return site_field(spec[0], lambda v: grad(v), full, name, spec[1])

        return field_of

    def _dists_at(self, key, z, args, kwargs) -> dict:
        values = {n: z[n] for n in self._latent}
        tr = self._trace(key, values, args, kwargs)
        return {n: tr[n]["fn"] for n in self._latent}

    def _step(self, key, dists, values, clamps, states, field_of=None):
        if self.transition is not None:
            new, aux, states, _ = tempered_block_step(
                key, self.transition, dists, values, states, self.num_sweeps
            )
        else:
            new, aux = block_gibbs_step(key, dists, values, clamps, self.num_sweeps, field_of)
        z = dict(new)
        if self.report_hidden:
            for n, h in aux.items():
                z[n + HIDDEN_SUFFIX] = h
        free_energy = sum(dists[n].unexpanded().free_energy(new[n]).sum() for n in self._latent)
        return z, free_energy, states

    # ---- MCMCKernel interface -------------------------------------------------------------

    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        model_kwargs = {} if model_kwargs is None else model_kwargs
        # the set-up checks need concrete values; chain_method="parallel" calls init inside
        # a pmap trace, where even constants would otherwise be traced
        with concrete_eval():
            self._setup(model_args, model_kwargs)
        if is_prng_key(rng_key):
            # compiled as one program (the data closed over, as in MCMC's own sampler): run
            # eagerly, every operation of the first sweep would compile on its own
            return jax.jit(lambda k, p: self._init_one(k, p, model_args, model_kwargs))(
                rng_key, init_params
            )
        if init_params is None:
            return jax.vmap(lambda k: self._init_one(k, None, model_args, model_kwargs))(rng_key)
        return jax.vmap(lambda k, p: self._init_one(k, p, model_args, model_kwargs))(
            rng_key, init_params
        )

    def _ml_step(self, key, values, clamps, args, kwargs):
        log_joint, grad = self._multilinear.fns(args, kwargs)
        blocks = self._multilinear.blocks
        values = ops.iterate(
            lambda k, v: ml.gibbs_sweep(k, grad, v, blocks, clamps),
            key,
            dict(values),
            self.num_sweeps,
            jnp.zeros(()),
        )
        return values, -log_joint(values)

    def _init_one(self, rng_key, init_params, args, kwargs) -> BlockGibbsState:
        key_init, key_step, key_next = jax.random.split(rng_key, 3)
        if self._multilinear is not None:
            if init_params is None:
                values = self._multilinear.random_state(key_init)
            else:
                values = {n: jnp.asarray(init_params[n], jnp.float32) for n in self._latent}
            clamps = self._clamps
            z, energy = self._ml_step(key_step, apply_clamps(values, clamps), clamps, args, kwargs)
            return BlockGibbsState(jnp.array(0), z, energy, key_next, {})
        dists = self._dists
        if init_params is None:
            keys = jax.random.split(key_init, len(self._latent))
            values = {
                n: dists[n].init_chain(k, dists[n].shape()) for n, k in zip(self._latent, keys)
            }
        else:
            values = {n: jnp.asarray(init_params[n]) for n in self._latent}
        clamps = self._clamps
        values = apply_clamps(values, clamps)
        states = {}
        if self.transition is not None:
            keys = jax.random.split(key_init, len(self._latent) + 1)[1:]
            states = {
                n: self.transition.init_state(k, dists[n], dists[n].shape())
                for n, k in zip(self._latent, keys)
            }
        field_of = self._field_fn(args, kwargs, self._fields, self._latent)
        z, free_energy, states = self._step(key_step, dists, values, clamps, states, field_of)
        return BlockGibbsState(jnp.array(0), z, free_energy, key_next, states)

    def _sample_one(self, state: BlockGibbsState, model_args, model_kwargs) -> BlockGibbsState:
        key_trace, key_step, key_next = jax.random.split(state.rng_key, 3)
        if self._multilinear is not None:
            values = {n: state.z[n] for n in self._latent}
            clamps = self._clamps
            z, energy = self._ml_step(
                key_step, apply_clamps(values, clamps), clamps, model_args, model_kwargs
            )
            return BlockGibbsState(state.i + 1, z, energy, key_next, {})
        dists = self._dists_at(key_trace, state.z, model_args, model_kwargs)
        values = {n: state.z[n] for n in self._latent}
        clamps = self._clamps
        field_of = self._field_fn(model_args, model_kwargs, self._fields, self._latent)
        z, free_energy, states = self._step(
            key_step, dists, apply_clamps(values, clamps), clamps, state.tempering, field_of
        )
        return BlockGibbsState(state.i + 1, z, free_energy, key_next, states)

    def get_diagnostics_str(self, state: BlockGibbsState) -> str:
        return f"free energy {float(np.mean(state.free_energy)):.4g}"

    # ---- composition with HMC / NUTS ------------------------------------------------------

    def gibbs_fn(self, *model_args, check_dependence: bool = True, **model_kwargs) -> Callable:
        """A ``gibbs_fn`` for ``numpyro.infer.HMCGibbs`` updating the energy sites.

        Returns ``fn(rng_key, gibbs_sites, hmc_sites) -> gibbs_sites``: the model is traced
        with the current continuous (HMC) values, then each energy site takes ``num_sweeps``
        exact block-Gibbs sweeps. Clamps apply.

        NUTS sees the energy sites' ``log_prob``, which is unnormalized: an energy site whose
        parameters depend on an HMC site would make NUTS target a wrong posterior (it omits
        ``-log Z(theta)``). Such sites are refused with a ``ValueError`` unless they are built
        with ``normalized=True`` (exact ``log Z``, small models); for larger models use
        :class:`~ebm_ppl.numpyro.Exchange`. ``check_dependence=False`` skips the check (for
        callers that handle ``log Z`` themselves).
        """

        if self._multilinear is not None:
            raise ValueError(
                "gibbs_fn composes energy sites with HMC; plain-PPL Bernoulli sites are "
                "sampled by BlockGibbs(model) under MCMC"
            )
        if self.transition is not None:
            raise ValueError(
                "gibbs_fn runs plain block Gibbs; a tempered transition keeps ladder states "
                "that HMCGibbs cannot carry. Build BlockGibbs(model) without transition."
            )

        tr = self._trace(jax.random.PRNGKey(0), None, model_args, model_kwargs)
        latent, _, other = classify_sites(tr)
        if check_dependence:
            with concrete_eval():
                deps = energy_dependencies(self._model, model_args, model_kwargs)
            check_energy_dependence(tr, deps, "HMCGibbs with this gibbs_fn", "numpyro")
        # everything fn needs is built here, once, and closed over: the kernel is not changed
        dists0 = {n: tr[n]["fn"] for n in latent}
        extra0 = {n: tr[n]["value"] for n in other}
        fields = self._find_fields(model_args, model_kwargs, latent, dists0, extra0)
        clamps = make_clamps(self.clamp, {n: tr[n]["value"] for n in latent}, latent, dists0)

        def fn(rng_key, gibbs_sites, hmc_sites):
            key_trace, key_step = jax.random.split(rng_key)
            values = dict(hmc_sites)
            values.update(gibbs_sites)
            tr = self._trace(key_trace, values, model_args, model_kwargs)
            names = [n for n in gibbs_sites]
            dists = {n: tr[n]["fn"] for n in names}
            site_clamps = {n: c for n, c in clamps.items() if n in gibbs_sites}
            current = apply_clamps(dict(gibbs_sites), site_clamps)
            field_of = self._field_fn(model_args, model_kwargs, fields, latent, extra=hmc_sites)
            new, _ = block_gibbs_step(
                key_step, dists, current, site_clamps, self.num_sweeps, field_of
            )
            return new

        return fn

    @property
    def energy_sites(self) -> dict:
        """The energy distributions of the latent sites, as traced at ``init``."""
        return dict(self._dists)

    @property
    def gibbs_blocks(self) -> tuple:
        """The blocks sampled in turn (plain-PPL models), set at ``init``."""
        return () if self._multilinear is None else self._multilinear.blocks
