"""Deep Boltzmann machines for Pyro (:mod:`ebm_ppl.models.dbm` holds the math)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from pyro.distributions import constraints

from ebm_ppl.inference import frontend_classes as fc
from ebm_ppl.inference.greedy import greedy_dbm_layers
from ebm_ppl.models.dbm import (
    DBMMethods,
    DBMVisibleMethods,
    TiedCopiesMethods,
    augmented_input_size,
    augmented_logits,
    check_num_classes,
    classifier_params,
)
from ebm_ppl.models.family import NormalizedLogProb
from ebm_ppl.pyro.dbn import _LayerTrainer
from ebm_ppl.pyro.device import randn_like as _randn
from ebm_ppl.pyro.distributions import RBM, _as_tensor, _Energy

__all__ = ["DBM", "DBMClassifier", "DBMVisible", "greedy_pretrain_dbm"]


class DBM(fc.DBMConstructor, NormalizedLogProb, DBMMethods, _Energy):
    r"""Deep Boltzmann machine over the concatenated layers ``[v, h1, ..., hL]`` (eq. 29-34).

    ``DBM(weights=[W1, ..., WL], biases=[b0, ..., bL])`` with ``W_l`` ``(n_(l-1), n_l)`` and
    ``b_l`` ``(n_l,)``; the event shape is ``(sum_l n_l,)``. ``sigma`` (a float or ``(n_0,)``,
    fixed or a learned ``param`` with a positive constraint) makes the visible units Gaussian:
    ``E = sum_i (v_i - b_0i)^2 / (2 sigma_i^2) - (v / sigma)^T W1 h1 - ...`` (as in eq. 11).
    :meth:`split` / :meth:`join` convert between the value and its layers.

    - ``log_prob(x)`` is the **unnormalized** ``-E(x)``; :meth:`log_partition` is exact when
      the odd layers have at most 20 units in all (enumerated, every even layer summed out
      analytically), otherwise use :func:`~ebm_ppl.pyro.AIS`, which anneals the odd layers
      with the even ones summed out.
    - :meth:`conditional_logits` gives eq. 31-34; ``sample()`` runs ``num_gibbs_steps``
      block-Gibbs sweeps (odd layers, then even layers; torch's global RNG) and
      :meth:`transition` takes a ``Clamp`` over ``v`` for conditional sampling.
    - :meth:`mean_field` solves eq. 39-41 per data point (bottom-up start with doubled
      weights, optional damping and tolerance); :meth:`mean_field_bound` is eq. 38.
    - :meth:`visible` is the site to observe on data and train with
      :class:`~ebm_ppl.pyro.SAMLE` (mean-field positive phase, persistent chains).

    ``expand`` is native and lazy. Parameters have no batch dimensions.
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.boolean, 1)
    _as_array = staticmethod(_as_tensor)
    _array_type = torch.Tensor


class DBMVisible(DBMVisibleMethods, _Energy):
    r"""A :class:`DBM` seen through its visible units, for stochastic approximation.

    ``log_prob(v)`` is the mean-field lower bound (eq. 38) on the unnormalized
    ``log p~(v)``, at the fixed point of at most ``num_iters`` damped sweeps (stopping once
    no marginal moves by more than ``tol``). Observed in a model,
    ``pyro.sample("v", dbm.visible(), obs=batch)``, it makes :class:`~ebm_ppl.pyro.SAMLE` run
    the DBM learning procedure of the review (section 4.2): positive phase at the
    mean-field marginals, negative phase from persistent chains over all layers.
    ``sample()`` returns the ``v`` part of DBM Gibbs samples.
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.boolean, 1)


DBM._visible_cls, DBMVisible._dbm_cls = DBMVisible, DBM


class _TiedCopiesRBM(fc.TiedCopiesConstructor, TiedCopiesMethods, RBM):
    """The bottom pretraining RBM: tiled parameters, copies of the visible layer kept equal
    by the Gibbs transition (:class:`~ebm_ppl.models.dbm.TiedCopiesMethods`)."""


def greedy_pretrain_dbm(
    data,
    hidden_sizes: Sequence[int],
    optim,
    *,
    num_epochs: int | Sequence[int] = 10,
    batch_size: int = 100,
    init_scale: float = 0.01,
    seed: int = 0,
    progress_bar: bool | None = None,
    checkpoint: str | Path | None = None,
    **samle_kwargs,
) -> DBM:
    """Greedy layer-wise pretraining of a DBM with the doubling trick of Salakhutdinov &
    Hinton (2009), so that one bottom-up pass approximates inference in the composed DBM.

    RBM ``l`` (between layers ``l`` and ``l+1``) is trained by :class:`~ebm_ppl.pyro.SAMLE`
    (``samle_kwargs`` such as ``num_gibbs_steps``, ``persistent``, ``lr_schedule`` are
    passed on). A side that will be an inner DBM layer gets doubled input from its
    neighbour, by duplicating the neighbour with tied weights
    (:func:`~ebm_ppl.models.dbm.doubling`): the bottom RBM sees ``[v, v]`` and has
    ``p(h1 | v) = g(2 v W1 + b1)``, and its Gibbs transition keeps the two copies equal
    (:func:`~ebm_ppl.models.dbm.tied_copies_chain`, the original CD update); the top RBM
    has two tied copies of its hidden layer; middle RBMs both. Layer ``l > 0`` is trained
    on fresh samples (every epoch) of the layer below with its doubled input. Weights start
    at ``N(0, init_scale^2)``, the lower biases at the log-odds of the layer data's means,
    the upper ones at zero. The DBM takes the learned weights as they are and the mean of
    the two RBMs' biases for inner layers
    (:func:`~ebm_ppl.models.dbm.combine_pretrained`).

    Args:
        data: ``(n, n_0)`` binary tensor or a callable ``epoch -> array`` with ``__len__``
            (e.g. :class:`~ebm_ppl.datasets.StochasticBinarization`).
        hidden_sizes: ``(n_1, ..., n_L)``, at least two for a DBM (one gives an RBM trained
            with doubled input).
        optim: a ``pyro.optim`` optimizer (parameters are named ``"dbm.layer{l}.weights"``
            etc. in the param store, replaced on every call).
        num_epochs: one count for all layers or one per layer.
        checkpoint: a directory; every layer's trainer is saved there after each epoch
            (``layer{l}.safetensors``) and a later call resumes from it.

    Returns the pretrained :class:`DBM`.
    """

    params = greedy_dbm_layers(
        _LayerTrainer(optim, samle_kwargs, seed),
        _TiedCopiesRBM,
        data,
        hidden_sizes,
        num_epochs=num_epochs,
        batch_size=batch_size,
        init_scale=init_scale,
        seed=seed,
        progress_bar=progress_bar,
        checkpoint=checkpoint,
    )
    return DBM(list(params.weights), list(params.biases))


class DBMClassifier(torch.nn.Module):
    """The augmented-input network of Figure 8 made from a DBM, for fine-tuning with
    :func:`~ebm_ppl.pyro.fine_tune`: its input is ``dbm.augment(v)`` = ``[v, q_2, ..., q_L]``
    (mean-field marginals, computed once), ``h_l = g(h_(l-1) W^(l) + q_(l+1) D^(l) + b_l)``
    (:func:`~ebm_ppl.models.dbm.augmented_logits`), then a softmax layer from
    ``N(0, 0.01^2)``. Initialised from the DBM (``D^(l) = W^(l+1)T``), its hidden layers start
    equal to the mean-field marginals. ``forward(x)`` returns ``(n, num_classes)`` logits."""

    def __init__(self, dbm: DBM, num_classes: int, generator: torch.Generator | None = None):
        super().__init__()

        if not isinstance(dbm, DBM):
            raise TypeError(f"dbm must be an ebm_ppl.pyro.DBM, got {type(dbm).__name__}")
        check_num_classes(num_classes)
        out_w = 0.01 * _randn((dbm.sizes[-1], num_classes), generator, dbm.weights[0])
        p = classifier_params(dbm._frozen(), out_w, num_classes)
        self.weights, self.down, self.biases = (
            torch.nn.ParameterList([torch.nn.Parameter(t.detach().clone()) for t in p[k]])
            for k in ("weights", "down", "biases")
        )

    @property
    def input_size(self) -> int:

        return augmented_input_size(list(self.weights), list(self.down))

    def forward(self, x: torch.Tensor) -> torch.Tensor:

        return augmented_logits(list(self.weights), list(self.down), list(self.biases), x)
