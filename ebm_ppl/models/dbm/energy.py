"""The DBM itself (Salakhutdinov 2015, section 4): parameters, the energy of eq. 29,
the layer conditionals of eq. 31-34, exact ``log Z`` and exact draws for small models, block
Gibbs, and the checks of visible data."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from ebm_ppl import ops
from ebm_ppl.models.family import OutOfSupport, check_values, draw_states
from ebm_ppl.models.fields import combine_gaussian
from ebm_ppl.models.rbm import (
    MAX_ENUMERATE_UNITS,
    check_binary,
    check_same_dtype,
    hidden_to_visible,
    visible_to_hidden,
)
from ebm_ppl.ops import Array

#: the names that :mod:`ebm_ppl.models.dbm` re-exports from here
__all__ = [
    "Array",
    "DBMParams",
    "_gaussian_log_norm",
    "_odd_free_energy",
    "_odd_states",
    "_sample_layer",
    "_sample_visible_field",
    "_split_odd",
    "_vin",
    "check_dbm",
    "check_layer_index",
    "check_visible",
    "energy",
    "exact_sample",
    "frozen",
    "gibbs_sweep",
    "layer_logits",
    "log_partition",
    "odd_even_sweep",
    "split_layers",
]


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


def split_layers(value: Array, sizes: Sequence[int]) -> list:
    """The layers ``[x_0, ..., x_L]`` (shapes ``(..., n_l)``) of a state ``(..., sum_l n_l)``
    that concatenates them, with ``sizes = (n_0, ..., n_L)``."""
    out, start = [], 0
    for n in sizes:
        out.append(value[..., start : start + n])
        start += n
    return out


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

    def draw(k: Any, layers: list, i: int) -> Array:
        logits = layer_logits(params, layers, i)
        if i == 0 and field is not None:
            return _sample_visible_field(k, params, logits, field)
        return _sample_layer(k, params, logits, i)

    return odd_even_sweep(key, layers, draw, (0,) if clamp_v else ())


def odd_even_sweep(key: Any, layers: Sequence[Array], draw: Any, keep: Sequence[int] = ()) -> list:
    """One block-Gibbs sweep of a chain of layers with connections between neighbours only
    (eq. 31-34: the odd layers are independent given the even ones and vice versa): every odd
    layer ``i`` replaced by ``draw(key_i, layers, i)``, then every even one given the new odd
    ones, except the layers in ``keep``. The keys come from ``key`` split in two (odd, even),
    each split into one key per layer. Returns the new list of layers."""
    layers = list(layers)
    for first, k in zip((1, 0), ops.split(key, 2)):
        keys = ops.split(k, len(layers))
        for i in range(first, len(layers), 2):
            if i not in keep:
                layers[i] = draw(keys[i], layers, i)
    return layers


def _sample_visible_field(key: Any, params: DBMParams, logits: Array, field: Any) -> Array:
    """A draw of ``v`` from ``p(v | h1)`` times an external factor on ``v``."""
    if params.sigma is None:
        return ops.bernoulli(key, ops.sigmoid(logits + field.linear))

    m, var = combine_gaussian(logits, params.sigma**2, field)
    return m + var**0.5 * ops.normal(key, tuple(m.shape), m)


def _sample_layer(key: Any, params: DBMParams, logits: Array, i: int) -> Array:
    """A draw of layer ``i`` given its logits (for Gaussian ``v``: its mean)."""
    if i == 0 and params.sigma is not None:
        return logits + params.sigma * ops.normal(key, tuple(logits.shape), logits)
    return ops.bernoulli(key, ops.sigmoid(logits))


def check_visible(v: Array, gaussian: bool, size: int, name: str) -> None:
    """Checks of visible data: binary (``ValueError`` otherwise) or, for Gaussian units, real
    and finite; last dimension ``size``."""

    if not gaussian:
        check_binary(v, size, name)
        return
    if check_values(v, size, name) and not ops.all_finite(v):
        raise OutOfSupport(f"{name} contains NaN or infinite values")


def check_layer_index(layer: Any, num_layers: int) -> None:
    """``ValueError`` unless ``layer`` is an int in ``[0, num_layers - 1]`` (a layer of a chain
    ``x_0, ..., x_(num_layers - 1)`` whose conditional, eq. 31-34, is asked for)."""
    if not isinstance(layer, int) or not 0 <= layer < num_layers:
        raise ValueError(f"layer must be an int in [0, {num_layers - 1}], got {layer!r}")
