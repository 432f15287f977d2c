"""Binarizing intensities in ``[0, 1]``: a fixed threshold or draw (:func:`binarize`) and a
fresh Bernoulli draw per epoch (:class:`StochasticBinarization`).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ebm_ppl.datasets.cache import (
    _check_choice,
    _check_int,
)

__all__ = [
    "StochasticBinarization",
    "binarize",
]


def _as_probabilities(name: str, x: Any) -> np.ndarray:
    """``x`` as a numpy array, checked to be real, finite and within ``[0, 1]``."""
    try:
        if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch, on any device
            x = x.detach().cpu().numpy()
        arr = np.asarray(x)
    except Exception as exc:
        raise TypeError(
            f"{name} must be array-like (numpy, a torch tensor, a JAX array, nested lists); "
            f"could not convert {type(x).__name__}: {exc}"
        ) from exc
    if arr.dtype == np.bool_:
        arr = arr.astype(np.float32)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers; got an array of dtype {arr.dtype}")
    if arr.size:
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite; it holds NaN or infinite values")
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi > 1:
            raise ValueError(
                f"{name} must lie in [0, 1] (probabilities / intensities); "
                f"got values in [{lo}, {hi}]"
            )
    return arr


def _bernoulli(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One Bernoulli draw of the same shape as ``p``, as float32 0/1."""
    u = rng.random(p.shape, dtype=np.float32)
    return (u < p).astype(np.float32)


def binarize(
    x: Any,
    method: str = "threshold",
    threshold: float = 0.5,
    seed: int | np.random.Generator | None = None,
) -> np.ndarray:
    """Binarize intensities in ``[0, 1]``.

    Args:
        x: array-like of any shape with finite values in ``[0, 1]``.
        method: ``"threshold"``: ``1`` where ``x > threshold``, else ``0``. ``"sample"``: one
            Bernoulli draw with success probabilities ``x`` (a fixed binarization, the same for
            the same ``seed``).
        threshold: the cut for ``method="threshold"``, a finite number.
        seed: randomness for ``method="sample"``: an int (non-negative), a
            ``numpy.random.Generator`` (advanced by the draw) or ``None`` (fresh OS entropy).
            Ignored by ``"threshold"``.

    Returns:
        float32 array of the same shape as ``x`` holding 0.0 and 1.0.
    """
    _check_choice("method", method, ("threshold", "sample"))
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"threshold must be a real number; got {type(threshold).__name__}")
    if not math.isfinite(float(threshold)):
        raise ValueError(f"threshold must be finite; got {threshold}")
    if not (seed is None or isinstance(seed, np.random.Generator)):
        seed = _check_int("seed", seed)
    arr = _as_probabilities("x", x)
    if method == "threshold":
        return (arr > threshold).astype(np.float32)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return _bernoulli(arr, rng)


class StochasticBinarization:
    """Dynamic binarization: a fresh Bernoulli draw of ``x`` for every epoch.

    A trainer accepts an instance in place of a fixed data array: it calls ``data(epoch)`` at
    the start of each epoch to get that epoch's binary data set, so the model sees a new
    binarization of the gray-level images every epoch (the usual "dynamically binarized MNIST"
    protocol), while a run stays reproducible: the draw depends only on ``(seed, epoch)``.

    ``data(epoch)`` equals ``binarize(x, "sample", seed=np.random.default_rng([seed, epoch]))``.

    Args:
        x: array-like of shape ``(n, ...)`` with finite values in ``[0, 1]`` (the Bernoulli
            probabilities, e.g. MNIST gray levels from :func:`load_mnist`). Stored as float32.
        seed: non-negative int.
    """

    def __init__(self, x: Any, seed: int = 0) -> None:
        arr = _as_probabilities("x", x)
        if arr.ndim < 1:
            raise ValueError("x must have at least one dimension (examples first); got a scalar")
        self.seed: int = _check_int("seed", seed)
        self.probs: np.ndarray = np.array(arr, dtype=np.float32)  # a private copy
        self.probs.setflags(write=False)

    def __call__(self, epoch: int) -> np.ndarray:
        """The binarization of epoch ``epoch``: float32 0/1 of shape :attr:`shape`.

        Deterministic given ``(seed, epoch)``; different epochs give independent draws.
        """
        epoch = _check_int("epoch", epoch)
        return _bernoulli(self.probs, np.random.default_rng([self.seed, epoch]))

    def __len__(self) -> int:
        """The number of examples, ``shape[0]``."""
        return int(self.probs.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of every epoch's array (that of ``x``)."""
        return tuple(self.probs.shape)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, seed={self.seed})"
