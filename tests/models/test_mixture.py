"""Mixture of Bernoullis (the MNIST table's baseline): exact oracles, EM, both PPL programs.

The oracles are independent of :mod:`ebm_ppl.models.mixture`: brute-force products over
pixels in float64 numpy, and the host PPLs' own enumeration (Pyro's ``TraceEnum_ELBO``) and
mixture distributions (``MixtureSameFamily``).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from conftest import all_states
from scipy.special import logsumexp, softmax

import ebm_ppl.numpyro as npf
import ebm_ppl.pyro as ppf
from ebm_ppl.models import mixture
from ebm_ppl.ops import to_numpy

FRONTENDS = {"torch": ppf, "jax": npf}


def random_mixture(rng, k, d):
    pi = rng.dirichlet(np.ones(k)).astype(np.float32)
    mu = rng.uniform(0.05, 0.95, (k, d)).astype(np.float32)
    return pi, mu


def sample_data(rng, pi, mu, n):
    z = rng.choice(len(pi), size=n, p=pi / pi.sum())
    return (rng.random((n, mu.shape[1])) < mu[z]).astype(np.float32)


def closed_form(x, pi, mu):
    """(N, K) log p(x_n, z_n = k) in float64 numpy."""
    x, pi, mu = (np.asarray(a, np.float64) for a in (x, pi, mu))
    return np.log(pi) + x @ np.log(mu).T + (1 - x) @ np.log1p(-mu).T


def brute_force(x, pi, mu):
    """log p(x_n) by explicit sums of products over components and pixels (float64)."""
    out = []
    for row in np.asarray(x, np.float64):
        total = 0.0
        for k in range(len(pi)):
            p = float(pi[k])
            for d, v in enumerate(row):
                p *= float(mu[k, d]) if v == 1 else 1.0 - float(mu[k, d])
            total += p
        out.append(math.log(total))
    return np.array(out)


# ---- the exact log-likelihood ------------------------------------------------------------


def test_log_likelihood_is_brute_force_enumeration_and_normalised(backend):
    rng = np.random.default_rng(0)
    pi, mu = random_mixture(rng, 3, 4)
    x = all_states(4)  # every binary image: the probabilities must sum to one
    ll = backend.np(
        FRONTENDS[backend.name].bernoulli_mixture_log_likelihood(
            backend.array(x), backend.array(pi), backend.array(mu), batch_size=6
        )
    )
    np.testing.assert_allclose(ll, brute_force(x, pi, mu), rtol=1e-5, atol=1e-5)
    assert abs(logsumexp(ll.astype(np.float64))) < 1e-5


def test_program_log_density_is_the_closed_form_marginal():
    """The programs are the model: Pyro's TraceEnum_ELBO and NumPyro's enumerated log
    density give the exact marginal log-likelihood, their per-assignment log joints are the
    closed form's, and so is the host's own MixtureSameFamily."""
    import jax.numpy as jnp
    import numpyro.distributions as ndist
    import pyro.distributions as pdist
    import torch
    from pyro import poutine
    from pyro.infer import TraceEnum_ELBO

    rng = np.random.default_rng(1)
    pi, mu = random_mixture(rng, 4, 6)
    x = sample_data(rng, pi, mu, 37)
    joint = closed_form(x, pi, mu)
    exact = logsumexp(joint, axis=1).sum()

    for fe in (ppf, npf):
        assert float(fe.bernoulli_mixture_log_density(x, pi, mu)) == pytest.approx(exact, rel=1e-5)
        lj = to_numpy(fe.bernoulli_mixture_log_joint(x, pi, mu))
        np.testing.assert_allclose(lj, joint, rtol=1e-5, atol=1e-4)

    # Pyro's enumerated posterior of z (compute_marginals) is EM's responsibilities
    model = poutine.substitute(
        ppf.bernoulli_mixture, data={"pi": torch.tensor(pi), "mu": torch.tensor(mu)}
    )
    marg = TraceEnum_ELBO(max_plate_nesting=1).compute_marginals(
        model, lambda *a, **k: None, torch.tensor(x), 4
    )
    np.testing.assert_allclose(marg["z"].probs.numpy(), softmax(joint, axis=1), atol=1e-5)

    # the hosts' own mixture distributions: an independent route to the marginal
    t = pdist.MixtureSameFamily(
        pdist.Categorical(torch.tensor(pi)), pdist.Bernoulli(torch.tensor(mu)).to_event(1)
    )
    j = ndist.MixtureSameFamily(
        ndist.Categorical(jnp.asarray(pi)), ndist.Bernoulli(probs=jnp.asarray(mu)).to_event(1)
    )
    assert float(t.log_prob(torch.tensor(x)).sum()) == pytest.approx(exact, rel=1e-5)
    assert float(j.log_prob(jnp.asarray(x)).sum()) == pytest.approx(exact, rel=1e-5)


def test_pyro_log_density_is_differentiable():
    import torch

    rng = np.random.default_rng(2)
    pi, mu = random_mixture(rng, 3, 5)
    x = sample_data(rng, pi, mu, 20)
    mu_t = torch.tensor(mu, requires_grad=True)
    ppf.bernoulli_mixture_log_density(x, torch.tensor(pi), mu_t).backward()
    r = softmax(closed_form(x, pi, mu), axis=1)  # d log p / d mu = sum_n r_nk (x - mu) / ...
    expected = (r.T @ x - r.sum(0)[:, None] * mu) / (mu * (1 - mu))
    np.testing.assert_allclose(mu_t.grad.numpy(), expected, rtol=1e-4, atol=1e-4)


# ---- EM ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_em_never_decreases_the_objective(backend, seed):
    rng = np.random.default_rng(100 + seed)
    pi, mu = random_mixture(rng, 3, 10)
    x = sample_data(rng, pi, mu, 150)
    fit = FRONTENDS[backend.name].fit_bernoulli_mixture(
        backend.array(x), 4, seed=seed, num_iters=25, tol=None, batch_size=64, smoothing=0.01
    )
    obj = np.array(fit.objectives)
    ll = np.array(fit.log_likelihoods)
    assert fit.num_iters == 25 and len(obj) == 26 and not fit.converged
    assert np.diff(obj).min() >= -1e-5 * np.abs(obj[:-1]).max()  # float32 round-off only
    assert ll[-1] > ll[0] + 0.1
    # the recorded log-likelihood is the exact one of the returned parameters
    exact = logsumexp(closed_form(x, backend.np(fit.pi), backend.np(fit.mu)), axis=1).mean()
    assert ll[-1] == pytest.approx(exact, rel=1e-5)
    # the objective is the log-likelihood plus the smoothing prior / N
    prior = 0.01 * (np.log(backend.np(fit.mu)) + np.log1p(-backend.np(fit.mu))).sum()
    prior += 0.01 * np.log(backend.np(fit.pi)).sum()
    assert obj[-1] == pytest.approx(ll[-1] + prior / len(x), rel=1e-5)
    m = backend.np(fit.mu)
    assert (m > 0).all() and (m < 1).all() and backend.np(fit.pi).sum() == pytest.approx(1, 1e-5)


def test_em_stops_on_relative_improvement():
    rng = np.random.default_rng(5)
    pi, mu = random_mixture(rng, 2, 8)
    x = sample_data(rng, pi, mu, 100)
    fit = ppf.fit_bernoulli_mixture(x, 2, num_iters=500, tol=1e-4)
    assert fit.converged and fit.num_iters < 500
    obj = fit.objectives
    assert obj[-1] - obj[-2] < 1e-4 * abs(obj[-2])
    assert all(b - a >= 1e-4 * abs(a) for a, b in itertools.pairwise(obj[:-1]))


def test_pyro_and_numpyro_agree_given_the_same_init():
    rng = np.random.default_rng(7)
    pi, mu = random_mixture(rng, 3, 12)
    x = sample_data(rng, pi, mu, 200)
    init = mixture.bernoulli_mixture_init(x, 5, seed=3)  # numpy in, numpy out
    kw = dict(init=init, num_iters=10, tol=None, batch_size=64, smoothing=0.05)
    a = ppf.fit_bernoulli_mixture(x, 5, **kw)
    b = npf.fit_bernoulli_mixture(x, 5, **kw)
    np.testing.assert_allclose(a.log_likelihoods, b.log_likelihoods, rtol=1e-5)
    np.testing.assert_allclose(a.mu.numpy(), np.asarray(b.mu), atol=1e-5)
    np.testing.assert_allclose(a.pi.numpy(), np.asarray(b.pi), atol=1e-6)
    # the default init is numpy's, so the same seed starts both backends at the same point
    c = ppf.fit_bernoulli_mixture(x, 5, seed=3, num_iters=0, smoothing=0.05)
    d = npf.fit_bernoulli_mixture(x, 5, seed=3, num_iters=0, smoothing=0.05)
    np.testing.assert_array_equal(c.mu.numpy(), np.asarray(d.mu))


def test_program_estep_is_the_closed_form_estep(backend):
    """EM with responsibilities from the enumerated PPL program follows the closed form."""
    rng = np.random.default_rng(9)
    pi, mu = random_mixture(rng, 3, 7)
    x = backend.array(sample_data(rng, pi, mu, 90))
    fe = FRONTENDS[backend.name]
    kw = dict(seed=1, num_iters=6, tol=None, batch_size=32)
    a = fe.fit_bernoulli_mixture(x, 3, estep="program", **kw)
    b = fe.fit_bernoulli_mixture(x, 3, estep="closed_form", **kw)
    np.testing.assert_allclose(a.log_likelihoods, b.log_likelihoods, rtol=1e-5)
    np.testing.assert_allclose(backend.np(a.mu), backend.np(b.mu), atol=1e-5)


# ---- bad input -----------------------------------------------------------------------------


def test_bad_input_names_the_argument(backend):
    fe = FRONTENDS[backend.name]
    rng = np.random.default_rng(11)
    pi, mu = random_mixture(rng, 2, 4)
    x = sample_data(rng, pi, mu, 10)
    with pytest.raises(ValueError, match="data must be binary"):
        fe.fit_bernoulli_mixture(backend.array(x * 0.5), 2)
    with pytest.raises(ValueError, match="data contains NaN"):
        fe.fit_bernoulli_mixture(backend.array(np.where(x > 0, np.nan, 0)), 2)
    with pytest.raises(ValueError, match=r"data must have shape \(N, D\)"):
        fe.fit_bernoulli_mixture(backend.array(x[0]), 2)
    with pytest.raises(ValueError, match=r"data must have shape \(N, D\)"):
        fe.fit_bernoulli_mixture(backend.array(x[:0]), 2)
    for k in (0, -1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="num_components"):
            fe.fit_bernoulli_mixture(backend.array(x), k)
    with pytest.raises(ValueError, match="num_components"):
        fe.bernoulli_mixture(backend.array(x), 0)
    with pytest.raises(ValueError, match=r"mu must have shape \(2, 4\)"):
        fe.bernoulli_mixture_log_likelihood(
            backend.array(x), backend.array(pi), backend.array(mu[:, :3])
        )
    with pytest.raises(ValueError, match=r"mu must have shape \(K, D\)"):
        fe.bernoulli_mixture_log_density(x, pi, mu[:1])
    with pytest.raises(ValueError, match=r"pi must have shape"):
        fe.bernoulli_mixture_log_joint(x, pi[None], mu)
    with pytest.raises(ValueError, match="pi must be finite, non-negative and sum to 1"):
        fe.bernoulli_mixture_log_density(x, 2 * pi, mu)
    with pytest.raises(ValueError, match=r"mu must lie strictly inside \(0, 1\)"):
        fe.bernoulli_mixture_log_density(x, pi, np.round(mu))
    with pytest.raises(ValueError, match=r"init: pi must have shape \(3,\)"):
        fe.fit_bernoulli_mixture(x, 3, init=(pi, mu))
    for name, kw in [
        ("smoothing", {"smoothing": 0.0}),
        ("batch_size", {"batch_size": 0}),
        ("num_iters", {"num_iters": -1}),
        ("tol", {"tol": -1.0}),
        ("estep", {"estep": "funsor"}),
    ]:
        with pytest.raises(ValueError, match=name):
            fe.fit_bernoulli_mixture(x, 2, **kw)


def test_integer_data_are_accepted():
    x = (np.random.default_rng(3).random((20, 5)) < 0.5).astype(np.uint8)
    a = ppf.fit_bernoulli_mixture(x, 2, num_iters=2)
    b = npf.fit_bernoulli_mixture(x.astype(bool), 2, num_iters=2)
    np.testing.assert_allclose(a.log_likelihoods, b.log_likelihoods, rtol=1e-5)


def test_as_float_data_backends():
    """The shared data conversion: the PPL's own arrays kept, others through the host, ints to
    float32, and bad data refused."""
    import jax.numpy as jnp
    import torch

    from ebm_ppl.models.mixture import as_float_data
    from ebm_ppl.numpyro import ppl as numpyro_ppl
    from ebm_ppl.pyro import ppl as pyro_ppl

    t = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    assert as_float_data(pyro_ppl, t) is t
    j = as_float_data(numpyro_ppl, t)
    assert str(j.dtype) in ("float32", "float64")
    assert j.tolist() == [[0.0, 1.0]]
    for ppl in (pyro_ppl, numpyro_ppl):
        x = as_float_data(ppl, np.array([[1, 0]], dtype=bool))
        assert str(x.dtype).endswith("float32") and x.tolist() == [[1.0, 0.0]]
    assert as_float_data(pyro_ppl, jnp.ones((1, 2))).tolist() == [[1.0, 1.0]]
    with pytest.raises(ValueError):
        as_float_data(pyro_ppl, np.array([[0.5, 1.0]]))
