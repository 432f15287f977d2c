"""The multimodal DBM itself (Salakhutdinov 2015, section 5): parameters in chain form, the
energy of eq. 42, the conditionals (eq. 31-34 on the chain, eq. 19 for the words), exact
``log Z(M)`` for small models, and block Gibbs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ebm_ppl import ops
from ebm_ppl.models.dbm.energy import _gaussian_log_norm, odd_even_sweep
from ebm_ppl.models.rbm import MAX_ENUMERATE_UNITS, hidden_to_visible, visible_to_hidden
from ebm_ppl.models.replicated_softmax import log_multinomial_coefficient
from ebm_ppl.ops import Array

#: the names that :mod:`ebm_ppl.models.multimodal` re-exports from here
__all__ = [
    "Array",
    "MultimodalParams",
    "_gaussian_log_norm",
    "_input",
    "_odd_free_energy",
    "_sample_even",
    "check_total_count",
    "doc_length",
    "energy",
    "frozen",
    "gibbs_sweep",
    "layer_logits",
    "log_partition",
    "log_prob",
    "sizes",
]


class MultimodalParams(NamedTuple):
    """The chain form: ``weights[l]`` ``(n_l, n_(l+1))``, ``biases[l]`` ``(n_l,)`` for layers
    ``x_0 = v^m, ..., x_L = v^t``; ``sigma`` ``None`` (binary image units) or the image
    units' standard deviations ``(n_0,)``; ``joint`` the index ``J`` of the shared layer."""

    weights: tuple
    biases: tuple
    sigma: Any
    joint: int


def frozen(params: MultimodalParams) -> MultimodalParams:
    """The parameters without gradient."""
    sg = ops.stop_gradient
    sigma = None if params.sigma is None else sg(params.sigma)
    return MultimodalParams(
        tuple(sg(w) for w in params.weights),
        tuple(sg(b) for b in params.biases),
        sigma,
        params.joint,
    )


def sizes(params: MultimodalParams) -> tuple:
    return tuple(int(b.shape[0]) for b in params.biases)


def _input(params: MultimodalParams, layers: Sequence[Array], i: int) -> Array:
    """Layer ``i`` as seen by its weights: ``v^m / sigma`` for Gaussian image units."""
    x = layers[i]
    return x / params.sigma if i == 0 and params.sigma is not None else x


def doc_length(layers: Sequence[Array]) -> Array:
    """``M``: the number of words of the text layer, shape ``(...)``."""
    return layers[-1].sum(-1)


def layer_logits(
    params: MultimodalParams, layers: Sequence[Array], i: int, total_count: Any = None
) -> Array:
    """Logits of layer ``i`` given its neighbours, ``(..., n_i)``: Bernoulli logits for binary
    layers, the conditional mean ``b_0 + sigma W_0 h^(1m)`` for Gaussian image units, the
    softmax logits ``b_L + h^(1t) W_(L-1)`` of each word for the text layer. The
    ``M``-scaled bias of layer ``L-1`` takes ``M`` from ``total_count`` or else from the text
    layer."""
    top = len(params.weights)
    out = params.biases[i]
    if i == top - 1:
        m = doc_length(layers) if total_count is None else total_count
        out = ops.asarray_like(m, out)[..., None] * out
    if i > 0:
        out = out + visible_to_hidden(_input(params, layers, i - 1), params.weights[i - 1])
    if i < top:
        up = hidden_to_visible(layers[i + 1], params.weights[i])
        out = out + (params.sigma * up if i == 0 and params.sigma is not None else up)
    return out


def energy(params: MultimodalParams, layers: Sequence[Array]) -> Array:
    """``E(x)`` of eq. 42 (with biases; see the module docstring), shape ``(...)``."""
    top = len(params.weights)
    total = 0.0
    for i, w in enumerate(params.weights):
        total = total - (visible_to_hidden(_input(params, layers, i), w) * layers[i + 1]).sum(-1)
    for i, b in enumerate(params.biases):
        if i == 0 and params.sigma is not None:
            total = total + (((layers[0] - b) / params.sigma) ** 2).sum(-1) / 2
        elif i == top - 1:
            total = total - doc_length(layers) * (layers[i] * b).sum(-1)
        else:
            total = total - (layers[i] * b).sum(-1)
    return total


def log_prob(params: MultimodalParams, layers: Sequence[Array]) -> Array:
    """Unnormalized ``log p~(x) = -E(x) + log(M! / prod_k v^t_k!)`` (a density over count
    vectors, as :class:`ReplicatedSoftmax`'s), shape ``(...)``."""
    return -energy(params, layers) + log_multinomial_coefficient(layers[-1])


def _odd_free_energy(params: MultimodalParams, layers: Sequence[Array], total_count: Any):
    """``-log`` of ``exp(-E)`` summed over every even layer (the visible ends included), as a
    function of the odd layers, for documents of ``total_count`` words, shape ``(...)``."""
    top = len(params.weights)
    total = 0.0
    for i, b in enumerate(params.biases):
        if i % 2:
            scale = total_count if i == top - 1 else 1.0
            total = total - scale * (layers[i] * b).sum(-1)
        elif i == 0 and params.sigma is not None:  # the Gaussian integral over v^m
            u = hidden_to_visible(layers[1], params.weights[0])
            total = total - (
                (b * u / params.sigma + u * u / 2).sum(-1) + _gaussian_log_norm(params)
            )
        elif i == top:  # M words, each summed over the dictionary
            logits = b + visible_to_hidden(layers[top - 1], params.weights[top - 1])
            total = total - total_count * ops.logsumexp(logits, axis=-1)
        else:
            total = total - ops.softplus(layer_logits(params, layers, i)).sum(-1)
    return total


def log_partition(params: MultimodalParams, total_count: Any) -> Array:
    """Exact ``log Z(M)`` for documents of ``M = total_count`` words (a number), by
    enumerating the odd layers (``ValueError`` pointing to a smaller model above
    :data:`~ebm_ppl.models.rbm.MAX_ENUMERATE_UNITS` odd units)."""
    n = sizes(params)
    n_odd = sum(n[1::2])
    if n_odd > MAX_ENUMERATE_UNITS:
        raise ValueError(
            f"exact log Z enumerates the odd layers: {n_odd} units (2**{n_odd} states) is more "
            f"than {MAX_ENUMERATE_UNITS}"
        )
    check_total_count(total_count, scalar=True)
    states = ops.binary_states(n_odd, params.biases[0])
    layers: list = [None] * len(n)
    start = 0
    for i in range(1, len(n), 2):
        layers[i] = states[:, start : start + n[i]]
        start += n[i]
    return ops.logsumexp(-_odd_free_energy(params, layers, float(total_count)), axis=0)


def check_total_count(total_count: Any, scalar: bool = False, name: str = "total_count") -> None:
    """``ValueError`` unless ``total_count`` holds non-negative whole numbers (one number when
    ``scalar``)."""

    if isinstance(total_count, bool) or total_count is None:
        raise ValueError(
            f"{name} must be a non-negative whole number of words, got {total_count!r}"
        )
    if ops.is_torch(total_count) or ops.is_jax(total_count):
        if not ops.is_concrete(total_count):
            return
        a = np.asarray(ops.to_numpy(total_count))
    else:
        try:
            a = np.asarray(total_count, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number of words, got {total_count!r}") from None
    if scalar and a.ndim != 0:
        raise ValueError(f"{name} must be one number (Z depends on M), got shape {a.shape}")
    if not np.isfinite(a).all() or (a < 0).any() or (a != np.round(a)).any():
        raise ValueError(f"{name} must hold non-negative whole numbers of words")


def _sample_even(key: Any, params: MultimodalParams, layers: list, i: int, max_words) -> Array:
    logits = layer_logits(params, layers, i)
    if i == 0 and params.sigma is not None:
        return logits + params.sigma * ops.normal(key, tuple(logits.shape), logits)
    if i == len(params.weights):
        return ops.multinomial(key, doc_length(layers), ops.softmax(logits), max_words)
    return ops.bernoulli(key, ops.sigmoid(logits))


def gibbs_sweep(
    key: Any,
    params: MultimodalParams,
    layers: Sequence[Array],
    sample_image: bool = True,
    sample_text: bool = True,
    max_words: int | None = None,
) -> list:
    """One block-Gibbs sweep: the odd layers given the even ones, then the even layers given
    the new odd ones; the image (text) layer is redrawn only if ``sample_image``
    (``sample_text``). The text keeps its length ``M``. Returns the new list of layers."""
    top = len(params.weights)
    keep = ((0,) if not sample_image else ()) + ((top,) if not sample_text else ())

    def draw(k: Any, layers: list, i: int) -> Array:
        return _sample_even(k, params, layers, i, max_words)

    return odd_even_sweep(key, layers, draw, keep)
