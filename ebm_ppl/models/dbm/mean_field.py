"""Mean field for a DBM (eq. 36-41): the fixed point, its bottom-up start, the bound of
eq. 38, and the SA-MLE surrogate with a mean-field positive phase (section 4.2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ebm_ppl import ops
from ebm_ppl.models.dbm.energy import DBMParams, _vin, energy, layer_logits
from ebm_ppl.models.rbm import hidden_to_visible, visible_to_hidden
from ebm_ppl.models.variational import bernoulli_entropy, max_abs_diff
from ebm_ppl.ops import Array

#: the names that :mod:`ebm_ppl.models.dbm` re-exports from here
__all__ = [
    "_mean_field_sweep",
    "bottom_up",
    "contrast_statistics",
    "data_input",
    "mean_field",
    "mean_field_bound",
    "mean_field_contrast",
    "mean_field_fixed_point",
]


def mean_field(
    params: DBMParams,
    v: Array,
    num_iters: int = 30,
    damping: float = 0.0,
    init: Sequence[Array] | None = None,
) -> list:
    """The mean-field fixed point (eq. 39-41) for data ``v`` ``(..., n_0)``: returns
    ``[v, mu_1, ..., mu_L]`` after ``num_iters`` sweeps of
    ``mu_l <- damping * mu_l + (1 - damping) * g(b_l + mu_(l-1) W^(l) + W^(l+1) mu_(l+1))``
    over ``l = 1..L`` in order. ``init`` defaults to the bottom-up pass with doubled weights
    (:func:`bottom_up`)."""
    v_in = data_input(params, v)
    mus = list(init) if init is not None else bottom_up(params, v, v_in)
    mus[0] = v
    sweep = _mean_field_sweep(params, v, damping, v_in)
    for _ in range(num_iters):
        mus = sweep(mus)
    return mus


def data_input(params: DBMParams, v: Array) -> Array:
    """``v W^(1)`` (``(v / sigma) W^(1)`` for Gaussian units): the data's input to ``h^1``,
    the same at every mean-field sweep and in the bottom-up pass."""
    return visible_to_hidden(_vin(params, v), params.weights[0])


def _mean_field_sweep(params: DBMParams, v: Array, damping: float, v_in: Array | None = None):
    """One in-order sweep of eq. 39-41 over the hidden layers, as a function of the list of
    marginals; the data's input ``v W^(1)`` (``v_in``, computed here if not given) is
    computed once, not at every sweep."""
    if v_in is None:
        v_in = data_input(params, v)

    def sweep(mus):
        new = list(mus)
        for i in range(1, len(new)):
            if i == 1:
                logits = params.biases[1] + v_in
                if len(params.weights) > 1:
                    logits = logits + hidden_to_visible(new[2], params.weights[1])
            else:
                logits = layer_logits(params, new, i)
            m = ops.sigmoid(logits)
            new[i] = m if damping == 0.0 else damping * new[i] + (1.0 - damping) * m
        return new

    return sweep


def bottom_up(params: DBMParams, v: Array, v_in: Array | None = None) -> list:
    """The initialisation of mean field by one bottom-up pass in which every layer but the
    top gets twice its input from below (standing in for the missing top-down input, as in
    Salakhutdinov & Hinton 2009): ``[v, mu_1, ..., mu_L]``. ``v_in`` optionally gives the
    data's input :func:`data_input` (saves one matrix product)."""
    mus, h = [v], _vin(params, v)
    top = len(params.weights)
    for i in range(1, top + 1):
        scale = 1.0 if i == top else 2.0
        up = v_in if i == 1 and v_in is not None else visible_to_hidden(h, params.weights[i - 1])
        h = ops.sigmoid(scale * up + params.biases[i])
        mus.append(h)
    return mus


def mean_field_bound(params: DBMParams, mus: Sequence[Array], log_z: Any = 0.0) -> Array:
    """The bound of eq. 38 for the factorial ``Q`` with means ``mus = [v, mu_1, ..., mu_L]``:
    ``-E(v, mu) + sum_l H(mu_l) - log Z``, shape ``(...)``."""
    out = -energy(params, mus)
    for mu in mus[1:]:
        out = out + bernoulli_entropy(mu)
    return out - log_z


def mean_field_contrast(
    params: DBMParams,
    mus: Sequence[Array],
    samples: Sequence[Array],
    w_data: Any,
    w_model: Any,
) -> Array:
    """The SA-MLE surrogate of a DBM: ``w_data sum_n E(v_n, mu_n) - w_model sum_k E(x_k)``.

    ``mus`` are the mean-field marginals of the data (``[v, mu_1, ..., mu_L]``) and
    ``samples`` the layers of the persistent chains; both are treated as constants. Since
    ``E`` is linear in every parameter, the gradient is the data-dependent statistics under
    ``Q`` minus the model's statistics under the chains, e.g. for ``W^(l)``
    ``-(w_data sum_n mu_(l-1) mu_l^T - w_model sum_k x_(l-1) x_l^T)`` (the update of
    Algorithm 2 in the review, section 4.2). For binary visible units it is evaluated from
    those statistics (:func:`contrast_statistics`): one matrix product per weight and phase,
    where autodiff through the energy needs two (``x W`` for the value, then ``x^T (.)``)."""
    mus = [ops.stop_gradient(m) for m in mus]
    samples = [ops.stop_gradient(x) for x in samples]
    if params.sigma is None:
        diff = tuple(params.weights) + tuple(params.biases)
        return ops.with_analytic_grad(
            contrast_statistics, diff, len(params.weights), mus, samples, w_data, w_model
        )
    return w_data * energy(params, mus).sum() - w_model * energy(params, samples).sum()


def contrast_statistics(*args: Any, need_grads: bool = True) -> tuple[Array, tuple | None]:
    """``(value, grads)`` of the binary DBM's SA surrogate (see :func:`mean_field_contrast`).

    ``args`` are the weights, the biases, then ``(num_weights, mus, samples, w_data,
    w_model)``. With ``G_l = w_model X_l^T X_(l+1) - w_data M_l^T M_(l+1)`` (``M`` the
    marginals, ``X`` the chains, leading dimensions flattened) the gradient is ``G_l`` for
    ``W^(l+1)`` and ``w_model sum X_l - w_data sum M_l`` for ``b_l``, and, the energy being
    linear in the parameters, the value is ``sum_l <W, G_l> + sum_l <b_l, g_l>``; autodiff of
    that value (JAX, ``need_grads=False``) gives the same gradient without a second product.
    """
    n_w = (len(args) - 5) // 2
    weights, biases = args[:n_w], args[n_w : 2 * n_w + 1]
    _, mus, samples, w_data, w_model = args[2 * n_w + 1 :]
    m = [x.reshape(-1, x.shape[-1]) for x in mus]
    s = [x.reshape(-1, x.shape[-1]) for x in samples]
    g_w = tuple(
        ops.addmm(
            ops.transpose(s[i]) @ s[i + 1],
            ops.transpose(m[i]),
            m[i + 1],
            w_model,
            -w_data,
            overwrite=True,
        )
        for i in range(n_w)
    )
    g_b = tuple(w_model * s[i].sum(0) - w_data * m[i].sum(0) for i in range(n_w + 1))
    value = 0.0
    for w, g in zip(weights + biases, g_w + g_b):
        value = value + (w * g).sum()
    return value, (g_w + g_b if need_grads else None)


def mean_field_fixed_point(
    params: DBMParams, v: Array, num_iters: int, damping: float = 0.0, tol: float | None = None
) -> list:
    """:func:`mean_field` from the bottom-up start, stopping early once the largest change
    of any marginal in a sweep is below ``tol`` (at most ``num_iters`` sweeps; in JAX one
    ``lax.while_loop``)."""
    if tol is None:
        return mean_field(params, v, num_iters, damping)

    v_in = data_input(params, v)
    sweep = _mean_field_sweep(params, v, damping, v_in)
    mus = ops.fixed_point(
        sweep,
        bottom_up(params, v, v_in),
        num_iters,
        tol,
        lambda a, b: max_abs_diff(a[1:], b[1:]),
        v,
    )
    return list(mus)
