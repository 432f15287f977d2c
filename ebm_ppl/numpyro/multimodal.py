"""Multimodal deep Boltzmann machines for NumPyro (:mod:`ebm_ppl.models.multimodal` holds the
math)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
from numpyro.distributions import constraints

from ebm_ppl.models.family import EnergyMethods
from ebm_ppl.models.multimodal import MultimodalDBMMethods, MultimodalVisibleMethods
from ebm_ppl.numpyro.distributions import _as_jax, _Energy

__all__ = ["MultimodalDBM", "MultimodalDBMVisible"]


class MultimodalDBM(MultimodalDBMMethods, EnergyMethods, _Energy):
    r"""Multimodal DBM over an image and a bag of words (section 5, eq. 42, Figure 12c).

    ``MultimodalDBM(image_weights=[W1m, W2m], image_biases=[b_v, b_1m, b_2m],
    text_weights=[W1t, W2t], text_biases=[b_w, b_1t, b_2t], joint_weights=[W3m, W3t],
    joint_bias=b_3, sigma=1.0)``: a Gaussian (``sigma`` given) or binary image pathway and a
    replicated-softmax text pathway (``W1t`` is ``(K, F1t)``; the first text hidden layer's
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

    def __init__(
        self,
        image_weights: Sequence[jax.Array],
        image_biases: Sequence[jax.Array],
        text_weights: Sequence[jax.Array],
        text_biases: Sequence[jax.Array],
        joint_weights: Sequence[jax.Array],
        joint_bias: jax.Array,
        sigma: jax.Array | float | None = None,
        total_count: jax.Array | int | None = None,
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
    r"""A :class:`MultimodalDBM` seen through ``[v^m, v^t]`` ``(..., D + K)``, for SA-MLE
    (``numpyro.sample("x", mdbm.visible(), obs=jnp.concatenate([images, counts], -1))``
    under :class:`~ebm_ppl.numpyro.SAMLE`). ``log_prob`` is the mean-field bound (eq. 38)
    on ``log p~``."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    pytree_data_fields = ("dbm",)
    pytree_aux_fields = ("num_iters", "damping", "tol")


MultimodalDBM._visible_cls, MultimodalDBMVisible._dbm_cls = MultimodalDBMVisible, MultimodalDBM
