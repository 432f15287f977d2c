"""Greedy layer-wise training, written once for both frontends: the loop of the DBN's
Algorithms 1 and 2 (section 3) and of the DBM's pretraining with the doubling trick
(section 4.2; Salakhutdinov & Hinton 2009).

Each layer is an RBM trained by the frontend's SA-MLE on the layer data (the data for the
first layer, fresh draws of a bottom-up pass through the layers below for the others), from
:func:`~ebm_ppl.models.dbn.greedy_layer_init`'s start, with the one-layer program of
:func:`~ebm_ppl.models.dbn.greedy_layer_model`. What differs between the PPLs (where the
random start comes from, how a trainer runs, resumes and hands back its parameters) is a
:class:`LayerTrainer` that each frontend provides."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ebm_ppl.inference.frontend_classes import layer_rbm
from ebm_ppl.inference.samle import data_size
from ebm_ppl.models.dbm import combine_pretrained, doubling
from ebm_ppl.models.dbn import check_below, check_greedy_args, greedy_layer_init, greedy_layer_model
from ebm_ppl.ops import Array

__all__ = ["LayerTrainer", "greedy_dbm_layers", "greedy_dbn_layers"]


class LayerTrainer(abc.ABC):
    """What a frontend gives the greedy loops: its PPL adapter ``ppl``, its ``RBM`` class, its
    ``GreedyLayerData`` class, and the per-PPL steps below."""

    ppl: Any
    rbm_cls: type
    layer_data_cls: type

    @abc.abstractmethod
    def first_batch(self, layer_data: Any) -> Array:
        """Epoch 0 of the layer data as a float array ``(n, n_low)`` where the layer trains."""

    @abc.abstractmethod
    def noise(self, layer: int, x0: Array, n_hidden: int) -> Array:
        """Standard normal ``(n_low, n_hidden)`` for layer ``layer``'s random start (like
        ``x0``: its dtype and device)."""

    @abc.abstractmethod
    def param_names(self, prefix: str, layer: int, names: Sequence[str]) -> Sequence[str]:
        """The names under which layer ``layer`` of the ``prefix`` model (``"dbn"``, ``"dbm"``)
        declares its parameters ``names`` (weights, lower bias, upper bias); a frontend with
        a global parameter store drops any stale values under them."""

    @abc.abstractmethod
    def fit(
        self,
        layer: int,
        model: Any,
        layer_data: Any,
        x0: Array,
        names: Sequence[str],
        run_kwargs: dict,
        checkpoint: Path | None,
    ) -> tuple[Array, Array, Array]:
        """Train layer ``layer``'s ``model`` by SA-MLE on ``layer_data`` (``run_kwargs``:
        ``num_epochs``, ``batch_size``, ``seed``, ``progress_bar``), resuming from and saving
        to ``checkpoint`` when given; returns the learned parameters named ``names``."""


def _run_kwargs(epochs: int, batch_size: int, seed: int, progress_bar: Any) -> dict:
    return {
        "num_epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "progress_bar": progress_bar,
    }


def greedy_dbn_layers(
    trainer: LayerTrainer,
    data: Any,
    hidden_sizes: Sequence[int],
    *,
    num_epochs: int | Sequence[int],
    batch_size: int,
    mode: str,
    tie_weights: bool,
    init_scale: float,
    seed: int,
    progress_bar: bool | None,
    below: Sequence,
) -> list:
    """The DBN's greedy layer-wise learning (Algorithms 1 and 2): the arguments of the
    frontends' ``greedy_pretrain``; returns the RBM layers, bottom first (``below`` first)."""
    sizes, epochs = check_greedy_args(hidden_sizes, num_epochs, mode, init_scale, seed)
    data_size(data)
    rbms: list = check_below(below, trainer.rbm_cls, "RBM") if len(below) else []
    first = len(rbms) + 1
    for layer, n_hidden in enumerate(sizes, start=first):
        layer_data = data if not rbms else trainer.layer_data_cls(rbms, data, mode, seed + layer)
        x0 = trainer.first_batch(layer_data)
        noise = trainer.noise(layer, x0, n_hidden)
        init = greedy_layer_init(rbms, n_hidden, x0, tie_weights, init_scale, noise)
        names = trainer.param_names("dbn", layer, ("weights", "visible_bias", "hidden_bias"))
        model = greedy_layer_model(trainer.ppl, trainer.rbm_cls, init, names)
        run = _run_kwargs(epochs[layer - first], batch_size, seed + layer, progress_bar)
        rbms.append(trainer.rbm_cls(*trainer.fit(layer, model, layer_data, x0, names, run, None)))
    return rbms


def greedy_dbm_layers(
    trainer: LayerTrainer,
    tied_cls: type,
    data: Any,
    hidden_sizes: Sequence[int],
    *,
    num_epochs: int | Sequence[int],
    batch_size: int,
    init_scale: float,
    seed: int,
    progress_bar: bool | None,
    checkpoint: str | Path | None,
) -> Any:
    """The DBM's greedy pretraining with the doubling trick: the arguments of the frontends'
    ``greedy_pretrain_dbm`` (``tied_cls``: the frontend's tied-copies RBM); RBM ``l`` sees
    doubled input on the sides that become inner DBM layers
    (:func:`~ebm_ppl.models.dbm.doubling`) and the next layer trains on fresh draws from it
    with that doubled input. With ``checkpoint`` (a directory) layer ``l``'s trainer is saved
    to and resumed from ``layer{l}.safetensors``. Returns
    :func:`~ebm_ppl.models.dbm.combine_pretrained` of the layers (``DBMParams``)."""
    sizes, epochs = check_greedy_args(hidden_sizes, num_epochs, "sample", init_scale, seed)
    data_size(data)
    trained: list[tuple] = []
    below: list = []
    for layer, n_hidden in enumerate(sizes):
        copies = doubling(len(sizes), layer)
        layer_data = (
            data if not below else trainer.layer_data_cls(below, data, "sample", seed + layer)
        )
        x0 = trainer.first_batch(layer_data)
        noise = trainer.noise(layer, x0, n_hidden)
        init = greedy_layer_init([], n_hidden, x0, False, init_scale, noise)
        names = trainer.param_names("dbm", layer, ("weights", "low_bias", "high_bias"))
        make_rbm = layer_rbm(trainer.rbm_cls, tied_cls, copies)
        model = greedy_layer_model(trainer.ppl, make_rbm, init, names, "x", copies[0])
        ckpt = None
        if checkpoint is not None:
            Path(checkpoint).mkdir(parents=True, exist_ok=True)
            ckpt = Path(checkpoint) / f"layer{layer}.safetensors"
        run = _run_kwargs(epochs[layer], batch_size, seed + layer, progress_bar)
        w, low, high = trainer.fit(layer, model, layer_data, x0, names, run, ckpt)
        trained.append((w, low, high))
        # the next layer's data: h ~ p(h | below) with the doubled input of an inner layer
        below.append(trainer.rbm_cls(copies[0] * w, low, high))
    return combine_pretrained(trained)
