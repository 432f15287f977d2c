"""The binary restricted Boltzmann machine, written once for torch and JAX.

Notation follows Salakhutdinov (2015), section 2.1. Parameters are ``weights`` ``W`` of shape
``(..., D, F)`` (visible x hidden), ``visible_bias`` ``b`` of shape ``(..., D)`` and
``hidden_bias`` ``a`` of shape ``(..., F)``; leading dimensions are batch dimensions and
broadcast against each other and against the data.

* energy (eq. 1): ``E(v, h) = -v^T W h - b^T v - a^T h``
* free energy (eq. 5): ``F(v) = -b^T v - sum_j softplus(a_j + sum_i W_ij v_i)``, so that
  ``p(v) = exp(-F(v)) / Z``
* block conditionals (eq. 6-8): ``p(h_j = 1 | v) = g(a_j + v^T W_:j)``,
  ``p(v_i = 1 | h) = g(b_i + W_i: h)``
* partition function (eq. 3), exact by enumerating the smaller layer and summing the other
  one out analytically.

Every function takes and returns arrays of one backend; nothing here knows about Pyro or
NumPyro. :class:`RBMMethods` gives both PPL frontends the same methods on top of these.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from ebm_ppl import ops
from ebm_ppl.models.base import BernoulliBase, uniform_base
from ebm_ppl.models.family import (  # noqa: F401 - check_binary, MAX_ENUMERATE_UNITS re-exported
    MAX_ENUMERATE_UNITS,
    HarmoniumMethods,
    OutOfSupport,
    broadcast_batch_shapes,
    check_backend,
    check_binary,
    check_values,
    checks_enabled,
    draw_states,
    shapes_of,
    temperature,
)
from ebm_ppl.ops import Array


class Clamp(NamedTuple):
    """Visible units held fixed during sampling (inpainting).

    ``mask`` is boolean, broadcastable to the visible state; where it is true the state is
    set to ``values`` after every update. Sampling then targets ``p(v_free | v_clamped)``.
    """

    mask: Array
    values: Array


# --------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------


def check_params(
    weights: Array, visible_bias: Array, hidden_bias: Array, values: bool = True
) -> tuple:
    """Validate RBM parameters; return ``(batch_shape, n_visible, n_hidden)``.

    Raises ``TypeError`` for non-arrays or mixed backends and ``ValueError`` (naming the
    argument) for wrong shapes or non-finite values (the latter only for concrete arrays and
    with ``values``: see :func:`ebm_ppl.models.family.checks_enabled`).
    """
    names = ("weights", "visible_bias", "hidden_bias")
    arrays = (weights, visible_bias, hidden_bias)
    for name, x in zip(names, arrays):
        if not (ops.is_torch(x) or ops.is_jax(x)):
            raise TypeError(f"{name} must be a torch.Tensor or a JAX array, got {type(x).__name__}")
    if len({ops.backend_name(x) for x in arrays}) > 1:
        raise TypeError("weights, visible_bias and hidden_bias must all be torch or all JAX")
    if weights.ndim < 2:
        raise ValueError(
            f"weights must have shape (..., n_visible, n_hidden), got {tuple(weights.shape)}"
        )
    n_visible, n_hidden = int(weights.shape[-2]), int(weights.shape[-1])
    if n_visible == 0 or n_hidden == 0:
        raise ValueError(f"weights must have non-empty layers, got {tuple(weights.shape)}")
    if visible_bias.ndim < 1 or visible_bias.shape[-1] != n_visible:
        raise ValueError(
            f"visible_bias must have shape (..., {n_visible}) to match weights "
            f"{tuple(weights.shape)}, got {tuple(visible_bias.shape)}"
        )
    if hidden_bias.ndim < 1 or hidden_bias.shape[-1] != n_hidden:
        raise ValueError(
            f"hidden_bias must have shape (..., {n_hidden}) to match weights "
            f"{tuple(weights.shape)}, got {tuple(hidden_bias.shape)}"
        )
    for name, x in zip(names, arrays):
        if not _is_floating(x):
            raise TypeError(f"{name} must have a floating dtype, got {x.dtype}")
        if values and ops.is_concrete(x) and not ops.all_finite(x):
            raise ValueError(f"{name} contains NaN or infinite values")
    check_same_dtype(dict(zip(names, arrays)))
    batch_shape = broadcast_batch_shapes(dict(zip(names, arrays)), (2, 1, 1))
    return batch_shape, n_visible, n_hidden


def check_same_dtype(named: dict[str, Array]) -> None:
    """``TypeError`` unless every array of ``{name: array}`` has the same dtype (mixed
    float32/float64 parameters would otherwise fail later, inside a matrix product)."""
    dtypes = {name: str(x.dtype).replace("torch.", "") for name, x in named.items()}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{n} {d}" for n, d in dtypes.items())
        raise TypeError(
            f"the parameters must share one dtype, got {listed}; convert them to one "
            "(e.g. all float32: torch .float(), jnp .astype(jnp.float32))"
        )


def _is_floating(x: Array) -> bool:
    if ops.is_torch(x):
        return x.is_floating_point()
    # lazy: keeps this module free of jax until that backend is used
    import jax.numpy as jnp

    return jnp.issubdtype(x.dtype, jnp.floating)


# --------------------------------------------------------------------------------------
# the math
# --------------------------------------------------------------------------------------


def visible_to_hidden(v: Array, weights: Array) -> Array:
    """``v^T W``: shape ``(..., D) x (..., D, F) -> (..., F)`` (one GEMM for 2-D ``W``)."""
    if weights.ndim == 2:
        return v @ weights
    return (v[..., None, :] @ weights)[..., 0, :]


def hidden_to_visible(h: Array, weights: Array) -> Array:
    """``W h``: shape ``(..., F) x (..., D, F) -> (..., D)``."""
    if weights.ndim == 2:
        return h @ weights.T
    return (weights @ h[..., :, None])[..., 0]


def hidden_logits(weights: Array, hidden_bias: Array, v: Array) -> Array:
    """Logits of ``p(h_j = 1 | v)`` (eq. 7): ``a + v^T W``, shape ``(..., F)``."""
    return visible_to_hidden(v, weights) + hidden_bias


def visible_logits(weights: Array, visible_bias: Array, h: Array) -> Array:
    """Logits of ``p(v_i = 1 | h)`` (eq. 8): ``b + W h``, shape ``(..., D)``."""
    return hidden_to_visible(h, weights) + visible_bias


def _dot(x: Array, y: Array) -> Array:
    return (x * y).sum(-1)


def energy(weights: Array, visible_bias: Array, hidden_bias: Array, v: Array, h: Array) -> Array:
    """Joint energy ``E(v, h)`` of eq. 1, shape ``broadcast(v, h, params)[:-1]``."""
    return -(_dot(visible_to_hidden(v, weights), h) + _dot(visible_bias, v) + _dot(hidden_bias, h))


def free_energy(weights: Array, visible_bias: Array, hidden_bias: Array, v: Array) -> Array:
    """Free energy ``F(v) = -log sum_h exp(-E(v, h))`` (eq. 5), shape ``(...)``."""
    return free_energy_from_logits(visible_bias, v, hidden_logits(weights, hidden_bias, v))


def free_energy_from_logits(visible_bias: Array, v: Array, logits: Array) -> Array:
    """Eq. 5 given the hidden logits ``a + v^T W`` (so a caller can reuse them)."""
    return -(_dot(visible_bias, v) + ops.softplus(logits).sum(-1))


def contrast(
    weights: Array,
    visible_bias: Array,
    hidden_bias: Array,
    data: Array,
    samples: Array,
    w_data: float | Array,
    w_model: float | Array,
    data_logits: Array | None = None,
    need_grads: bool = True,
) -> tuple[Array, tuple | None]:
    """The SA-MLE surrogate ``w_data sum_n F(v_n) - w_model sum_k F(x_k)`` and its gradient.

    With ``F`` the free energy (eq. 5) its gradient is the positive minus the negative phase
    statistics of eq. 9: ``dF/dW = -v^T g(a + v^T W)``, ``dF/db = -v``, ``dF/da = -g(.)``.
    Computed with two fused matrix products (``addmm``). ``data`` and ``samples`` have
    shapes ``(..., D)`` and the parameters no batch dimensions. ``data_logits`` optionally
    gives ``a + v^T W`` of the data. Returns ``(value, (dW, db, da))``, or ``(value, None)``
    when ``need_grads`` is false.
    """
    d = data.reshape(-1, data.shape[-1])
    x = samples.reshape(-1, samples.shape[-1])
    ld = hidden_logits(weights, hidden_bias, d) if data_logits is None else data_logits
    ld = ld.reshape(-1, ld.shape[-1])
    lx = hidden_logits(weights, hidden_bias, x)
    # sum_n F(v_n) = -b . (sum_n v_n) - sum_n sum_j softplus(l_nj): the column sums serve the
    # value and the visible-bias gradient alike
    d_sum, x_sum = d.sum(0), x.sum(0)
    g_b = w_model * x_sum - w_data * d_sum
    value = (g_b * visible_bias).sum() - (
        w_data * ops.softplus(ld).sum() - w_model * ops.softplus(lx).sum()
    )
    if not need_grads:
        return value, None
    pd, px = ops.sigmoid(ld), ops.sigmoid(lx)
    g_w = ops.addmm(
        ops.transpose(x) @ px, ops.transpose(d), pd, beta=w_model, alpha=-w_data, overwrite=True
    )
    g_a = w_model * px.sum(0) - w_data * pd.sum(0)
    return value, (g_w, g_b, g_a)


def hidden_free_energy(weights: Array, visible_bias: Array, hidden_bias: Array, h: Array) -> Array:
    """``-log sum_v exp(-E(v, h))``: the free energy with the visible layer summed out."""
    return -(_dot(hidden_bias, h) + ops.softplus(visible_logits(weights, visible_bias, h)).sum(-1))


def log_partition(
    weights: Array,
    visible_bias: Array,
    hidden_bias: Array,
    max_units: int = MAX_ENUMERATE_UNITS,
    chunk_elements: int = 1 << 23,
) -> Array:
    """Exact ``log Z`` (eq. 3), shape = the parameters' batch shape.

    Enumerates the ``2**k`` states of the smaller layer (``k <= max_units``) and sums the
    other layer out analytically, accumulating a log-sum-exp over chunks of states so memory
    stays bounded and large weights stay finite. Raises ``ValueError`` for larger models:
    use annealed importance sampling there.
    """
    batch_shape, n_visible, n_hidden = check_params(weights, visible_bias, hidden_bias)
    k = min(n_visible, n_hidden)
    if k > max_units:
        raise ValueError(
            f"log_partition enumerates the smaller layer, which has {k} units here "
            f"(n_visible={n_visible}, n_hidden={n_hidden}); at most {max_units} are feasible. "
            "Estimate log Z with annealed importance sampling (AIS) instead."
        )
    if n_hidden <= n_visible:
        # enumerate h: log Z = lse_h [a^T h + sum_i softplus(b_i + (W h)_i)]
        w_enum, bias_enum, bias_other = ops.transpose(weights), hidden_bias, visible_bias
    else:
        # enumerate v: log Z = lse_v [b^T v + sum_j softplus(a_j + (v^T W)_j)]
        w_enum, bias_enum, bias_other = weights, visible_bias, hidden_bias
    n_other = n_visible + n_hidden - k
    batch_numel = max(1, math.prod(batch_shape))
    chunk = max(1, min(2**k, chunk_elements // (n_other * batch_numel)))
    parts = []
    for start in range(0, 2**k, chunk):
        states = ops.binary_states(k, weights, start, min(2**k, start + chunk))  # (S, k)
        logits = states @ w_enum + bias_other[..., None, :]  # (..., S, n_other)
        terms = ops.softplus(logits).sum(-1) + (states @ bias_enum[..., :, None])[..., 0]
        parts.append(ops.logsumexp(terms, axis=-1)[..., None])
    log_z = ops.logsumexp(ops.concat(parts, axis=-1), axis=-1)
    return ops.broadcast_to(log_z, batch_shape)


def reconstruction_error(
    weights: Array, visible_bias: Array, hidden_bias: Array, v: Array
) -> Array:
    """Mean over the batch of ``sum_i (v_i - p(v_i = 1 | E[h | v]))^2`` (a training monitor)."""
    p_h = ops.sigmoid(hidden_logits(weights, hidden_bias, v))
    p_v = ops.sigmoid(visible_logits(weights, visible_bias, p_h))
    return ((v - p_v) ** 2).sum(-1).mean()


def gibbs_sweep(
    key: Any,
    weights: Array,
    visible_bias: Array,
    hidden_bias: Array,
    v: Array,
    clamp: Clamp | None = None,
    beta: float | Array = 1.0,
    logits: Array | None = None,
) -> tuple[Array, Array]:
    """One block-Gibbs sweep ``h ~ p(h | v)``, then ``v ~ p(v | h)`` (eq. 6-8).

    ``beta`` is an inverse temperature (the conditionals of ``exp(-beta E)``); ``clamp``
    holds part of ``v`` fixed; ``logits``, if given, are the already computed hidden logits
    ``a + v^T W`` of ``v``. Returns the new ``(v, h)``; ``v`` has ``v``'s shape.
    """
    k_h, k_v = ops.split(key, 2)
    if logits is None:
        logits = hidden_logits(weights, hidden_bias, v)
    cold = not (isinstance(beta, (int, float)) and beta == 1)  # beta = 1: no scaling pass
    h = ops.bernoulli(k_h, ops.sigmoid(beta * logits if cold else logits))
    lv = visible_logits(weights, visible_bias, h)
    v = ops.bernoulli(k_v, ops.sigmoid(beta * lv if cold else lv))
    if clamp is not None:
        v = ops.where(clamp.mask, clamp.values, v)
    return v, h


def ais_step(
    key: Any,
    weights: Array,
    visible_bias: Array,
    hidden_bias: Array,
    base_logits: Array,
    v: Array,
    beta_prev: float | Array,
    beta: float | Array,
) -> tuple[Array, Array]:
    """One AIS step: the log-weight increment ``log f_beta(v) - log f_beta_prev(v)`` and a
    block-Gibbs transition that leaves ``f_beta`` invariant (``h ~ g(beta (c + v^T W))``,
    ``v ~ g((1 - beta) a0 + beta (b + W h))``). The hidden logits of ``v`` are computed once
    and serve both, so a step costs two matrix products. Returns ``(v_new, increment)``.
    """
    logits = hidden_logits(weights, hidden_bias, v)
    delta = (beta - beta_prev) * (_dot(visible_bias, v) - _dot(base_logits, v)) + (
        ops.softplus(beta * logits) - ops.softplus(beta_prev * logits)
    ).sum(-1)
    k_h, k_v = ops.split(key, 2)
    h = ops.bernoulli(k_h, ops.sigmoid(beta * logits))
    v_logits = (1.0 - beta) * base_logits + beta * visible_logits(weights, visible_bias, h)
    return ops.bernoulli(k_v, ops.sigmoid(v_logits)), delta


def gibbs_chain(
    key: Any,
    weights: Array,
    visible_bias: Array,
    hidden_bias: Array,
    v: Array,
    num_steps: int,
    clamp: Clamp | None = None,
    logits: Array | None = None,
) -> tuple[Array, Array]:
    """``num_steps >= 1`` block-Gibbs sweeps from ``v``; returns the last ``(v, h)``.

    ``logits`` optionally gives the hidden logits of the starting ``v`` (saves one matrix
    product). In JAX the sweeps run in one ``lax.scan``; in torch a Python loop.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    k0, k1 = ops.split(key, 2)
    first = gibbs_sweep(k0, weights, visible_bias, hidden_bias, v, clamp, logits=logits)

    def step(k, carry):
        return gibbs_sweep(k, weights, visible_bias, hidden_bias, carry[0], clamp)

    return ops.iterate(step, k1, first, num_steps - 1, like=v)


def initial_visible(key: Any, visible_bias: Array, shape: tuple) -> Array:
    """A starting state for chains: independent ``Bernoulli(g(b))`` draws of ``shape``."""
    probs = ops.broadcast_to(ops.sigmoid(visible_bias), shape)
    return ops.bernoulli(key, probs)


class RBMMethods(HarmoniumMethods):
    """The RBM math as distribution methods, shared by the Pyro and NumPyro classes.

    A subclass sets ``weights``, ``visible_bias``, ``hidden_bias`` (stored in the shapes the
    user gave; the distribution's ``batch_shape`` may be larger after ``expand``, and
    results are broadcast to it) and ``num_gibbs_steps``.
    """

    _event_dims = {"weights": 2, "visible_bias": 1, "hidden_bias": 1}

    @classmethod
    def infer_shapes(cls, weights=(), visible_bias=(), hidden_bias=(), **_) -> tuple:
        """``(batch_shape, event_shape)`` for parameters of these shapes, without arrays."""
        shapes = {"weights": weights, "visible_bias": visible_bias, "hidden_bias": hidden_bias}
        return shapes_of(shapes, cls._event_dims, tuple(weights)[-2:-1])

    # hooks of HarmoniumMethods (the generic family code: parallel tempering, energy); the
    # hot paths below (log_prob, transition, ais_step, log_partition) are specialised
    def _hidden_input(self, p, v):
        return hidden_logits(p[0], p[2], v)

    def _visible_term(self, p, v):
        return _dot(p[1], v)

    def _log_visible_sum(self, p, h):
        # h is (S, F); batched parameters get an axis for the states: result (..., S)
        w = p[0] if p[0].ndim == 2 else p[0][..., None, :, :]
        return -hidden_free_energy(w, p[1][..., None, :], p[2][..., None, :], h)

    def _visible_mean(self, p, h, like=None):
        return ops.sigmoid(visible_logits(p[0], p[1], h))

    field_kind = "binary"

    def _sample_visible(self, key, p, h, beta, base, like=None, field=None):
        if field is not None:
            return ops.bernoulli(key, ops.sigmoid(visible_logits(p[0], p[1], h) + field.linear))
        if base is None:
            logits = visible_logits(p[0], p[1], h)
        else:  # beta W h + ((1 - beta) a0 + beta b): beta scales h (F wide, not D)
            t = temperature(beta)
            logits = hidden_to_visible(t * h, p[0]) + ((1.0 - t) * base.logits + t * p[1])
        return ops.bernoulli(key, ops.sigmoid(logits))

    weights: Array
    visible_bias: Array
    hidden_bias: Array
    num_gibbs_steps: int

    def _init_params(
        self,
        backend: str,
        weights: Array,
        visible_bias: Array,
        hidden_bias: Array,
        num_gibbs_steps: int,
        validate_args: bool | None,
    ) -> tuple[tuple, tuple]:
        """Check and store the parameters; return ``(batch_shape, event_shape)``."""
        params = {"weights": weights, "visible_bias": visible_bias, "hidden_bias": hidden_bias}
        on = self._store_params(backend, params, num_gibbs_steps, validate_args)
        batch_shape, n_visible, _ = check_params(weights, visible_bias, hidden_bias, on)
        return batch_shape, (n_visible,)

    def _check_support(self, value: Array, name: str) -> None:
        check_binary(value, self.n_visible, name)

    def log_prob(self, value: Array) -> Array:
        """Unnormalized log-density ``-F(v)`` (eq. 5; add ``-log_partition()`` to normalize).

        Shape: ``broadcast(value.shape[:-1], batch_shape)``. Raises ``ValueError`` for values
        of the wrong shape and (for concrete arrays) non-binary or non-finite values.
        """
        self._check_value(value)
        return self.log_prob_unchecked(value)

    def log_prob_unchecked(self, value: Array) -> Array:
        """:meth:`log_prob` without input checks (for hot loops on validated data)."""
        return self._out(-free_energy(*self.params, value), value)

    def contrast(
        self, data: Array, samples: Array, w_data: float, w_model: float, cache: Array | None = None
    ) -> Array:
        """``-(w_data sum log p~(data) - w_model sum log p~(samples))``: the SA-MLE surrogate
        of this site (eq. 9), with the analytic gradient of :func:`contrast` in torch.

        ``cache`` is :meth:`data_cache` of ``data``. Parameters with batch dimensions fall
        back to plain autodiff.
        """
        fused = (
            ops.is_torch(data)
            and self.weights.ndim == 2
            and self.visible_bias.ndim == 1
            and self.hidden_bias.ndim == 1
            and tuple(data.shape[:-1]) == ops.broadcast_shapes(data.shape[:-1], self.batch_shape)
        )
        if not fused:  # plain autodiff (JAX fuses this itself)
            lp_d = self.log_prob_unchecked(data).sum()
            lp_x = self.unexpanded().log_prob_unchecked(samples).sum()
            return -(w_data * lp_d - w_model * lp_x)
        return ops.with_analytic_grad(contrast, self.params, data, samples, w_data, w_model, cache)

    def data_cache(self, value: Array) -> Array:
        """The hidden logits of ``value`` without gradient: lets :meth:`transition` start a
        chain at the data, and :meth:`contrast` evaluate it, without recomputing them."""
        params = tuple(ops.stop_gradient(p) for p in self.params)
        return hidden_logits(params[0], params[2], value)

    # ---- annealed importance sampling (the generic AIS driver calls these) ----------------

    def _check_ais_base(self, base: Any) -> None:
        if self.weights.ndim != 2 or self.visible_bias.ndim != 1 or self.hidden_bias.ndim != 1:
            raise ValueError("AIS needs an RBM without batch dimensions in its parameters")
        logits = getattr(base, "logits", None)
        if logits is None or tuple(logits.shape) != (self.n_visible,):
            raise ValueError(
                f"base must be a Bernoulli base over {self.n_visible} visible units, got "
                f"logits of shape {None if logits is None else tuple(logits.shape)}"
            )

    def ais_step(self, key: Any, v: Array, beta_prev: Any, beta: Any, base: Any):
        """One AIS step on the path from ``base`` to this RBM (see :func:`ais_step`)."""
        params = tuple(ops.stop_gradient(p) for p in self.params)
        return ais_step(key, *params, base.logits, v, beta_prev, beta)

    def ais_base(self, base: Any) -> Any:
        """The AIS base: ``None`` -> the uniform model; visible logits -> a Bernoulli base."""

        if base is None:
            return uniform_base(self.n_visible, self.weights)
        if isinstance(base, BernoulliBase):
            return base
        if ops.is_torch(base) or ops.is_jax(base):
            return BernoulliBase(base)
        raise TypeError(
            "base must be None (uniform), a BernoulliBase (e.g. base_rate(train_data)) or "
            f"an array of visible logits, got {type(base).__name__}"
        )

    def exact_sample(self, key: Any, sample_shape: tuple = ()) -> Array:
        """Exact independent draws ``sample_shape + batch_shape + (D,)``: the smaller layer is
        enumerated (see :meth:`HarmoniumMethods.exact_sample`); with ``D <= 20 < F`` the
        visible states are drawn directly from ``p(v) ∝ exp(-F(v))``."""
        if self.n_hidden <= MAX_ENUMERATE_UNITS or self.n_visible > MAX_ENUMERATE_UNITS:
            return super().exact_sample(key, sample_shape)

        p = tuple(ops.stop_gradient(x) for x in self.params)
        states = ops.binary_states(self.n_visible, p[0])  # (S, D)
        log_w = -free_energy(p[0][..., None, :, :], p[1][..., None, :], p[2][..., None, :], states)
        shape = tuple(sample_shape) + tuple(self.batch_shape)
        return draw_states(key, states, log_w, shape)

    def free_energy(self, value: Array) -> Array:
        """``F(v)`` of eq. 5, shape ``broadcast(value.shape[:-1], batch_shape)``."""
        self._check_value(value)
        return self._out(free_energy(*self.params, value), value)

    def energy(self, value: Array, hidden: Array) -> Array:
        """Joint energy ``E(v, h)`` of eq. 1."""
        self._check_value(value)
        check_binary(hidden, self.n_hidden, "hidden")
        e = energy(*self.params, value, hidden)
        shape = ops.broadcast_shapes(
            tuple(value.shape[:-1]), tuple(hidden.shape[:-1]), tuple(self.batch_shape)
        )
        return ops.broadcast_to(e, shape)

    def hidden_logits(self, value: Array) -> Array:
        """Logits of ``p(h | v)`` (eq. 7), shape ``(..., n_hidden)``."""
        self._check_value(value)
        return hidden_logits(self.weights, self.hidden_bias, value)

    def visible_logits(self, hidden: Array) -> Array:
        """Logits of ``p(v | h)`` (eq. 8), shape ``(..., n_visible)``."""
        check_binary(hidden, self.n_hidden, "hidden")
        return visible_logits(self.weights, self.visible_bias, hidden)

    def visible_probs(self, hidden: Array) -> Array:
        """``p(v_i = 1 | h)`` (eq. 8)."""
        return ops.sigmoid(self.visible_logits(hidden))

    def log_partition(self, max_units: int = MAX_ENUMERATE_UNITS) -> Array:
        """Exact ``log Z`` (eq. 3) by enumerating the smaller layer, shape ``batch_shape``.

        Raises ``ValueError`` (pointing to AIS) when the smaller layer has more than
        ``max_units`` units.
        """
        log_z = log_partition(*self.params, max_units=max_units)
        return ops.broadcast_to(log_z, tuple(self.batch_shape))

    # ---- the transition operator, used by BlockGibbs and SAMLE --------------------------

    def init_chain(self, key: Any, shape: tuple) -> Array:
        """Chains of the given full shape ``(..., n_visible)`` drawn from ``Bernoulli(g(b))``."""
        return initial_visible(key, ops.stop_gradient(self.visible_bias), tuple(shape))

    def _gibbs(self, key, value, num_steps, clamp, cache, field):
        """The sweeps of :meth:`transition`: ``h | v`` then ``v | h``. ``cache`` is
        :meth:`data_cache` of ``value``; ``field`` (a :class:`~ebm_ppl.models.fields.Field`)
        adds an external factor's logits to ``p(v | h)``. Returns ``(value, hidden)``."""
        params = tuple(ops.stop_gradient(p) for p in self.params)
        if field is not None:  # exp(f . v) on the visible units = a shifted visible bias
            params = (params[0], params[1] + ops.stop_gradient(field.linear), params[2])
        logits = None if cache is None else ops.stop_gradient(cache)
        return gibbs_chain(key, *params, value, num_steps, clamp, logits=logits)

    def monitor(self, value: Array) -> Array:
        """Reconstruction error of ``value`` (see :func:`reconstruction_error`)."""
        return reconstruction_error(*self.params, value)
