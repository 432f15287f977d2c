"""Deterministic, documented synthetic occlusions for images (the robust-BM benchmark).

The slides' robust Boltzmann machine is evaluated on AR faces with sunglasses and scarves,
which are not available here. This module makes the digit analogue: every occluder is a
*structured* region (not independent pixels), drawn by a seeded process, in pixel space
``[0, 1]`` on ``(H, W)`` images:

- ``"sunglasses"``: a horizontal band across the upper-middle rows, 6-8 rows tall, its top
  row uniform in rows ``[0.22 H, 0.36 H]``, filled with ink (value 1): a solid bar.
- ``"scarf"``: the bottom rows from a start row uniform in ``[0.58 H, 0.68 H]``, filled with
  a texture: uniform noise in ``[0, 1]`` smoothed over 2x2 cells (so it is not pixel noise).
- ``"bars"``: 1-3 bars, each horizontal or vertical with probability 1/2, 2-3 pixels wide
  at a uniform position, filled with ink.
- ``"blocks"``: 1-2 axis-aligned rectangles with sides uniform in ``[0.25, 0.45]`` of the
  image size at uniform positions, filled with the texture of ``"scarf"``.

:func:`occlude` returns the occluded images and the true masks (1 where a pixel still shows
the clean image, the RoBM's ``s``). The same ``seed`` gives the same occlusions on every
machine (``numpy.random.default_rng``).
"""

from __future__ import annotations

import numpy as np

KINDS = ("sunglasses", "scarf", "bars", "blocks")

__all__ = ["KINDS", "occlude", "occlusion_masks"]


def _check(n: int, shape: tuple, kind: str) -> tuple[int, int]:
    if kind not in KINDS and kind != "mixed":
        raise ValueError(f"kind must be one of {KINDS + ('mixed',)}, got {kind!r}")
    if not (isinstance(shape, tuple) and len(shape) == 2 and all(int(s) >= 8 for s in shape)):
        raise ValueError(f"image_shape must be (H, W) with H, W >= 8, got {shape!r}")
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"the number of images must be a non-negative int, got {n!r}")
    return int(shape[0]), int(shape[1])


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    cells = rng.uniform(0.0, 1.0, size=((h + 1) // 2, (w + 1) // 2))
    return np.kron(cells, np.ones((2, 2)))[:h, :w]


def _one(rng: np.random.Generator, kind: str, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """One occluder: ``(covered, fill)``, boolean and float ``(h, w)``."""
    covered = np.zeros((h, w), dtype=bool)
    if kind == "sunglasses":
        top = int(rng.integers(round(0.22 * h), round(0.36 * h) + 1))
        covered[top : top + int(rng.integers(6, 9)) * h // 28] = True
        return covered, np.ones((h, w))
    if kind == "scarf":
        start = int(rng.integers(round(0.58 * h), round(0.68 * h) + 1))
        covered[start:] = True
        return covered, _texture(rng, h, w)
    if kind == "bars":
        for _ in range(int(rng.integers(1, 4))):
            width = int(rng.integers(2, 4))
            if rng.uniform() < 0.5:
                r = int(rng.integers(0, h - width + 1))
                covered[r : r + width] = True
            else:
                c = int(rng.integers(0, w - width + 1))
                covered[:, c : c + width] = True
        return covered, np.ones((h, w))
    for _ in range(int(rng.integers(1, 3))):  # blocks
        bh = int(round(rng.uniform(0.25, 0.45) * h))
        bw = int(round(rng.uniform(0.25, 0.45) * w))
        r = int(rng.integers(0, h - bh + 1))
        c = int(rng.integers(0, w - bw + 1))
        covered[r : r + bh, c : c + bw] = True
    return covered, _texture(rng, h, w)


def occlusion_masks(
    n: int, kind: str = "mixed", image_shape: tuple = (28, 28), seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` occluders of ``kind`` (or ``"mixed"``: each image's kind uniform over
    :data:`KINDS`): the masks ``(n, H*W)`` (float 0/1, 1 = pixel shows the clean image) and
    the occluders' fill values ``(n, H*W)`` in ``[0, 1]``."""
    h, w = _check(n, image_shape, kind)
    rng = np.random.default_rng(seed)
    masks = np.ones((n, h * w), dtype=np.float32)
    fills = np.zeros((n, h * w), dtype=np.float32)
    for i in range(n):
        k = KINDS[int(rng.integers(len(KINDS)))] if kind == "mixed" else kind
        covered, fill = _one(rng, k, h, w)
        masks[i] = ~covered.reshape(-1)
        fills[i] = fill.reshape(-1)
    return masks, fills


def occlude(
    images: np.ndarray, kind: str = "mixed", image_shape: tuple = (28, 28), seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Occlude ``images`` ``(n, H*W)`` in pixel space ``[0, 1]`` with :func:`occlusion_masks`
    of ``kind``: returns ``(occluded, masks)``, where ``occluded = mask * image + (1 - mask)
    * fill``."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 2:
        raise ValueError(f"images must have shape (n, H*W), got {images.shape}")
    h, w = _check(images.shape[0], image_shape, kind)
    if images.shape[1] != h * w:
        raise ValueError(
            f"images have {images.shape[1]} pixels; image_shape {image_shape} needs {h * w}"
        )
    if images.size and (images.min() < 0.0 or images.max() > 1.0):
        raise ValueError("images must be in pixel space [0, 1]")
    masks, fills = occlusion_masks(images.shape[0], kind, image_shape, seed)
    return masks * images + (1.0 - masks) * fills, masks
