"""Stochastic-approximation maximum likelihood (CD-k / persistent CD) for NumPyro models."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.distributions import biject_to, constraints
from numpyro.optim import _NumPyroOptim, optax_to_numpyro
from tqdm import tqdm

from ebm_ppl.checkpoint import flatten_state, load_checkpoint, save_checkpoint, unflatten_state
from ebm_ppl.inference.dependence import SAMLE_WHERE, check_energy_dependence
from ebm_ppl.inference.samle import (
    batch_indices,
    chain_axis,
    check_checkpoint,
    check_config,
    check_divergence,
    data_size,
    epoch_data,
    init_chains,
    plan_run,
    reconstruction_error,
    sa_objective,
    validate_observed,
)
from ebm_ppl.numpyro import sharding
from ebm_ppl.numpyro.dependence import concrete_eval, energy_dependencies

__all__ = ["SAMLE", "SAMLEState"]


class SAMLEState(NamedTuple):
    """State of :class:`SAMLE` (a pytree, like ``numpyro.infer.svi.SVIState``).

    - **optim_state**: the optimizer state, holding the unconstrained parameters and the
      update count.
    - **chains**: the persistent chains, by site name (empty for CD-k).
    - **rng_key**: the PRNG key for the next update.
    """

    optim_state: Any
    chains: dict
    rng_key: jax.Array


class SAMLE:
    """Train the parameters of a NumPyro model's observed energy sites by stochastic approximation.

    The same algorithm as :class:`ebm_ppl.pyro.SAMLE` (one implementation in
    :mod:`ebm_ppl.inference.samle`): each update minimises ``-(mean log p~(data) - mean
    log p~(x_model))`` (eq. 9) with ``x_model`` from chains advanced by ``num_gibbs_steps``
    block-Gibbs sweeps at fixed parameters; persistent chains (PCD / SA) or chains restarted
    at the data (CD-k, ``persistent=False``).

    :param model: a NumPyro model with ``numpyro.param`` parameters and at least one energy
        site observed on data, called as ``model(batch, *args, **kwargs)``.
    :param optim: an optax ``GradientTransformation`` (momentum, weight decay, schedules such
        as :func:`ebm_ppl.numpyro.robbins_monro` as the learning rate) or a
        ``numpyro.optim`` optimizer.
    :param transition: ``None`` (block Gibbs) or a tempered operator for the persistent
        chains: ``ParallelTempering(betas)`` (then each site's chain state is the whole
        ladder; ``num_gibbs_steps`` counts tempering steps) or ``TemperedTransitions(betas)``.
    :param mesh: ``None`` (one device) or the devices to shard over: a
        ``jax.sharding.Mesh``, a device count or a list of devices (see
        :mod:`ebm_ppl.numpyro.sharding`). The persistent chains and every minibatch are split
        over the devices, parameters and optimizer state replicated; the gradient means are
        all-reduced by XLA. Updates equal the single-device ones for the same keys up to
        float reduction order. ``num_chains`` and ``batch_size`` must be multiples of the
        device count.

    The interface mirrors ``numpyro.infer.SVI``: ``init(rng_key, *args)``, a jitted
    ``update(state, *args) -> (state, stats)``, ``get_params(state)``, and ``run`` that
    trains over epochs of minibatches with one compiled ``lax.scan`` per epoch.
    """

    def __init__(
        self,
        model: Callable,
        optim: Any,
        num_gibbs_steps: int = 1,
        persistent: bool = True,
        num_chains: int | None = None,
        transition: Any = None,
        mesh: Any = None,
    ) -> None:
        if not callable(model):
            raise TypeError(f"model must be callable, got {type(model).__name__}")
        if isinstance(optim, _NumPyroOptim):
            self.optim = optim
        elif _is_optax(optim):
            self.optim = optax_to_numpyro(optim)
        else:
            raise TypeError(
                "optim must be an optax GradientTransformation (e.g. optax.sgd(0.05, "
                f"momentum=0.5)) or a numpyro.optim optimizer, got {type(optim).__name__}"
            )
        self.model = model
        self.config = check_config(num_gibbs_steps, persistent, num_chains, transition)
        self.constraints: dict[str, Any] = {}
        self.history: list[dict] = []
        self._last: tuple = (None, None)  # (the state run returned or load made, batch size)
        self.mesh = None if mesh is None else sharding.make_mesh(mesh)
        self._update = jax.jit(self._update_impl)
        self._epoch_fns: dict = {}

    # ---- placement on devices ---------------------------------------------------------------

    @property
    def _chain_axis(self) -> int:
        return chain_axis(self.config.transition)

    def place(self, state: SAMLEState) -> SAMLEState:
        """``state`` on this trainer's mesh: chains split over the devices along their chain
        axis, the rest replicated (a no-op without a mesh). Used by :meth:`init` and
        :meth:`load`, so a run saved on ``N`` devices resumes on ``M``."""
        if self.mesh is None:
            return state
        return SAMLEState(
            sharding.replicate(state.optim_state, self.mesh),
            sharding.shard_batch(
                state.chains, self.mesh, self._chain_axis, "the persistent chains (num_chains)"
            ),
            sharding.replicate(state.rng_key, self.mesh),
        )

    def _constrain_args(self, args):
        if self.mesh is None or not args or getattr(args[0], "ndim", 0) < 1:
            return args
        batch = sharding.constrain_batch(args[0], self.mesh, 0, "the data batch (batch_size)")
        return (batch,) + tuple(args[1:])

    # ---- set-up ---------------------------------------------------------------------------

    def _trace(self, key, params, args, kwargs):
        model = handlers.seed(self.model, key)
        if params is not None:
            model = handlers.substitute(model, data=params)
        return handlers.trace(model).get_trace(*args, **kwargs)

    def init(self, rng_key: jax.Array, *args, **kwargs) -> SAMLEState:
        """Initial state: parameters from the model's ``numpyro.param`` sites, fresh chains."""
        key_trace, key_chains, key_next = jax.random.split(rng_key, 3)
        tr = self._trace(key_trace, None, args, kwargs)
        validate_observed(tr)
        with concrete_eval():
            deps = energy_dependencies(self.model, args, kwargs)
        check_energy_dependence(tr, deps, SAMLE_WHERE, "numpyro", allow_normalized=False)
        params = self._read_params(tr)
        chains = init_chains(key_chains, tr, self.config) if self.config.persistent else {}
        return self.place(SAMLEState(self.optim.init(params), chains, key_next))

    def _read_params(self, tr) -> dict:
        """Record the constraints of the trace's param sites; their unconstrained values."""
        params = {}
        for name, site in tr.items():
            if site["type"] == "param":
                constraint = site["kwargs"].get("constraint", constraints.real)
                self.constraints[name] = constraint
                params[name] = biject_to(constraint).inv(site["value"])
        if not params:
            raise ValueError("the model has no numpyro.param parameters to train")
        return params

    def _constrain(self, unconstrained: dict) -> dict:
        return {n: biject_to(self.constraints[n])(p) for n, p in unconstrained.items()}

    def get_params(self, state: SAMLEState) -> dict:
        """The current (constrained) parameter values."""
        return self._constrain(self.optim.get_params(state.optim_state))

    # ---- one update -----------------------------------------------------------------------

    def _update_impl(self, state: SAMLEState, args, kwargs):
        key_trace, key_chain, key_next = jax.random.split(state.rng_key, 3)
        args = self._constrain_args(args)

        def loss_fn(unconstrained):
            tr = self._trace(key_trace, self._constrain(unconstrained), args, kwargs)
            loss, chains, stats = sa_objective(key_chain, tr, state.chains, self.config)
            return loss, (chains, stats)

        params = self.optim.get_params(state.optim_state)
        (loss, (chains, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        optim_state = self.optim.update(grads, state.optim_state, value=loss)
        if self.mesh is not None:  # keep the chains split and the parameters replicated
            chains = sharding.constrain_batch(chains, self.mesh, self._chain_axis, "the chains")
            optim_state = sharding.constrain_replicated(optim_state, self.mesh)
        return SAMLEState(optim_state, chains, key_next), stats

    def update(self, state: SAMLEState, *args, **kwargs) -> tuple[SAMLEState, dict]:
        """One SA-MLE update (jitted); returns the new state and statistics.

        With a mesh of CPU devices the update waits for its result: XLA's CPU collectives
        can abort when several sharded programs are in flight on fewer cores than devices.
        """
        out = self._update(state, args, kwargs)
        if self.mesh is not None and _on_cpu(self.mesh):
            jax.block_until_ready(out)
        return out

    def reconstruction_error(self, state: SAMLEState, *args, **kwargs) -> float:
        """Reconstruction error of the model's observed energy sites on the given data."""
        params = self.get_params(state)
        if getattr(self, "_recon_fn", None) is None:

            @jax.jit
            def recon(params, args, kwargs):
                tr = self._trace(jax.random.PRNGKey(0), params, args, kwargs)
                return reconstruction_error(tr)

            self._recon_fn = recon
        try:  # compiled once (mean-field monitors would otherwise retrace every epoch)
            return float(self._recon_fn(params, args, kwargs))
        except (TypeError, jax.errors.ConcretizationTypeError):  # non-array model arguments
            tr = self._trace(jax.random.PRNGKey(0), params, args, kwargs)
            return float(reconstruction_error(tr))

    # ---- training loop --------------------------------------------------------------------

    def _epoch_fn(self, num_batches: int, batch_size: int, args, kwargs):
        key = (num_batches, batch_size)
        if key not in self._epoch_fns:
            if self.mesh is None:

                @jax.jit
                def epoch(state, x, idx, args, kwargs):
                    def body(s, i):
                        s, _ = self._update_impl(s, (x[i],) + tuple(args), kwargs)
                        return s, None

                    state, _ = jax.lax.scan(body, state, idx)
                    return state

            else:  # the epoch's minibatches arrive gathered, each split over the devices

                @jax.jit
                def sharded_epoch(state, batches, args, kwargs):
                    def body(s, xb):
                        s, _ = self._update_impl(s, (xb,) + tuple(args), kwargs)
                        return s, None

                    state, _ = jax.lax.scan(body, state, batches)
                    return state

                def epoch(state, x, idx, args, kwargs):
                    batches = jax.device_put(
                        x[idx], sharding.batch_sharding(self.mesh, x.ndim + 1, axis=1)
                    )
                    return sharded_epoch(state, batches, args, kwargs)

            self._epoch_fns[key] = epoch
        return partial(self._epoch_fns[key], args=args, kwargs=kwargs)

    def run(
        self,
        rng_key: jax.Array,
        data: Any,
        *args,
        num_epochs: int = 1,
        batch_size: int = 100,
        shuffle: bool = True,
        seed: int = 0,
        progress_bar: bool | None = None,
        init_state: SAMLEState | None = None,
        checkpoint: str | Path | None = None,
        **kwargs,
    ) -> SAMLEState:
        """Train for ``num_epochs`` epochs of minibatches; returns the final state.

        ``data`` is an array ``(n, ...)`` or a callable ``epoch -> array`` with ``__len__``
        (e.g. :class:`~ebm_ppl.datasets.StochasticBinarization`). Each epoch is one compiled
        ``lax.scan`` over its minibatches. The progress bar (on when stderr is a terminal,
        unless ``progress_bar`` says otherwise) shows the reconstruction error after each
        epoch, also appended to ``history``. ``init_state`` resumes a run (e.g. from
        :meth:`load`); epochs continue from the state's update count: ``num_epochs`` is the
        total, so a resumed run ends where an uninterrupted one would, and a call with
        nothing left to do warns. An epoch is ``n // batch_size`` full minibatches (the
        ``n % batch_size`` left over differ every epoch with ``shuffle``; without it the same
        ones are never used, which warns). The batch size cannot change for a state this
        trainer made or loaded (it fixes what the update count means); see
        :func:`ebm_ppl.inference.samle.plan_run`. With ``checkpoint`` the state is saved
        after every epoch.
        """
        n = data_size(data)
        if self.mesh is not None and min(batch_size, n) % sharding.num_shards(self.mesh):
            raise ValueError(
                f"batch_size={min(batch_size, n)} must be a multiple of the mesh's "
                f"{sharding.num_shards(self.mesh)} devices (each holds an equal share)"
            )
        raw = epoch_data(data, 0)
        x0 = _as_device_array(raw)
        state = (
            init_state
            if init_state is not None
            else self.init(rng_key, x0[:batch_size], *args, **kwargs)
        )
        state = self.place(state)
        done = int(state.optim_state[0])
        # the batch size a state was made with is known for the states this trainer
        # returned or loaded (the object itself is passed back)
        last_state, last_bs = self._last
        made_with = last_bs if init_state is not None and init_state is last_state else None
        steps_per_epoch, first_epoch = plan_run(done, n, batch_size, num_epochs, shuffle, made_with)
        disable = None if progress_bar is None else not progress_bar
        bs = min(batch_size, n)
        epoch_fn = self._epoch_fn(steps_per_epoch, bs, args, kwargs)
        with tqdm(
            total=max(0, num_epochs - first_epoch), disable=disable, desc="SAMLE", unit="epoch"
        ) as bar:
            x, checked, warned = x0, False, False
            for epoch in range(first_epoch, num_epochs):
                if callable(data) and epoch > 0:
                    new_raw = epoch_data(data, epoch)
                    # the same (immutable) JAX array again needs no new copy or check
                    if not (isinstance(new_raw, jax.Array) and new_raw is raw):
                        raw, x, checked = new_raw, _as_device_array(new_raw), False
                if not checked:
                    # check the epoch's data eagerly (inside jit values cannot be inspected)
                    tr = self._trace(jax.random.PRNGKey(0), None, (x,) + args, kwargs)
                    validate_observed(tr)
                    if not self.constraints:  # a state made by another trainer instance
                        self._read_params(tr)
                    checked = True
                idx = batch_indices(n, batch_size, seed, epoch, shuffle)
                start = done - epoch * steps_per_epoch
                if start > 0:  # resuming inside an epoch: finish its remaining batches
                    for i in range(start, len(idx)):
                        state, _ = self.update(state, x[idx[i]], *args, **kwargs)
                else:
                    state = epoch_fn(state, x, jnp.asarray(idx))
                done = (epoch + 1) * steps_per_epoch
                rec = self.reconstruction_error(state, x[idx[-1]], *args, **kwargs)
                self.history.append({"step": done, "epoch": epoch, "recon_error": rec})
                bar.set_postfix(recon=f"{rec:.3f}", refresh=False)
                bar.update(1)
                alarm = check_divergence(self.get_params(state), epoch)
                if alarm is not None and not warned:
                    warnings.warn(alarm, RuntimeWarning, stacklevel=2)
                    warned = True
                self._last = (state, min(batch_size, n))
                if checkpoint is not None:
                    self.save(checkpoint, state)
        self._last = (state, min(batch_size, n))
        return state

    # ---- checkpoints ----------------------------------------------------------------------

    def save(self, path: str | Path, state: SAMLEState) -> Path:
        """Save the optimizer state (with the parameters), chains, key and history."""
        # sharded arrays are gathered whole (across processes too): the file does not
        # depend on the device count, so a run saved on N devices resumes on M
        optim_state = jax.tree_util.tree_map(sharding.to_host, state.optim_state)
        opt_tensors, opt_spec = flatten_state(optim_state, "optim")
        tensors = dict(opt_tensors)
        for name, x in state.chains.items():
            tensors[f"chains/{name}"] = sharding.to_host(x)
        key = (
            jax.random.key_data(state.rng_key)
            if jnp.issubdtype(state.rng_key.dtype, jax.dtypes.prng_key)
            else state.rng_key
        )
        tensors["rng/key"] = sharding.to_host(key)
        config = {
            "kind": "ebm_ppl.numpyro.SAMLE",
            "sa_config": self.config.describe(),
            "optim_spec": opt_spec,
            "history": self.history,
            "num_devices": 1 if self.mesh is None else sharding.num_shards(self.mesh),
            "batch_size": self._last[1] if state is self._last[0] else None,
        }
        if jax.process_index() != 0:  # multi-host: process 0 writes the file
            return Path(path)
        return save_checkpoint(path, tensors, config)

    def load(self, path: str | Path, rng_key: jax.Array, *args, **kwargs) -> SAMLEState:
        """Restore a state written by :meth:`save`, placed on this trainer's mesh.

        ``rng_key`` and ``args`` (a data batch) build a template state of the same structure
        (the model is traced once); the saved arrays then replace its leaves. The saving
        run's device count does not matter: the chains are re-split over this mesh.

        The checkpoint must fit the template: the parameters and optimizer state (number,
        shapes, dtypes), the persistent chains when ``persistent=True``, the key; otherwise
        a ``ValueError`` says what differs.
        """
        tensors, config = load_checkpoint(path, backend="jax")
        if config.get("kind") != "ebm_ppl.numpyro.SAMLE":
            raise ValueError(f"{path} is not a checkpoint of ebm_ppl.numpyro.SAMLE")
        template = self.init(rng_key, *args, **kwargs)
        shapes = {k: tuple(v.shape) for k, v in tensors.items()}
        expected = {n: tuple(c.shape) for n, c in template.chains.items()}
        check_checkpoint(
            path,
            shapes,
            chains=expected if self.config.persistent else None,
            chain_axis=chain_axis(self.config.transition),
            required=("rng/key",),
        )
        try:
            optim_state = unflatten_state(
                tensors, config["optim_spec"], "optim", "jax", template=template.optim_state
            )
        except ValueError as err:
            raise ValueError(
                f"{path} does not fit this trainer's parameters and optimizer state ({err}); "
                "load a checkpoint of this model saved with the same optimizer"
            ) from None
        chains = {k[len("chains/") :]: v for k, v in tensors.items() if k.startswith("chains/")}
        self.history = list(config.get("history", []))
        state = self.place(SAMLEState(optim_state, chains, jnp.asarray(tensors["rng/key"])))
        self._last = (state, config.get("batch_size"))
        return state


def _on_cpu(mesh) -> bool:
    return any(d.platform == "cpu" for d in mesh.devices.flat)


def _as_device_array(x: Any) -> jax.Array:
    if isinstance(x, jax.Array):
        return x
    return jnp.asarray(np.asarray(x, dtype=np.float32))


def _is_optax(x: Any) -> bool:
    return hasattr(x, "init") and hasattr(x, "update") and callable(x.update)
