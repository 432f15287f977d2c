"""Multimodal deep Boltzmann machines for Pyro (:mod:`ebm_ppl.models.multimodal` holds the
math)."""

from __future__ import annotations

import torch
from pyro.distributions import constraints

from ebm_ppl.inference import frontend_classes as fc
from ebm_ppl.models.dbm.classifier import check_num_classes
from ebm_ppl.models.family import EnergyMethods
from ebm_ppl.models.multimodal import (
    MultimodalDBMMethods,
    MultimodalVisibleMethods,
    multimodal_augmented_input_size,
    multimodal_augmented_logits,
    multimodal_classifier_params,
    readout_size,
)
from ebm_ppl.pyro.device import randn_like as _randn
from ebm_ppl.pyro.distributions import _as_tensor, _Energy

__all__ = ["MultimodalDBM", "MultimodalDBMClassifier", "MultimodalDBMVisible"]


@fc.doc_head(fc.MULTIMODAL_DBM_DOC)
class MultimodalDBM(fc.MultimodalDBMConstructor, MultimodalDBMMethods, EnergyMethods, _Energy):
    r"""replicated-softmax text pathway (``W1t`` is ``(K, F1t)``, as in
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


class MultimodalDBMVisible(MultimodalVisibleMethods, EnergyMethods, _Energy):
    r"""A :class:`MultimodalDBM` seen through ``[v^m, v^t]`` ``(..., D + K)``, for SA-MLE:
    ``pyro.sample("x", mdbm.visible(), obs=torch.cat([images, counts], -1))`` makes
    :class:`~ebm_ppl.pyro.SAMLE` run the DBM procedure (mean-field positive phase, persistent
    chains over every layer). ``log_prob`` is the mean-field bound (eq. 38) on ``log p~``."""

    arg_constraints: dict = {}
    support = constraints.real_vector


MultimodalDBM._visible_cls, MultimodalDBMVisible._dbm_cls = MultimodalDBMVisible, MultimodalDBM


class MultimodalDBMClassifier(torch.nn.Module):
    """The fine-tuning network made from a multimodal DBM, for
    :func:`~ebm_ppl.pyro.fine_tune`: Figure 8's augmented-input network carried over to the
    two pathways (:func:`~ebm_ppl.models.multimodal.multimodal_augmented_logits`), a softmax
    layer from ``N(0, 0.01^2)`` on the joint layer (``readout="joint"``) or on the top image
    layer, the joint layer and the top text layer (``"tops"``). Its input is ``dbm.augment(image,
    text)``; initialised from the DBM, its hidden layers start at the mean-field marginals.
    ``forward(x)`` returns ``(n, num_classes)`` logits."""

    def __init__(
        self,
        dbm: MultimodalDBM,
        num_classes: int,
        generator: torch.Generator | None = None,
        readout: str = "joint",
    ):
        super().__init__()
        if not isinstance(dbm, MultimodalDBM):
            raise TypeError(f"dbm must be an ebm_ppl.pyro.MultimodalDBM, got {type(dbm).__name__}")
        check_num_classes(num_classes)
        n_read = readout_size(dbm.mm_params, readout)
        out_w = 0.01 * _randn((n_read, num_classes), generator, dbm.weights[0])
        p = multimodal_classifier_params(dbm._frozen(), out_w, num_classes)
        self.weights, self.image_down, self.text_down, self.biases = (
            torch.nn.ParameterList([torch.nn.Parameter(t.detach().clone()) for t in p[k]])
            for k in ("weights", "image_down", "text_down", "biases")
        )

    @property
    def input_size(self) -> int:
        return multimodal_augmented_input_size(
            list(self.weights), list(self.image_down), list(self.text_down)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return multimodal_augmented_logits(
            list(self.weights),
            list(self.image_down),
            list(self.text_down),
            list(self.biases),
            x,
        )
