"""Parallel tempering and tempered transitions against exact distributions (both backends).

Oracles: every replica's distribution ``f_beta(v) / Z_beta`` by enumerating ``v``; the
expected swap acceptance ``E[min(1, ratio)]`` by enumerating pairs of states; the mode
probabilities of a strongly multimodal RBM.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import all_states, chi2_pvalue, random_params, state_index

from ebm_ppl.inference.tempering import (
    ParallelTempering,
    TemperedTransitions,
    check_ladder,
    pt_run,
    pt_swap,
    tempered_transition,
)


def path_probs(w, b, c, beta):
    """Exact normalized f_beta over all visible states (uniform base), float64."""
    w, b, c = (np.asarray(a, np.float64) for a in (w, b, c))
    vs = all_states(w.shape[0]).astype(np.float64)
    log_f = beta * (vs @ b) + np.logaddexp(0, beta * (vs @ w + c)).sum(1)
    p = np.exp(log_f - log_f.max())
    return p / p.sum(), log_f


def exact_ladder_sample(rng, w, b, c, betas, n):
    """(L, n, D) exact independent draws of every replica."""
    vs = all_states(w.shape[0])
    out = []
    for beta in betas:
        p, _ = path_probs(w, b, c, beta)
        out.append(vs[rng.choice(len(vs), size=n, p=p)])
    return np.stack(out)


def make(backend, w, b, c):
    d = backend.RBM(*(backend.array(a) for a in (w, b, c)))
    return d, d.ais_base(None)


@pytest.mark.parametrize("seed", [0, 1])
def test_swap_leaves_the_ladder_invariant_and_accepts_at_the_exact_rate(backend, seed):
    rng = np.random.default_rng(seed)
    w, b, c = random_params(rng, 4, 3, scale=1.5)
    betas = np.array([0.0, 0.3, 0.6, 1.0])
    n = 20000
    x = exact_ladder_sample(rng, w, b, c, betas, n)
    d, base = make(backend, w, b, c)
    key = backend.key(seed)
    for parity in (0, 1):
        y, _, acc = pt_swap(key, d, base, backend.array(x), betas, parity)
        y, acc = backend.np(y), backend.np(acc)
        for lvl, beta in enumerate(betas):
            counts = np.bincount(state_index(y[lvl]), minlength=16)
            assert chi2_pvalue(counts, path_probs(w, b, c, beta)[0]) > 1e-4
        for pair in range(len(betas) - 1):
            rate = acc[pair].mean()
            if pair % 2 != parity:
                assert rate == 0
                continue
            # E[min(1, f_l(y) f_{l+1}(x) / (f_l(x) f_{l+1}(y)))], x ~ p_l, y ~ p_{l+1}
            p_lo, lf_lo = path_probs(w, b, c, betas[pair])
            p_hi, lf_hi = path_probs(w, b, c, betas[pair + 1])
            log_r = (lf_lo[None, :] + lf_hi[:, None]) - (lf_lo[:, None] + lf_hi[None, :])
            expected = (p_lo[:, None] * p_hi[None, :] * np.minimum(1, np.exp(log_r))).sum()
            se = np.sqrt(expected * (1 - expected) / n)
            assert abs(rate - expected) < 5 * se + 1e-9, (pair, rate, expected)


@pytest.mark.parametrize("seed", [0, 1])
def test_pt_replicas_reach_their_exact_distributions(backend, seed):
    rng = np.random.default_rng(10 + seed)
    w, b, c = random_params(rng, 4, 3, scale=2.0)
    betas = np.linspace(0.0, 1.0, 5)
    d, base = make(backend, w, b, c)
    x0 = d.init_chain(backend.key(seed), (5, 3000, 4))
    x, h, stats = pt_run(backend.key(seed), d, base, x0, betas, 40)
    x = backend.np(x)
    for lvl, beta in enumerate(betas):
        counts = np.bincount(state_index(x[lvl]), minlength=16)
        assert chi2_pvalue(counts, path_probs(w, b, c, beta)[0]) > 1e-4
    acc = stats.acceptance
    assert acc.shape == (4,) and np.all((acc > 0) & (acc <= 1))
    assert tuple(h.shape) == (5, 3000, 3)


def bimodal_rbm():
    """10 visible, 2 hidden units; two equally likely modes (first half on / second half on)
    separated by a barrier that plain Gibbs does not cross in hundreds of sweeps."""
    w = np.zeros((10, 2), np.float32)
    w[:5, 0], w[5:, 0], w[:5, 1], w[5:, 1] = 8.0, -8.0, -8.0, 8.0
    b = np.full(10, -2.0, np.float32)
    c = np.full(2, -20.0, np.float32)
    return w, b, c


def mode_probs(v):
    first, second = v[..., :5].sum(-1), v[..., 5:].sum(-1)
    return np.mean((first >= 4) & (second <= 1)), np.mean((second >= 4) & (first <= 1))


@pytest.mark.slow
def test_pt_visits_modes_plain_gibbs_does_not(backend):
    w, b, c = bimodal_rbm()
    p, _ = path_probs(w, b, c, 1.0)
    vs = all_states(10)
    first, second = vs[:, :5].sum(1), vs[:, 5:].sum(1)
    exact_a = p[(first >= 4) & (second <= 1)].sum()
    assert exact_a > 0.4  # the two modes hold almost all the mass, half each
    d, base = make(backend, w, b, c)
    start = np.zeros((2000, 10), np.float32)
    start[:, :5] = 1.0  # every chain starts in mode A
    key = backend.key(0)
    v, _ = d.transition(key, backend.array(start), 300)
    a, bb = mode_probs(backend.np(v))
    assert a > 0.95 and bb < 0.01  # stuck: plain Gibbs never leaves mode A
    betas = np.linspace(0.0, 1.0, 10)
    ladder = backend.array(np.broadcast_to(start, (10, 2000, 10)).copy())
    x, _, stats = pt_run(backend.key(1), d, base, ladder, betas, 300)
    a, bb = mode_probs(backend.np(x)[-1])
    se = np.sqrt(exact_a * (1 - exact_a) / 2000)
    assert abs(a - exact_a) < 5 * se and abs(bb - exact_a) < 5 * se, (a, bb, exact_a)
    # tempered transitions cross the barrier too
    tt = TemperedTransitions(np.linspace(0.0, 1.0, 30))
    with pytest.deprecated_call():  # run records the acceptance on the operator
        v, _, _ = tt.run(backend.key(2), d, backend.array(start), 40)
    a, bb = mode_probs(backend.np(v))
    assert abs(a - exact_a) < 5 * se and abs(bb - exact_a) < 5 * se, (a, bb, exact_a)
    assert 0 < tt.acceptance < 1


@pytest.mark.parametrize("seed", [0, 1])
def test_tempered_transition_leaves_the_model_invariant(backend, seed):
    rng = np.random.default_rng(20 + seed)
    w, b, c = random_params(rng, 4, 3, scale=2.0)
    d, base = make(backend, w, b, c)
    x = exact_ladder_sample(rng, w, b, c, [1.0], 20000)[0]
    y, acc = tempered_transition(backend.key(seed), d, base, backend.array(x), np.linspace(0, 1, 6))
    counts = np.bincount(state_index(backend.np(y)), minlength=16)
    assert chi2_pvalue(counts, path_probs(w, b, c, 1.0)[0]) > 1e-4
    assert 0 < backend.np(acc).mean() < 1


def test_gaussian_rbm_pt_target_replica_moments(backend):
    from conftest import exact_mixture, gparams

    w, b, c, s = gparams(np.random.default_rng(3), 3, 4, scale=0.6)
    d = backend.GaussianRBM(*(backend.array(a) for a in (w, b, c, s)))
    pt = ParallelTempering(np.linspace(0.2, 1.0, 4))
    state = pt.init_state(backend.key(0), d, (3000, 3))
    with pytest.deprecated_call():  # run records the swap statistics on the operator
        state, v, h = pt.run(backend.key(1), d, state, 40)
    v = backend.np(v)
    ph, means = exact_mixture(w, b, c, s)
    mu = ph @ means
    sd = np.sqrt(ph @ means**2 + s.astype(np.float64) ** 2 - mu**2)
    np.testing.assert_array_less(np.abs(v.mean(0) - mu), 5 * sd / np.sqrt(3000))
    assert pt.stats is not None and np.all(pt.stats.acceptance > 0)


@pytest.mark.parametrize(
    "betas, match",
    [
        ([1.0], "at least 2"),
        ([0.0, 0.5], "end at 1"),
        ([0.5, 0.2, 1.0], "strictly increasing"),
        ([-0.1, 1.0], r"\[0, 1\]"),
        ([[0.0, 1.0]], "1-D"),
    ],
)
def test_bad_ladders(betas, match):
    with pytest.raises(ValueError, match=match):
        check_ladder(betas)
    with pytest.raises(ValueError, match=match):
        ParallelTempering(betas)


def _snapshot(op):
    """The operator's attributes, arrays as copies (to detect any change)."""
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(op).items()}


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k])
        else:
            assert a[k] is b[k] or a[k] == b[k], k


@pytest.mark.parametrize("kind", ["pt", "tt"])
def test_operators_are_pure(backend, kind):
    """step returns (state, info), gives the same result for the same state and key, and
    changes nothing on the operator (its statistics are in the info)."""
    from ebm_ppl.inference.tempering import PTInfo, TTInfo

    rng = np.random.default_rng(5)
    w, b, c = random_params(rng, 4, 3, scale=1.5)
    d, _ = make(backend, w, b, c)
    betas = np.linspace(0.0, 1.0, 4)
    op = ParallelTempering(betas) if kind == "pt" else TemperedTransitions(betas)
    state = op.init_state(backend.key(0), d, (50, 4))
    before = _snapshot(op)
    out = [op.step(backend.key(1), d, state, 3) for _ in range(2)]
    _same(before, _snapshot(op))
    (s1, i1), (s2, i2) = out
    np.testing.assert_array_equal(backend.np(s1), backend.np(s2))
    assert type(i1) is (PTInfo if kind == "pt" else TTInfo)
    for a, bb in zip(i1, i2):
        np.testing.assert_array_equal(backend.np(a), backend.np(bb))
    assert tuple(i1.hidden.shape) == (50, 3)
    if kind == "pt":
        assert tuple(s1.shape) == (4, 50, 4) and i1.acceptance.shape == (3,)
        # every pair is proposed on alternate steps: 3 steps propose 1 or 2 rounds of each
        assert set(backend.np(i1.proposed).tolist()) <= {50.0, 100.0}
        assert op.stats is None
    else:
        assert tuple(s1.shape) == (50, 4) and 0 <= float(backend.np(i1.acceptance)) <= 1
        assert op.acceptance is None


def test_combine_infos_and_diagnostics():
    from ebm_ppl.inference.tempering import (
        PTInfo,
        PTStats,
        TTInfo,
        combine_infos,
        tempering_diagnostics,
    )

    a = PTInfo(None, np.array([1.0, 0.0]), np.array([2.0, 0.0]))
    b = PTInfo(None, np.array([1.0, 3.0]), np.array([2.0, 4.0]))
    total = combine_infos(combine_infos(None, a), b)
    assert isinstance(total, PTStats)
    np.testing.assert_allclose(total.acceptance, [0.5, 0.75])
    assert tempering_diagnostics(total) == {"swap_acceptance": [0.5, 0.75]}
    tt = combine_infos(None, TTInfo(None, np.float32(0.25)))
    assert tempering_diagnostics(tt) == {"acceptance": 0.25}
    assert tempering_diagnostics(None) == {}


def test_operator_contract_errors_name_the_missing_members():
    from ebm_ppl.inference.samle import check_config

    class OldStyle:  # an operator with the pre-(state, info) interface only
        def init_state(self, key, dist, shape): ...
        def run(self, key, dist, state, num_steps): ...

    with pytest.raises(TypeError, match="transition must be.*step"):
        check_config(1, True, None, OldStyle())
