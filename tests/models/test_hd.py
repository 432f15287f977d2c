"""The hierarchical-deep prior: the program's log density by hand, the one-shot predictive
by an independent route, recovery of a known hierarchy, and agreement of the two PPLs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import betaln, logsumexp
from scipy.stats import beta as beta_dist

from ebm_ppl.models.hd import (
    HDPosterior,
    category_counts,
    category_log_likelihood,
    predictive_log_prob,
    stick_breaking_log_weights,
)


def frontend(backend):
    if backend.name == "torch":
        import ebm_ppl.pyro as fe
    else:
        import ebm_ppl.numpyro as fe
    return fe


def hand_loglik(ones, counts, theta, alpha):
    a, b = alpha * theta[None], alpha * (1 - theta[None])
    k, n = ones[:, None], counts[:, None, None]
    return (betaln(a + k, b + n - k) - betaln(a, b)).sum(-1)


def hand_log_w(v):
    w = np.concatenate([v, [1.0]]) * np.concatenate([[1.0], np.cumprod(1 - v)])
    return np.log(w)


def program_log_density(backend, ones, counts, values, assignments=None, **kw):
    fe = frontend(backend)
    arr = {k: backend.array(v) for k, v in values.items()}
    if backend.name == "torch":
        import pyro.poutine as poutine

        s = None if assignments is None else backend.array(assignments, np.int64)
        tr = poutine.trace(poutine.condition(fe.hd_prior, data=arr)).get_trace(
            backend.array(ones), backend.array(counts), assignments=s, **kw
        )
        return float(tr.log_prob_sum())
    from numpyro.infer.util import log_density

    s = None if assignments is None else backend.array(assignments, np.int32)
    lp, _ = log_density(
        fe.hd_prior, (backend.array(ones), backend.array(counts)), dict(assignments=s, **kw), arr
    )
    return float(lp)


def random_setup(seed, c=5, f=4, k=3):
    rng = np.random.default_rng(seed)
    ones = rng.integers(0, 4, (c, f)).astype(np.float64)
    counts = ones.max(1) + rng.integers(0, 3, c)
    values = {
        "v": rng.uniform(0.2, 0.8, k - 1),
        "m": rng.uniform(0.2, 0.8, f),
        "theta": rng.uniform(0.1, 0.9, (k, f)),
    }
    return ones, counts.astype(np.float64), values, rng.integers(0, k, c)


def test_stick_breaking(backend):
    v = np.array([0.3, 0.5, 0.9])
    lw = backend.np(stick_breaking_log_weights(backend.array(v)))
    np.testing.assert_allclose(lw, hand_log_w(v), rtol=1e-5)
    assert np.exp(lw).sum() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_program_log_density_matches_hand_computation(backend, seed):
    """Fixed assignments: log Beta(v) + log Beta(m) + log Beta(theta | a m) + log w_s +
    the Beta-Bernoulli marginal of each category; assignments summed out: the log-sum-exp."""
    ones, counts, values, s = random_setup(seed)
    alpha, a, gamma = 4.0, 3.0, 1.5
    kw = dict(num_super=3, alpha=alpha, a=a, gamma=gamma)
    v, m, theta = values["v"], values["m"], values["theta"]
    prior = (
        beta_dist.logpdf(v, 1.0, gamma).sum()
        + beta_dist.logpdf(m, 1.0, 1.0).sum()
        + beta_dist.logpdf(theta, a * m, a * (1 - m)).sum()
    )
    ll = hand_loglik(ones, counts, theta, alpha)
    lw = hand_log_w(v)
    want = prior + lw[s].sum() + ll[np.arange(len(s)), s].sum()
    got = program_log_density(backend, ones, counts, values, s, **kw)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-3)
    want = prior + logsumexp(lw[None] + ll, axis=1).sum()
    got = program_log_density(backend, ones, counts, values, None, **kw)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-3)


def test_category_counts_and_likelihood_of_a_sequence(backend):
    """The integrated likelihood is that of the binary sequence: a product of predictive
    probabilities image by image (the chain rule), here for one category and feature."""
    z = np.array([[1], [0], [1], [1]], np.float32)
    ones, counts = category_counts(z, np.zeros(4, np.int64), 1)
    assert ones.tolist() == [[3.0]] and counts.tolist() == [4.0]
    theta, alpha = np.array([[0.3]]), 2.0
    got = float(
        backend.np(
            category_log_likelihood(
                backend.array(ones), backend.array(counts), backend.array(theta), alpha
            )
        )[0, 0]
    )
    a, b, want, k = alpha * 0.3, alpha * 0.7, 0.0, 0
    for i, x in enumerate(z[:, 0]):
        p = (a + k) / (a + b + i)
        want += np.log(p if x else 1 - p)
        k += x
    assert got == pytest.approx(want, abs=1e-5)
    with pytest.raises(ValueError, match="binary"):
        category_counts(np.full((2, 2), 0.5), np.zeros(2, np.int64), 1)
    with pytest.raises(ValueError, match="labels"):
        category_counts(z, np.full(4, 3), 2)


@pytest.mark.parametrize("seed", [0, 1])
def test_one_shot_predictive_equals_ratio_of_marginals(backend, seed):
    """``p(x | examples) = sum_k w_k p(examples + x | k) / sum_k w_k p(examples | k)``,
    computed from the category likelihood alone (an independent route)."""
    rng = np.random.default_rng(seed)
    f, k, alpha = 6, 3, 3.0
    theta = rng.uniform(0.1, 0.9, (k, f))
    lw = hand_log_w(rng.uniform(0.2, 0.8, k - 1))
    ex = rng.integers(0, 2, (2, 3, f)).astype(np.float64)  # 2 new categories, 3 examples
    ones, counts = ex.sum(1), np.full(2, 3.0)
    x = rng.integers(0, 2, (4, f)).astype(np.float64)
    got = backend.np(
        predictive_log_prob(*(backend.array(t) for t in (x, ones, counts, theta, lw)), alpha)
    )
    for n in range(4):
        for q in range(2):
            with_x = hand_loglik(ones[q : q + 1] + x[n], counts[q : q + 1] + 1, theta, alpha)
            base = hand_loglik(ones[q : q + 1], counts[q : q + 1], theta, alpha)
            want = logsumexp(lw + with_x[0]) - logsumexp(lw + base[0])
            assert got[n, q] == pytest.approx(want, abs=1e-4)


def synthetic_hierarchy(seed, per_category=15):
    """Two super-categories with opposite feature profiles, three categories each."""
    rng = np.random.default_rng(seed)
    f = 10
    profiles = np.array([[0.85] * 5 + [0.1] * 5, [0.1] * 5 + [0.85] * 5])
    truth = np.array([0, 0, 0, 1, 1, 1])
    z, y = [], []
    for c, s in enumerate(truth):
        phi = rng.beta(20 * profiles[s], 20 * (1 - profiles[s]))
        z.append((rng.random((per_category, f)) < phi).astype(np.float32))
        y += [c] * per_category
    ones, counts = category_counts(np.concatenate(z), np.array(y), len(truth))
    return ones, counts, truth, profiles


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.slow
def test_posterior_recovers_a_known_hierarchy(backend, seed):
    """NUTS over the prior's continuous sites (assignments enumerated) groups the six
    categories into the two true super-categories: adjusted Rand index 1. Justification of
    the threshold: under the true profiles, moving any category to the other super-category
    costs more than 40 nats of likelihood (checked below), so a posterior that misassigns
    a category is a sampler failure, not a statistical fluctuation."""
    from sklearn.metrics import adjusted_rand_score

    ones, counts, truth, profiles = synthetic_hierarchy(seed)
    ll = hand_loglik(ones, counts, profiles, 20.0)
    gap = np.abs(ll[:, 0] - ll[:, 1])
    assert gap.min() > 40.0
    fe = frontend(backend)
    kw = dict(num_super=4, alpha=20.0, a=2.0, gamma=1.0, num_warmup=100, num_samples=60)
    if backend.name == "torch":
        import pyro

        pyro.set_rng_seed(seed)
        post = fe.fit_hd_prior(backend.array(ones), backend.array(counts), **kw)
    else:
        post = fe.fit_hd_prior(backend.key(seed), ones, counts, **kw)
    labels = post.clustering()
    assert adjusted_rand_score(truth, labels) == 1.0, labels
    co = post.coassignment()
    assert co[0, 1] > 0.95 and co[0, 5] < 0.05


def test_backends_agree_on_the_posterior_summaries():
    """The same posterior samples give the same assignment probabilities and one-shot
    predictive in both backends (one implementation of the math)."""
    import jax.numpy as jnp
    import torch

    rng = np.random.default_rng(5)
    ones, counts, _, _ = synthetic_hierarchy(5)
    samples = {
        "v": rng.uniform(0.2, 0.8, (7, 3)),
        "m": rng.uniform(0.2, 0.8, (7, 10)),
        "theta": rng.uniform(0.1, 0.9, (7, 4, 10)),
    }
    t = HDPosterior(
        {k: torch.tensor(v) for k, v in samples.items()},
        torch.tensor(ones, dtype=torch.float64),
        torch.tensor(counts, dtype=torch.float64),
        5.0,
    )
    j = HDPosterior(
        {k: jnp.asarray(v, jnp.float32) for k, v in samples.items()},
        jnp.asarray(ones),
        jnp.asarray(counts),
        5.0,
    )
    np.testing.assert_allclose(
        t.assignment_probs().numpy(), np.asarray(j.assignment_probs()), atol=1e-4
    )
    x = rng.integers(0, 2, (3, 10)).astype(np.float32)
    ex_ones, ex_counts = ones[:2] / counts[:2, None] * 3, np.full(2, 3.0)
    ex_ones = np.round(ex_ones)
    a = t.predictive_log_prob(
        torch.tensor(x, dtype=torch.float64), torch.tensor(ex_ones), torch.tensor(ex_counts)
    ).numpy()
    b = np.asarray(
        j.predictive_log_prob(
            jnp.asarray(x), jnp.asarray(ex_ones, jnp.float32), jnp.asarray(ex_counts, jnp.float32)
        )
    )
    np.testing.assert_allclose(a, b, atol=1e-3)
    # the averaged predictive is the log-mean-exp over samples
    per = [
        predictive_log_prob(
            torch.tensor(x, dtype=torch.float64),
            torch.tensor(ex_ones),
            torch.tensor(ex_counts),
            t.theta[s],
            t.log_w[s],
            5.0,
        ).numpy()
        for s in range(7)
    ]
    np.testing.assert_allclose(a, logsumexp(np.stack(per), axis=0) - np.log(7), atol=1e-6)
    z = t.sample_new_category(np.random.default_rng(0), ex_ones[0], 3.0, 50)
    assert z.shape == (50, 10) and set(np.unique(z)) <= {0.0, 1.0}


def test_bad_arguments(backend):
    fe = frontend(backend)
    ones, counts, values, _ = random_setup(0)
    with pytest.raises(ValueError, match="num_super"):
        program_log_density(backend, ones, counts, values, None, num_super=0)
    with pytest.raises(ValueError, match="alpha"):
        program_log_density(backend, ones, counts, values, None, num_super=3, alpha=-1.0)
    assert callable(fe.fit_hd_prior)


def test_kmeans_init_and_select_alpha():
    """The k-means start puts the two true groups in the two largest components, with
    stick fractions that rebuild their sizes; select_alpha returns the grid value with the
    largest marginal likelihood at that start (recomputed here by hand)."""
    from ebm_ppl.models.hd import kmeans_init, select_alpha

    ones, counts, truth, profiles = synthetic_hierarchy(3)
    init = kmeans_init(ones, counts, num_super=4)
    assert init["theta"].shape == (4, 10) and init["v"].shape == (3,)
    w = np.exp(hand_log_w(init["v"].astype(np.float64)))
    assert w.sum() == pytest.approx(1.0) and np.all(np.diff(w) <= 1e-6)  # largest first
    top = kmeans_init(ones, counts, num_super=2)["theta"]
    err = min(np.abs(top - profiles).max(), np.abs(top[::-1] - profiles).max())
    assert err < 0.25
    grid = (1.0, 5.0, 20.0, 100.0)
    best, scores = select_alpha(ones, counts, 4, grid=grid)
    lw = hand_log_w(init["v"].astype(np.float64))
    for a in grid:
        want = logsumexp(
            lw[None] + hand_loglik(ones, counts, init["theta"].astype(np.float64), a), 1
        ).sum()
        assert scores[a] == pytest.approx(want, rel=1e-6)
    assert best == max(scores, key=scores.get)
