"""RBM with softmax (K-valued categorical) visible units, for torch and JAX.

The collaborative-filtering RBM of Salakhutdinov, Mnih & Hinton (2007) (the tutorial slides'
"multinomial visible units", e.g. ratings): ``D`` visible units each taking one of ``K``
values. Parameters: ``weights`` ``W`` ``(..., D, K, F)``, ``visible_bias`` ``b``
``(..., D, K)``, ``hidden_bias`` ``a`` ``(..., F)``. A value is a vector of category indices
``v`` ``(..., D)`` in ``{0, ..., K-1}``, with ``-1`` marking a **missing** entry; ``x`` is
its one-hot encoding (a zero row for a missing entry).

* energy: ``E(v, h) = -sum_dk x_dk (b_dk + sum_j W_dkj h_j) - a^T h``; missing entries are
  simply absent from the energy (each pattern of observed entries is its own RBM sharing
  the parameters, as in the collaborative-filtering RBM)
* conditionals: ``p(h_j = 1 | v) = g(a_j + sum_dk x_dk W_dkj)``,
  ``p(v_d = k | h) = softmax_k(b_dk + sum_j W_dkj h_j)``
* ``log Z = log sum_h exp(a^T h + sum_d logsumexp_k(b_dk + (W h)_dk))`` for the model with
  every entry present (exact for small hidden layers).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ebm_ppl import ops
from ebm_ppl.models.base import TractableBase
from ebm_ppl.models.family import (
    HarmoniumMethods,
    OutOfSupport,
    broadcast_batch_shapes,
    check_finite_float,
    check_values,
    shapes_of,
    temperature,
)
from ebm_ppl.models.rbm import check_binary, check_same_dtype
from ebm_ppl.ops import Array


def check_params(
    weights: Array, visible_bias: Array, hidden_bias: Array, values: bool = True
) -> tuple:
    """Validate parameters; return ``(batch_shape, n_visible, n_categories, n_hidden)``."""

    if weights.ndim < 3:
        raise ValueError(
            "weights must have shape (..., n_visible, n_categories, n_hidden), got "
            f"{tuple(weights.shape)}"
        )
    d, k, f = (int(n) for n in weights.shape[-3:])
    if d == 0 or k < 2 or f == 0:
        raise ValueError(
            f"weights must have non-empty layers and >= 2 categories, got {tuple(weights.shape)}"
        )
    if visible_bias.ndim < 2 or tuple(visible_bias.shape[-2:]) != (d, k):
        raise ValueError(
            f"visible_bias must have shape (..., {d}, {k}) to match weights "
            f"{tuple(weights.shape)}, got {tuple(visible_bias.shape)}"
        )
    if hidden_bias.ndim < 1 or int(hidden_bias.shape[-1]) != f:
        raise ValueError(
            f"hidden_bias must have shape (..., {f}) to match weights {tuple(weights.shape)}, "
            f"got {tuple(hidden_bias.shape)}"
        )
    named = {"weights": weights, "visible_bias": visible_bias, "hidden_bias": hidden_bias}
    check_finite_float(named, values)
    check_same_dtype(named)
    batch = broadcast_batch_shapes(named, (3, 2, 1))
    return batch, d, k, f


def check_categories(x: Array, size: int, k: int, name: str = "value") -> None:
    """Category indices: last dimension ``size``, whole numbers in ``{-1, 0, ..., k-1}``."""
    if not check_values(x, size, name):
        return

    a = np.asarray(ops.to_numpy(x), dtype=np.float64)
    if not np.isfinite(a).all():
        raise OutOfSupport(f"{name} contains NaN or infinite values")
    if (a != np.round(a)).any() or (a < -1).any() or (a > k - 1).any():
        raise OutOfSupport(
            f"{name} must hold category indices in 0..{k - 1} (or -1 for a missing entry)"
        )


def _flat(w: Array) -> Array:
    """``(..., D, K, F) -> (..., D*K, F)``."""
    return w.reshape(tuple(w.shape[:-3]) + (w.shape[-3] * w.shape[-2], w.shape[-1]))


class CategoricalBase(TractableBase):
    """Independent categorical units with ``logits`` ``(D, K)``: the tractable end of the AIS
    path for :class:`CategoricalRBMMethods` (exact ``log Z`` and draws)."""

    def __init__(self, logits: Array) -> None:
        if not (ops.is_torch(logits) or ops.is_jax(logits)) or logits.ndim != 2:
            raise ValueError("logits must be a (n_visible, n_categories) torch or JAX array")
        self.logits = logits

    def log_prob(self, value: Array) -> Array:
        x = ops.one_hot(value, int(self.logits.shape[1]), self.logits)
        return (x * self.logits).sum(-1).sum(-1)

    def log_partition(self) -> Array:
        return ops.logsumexp(self.logits, axis=-1).sum()

    def sample(self, key: Any, shape: tuple) -> Array:
        return ops.categorical(
            key, ops.broadcast_to(self.logits, tuple(shape) + tuple(self.logits.shape))
        )


class CategoricalRBMMethods(HarmoniumMethods):
    """The categorical-visible RBM as distribution methods, shared by both frontends."""

    _event_dims = {"weights": 3, "visible_bias": 2, "hidden_bias": 1}

    @classmethod
    def infer_shapes(cls, weights=(), visible_bias=(), hidden_bias=(), **_) -> tuple:
        """``(batch_shape, event_shape)`` for parameters of these shapes, without arrays."""
        shapes = {"weights": weights, "visible_bias": visible_bias, "hidden_bias": hidden_bias}
        return shapes_of(shapes, cls._event_dims, tuple(weights)[-3:-2])

    weights: Array
    visible_bias: Array
    hidden_bias: Array

    def _init_params(self, backend, weights, visible_bias, hidden_bias, steps, validate):
        params = {"weights": weights, "visible_bias": visible_bias, "hidden_bias": hidden_bias}
        on = self._store_params(backend, params, steps, validate)
        batch_shape, d, _, _ = check_params(weights, visible_bias, hidden_bias, on)
        return batch_shape, (d,)

    @property
    def n_visible(self) -> int:
        return int(self.weights.shape[-3])

    @property
    def n_categories(self) -> int:
        return int(self.weights.shape[-2])

    def _check_complete(self, value: Array, name: str) -> None:
        """``ValueError`` for missing entries (-1) where the full model's ``log Z`` or exact
        draws of every entry are used (``normalized=True``, exact exchange draws): the
        density of the observed entries alone has another normalizer."""
        if ops.is_concrete(value) and bool((ops.to_numpy(value) < 0).any()):
            raise ValueError(
                f"{name} has missing entries (-1); normalized=True and exact exchange draws use "
                "the log Z and draws of the model with every entry present. Drop the missing "
                "entries, or use Exchange(model, aux_sweeps=K) (Gibbs keeps them missing)."
            )

    def _check_support(self, value: Array, name: str) -> None:
        check_categories(value, self.n_visible, self.n_categories, name)

    def _onehot(self, p, v):
        return ops.one_hot(v, self.n_categories, p[0])

    # hooks of HarmoniumMethods
    def _hidden_input(self, p, v):
        x = self._onehot(p, v)
        flat = x.reshape(tuple(x.shape[:-2]) + (x.shape[-2] * x.shape[-1],))
        w = _flat(p[0])
        if w.ndim == 2:
            return flat @ w + p[2]
        return (flat[..., None, :] @ w)[..., 0, :] + p[2]

    def _visible_term(self, p, v):
        x = self._onehot(p, v)
        return (x * p[1]).sum(-1).sum(-1)

    def _top_down(self, p, h):
        """``(W h)_dk``, shape ``(..., D, K)``."""
        w = _flat(p[0])
        if w.ndim == 2:
            t = h @ ops.transpose(w)
        else:
            t = (w @ h[..., :, None])[..., 0]
        return t.reshape(tuple(t.shape[:-1]) + (self.n_visible, self.n_categories))

    def _log_visible_sum(self, p, h):
        w = _flat(p[0])
        t = h @ ops.transpose(w)  # (..., S, D*K)
        t = t.reshape(tuple(t.shape[:-1]) + (self.n_visible, self.n_categories))
        logits = t + p[1][..., None, :, :]
        return ops.logsumexp(logits, axis=-1).sum(-1) + (h @ p[2][..., :, None])[..., 0]

    def _visible_mean(self, p, h, like=None):
        """Expected category index ``sum_k k p(v_d = k | h)`` (the monitor's reconstruction)."""
        probs = ops.softmax(self._top_down(p, h) + p[1])
        k = ops.arange(self.n_categories, probs)
        mean = (probs * k).sum(-1)
        if like is not None:
            mean = ops.where(like < 0, like, mean)
        return mean

    def _sample_visible(self, key, p, h, beta, base, like=None):
        logits = self._top_down(p, h) + p[1]
        if base is not None:
            t = temperature(beta)
            t = t[..., None] if ops.is_torch(t) or ops.is_jax(t) else t
            logits = (1.0 - t) * base.logits + t * logits
        v = ops.categorical(key, logits)
        if like is not None:  # missing entries stay missing
            v = ops.where(like < 0, ops.zeros_like(v) - 1.0, v)
        return v

    def visible_probs(self, hidden: Array) -> Array:
        """``p(v_d = k | h)``, shape ``(..., D, K)``."""

        check_binary(hidden, self.n_hidden, "hidden")
        p = self.params
        return ops.softmax(self._top_down(p, hidden) + p[1])

    def init_chain(self, key: Any, shape: tuple) -> Array:
        """Chains of full shape ``(..., D)`` drawn from ``softmax(b)`` (no missing entries)."""
        b = ops.stop_gradient(self.visible_bias)
        return ops.categorical(key, ops.broadcast_to(b, tuple(shape) + (self.n_categories,)))

    def ais_base(self, base: Any) -> CategoricalBase:
        """``None`` -> uniform categories; an array of logits ``(D, K)`` -> that base."""
        if base is None:
            return CategoricalBase(ops.zeros((self.n_visible, self.n_categories), self.weights))
        if ops.is_torch(base) or ops.is_jax(base):
            return CategoricalBase(base)
        return base

    def _check_ais_base(self, base: Any) -> None:
        if self.weights.ndim != 3 or self.visible_bias.ndim != 2 or self.hidden_bias.ndim != 1:
            raise ValueError("AIS needs a CategoricalRBM without batch dimensions")
        if not isinstance(base, CategoricalBase) or tuple(base.logits.shape) != (
            self.n_visible,
            self.n_categories,
        ):
            raise ValueError(
                f"base must be a CategoricalBase with logits of shape ({self.n_visible}, "
                f"{self.n_categories}), got {type(base).__name__}"
            )
