"""Tractable base distributions for annealed importance sampling.

The base-rate model of Salakhutdinov & Murray (2008) is an RBM with zero weights: its visible
units are independent Bernoullis, so it can be sampled exactly and its partition function is
known in closed form. The uniform model is the special case with zero logits.
:class:`GaussianBase` plays the same role for real-valued visible units. The bases of the
replicated softmax (``MultinomialBase``) and of the categorical RBM (``CategoricalBase``) live
with their models, since they share those models' count and one-hot helpers.
"""

from __future__ import annotations

import math
from typing import Any

from ebm_ppl import ops
from ebm_ppl.ops import Array


class TractableBase:
    """What the tractable ends of AIS paths share, declared by ``_fields``: the names of
    their arrays (also their JAX pytree children, in that order); ``n_visible`` is the leading
    size of the first. A base adds ``log_prob(value)``, ``log_partition()`` and
    ``sample(key, shape)``."""

    _fields: tuple[str, ...] = ("logits",)

    @property
    def n_visible(self) -> int:
        return int(getattr(self, self._fields[0]).shape[0])

    def tree_flatten(self):  # a JAX pytree, so it can cross jit boundaries
        return tuple(getattr(self, name) for name in self._fields), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = cls.__new__(cls)
        for name, child in zip(cls._fields, children):
            setattr(obj, name, child)
        return obj


class BernoulliBase(TractableBase):
    """Independent Bernoulli visible units with ``logits`` of shape ``(D,)``.

    ``log_prob(v) = logits . v`` (unnormalized) and ``log_partition() = sum_i softplus(logits_i)``,
    so that ``log_prob(v) - log_partition()`` is the exact log-probability. ``check=False``
    skips the finiteness check (which reads the values), for logits known to be finite.
    """

    def __init__(self, logits: Array, check: bool = True) -> None:
        if not (ops.is_torch(logits) or ops.is_jax(logits)):
            raise TypeError(
                f"logits must be a torch.Tensor or a JAX array, got {type(logits).__name__}"
            )
        if logits.ndim != 1 or logits.shape[0] == 0:
            raise ValueError(f"logits must have shape (n_visible,), got {tuple(logits.shape)}")
        if check and ops.is_concrete(logits) and not ops.all_finite(logits):
            raise ValueError("logits contains NaN or infinite values")
        self.logits = logits

    def log_prob(self, value: Array) -> Array:
        """Unnormalized ``logits . v``, shape ``value.shape[:-1]``."""
        return (value * self.logits).sum(-1)

    def log_partition(self) -> Array:
        """Exact ``log Z = sum_i log(1 + exp(logits_i))``."""
        return ops.softplus(self.logits).sum()

    def sample(self, key: Any, shape: tuple) -> Array:
        """Exact independent draws of shape ``shape + (D,)``."""
        probs = ops.broadcast_to(ops.sigmoid(self.logits), tuple(shape) + (self.n_visible,))
        return ops.bernoulli(key, probs)


def uniform_base(n_visible: int, like: Array) -> BernoulliBase:
    """The uniform distribution over ``{0,1}^n_visible`` (logits 0, ``log Z = D log 2``),
    in the backend and dtype of ``like``."""
    if not isinstance(n_visible, int) or n_visible < 1:
        raise ValueError(f"n_visible must be a positive int, got {n_visible!r}")
    return BernoulliBase(ops.zeros((n_visible,), like), check=False)


def base_rate(data: Array, pseudocount: float = 1.0) -> BernoulliBase:
    """The base-rate model: logits = smoothed log-odds of the pixel means of ``data``.

    ``p_i = (sum_n v_ni + pseudocount) / (N + 2 pseudocount)``; ``data`` is ``(N, D)`` binary
    (torch or JAX). This is the AIS starting point of Salakhutdinov & Murray (2008).
    """
    if not (ops.is_torch(data) or ops.is_jax(data)):
        raise TypeError(f"data must be a torch.Tensor or a JAX array, got {type(data).__name__}")
    if data.ndim != 2 or data.shape[0] == 0:
        raise ValueError(
            f"data must have shape (n_data, n_visible) with n_data > 0, got {tuple(data.shape)}"
        )
    if not pseudocount > 0:
        raise ValueError(f"pseudocount must be > 0, got {pseudocount}")
    n = data.shape[0]
    p = (data.sum(0) + pseudocount) / (n + 2.0 * pseudocount)
    if ops.is_torch(data):
        logits = (p.log() - (-p).log1p()).to(data.dtype)
    else:
        # lazy: keeps this module free of jax until that backend is used
        import jax.numpy as jnp

        logits = (jnp.log(p) - jnp.log1p(-p)).astype(data.dtype)
    return BernoulliBase(logits)


class GaussianBase(TractableBase):
    """Independent Gaussian visible units ``N(mean, std^2)``, shapes ``(D,)``: the tractable
    end of the AIS path for real-valued models (``log Z`` exact, exact samples).
    ``check=False`` skips the checks of the values (which read them), for parameters known
    to be finite with ``std > 0``."""

    def __init__(self, mean: Array, std: Array, check: bool = True) -> None:
        for name, x in (("mean", mean), ("std", std)):
            if not (ops.is_torch(x) or ops.is_jax(x)):
                raise TypeError(f"{name} must be a torch.Tensor or a JAX array")
            if x.ndim != 1 or x.shape[0] == 0:
                raise ValueError(f"{name} must have shape (n_visible,), got {tuple(x.shape)}")
        if mean.shape != std.shape:
            raise ValueError(f"mean {tuple(mean.shape)} and std {tuple(std.shape)} differ")
        for name, x in (("mean", mean), ("std", std)):
            if check and ops.is_concrete(x) and not ops.all_finite(x):
                raise ValueError(f"{name} contains NaN or infinite values")
        if check and ops.is_concrete(std) and not bool((std > 0).all()):
            raise ValueError("std must be > 0")
        self.mean, self.std = mean, std

    _fields = ("mean", "std")

    def log_prob(self, value: Array) -> Array:
        """Unnormalized ``-sum_i (v_i - mean_i)^2 / (2 std_i^2)``, shape ``value.shape[:-1]``."""
        return -(((value - self.mean) / self.std) ** 2).sum(-1) / 2.0

    def log_partition(self) -> Array:
        """``sum_i log(sqrt(2 pi) std_i)``."""
        return ops.log(self.std).sum() + self.n_visible * 0.5 * math.log(2.0 * math.pi)

    def sample(self, key: Any, shape: tuple) -> Array:
        """Exact draws of shape ``shape + (D,)``."""
        z = ops.normal(key, tuple(shape) + (self.n_visible,), self.mean)
        return self.mean + self.std * z


def gaussian_base(data: Array, min_std: float = 1e-2) -> GaussianBase:
    """An AIS base fitted to ``data`` ``(N, D)``: per-unit mean and standard deviation
    (floored at ``min_std``, so constant pixels stay proper)."""
    if not (ops.is_torch(data) or ops.is_jax(data)):
        raise TypeError(f"data must be a torch.Tensor or a JAX array, got {type(data).__name__}")
    if data.ndim != 2 or data.shape[0] < 2:
        raise ValueError(
            f"data must have shape (n_data, n_visible) with n_data >= 2, got {tuple(data.shape)}"
        )
    if not min_std > 0:
        raise ValueError(f"min_std must be > 0, got {min_std}")
    mean = data.mean(0)
    std = ((data - mean) ** 2).mean(0) ** 0.5
    return GaussianBase(mean, ops.where(std > min_std, std, ops.zeros_like(std) + min_std))


def register_pytree(*more: type) -> None:
    """Make the base classes of this module, and the classes ``more`` (the bases other model
    modules define), JAX pytrees; ``ebm_ppl.numpyro`` calls it with all of them."""
    # lazy: keeps this module free of jax until that backend is used
    import jax

    for cls in (BernoulliBase, GaussianBase, *more):
        try:
            jax.tree_util.register_pytree_node_class(cls)
        except ValueError:  # already registered
            pass
