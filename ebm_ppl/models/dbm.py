"""Deep Boltzmann machine math (Salakhutdinov 2015, section 4), written once for torch and JAX.

A DBM over layers ``x_0 = v, x_1 = h^1, ..., x_L = h^L`` (binary units) has the energy
(eq. 29, generalised to ``L`` layers)

    ``E(x) = -sum_l x_l^T W^(l+1) x_(l+1) - sum_l b_l^T x_l``,

with ``weights[l]`` ``W^(l+1)`` of shape ``(n_l, n_(l+1))`` and ``biases[l]`` ``b_l`` of shape
``(n_l,)``. There are no connections within a layer, so given its two neighbours a layer is
factorial (eq. 31-34): ``p(x_l = 1 | x_(l-1), x_(l+1)) = g(b_l + x_(l-1) W^(l) + W^(l+1) x_(l+1))``,
and the odd layers are independent given the even ones and vice versa: block Gibbs alternates
the two groups.

Exact ``log Z`` (small models): enumerate the states of the odd layers and sum every even layer
out analytically (each is factorial given the odd ones):
``log Z = logsumexp_odd [sum_odd b_l^T x_l + sum_even sum_j softplus(logits_l(odd)_j)]``.

Mean field (eq. 36-41): a factorial ``Q(h | v) = prod_l prod_j Bernoulli(mu_lj)`` with the
fixed point ``mu_l = g(b_l + mu_(l-1) W^(l) + W^(l+1) mu_(l+1))`` (``mu_0 = v``); because the
energy is multilinear, ``E_Q[-E] = -E(v, mu)`` and the bound of eq. 38 is
``log p(v) >= -E(v, mu) + H(mu) - log Z``.

Layers are passed as lists ``[x_0, ..., x_L]`` of arrays with shapes ``(..., n_l)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from ebm_ppl import ops
from ebm_ppl.models.family import EnergyMethods, OutOfSupport, check_values, checks_enabled
from ebm_ppl.models.rbm import (
    MAX_ENUMERATE_UNITS,
    check_same_dtype,
    hidden_logits,
    hidden_to_visible,
    visible_logits,
    visible_to_hidden,
)

Array = Any


class DBMParams(NamedTuple):
    """``weights[l]`` ``(n_l, n_(l+1))`` for ``l = 0..L-1``; ``biases[l]`` ``(n_l,)`` for
    ``l = 0..L``; ``sigma`` ``None`` (binary visible units) or the standard deviations
    ``(n_0,)`` of Gaussian visible units (then the ``v`` terms of the energy are
    ``sum_i (v_i - b_0i)^2 / (2 sigma_i^2) - (v / sigma)^T W^(1) h^1``, as in eq. 11)."""

    weights: tuple
    biases: tuple
    sigma: Any = None


def frozen(params: DBMParams) -> DBMParams:
    """The parameters without gradient."""
    sg = ops.stop_gradient
    sigma = None if params.sigma is None else sg(params.sigma)
    return DBMParams(
        tuple(sg(w) for w in params.weights), tuple(sg(b) for b in params.biases), sigma
    )


def _vin(params: DBMParams, v: Array) -> Array:
    """The visible layer as seen by ``W^(1)``: ``v``, or ``v / sigma`` for Gaussian units."""
    return v if params.sigma is None else v / params.sigma


def _gaussian_log_norm(params: DBMParams) -> Array:
    """``sum_i log(sqrt(2 pi) sigma_i)``: the normaliser of ``exp(-(v - m)^2 / (2 sigma^2))``."""
    sigma = ops.broadcast_to(params.sigma, tuple(params.biases[0].shape))
    return (ops.log(sigma) + 0.5 * math.log(2 * math.pi)).sum()


def check_dbm(weights: Sequence[Array], biases: Sequence[Array]) -> tuple:
    """Validate a DBM's parameters; returns the layer sizes ``(n_0, ..., n_L)``.

    Raises ``TypeError`` for non-arrays or mixed backends and ``ValueError`` naming the
    argument for wrong counts or shapes."""
    weights, biases = tuple(weights), tuple(biases)
    if len(weights) < 1:
        raise ValueError("a DBM needs at least one weight matrix (weights=[W1, W2, ...])")
    if len(biases) != len(weights) + 1:
        raise ValueError(
            f"biases must have one entry per layer ({len(weights) + 1} for {len(weights)} "
            f"weight matrices), got {len(biases)}"
        )
    arrays = weights + biases
    for i, x in enumerate(arrays):
        if not (ops.is_torch(x) or ops.is_jax(x)):
            name = f"weights[{i}]" if i < len(weights) else f"biases[{i - len(weights)}]"
            raise TypeError(f"{name} must be a torch.Tensor or a JAX array, got {type(x).__name__}")
    if len({ops.backend_name(x) for x in arrays}) > 1:
        raise TypeError("weights and biases must all be torch tensors or all JAX arrays")
    sizes = [int(weights[0].shape[0])] if weights[0].ndim == 2 else [-1]
    for i, w in enumerate(weights):
        if w.ndim != 2 or int(w.shape[0]) != sizes[-1]:
            raise ValueError(
                f"weights[{i}] must have shape ({sizes[-1]}, n_{i + 1}), got {tuple(w.shape)}"
            )
        sizes.append(int(w.shape[1]))
    for i, b in enumerate(biases):
        if tuple(b.shape) != (sizes[i],):
            raise ValueError(f"biases[{i}] must have shape ({sizes[i]},), got {tuple(b.shape)}")
    named = {f"weights[{i}]": w for i, w in enumerate(weights)}
    named.update({f"biases[{i}]": b for i, b in enumerate(biases)})
    check_same_dtype(named)
    return tuple(sizes)


def layer_logits(params: DBMParams, layers: Sequence[Array], layer: int) -> Array:
    """Logits of ``p(x_layer = 1 | neighbours)`` (eq. 31-34), shape ``(..., n_layer)``; only
    ``layers[layer - 1]`` and ``layers[layer + 1]`` are read. For Gaussian visible units and
    ``layer = 0`` it is the conditional mean ``b_0 + sigma W^(1) h^1`` instead."""
    out = params.biases[layer]
    if layer > 0:
        below = layers[layer - 1] if layer > 1 else _vin(params, layers[0])
        out = out + visible_to_hidden(below, params.weights[layer - 1])
    if layer < len(params.weights):
        up = hidden_to_visible(layers[layer + 1], params.weights[layer])
        out = out + (up if layer > 0 or params.sigma is None else params.sigma * up)
    return out


def energy(params: DBMParams, layers: Sequence[Array]) -> Array:
    """``E(x)`` (eq. 29), shape ``(...)``."""
    total = 0.0
    for i, (w, b) in enumerate(zip(params.weights, params.biases)):
        x = layers[i] if i > 0 else _vin(params, layers[0])
        total = total - (visible_to_hidden(x, w) * layers[i + 1]).sum(-1)
        if i == 0 and params.sigma is not None:
            total = total + (((layers[0] - b) / params.sigma) ** 2).sum(-1) / 2
        else:
            total = total - (layers[i] * b).sum(-1)
    return total - (layers[-1] * params.biases[-1]).sum(-1)


def _odd_free_energy(params: DBMParams, layers: Sequence[Array]) -> Array:
    """``-log sum_even exp(-E)``: the free energy of the odd layers with every even layer
    summed out (needs only the odd entries of ``layers``), shape ``(...)``."""
    total = 0.0
    for i in range(len(params.biases)):
        if i % 2:
            total = total - (layers[i] * params.biases[i]).sum(-1)
        elif i == 0 and params.sigma is not None:  # the Gaussian integral over v
            u = hidden_to_visible(layers[1], params.weights[0])
            b = params.biases[0]
            total = total - (
                (b * u / params.sigma + u * u / 2).sum(-1) + _gaussian_log_norm(params)
            )
        else:
            total = total - ops.softplus(layer_logits(params, layers, i)).sum(-1)
    return total


def log_partition(params: DBMParams) -> Array:
    """Exact ``log Z`` by enumerating the odd layers (``ValueError`` pointing to AIS above
    :data:`~ebm_ppl.models.rbm.MAX_ENUMERATE_UNITS` odd units in all)."""
    _, layers = _odd_states(
        params, "exact log Z enumerates the odd layers", "estimate log Z with AIS instead"
    )
    return ops.logsumexp(-_odd_free_energy(params, layers), axis=0)


def _split_odd(sizes: list, odd: Array) -> list:
    """Layers ``[None, h1, None, h3, ...]`` from the concatenated odd layers ``odd``."""
    layers: list = [None] * len(sizes)
    start = 0
    for i in range(1, len(sizes), 2):
        layers[i] = odd[..., start : start + sizes[i]]
        start += sizes[i]
    return layers


def _odd_states(params: DBMParams, what: str, instead: str) -> tuple[Array, list]:
    """Every joint state of the odd layers ``(2^n_odd, n_odd)`` and the same split into
    layers; ``ValueError`` (``what``, ``instead``) above ``MAX_ENUMERATE_UNITS`` units."""
    sizes = [int(b.shape[0]) for b in params.biases]
    n_odd = sum(sizes[1::2])
    if n_odd > MAX_ENUMERATE_UNITS:
        raise ValueError(
            f"{what}: {n_odd} units (2**{n_odd} states) is more than {MAX_ENUMERATE_UNITS}; "
            f"{instead}"
        )
    states = ops.binary_states(n_odd, params.biases[0])
    return states, _split_odd(sizes, states)


def exact_sample(key: Any, params: DBMParams, shape: tuple) -> list:
    """Exact draws of every layer, batch ``shape``: the odd layers jointly from their
    marginal ``exp(-F_odd)`` (enumerated, Gumbel-max; ``ValueError`` above
    :data:`~ebm_ppl.models.rbm.MAX_ENUMERATE_UNITS` odd units), then each even layer given
    them (they are conditionally independent). Returns the layers ``[v, h1, ..., hL]``."""
    from ebm_ppl.models.family import draw_states

    sizes = [int(b.shape[0]) for b in params.biases]
    states, layers = _odd_states(
        params,
        "exact_sample enumerates the odd layers",
        "draw approximately with transition (block Gibbs) instead",
    )
    log_w = -_odd_free_energy(params, layers)  # (S,)
    k_odd, k_even = ops.split(key, 2)
    layers = _split_odd(sizes, draw_states(k_odd, states, log_w, shape))
    keys = ops.split(k_even, len(sizes))
    for i in range(0, len(sizes), 2):
        layers[i] = _sample_layer(keys[i], params, layer_logits(params, layers, i), i)
    return layers


def gibbs_sweep(
    key: Any,
    params: DBMParams,
    layers: Sequence[Array],
    clamp_v: bool = False,
    field: Any = None,
):
    """One block-Gibbs sweep: every odd layer given the even ones, then every even layer
    given the new odd ones (``v`` too unless ``clamp_v``; times the external ``field`` on
    ``v``, a :class:`~ebm_ppl.models.fields.Field`, if given). Returns the new layers."""
    layers = list(layers)
    k_odd, k_even = ops.split(key, 2)
    keys = ops.split(k_odd, len(layers))
    for i in range(1, len(layers), 2):
        layers[i] = ops.bernoulli(keys[i], ops.sigmoid(layer_logits(params, layers, i)))
    keys = ops.split(k_even, len(layers))
    for i in range(0, len(layers), 2):
        if i == 0 and clamp_v:
            continue
        logits = layer_logits(params, layers, i)
        if i == 0 and field is not None:
            layers[i] = _sample_visible_field(keys[i], params, logits, field)
            continue
        layers[i] = _sample_layer(keys[i], params, logits, i)
    return layers


def _sample_visible_field(key: Any, params: DBMParams, logits: Array, field: Any) -> Array:
    """A draw of ``v`` from ``p(v | h1)`` times an external factor on ``v``."""
    if params.sigma is None:
        return ops.bernoulli(key, ops.sigmoid(logits + field.linear))
    from ebm_ppl.models.fields import combine_gaussian

    m, var = combine_gaussian(logits, params.sigma**2, field)
    return m + var**0.5 * ops.normal(key, tuple(m.shape), m)


def _sample_layer(key: Any, params: DBMParams, logits: Array, i: int) -> Array:
    """A draw of layer ``i`` given its logits (for Gaussian ``v``: its mean)."""
    if i == 0 and params.sigma is not None:
        return logits + params.sigma * ops.normal(key, tuple(logits.shape), logits)
    return ops.bernoulli(key, ops.sigmoid(logits))


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


def _entropy(mu: Array) -> Array:
    """Entropy of independent Bernoullis with means ``mu``, summed over the last axis, computed
    stably from the clipped means."""
    eps = 1e-7
    m = ops.where(mu < eps, eps + 0 * mu, ops.where(mu > 1 - eps, (1 - eps) + 0 * mu, mu))
    return -(m * ops.log(m) + (1 - m) * ops.log(1 - m)).sum(-1)


def mean_field_bound(params: DBMParams, mus: Sequence[Array], log_z: Any = 0.0) -> Array:
    """The bound of eq. 38 for the factorial ``Q`` with means ``mus = [v, mu_1, ..., mu_L]``:
    ``-E(v, mu) + sum_l H(mu_l) - log Z``, shape ``(...)``."""
    out = -energy(params, mus)
    for mu in mus[1:]:
        out = out + _entropy(mu)
    return out - log_z


# --------------------------------------------------------------------------------------
# stochastic approximation with a mean-field positive phase (eq. 36-41)
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# greedy pretraining with the doubling trick (Salakhutdinov & Hinton 2009)
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# AIS: paths between two DBMs, with one parity of layers carried and the other summed out
# --------------------------------------------------------------------------------------

CARRY_CHOICES = ("odd", "even")


class DBMBase(NamedTuple):
    """A factorial DBM: independent Bernoulli units in every layer with ``logits[l]``
    ``(n_l,)`` (for Gaussian visible units, ``sigma`` given, ``logits[0]`` is the mean of
    ``N(logits[0], sigma^2)`` on ``v``). The usual ``beta = 0`` end of a DBM's annealing path:
    exact samples, exact ``log Z``. A JAX pytree. See :meth:`DBMMethods.matched_base` for the
    base matched to a model and its data."""

    logits: tuple
    sigma: Any = None

    def log_partition(self) -> Array:
        """The base's exact ``log Z`` over all layers: ``sum_l sum_j softplus(logits_lj)``
        (Gaussian ``v``: ``sum_i log(sqrt(2 pi) sigma_i)`` for layer 0)."""
        total = 0.0
        for i, a in enumerate(self.logits):
            if i == 0 and self.sigma is not None:
                sigma = ops.broadcast_to(self.sigma, tuple(a.shape))
                total = total + (ops.log(sigma) + 0.5 * math.log(2 * math.pi)).sum()
            else:
                total = total + ops.softplus(a).sum()
        return total

    def sample(self, key: Any, shape: tuple, carry: str = "odd") -> Array:
        """Exact draws of the ``carry`` layers (``"odd"``: ``h1, h3, ...``; ``"even"``:
        ``v, h2, ...``), concatenated, shape ``shape + (sum of their sizes,)``."""
        first = 1 if carry == "odd" else 0
        keys = ops.split(key, len(self.logits))
        out = []
        for i in range(first, len(self.logits), 2):
            a = self.logits[i]
            if i == 0 and self.sigma is not None:
                z = ops.normal(keys[i], tuple(shape) + (int(a.shape[0]),), a)
                out.append(a + ops.broadcast_to(self.sigma, tuple(a.shape)) * z)
            else:
                probs = ops.broadcast_to(ops.sigmoid(a), tuple(shape) + (int(a.shape[0]),))
                out.append(ops.bernoulli(keys[i], probs))
        return ops.concat(out, axis=-1)

    def as_params(self) -> DBMParams:
        """The base as a DBM without weights (``weights`` entries ``None``)."""
        return DBMParams((None,) * (len(self.logits) - 1), tuple(self.logits), self.sigma)


class DBMPath:
    """The annealing path from a ``start`` DBM to a target DBM of the same layer sizes, with
    the ``carry`` layers (``"odd"`` or ``"even"``) as the AIS state and the other parity
    summed out analytically at every temperature.

    The geometric path ``p_beta ∝ exp(-(1 - beta) E_start - beta E_target)`` over all layers
    is itself a DBM: the one with parameters ``(1 - beta) theta_start + beta theta_target``
    (energies are linear in the parameters; for Gaussian ``v`` with a shared ``sigma`` up to
    the ``x``-free term ``beta (1 - beta) sum_i ((b_start,i - b_i) / sigma_i)^2 / 2``). So
    ``log f_beta`` is minus that DBM's free energy of the carried layers, and one block-Gibbs
    sweep of it (summed-out layers, then carried ones) leaves ``f_beta`` invariant. Both
    directions of the sweep are exact conditionals of the collapsed chain, so it is
    reversible, as reverse AIS and RAISE need.

    - ``start``: a :class:`DBMBase` (factorial: exact samples and exact ``log Z``; the usual
      start) or :class:`DBMParams` of another DBM (e.g. an earlier checkpoint, or the target
      with its top weights switched off), whose ``log Z`` must then be given as
      ``log_z_start`` (``log_z_start_stderr`` its standard error, added to the result's) and
      whose samples must be given to AIS (``start_samples``, e.g. long Gibbs chains).
    - A JAX pytree (``carry`` and the standard error are static).
    """

    def __init__(
        self,
        start: Any,
        carry: str = "odd",
        log_z_start: Any = None,
        log_z_start_stderr: float = 0.0,
    ) -> None:
        if carry not in CARRY_CHOICES:
            raise ValueError(f"carry must be 'odd' or 'even', got {carry!r}")
        if isinstance(start, DBMBase):
            if log_z_start is not None:
                raise ValueError("log_z_start is exact for a DBMBase start: do not give it")
            self.factorial = True
            log_z_start = start.log_partition()
            start = start.as_params()
        elif isinstance(start, DBMParams):
            if log_z_start is None:
                raise ValueError(
                    "a path from another DBM needs log_z_start (its log Z, e.g. from an "
                    "earlier AIS: pass result.log_z and log_z_start_stderr=result.log_z_stderr)"
                )
            self.factorial = False
        else:
            raise TypeError(
                f"start must be a DBMBase or the DBMParams of a DBM, got {type(start).__name__}"
            )
        if not (isinstance(log_z_start_stderr, (int, float)) and log_z_start_stderr >= 0):
            raise ValueError(f"log_z_start_stderr must be a float >= 0, got {log_z_start_stderr!r}")
        self.start, self.carry, self.log_z_start = start, carry, log_z_start
        self.log_z_start_stderr = float(log_z_start_stderr)

    @property
    def carried(self) -> range:
        return range(1 if self.carry == "odd" else 0, len(self.start.biases), 2)

    def sample(self, key: Any, shape: tuple) -> Array:
        """Exact draws of the carried layers at ``beta = 0`` (factorial starts only)."""
        if not self.factorial:
            raise ValueError(
                "AIS from another DBM cannot draw exact samples of it: give start_samples "
                "(states of the start model, e.g. from long Gibbs chains)"
            )
        base = DBMBase(self.start.biases, self.start.sigma)
        return base.sample(key, shape, self.carry)

    def tree_flatten(self):
        return (self.start, self.log_z_start), (self.carry, self.factorial, self.log_z_start_stderr)

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = cls.__new__(cls)
        obj.start, obj.log_z_start = children
        obj.carry, obj.factorial, obj.log_z_start_stderr = aux
        return obj


def split_odd(params: DBMParams, x_odd: Array) -> list:
    """The layer list with the odd layers taken from ``x_odd`` ``(..., sum_odd n_l)`` and
    ``None`` for the even ones."""
    return split_carried(params, x_odd, "odd")


def split_carried(params: DBMParams, x: Array, carry: str) -> list:
    """The layer list with the ``carry`` layers taken from ``x`` (concatenated) and ``None``
    for the others."""
    layers: list = [None] * len(params.biases)
    start = 0
    for i in range(1 if carry == "odd" else 0, len(layers), 2):
        n = int(params.biases[i].shape[0])
        layers[i] = x[..., start : start + n]
        start += n
    return layers


def _logits_or_bias(params: DBMParams, layers: Sequence[Array], i: int) -> Array:
    """``layer_logits`` for a DBM whose weights may be ``None`` (a factorial start)."""
    if params.weights[0] is None:
        return params.biases[i]
    return layer_logits(params, layers, i)


def _unary(params: DBMParams, x: Array, i: int) -> Array:
    """The carried layer ``i``'s own term of ``-E``: ``x . b_i``, or for Gaussian ``v``
    ``-sum_j (v_j - b_0j)^2 / (2 sigma_j^2)``. Shape ``x.shape[:-1]``."""
    if i == 0 and params.sigma is not None:
        return -(((x - params.biases[0]) / params.sigma) ** 2).sum(-1) / 2
    return (x * params.biases[i]).sum(-1)


def path_terms(params: DBMParams, path: DBMPath, x: Array) -> tuple[list, list]:
    """Everything ``log f_beta(x)`` needs at any ``beta`` without another matrix product:
    per layer, the pair ``(start, target)`` of the carried layer's unary term, or of the
    summed-out layer's logits (its conditional mean for Gaussian ``v``). Returns
    ``(layers, pairs)``."""
    layers = split_carried(params, x, path.carry)
    pairs = []
    for i in range(len(layers)):
        if layers[i] is not None:
            pairs.append((_unary(path.start, layers[i], i), _unary(params, layers[i], i)))
        else:
            pairs.append((_logits_or_bias(path.start, layers, i), layer_logits(params, layers, i)))
    return layers, pairs


def _log_f_from_terms(params: DBMParams, path: DBMPath, layers: list, pairs: list, beta: Any):
    total = 0.0
    for i, (s, t) in enumerate(pairs):
        if layers[i] is not None:
            total = total + (1.0 - beta) * s + beta * t
        elif i == 0 and params.sigma is not None:
            # log of the Gaussian integral of exp(-E_beta) over v: with m the interpolated
            # conditional mean, (m^2 - ((1 - beta) a^2 + beta b^2)) / (2 sigma^2) + log norm
            m = (1.0 - beta) * s + beta * t
            a, b = path.start.biases[0], params.biases[0]
            sq = (m * m - ((1.0 - beta) * a * a + beta * b * b)) / params.sigma**2
            total = total + sq.sum(-1) / 2 + _gaussian_log_norm(params)
        else:
            total = total + ops.softplus((1.0 - beta) * s + beta * t).sum(-1)
    return total


def path_log_f(params: DBMParams, path: DBMPath, x: Array, beta: Any) -> Array:
    """``log f_beta(x)`` of the carried layers ``x`` (concatenated) on ``path``, shape
    ``x.shape[:-1]``: ``-F`` of the interpolated DBM (see :class:`DBMPath`); at ``beta = 1``
    the target's ``-F`` of those layers, at ``beta = 0`` the start's."""
    params = frozen(params)
    layers, pairs = path_terms(params, path, x)
    return _log_f_from_terms(params, path, layers, pairs, beta)


def _draw(key: Any, params: DBMParams, mean_or_logits: Array, i: int) -> Array:
    if i == 0 and params.sigma is not None:
        return mean_or_logits + params.sigma * ops.normal(
            key, tuple(mean_or_logits.shape), mean_or_logits
        )
    return ops.bernoulli(key, ops.sigmoid(mean_or_logits))


def path_sweep(key: Any, params: DBMParams, path: DBMPath, layers: list, pairs: list, beta: Any):
    """One block-Gibbs sweep of the interpolated DBM at ``beta`` from the carried
    ``layers`` whose summed-out logits are in ``pairs``: the summed-out layers, then the
    carried ones. Returns the new carried layers, concatenated."""
    layers = list(layers)
    carried = [i for i in range(len(layers)) if layers[i] is not None]
    k_out, k_in = ops.split(key, 2)
    keys = ops.split(k_out, len(layers))
    for i in range(len(layers)):
        if layers[i] is None:
            s, t = pairs[i]
            layers[i] = _draw(keys[i], params, (1.0 - beta) * s + beta * t, i)
    keys = ops.split(k_in, len(layers))
    out = []
    for i in carried:
        u = (1.0 - beta) * _logits_or_bias(path.start, layers, i) + beta * layer_logits(
            params, layers, i
        )
        out.append(_draw(keys[i], params, u, i))
    return ops.concat(out, axis=-1)


def path_step(key: Any, params: DBMParams, path: DBMPath, x: Array, beta_prev: Any, beta: Any):
    """One AIS step on ``path``: the log-weight increment ``log f_beta(x) - log
    f_beta_prev(x)`` and one sweep at ``beta`` (the summed-out layers' logits are computed
    once and serve both). Returns ``(x_new, delta)``."""
    params = frozen(params)
    layers, pairs = path_terms(params, path, x)
    delta = _log_f_from_terms(params, path, layers, pairs, beta) - _log_f_from_terms(
        params, path, layers, pairs, beta_prev
    )
    return path_sweep(key, params, path, layers, pairs, beta), delta


def check_same_sizes(params: DBMParams, other: DBMParams, name: str) -> None:
    """``ValueError`` unless ``other`` has the layer sizes (and visible kind) of ``params``."""
    sizes = [int(b.shape[0]) for b in params.biases]
    got = [int(b.shape[0]) for b in other.biases]
    if got != sizes:
        raise ValueError(f"{name} must have the layer sizes {sizes}, got {got}")
    if (params.sigma is None) != (other.sigma is None):
        raise ValueError(f"{name} must have the same kind of visible units (binary or Gaussian)")


# --------------------------------------------------------------------------------------
# the distributions (both frontends subclass these)
# --------------------------------------------------------------------------------------


class _Unbatched(EnergyMethods):
    """Lazy ``expand`` for distributions whose parameters have no batch dimensions."""

    def unexpanded(self):
        return self._with_batch_shape(())


def check_layer_lists(weights: Any, biases: Any, array_type: type | None = None) -> None:
    """``TypeError`` unless ``weights`` and ``biases`` are lists (or tuples) of arrays."""
    for name, x, example in (
        ("weights", weights, "[W1, ..., WL]"),
        ("biases", biases, "[b0, ..., bL]"),
    ):
        if (
            isinstance(x, (str, bytes))
            or not isinstance(x, Sequence)
            or (array_type is not None and isinstance(x, array_type))
        ):
            raise TypeError(f"{name} must be a list of arrays {example}, got {type(x).__name__}")


class DBMMethods(_Unbatched):
    """What the Pyro and NumPyro ``DBM`` distributions share.

    The value is the concatenation ``[v, h1, ..., hL]`` ``(..., sum_l n_l)``; ``log_prob``
    is ``-E`` (eq. 29, unnormalized). A subclass stores ``weights`` and ``biases`` (tuples,
    no batch dimensions), ``num_gibbs_steps`` and ``_check_inputs``."""

    @classmethod
    def infer_shapes(cls, weights=(), biases=(), sigma=None, **_) -> tuple:
        """``(batch_shape, event_shape)`` for layers of these shapes, without arrays (the hosts'
        ``infer_shapes``): ``weights`` and ``biases`` are lists of shapes, ``[(n0, n1), ...]``
        and ``[(n0,), (n1,), ...]``. A DBM's parameters have no batch dimensions, so the batch
        shape is ``()`` (``expand`` adds one); the event shape is ``(sum_l n_l,)``."""
        weights, biases = [tuple(w) for w in weights], [tuple(b) for b in biases]
        sizes = [b[-1] if len(b) == 1 else None for b in biases]
        if (
            len(biases) != len(weights) + 1
            or None in sizes
            or any(w != (sizes[i], sizes[i + 1]) for i, w in enumerate(weights))
        ):
            raise ValueError(
                "DBM.infer_shapes: expected weights [(n0, n1), (n1, n2), ...] and biases "
                f"[(n0,), (n1,), ...] (no batch dimensions), got {weights} and {biases}"
            )
        return (), (sum(sizes),)

    weights: tuple
    biases: tuple
    num_gibbs_steps: int

    def _init_dbm(self, weights, biases, num_gibbs_steps, validate_args, sigma=None) -> tuple:
        weights, biases = tuple(weights), tuple(biases)
        sizes = check_dbm(weights, biases)
        from ebm_ppl.models.family import check_finite_float, check_num_gibbs_steps

        check_num_gibbs_steps(num_gibbs_steps)
        on = checks_enabled(validate_args, weights[0])
        named = {f"weights[{i}]": w for i, w in enumerate(weights)}
        named.update({f"biases[{i}]": b for i, b in enumerate(biases)})
        check_finite_float(named, on)
        if sigma is not None:
            if isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
                sigma = ops.asarray_like(float(sigma) + 0 * biases[0], biases[0])
            if not (ops.is_torch(sigma) or ops.is_jax(sigma)):
                raise TypeError(
                    f"sigma must be None, a float or an array, got {type(sigma).__name__}"
                )
            try:
                ok = ops.broadcast_shapes(tuple(sigma.shape), (sizes[0],)) == (sizes[0],)
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(
                    f"sigma must broadcast to the visible layer ({sizes[0]},), got "
                    f"{tuple(sigma.shape)}"
                )
            check_finite_float({"sigma": sigma}, on)
            if on and ops.is_concrete(sigma) and not bool(ops.to_numpy(sigma).min() > 0):
                raise ValueError("sigma must be positive")
        self.sigma = sigma
        self.weights, self.biases = weights, biases
        self.num_gibbs_steps = num_gibbs_steps
        self._check_inputs = on
        return sizes

    # ---- structure --------------------------------------------------------------------

    @property
    def dbm_params(self) -> DBMParams:
        return DBMParams(tuple(self.weights), tuple(self.biases), self.sigma)

    @property
    def sizes(self) -> tuple:
        """Layer sizes ``(n_0, ..., n_L)``."""
        return tuple(int(b.shape[0]) for b in self.biases)

    @property
    def n_visible(self) -> int:
        return self.sizes[0]

    @property
    def num_layers(self) -> int:
        """Number of hidden layers ``L``."""
        return len(self.weights)

    def split(self, value: Array) -> list:
        """The layers ``[v, h1, ..., hL]`` of a value ``(..., sum_l n_l)``."""
        out, start = [], 0
        for n in self.sizes:
            out.append(value[..., start : start + n])
            start += n
        return out

    def join(self, layers: Sequence[Array]) -> Array:
        """The value ``(..., sum_l n_l)`` of layers ``[v, h1, ..., hL]``."""
        return ops.concat(list(layers), axis=-1)

    @property
    def gaussian(self) -> bool:
        """Whether the visible units are Gaussian (``sigma`` given)."""
        return getattr(self, "sigma", None) is not None

    def _check_value(self, value: Array, name: str = "value") -> None:
        from ebm_ppl.models.rbm import check_binary

        total = sum(self.sizes)
        if (
            not getattr(self, "_check_inputs", True)
            or (ops.is_torch(value) or ops.is_jax(value))
            and not ops.is_concrete(value)
        ):
            if value.shape[-1] != total:
                raise ValueError(f"{name} must have shape (..., {total}), got {tuple(value.shape)}")
            return
        if not self.gaussian:
            check_binary(value, total, name)
            return
        check_values(value, total, name)
        check_visible(value[..., : self.n_visible], True, self.n_visible, name)
        check_binary(value[..., self.n_visible :], total - self.n_visible, name)

    # ---- densities --------------------------------------------------------------------

    def energy(self, value: Array) -> Array:
        """``E(v, h1, ..., hL)`` (eq. 29), shape ``value.shape[:-1]`` (broadcast to the
        batch shape)."""
        self._check_value(value)
        return self._out(energy(self.dbm_params, self.split(value)), value)

    def log_prob(self, value: Array) -> Array:
        """Unnormalized ``-E(x)`` of the concatenated layers (add ``-log_partition()``)."""
        return -self.energy(value)

    def log_prob_unchecked(self, value: Array) -> Array:
        return self._out(-energy(self.dbm_params, self.split(value)), value)

    def free_energy(self, value: Array) -> Array:
        """``-log_prob``: the energy ``E(x)`` of the full state (the value holds every layer,
        so nothing is summed out); the per-draw trace of ``BlockGibbs`` runs."""
        return self.energy(value)

    def log_partition(self) -> Array:
        """Exact ``log Z``: the odd layers enumerated, the even ones summed out analytically
        (``ValueError`` above 20 odd units: use :func:`AIS`)."""
        return log_partition(self.dbm_params)

    def exact_sample(self, key: Any, sample_shape: tuple = ()) -> Array:
        """Exact draws ``sample_shape + batch_shape + (sum_l n_l,)`` (see
        :func:`exact_sample`: the odd layers enumerated, at most 20 units)."""
        shape = tuple(sample_shape) + tuple(self.batch_shape)
        return self.join(exact_sample(key, frozen(self.dbm_params), shape))

    def conditional_logits(self, value: Array, layer: int) -> Array:
        """Logits of ``p(x_layer = 1 | the other layers)`` (eq. 31-34), ``(..., n_layer)``."""
        if not isinstance(layer, int) or not 0 <= layer < len(self.sizes):
            raise ValueError(f"layer must be an int in [0, {len(self.sizes) - 1}], got {layer!r}")
        self._check_value(value)
        return layer_logits(self.dbm_params, self.split(value), layer)

    # ---- sampling ---------------------------------------------------------------------

    def _frozen(self) -> DBMParams:
        return frozen(self.dbm_params)

    def init_chain(self, key: Any, shape: tuple) -> Array:
        """Chains ``shape[:-1] + (sum_l n_l,)`` from independent ``Bernoulli(g(b_l))`` units
        (Gaussian ``v``: ``N(b_0, sigma^2)``)."""
        keys = ops.split(key, len(self.biases))
        lead = tuple(shape[:-1])
        p = self._frozen()
        layers = [
            _sample_layer(k, p, ops.broadcast_to(b, lead + (int(b.shape[0]),)), i)
            for i, (k, b) in enumerate(zip(keys, p.biases))
        ]
        return self.join(layers)

    @property
    def field_kind(self) -> str:
        """The kind of external factor ``transition(field=)`` takes on ``v``."""
        return "gaussian" if self.gaussian else "binary"

    def transition(
        self,
        key: Any,
        value: Array,
        num_steps: int = 1,
        clamp: Any = None,
        cache: Any = None,
        field: Any = None,
    ) -> tuple[Array, None]:
        """``num_steps`` block-Gibbs sweeps (odd layers, then even layers) at fixed
        parameters; returns ``(value, None)``. ``clamp`` (a :class:`~ebm_ppl.models.rbm.Clamp`
        over the visible units) holds part of ``v`` fixed: conditional sampling. ``field``
        (a :class:`~ebm_ppl.models.fields.Field` of the value's full shape, zero outside
        ``v``) multiplies an external factor into ``p(v | h1)``."""
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        if field is not None:
            d = self.n_visible
            field = type(field)(
                field.linear[..., :d], None if field.precision is None else field.precision[..., :d]
            )
        if clamp is not None and int(clamp.mask.shape[-1]) != self.n_visible:
            raise ValueError(
                f"a DBM clamp holds visible units: its mask must end in ({self.n_visible},), "
                f"got shape {tuple(clamp.mask.shape)}"
            )
        p = self._frozen()

        def sweep(k, x):
            layers = gibbs_sweep(k, p, self.split(x), field=field)
            if clamp is not None:
                layers[0] = ops.where(clamp.mask, clamp.values, layers[0])
            return self.join(layers)

        if clamp is not None:
            value = self.join(
                [ops.where(clamp.mask, clamp.values, self.split(value)[0])] + self.split(value)[1:]
            )
        return ops.iterate(sweep, key, value, num_steps, value), None

    def _sample(self, key: Any, sample_shape: tuple) -> Array:
        shape = tuple(sample_shape) + tuple(self.batch_shape) + (sum(self.sizes),)
        k0, k1 = ops.split(key, 2)
        return self.transition(k1, self.init_chain(k0, shape), self.num_gibbs_steps)[0]

    def monitor(self, value: Array) -> Array:
        """Mean squared difference between ``v`` and its mean-field reconstruction."""
        return self.visible().monitor(self.split(value)[0])

    def visible(self, num_iters: int = 30, damping: float = 0.0, tol: float | None = 1e-5):
        """This DBM seen through ``v`` (a ``DBMVisible`` of the same PPL), to observe on data
        and train with ``SAMLE``: mean-field positive phase with at most ``num_iters``
        sweeps, ``damping`` and tolerance ``tol``."""
        return self._visible_cls(self, num_iters, damping, tol)

    # ---- mean field -------------------------------------------------------------------

    def mean_field(
        self, v: Array, num_iters: int = 30, damping: float = 0.0, tol: float | None = None
    ) -> list:
        """Mean-field marginals ``[v, mu_1, ..., mu_L]`` for data ``v`` ``(..., n_0)``
        (eq. 39-41), started from the doubled-weight bottom-up pass; see
        :func:`mean_field_fixed_point`."""
        check_mean_field_args(num_iters, damping, tol)
        if getattr(self, "_check_inputs", True):
            check_visible(v, self.gaussian, self.n_visible, "v")
        return mean_field_fixed_point(self._frozen(), v, num_iters, damping, tol)

    def augment(self, v: Array, **mean_field_kwargs) -> Array:
        """The input of the fine-tuning network of Figure 8: ``[v, q_2, ..., q_L]`` with the
        mean-field marginals of layers ``2..L`` (``(..., n_0 + n_2 + ... + n_L)``)."""
        mus = self.mean_field(v, **mean_field_kwargs)
        first = _vin(self._frozen(), v)  # v / sigma for Gaussian units
        return ops.concat([first] + [ops.stop_gradient(m) for m in mus[2:]], axis=-1)

    def mean_field_bound(self, v: Array, log_z: Any = 0.0, **mean_field_kwargs) -> Array:
        """The lower bound of eq. 38 on ``log p(v)`` (on ``log p~(v)`` with ``log_z=0``),
        shape ``v.shape[:-1]``, at the mean-field fixed point."""
        mus = self.mean_field(v, **mean_field_kwargs)
        return mean_field_bound(self.dbm_params, mus, log_z)

    # ---- AIS (the state is one parity of layers; the other is summed out) --------------

    def ais_base(self, base: Any) -> DBMPath:
        """The annealing path for AIS, as a :class:`DBMPath`. ``base`` is a
        :class:`DBMPath` (checked), or the start of a path over the odd layers: ``None``
        (uniform units), an array of visible logits or a ``BernoulliBase`` (e.g.
        ``base_rate(train_data)``: that on ``v``, uniform hidden layers), or a
        :class:`DBMBase` (e.g. :meth:`matched_base`, the better choice for trained models).
        Gaussian visible units: the base on ``v`` is ``N(m, sigma^2)`` with ``m`` the given
        array (``None``: ``b_0``; e.g. the training data's mean)."""
        from ebm_ppl.models.base import BernoulliBase

        if isinstance(base, DBMPath):
            check_same_sizes(self.dbm_params, base.start, "the path's start")
            return base
        if isinstance(base, DBMBase):
            logits = tuple(base.logits)
        else:
            if base is None:
                first = ops.zeros((self.n_visible,), self.biases[0])
                if self.gaussian:
                    first = ops.stop_gradient(self.biases[0])
            elif isinstance(base, BernoulliBase):
                first = base.logits
            elif ops.is_torch(base) or ops.is_jax(base):
                first = base
            else:
                raise TypeError(
                    "base must be None (uniform), visible logits, a BernoulliBase (e.g. "
                    "base_rate(train_data)), a DBMBase (e.g. dbm.matched_base(train_data)) or "
                    f"a DBMPath, got {type(base).__name__}"
                )
            logits = (first,) + tuple(ops.zeros((n,), self.biases[0]) for n in self.sizes[1:])
        if tuple(int(a.shape[-1]) for a in logits) != self.sizes or any(
            a.ndim != 1 for a in logits
        ):
            raise ValueError(
                f"base logits must have one vector per layer of sizes {self.sizes}, got "
                f"{[tuple(a.shape) for a in logits]}"
            )
        sigma = None if not self.gaussian else ops.stop_gradient(self.sigma)
        return DBMPath(DBMBase(logits, sigma), "odd")

    def ais_path(
        self,
        start: Any = None,
        carry: str = "odd",
        log_z_start: Any = None,
    ) -> DBMPath:
        """A :class:`DBMPath` to this DBM carrying the ``carry`` layers: from a factorial
        ``start`` (anything :meth:`ais_base` takes; default uniform) or from another DBM of
        the same sizes (a DBM distribution or its :class:`DBMParams`) whose ``log Z`` is
        ``log_z_start`` (a float or an ``AISResult``, whose standard error is carried
        along)."""
        if isinstance(start, DBMMethods) or isinstance(start, DBMParams):
            params = start.dbm_params if isinstance(start, DBMMethods) else start
            check_same_sizes(self.dbm_params, params, "start")
            if self.gaussian and ops.is_concrete(params.sigma) and ops.is_concrete(self.sigma):
                gap = ops.to_numpy(ops.broadcast_to(params.sigma - self.sigma, (self.n_visible,)))
                if abs(gap).max() > 1e-6:
                    raise ValueError(
                        "start must have the same visible standard deviations sigma as this "
                        "DBM (the path interpolates the other parameters only)"
                    )
            stderr = float(getattr(log_z_start, "log_z_stderr", 0.0))
            log_z = getattr(log_z_start, "log_z", log_z_start)
            return DBMPath(frozen(params), carry, log_z, stderr)
        if log_z_start is not None:
            raise ValueError("log_z_start is only for a path from another DBM")
        factorial = self.ais_base(start)
        return DBMPath(DBMBase(factorial.start.biases, factorial.start.sigma), carry)

    def matched_base(
        self,
        data: Array,
        num_iters: int = 30,
        pseudocount: float = 1.0,
        batch_size: int = 1000,
    ) -> DBMBase:
        """The factorial base matched to this DBM and its training ``data`` ``(N, n_0)``:
        visible logits from the smoothed pixel means (the base-rate model; Gaussian ``v``:
        the data's mean) and, for every hidden layer, the logits of the average mean-field
        marginal over the data, ``(sum_n mu_ln + c) / (N + 2c)`` with ``c = pseudocount``.
        Annealing from it starts near the model's occupied region: with uniform hidden
        units AIS on trained DBMs gave small error bars and estimates several nats low."""
        check_visible(data, self.gaussian, self.n_visible, "data")
        if data.ndim != 2 or data.shape[0] == 0:
            raise ValueError(
                f"data must have shape (n_data, {self.n_visible}), got {tuple(data.shape)}"
            )
        if not pseudocount > 0:
            raise ValueError(f"pseudocount must be > 0, got {pseudocount}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        n = int(data.shape[0])
        sums = [0.0] * (self.num_layers + 1)
        for s in range(0, n, batch_size):
            mus = self.mean_field(data[s : s + batch_size], num_iters=num_iters)
            sums = [acc + ops.stop_gradient(m).sum(0) for acc, m in zip(sums, mus)]
        logits = []
        for i, total in enumerate(sums):
            if i == 0 and self.gaussian:
                logits.append(total / n)
                continue
            p = (total + pseudocount) / (n + 2.0 * pseudocount)
            logits.append(ops.log(p) - ops.log(1.0 - p))
        return DBMBase(tuple(logits), None if not self.gaussian else ops.stop_gradient(self.sigma))

    def ais_log_z0(self, base: DBMPath) -> Array:
        return base.log_z_start

    def ais_log_f(self, x: Array, beta: Any, base: DBMPath) -> Array:
        return path_log_f(self.dbm_params, base, x, beta)

    def ais_step(self, key: Any, x: Array, beta_prev: Any, beta: Any, base: DBMPath):
        return path_step(key, self.dbm_params, base, x, beta_prev, beta)

    def ais_state(self, value: Array, base: DBMPath | None = None) -> Array:
        """The AIS state (the carried layers of ``base``, default the odd ones,
        concatenated) of full DBM states, e.g. reverse-AIS starting points from long Gibbs
        chains."""
        self._check_value(value, "reverse_samples")
        layers = self.split(value)
        first = 0 if base is not None and base.carry == "even" else 1
        return ops.concat(layers[first::2], axis=-1)

    def raise_base(self, base: Any) -> DBMPath:
        """The path RAISE anneals along: it must carry ``v``, so a factorial start (anything
        :meth:`ais_base` takes) gives the path carrying the even layers; a
        :class:`DBMPath` must already carry them."""
        if isinstance(base, DBMPath):
            if base.carry != "even":
                raise ValueError(
                    "RAISE on a DBM needs a path that carries v: use "
                    "dbm.ais_path(start, carry='even')"
                )
            return self.ais_base(base)
        return self.ais_path(base, carry="even")

    def raise_start(self, key: Any, v: Array, base: DBMPath, num_iters: int = 50):
        """RAISE's first state for data ``v`` ``(n, n_0)``: the even layers (``v`` and
        ``h2, h4, ...``, the path must carry ``"even"``) with the hidden ones drawn from the
        mean-field posterior ``q`` (independent Bernoullis with the logits of the fixed
        point); returns ``(state, log q(hidden))``."""
        check_visible(v, self.gaussian, self.n_visible, "data")
        params = self._frozen()
        mus = self.mean_field(v, num_iters=num_iters)
        keys = ops.split(key, len(mus))
        out, log_q = [v], ops.zeros(tuple(v.shape[:-1]), v)
        for i in range(2, len(mus), 2):
            logits = layer_logits(params, [ops.stop_gradient(m) for m in mus], i)
            h = ops.bernoulli(keys[i], ops.sigmoid(logits))
            log_q = log_q + (h * logits - ops.softplus(logits)).sum(-1)
            out.append(h)
        return ops.concat(out, axis=-1), log_q


def check_visible(v: Array, gaussian: bool, size: int, name: str) -> None:
    """Checks of visible data: binary (``ValueError`` otherwise) or, for Gaussian units, real
    and finite; last dimension ``size``."""
    from ebm_ppl.models.rbm import check_binary

    if not gaussian:
        check_binary(v, size, name)
        return
    if check_values(v, size, name) and not ops.all_finite(v):
        raise OutOfSupport(f"{name} contains NaN or infinite values")


def check_mean_field_args(num_iters: Any, damping: Any, tol: Any) -> None:
    if not isinstance(num_iters, int) or isinstance(num_iters, bool) or num_iters < 1:
        raise ValueError(f"num_iters must be a positive int, got {num_iters!r}")
    if not isinstance(damping, (int, float)) or not 0.0 <= damping < 1.0:
        raise ValueError(f"damping must be a float in [0, 1), got {damping!r}")
    if tol is not None and (not isinstance(tol, (int, float)) or tol <= 0):
        raise ValueError(f"tol must be None or a positive float, got {tol!r}")


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


def max_abs_diff(a: Sequence[Array], b: Sequence[Array]) -> Array:
    out = None
    for x, y in zip(a, b):
        d = abs(x - y).max()
        out = d if out is None else ops.where(d > out, d, out)
    return out


class DBMVisibleMethods(_Unbatched):
    """What the Pyro and NumPyro ``DBMVisible`` distributions share: a DBM seen through its
    visible units, for SA-MLE (``sample("v", dbm.visible(), obs=data)``).

    ``log_prob(v)`` is the mean-field lower bound of eq. 38 on the unnormalized
    ``log p~(v)`` (exact marginalisation over the hidden layers is intractable). The
    persistent chains are full DBM states ``(..., sum_l n_l)``. ``contrast`` is the SA
    surrogate with the mean-field positive phase (:func:`mean_field_contrast`).
    A subclass stores ``dbm`` (a DBM distribution), ``num_iters``, ``damping`` and ``tol``."""

    dbm: Any
    num_iters: int
    damping: float
    tol: float | None

    def _init_visible(self, dbm: Any, dbm_cls: type, num_iters, damping, tol) -> None:
        if not isinstance(dbm, dbm_cls):
            raise TypeError(
                f"dbm must be an {dbm_cls.__module__.rsplit('.', 1)[0]}.DBM, got "
                f"{type(dbm).__name__}"
            )
        check_mean_field_args(num_iters, damping, tol)
        self.dbm, self.num_iters, self.damping, self.tol = dbm, num_iters, damping, tol
        self._finish_init((), (dbm.n_visible,), None)

    def _sample(self, key: Any, sample_shape: tuple) -> Array:
        full = self.dbm._sample(key, tuple(sample_shape) + tuple(self.batch_shape))
        return full[..., : self.n_visible]

    @property
    def n_visible(self) -> int:
        return self.dbm.n_visible

    def _check_value(self, value: Array, name: str = "value") -> None:
        if getattr(self.dbm, "_check_inputs", True):
            check_visible(value, self.dbm.gaussian, self.n_visible, name)
        elif value.shape[-1] != self.n_visible:
            raise ValueError(f"{name} must have shape (..., {self.n_visible})")

    def mean_field(self, v: Array) -> list:
        return mean_field_fixed_point(self.dbm._frozen(), v, self.num_iters, self.damping, self.tol)

    def log_prob(self, value: Array) -> Array:
        """Mean-field lower bound on ``log p~(v)`` (eq. 38 without ``log Z``)."""
        self._check_value(value)
        return self.log_prob_unchecked(value)

    def log_prob_unchecked(self, value: Array) -> Array:
        mus = self.mean_field(value)
        mus = [value] + [ops.stop_gradient(m) for m in mus[1:]]
        return self._out(mean_field_bound(self.dbm.dbm_params, mus), value)

    def contrast(self, data: Array, samples: Array, w_data, w_model, cache=None) -> Array:
        """The SA-MLE surrogate: positive phase at the data's mean-field marginals, negative
        phase at the persistent chains ``samples`` (full DBM states)."""
        mus = self.mean_field(data)
        return mean_field_contrast(
            self.dbm.dbm_params, mus, self.dbm.split(samples), w_data, w_model
        )

    def init_chain(self, key: Any, shape: tuple) -> Array:
        return self.dbm.init_chain(key, tuple(shape[:-1]) + (sum(self.dbm.sizes),))

    def transition(self, key: Any, value: Array, num_steps: int = 1, cache: Any = None):
        return self.dbm.transition(key, value, num_steps)

    def monitor(self, value: Array) -> Array:
        """Mean over the batch of ``||v - g(b_0 + W^(1) mu_1)||^2`` with ``mu_1`` the mean-field
        marginal of the first hidden layer (a training monitor)."""
        p = self.dbm._frozen()
        mus = mean_field_fixed_point(p, value, self.num_iters, self.damping, self.tol)
        recon = layer_logits(p, [None, mus[1]], 0)
        recon = recon if p.sigma is not None else ops.sigmoid(recon)
        return ((value - recon) ** 2).reshape(value.shape[0], -1).sum(-1).mean()


# --------------------------------------------------------------------------------------
# discriminative fine-tuning with the augmented input of Figure 8
# --------------------------------------------------------------------------------------


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
