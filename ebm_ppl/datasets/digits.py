"""scikit-learn's 8x8 handwritten digits (no download)."""

from __future__ import annotations

import numbers

import numpy as np

from ebm_ppl.datasets.cache import (
    _check_choice,
    _check_int,
)

__all__ = [
    "load_digits",
]


def load_digits(
    split: str = "all", test_size: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 handwritten digits (1797 images, no download needed).

    Args:
        split: ``"all"``, ``"train"`` or ``"test"``.
        test_size: fraction of the images in the test split, in ``(0, 1)``.
        seed: seed of the permutation that splits the data. The test split is the first
            ``round(test_size * n)`` images of ``np.random.default_rng(seed).permutation(n)``,
            the train split the rest (both in permutation order). ``split="all"`` returns the
            images in their original order and ignores ``test_size`` and ``seed``.

    Returns:
        ``(x, y)``: ``x`` float32 of shape ``(n, 64)``, intensities divided by 16 so they lie in
        ``[0, 1]``; ``y`` int64 of shape ``(n,)``, the digit 0-9. ``n`` is 1797 for ``"all"``.
    """
    _check_choice("split", split, ("all", "train", "test"))
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real):
        raise TypeError(f"test_size must be a float in (0, 1); got {type(test_size).__name__}")
    test_size = float(test_size)
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be a float in (0, 1); got {test_size}")
    seed = _check_int("seed", seed)

    # lazy: optional heavy dependency (sklearn), loaded only when needed
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    x = (np.asarray(bunch.data, dtype=np.float64) / 16.0).astype(np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    if split == "all":
        return x, y

    n = x.shape[0]
    n_test = round(test_size * n)
    if n_test < 1 or n_test > n - 1:
        raise ValueError(
            f"test_size={test_size} leaves an empty split (round(test_size * {n}) = {n_test}); "
            f"choose test_size so that the test split has between 1 and {n - 1} images"
        )
    perm = np.random.default_rng(seed).permutation(n)
    idx = perm[:n_test] if split == "test" else perm[n_test:]
    return x[idx], y[idx]
