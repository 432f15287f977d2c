"""Stochastic-approximation maximum likelihood (CD-k / persistent CD) for Pyro models."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.optim import PyroOptim
from tqdm import tqdm

from ebm_ppl.checkpoint import flatten_state, load_checkpoint, save_checkpoint, unflatten_state
from ebm_ppl.inference.dependence import SAMLE_WHERE, check_energy_dependence
from ebm_ppl.inference.gibbs import is_energy_distribution
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
from ebm_ppl.pyro import distributed as dist_utils
from ebm_ppl.pyro.dependence import energy_dependencies
from ebm_ppl.pyro.device import as_device
from ebm_ppl.pyro.handlers import quick_energy_draws

__all__ = ["SAMLE"]


class SAMLE:
    """Train the parameters of a Pyro model's observed energy sites by stochastic approximation.

    Each update minimises ``-(mean log p~(data) - mean log p~(x_model))`` (eq. 9), where the
    ``x_model`` are Markov chains advanced by ``num_gibbs_steps`` block-Gibbs sweeps with the
    parameters held fixed. ``persistent=True`` keeps ``num_chains`` chains across updates
    (PCD / SA; default one chain per data point of the first batch); ``persistent=False``
    restarts the chains at the data (CD-k, eq. 10).

    :param model: a Pyro model with ``pyro.param`` parameters and at least one energy site
        observed on data, called as ``model(batch, *args, **kwargs)``.
    :param optim: a ``pyro.optim`` optimizer (wrapping ``torch.optim``: momentum, weight
        decay, ... as usual), e.g. ``pyro.optim.SGD({"lr": 0.05, "momentum": 0.5})``.
    :param transition: ``None`` (block Gibbs) or a tempered operator for the persistent
        chains: ``ParallelTempering(betas)`` (then each site's chain state is the whole
        ladder; ``num_gibbs_steps`` counts tempering steps) or ``TemperedTransitions(betas)``.
    :param lr_schedule: optional ``t -> lr`` (e.g. :func:`ebm_ppl.pyro.robbins_monro`) that
        sets the learning rate before update ``t`` (counted from 0, saved in checkpoints).
    :param distributed: train data-parallel over the ranks of the initialised
        ``torch.distributed`` process group (see :mod:`ebm_ppl.pyro.distributed`; start
        with ``torchrun``). Each rank holds ``num_chains / world_size`` of the persistent
        chains and, in :meth:`run`, a contiguous ``batch_size / world_size`` share of every
        minibatch; gradients are averaged by one all-reduce per update, so the update is
        the single-process update on the whole minibatch and all chains. Parameters start
        from rank 0's values. Call :meth:`step` with the rank's own share of a batch.
        Checkpoints hold all chains and every rank's RNG state, and resume on any number
        of ranks that divides the chains.
    :param retrace: run the model at every update. By default a model whose only sample
        sites are energy sites observing the batch (the first argument), unscaled and
        unmasked, with distributions that hold only ``pyro.param`` tensors, is traced once
        per structure: later updates reuse the traced distributions (whose parameters torch
        updates in place) while the batch's shape, dtype and device, the other arguments (by
        identity) and the param store's tensors stay the same, and :meth:`run` traces again
        at every epoch. As with Pyro's ``JitTrace_ELBO``, that assumes the model is a
        function of its arguments and the param store; pass ``retrace=True`` for a model
        that reads other state (e.g. a global it changes between :meth:`step` calls).
        Any other model is traced at every update anyway.

    ``step(*args)`` is one update (the model may subsample with ``pyro.plate(...,
    subsample_size=...)``; plate scales are honoured); ``run(data, ...)`` loops over epochs
    of minibatches with a progress bar; ``save``/``load`` checkpoint the parameters,
    optimizer state, chains, step count and RNG state as safetensors + JSON.
    """

    def __init__(
        self,
        model: Callable,
        optim: PyroOptim,
        num_gibbs_steps: int = 1,
        persistent: bool = True,
        num_chains: int | None = None,
        transition: Any = None,
        lr_schedule: Callable[[int], float] | None = None,
        distributed: bool = False,
        retrace: bool = False,
    ) -> None:
        if not callable(model):
            raise TypeError(f"model must be callable, got {type(model).__name__}")
        if not isinstance(optim, PyroOptim):
            raise TypeError(
                "optim must be a pyro.optim optimizer such as pyro.optim.SGD({'lr': 0.05}), "
                f"got {type(optim).__name__}"
            )
        if lr_schedule is not None and not callable(lr_schedule):
            raise TypeError("lr_schedule must be a callable t -> learning rate")
        self.model = model
        self.optim = optim
        self.config = check_config(num_gibbs_steps, persistent, num_chains, transition)
        self.distributed = bool(distributed)
        self.rank, self.world_size = dist_utils.rank_and_world(required=self.distributed)
        if not self.distributed:
            self.rank, self.world_size = 0, 1
        self._local_config = self.config
        if num_chains is not None and self.world_size > 1:
            if num_chains % self.world_size:
                raise ValueError(
                    f"num_chains={num_chains} must be a multiple of the {self.world_size} "
                    "ranks (each holds an equal share of the persistent chains)"
                )
            self._local_config = self.config._replace(num_chains=num_chains // self.world_size)
        self._started = not self.distributed
        self._seed: int | None = None
        self.lr_schedule = lr_schedule
        self.chains: dict[str, torch.Tensor] | None = None
        self.retrace = bool(retrace)
        self._to_check: tuple | None = None  # a loaded checkpoint not yet checked (see load)
        #: the minibatch size of run's updates so far (fixes what the update count means)
        self.batch_size: int | None = None
        self._param_names: list[str] = []
        self._plan: _Plan | None = None
        self.num_steps = 0
        self.history: list[dict] = []

    def _set_lr(self) -> None:
        if self.lr_schedule is None:
            return
        lr = float(self.lr_schedule(self.num_steps))
        for obj in self.optim.optim_objs.values():
            opt = obj if isinstance(obj, torch.optim.Optimizer) else obj.optimizer
            for group in opt.param_groups:
                group["lr"] = lr

    def step(self, *args, **kwargs) -> dict[str, float]:
        """One SA-MLE update on the model run with ``args``; returns statistics.

        The data observed at energy sites is checked (shape, support, finiteness).
        """
        return {k: float(v) for k, v in self._step(True, args, kwargs).items()}

    @property
    def _chain_axis(self) -> int:
        return chain_axis(self.config.transition)

    def _start(self, args, kwargs) -> None:
        """First distributed update: derive this rank's random stream from the shared seed
        and give every rank rank 0's initial parameters."""
        self._seed = int(torch.initial_seed())
        torch.manual_seed(dist_utils.rank_seed(self._seed, self.rank))
        with poutine.trace(param_only=True) as param_capture, poutine.block(), torch.no_grad():
            self.model(*args, **kwargs)
        params = [site["value"].unconstrained() for site in param_capture.trace.nodes.values()]
        dist_utils.broadcast_(params, src=0)
        self._started = True

    def _step(self, validate: bool, args, kwargs) -> dict[str, torch.Tensor]:
        if self._to_check is not None:
            self._check_loaded(args, kwargs)
        if not self._started:
            self._start(args, kwargs)
        plan, traced = self._plan, False
        if plan is not None and not self.retrace and plan.fits(args, kwargs):
            # the model's structure, parameters and shapes are those of the last trace: the
            # same distribution objects see the new batch (no re-trace, no re-checks)
            nodes, params = plan.nodes(args[0]), plan.params
            if validate:
                validate_observed(nodes)
        else:
            nodes, params, plan = self._trace(validate, args, kwargs)
            traced = True
        if self.config.persistent and self.chains is None:
            self.chains = init_chains(None, nodes, self._local_config)
        loss, chains, stats = sa_objective(None, nodes, self.chains or {}, self.config)
        loss.backward()
        if self.world_size > 1:  # the mean over ranks of per-rank means: the global gradient
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            dist_utils.all_reduce_mean_([p.grad for p in params])
        if self.optim.optim_objs:
            self._set_lr()
        self.optim(params)
        if self.lr_schedule is not None and self.num_steps == 0:
            # optimizers are created lazily on the first call: set the lr and redo nothing
            self._set_lr()
        for p in params:  # like optimizer.zero_grad(set_to_none=True): no zero-filling pass
            p.grad = None
        if self.config.persistent:
            self.chains = chains
        self.num_steps += 1
        self._last_nodes = nodes
        if traced:
            # checked after the update, so that anything the distributions cached while
            # computing it is seen: a plan holds only if they hold nothing but the parameters
            self._plan = plan if plan is not None and plan.holds_only_parameters() else None
        return stats  # tensors: reading them would sync with the device every update

    def _trace(self, validate: bool, args, kwargs):
        """Run the model under a trace: its nodes, its parameters (in the model's order) and
        a :class:`_Plan` when later updates with same-shaped batches can skip the trace."""
        store = pyro.get_param_store()
        before = len(store)
        x = args[0] if args and isinstance(args[0], torch.Tensor) else None
        rng = _rng_state(x)
        with poutine.trace(param_only=True) as param_capture:
            tr = poutine.trace(self.model).get_trace(*args, **kwargs)
        # in the model's order (the same on every rank, unlike a set of tensors)
        named = {}
        for name, site in param_capture.trace.nodes.items():
            named.setdefault(id(site["value"].unconstrained()), (name, site))
        params = [site["value"].unconstrained() for _, site in named.values()]
        self._param_names = [n for n, _ in named.values()]
        if not params:
            raise ValueError("the model has no pyro.param parameters to train")
        if validate:
            validate_observed(tr.nodes)
        if not getattr(self, "_dependence_checked", False):
            deps = energy_dependencies(self.model, args, kwargs, tr.nodes)
            check_energy_dependence(tr.nodes, deps, SAMLE_WHERE, "pyro", allow_normalized=False)
            self._dependence_checked = True
        plan = _Plan.build(tr.nodes, [n for n, _ in named.values()], params, args, kwargs)
        if plan is not None and len(store) == before:
            # a deterministic model draws nothing that matters (only initial values of
            # parameters that already exist): leave the random stream as it was, so that an
            # update costs the same draws whether or not it had to trace
            _set_rng_state(rng)
        return tr.nodes, params, plan

    def _check_loaded(self, args, kwargs) -> None:
        """Check the loaded checkpoint against the model run with ``args`` (see :meth:`load`)."""
        path, shapes = self._to_check
        params, chains = self._model_spec(args, kwargs)
        axis = self._chain_axis
        check_checkpoint(path, shapes, params=params, chains=chains, chain_axis=axis)
        self._to_check = None

    def _model_spec(self, args, kwargs) -> tuple[dict, dict | None]:
        """``({parameter: shape}, {site: persistent-chain shape} or None)`` of the model run
        with ``args``, read on an empty parameter store (so that the shapes are the model's
        own, not a loaded checkpoint's) and without spending random draws."""
        store = pyro.get_param_store()
        saved = store.get_state()
        x = args[0] if args and isinstance(args[0], torch.Tensor) else None
        rng = _rng_state(x)
        store.clear()
        try:
            with torch.no_grad(), poutine.block():
                model = quick_energy_draws(self.model)
                nodes = poutine.trace(model).get_trace(*args, **kwargs).nodes
                params = {
                    n: tuple(s["value"].shape) for n, s in nodes.items() if s["type"] == "param"
                }
                chains = None
                if self.config.persistent:
                    made = init_chains(None, nodes, self._local_config)
                    chains = {n: tuple(c.shape) for n, c in made.items()}
        finally:
            store.clear()
            store.set_state(saved)
            _set_rng_state(rng)
        return params, chains

    def reconstruction_error(self) -> float:
        """Reconstruction error of the last update's batch (a cheap training monitor)."""
        with torch.no_grad():
            return float(reconstruction_error(self._last_nodes))

    def run(
        self,
        data: Any,
        *args,
        num_epochs: int = 1,
        batch_size: int = 100,
        shuffle: bool = True,
        seed: int = 0,
        progress_bar: bool | None = None,
        log_every: int = 50,
        checkpoint: str | Path | None = None,
        device: str | torch.device | None = None,
        **kwargs,
    ) -> list[dict]:
        """Train for ``num_epochs`` epochs of minibatches of ``data``.

        ``data`` is an array ``(n, ...)`` or a callable ``epoch -> array`` with ``__len__``
        (e.g. :class:`~ebm_ppl.datasets.StochasticBinarization` for a fresh binarization per
        epoch). The model is called as ``model(batch, *args, **kwargs)``. The progress bar
        (on when stderr is a terminal, unless ``progress_bar`` says otherwise) shows the
        reconstruction error every ``log_every`` updates, which is also appended to
        ``history``. With ``checkpoint`` the trainer is saved after every epoch.
        ``num_epochs`` is the total: epochs continue from ``self.num_steps``, so a resumed run
        picks up where it stopped and a second ``run(num_epochs=2)`` has nothing left to do
        (it warns). An epoch is ``n // batch_size`` full minibatches; the ``n % batch_size``
        examples left over differ every epoch with ``shuffle`` (without it the same ones are
        never used, which warns). The batch size cannot change once updates were made (it
        fixes what the update count means); see :func:`ebm_ppl.inference.samle.plan_run`.

        ``device`` (e.g. ``"cuda"``) is where training runs: the data are copied there once
        per epoch, the model's first call runs under ``torch.device(device)`` so that the
        initial values of new ``pyro.param`` parameters are created there, and parameters,
        their optimizer state and the chains held elsewhere (e.g. after :meth:`load`) are
        moved there. This is faster than ``torch.set_default_device``, which intercepts every
        torch call. Default: the data's device for a tensor, else torch's default device.
        """
        dev = None if device is None else as_device(device)
        n = data_size(data)
        steps_per_epoch, first_epoch = plan_run(
            self.num_steps, n, batch_size, num_epochs, shuffle, self.batch_size
        )
        if self.world_size > 1 and min(batch_size, n) % self.world_size:
            raise ValueError(
                f"batch_size={min(batch_size, n)} must be a multiple of the {self.world_size} "
                "ranks (each trains on an equal share of every minibatch)"
            )
        self.batch_size = min(batch_size, n)
        disable = None if progress_bar is None else not progress_bar
        if self.rank != 0:
            disable = True
        total = steps_per_epoch * max(0, num_epochs - first_epoch)
        with tqdm(total=total, disable=disable, desc="SAMLE", unit="upd") as bar:
            x = raw = None
            placed = warned = False
            for epoch in range(first_epoch, num_epochs):
                self._plan = None  # the first update of every epoch traces the model afresh
                new_raw = epoch_data(data, epoch) if x is None or callable(data) else raw
                if new_raw is not raw:  # the same array again needs no new copy or check
                    raw, x = new_raw, _as_tensor(new_raw, dev)
                    if dev is not None and not placed:
                        self._place(dev, x, args, kwargs)
                        placed = True
                    # check the whole epoch's data once, not every minibatch
                    # (under a forked RNG, so checking does not change the random stream)
                    with torch.no_grad(), poutine.block(), _draws_kept_for_new_params(x):
                        validate_observed(
                            poutine.trace(self.model).get_trace(x, *args, **kwargs).nodes
                        )
                # one upload of the epoch's row indices to the data's device, not one per update
                idx = torch.as_tensor(batch_indices(n, batch_size, seed, epoch, shuffle))
                idx = idx.reshape(len(idx), self.world_size, -1)[:, self.rank].to(x.device)
                start = self.num_steps - epoch * steps_per_epoch
                for i in range(start, len(idx)):  # this rank's share of each minibatch
                    self._step(False, (x[idx[i]], *args), kwargs)
                    if self.num_steps % log_every == 0:
                        rec = self.reconstruction_error()
                        self.history.append(
                            {"step": self.num_steps, "epoch": epoch, "recon_error": rec}
                        )
                        bar.set_postfix(epoch=epoch, recon=f"{rec:.3f}", refresh=False)
                    bar.update(1)
                store = pyro.get_param_store()
                with torch.no_grad():
                    alarm = check_divergence({k: store[k] for k in self._param_names}, epoch)
                if alarm is not None and not warned:
                    warnings.warn(alarm, RuntimeWarning, stacklevel=2)
                    warned = True
                if checkpoint is not None:
                    self.save(checkpoint)
        return self.history

    def _place(self, device: torch.device, x: torch.Tensor, args, kwargs, copy=False) -> None:
        """Create the model's new parameters on ``device`` (its first call under
        ``torch.device(device)``) and move there the parameters, their optimizer state and
        the chains that live elsewhere (``copy=True``: every one, as new tensors)."""
        with (
            torch.no_grad(),
            poutine.block(),
            _draws_kept_for_new_params(x),
            torch.device(device),
            poutine.trace(param_only=True) as capture,
        ):
            self.model(x, *args, **kwargs)
        store = pyro.get_param_store()
        names = list(dict.fromkeys(capture.trace.nodes))
        moved = [n for n in names if copy or store._params[n].device != device]
        if moved:
            states = self.optim.get_state()  # by name; consumed when an optimizer is created
            for name in moved:
                old = store._params[name]
                self.optim.optim_objs.pop(old, None)
                self.optim.grad_clip.pop(old, None)
                new = old.detach().to(device, copy=True).requires_grad_(True)
                # the store's own update of an unconstrained value (``store[name] = ...``
                # would round-trip a constrained one through its transform)
                store._params[name] = new
                store._param_to_name.pop(old, None)
                store._param_to_name[new] = name
            self.optim.set_state({n: states[n] for n in moved if n in states})
        if self.chains is not None:
            self.chains = {
                k: v.to(device, copy=copy) if copy or v.device != device else v
                for k, v in self.chains.items()
            }
        self._plan = None

    # ---- checkpoints ----------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Save parameters, optimizer state, chains, step count and torch RNG state.

        Distributed: every rank must call it (the chains and RNG states are gathered); rank
        0 writes the file holding all chains, so it resumes on any number of ranks.
        """
        store = pyro.get_param_store()
        tensors: dict[str, Any] = {}
        for name in store.keys():
            tensors[f"param/{name}"] = store[name].detach()
        for name, x in (self.chains or {}).items():
            tensors[f"chains/{name}"] = dist_utils.all_gather_cat(x, dim=self._chain_axis)
        opt_tensors, opt_spec = flatten_state(self.optim.get_state(), "optim")
        tensors.update(opt_tensors)
        rng = torch.get_rng_state()
        tensors["rng/torch"] = rng
        cuda = _cuda_device(tensors)
        if cuda is not None:  # draws on a GPU come from its own generator
            tensors["rng/cuda"] = torch.cuda.get_rng_state(cuda)
        if self.world_size > 1:
            tensors["rng/torch_ranks"] = dist_utils.all_gather_cat(rng[None], dim=0)
            if cuda is not None:
                tensors["rng/cuda_ranks"] = dist_utils.all_gather_cat(
                    tensors["rng/cuda"][None], dim=0
                )
        config = {
            "kind": "ebm_ppl.pyro.SAMLE",
            "num_steps": self.num_steps,
            "sa_config": self.config.describe(),
            "optim_spec": opt_spec,
            "history": self.history,
            "world_size": self.world_size,
            "seed": self._seed,
            "batch_size": self.batch_size,
        }
        out = Path(path)
        if self.rank == 0:
            out = save_checkpoint(path, tensors, config)
        dist_utils.barrier()
        return out

    def load(self, path: str | Path, *args, **kwargs) -> SAMLE:
        """Restore a checkpoint written by :meth:`save` (into the global param store).

        The checkpoint must fit this trainer: every parameter of the model with its shape,
        the persistent chains when ``persistent=True``, the random-generator state.
        Otherwise a ``ValueError`` says what differs (nothing is re-initialised in silence).
        With ``args`` (a data batch, as the model takes it) the model is traced now (on a
        private parameter store, without spending random draws) and checked at once;
        without, at the first update after loading.
        """
        tensors, config = load_checkpoint(path, backend="torch")
        if config.get("kind") != "ebm_ppl.pyro.SAMLE":
            raise ValueError(f"{path} is not a checkpoint of ebm_ppl.pyro.SAMLE")
        saved_world = int(config.get("world_size", 1))
        same_ranks = saved_world == self.world_size and self.world_size > 1
        shapes = {k: tuple(v.shape) for k, v in tensors.items()}
        rng_key = "rng/torch_ranks" if same_ranks else "rng/torch"
        check_checkpoint(path, shapes, required=(rng_key,))
        if self.config.persistent and not any(k.startswith("chains/") for k in tensors):
            raise ValueError(
                f"{path} holds no persistent chains but this trainer has persistent=True: "
                "the chains would restart from scratch; load a checkpoint written with "
                "persistent chains, or train with persistent=False"
            )
        self._to_check = (str(path), shapes)
        if args or kwargs:
            self._check_loaded(args, kwargs)
        store = pyro.get_param_store()
        for key, value in tensors.items():
            if key.startswith("param/"):
                name = key[len("param/") :]
                store[name] = value
        chains = {k[len("chains/") :]: v for k, v in tensors.items() if k.startswith("chains/")}
        if self.world_size > 1:  # this rank's share of all the saved chains
            chains = {
                k: dist_utils.split_for_rank(
                    v, self.rank, self.world_size, self._chain_axis, f"the saved chains {k!r}"
                )
                for k, v in chains.items()
            }
        self.chains = chains or None
        self.optim.set_state(unflatten_state(tensors, config["optim_spec"], "optim", "torch"))
        self.num_steps = int(config["num_steps"])
        if same_ranks:
            # a copy: set_rng_state misreads a view at a storage offset (segfault in torch 2.13)
            torch.set_rng_state(tensors["rng/torch_ranks"][self.rank].clone())
            _set_cuda_rng(tensors.get("rng/cuda_ranks"), self.rank)
        elif self.world_size == 1:
            torch.set_rng_state(tensors["rng/torch"])
            _set_cuda_rng(tensors.get("rng/cuda"))
        else:  # a new number of ranks: fresh streams, derived from the run's seed and step
            seed = config.get("seed")
            seed = int(torch.initial_seed()) if seed is None else int(seed)
            torch.manual_seed(dist_utils.rank_seed(seed, self.rank, self.num_steps))
        self._seed = config.get("seed", self._seed)
        self.batch_size = config.get("batch_size")
        self._started = True
        self.history = list(config.get("history", []))
        return self


def _as_tensor(x: Any, device: torch.device | None = None) -> torch.Tensor:
    """Training data as a tensor on ``device``; without one, a tensor stays where it is and
    an array goes to torch's default device."""
    if isinstance(x, torch.Tensor):
        return x if device is None else x.to(device)
    device = torch.get_default_device() if device is None else device
    return torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)


def _rng_state(x: torch.Tensor | None) -> tuple:
    """The generators a trace with data ``x`` can draw from: the CPU's, and that CUDA
    device's when ``x`` lives there."""
    cuda = x.device.index or 0 if x is not None and x.device.type == "cuda" else None
    return torch.get_rng_state(), cuda, None if cuda is None else torch.cuda.get_rng_state(cuda)


def _set_rng_state(state: tuple) -> None:
    cpu, cuda, cuda_state = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda_state, cuda)


@contextmanager
def _draws_kept_for_new_params(x: torch.Tensor):
    """Run a check of the model without spending random draws, except those that initialise
    new parameters (which then do not reuse the draws that the updates will make)."""
    store = pyro.get_param_store()
    before, state = len(store), _rng_state(x)
    try:
        yield
    finally:
        if len(store) == before:
            _set_rng_state(state)


class _Plan:
    """What one trace of a deterministic model fixes for the updates after it.

    A model qualifies when every sample site is an observed energy site whose value is the
    batch (the first argument) itself, unscaled and unmasked, in plates without subsampling,
    and whose distribution holds nothing but the parameter store's own tensors. Torch
    optimizers update those tensors in place, so the traced distribution objects stay
    exact for every later batch of the same shape, dtype and device, with the same other
    arguments (by identity), for as long as the store holds the same tensors. Anything else
    (a new shape, a parameter replaced or added, a latent site) traces again.
    """

    def __init__(self, sites: dict, names: list, params: list, args: tuple, kwargs: dict):
        x = args[0]
        self.sites, self.params = sites, params
        self.leaves = list(zip(names, params))
        self.key = (tuple(x.shape), x.dtype, x.device, len(args))
        self.rest, self.kwargs = args[1:], dict(kwargs)

    @classmethod
    def build(cls, nodes, names: list, params: list, args: tuple, kwargs: dict) -> _Plan | None:
        if not args or not isinstance(args[0], torch.Tensor):
            return None
        store = pyro.get_param_store()._params  # name -> unconstrained tensor
        if any(store.get(n) is not p for n, p in zip(names, params)):
            return None
        sites = {}
        for name, site in nodes.items():
            if site.get("type") != "sample":
                continue
            fn = site["fn"]
            if type(fn).__name__ == "_Subsample":
                if fn.subsample_size is not None and fn.subsample_size != fn.size:
                    return None  # random subsamples: every update draws new indices
                continue
            if not (site.get("is_observed") and is_energy_distribution(fn)):
                return None
            if site["value"] is not args[0] or site.get("mask") is not None:
                return None
            if site.get("scale") not in (None, 1.0):
                return None
            sites[name] = site
        if not sites:
            return None
        return cls(sites, names, params, args, kwargs)

    def holds_only_parameters(self) -> bool:
        """Whether every tensor the sites' distributions hold is one of the parameters."""
        ids = {id(p) for p in self.params}
        return all(
            all(id(t) in ids for t in _tensors_in(site["fn"])) for site in self.sites.values()
        )

    def fits(self, args: tuple, kwargs: dict) -> bool:
        """Whether a call with these arguments would trace to the same sites."""
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor):
            return False
        if (tuple(x.shape), x.dtype, x.device, len(args)) != self.key:
            return False
        if any(a is not b for a, b in zip(args[1:], self.rest)):
            return False
        if kwargs.keys() != self.kwargs.keys() or any(
            kwargs[k] is not v for k, v in self.kwargs.items()
        ):
            return False
        store = pyro.get_param_store()._params
        return all(store.get(n) is p for n, p in self.leaves)

    def nodes(self, x: torch.Tensor) -> dict:
        """The traced sites, observing ``x``."""
        return {name: {**site, "value": x} for name, site in self.sites.items()}


def _tensors_in(obj: Any, depth: int = 0) -> list:
    """Tensors held by a distribution (its attributes, lists of them and distributions in
    them, a few levels deep)."""
    out: list = []
    if depth > 4:
        return [obj]  # unknown depth: treat as holding something else
    values = vars(obj).values() if hasattr(obj, "__dict__") else ()
    for v in values:
        items = v.values() if isinstance(v, dict) else v if isinstance(v, (list, tuple)) else (v,)
        for item in items:
            if isinstance(item, torch.Tensor):
                out.append(item)
            elif isinstance(item, torch.distributions.Distribution):
                out.extend(_tensors_in(item, depth + 1))
    return out


def _cuda_device(tensors: dict[str, Any]) -> int | None:
    """The index of the CUDA device the trainer's tensors live on (None on the CPU)."""
    for x in tensors.values():
        if isinstance(x, torch.Tensor) and x.is_cuda:
            return x.device.index or 0
    return None


def _set_cuda_rng(state: torch.Tensor | None, rank: int | None = None) -> None:
    """Restore a saved CUDA generator state on the current CUDA device (if both exist)."""
    if state is None or not torch.cuda.is_available():
        return
    if rank is not None:
        state = state[rank]
    torch.cuda.set_rng_state(state.cpu().clone())
