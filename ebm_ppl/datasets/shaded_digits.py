"""A documented synthetic benchmark for the deep Lambertian model: digit albedos on smooth
random surfaces under random lights.

Yale B (faces under many lights) is not available here, so this module makes a stand-in by
a deterministic, seeded process (``numpy.random.default_rng``):

- **albedo**: a digit image in ``[0, 1]``, block-averaged to ``shape`` ``(H, W)``, mapped to
  ``0.35 + 0.55 * digit`` (a grey surface with brighter strokes);
- **surface**: a height field ``z`` ``(H, W)`` (in pixel units): a dome of height
  uniform in ``[0.2, 0.35] * W`` and width ``0.35 W`` at a jittered centre, plus three
  Gaussian bumps of height uniform in ``[-0.1, 0.1] * W`` and width uniform in
  ``[0.2, 0.35] * W``: smooth and integrable by construction;
- **light**: a unit direction with polar angle uniform in ``[0, max_polar]`` (degrees from
  the viewing axis) and uniform azimuth, times ``strength``;
- **image**: ``albedo * max(0, n . l) + N(0, noise^2)``, rendered by the program's own
  functions (:func:`ebm_ppl.models.lambertian.render`, with the normals of
  :func:`~ebm_ppl.models.lambertian.normals_from_height`) on float64 CPU torch tensors, so
  the program is well specified for this data.

An *identity* is one (albedo, surface) pair seen under several lights, as a Yale B subject
is: :func:`make_identities` returns images ``(n_identities, n_lights, H*W)``.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike

from ebm_ppl.models import lambertian

__all__ = [
    "albedo_from_digits",
    "make_identities",
    "make_lights",
    "make_surfaces",
    "normals",
    "render",
]


def _check_shape(shape) -> tuple[int, int]:
    if not (isinstance(shape, tuple) and len(shape) == 2 and all(int(s) >= 2 for s in shape)):
        raise ValueError(f"shape must be (H, W) with H, W >= 2, got {shape!r}")
    return int(shape[0]), int(shape[1])


def albedo_from_digits(digits: np.ndarray, shape: tuple = (14, 14)) -> np.ndarray:
    """``0.35 + 0.55 * digit`` of 28x28 digits ``(n, 784)`` in ``[0, 1]``, block-averaged to
    ``shape`` (which must divide 28x28): ``(n, H*W)`` float32."""
    h, w = _check_shape(shape)
    x = np.asarray(digits, np.float32)
    if x.ndim != 2 or x.shape[1] != 784:
        raise ValueError(f"digits must have shape (n, 784), got {x.shape}")
    if 28 % h or 28 % w:
        raise ValueError(f"shape {shape} must divide 28x28")
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError("digits must be in [0, 1]")
    x = x.reshape(-1, h, 28 // h, w, 28 // w).mean((2, 4))
    return (0.35 + 0.55 * x).reshape(len(x), -1).astype(np.float32)


def make_surfaces(n: int, shape: tuple = (14, 14), seed: int = 0) -> np.ndarray:
    """``n`` smooth height fields ``(n, H, W)`` (see the module docstring)."""
    h, w = _check_shape(shape)
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(
        np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij"
    )
    out = np.zeros((n, h, w))
    for i in range(n):
        cy, cx = (h - 1) / 2 + rng.uniform(-0.1, 0.1) * h, (w - 1) / 2 + rng.uniform(-0.1, 0.1) * w
        z = (
            rng.uniform(0.2, 0.35)
            * w
            * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (0.35 * w) ** 2))
        )
        for _ in range(3):
            by, bx = rng.uniform(0, h), rng.uniform(0, w)
            s = rng.uniform(0.2, 0.35) * w
            z = z + rng.uniform(-0.1, 0.1) * w * np.exp(
                -((yy - by) ** 2 + (xx - bx) ** 2) / (2 * s**2)
            )
        out[i] = z
    return out.astype(np.float32)


def make_lights(n: int, max_polar: float = 60.0, strength: float = 1.0, seed: int = 0):
    """``n`` lights ``(n, 3)``: unit directions within ``max_polar`` degrees of the viewing
    axis ``(0, 0, 1)``, times ``strength``."""
    if not 0 <= max_polar < 90:
        raise ValueError(f"max_polar must be in [0, 90) degrees, got {max_polar!r}")
    rng = np.random.default_rng(seed)
    polar = np.deg2rad(rng.uniform(0, max_polar, n))
    az = rng.uniform(0, 2 * np.pi, n)
    d = np.stack([np.sin(polar) * np.cos(az), np.sin(polar) * np.sin(az), np.cos(polar)], -1)
    return (strength * d).astype(np.float32)


def _float64_tensor(x: ArrayLike) -> torch.Tensor:
    """``x`` as a float64 torch tensor on the CPU (a copy: the caller's array is never
    written to, and a read-only array is fine)."""
    return torch.from_numpy(np.array(x, dtype=np.float64))  # device: CPU data generator


def normals(z: ArrayLike) -> np.ndarray:
    """Unit normals ``(..., H*W, 3)`` (float64) of heights ``(..., H, W)``: the program's
    :func:`ebm_ppl.models.lambertian.normals_from_height` (forward differences, last
    row/column repeated), evaluated in float64."""
    return lambertian.normals_from_height(_float64_tensor(z)).cpu().numpy()


def render(albedo: ArrayLike, z: ArrayLike, light: ArrayLike) -> np.ndarray:
    """``albedo * max(0, n . l)`` ``(..., H*W)`` float32, for albedos ``(..., H*W)``, heights
    ``(..., H, W)`` and lights ``(..., 3)`` (broadcast against each other): the program's
    :func:`ebm_ppl.models.lambertian.render`, evaluated in float64."""
    clean = lambertian.render(_float64_tensor(albedo), _float64_tensor(z), _float64_tensor(light))
    return clean.cpu().numpy().astype(np.float32)


def make_identities(
    digits: np.ndarray,
    n_lights: int,
    shape: tuple = (14, 14),
    max_polar: float = 60.0,
    noise: float = 0.02,
    seed: int = 0,
) -> dict:
    """One identity per digit image: its albedo on its own surface, under ``n_lights``
    lights each. Returns ``images`` ``(n, n_lights, H*W)``, ``albedo`` ``(n, H*W)``,
    ``height`` ``(n, H, W)``, ``light`` ``(n, n_lights, 3)``."""
    albedo = albedo_from_digits(digits, shape)
    n = len(albedo)
    rng = np.random.default_rng(seed)
    z = make_surfaces(n, shape, seed=int(rng.integers(2**31)))
    lights = make_lights(n * n_lights, max_polar, seed=int(rng.integers(2**31)))
    lights = lights.reshape(n, n_lights, 3)
    clean = render(albedo[:, None], z[:, None], lights)
    images = clean + noise * rng.standard_normal(clean.shape).astype(np.float32)
    return {"images": images.astype(np.float32), "albedo": albedo, "height": z, "light": lights}
