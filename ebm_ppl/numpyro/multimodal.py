"""Multimodal deep Boltzmann machines for NumPyro (:mod:`ebm_ppl.models.multimodal` holds the
math)."""

from __future__ import annotations

import jax
from numpyro.distributions import constraints

from ebm_ppl.inference import frontend_classes as fc
from ebm_ppl.models.dbm.classifier import check_num_classes
from ebm_ppl.models.family import EnergyMethods
from ebm_ppl.models.multimodal import (
    MultimodalDBMMethods,
    MultimodalVisibleMethods,
    multimodal_classifier_params,
    readout_size,
)
from ebm_ppl.numpyro.distributions import _as_jax, _Energy, compiled_log_prob

__all__ = ["MultimodalDBM", "MultimodalDBMVisible", "multimodal_classifier_init"]


@fc.doc_head(fc.MULTIMODAL_DBM_DOC)
class MultimodalDBM(fc.MultimodalDBMConstructor, MultimodalDBMMethods, EnergyMethods, _Energy):
    r"""replicated-softmax text pathway (``W1t`` is ``(K, F1t)``; the first text hidden layer's
    bias is scaled by the document length ``M``), joined by a binary joint layer. The value
    is the concatenated chain ``[v^m, h^(1m), h^(2m), h^(3), h^(2t), h^(1t), v^t]``.
    ``log_prob`` is the **unnormalized** ``-E(x) + log(M!/prod v^t_k!)``;
    :meth:`log_partition` ``(M)`` is exact for small models; ``sample(key)``,
    :meth:`transition` (with a ``Clamp``), :meth:`fill_in`, :meth:`mean_field`,
    :meth:`representation` and :meth:`visible` (the SA-MLE site) as in
    :class:`ebm_ppl.pyro.MultimodalDBM`, with explicit keys. A jit-safe pytree;
    ``max_words`` bounds the document length for the fast word-by-word multinomial draws
    inside ``jit``.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    _as_array = staticmethod(_as_jax)
    pytree_data_fields = ("weights", "biases", "sigma", "total_count")
    pytree_aux_fields = ("joint", "num_gibbs_steps", "max_words", "_check_inputs")


@compiled_log_prob
class MultimodalDBMVisible(MultimodalVisibleMethods, EnergyMethods, _Energy):
    r"""A :class:`MultimodalDBM` seen through ``[v^m, v^t]`` ``(..., D + K)``, for SA-MLE
    (``numpyro.sample("x", mdbm.visible(), obs=jnp.concatenate([images, counts], -1))``
    under :class:`~ebm_ppl.numpyro.SAMLE`). ``log_prob`` is the mean-field bound (eq. 38)
    on ``log p~``."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    pytree_data_fields = ("dbm",)
    pytree_aux_fields = ("num_iters", "damping", "tol")


MultimodalDBM._visible_cls, MultimodalDBMVisible._dbm_cls = MultimodalDBMVisible, MultimodalDBM


def multimodal_classifier_init(
    dbm: MultimodalDBM, num_classes: int, rng_key: jax.Array, readout: str = "joint"
) -> dict:
    """Parameters of the fine-tuning network made from a multimodal DBM
    (:func:`~ebm_ppl.models.multimodal.multimodal_augmented_logits`; the JAX twin of
    :class:`ebm_ppl.pyro.MultimodalDBMClassifier`): ``{"weights", "image_down", "text_down",
    "biases"}`` for :func:`~ebm_ppl.numpyro.fine_tune`,
    :func:`~ebm_ppl.numpyro.classifier_logits` and
    :func:`~ebm_ppl.numpyro.classification_error`, whose inputs are
    ``dbm.augment(image, text)``. The softmax layer reads the joint layer (``readout="joint"``)
    or the top image layer, the joint layer and the top text layer (``"tops"``), and starts
    from ``N(0, 0.01^2)``."""
    if not isinstance(dbm, MultimodalDBM):
        raise TypeError(f"dbm must be an ebm_ppl.numpyro.MultimodalDBM, got {type(dbm).__name__}")
    check_num_classes(num_classes)
    n_read = readout_size(dbm.mm_params, readout)
    out_w = 0.01 * jax.random.normal(rng_key, (n_read, num_classes))
    return multimodal_classifier_params(dbm._frozen(), out_w, num_classes)
