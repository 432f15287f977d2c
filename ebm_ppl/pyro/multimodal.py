"""Multimodal deep Boltzmann machines for Pyro (:mod:`ebm_ppl.models.multimodal` holds the
math)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.distributions import constraints

from ebm_ppl.models.family import EnergyMethods
from ebm_ppl.models.multimodal import MultimodalDBMMethods, MultimodalVisibleMethods
from ebm_ppl.pyro.distributions import _as_tensor, _Energy

__all__ = ["MultimodalDBM", "MultimodalDBMVisible"]


class MultimodalDBM(MultimodalDBMMethods, EnergyMethods, _Energy):
    r"""Multimodal DBM over an image and a bag of words (section 5, eq. 42, Figure 12c).

    ``MultimodalDBM(image_weights=[W1m, W2m], image_biases=[b_v, b_1m, b_2m],
    text_weights=[W1t, W2t], text_biases=[b_w, b_1t, b_2t], joint_weights=[W3m, W3t],
    joint_bias=b_3, sigma=1.0)``: a Gaussian (``sigma`` given) or binary image pathway and a
    replicated-softmax text pathway (``W1t`` is ``(K, F1t)``, as in
    :class:`~ebm_ppl.pyro.ReplicatedSoftmax`, whose hidden bias is scaled by the document
    length ``M``), joined by a binary joint layer. The value is the concatenated chain of
    layers ``[v^m, h^(1m), h^(2m), h^(3), h^(2t), h^(1t), v^t]`` (:meth:`split` /
    :meth:`join`).

    - ``log_prob(x)`` is the **unnormalized** ``-E(x) + log(M!/prod v^t_k!)``;
      :meth:`log_partition` ``(M)`` is exact when the odd layers have at most 20 units.
    - ``sample()`` runs ``num_gibbs_steps`` block-Gibbs sweeps from chains whose document
      lengths come from ``total_count`` (a number, or a 1-D tensor of lengths to draw from);
      :meth:`transition` takes a ``Clamp`` holding observed pixels and/or whole texts, and
      :meth:`fill_in` generates a missing modality (Figure 13's word lists every ``every``
      sweeps).
    - :meth:`mean_field` / :meth:`representation` infer the layers given either or both
      modalities; :meth:`visible` is the site to train with :class:`~ebm_ppl.pyro.SAMLE`.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    _as_array = staticmethod(_as_tensor)

    def __init__(
        self,
        image_weights: Sequence[torch.Tensor],
        image_biases: Sequence[torch.Tensor],
        text_weights: Sequence[torch.Tensor],
        text_biases: Sequence[torch.Tensor],
        joint_weights: Sequence[torch.Tensor],
        joint_bias: torch.Tensor,
        sigma: torch.Tensor | float | None = None,
        total_count: torch.Tensor | int | None = None,
        num_gibbs_steps: int = 100,
        max_words: int | None = None,
        validate_args: bool | None = None,
    ) -> None:
        self._construct_multimodal(
            (image_weights, image_biases, text_weights, text_biases, joint_weights, joint_bias),
            sigma,
            total_count,
            num_gibbs_steps,
            max_words,
            validate_args,
        )


class MultimodalDBMVisible(MultimodalVisibleMethods, EnergyMethods, _Energy):
    r"""A :class:`MultimodalDBM` seen through ``[v^m, v^t]`` ``(..., D + K)``, for SA-MLE:
    ``pyro.sample("x", mdbm.visible(), obs=torch.cat([images, counts], -1))`` makes
    :class:`~ebm_ppl.pyro.SAMLE` run the DBM procedure (mean-field positive phase, persistent
    chains over every layer). ``log_prob`` is the mean-field bound (eq. 38) on ``log p~``."""

    arg_constraints: dict = {}
    support = constraints.real_vector


MultimodalDBM._visible_cls, MultimodalDBMVisible._dbm_cls = MultimodalDBMVisible, MultimodalDBM
