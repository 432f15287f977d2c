"""Greedy layer-wise pretraining of a DBM with the doubling trick (Salakhutdinov & Hinton
2009; section 4.2 of the review): which layers of each RBM are doubled, tied copies, the
CD chain that keeps them equal, and the composed DBM."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ebm_ppl import ops
from ebm_ppl.models.dbm.energy import DBMParams
from ebm_ppl.models.rbm import hidden_logits, visible_logits
from ebm_ppl.ops import Array

#: the names that :mod:`ebm_ppl.models.dbm` re-exports from here
__all__ = [
    "TiedCopiesMethods",
    "combine_pretrained",
    "doubling",
    "tied_copies_chain",
    "tile_rbm",
]


def doubling(num_layers: int, layer: int) -> tuple[int, int]:
    """Copies ``(lower, upper)`` of the two layers of the ``layer``-th RBM (0-based) of a
    greedy DBM stack of ``num_layers`` weight matrices.

    A layer that is an inner layer of the DBM will get input from above and below, so in
    its pretraining RBM it gets doubled input from its one neighbour: done by duplicating
    that neighbour with tied weights. The bottom RBM duplicates its visible layer
    (``p(h1 | v) = g(2 v W + b)``), the top RBM its hidden layer
    (``p(h | h_top) = g(2 W h_top + b)``), a middle RBM both."""
    lower = 2 if layer < num_layers - 1 else 1  # the upper layer is inner
    upper = 2 if layer > 0 else 1  # the lower layer is inner
    return lower, upper


def tile_rbm(weights: Array, low_bias: Array, high_bias: Array, copies: tuple[int, int]):
    """RBM parameters with the lower layer repeated ``copies[0]`` times and the upper one
    ``copies[1]`` times, all copies sharing ``weights`` (``(n_low, n_high)``) and biases.
    Used for greedy DBM pretraining (see :func:`doubling`): with data ``[x, x]`` on a
    doubled visible layer, ``p(h | x, x) = g(2 x W + b)``."""
    a, b = copies
    w = ops.concat([weights] * a, axis=0) if a > 1 else weights
    w = ops.concat([w] * b, axis=1) if b > 1 else w
    lo = ops.concat([low_bias] * a, axis=0) if a > 1 else low_bias
    hi = ops.concat([high_bias] * b, axis=0) if b > 1 else high_bias
    return w, lo, hi


def tied_copies_chain(
    key: Any,
    weights: Array,
    visible_bias: Array,
    hidden_bias: Array,
    value: Array,
    copies: int,
    num_steps: int,
    logits: Array | None = None,
) -> tuple[Array, Array]:
    """``num_steps >= 1`` Gibbs sweeps of a pretraining RBM whose visible layer is ``copies``
    tied copies of one layer that are **always equal**, as in Salakhutdinov & Hinton's
    (2009) CD: ``h ~ g(copies * x W + c)``, then one ``x ~ g(W h + b)`` written into every
    copy. ``weights`` ``(copies * n, m)`` and ``visible_bias`` ``(copies * n,)`` are the
    tiled parameters (:func:`tile_rbm`); ``value`` ``(..., copies * n)``; ``logits`` the
    hidden logits of ``value`` if already computed. Returns the last ``(value, h)``.

    An RBM whose copies were sampled independently would have to make them agree through
    its hidden units (the data always has equal copies), which drives it to near-
    deterministic, very large weights; the doubled input is only meant to stand in for the
    missing input from the layer above."""
    n = int(value.shape[-1]) // copies
    w1, b1 = weights[:n], visible_bias[:n]

    def sweep(k, v, lg=None):
        k_h, k_v = ops.split(k, 2)
        lg = hidden_logits(weights, hidden_bias, v) if lg is None else lg
        h = ops.bernoulli(k_h, ops.sigmoid(lg))
        x = ops.bernoulli(k_v, ops.sigmoid(visible_logits(w1, b1, h)))
        return ops.concat([x] * copies, axis=-1), h

    k0, k1 = ops.split(key, 2)
    first = sweep(k0, value, logits)
    return ops.iterate(lambda k, c: sweep(k, c[0]), k1, first, num_steps - 1, like=value)


class TiedCopiesMethods:
    """Mixin for the bottom pretraining RBM of a DBM: an RBM over ``copies`` tied copies of
    its visible layer (the doubled input of :func:`doubling`) whose Gibbs transition keeps
    the copies equal (:func:`tied_copies_chain`). ``log_prob`` is the RBM's free energy at
    ``[x, x]``, so the SA-MLE gradient is that of the original code's CD update."""

    copies: int = 1

    def transition(self, key, value, num_steps: int = 1, clamp=None, cache=None):
        if clamp is not None:
            raise ValueError("the tied-copies pretraining RBM takes no clamp")
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        w, b, c = (ops.stop_gradient(p) for p in self.params)
        logits = None if cache is None else ops.stop_gradient(cache)
        return tied_copies_chain(key, w, b, c, value, self.copies, num_steps, logits)


def combine_pretrained(rbms: Sequence[tuple[Array, Array, Array]]) -> DBMParams:
    """DBM parameters from a greedy stack of RBMs ``(W, b_low, b_high)`` (bottom first, the
    untiled parameters): weights as learned (the doubling already accounts for the two
    sources of input, so nothing is halved), and every inner layer's bias the mean of the
    two RBMs' biases for that layer."""
    weights = tuple(r[0] for r in rbms)
    biases = [rbms[0][1]]
    for i in range(len(rbms) - 1):
        biases.append(0.5 * (rbms[i][2] + rbms[i + 1][1]))
    biases.append(rbms[-1][2])
    return DBMParams(weights, tuple(biases))
