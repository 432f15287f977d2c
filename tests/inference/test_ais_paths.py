"""AIS paths for deep models and RAISE, against exact answers on enumerable models, in both
backends: the interpolated-parameter path between two DBMs with either parity carried, the
matched base, model-to-model paths with their own start samples, route comparison, and
RAISE's unbiasedness for the annealing model (whose likelihood is computed exactly by
multiplying the transition matrices)."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from ebm_ppl.inference.ais import AISResult, compare_routes, linear_schedule


def frontend(backend):
    if backend.name == "torch":
        import ebm_ppl.pyro as fe
    else:
        import ebm_ppl.numpyro as fe
    return fe


def kw(backend, seed):
    if backend.name == "torch":
        backend.key(seed)
        return {"progress_bar": False}
    return {"rng_key": backend.key(seed), "progress_bar": False}


def tiny(seed, sizes, scale=1.0):
    rng = np.random.default_rng(seed)
    ws = [
        (scale * rng.standard_normal((a, b))).astype(np.float32) for a, b in zip(sizes, sizes[1:])
    ]
    bs = [(0.5 * rng.standard_normal(n)).astype(np.float32) for n in sizes]
    return ws, bs


def make_dbm(backend, ws, bs):
    fe = frontend(backend)
    return fe.DBM([backend.array(w) for w in ws], [backend.array(b) for b in bs])


def states(n):
    return np.array(list(itertools.product([0, 1], repeat=n)), dtype=np.float64)


def split(x, sizes):
    cuts = np.cumsum((0,) + tuple(sizes))
    return [x[:, a:b] for a, b in zip(cuts, cuts[1:])]


def neg_energy(ws, bs, layers):
    out = 0.0
    for i, w in enumerate(ws):
        out = out + np.einsum("ni,ij,nj->n", layers[i], np.float64(w), layers[i + 1])
    for i, b in enumerate(bs):
        out = out + layers[i] @ np.float64(b)
    return out


def lse(x, axis=None):
    m = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True)), axis=axis)


def exact_log_z(ws, bs):
    sizes = [len(b) for b in bs]
    return lse(neg_energy(ws, bs, split(states(sum(sizes)), sizes)))


def carried_index(sizes, carry):
    return list(range(1 if carry == "odd" else 0, len(sizes), 2))


def exact_log_f(ws, bs, carry, x):
    """log sum over the other parity of exp(-E), for carried states x (rows), in numpy."""
    sizes = [len(b) for b in bs]
    keep = carried_index(sizes, carry)
    other = [i for i in range(len(sizes)) if i not in keep]
    ys = states(sum(sizes[i] for i in other))
    out = []
    for row in x:
        layers = [None] * len(sizes)
        for i, part in zip(keep, split(row[None], [sizes[i] for i in keep])):
            layers[i] = np.repeat(part, len(ys), 0)
        for i, part in zip(other, split(ys, [sizes[i] for i in other])):
            layers[i] = part
        out.append(lse(neg_energy(ws, bs, layers)))
    return np.array(out)


def interpolate(a, b, beta):
    return [(1 - beta) * np.float64(x) + beta * np.float64(y) for x, y in zip(a, b)]


SIZES = (3, 2, 3)


@pytest.mark.parametrize("carry", ["odd", "even"])
@pytest.mark.parametrize("start_kind", ["factorial", "model"])
@pytest.mark.parametrize("sizes", [SIZES, (2, 2, 3, 2)], ids=["2 layers", "3 layers"])
def test_path_log_f_is_the_interpolated_dbm(backend, carry, start_kind, sizes):
    """log f_beta of the carried layers is minus the free energy of the DBM with linearly
    interpolated parameters, at every beta: exact at 0 (the start), 1 (the target) and
    between; so its sum over states is that DBM's log Z."""
    fe = frontend(backend)
    ws, bs = tiny(0, sizes, 1.5)
    dbm = make_dbm(backend, ws, bs)
    if start_kind == "factorial":
        rng = np.random.default_rng(1)
        logits = [rng.standard_normal(n).astype(np.float32) for n in sizes]
        ws_a, bs_a = [np.zeros_like(w) for w in ws], logits
        path = dbm.ais_path(fe.DBMBase(tuple(backend.array(a) for a in logits)), carry=carry)
        assert float(backend.np(path.log_z_start)) == pytest.approx(
            exact_log_z(ws_a, bs_a), abs=1e-4
        )
    else:
        ws_a, bs_a = tiny(2, sizes, 1.0)
        path = dbm.ais_path(make_dbm(backend, ws_a, bs_a), carry=carry, log_z_start=1.25)
        assert path.log_z_start == 1.25
    keep = carried_index(sizes, carry)
    x = states(sum(sizes[i] for i in keep))
    for beta in (0.0, 0.37, 1.0):
        got = backend.np(dbm.ais_log_f(backend.array(x), beta, path)).astype(np.float64)
        w_b, b_b = interpolate(ws_a, ws, beta), interpolate(bs_a, bs, beta)
        np.testing.assert_allclose(got, exact_log_f(w_b, b_b, carry, x), atol=2e-4)
    # one step adds log f_beta - log f_beta_prev
    _, delta = dbm.ais_step(backend.key(0), backend.array(x), 0.2, 0.6, path)
    expected = backend.np(dbm.ais_log_f(backend.array(x), 0.6, path)) - backend.np(
        dbm.ais_log_f(backend.array(x), 0.2, path)
    )
    np.testing.assert_allclose(backend.np(delta), expected, atol=2e-4)


@pytest.mark.parametrize("carry", ["odd", "even"])
@pytest.mark.parametrize("seed", [0, 1])
def test_ais_from_the_matched_base_is_exact_within_error_bars(backend, carry, seed):
    """Forward AIS from the matched base and reverse AIS from exact samples agree with the
    exact log Z within 4 standard errors, for either parity carried."""
    fe = frontend(backend)
    sizes = (5, 4, 6)
    ws, bs = tiny(10 + seed, sizes, 1.5)
    dbm = make_dbm(backend, ws, bs)
    log_z = exact_log_z(ws, bs)
    key = backend.key(seed)
    exact = (
        dbm.exact_sample(key, (100,)) if backend.name == "jax" else dbm.exact_sample(None, (100,))
    )
    base = dbm.matched_base(exact[:, : sizes[0]], num_iters=50)
    path = dbm.ais_path(base, carry=carry)
    res = fe.AIS(dbm, path, linear_schedule(300), 100, reverse_samples=exact, **kw(backend, seed))
    assert abs(res.log_z - log_z) < 4 * res.log_z_stderr + 1e-3
    assert abs(res.reverse.log_z - log_z) < 4 * res.reverse.log_z_stderr + 1e-3


def test_matched_base_logits_are_the_average_mean_field_marginals(backend):
    ws, bs = tiny(3, SIZES)
    dbm = make_dbm(backend, ws, bs)
    v = (np.random.default_rng(0).random((40, 3)) < 0.4).astype(np.float32)
    base = dbm.matched_base(backend.array(v), num_iters=40, pseudocount=0.5, batch_size=7)
    mus = dbm.mean_field(backend.array(v), num_iters=40)
    for logit, mu in zip(base.logits, mus):
        p = (backend.np(mu).astype(np.float64).sum(0) + 0.5) / (40 + 1.0)
        np.testing.assert_allclose(backend.np(logit), np.log(p / (1 - p)), atol=1e-4)
    with pytest.raises(ValueError, match="binary"):
        dbm.matched_base(backend.array(np.full((2, 3), 0.5, np.float32)))
    with pytest.raises(ValueError, match="pseudocount"):
        dbm.matched_base(backend.array(v), pseudocount=0.0)


def test_model_to_model_path_switching_on_the_top_weights(backend):
    """log Z of a DBM from the same DBM with its top weights switched off (an RBM times
    independent top units, log Z exact here), annealed from exact samples of the start;
    the start's standard error is carried into the result."""
    fe = frontend(backend)
    sizes = (4, 5, 3)
    ws, bs = tiny(20, sizes, 1.5)
    dbm = make_dbm(backend, ws, bs)
    ws_a = [ws[0], np.zeros_like(ws[1])]
    start = make_dbm(backend, ws_a, bs)
    log_z_a = exact_log_z(ws_a, bs)
    key = backend.key(0)
    x0 = (
        start.exact_sample(key, (200,))
        if backend.name == "jax"
        else start.exact_sample(None, (200,))
    )
    prev = AISResult(log_z_a, 0.05, (0.0, 0.0), np.zeros(1), 1.0, 0.0, "forward", 2)
    for carry in ("odd", "even"):
        path = dbm.ais_path(start, carry=carry, log_z_start=prev)
        res = fe.AIS(dbm, path, linear_schedule(200), 200, start_samples=x0, **kw(backend, 1))
        own = np.sqrt(res.log_z_stderr**2 - 0.05**2)
        assert abs(res.log_z - exact_log_z(ws, bs)) < 4 * own + 1e-3
        assert res.log_z_stderr > 0.05
    with pytest.raises(ValueError, match="start_samples"):
        fe.AIS(dbm, path, linear_schedule(10), 5, **kw(backend, 0))
    with pytest.raises(ValueError, match="log_z_start"):
        dbm.ais_path(start)
    with pytest.raises(ValueError, match="layer sizes"):
        dbm.ais_path(make_dbm(backend, *tiny(0, (4, 5, 2))), log_z_start=0.0)
    with pytest.raises(ValueError, match="carry must be"):
        dbm.ais_path(None, carry="all")


def test_compare_routes_brackets_and_warnings():
    """Forward estimates are lower ends, reverse ones upper ends: routes agree when the
    tightest bracket is narrow, even if a poor route's own bracket is wide."""
    a = AISResult(10.0, 0.1, (9.7, 10.3), np.zeros(3), 3.0, 0.0, "forward", 2)
    a.reverse = AISResult(10.2, 0.1, (9.9, 10.5), np.zeros(3), 3.0, 0.0, "reverse", 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = compare_routes(
            {"matched": a, "poor": (4.0, 0.3), "poor (reverse)": (40.0, 0.3, "reverse")}
        )
    assert r.lower == 10.0 and r.upper == 10.2 and r.spread == pytest.approx(0.2) and r.agree
    assert r.best == "matched (reverse)" and r.log_z == 10.2 and "bracket 0.200" in str(r)
    r = compare_routes({"a": (10.0, 0.1), "b": (10.4, 0.2)})  # forward only: their spread
    assert r.agree and r.upper is None and r.spread == pytest.approx(0.4) and r.log_z == 10.4
    with pytest.warns(RuntimeWarning, match="disagree by 3.00 nats"):
        r = compare_routes({"a": a, "b": (13.2, 0.1)})  # a forward route above a reverse one
    assert not r.agree and r.log_z == 13.2
    with pytest.raises(ValueError, match="non-empty"):
        compare_routes({})
    with pytest.raises(ValueError, match="forward"):
        compare_routes({"r": (1.0, 0.1, "reverse")})
    with pytest.raises(TypeError, match="AISResult, "):
        compare_routes({"a": "x"})
    with pytest.raises(TypeError, match="AISResult, "):
        compare_routes({"a": (1.0, 0.1, "sideways")})


# --------------------------------------------------------------------------------------
# RAISE: the annealing model's likelihood, exactly, by multiplying transition matrices
# --------------------------------------------------------------------------------------


def bern(x, logits):
    """prod_j p(x_j) for rows x (S, n) under independent Bernoullis with logits (..., n)."""
    p = 1 / (1 + np.exp(-logits))
    return np.prod(
        np.where(
            x[None] > 0.5, p[:, None] if p.ndim > 1 else p, 1 - (p[:, None] if p.ndim > 1 else p)
        ),
        -1,
    )


def rbm_annealing_model(w, b, c, a, betas):
    """p_ann over v: base Bernoulli(a), then the block-Gibbs kernels at betas[1:] in order."""
    w, b, c, a = map(np.float64, (w, b, c, a))
    vs, hs = states(len(b)), states(len(c))
    p = bern(vs, a[None])[0]
    for beta in betas[1:]:
        ph = bern(hs, beta * (c + vs @ w))  # (V, H): p(h | v)
        pv = bern(vs, (1 - beta) * a + beta * (b + hs @ w.T))  # (H, V): p(v' | h)
        p = p @ (ph @ pv)
    return vs, p


def exact_rbm_log_p(w, b, c):
    vs = states(len(b))
    neg_f = vs @ np.float64(b) + np.logaddexp(0, np.float64(c) + vs @ np.float64(w)).sum(-1)
    return neg_f - lse(neg_f)


def check_unbiased(log_w, p_ann):
    """mean(w) / p_ann = 1 within 4 standard errors, per data point (columns)."""
    r = np.exp(log_w - np.log(p_ann)[None])
    se = r.std(0, ddof=1) / np.sqrt(r.shape[0])
    assert np.all(np.abs(r.mean(0) - 1) < 4 * se + 1e-3), (r.mean(0), se)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.slow
def test_raise_rbm_is_unbiased_for_the_annealing_model(backend, seed):
    fe = frontend(backend)
    rng = np.random.default_rng(seed)
    w = (1.5 * rng.standard_normal((5, 3))).astype(np.float32)
    b, c = (
        (0.5 * rng.standard_normal(5)).astype(np.float32),
        (0.5 * rng.standard_normal(3)).astype(np.float32),
    )
    a = (0.3 * rng.standard_normal(5)).astype(np.float32)
    rbm = backend.RBM(backend.array(w), backend.array(b), backend.array(c))
    betas = linear_schedule(6)
    vs, p_ann = rbm_annealing_model(w, b, c, a, betas)
    pick = rng.choice(len(vs), 3, replace=False)
    data = backend.array(vs[pick])
    base = fe.BernoulliBase(backend.array(a))
    k = kw(backend, seed)
    res = fe.RAISE(rbm, data, base, betas, num_samples=3000, **k)
    assert res.log_weights.shape == (3000, 3)
    check_unbiased(res.log_weights, p_ann[pick])


def test_raise_is_conservative_and_tightens_with_more_betas(backend):
    """The annealing model is a proper distribution, so on data from the model its expected
    log-likelihood is below the exact one, and it approaches it as the schedule gets finer;
    RAISE's average (one run per point) stays below the exact average and reaches it."""
    fe = frontend(backend)
    rng = np.random.default_rng(5)
    w = (2.0 * rng.standard_normal((5, 3))).astype(np.float32)
    b, c = (0.5 * rng.standard_normal(5)).astype(np.float32), np.zeros(3, np.float32)
    a = np.zeros(5, np.float32)
    log_p = exact_rbm_log_p(w, b, c)
    p = np.exp(log_p)
    gaps = []
    for k in (3, 30, 300):
        _, p_ann = rbm_annealing_model(w, b, c, a, linear_schedule(k))
        gaps.append(p @ (log_p - np.log(p_ann)))  # KL(p || p_ann) >= 0
    assert gaps[0] > gaps[1] > gaps[2] >= 0 and gaps[2] < 0.01
    rbm = backend.RBM(backend.array(w), backend.array(b), backend.array(c))
    idx = rng.choice(len(p), size=400, p=p)
    data = backend.array(states(5)[idx])
    base = fe.BernoulliBase(backend.array(a))
    for k, tol in ((3, None), (300, 0.05)):
        res = fe.RAISE(rbm, data, base, linear_schedule(k), **kw(backend, 3))
        exact = log_p[idx].mean()
        assert res.summary.mean < exact + 4 * res.summary.stderr
        if tol is not None:
            assert res.summary.mean > exact - tol - 4 * res.summary.stderr


def dbm_even_annealing_model(ws, bs, logits, betas):
    """p_ann over the even layers (v, h2) of a 2-layer DBM; h1 is summed out in each sweep."""
    w1, w2 = map(np.float64, ws)
    b0, b1, b2 = map(np.float64, bs)
    a0, a1, a2 = map(np.float64, logits)
    n0, n2 = len(b0), len(b2)
    xs, h1s = states(n0 + n2), states(len(b1))
    v, h2 = xs[:, :n0], xs[:, n0:]
    p = bern(xs, np.concatenate([a0, a2])[None])[0]
    for beta in betas[1:]:
        ph1 = bern(h1s, (1 - beta) * a1 + beta * (b1 + v @ w1 + h2 @ w2.T))  # (X, H1)
        lv = (1 - beta) * a0 + beta * (b0 + h1s @ w1.T)
        l2 = (1 - beta) * a2 + beta * (b2 + h1s @ w2)
        px = bern(xs, np.concatenate([lv, l2], -1))  # (H1, X)
        p = p @ (ph1 @ px)
    return xs, p.reshape(2**n0, 2**n2).sum(1)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.slow
def test_raise_dbm_is_unbiased_for_the_annealing_model(backend, seed):
    """RAISE on a DBM (h2 proposed from the mean-field posterior, v and h2 carried, h1
    summed out) is unbiased for the annealing model's p_ann(v)."""
    fe = frontend(backend)
    sizes = (3, 2, 2)
    ws, bs = tiny(30 + seed, sizes, 1.5)
    dbm = make_dbm(backend, ws, bs)
    rng = np.random.default_rng(seed)
    logits = [(0.3 * rng.standard_normal(n)).astype(np.float32) for n in sizes]
    betas = linear_schedule(5)
    _, p_ann = dbm_even_annealing_model(ws, bs, logits, betas)
    pick = np.array([0, 5, 6])
    data = backend.array(states(3)[pick])
    base = fe.DBMBase(tuple(backend.array(x) for x in logits))
    res = fe.RAISE(dbm, data, base, betas, num_samples=2000, **kw(backend, seed))
    check_unbiased(res.log_weights, p_ann[pick])
    with pytest.raises(ValueError, match="carries v"):
        fe.RAISE(dbm, data, dbm.ais_path(base, carry="odd"), betas, **kw(backend, seed))


def test_gaussian_model_to_model_path_needs_the_same_sigma(backend):
    fe = frontend(backend)
    ws, bs = tiny(40, (2, 3, 2))
    arrays = ([backend.array(w) for w in ws], [backend.array(b) for b in bs])
    a = fe.DBM(*arrays, sigma=backend.array(np.array([0.8, 1.3], np.float32)))
    b = fe.DBM(*arrays, sigma=backend.array(np.array([0.8, 1.0], np.float32)))
    with pytest.raises(ValueError, match="same visible standard deviations"):
        a.ais_path(b, log_z_start=0.0)
    with pytest.raises(ValueError, match="same kind of visible units"):
        a.ais_path(make_dbm(backend, ws, bs), log_z_start=0.0)
    assert a.ais_path(a, log_z_start=1.0, carry="even").carry == "even"


@pytest.mark.parametrize("seed", [0, 1])
def test_three_layer_dbm_both_parities_match_exact_log_z(seed):
    """A 3-layer DBM (Pyro: no compilation): forward from the matched base and reverse from
    exact samples, with the odd layers (h1, h3) or the even ones (v, h2) carried."""
    from conftest import Backend

    backend = Backend("torch")
    fe = frontend(backend)
    sizes = (3, 4, 3, 4)
    ws, bs = tiny(60 + seed, sizes, 1.2)
    dbm = make_dbm(backend, ws, bs)
    backend.key(seed)
    exact = dbm.exact_sample(None, (200,))
    base = dbm.matched_base(exact[:, :3], num_iters=50)
    for carry in ("odd", "even"):
        res = fe.AIS(dbm, dbm.ais_path(base, carry), linear_schedule(300), 200,
                     reverse_samples=exact, **kw(backend, seed))  # fmt: skip
        log_z = exact_log_z(ws, bs)
        assert abs(res.log_z - log_z) < 4 * res.log_z_stderr + 1e-3
        assert abs(res.reverse.log_z - log_z) < 4 * res.reverse.log_z_stderr + 1e-3
