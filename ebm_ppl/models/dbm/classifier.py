"""Discriminative fine-tuning of a DBM with the augmented input of Figure 8 (Salakhutdinov
& Hinton 2009; section 4.3 of the review)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ebm_ppl import ops
from ebm_ppl.models.dbm.energy import DBMParams
from ebm_ppl.models.rbm import visible_to_hidden
from ebm_ppl.ops import Array

#: the names that :mod:`ebm_ppl.models.dbm` re-exports from here
__all__ = [
    "augmented_input_size",
    "augmented_logits",
    "check_num_classes",
    "classifier_params",
]


def augmented_logits(
    weights: Sequence[Array], down: Sequence[Array], biases: Sequence[Array], x: Array
) -> Array:
    """The classifier of Figure 8 (Salakhutdinov & Hinton 2009): the input is
    ``x = [v, q_2, ..., q_L]`` (the data and the mean-field marginals of layers ``2..L``),
    and ``h_l = g(h_(l-1) W^(l) + q_(l+1) D^(l) + b_l)`` for ``l = 1..L`` (no ``q`` term for
    the top layer), then logits ``h_L W^(L+1) + b_(L+1)``.

    ``weights`` are ``[W^(1), ..., W^(L), W_out]``, ``down`` are ``[D^(1), ..., D^(L-1)]``
    with ``D^(l)`` ``(n_(l+1), n_l)`` (initialised at ``W^(l+1)T``), ``biases`` are
    ``[b_1, ..., b_L, b_out]``. At that initialisation and with ``q`` the mean-field fixed
    point, the hidden layers are exactly the mean-field marginals. Shape
    ``x.shape[:-1] + (num_classes,)``."""
    n0 = int(weights[0].shape[0])
    h, start = x[..., :n0], n0
    for i in range(len(weights) - 1):
        pre = visible_to_hidden(h, weights[i]) + biases[i]
        if i < len(down):
            n = int(down[i].shape[0])
            pre = pre + visible_to_hidden(x[..., start : start + n], down[i])
            start += n
        h = ops.sigmoid(pre)
    return visible_to_hidden(h, weights[-1]) + biases[-1]


def augmented_input_size(weights: Sequence[Array], down: Sequence[Array]) -> int:
    """Width of the input ``[v, q_2, ..., q_L]`` of :func:`augmented_logits`."""
    return int(weights[0].shape[0]) + sum(int(d.shape[0]) for d in down)


def check_num_classes(num_classes: Any) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")


def classifier_params(params: DBMParams, out_weights: Array, num_classes: int) -> dict:
    """Initial Figure 8 parameters from a DBM: ``weights`` ``[W^(1), ..., W^(L), out]``,
    ``down`` ``[W^(2)T, ..., W^(L)T]``, ``biases`` ``[b_1, ..., b_L, 0]``."""
    check_num_classes(num_classes)
    if len(params.weights) < 2:
        raise ValueError("the augmented-input classifier needs a DBM with at least two layers")
    zeros = ops.zeros((num_classes,), out_weights)
    return {
        "weights": list(params.weights) + [out_weights],
        "down": [ops.transpose(w) for w in params.weights[1:]],
        "biases": list(params.biases[1:]) + [zeros],
    }
