"""The Gaussian-Bernoulli RBM (Salakhutdinov 2015, section 2.2), written once for torch and JAX.

Parameters: ``weights`` ``W`` ``(..., D, F)``, ``visible_bias`` ``b`` ``(..., D)``,
``hidden_bias`` ``a`` ``(..., F)`` and ``sigma`` ``(..., D)`` (or ``(..., 1)``: one value for
every unit), all with broadcasting batch dimensions.

* energy (eq. 11): ``E(v, h) = sum_i (v_i - b_i)^2 / (2 sigma_i^2) - sum_ij W_ij h_j v_i / sigma_i
  - a^T h``
* conditionals (eq. 13-14): ``v_i | h ~ N(b_i + sigma_i (W h)_i, sigma_i^2)``,
  ``p(h_j = 1 | v) = g(a_j + sum_i W_ij v_i / sigma_i)``
* free energy: ``F(v) = sum_i (v_i - b_i)^2 / (2 sigma_i^2) - sum_j softplus(u_j)`` with
  ``u = a + (v / sigma)^T W``
* ``log Z = log sum_h exp(a^T h + sum_i [b_i t_i / sigma_i + t_i^2 / 2 + log(sqrt(2 pi)
  sigma_i)])`` with ``t = W h`` (the Gaussian integral over ``v``; exact for small hidden
  layers).
"""

from __future__ import annotations

import math
from typing import Any

from ebm_ppl import ops
from ebm_ppl.models.base import GaussianBase
from ebm_ppl.models.family import (
    HarmoniumMethods,
    OutOfSupport,
    check_finite_float,
    check_values,
    shapes_of,
    temperature,
)
from ebm_ppl.models.fields import combine_gaussian
from ebm_ppl.models.rbm import check_binary, check_same_dtype, hidden_to_visible, visible_to_hidden
from ebm_ppl.models.rbm import check_params as check_rbm
from ebm_ppl.ops import Array

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def check_params(
    weights: Array, visible_bias: Array, hidden_bias: Array, sigma: Array, values: bool = True
) -> tuple:
    """Validate Gaussian-RBM parameters; return ``(batch_shape, n_visible, n_hidden)``."""

    batch_shape, d, f = check_rbm(weights, visible_bias, hidden_bias, values)
    if not (ops.is_torch(sigma) or ops.is_jax(sigma)) or ops.is_torch(sigma) != ops.is_torch(
        weights
    ):
        raise TypeError("sigma must be an array of the same backend as weights")
    if sigma.ndim < 1 or int(sigma.shape[-1]) not in (1, d):
        raise ValueError(
            f"sigma must have shape (..., {d}) or (..., 1) to match weights "
            f"{tuple(weights.shape)}, got {tuple(sigma.shape)}"
        )
    check_finite_float({"sigma": sigma}, values)
    check_same_dtype({"weights": weights, "sigma": sigma})
    if values and ops.is_concrete(sigma) and not bool((sigma > 0).all()):
        raise ValueError("sigma must be > 0 (standard deviations of the visible units)")
    try:
        batch_shape = ops.broadcast_shapes(batch_shape, tuple(sigma.shape[:-1]))
    except ValueError:
        raise ValueError(
            f"the batch shape of sigma {tuple(sigma.shape[:-1])} does not broadcast with the "
            f"other parameters' {batch_shape}"
        ) from None
    return batch_shape, d, f


def check_real(x: Array, size: int, name: str = "value") -> None:
    """Check that ``x`` has last dimension ``size`` and (if concrete) finite entries."""
    if check_values(x, size, name) and not ops.all_finite(x):
        raise OutOfSupport(f"{name} contains NaN or infinite values")


def hidden_input(weights: Array, hidden_bias: Array, sigma: Array, v: Array) -> Array:
    """Logits of ``p(h | v)`` (eq. 14): ``a + (v / sigma)^T W``, shape ``(..., F)``."""
    return visible_to_hidden(v / sigma, weights) + hidden_bias


def visible_term(visible_bias: Array, sigma: Array, v: Array) -> Array:
    """``-sum_i (v_i - b_i)^2 / (2 sigma_i^2)``: the part of ``-E`` without ``h``."""
    return -(((v - visible_bias) / sigma) ** 2).sum(-1) / 2.0


def visible_mean(weights: Array, visible_bias: Array, sigma: Array, h: Array) -> Array:
    """``E[v | h] = b + sigma * (W h)`` (eq. 13)."""
    return visible_bias + sigma * hidden_to_visible(h, weights)


def log_visible_integral(
    weights: Array, visible_bias: Array, hidden_bias: Array, sigma: Array, h: Array
) -> Array:
    """``log int exp(-E(v, h)) dv`` for hidden states ``h`` of shape ``(S, F)``: ``(..., S)``."""
    t = h @ ops.transpose(weights)  # (..., S, D)
    b = visible_bias[..., None, :]
    s = sigma[..., None, :]
    d = int(weights.shape[-2])
    log_norm = (ops.broadcast_to(ops.log(sigma), sigma.shape[:-1] + (d,))).sum(-1) + d * (
        _HALF_LOG_2PI
    )
    quad = (b * t / s + t * t / 2.0).sum(-1)
    return quad + (h @ hidden_bias[..., :, None])[..., 0] + log_norm[..., None]


class GaussianRBMMethods(HarmoniumMethods):
    """The Gaussian-Bernoulli RBM as distribution methods, shared by both frontends."""

    _event_dims = {"weights": 2, "visible_bias": 1, "hidden_bias": 1, "sigma": 1}

    @classmethod
    def infer_shapes(cls, weights=(), visible_bias=(), hidden_bias=(), sigma=(), **_) -> tuple:
        """``(batch_shape, event_shape)`` for parameters of these shapes, without arrays."""
        shapes = {
            "weights": weights,
            "visible_bias": visible_bias,
            "hidden_bias": hidden_bias,
            "sigma": sigma,
        }
        return shapes_of(shapes, cls._event_dims, tuple(weights)[-2:-1])

    weights: Array
    visible_bias: Array
    hidden_bias: Array
    sigma: Array

    def _init_params(self, backend, weights, visible_bias, hidden_bias, sigma, steps, validate):
        if isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
            if ops.is_torch(weights) or ops.is_jax(weights):
                sigma = ops.zeros((1,), weights) + float(sigma)
        params = {
            "weights": weights,
            "visible_bias": visible_bias,
            "hidden_bias": hidden_bias,
            "sigma": sigma,
        }
        on = self._store_params(backend, params, steps, validate)
        batch_shape, d, _ = check_params(weights, visible_bias, hidden_bias, sigma, on)
        return batch_shape, (d,)

    def _check_support(self, value: Array, name: str) -> None:
        check_real(value, self.n_visible, name)

    # hooks of HarmoniumMethods
    def _hidden_input(self, p, v):
        return hidden_input(p[0], p[2], p[3], v)

    def _visible_term(self, p, v):
        return visible_term(p[1], p[3], v)

    def _log_visible_sum(self, p, h):
        return log_visible_integral(*p, h)

    def _visible_mean(self, p, h, like=None):
        return visible_mean(p[0], p[1], p[3], h)

    field_kind = "gaussian"

    def _sample_visible(self, key, p, h, beta, base, like=None, field=None):
        mean = visible_mean(p[0], p[1], p[3], h)
        if field is not None:  # N(mean, sigma^2) times the external factor (no tempering)
            m, var = combine_gaussian(mean, p[3] ** 2, field)
            return m + var**0.5 * ops.normal(key, tuple(m.shape), m)
        if base is None:
            return mean + p[3] * ops.normal(key, tuple(mean.shape), mean)
        # base(v)^(1-beta) * N(v; mean, sigma^2)^beta: precisions add
        b = temperature(beta)
        prec_model, prec_base = b / p[3] ** 2, (1.0 - b) / base.std**2
        prec = prec_model + prec_base
        m = (prec_model * mean + prec_base * base.mean) / prec
        return m + ops.normal(key, tuple(m.shape), m) / prec**0.5

    def visible_mean(self, hidden: Array) -> Array:
        """``E[v | h] = b + sigma (W h)`` (eq. 13), shape ``(..., n_visible)``."""

        check_binary(hidden, self.n_hidden, "hidden")
        return visible_mean(self.weights, self.visible_bias, self.sigma, hidden)

    def init_chain(self, key: Any, shape: tuple) -> Array:
        """Chains of full shape ``(..., n_visible)`` drawn from ``N(b, sigma^2)``."""
        b = ops.stop_gradient(self.visible_bias)
        s = ops.stop_gradient(self.sigma)
        return ops.broadcast_to(b, tuple(shape)) + s * ops.normal(key, tuple(shape), b)

    def ais_base(self, base: Any) -> GaussianBase:
        """``None`` -> ``N(b, sigma^2)`` (the model with its weights set to zero)."""
        if base is None:
            if self.visible_bias.ndim != 1 or self.sigma.ndim != 1:
                raise ValueError("AIS needs a Gaussian RBM without batch dimensions")
            std = ops.broadcast_to(self.sigma, (self.n_visible,))
            # the model's own parameters, checked when it was made: no reads per call
            return GaussianBase(
                ops.stop_gradient(self.visible_bias), ops.stop_gradient(std), check=False
            )
        return base

    def _check_ais_base(self, base: Any) -> None:
        if self.weights.ndim != 2 or self.visible_bias.ndim != 1 or self.hidden_bias.ndim != 1:
            raise ValueError("AIS needs a Gaussian RBM without batch dimensions in its parameters")
        if not isinstance(base, GaussianBase) or base.n_visible != self.n_visible:
            raise ValueError(
                f"base must be a GaussianBase over {self.n_visible} visible units "
                "(e.g. gaussian_base(train_data)), got "
                f"{type(base).__name__}"
            )
