"""``exact_sample``: independent exact draws of enumerable energy models (the auxiliary
draws of the exchange algorithm), against exact probabilities (chi-square, several seeds)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import all_states, chi2_pvalue, random_params, state_index


def _visible_probs(w, b, c):
    """p(v) from the free energy of every visible state (float64)."""
    vs = all_states(w.shape[0]).astype(np.float64)
    lp = vs @ b + np.logaddexp(0, vs @ w.astype(np.float64) + c).sum(1)
    p = np.exp(lp - lp.max())
    return p / p.sum()


def _mod(backend):
    from ebm_ppl import numpyro as en
    from ebm_ppl import pyro as ep

    return ep if backend.name == "torch" else en


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("shape", [(5, 3), (4, 22)])  # hidden enumerated / visible enumerated
def test_rbm_exact_sample_frequencies(backend, seed, shape):
    w, b, c = random_params(np.random.default_rng(seed), *shape, scale=0.8)
    rbm = backend.RBM(backend.array(w), backend.array(b), backend.array(c))
    x = backend.np(rbm.exact_sample(backend.key(seed), (20000,)))
    assert x.shape == (20000, shape[0])
    counts = np.bincount(state_index(x), minlength=2 ** shape[0])
    assert chi2_pvalue(counts, _visible_probs(w, b, c)) > 1e-4


def test_rbm_exact_sample_batch_shape(backend):
    w, b, c = random_params(np.random.default_rng(3), 3, 2)
    cs = np.stack([c, c - 3.0])
    rbm = backend.RBM(backend.array(w), backend.array(b), backend.array(cs)).expand((4, 2))
    x = backend.np(rbm.exact_sample(backend.key(0), (5000,)))
    assert x.shape == (5000, 4, 2, 3)
    for j in range(2):
        counts = np.bincount(state_index(x[:, :, j].reshape(-1, 3)), minlength=8)
        assert chi2_pvalue(counts, _visible_probs(w, b, cs[j])) > 1e-4


@pytest.mark.parametrize("seed", [0, 1])
def test_dbm_exact_sample_frequencies(backend, seed):
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=s).astype(np.float32) for s in [(3, 2), (2, 2)]]
    bs = [rng.normal(size=n).astype(np.float32) for n in (3, 2, 2)]
    dbm = _mod(backend).DBM([backend.array(w) for w in ws], [backend.array(b) for b in bs])
    states = all_states(7)
    lp = backend.np(dbm.log_prob(backend.array(states))).astype(np.float64)
    p = np.exp(lp - lp.max())
    x = backend.np(dbm.exact_sample(backend.key(seed), (20000,)))
    counts = np.bincount(state_index(x), minlength=128)
    assert chi2_pvalue(counts, p / p.sum()) > 1e-4


def test_gaussian_rbm_exact_sample_moments(backend):
    """Mean of v: sum_h p(h) (b + sigma W h), with p(h) from the enumerated marginal."""
    rng = np.random.default_rng(2)
    w = (0.8 * rng.standard_normal((3, 4))).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    c = (0.5 * rng.standard_normal(4)).astype(np.float32)
    sigma = 0.7
    g = backend.GaussianRBM(backend.array(w), backend.array(b), backend.array(c), sigma)
    hs = all_states(4).astype(np.float64)
    # p(h) from the model's own integral over v (its exactness is tested in test_gaussian_rbm)
    lw = backend.np(g._log_visible_sum(g.params, backend.array(hs))).astype(np.float64)
    ph = np.exp(lw - lw.max())
    ph /= ph.sum()
    mean = backend.np(g._visible_mean(g.params, backend.array(hs))).astype(np.float64)
    exact = (ph[:, None] * mean).sum(0)
    x = backend.np(g.exact_sample(backend.key(5), (40000,))).astype(np.float64)
    se = x.std(0) / np.sqrt(len(x))
    assert np.all(np.abs(x.mean(0) - exact) < 5 * se)


def test_exact_sample_refuses_large_models(backend):
    w = backend.array(np.zeros((25, 22), np.float32))
    rbm = backend.RBM(w, backend.array(np.zeros(25)), backend.array(np.zeros(22)))
    with pytest.raises(ValueError, match="block Gibbs"):
        rbm.exact_sample(backend.key(0), (2,))
