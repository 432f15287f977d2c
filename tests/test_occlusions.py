"""The synthetic occlusion generator: deterministic per seed, structured, documented."""

from __future__ import annotations

import numpy as np
import pytest

from ebm_ppl.datasets.occlusions import KINDS, occlude, occlusion_masks


@pytest.mark.parametrize("kind", KINDS + ("mixed",))
def test_deterministic_per_seed(kind):
    a = occlusion_masks(50, kind, seed=3)
    b = occlusion_masks(50, kind, seed=3)
    c = occlusion_masks(50, kind, seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_shapes_of_each_kind():
    """Sunglasses: whole rows in the upper middle; scarf: the bottom rows; bars: whole rows
    or columns; blocks: rectangles. Covered fractions in the documented ranges."""
    m, _ = occlusion_masks(200, "sunglasses", seed=0)
    rows = (1 - m.reshape(-1, 28, 28)).all(-1)  # fully covered rows
    assert ((1 - m.reshape(-1, 28, 28)).any(-1) == rows).all()  # only whole rows
    tops = rows.argmax(-1)
    assert tops.min() >= 6 and tops.max() <= 10
    assert set(rows.sum(-1)) <= {6, 7, 8}
    m, _ = occlusion_masks(200, "scarf", seed=0)
    rows = (1 - m.reshape(-1, 28, 28)).all(-1)
    assert rows[:, -1].all() and ((1 - m.reshape(-1, 28, 28)).any(-1) == rows).all()
    assert 9 <= rows.sum(-1).min() and rows.sum(-1).max() <= 12
    m, _ = occlusion_masks(200, "blocks", seed=0)
    frac = 1 - m.mean(-1)
    assert 0.05 < frac.min() and frac.max() < 0.45
    m, f = occlusion_masks(200, "bars", seed=0)
    cov = (1 - m).reshape(-1, 28, 28).astype(bool)
    for c in cov[:20]:  # every covered pixel lies on a fully covered row or column
        assert (c <= (c.all(1)[:, None] | c.all(0)[None, :])).all()
    assert np.all(f[(1 - m).astype(bool)] == 1.0)


def test_occlude_combines_image_mask_and_fill():
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(30, 784)).astype(np.float32)
    occ, masks = occlude(images, "mixed", seed=5)
    m2, fills = occlusion_masks(30, "mixed", seed=5)
    np.testing.assert_array_equal(masks, m2)
    np.testing.assert_allclose(occ, masks * images + (1 - masks) * fills)
    assert occ.min() >= 0 and occ.max() <= 1
    small, _ = occlude(images[:, :64], "scarf", image_shape=(8, 8), seed=0)
    assert small.shape == (30, 64)


def test_bad_input():
    with pytest.raises(ValueError, match="kind"):
        occlusion_masks(3, "hat")
    with pytest.raises(ValueError, match="image_shape"):
        occlusion_masks(3, "scarf", image_shape=(4, 4))
    with pytest.raises(ValueError, match="pixel space"):
        occlude(np.full((2, 784), 2.0), "scarf")
    with pytest.raises(ValueError, match="pixels"):
        occlude(np.zeros((2, 100)), "scarf")
