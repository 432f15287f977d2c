"""Mean field for a multimodal DBM with either modality missing (eq. 38-41): the start, the
fixed point, its bound and the SA-MLE surrogate with a mean-field positive phase."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ebm_ppl import ops
from ebm_ppl.models.multimodal.energy import (
    MultimodalParams,
    _input,
    check_total_count,
    doc_length,
    energy,
    layer_logits,
    log_prob,
)
from ebm_ppl.models.rbm import hidden_to_visible, visible_to_hidden
from ebm_ppl.models.variational import bernoulli_entropy, check_mean_field_args, max_abs_diff
from ebm_ppl.ops import Array

#: the names that :mod:`ebm_ppl.models.multimodal` re-exports from here
__all__ = [
    "_visible_mean",
    "mean_field",
    "mean_field_bound",
    "mean_field_contrast",
    "mean_field_init",
]


def _visible_mean(params: MultimodalParams, layers: Sequence[Array], i: int) -> Array:
    logits = layer_logits(params, layers, i)
    if i == 0:
        return logits if params.sigma is not None else ops.sigmoid(logits)
    return doc_length(layers)[..., None] * ops.softmax(logits)


def mean_field_init(
    params: MultimodalParams, image: Array | None, text: Array | None, total_count: Any = None
) -> list:
    """The start of mean field: observed ends as given, a missing image at its bias mean, a
    missing text at ``M softmax(b_L)``; then one pass up each observed pathway in which every
    layer below the joint one gets twice its input from below (standing in for the input
    from above, as :func:`ebm_ppl.models.dbm.bottom_up`), the joint layer from both sides,
    and the hidden layers of a missing pathway top-down from the joint layer."""
    top, j = len(params.weights), params.joint
    like = image if image is not None else text
    lead = tuple(like.shape[:-1])
    b = params.biases
    mus: list = [None] * (top + 1)
    if image is None:
        first = ops.broadcast_to(b[0], lead + (int(b[0].shape[0]),))
        mus[0] = first if params.sigma is not None else ops.sigmoid(first)
    else:
        mus[0] = image
    if text is None:
        m = ops.asarray_like(total_count, b[-1]) + ops.zeros(lead, b[-1])
        mus[top] = m[..., None] * ops.softmax(
            ops.broadcast_to(b[-1], lead + (int(b[-1].shape[0]),))
        )
    else:
        mus[top] = text
    m = doc_length(mus)

    def up(i, below, w):  # doubled input from one side
        scale = m[..., None] if i == top - 1 else 1.0
        return ops.sigmoid(2.0 * visible_to_hidden(below, w) + scale * b[i])

    if image is not None:
        for i in range(1, j):
            mus[i] = up(i, _input(params, mus, i - 1), params.weights[i - 1])
    if text is not None:
        for i in range(top - 1, j, -1):
            mus[i] = up(i, mus[i + 1], ops.transpose(params.weights[i]))
    inp = b[j] + 0.0 * ops.zeros(lead + (int(b[j].shape[0]),), b[j])
    if image is not None:
        inp = inp + visible_to_hidden(mus[j - 1], params.weights[j - 1])
    if text is not None:
        inp = inp + hidden_to_visible(mus[j + 1], params.weights[j])
    mus[j] = ops.sigmoid(inp)
    if image is None:
        for i in range(j - 1, 0, -1):
            mus[i] = ops.sigmoid(b[i] + hidden_to_visible(mus[i + 1], params.weights[i]))
    if text is None:
        for i in range(j + 1, top):
            scale = m[..., None] if i == top - 1 else 1.0
            mus[i] = ops.sigmoid(
                scale * b[i] + visible_to_hidden(mus[i - 1], params.weights[i - 1])
            )
    return mus


def mean_field(
    params: MultimodalParams,
    image: Array | None,
    text: Array | None,
    total_count: Any = None,
    num_iters: int = 30,
    damping: float = 0.0,
    tol: float | None = 1e-5,
) -> list:
    """Mean-field marginals ``[mu_0, ..., mu_L]`` (eq. 39-41) given the observed modalities
    (``image`` ``(..., D)`` and/or ``text`` ``(..., K)``; ``None`` marks a missing one, whose
    document length ``total_count`` must then be given for missing text). Observed layers
    stay fixed; at most ``num_iters`` in-order sweeps over the others, stopping once no
    marginal moves by more than ``tol`` (one ``lax.while_loop`` in JAX)."""
    check_mean_field_args(num_iters, damping, tol)
    if image is None and text is None:
        raise ValueError("mean field needs at least one observed modality (image or text)")
    if text is None:
        check_total_count(total_count)
    top = len(params.weights)
    free = [i for i in range(top + 1) if 0 < i < top or (i == 0 and image is None)]
    if text is None:
        free.append(top)

    def sweep(mus):
        new = list(mus)
        for i in free:
            if i in (0, top):
                new[i] = _visible_mean(params, new, i)
                continue
            mu = ops.sigmoid(layer_logits(params, new, i))
            new[i] = mu if damping == 0.0 else damping * new[i] + (1.0 - damping) * mu
        return new

    init = mean_field_init(params, image, text, total_count)
    like = init[1]
    return list(ops.fixed_point(sweep, init, num_iters, tol, max_abs_diff, like))


def mean_field_bound(params: MultimodalParams, mus: Sequence[Array], log_z: Any = 0.0) -> Array:
    """Eq. 38 for both modalities observed: ``log p(v^m, v^t) >= -E(v, mu) + sum_l H(mu_l)
    + log(M!/prod v^t_k!) - log Z(M)``, shape ``(...)``."""
    out = log_prob(params, mus)
    for mu in mus[1:-1]:
        out = out + bernoulli_entropy(mu)
    return out - log_z


def mean_field_contrast(
    params: MultimodalParams, mus: Sequence[Array], samples: Sequence[Array], w_data, w_model
) -> Array:
    """The SA-MLE surrogate ``w_data sum_n E(mu_n) - w_model sum_k E(x_k)`` (constants
    ``mus`` and ``samples``; ``E`` is linear in every parameter, so its gradient is the
    data-dependent statistics under ``Q`` minus the model's under the persistent chains)."""
    mus = [ops.stop_gradient(m) for m in mus]
    samples = [ops.stop_gradient(x) for x in samples]
    return w_data * energy(params, mus).sum() - w_model * energy(params, samples).sum()
