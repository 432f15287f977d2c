"""Replicated softmax (eq. 15-19) against exact oracles, in both backends.

Oracle: enumerate every count vector of a small dictionary with a given length M (and every
hidden state), in float64.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import chi2_pvalue, hidden_states

from ebm_ppl.inference.samle import SAConfig, init_chains, sa_objective


def rparams(rng, k, f, scale=0.8):
    w = (scale * rng.standard_normal((k, f))).astype(np.float32)
    b = (0.5 * rng.standard_normal(k)).astype(np.float32)
    a = (0.3 * rng.standard_normal(f)).astype(np.float32)
    return w, b, a


def count_vectors(k, m):
    """All count vectors of k words summing to m, float64 rows."""
    out = [c for c in itertools.product(range(m + 1), repeat=k) if sum(c) == m]
    return np.array(out, dtype=np.float64)


def log_coef(v):
    from scipy.special import gammaln

    return gammaln(v.sum(-1) + 1) - gammaln(v + 1).sum(-1)


def exact_count_probs(w, b, a, m):
    """p(v) over count_vectors(K, m) by brute force over (V, h)."""
    w, b, a = (np.asarray(x, np.float64) for x in (w, b, a))
    vs = count_vectors(w.shape[0], m)
    hs = hidden_states(w.shape[1])
    neg_e = vs @ w @ hs.T + (vs @ b)[:, None] + m * (hs @ a)[None, :]  # sequence energy
    log_joint = neg_e + log_coef(vs)[:, None]  # count-vector joint
    mx = log_joint.max()
    log_z = mx + np.log(np.exp(log_joint - mx).sum())
    lp = mx + np.log(np.exp(log_joint - mx).sum(1)) - log_z
    return vs, np.exp(lp), log_z


def make(backend, w, b, a, **kw):
    return backend.RSM(*(backend.array(x) for x in (w, b, a)), **kw)


@pytest.fixture
def rsm_backend(backend):
    if backend.name == "torch":
        from ebm_ppl.pyro import ReplicatedSoftmax
    else:
        from ebm_ppl.numpyro import ReplicatedSoftmax
    backend.RSM = ReplicatedSoftmax
    return backend


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("m", [1, 4])
def test_log_partition_and_normalized_probs(rsm_backend, seed, m):
    be = rsm_backend
    w, b, a = rparams(np.random.default_rng(seed), 3, 4, scale=1.2)
    vs, p, log_z = exact_count_probs(w, b, a, m)
    d = make(be, w, b, a, total_count=m)
    assert float(be.np(d.log_partition())) == pytest.approx(log_z, abs=1e-4)
    lp = be.np(d.log_prob(be.array(vs))).astype(np.float64) - log_z
    np.testing.assert_allclose(np.exp(lp), p, rtol=1e-4, atol=1e-7)
    assert np.exp(lp).sum() == pytest.approx(1.0, abs=1e-5)


def test_conditionals_from_the_joint(rsm_backend):
    be = rsm_backend
    rng = np.random.default_rng(3)
    w, b, a = rparams(rng, 5, 3)
    d = make(be, w, b, a)
    v = np.array([[2, 0, 1, 0, 3], [0, 0, 0, 1, 0], [4, 4, 0, 0, 1]], np.float32)
    hs = hidden_states(3)
    e = be.np(d.energy(be.array(v[:, None, :]), be.array(hs[None].astype(np.float32))))
    e = e.astype(np.float64)
    m = v.sum(1, keepdims=True).astype(np.float64)
    expect = -(v @ w.astype(np.float64) @ hs.T + (v @ b)[:, None] + m * (hs @ a)[None, :])
    np.testing.assert_allclose(e, expect, rtol=1e-5, atol=1e-4)  # eq. 17
    post = np.exp(-e - (-e).max(1, keepdims=True))
    post /= post.sum(1, keepdims=True)
    np.testing.assert_allclose(be.np(d.hidden_probs(be.array(v))), post @ hs, rtol=1e-4)
    # eq. 19: softmax(b + W h)
    h = hs[5:6].astype(np.float32)
    logits = b + w @ h[0]
    expect = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(be.np(d.word_probs(be.array(h)))[0], expect, rtol=1e-5)
    assert be.np(d.reconstruct(be.array(v))).shape == (3, 5)


@pytest.mark.parametrize("seed", [0, 1])
def test_gibbs_chains_match_exact_distribution_and_keep_lengths(rsm_backend, seed):
    be = rsm_backend
    w, b, a = rparams(np.random.default_rng(10 + seed), 3, 3, scale=1.0)
    m = 4
    vs, p, _ = exact_count_probs(w, b, a, m)
    d = make(be, w, b, a, total_count=m, num_gibbs_steps=40)
    n = 3000
    key = be.key(seed)
    x = be.np(d.sample(key, (n,)) if be.name == "jax" else d.sample((n,)))
    assert np.all(x.sum(1) == m)
    index = {tuple(r): i for i, r in enumerate(vs.astype(int))}
    counts = np.bincount([index[tuple(r)] for r in x.astype(int)], minlength=len(vs))
    assert chi2_pvalue(counts, p) > 1e-4
    # transitions keep every document's own length
    docs = be.array(np.array([[1, 0, 1], [5, 2, 0]], np.float32))
    out, _ = d.transition(be.key(seed), docs, 3)
    np.testing.assert_array_equal(be.np(out).sum(1), [2, 7])


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.jax_optimized
def test_ais_matches_exact_log_z(rsm_backend, seed):
    from ebm_ppl.numpyro import AIS as JAIS
    from ebm_ppl.pyro import AIS as TAIS

    be = rsm_backend
    w, b, a = rparams(np.random.default_rng(20 + seed), 30, 8, scale=0.5)
    m = 25
    d = make(be, w, b, a, total_count=m)
    exact = float(be.np(d.log_partition()))
    kw = dict(betas=np.linspace(0, 1, 1001), num_runs=300, progress_bar=False)
    if be.name == "torch":
        be.key(seed)
        r = TAIS(d, **kw)
    else:
        r = JAIS(d, rng_key=be.key(seed), **kw)
    assert abs(r.log_z - exact) < 3 * r.log_z_stderr + 1e-3, (r.log_z, r.log_z_stderr, exact)
    assert r.log_z_stderr < 0.1


@pytest.mark.jax_optimized  # 60 sweeps of 20,000 chains: execution, not compilation
def test_sa_gradient_matches_exact_gradient(rsm_backend):
    be = rsm_backend
    rng = np.random.default_rng(5)
    w, b, a = rparams(rng, 3, 3, scale=0.8)
    m = 4
    data = count_vectors(3, m)[rng.integers(0, 15, 20)].astype(np.float32)
    cfg = SAConfig(60, True, 20000)
    nodes = lambda d, x: {  # noqa: E731
        "v": {"type": "sample", "fn": d, "value": x, "is_observed": True, "scale": None}
    }
    if be.name == "torch":
        import torch

        from ebm_ppl.pyro import ReplicatedSoftmax

        be.key(0)
        p = [torch.tensor(x, requires_grad=True) for x in (w, b, a)]
        x = torch.as_tensor(data)
        d = ReplicatedSoftmax(*p, total_count=m)
        (-(d.log_prob(x).mean() - d.log_partition())).backward()
        exact = [q.grad.numpy().copy() for q in p]
        for q in p:
            q.grad = None
        nd = nodes(ReplicatedSoftmax(*p, total_count=m).expand((20,)), x)
        sa_objective(None, nd, init_chains(None, nd, cfg), cfg)[0].backward()
        sa = [q.grad.numpy() for q in p]
    else:
        import jax
        import jax.numpy as jnp

        from ebm_ppl.numpyro import ReplicatedSoftmax

        p = tuple(jnp.asarray(x) for x in (w, b, a))
        x = jnp.asarray(data)

        def nll(q):
            d = ReplicatedSoftmax(*q, total_count=m)
            return -(d.log_prob(x).mean() - d.log_partition())

        exact = jax.grad(nll)(p)
        k1, k2 = jax.random.split(jax.random.PRNGKey(0))
        chains = init_chains(k1, nodes(ReplicatedSoftmax(*p, total_count=m).expand((20,)), x), cfg)
        sa = jax.jit(  # one compiled program rather than 60 sweeps dispatched op by op
            jax.grad(
                lambda q: sa_objective(
                    k2, nodes(ReplicatedSoftmax(*q, total_count=m).expand((20,)), x), chains, cfg
                )[0]
            )
        )(p)
    # per-chain statistics are bounded by M = 4 (counts) and 1 (hidden units)
    tol = 6 * m / np.sqrt(20000)
    for e, s in zip(exact, sa):
        np.testing.assert_allclose(np.asarray(s), np.asarray(e), atol=tol)


def test_backends_agree():
    from conftest import Backend

    from ebm_ppl.numpyro import ReplicatedSoftmax as J
    from ebm_ppl.pyro import ReplicatedSoftmax as T

    w, b, a = rparams(np.random.default_rng(7), 6, 4)
    v = np.array([[1, 0, 3, 0, 0, 2], [0, 5, 0, 1, 1, 0]], np.float32)
    out = {}
    for name, cls in (("torch", T), ("jax", J)):
        be = Backend(name)
        d = cls(*(be.array(x) for x in (w, b, a)), total_count=6)
        x = be.array(v)
        out[name] = [be.np(d.log_prob(x)), be.np(d.hidden_probs(x)), be.np(d.log_partition())]
    for x, y in zip(out["torch"], out["jax"]):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "value, match",
    [
        ([[1.0, -1.0, 2.0]], "non-negative whole numbers"),
        ([[1.0, 0.5, 2.0]], "non-negative whole numbers"),
        ([[1.0, np.nan, 2.0]], "NaN"),
        ([[1.0, 2.0]], r"shape \(\.\.\., 3\)"),
    ],
)
def test_bad_counts(rsm_backend, value, match):
    be = rsm_backend
    d = make(be, *rparams(np.random.default_rng(0), 3, 2))
    shape = "shape" in match  # shape errors raise in both; support: per host (see conftest)
    with pytest.raises(ValueError, match=match) if shape else be.out_of_support(match):
        d.log_prob(be.array(value))


def test_bad_parameters_and_missing_length(rsm_backend):
    be = rsm_backend
    w, b, a = rparams(np.random.default_rng(0), 3, 2)
    with pytest.raises(ValueError, match="word_bias must have shape"):
        make(be, w, b[:2], a)
    with pytest.raises(ValueError, match="total_count must hold"):
        make(be, w, b, a, total_count=2.5)
    with pytest.raises(ValueError, match="total_count=M"):
        make(be, w, b, a).log_partition()


@pytest.mark.parametrize("method", ["words", "halves"])
def test_multinomial_samplers_are_exact(backend, method):
    """Both exact multinomial samplers (word by word with a bound; binomial splitting with
    static shapes) against the exact distribution of small count vectors (chi-square)."""
    from ebm_ppl.ops import _multinomial_by_halves, _multinomial_by_words

    p = np.array([0.1, 0.25, 0.05, 0.6, 0.0], np.float32)  # a zero-probability word too
    n = 4000
    m = np.where(np.arange(n) % 2 == 0, 3.0, 4.0).astype(np.float32)
    key = backend.key(1)
    probs = backend.array(np.tile(p, (n, 1)))
    if method == "words":
        x = _multinomial_by_words(key, backend.array(m), probs, 4)
    else:
        x = _multinomial_by_halves(key, backend.array(m), probs)
    x = backend.np(x)
    np.testing.assert_array_equal(x.sum(1), m)
    assert (x[:, 4] == 0).all()
    for length in (3, 4):
        rows = x[m == length][:, :4]
        vs = count_vectors(4, length)
        index = {tuple(r): i for i, r in enumerate(vs.astype(int))}
        counts = np.bincount([index[tuple(r)] for r in rows.astype(int)], minlength=len(vs))
        q = p[:4].astype(np.float64)
        probs_exact = np.exp(log_coef(vs) + (vs * np.log(q)).sum(1))
        assert chi2_pvalue(counts, probs_exact / probs_exact.sum()) > 1e-4


def test_perplexity_with_exact_log_z(rsm_backend):
    """perplexity() = exp(-sum log p(V_n) / sum M_n) with the sequence probability."""
    be = rsm_backend
    w, b, a = rparams(np.random.default_rng(8), 3, 3)
    docs = np.array([[1, 0, 2], [0, 4, 0], [1, 1, 1], [2, 0, 0]], np.float32)
    d = make(be, w, b, a)
    lengths = sorted(set(docs.sum(1).astype(int).tolist()))
    log_z = d.with_total_count(be.array(lengths)).log_partition()
    table = dict(zip(lengths, be.np(log_z).tolist()))
    expect = []
    for v in docs:
        vs, p, _ = exact_count_probs(w, b, a, int(v.sum()))
        i = [tuple(r) for r in vs.astype(int)].index(tuple(v.astype(int)))
        expect.append(np.log(p[i]) - log_coef(v[None].astype(np.float64))[0])
    ppl = np.exp(-np.sum(expect) / docs.sum())
    assert d.perplexity(be.array(docs), table) == pytest.approx(ppl, rel=1e-4)
    with pytest.raises(ValueError, match="no entry for the document lengths"):
        d.perplexity(be.array(docs), {3: 0.0})


def test_max_words_bound_inside_jit():
    """With max_words, NumPyro draws words one by one inside jit; longer documents are refused."""
    import jax
    import jax.numpy as jnp

    from ebm_ppl.numpyro import ReplicatedSoftmax

    w, b, a = rparams(np.random.default_rng(9), 6, 3)
    d = ReplicatedSoftmax(*(jnp.asarray(x) for x in (w, b, a)), max_words=10)
    docs = jnp.asarray(np.array([[1, 0, 2, 0, 0, 3], [0, 0, 0, 0, 10, 0]], np.float32))
    out = jax.jit(lambda k, v, dist: dist.transition(k, v, 4)[0])(jax.random.PRNGKey(0), docs, d)
    np.testing.assert_array_equal(np.asarray(out).sum(1), [6, 10])
    with pytest.raises(ValueError, match="more than max_words=10"):
        d.log_prob(jnp.asarray(np.array([[11, 0, 0, 0, 0, 0]], np.float32)))
    with pytest.raises(ValueError, match="max_words must be a positive int"):
        ReplicatedSoftmax(*(jnp.asarray(x) for x in (w, b, a)), max_words=0)
