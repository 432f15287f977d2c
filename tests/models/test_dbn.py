"""DBN math against exact enumeration of a tiny network (both backends)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ebm_ppl.models.dbn import DBNParams, check_dbn, log_joint, recognize, variational_bound


def states(n):
    return np.array(list(itertools.product([0, 1], repeat=n)), dtype=np.float32)


def tiny(rng, sizes, scale=1.0):
    ws = [
        (scale * rng.standard_normal((a, b))).astype(np.float32) for a, b in zip(sizes, sizes[1:])
    ]
    down = [(0.5 * rng.standard_normal(a)).astype(np.float32) for a in sizes[:-1]]
    up = [(0.5 * rng.standard_normal(b)).astype(np.float32) for b in sizes[1:]]
    return ws, down, up


def as_params(backend, ws, down, up):
    arr = backend.array
    return DBNParams(tuple(map(arr, ws)), tuple(map(arr, down)), tuple(map(arr, up)))


def top_log_z(backend, params):
    rbm = backend.RBM(params.weights[-1], params.down_biases[-1], params.up_biases[-1])
    return float(backend.np(rbm.log_partition()))


def exact_log_p(backend, params, sizes, log_z):
    """log P(v) for every v by summing the joint over h^1..h^(L-1)."""
    vs = states(sizes[0])
    hidden_states = [states(n) for n in sizes[1:-1]]
    out = []
    for v in vs:
        terms = []
        for hs in itertools.product(*hidden_states):
            lj = log_joint(params, backend.array(v), [backend.array(h) for h in hs], log_z)
            terms.append(float(backend.np(lj)))
        terms = np.array(terms, np.float64)
        m = terms.max()
        out.append(m + np.log(np.exp(terms - m).sum()))
    return vs, np.array(out)


@pytest.mark.parametrize("seed", [0, 1])
def test_joint_is_normalized(backend, seed):
    sizes = (3, 3, 2, 2)
    params = as_params(backend, *tiny(np.random.default_rng(seed), sizes, scale=1.5))
    check_dbn(*params)
    log_z = top_log_z(backend, params)
    _, lp = exact_log_p(backend, params, sizes, log_z)
    assert np.exp(lp).sum() == pytest.approx(1.0, abs=1e-5)


def exact_bound(backend, params, v, log_z, with_variance=False):
    """E_Q[log P(v, h^1) - log Q(h^1 | v)] (= E_Q[log P] + H(Q)) for a 2-layer DBN, by
    enumerating h^1; optionally also its variance under Q (for Monte Carlo tolerances)."""
    import math

    from ebm_ppl.models.dbn import up_logits

    logits = backend.np(up_logits(params, 1, backend.array(v))).astype(np.float64)
    q = 1 / (1 + np.exp(-logits))
    weights, terms = [], []
    for h in states(len(q)):
        qh = float(np.prod(np.where(h > 0, q, 1 - q)))
        if qh == 0:
            continue
        lj = float(backend.np(log_joint(params, backend.array(v), [backend.array(h)], log_z)))
        weights.append(qh)
        terms.append(lj - math.log(qh))
    weights, terms = np.array(weights), np.array(terms)
    mean = float((weights * terms).sum())
    if with_variance:
        return mean, float((weights * (terms - mean) ** 2).sum())
    return mean


@pytest.mark.parametrize("seed", [0, 1])
def test_bound_below_log_likelihood_and_tight_for_tied_weights(backend, seed):
    rng = np.random.default_rng(10 + seed)
    sizes = (4, 3, 3)
    ws, down, up = tiny(rng, sizes, scale=1.2)
    params = as_params(backend, ws, down, up)
    log_z = top_log_z(backend, params)
    vs, lp = exact_log_p(backend, params, sizes, log_z)
    for v, exact in zip(vs, lp):
        assert exact_bound(backend, params, v, log_z) <= exact + 1e-5
    # tied weights: top RBM = first RBM flipped, so P(v) is the first RBM's and Q is exact
    tied = as_params(backend, [ws[0], ws[0].T.copy()], [down[0], up[0]], [up[0], down[0]])
    log_z = top_log_z(backend, tied)
    vs, lp = exact_log_p(backend, tied, sizes, log_z)
    rbm = backend.RBM(*(backend.array(a) for a in (ws[0], down[0], up[0])))
    rbm_lp = backend.np(rbm.log_prob(backend.array(vs)) - rbm.log_partition())
    np.testing.assert_allclose(lp, rbm_lp, atol=1e-4)
    for v, exact in zip(vs, lp):
        assert exact_bound(backend, tied, v, log_z) == pytest.approx(exact, abs=1e-4)


def test_monte_carlo_bound_matches_its_expectation(backend):
    rng = np.random.default_rng(3)
    sizes = (4, 3, 3)
    params = as_params(backend, *tiny(rng, sizes))
    log_z = top_log_z(backend, params)
    v = np.array([1, 0, 1, 1], np.float32)
    n = 20000
    x = backend.array(np.tile(v, (n, 1)))
    est = backend.np(variational_bound(backend.key(0), params, x, log_z))
    exact = exact_bound(backend, params, v, log_z)
    assert abs(est.mean() - exact) < 5 * est.std() / np.sqrt(n)
    hs = recognize(backend.key(1), params, x, deterministic=True)
    assert len(hs) == 1 and tuple(hs[0].shape) == (n, 3)


def test_bad_stacks():
    import torch

    w = [torch.zeros(4, 3), torch.zeros(2, 2)]
    with pytest.raises(ValueError, match=r"weights\[1\] must have shape"):
        check_dbn(w, [torch.zeros(4), torch.zeros(3)], [torch.zeros(3), torch.zeros(2)])
    with pytest.raises(ValueError, match="one entry per RBM"):
        check_dbn(w[:1], [torch.zeros(4)], [])


@pytest.mark.parametrize("seed", [0, 1])
def test_predictive_matches_exact_marginal(backend, seed):
    """Predictive on the PPL program: top-RBM Gibbs, then the top-down pass."""
    from conftest import chi2_pvalue, state_index

    sizes = (3, 3, 2)
    ws, down, up = tiny(np.random.default_rng(20 + seed), sizes)
    params = as_params(backend, ws, down, up)
    _, lp = exact_log_p(backend, params, sizes, top_log_z(backend, params))
    n = 4000
    if backend.name == "torch":
        import pyro
        from pyro.infer import Predictive

        from ebm_ppl.pyro.dbn import dbn_model

        pyro.set_rng_seed(seed)
        model = dbn_model(params.weights, params.down_biases, params.up_biases, 50)
        v = Predictive(model, num_samples=1)(num_data=n)["v"][0].numpy()
    else:
        import jax
        from numpyro.infer import Predictive

        from ebm_ppl.numpyro.dbn import dbn_model

        model = dbn_model(params.weights, params.down_biases, params.up_biases, 50)
        out = Predictive(model, num_samples=1)(jax.random.PRNGKey(seed), num_data=n)
        v = np.asarray(out["v"][0])
    counts = np.bincount(state_index(v), minlength=8)
    assert chi2_pvalue(counts, np.exp(lp) / np.exp(lp).sum()) > 1e-4


def test_recognition_guide_gives_the_bound_through_the_ppl_elbo(backend):
    """Trace_ELBO of (dbn_model, dbn_guide) = -(bound + log Z_top) per data point."""
    sizes = (4, 3, 3)
    params = as_params(backend, *tiny(np.random.default_rng(4), sizes))
    log_z = top_log_z(backend, params)
    v = np.array([[1, 0, 1, 1]], np.float32)
    exact, var = exact_bound(backend, params, v[0], log_z, with_variance=True)
    n = 4000
    x = backend.array(np.tile(v, (n, 1)))
    if backend.name == "torch":
        import pyro
        from pyro.infer import Trace_ELBO

        from ebm_ppl.pyro.dbn import dbn_guide, dbn_model

        pyro.set_rng_seed(0)
        args = (params.weights, params.down_biases, params.up_biases)
        loss = Trace_ELBO().loss(dbn_model(*args), dbn_guide(*args), x)
    else:
        import jax
        from numpyro.infer import Trace_ELBO

        from ebm_ppl.numpyro.dbn import dbn_guide, dbn_model

        args = (params.weights, params.down_biases, params.up_biases)
        loss = Trace_ELBO().loss(jax.random.PRNGKey(0), {}, dbn_model(*args), dbn_guide(*args), x)
    bound = -float(loss) / n - log_z
    # n independent draws from Q: the estimate's standard error is sqrt(var / n)
    assert abs(bound - exact) < 5 * np.sqrt(var / n) + 1e-4, (bound, exact, np.sqrt(var / n))
