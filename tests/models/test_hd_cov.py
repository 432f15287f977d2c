"""Full-covariance super-categories for the Normal HD prior: the scatter statistics, the
conjugate inverse-Wishart update by hand, the one-shot predictive against the joint Gaussian
of the examples and the test point (scipy), the diagonal special case, and the two PPLs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from ebm_ppl.models.hd import HDNormalPosterior, category_moments, normal_predictive_log_prob
from ebm_ppl.models.hd_cov import (
    HDCovPosterior,
    category_scatter,
    cov_predictive_log_prob,
    niw_posterior_covariance,
    pooled_covariance,
)


def random_spd(rng, f, scale=1.0):
    a = rng.normal(0.0, 1.0, (f, f))
    return scale * (a @ a.T / f + 0.5 * np.eye(f))


def test_category_scatter_and_pooled_covariance():
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, (20, 3))
    y = rng.integers(0, 4, 20)
    y[0] = 4  # a category with one image: zero scatter
    y[1:] = np.where(y[1:] == 4, 0, y[1:])
    s = category_scatter(x, y, 5)
    for c in range(4):
        xc = x[y == c]
        np.testing.assert_allclose(s[c], np.cov(xc.T, ddof=0) * len(xc), atol=1e-12)
    np.testing.assert_array_equal(s[4], 0.0)
    n = np.bincount(y, minlength=5)
    np.testing.assert_allclose(pooled_covariance(s, n), s.sum(0) / (len(x) - 5), atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_niw_posterior_covariance_is_the_conjugate_update(backend, seed):
    """E[Sigma_k | data] = (nu0 Sigma_0 + sum_c r_ck S_c) / (nu0 + sum_c r_ck (n_c - 1)),
    written out per super-category in float64 loops; nu0 = inf gives Sigma_0."""
    rng = np.random.default_rng(seed)
    c, f, k, s = 5, 3, 3, 2
    scatter = np.stack([random_spd(rng, f, 4.0) for _ in range(c)])
    counts = rng.integers(2, 9, c).astype(np.float64)
    resp = rng.dirichlet(np.ones(k), (s, c))
    prior = random_spd(rng, f)
    nu0 = float(rng.uniform(1.0, 20.0))
    got = backend.np(
        niw_posterior_covariance(
            *(backend.array(a) for a in (scatter, counts, resp, prior)), nu0=nu0
        )
    )
    want = np.zeros((s, k, f, f))
    for i in range(s):
        for j in range(k):
            num, den = nu0 * prior, nu0
            for cat in range(c):
                num = num + resp[i, cat, j] * scatter[cat]
                den = den + resp[i, cat, j] * (counts[cat] - 1.0)
            want[i, j] = num / den
    np.testing.assert_allclose(got, want, rtol=1e-5)
    inf = niw_posterior_covariance(
        *(backend.array(a) for a in (scatter, counts, resp, prior)), nu0=math.inf
    )
    np.testing.assert_allclose(backend.np(inf), np.broadcast_to(prior, want.shape), rtol=1e-6)


def hand_predictive(x, examples, mu, tau2, cov, log_w):
    """log p(x | examples) of one new category by the joint Gaussian of (examples, x) under
    each super-category (category mean integrated out: blocks T + Sigma delta_ij), the
    super-category summed out with posterior ∝ w_k p(examples | k)."""
    n, f = examples.shape
    out = []
    for xi in x:
        joint, marg = [], []
        for k in range(len(mu)):
            t = np.diag(tau2[k])

            def big(m, k=k, t=t):
                return np.kron(np.ones((m, m)), t) + np.kron(np.eye(m), cov[k])

            z = np.concatenate([examples.ravel(), xi])
            joint.append(
                log_w[k] + multivariate_normal(np.tile(mu[k], n + 1), big(n + 1)).logpdf(z)
            )
            marg.append(
                log_w[k] + multivariate_normal(np.tile(mu[k], n), big(n)).logpdf(examples.ravel())
            )
        out.append(logsumexp(joint) - logsumexp(marg))
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cov_predictive_is_the_joint_gaussian_ratio(backend, seed):
    """New categories with 1, 3 and 2 examples (grouped by count inside), 3 super-categories
    with full covariances: equals the ratio of joint Gaussian densities (scipy)."""
    rng = np.random.default_rng(seed)
    f, k = 3, 3
    mu = rng.normal(0.0, 1.0, (k, f))
    tau2 = rng.uniform(0.3, 2.0, (k, f))
    cov = np.stack([random_spd(rng, f) for _ in range(k)])
    log_w = np.log(rng.dirichlet(np.ones(k)))
    sizes = [1, 3, 2]
    ex = [rng.normal(0.0, 1.5, (m, f)) for m in sizes]
    owner = np.repeat(np.arange(len(sizes)), sizes)
    counts, sums, _ = category_moments(np.concatenate(ex), owner, len(sizes))
    scatter = category_scatter(np.concatenate(ex), owner, len(sizes))
    x = rng.normal(0.0, 1.5, (4, f))
    got = backend.np(
        cov_predictive_log_prob(
            *(backend.array(a) for a in (x, counts, sums, scatter, mu, tau2, cov, log_w))
        )
    )
    want = np.stack([hand_predictive(x, e, mu, tau2, cov, log_w) for e in ex], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_diagonal_covariances_give_the_normal_hd_predictive(backend, seed):
    """With Sigma_k = diag(sigma_k^2) the full-covariance predictive is the diagonal one."""
    rng = np.random.default_rng(seed)
    f, k, q = 4, 3, 3
    mu = rng.normal(0.0, 1.0, (k, f))
    tau2 = rng.uniform(0.3, 2.0, (k, f))
    sigma2 = rng.uniform(0.3, 2.0, (k, f))
    log_w = np.log(rng.dirichlet(np.ones(k)))
    feats = rng.normal(0.0, 1.0, (7, f))
    owner = np.array([0, 1, 1, 1, 2, 2, 2])
    counts, sums, sumsq = category_moments(feats, owner, q)
    scatter = category_scatter(feats, owner, q)
    x = rng.normal(0.0, 1.0, (5, f))
    cov = np.stack([np.diag(s) for s in sigma2])
    arr = backend.array
    got = cov_predictive_log_prob(
        *(arr(a) for a in (x, counts, sums, scatter, mu, tau2, cov)), arr(log_w)
    )
    want = normal_predictive_log_prob(
        *(arr(a) for a in (x, counts, sums, sumsq, mu, sigma2, tau2, log_w))
    )
    np.testing.assert_allclose(backend.np(got), backend.np(want), rtol=1e-4, atol=1e-4)


def posterior_samples(rng, s=4, k=3, f=3):
    return {
        "v": rng.uniform(0.2, 0.8, (s, k - 1)),
        "mu": rng.normal(0.0, 1.0, (s, k, f)),
        "sigma": rng.uniform(0.6, 1.4, (s, f)),
        "tau": rng.uniform(0.5, 1.5, (s, f)),
    }


def known_categories(rng, c=6, f=3):
    sizes = rng.integers(2, 6, c)
    feats = rng.normal(0.0, 1.0, (int(sizes.sum()), f))
    labels = np.repeat(np.arange(c), sizes)
    return category_moments(feats, labels, c), category_scatter(feats, labels, c)


@pytest.mark.parametrize("seed", [0, 1])
def test_posterior_predictive_averages_samples_and_backends_agree(seed):
    """HDCovPosterior: per kept sample the conjugate covariance from that sample's exact
    assignment probabilities, the predictive the log-mean-exp over samples of
    cov_predictive_log_prob (numpy float64 by hand); Pyro's arrays == NumPyro's."""
    import jax.numpy as jnp
    import torch

    rng = np.random.default_rng(seed)
    (n, s1, s2), scatter = known_categories(rng)
    samples = posterior_samples(rng)
    ex = rng.normal(0.0, 1.0, (4, 3))
    owner = np.array([0, 1, 1, 1])
    en, es1, _ = category_moments(ex, owner, 2)
    esc = category_scatter(ex, owner, 2)
    x = rng.normal(0.0, 1.0, (5, 3))
    got = {}
    for name, conv in (("torch", torch.as_tensor), ("jax", jnp.asarray)):
        base = HDNormalPosterior(
            {k: conv(v.astype(np.float32)) for k, v in samples.items()},
            *(conv(a.astype(np.float32)) for a in (n, s1, s2)),
        )
        post = HDCovPosterior(base, scatter, nu0=7.0, max_samples=3)
        assert post.num_samples == 3
        got[name] = np.asarray(post.predictive_log_prob(x, en, es1, esc))
        resp = np.asarray(base.assignment_probs(), np.float64)[post.keep]
    np.testing.assert_allclose(got["torch"], got["jax"], rtol=1e-4, atol=1e-4)
    prior = pooled_covariance(scatter, n)
    per = []
    for i, s in enumerate(post.keep):
        cov = np.stack(
            [
                (7.0 * prior + np.einsum("c,cfg->fg", resp[i, :, j], scatter))
                / (7.0 + resp[i, :, j] @ (n - 1.0))
                for j in range(3)
            ]
        )
        v = samples["v"][s]
        lw = np.log(np.concatenate([v, [1.0]]) * np.concatenate([[1.0], np.cumprod(1 - v)]))
        tau2 = np.broadcast_to(samples["tau"][s] ** 2, (3, 3))
        ex_list = [ex[owner == q] for q in range(2)]
        per.append(
            np.stack(
                [hand_predictive(x, e, samples["mu"][s], tau2, cov, lw) for e in ex_list], axis=1
            )
        )
    want = logsumexp(np.stack(per), axis=0) - np.log(len(per))
    np.testing.assert_allclose(got["jax"], want, rtol=1e-3, atol=1e-3)


@pytest.mark.slow
def test_fit_hd_cov_prior_both_frontends(backend):
    """The frontends' fit: NUTS on the moments, then the conjugate covariances (tiny run;
    slow: NumPyro's NUTS compiles for about 30 s)."""
    if backend.name == "torch":
        import ebm_ppl.pyro as fe
    else:
        import ebm_ppl.numpyro as fe
    rng = np.random.default_rng(3)
    (n, s1, s2), scatter = known_categories(rng, c=5, f=2)
    kw = dict(num_super=2, num_warmup=10, num_samples=6, shared_variances=True, nu0=5.0)
    args = [backend.array(a) for a in (n, s1, s2)] + [scatter]
    if backend.name == "torch":
        post = fe.fit_hd_cov_prior(*args, max_samples=4, **kw)
    else:
        post = fe.fit_hd_cov_prior(backend.key(0), *args, max_samples=4, **kw)
    assert post.num_samples == 4
    assert tuple(post.cov.shape) == (4, 2, 2, 2)
    lp = backend.np(
        post.predictive_log_prob(
            rng.normal(size=(3, 2)), np.ones(2), rng.normal(size=(2, 2)), np.zeros((2, 2, 2))
        )
    )
    assert lp.shape == (3, 2) and np.isfinite(lp).all()


def test_bad_arguments(backend):
    rng = np.random.default_rng(0)
    (n, s1, s2), scatter = known_categories(rng)
    samples = posterior_samples(rng)
    base = HDNormalPosterior(
        {k: backend.array(v) for k, v in samples.items()}, *(backend.array(a) for a in (n, s1, s2))
    )
    for bad in (0.0, -1.0, True, "1"):
        with pytest.raises(ValueError, match="nu0"):
            HDCovPosterior(base, scatter, nu0=bad)
    with pytest.raises(ValueError, match="scatter"):
        HDCovPosterior(base, scatter[:, :2, :2])
    with pytest.raises(ValueError, match="prior_cov"):
        HDCovPosterior(base, scatter, prior_cov=-np.eye(3))
    with pytest.raises(ValueError, match="max_samples"):
        HDCovPosterior(base, scatter, max_samples=0)
    post = HDCovPosterior(base, scatter)
    with pytest.raises(ValueError, match="counts"):
        post.predictive_log_prob(
            np.zeros((2, 3)), np.zeros(1), np.zeros((1, 3)), np.zeros((1, 3, 3))
        )
    with pytest.raises(ValueError, match="x must"):
        post.predictive_log_prob(
            np.zeros((2, 4)), np.ones(1), np.zeros((1, 3)), np.zeros((1, 3, 3))
        )
    with pytest.raises(ValueError, match="labels"):
        category_scatter(np.zeros((3, 2)), np.array([0, 1, 5]), 2)


def exact_assignment_posterior(n, s1, sc, m, lam2, tau2, sigma2, k, alpha, nu0, p0):
    """p(z | data) over all k^C assignments, written out: Dirichlet-multinomial prior, the
    inverse-Wishart marginal of each group's scatter, and per feature the joint Gaussian of
    the group's category means (mu_k ~ N(m, lam2) integrated out)."""
    import itertools

    from scipy.special import gammaln, multigammaln

    c, f = s1.shape
    xbar = s1 / n[:, None]
    v = tau2[None] + sigma2[None] / n[:, None]

    def iw_log_norm(psi, nu):
        return (
            0.5 * nu * f * np.log(2)
            + multigammaln(0.5 * nu, f)
            - 0.5 * nu * np.linalg.slogdet(psi)[1]
        )

    out = {}
    for z in itertools.product(range(k), repeat=c):
        z = np.array(z)
        sizes = np.bincount(z, minlength=k)
        lp = gammaln(alpha) - gammaln(c + alpha)
        lp += sum(gammaln(s + alpha / k) - gammaln(alpha / k) for s in sizes)
        for j in range(k):
            g = z == j
            if not g.any():
                continue
            dof = (n[g] - 1).sum()
            lp += iw_log_norm(nu0 * p0 + sc[g].sum(0), nu0 + f + 1 + dof)
            lp -= iw_log_norm(nu0 * p0, nu0 + f + 1) + 0.5 * dof * f * np.log(2 * np.pi)
            for t in range(f):
                cov = lam2[t] * np.ones((g.sum(), g.sum())) + np.diag(v[g, t])
                lp += multivariate_normal(np.full(g.sum(), m[t]), cov).logpdf(xbar[g, t])
        out[tuple(z)] = lp
    keys = list(out)
    lps = np.array([out[key] for key in keys])
    return dict(zip(keys, np.exp(lps - logsumexp(lps))))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gibbs_samples_the_exact_assignment_posterior(seed):
    """3 categories, 2 super-categories: the chain's visit frequencies of the 8 assignments
    match the enumerated posterior (Monte Carlo tolerance)."""
    from ebm_ppl.models.hd_cov import gibbs_super_categories

    rng = np.random.default_rng(seed)
    c, f, k = 3, 2, 2
    sizes = np.array([3, 4, 3])
    covs = [random_spd(rng, f, s) for s in (0.3, 1.0, 3.0)]
    feats = np.concatenate(
        [rng.multivariate_normal(rng.normal(0, 0.5, f), covs[i], sizes[i]) for i in range(c)]
    )
    labels = np.repeat(np.arange(c), sizes)
    n, s1, _ = category_moments(feats, labels, c)
    sc = category_scatter(feats, labels, c)
    m, lam2 = np.zeros(f), np.full(f, 0.5)
    tau2, sigma2 = np.full(f, 0.3), np.full(f, 1.0)
    p0 = np.eye(f)
    z = gibbs_super_categories(
        n, s1, sc, np.zeros(c, int), m, lam2, tau2, sigma2, k, 1.0, 3.0, p0, 6000, 6000, seed
    )
    want = exact_assignment_posterior(n, s1, sc, m, lam2, tau2, sigma2, k, 1.0, 3.0, p0)
    for key, p in want.items():
        freq = (z == np.array(key)).all(1).mean()
        assert abs(freq - p) < 0.03, (key, freq, p)


def test_from_gibbs_and_equal_volume(backend):
    """from_gibbs: hard assignments -> conjugate mu_k, Sigma_k and Dirichlet predictive
    weights, by hand; with_equal_volume keeps each Sigma_k's shape at the pooled determinant."""
    rng = np.random.default_rng(4)
    (n, s1, s2), scatter = known_categories(rng, c=6, f=3)
    samples = posterior_samples(rng)
    samples["m"] = rng.normal(0.0, 0.3, (4, 3))
    samples["lam"] = rng.uniform(0.5, 1.5, (4, 3))
    base = HDNormalPosterior(
        {k: backend.array(v) for k, v in samples.items()}, *(backend.array(a) for a in (n, s1, s2))
    )
    post = HDCovPosterior.from_gibbs(base, scatter, nu0=4.0, num_sweeps=4, num_keep=2, seed=1)
    z = post.assignments
    assert z.shape == (2, 6)
    m = samples["m"].mean(0)
    lam2 = (samples["lam"] ** 2).mean(0)
    tau2 = (samples["tau"] ** 2).mean(0)
    sigma2 = (samples["sigma"] ** 2).mean(0)
    p0 = pooled_covariance(scatter, n)
    v = tau2 + sigma2 / n[:, None]
    for s in range(2):
        for j in range(3):
            g = z[s] == j
            prec = 1 / lam2 + (1 / v[g]).sum(0)
            mu = (m / lam2 + (s1[g] / n[g, None] / v[g]).sum(0)) / prec
            np.testing.assert_allclose(backend.np(post.mu)[s, j], mu, rtol=1e-4, atol=1e-5)
            cov = (4.0 * p0 + scatter[g].sum(0)) / (4.0 + (n[g] - 1).sum())
            np.testing.assert_allclose(backend.np(post.cov)[s, j], cov, rtol=1e-4, atol=1e-6)
            w = (g.sum() + 1.0 / 3) / (6 + 1.0)
            assert backend.np(post.log_w)[s, j] == pytest.approx(np.log(w), rel=1e-5)
    eq = post.with_equal_volume()
    ld0 = np.linalg.slogdet(p0)[1]
    cov, cov_eq = backend.np(post.cov), backend.np(eq.cov)
    np.testing.assert_allclose(np.linalg.slogdet(cov_eq)[1], ld0, rtol=1e-4, atol=1e-4)
    ratio = cov_eq / cov
    np.testing.assert_allclose(ratio, ratio[..., :1, :1] * np.ones_like(ratio), rtol=1e-4)
    with pytest.raises(ValueError, match="finite"):
        HDCovPosterior.from_gibbs(base, scatter, nu0=math.inf)
