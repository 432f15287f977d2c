"""Multimodal deep Boltzmann machines for Pyro (:mod:`ebm_ppl.models.multimodal` holds the
math)."""

from __future__ import annotations

from pyro.distributions import constraints

from ebm_ppl.inference import frontend_classes as fc
from ebm_ppl.models.family import EnergyMethods
from ebm_ppl.models.multimodal import MultimodalDBMMethods, MultimodalVisibleMethods
from ebm_ppl.pyro.distributions import _as_tensor, _Energy

__all__ = ["MultimodalDBM", "MultimodalDBMVisible"]


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
