"""The shaded-digits generator renders with the deep Lambertian model's own functions; here
it is checked against an independent numpy rendering (the formula it used before)."""

from __future__ import annotations

import numpy as np

from ebm_ppl.datasets.shaded_digits import make_identities, make_lights, make_surfaces, normals
from ebm_ppl.datasets.shaded_digits import render as render_shaded


def numpy_normals(z: np.ndarray) -> np.ndarray:
    """Forward differences, last row/column repeated, ``(-dx, -dy, 1)`` normalised."""
    z = np.asarray(z, np.float64)
    dx = np.concatenate([np.diff(z, axis=-1), np.zeros_like(z[..., :, -1:])], -1)
    dy = np.concatenate([np.diff(z, axis=-2), np.zeros_like(z[..., -1:, :])], -2)
    n = np.stack([-dx, -dy, np.ones_like(z)], -1)
    n = n / np.linalg.norm(n, axis=-1, keepdims=True)
    return n.reshape(z.shape[:-2] + (-1, 3))


def test_normals_and_render_match_a_numpy_rendering():
    z = 3.0 * make_surfaces(6, shape=(7, 9), seed=1)
    light = make_lights(6, max_polar=85.0, strength=1.3, seed=2)
    albedo = np.random.default_rng(3).random((6, 63)).astype(np.float32)
    n = normals(z)
    assert n.dtype == np.float64 and n.shape == (6, 63, 3)
    np.testing.assert_allclose(n, numpy_normals(z), rtol=0, atol=1e-14)
    dot = (numpy_normals(z) * light.astype(np.float64)[:, None, :]).sum(-1)
    expected = (albedo * np.maximum(dot, 0.0)).astype(np.float32)
    image = render_shaded(albedo, z, light)
    assert image.dtype == np.float32 and image.shape == (6, 63)
    np.testing.assert_allclose(image, expected, rtol=1e-6, atol=1e-7)


def test_make_identities_is_seeded_and_read_only_input_is_fine():
    digits = np.random.default_rng(0).random((4, 784)).astype(np.float32)
    digits.setflags(write=False)
    a, b = make_identities(digits, 3, seed=5), make_identities(digits, 3, seed=5)
    for key in ("images", "albedo", "height", "light"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["images"].shape == (4, 3, 196) and a["images"].dtype == np.float32
