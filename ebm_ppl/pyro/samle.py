"""Stochastic-approximation maximum likelihood (CD-k / persistent CD) for Pyro models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.optim import PyroOptim
from tqdm import tqdm

from ebm_ppl.inference.samle import (
    batch_indices,
    check_config,
    data_size,
    epoch_data,
    init_chains,
    reconstruction_error,
    sa_objective,
    validate_observed,
)
from ebm_ppl.io import flatten_state, load_checkpoint, save_checkpoint, unflatten_state

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
        self.lr_schedule = lr_schedule
        self.chains: dict[str, torch.Tensor] | None = None
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
        return self._step(True, args, kwargs)

    def _step(self, validate: bool, args, kwargs) -> dict[str, float]:
        with poutine.trace(param_only=True) as param_capture:
            tr = poutine.trace(self.model).get_trace(*args, **kwargs)
        params = {site["value"].unconstrained() for site in param_capture.trace.nodes.values()}
        if not params:
            raise ValueError("the model has no pyro.param parameters to train")
        if validate:
            validate_observed(tr.nodes)
        if self.config.persistent and self.chains is None:
            self.chains = init_chains(None, tr.nodes, self.config)
        loss, chains, stats = sa_objective(None, tr.nodes, self.chains or {}, self.config)
        loss.backward()
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
        self._last_trace = tr
        return {k: float(v) for k, v in stats.items()}

    def reconstruction_error(self) -> float:
        """Reconstruction error of the last update's batch (a cheap training monitor)."""
        with torch.no_grad():
            return float(reconstruction_error(self._last_trace.nodes))

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
        **kwargs,
    ) -> list[dict]:
        """Train for ``num_epochs`` epochs of minibatches of ``data``.

        ``data`` is an array ``(n, ...)`` or a callable ``epoch -> array`` with ``__len__``
        (e.g. :class:`~ebm_ppl.datasets.StochasticBinarization` for a fresh binarization per
        epoch). The model is called as ``model(batch, *args, **kwargs)``. The progress bar
        (on when stderr is a terminal, unless ``progress_bar`` says otherwise) shows the
        reconstruction error every ``log_every`` updates, which is also appended to
        ``history``. With ``checkpoint`` the trainer is saved after every epoch.
        Epochs continue from ``self.num_steps`` so a resumed run picks up where it stopped.
        """
        n = data_size(data)
        steps_per_epoch = len(batch_indices(n, batch_size, seed, 0, shuffle=False))
        first_epoch = self.num_steps // steps_per_epoch
        disable = None if progress_bar is None else not progress_bar
        total = steps_per_epoch * max(0, num_epochs - first_epoch)
        with tqdm(total=total, disable=disable, desc="SAMLE", unit="upd") as bar:
            x = raw = None
            for epoch in range(first_epoch, num_epochs):
                new_raw = epoch_data(data, epoch) if x is None or callable(data) else raw
                if new_raw is not raw:  # the same array again needs no new copy or check
                    raw, x = new_raw, _as_tensor(new_raw)
                    # check the whole epoch's data once, not every minibatch
                    # (under a forked RNG, so checking does not change the random stream)
                    with torch.no_grad(), poutine.block(), torch.random.fork_rng(devices=[]):
                        validate_observed(
                            poutine.trace(self.model).get_trace(x, *args, **kwargs).nodes
                        )
                idx = batch_indices(n, batch_size, seed, epoch, shuffle)
                start = self.num_steps - epoch * steps_per_epoch
                for i in range(start, len(idx)):
                    self._step(False, (x[torch.as_tensor(idx[i])], *args), kwargs)
                    if self.num_steps % log_every == 0:
                        rec = self.reconstruction_error()
                        self.history.append(
                            {"step": self.num_steps, "epoch": epoch, "recon_error": rec}
                        )
                        bar.set_postfix(epoch=epoch, recon=f"{rec:.3f}", refresh=False)
                    bar.update(1)
                if checkpoint is not None:
                    self.save(checkpoint)
        return self.history

    # ---- checkpoints ----------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Save parameters, optimizer state, chains, step count and torch RNG state."""
        store = pyro.get_param_store()
        tensors: dict[str, Any] = {}
        for name in store.keys():
            tensors[f"param/{name}"] = store[name].detach()
        for name, x in (self.chains or {}).items():
            tensors[f"chains/{name}"] = x
        opt_tensors, opt_spec = flatten_state(self.optim.get_state(), "optim")
        tensors.update(opt_tensors)
        tensors["rng/torch"] = torch.get_rng_state()
        config = {
            "kind": "ebm_ppl.pyro.SAMLE",
            "num_steps": self.num_steps,
            "sa_config": self.config.describe(),
            "optim_spec": opt_spec,
            "history": self.history,
        }
        return save_checkpoint(path, tensors, config)

    def load(self, path: str | Path) -> SAMLE:
        """Restore a checkpoint written by :meth:`save` (into the global param store)."""
        tensors, config = load_checkpoint(path, backend="torch")
        if config.get("kind") != "ebm_ppl.pyro.SAMLE":
            raise ValueError(f"{path} is not a checkpoint of ebm_ppl.pyro.SAMLE")
        store = pyro.get_param_store()
        for key, value in tensors.items():
            if key.startswith("param/"):
                name = key[len("param/") :]
                store[name] = value
        chains = {k[len("chains/") :]: v for k, v in tensors.items() if k.startswith("chains/")}
        self.chains = chains or None
        self.optim.set_state(unflatten_state(tensors, config["optim_spec"], "optim", "torch"))
        torch.set_rng_state(tensors["rng/torch"])
        self.num_steps = int(config["num_steps"])
        self.history = list(config.get("history", []))
        return self


def _as_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    return torch.as_tensor(np.asarray(x, dtype=np.float32))
