"""Gaussian-Bernoulli RBM (eq. 11-14) against exact oracles, in both backends.

Oracles: log Z by 2-D quadrature and by brute force over h in float64; conditionals from the
joint energy; moments of the exact mixture ``p(v) = sum_h p(h) N(b + sigma W h, sigma^2)``.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import exact_log_z_gaussian as exact_log_z
from conftest import exact_mixture, gparams, hidden_states

from ebm_ppl.io import load_model, save_model


def make(backend, w, b, c, s, **kw):
    return backend.GaussianRBM(*(backend.array(a) for a in (w, b, c, s)), **kw)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_log_partition_matches_quadrature(backend, seed):
    rng = np.random.default_rng(seed)
    w, b, c, s = gparams(rng, 2, 3)
    d = make(backend, w, b, c, s)
    g = np.linspace(-20, 20, 1601)
    xx, yy = np.meshgrid(g, g)
    grid = np.stack([xx.ravel(), yy.ravel()], 1)
    lp = backend.np(d.log_prob(backend.array(grid))).astype(np.float64)
    quad = lp.max() + np.log(np.exp(lp - lp.max()).sum() * (g[1] - g[0]) ** 2)
    assert float(backend.np(d.log_partition())) == pytest.approx(quad, abs=2e-4)
    assert float(backend.np(d.log_partition())) == pytest.approx(exact_log_z(w, b, c, s), abs=1e-4)


def test_free_energy_and_conditionals_from_the_joint(backend):
    rng = np.random.default_rng(3)
    w, b, c, s = gparams(rng, 5, 4)
    d = make(backend, w, b, c, s)
    v = rng.standard_normal((7, 5)).astype(np.float32)
    hs = hidden_states(4).astype(np.float32)
    # E(v, h) for every (v, h) pair: (7, 16)
    e = backend.np(d.energy(backend.array(v[:, None, :]), backend.array(hs[None, :, :])))
    e = e.astype(np.float64)
    # -F(v) = log sum_h exp(-E(v, h))
    m = (-e).max(1, keepdims=True)
    neg_f = (m + np.log(np.exp(-e - m).sum(1, keepdims=True)))[:, 0]
    np.testing.assert_allclose(backend.np(d.log_prob(backend.array(v))), neg_f, rtol=1e-5)
    # p(h_j = 1 | v) (eq. 14) from the joint
    post = np.exp(-e - m) / np.exp(-e - m).sum(1, keepdims=True)
    np.testing.assert_allclose(
        backend.np(d.hidden_probs(backend.array(v))), post @ hs, rtol=1e-4, atol=1e-6
    )
    # p(v | h) (eq. 13): E(v, h) - E(mean, h) = sum (v - mean)^2 / (2 sigma^2)
    h = backend.array(hs[5:6])
    mean = backend.np(d.visible_mean(h))
    np.testing.assert_allclose(mean[0], b + s * (w @ hs[5]), rtol=1e-5, atol=1e-6)
    e_v = backend.np(d.energy(backend.array(v), h)).astype(np.float64)
    e_m = backend.np(d.energy(backend.array(mean), h)).astype(np.float64)
    np.testing.assert_allclose(e_v - e_m, (((v - mean) / s) ** 2).sum(1) / 2, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_gibbs_chains_reproduce_exact_moments(backend, seed):
    rng = np.random.default_rng(seed)
    w, b, c, s = gparams(rng, 3, 4, scale=0.6)
    d = make(backend, w, b, c, s, num_gibbs_steps=60)
    n = 4000
    key = backend.key(seed)
    v = backend.np(d.sample(key, (n,)) if backend.name == "jax" else d.sample((n,)))
    ph, means = exact_mixture(w, b, c, s)
    mu = ph @ means
    second = ph @ (means**2) + s.astype(np.float64) ** 2
    sd = np.sqrt(second - mu**2)
    # independent chains: the sample mean has standard error sd / sqrt(n); 5 of them over
    # three coordinates keeps false alarms below 1e-5
    np.testing.assert_array_less(np.abs(v.mean(0) - mu), 5 * sd / np.sqrt(n))
    # E[v^2]: the sample variance of v^2 bounded by the fourth moment
    fourth = ph @ (means**4 + 6 * means**2 * s**2 + 3 * s**4)
    se2 = np.sqrt((fourth - second**2) / n)
    np.testing.assert_array_less(np.abs((v**2).mean(0) - second), 5 * se2)


@pytest.mark.parametrize("seed", [0, 1])
def test_ais_brackets_exact_log_z(backend, seed):
    from ebm_ppl.numpyro import AIS as JAIS
    from ebm_ppl.pyro import AIS as TAIS

    rng = np.random.default_rng(10 + seed)
    w, b, c, s = gparams(rng, 20, 10, scale=0.5)
    d = make(backend, w, b, c, s)
    exact = exact_log_z(w, b, c, s)
    kw = dict(betas=np.linspace(0, 1, 2001), num_runs=300, progress_bar=False)
    if backend.name == "torch":
        backend.key(seed)
        r = TAIS(d, **kw)
    else:
        r = JAIS(d, rng_key=backend.key(seed), **kw)
    assert abs(r.log_z - exact) < 3 * r.log_z_stderr + 1e-3, (r.log_z, r.log_z_stderr, exact)
    assert r.log_z_stderr < 0.05


def test_ais_with_a_gaussian_base_fitted_to_data(backend):
    from ebm_ppl.models.base import gaussian_base
    from ebm_ppl.numpyro import AIS as JAIS
    from ebm_ppl.pyro import AIS as TAIS

    rng = np.random.default_rng(5)
    w, b, c, s = gparams(rng, 12, 8, scale=0.5)
    d = make(backend, w, b, c, s)
    data = backend.array(rng.standard_normal((500, 12)) * 1.5 + 0.3)
    base = gaussian_base(data)
    kw = dict(base=base, betas=np.linspace(0, 1, 2001), num_runs=300, progress_bar=False)
    if backend.name == "torch":
        backend.key(0)
        r = TAIS(d, **kw)
    else:
        r = JAIS(d, rng_key=backend.key(0), **kw)
    exact = exact_log_z(w, b, c, s)
    assert abs(r.log_z - exact) < 3 * r.log_z_stderr + 1e-3, (r.log_z, r.log_z_stderr, exact)
    wrong = gaussian_base(backend.array(rng.standard_normal((10, 3))))
    with pytest.raises(ValueError, match="GaussianBase"):
        if backend.name == "torch":
            TAIS(d, base=wrong, num_runs=2)
        else:
            JAIS(d, base=wrong, num_runs=2, rng_key=backend.key(0))


def test_backends_agree():
    from conftest import Backend

    rng = np.random.default_rng(7)
    w, b, c, s = gparams(rng, 6, 5)
    v = rng.standard_normal((4, 6)).astype(np.float32)
    h = (rng.random((4, 5)) < 0.5).astype(np.float32)
    out = {}
    for name in ("torch", "jax"):
        be = Backend(name)
        d = make(be, w, b, c, s)
        x = be.array(v)
        out[name] = [
            be.np(d.log_prob(x)),
            be.np(d.hidden_probs(x)),
            be.np(d.visible_mean(be.array(h))),
            be.np(d.energy(x, be.array(h))),
            be.np(d.log_partition()),
        ]
    for a, bb in zip(out["torch"], out["jax"]):
        np.testing.assert_allclose(a, bb, rtol=1e-5, atol=1e-5)


def test_sigma_scalar_or_per_unit_and_expand(backend):
    rng = np.random.default_rng(8)
    w, b, c, _ = gparams(rng, 4, 3)
    one = make(backend, w, b, c, np.full(4, 0.7, np.float32))
    scalar = backend.GaussianRBM(*(backend.array(a) for a in (w, b, c)), sigma=0.7)
    x = backend.array(rng.standard_normal((3, 4)))
    np.testing.assert_allclose(backend.np(one.log_prob(x)), backend.np(scalar.log_prob(x)), 1e-6)
    np.testing.assert_allclose(
        backend.np(one.log_partition()), backend.np(scalar.log_partition()), 1e-6
    )
    e = scalar.expand((5, 3))
    assert tuple(e.batch_shape) == (5, 3) and tuple(e.log_prob(x).shape) == (5, 3)
    assert tuple(e.unexpanded().batch_shape) == ()


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(s=np.array([1.0, -1.0, 1.0, 1.0], np.float32)), "sigma must be > 0"),
        (dict(s=np.zeros(4, np.float32)), "sigma must be > 0"),
        (dict(s=np.ones(3, np.float32)), "sigma must have shape"),
        (dict(b=np.ones(3, np.float32)), "visible_bias must have shape"),
        (dict(w=np.full((4, 3), np.nan, np.float32)), "weights contains NaN"),
    ],
)
def test_bad_parameters(backend, change, match):
    rng = np.random.default_rng(0)
    w, b, c, s = gparams(rng, 4, 3)
    args = dict(w=w, b=b, c=c, s=s) | change
    with pytest.raises(ValueError, match=match):
        make(backend, args["w"], args["b"], args["c"], args["s"])


def test_bad_values(backend):
    rng = np.random.default_rng(0)
    d = make(backend, *gparams(rng, 4, 3))
    with backend.out_of_support("NaN"):
        d.log_prob(backend.array([[0.0, np.nan, 1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 4\)"):
        d.log_prob(backend.array([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="log_partition enumerates the hidden layer"):
        make(backend, *gparams(rng, 4, 21)).log_partition()


def test_save_load_round_trip(backend, tmp_path):
    rng = np.random.default_rng(9)
    w, b, c, s = gparams(rng, 5, 3)
    d = make(backend, w, b, c, s, num_gibbs_steps=7)
    path = save_model(tmp_path / "g", d, note="x")
    for target in ("torch", "jax"):
        back = load_model(path, backend=target)
        assert type(back).__name__ == "GaussianRBM" and back.num_gibbs_steps == 7
        from ebm_ppl.ops import to_numpy

        np.testing.assert_allclose(to_numpy(back.sigma), s)
        np.testing.assert_allclose(to_numpy(back.log_partition()), exact_log_z(w, b, c, s), 1e-5)
