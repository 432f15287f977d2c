"""CategoricalRBM (softmax visible units, missing entries) against exact enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import chi2_pvalue, hidden_states

from ebm_ppl.inference.samle import SAConfig, init_chains, sa_objective


def cparams(rng, d, k, f, scale=1.0):
    w = (scale * rng.standard_normal((d, k, f))).astype(np.float32)
    b = (0.5 * rng.standard_normal((d, k))).astype(np.float32)
    a = (0.5 * rng.standard_normal(f)).astype(np.float32)
    return w, b, a


def states(d, k):
    return np.array(list(itertools.product(range(k), repeat=d)), dtype=np.float64)


def onehot(v, k):
    return (v[..., None] == np.arange(k)).astype(np.float64)


def exact(w, b, a, mask=None):
    """(states, p(v), log Z) over the observed units (mask: which of the D are present)."""
    w, b, a = (np.asarray(x, np.float64) for x in (w, b, a))
    d, k, _ = w.shape
    mask = np.ones(d, bool) if mask is None else mask
    vs = states(int(mask.sum()), k)
    x = onehot(vs, k)  # (S, d_obs, k)
    hs = hidden_states(w.shape[2])
    neg_e = (
        np.einsum("sdk,dkf,hf->sh", x, w[mask], hs)
        + np.einsum("sdk,dk->s", x, b[mask])[:, None]
        + (hs @ a)[None, :]
    )
    m = neg_e.max()
    log_z = m + np.log(np.exp(neg_e - m).sum())
    p = np.exp(neg_e - m).sum(1) / np.exp(neg_e - m).sum()
    return vs, p, log_z


@pytest.fixture
def cat(backend):
    if backend.name == "torch":
        from ebm_ppl.pyro import CategoricalRBM
    else:
        from ebm_ppl.numpyro import CategoricalRBM
    backend.Cat = CategoricalRBM
    return backend


def make(be, w, b, a, **kw):
    return be.Cat(*(be.array(x) for x in (w, b, a)), **kw)


@pytest.mark.parametrize("seed", [0, 1])
def test_log_partition_probabilities_and_missing_entries(cat, seed):
    be = cat
    w, b, a = cparams(np.random.default_rng(seed), 3, 3, 3, scale=1.5)
    vs, p, log_z = exact(w, b, a)
    d = make(be, w, b, a)
    assert float(be.np(d.log_partition())) == pytest.approx(log_z, abs=1e-4)
    lp = be.np(d.log_prob(be.array(vs))).astype(np.float64) - log_z
    np.testing.assert_allclose(np.exp(lp), p, rtol=1e-4, atol=1e-7)
    # a missing entry is absent from the energy: the RBM over the observed units
    mask = np.array([True, False, True])
    vs2, p2, log_z2 = exact(w, b, a, mask)
    v = np.full((len(vs2), 3), -1.0)
    v[:, mask] = vs2
    lp2 = be.np(d.log_prob(be.array(v))).astype(np.float64) - log_z2
    np.testing.assert_allclose(np.exp(lp2), p2, rtol=1e-4, atol=1e-7)


def test_conditionals(cat):
    be = cat
    w, b, a = cparams(np.random.default_rng(3), 4, 3, 3)
    d = make(be, w, b, a)
    v = np.array([[0, 2, 1, -1], [1, 1, 1, 1]], np.float32)
    hs = hidden_states(3)
    x = onehot(v.astype(np.int64), 3) * (v >= 0)[..., None]
    neg_e = np.einsum("ndk,dkf,hf->nh", x, w.astype(np.float64), hs) + (hs @ a)[None]
    post = np.exp(neg_e - neg_e.max(1, keepdims=True))
    post /= post.sum(1, keepdims=True)
    np.testing.assert_allclose(be.np(d.hidden_probs(be.array(v))), post @ hs, rtol=1e-4)
    h = hs[6:7].astype(np.float32)
    logits = b + np.einsum("dkf,f->dk", w, h[0])
    expect = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(be.np(d.visible_probs(be.array(h)))[0], expect, rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_gibbs_matches_exact_and_keeps_missing_entries(cat, seed):
    be = cat
    w, b, a = cparams(np.random.default_rng(10 + seed), 3, 3, 2, scale=1.0)
    vs, p, _ = exact(w, b, a)
    d = make(be, w, b, a, num_gibbs_steps=40)
    n = 3000
    key = be.key(seed)
    x = be.np(d.sample(key, (n,)) if be.name == "jax" else d.sample((n,)))
    idx = (x * np.array([9, 3, 1])).sum(1).astype(int)
    assert chi2_pvalue(np.bincount(idx, minlength=27), p) > 1e-4
    v = be.array(np.array([[0, -1, 2], [-1, -1, 1]], np.float32))
    out, _ = d.transition(be.key(seed), v, 3)
    out = be.np(out)
    assert (out[0, 1] == -1) and (out[1, :2] == -1).all() and (out[:, 2] >= 0).all()


def test_ais_matches_exact_log_z(cat):
    from ebm_ppl.numpyro import AIS as JAIS
    from ebm_ppl.pyro import AIS as TAIS

    be = cat
    w, b, a = cparams(np.random.default_rng(20), 15, 4, 8, scale=0.5)
    d = make(be, w, b, a)
    truth = float(be.np(d.log_partition()))
    kw = dict(betas=np.linspace(0, 1, 1001), num_runs=300, progress_bar=False)
    if be.name == "torch":
        be.key(0)
        r = TAIS(d, **kw)
    else:
        r = JAIS(d, rng_key=be.key(0), **kw)
    assert abs(r.log_z - truth) < 3 * r.log_z_stderr + 1e-3, (r.log_z, r.log_z_stderr, truth)


def test_sa_gradient_matches_exact_gradient(cat):
    be = cat
    rng = np.random.default_rng(5)
    w, b, a = cparams(rng, 3, 3, 3, scale=0.8)
    data = rng.integers(0, 3, (20, 3)).astype(np.float32)
    cfg = SAConfig(60, True, 20000)

    def nodes(d, x):
        return {"v": {"type": "sample", "fn": d, "value": x, "is_observed": True, "scale": None}}

    if be.name == "torch":
        import torch

        from ebm_ppl.pyro import CategoricalRBM

        be.key(0)
        p = [torch.tensor(x, requires_grad=True) for x in (w, b, a)]
        x = torch.as_tensor(data)
        d = CategoricalRBM(*p)
        (-(d.log_prob(x).mean() - d.log_partition())).backward()
        ex = [q.grad.numpy().copy() for q in p]
        for q in p:
            q.grad = None
        nd = nodes(CategoricalRBM(*p).expand((20,)), x)
        sa_objective(None, nd, init_chains(None, nd, cfg), cfg)[0].backward()
        sa = [q.grad.numpy() for q in p]
    else:
        import jax
        import jax.numpy as jnp

        from ebm_ppl.numpyro import CategoricalRBM

        p = tuple(jnp.asarray(x) for x in (w, b, a))
        x = jnp.asarray(data)
        ex = jax.grad(
            lambda q: -(CategoricalRBM(*q).log_prob(x).mean() - CategoricalRBM(*q).log_partition())
        )(p)
        k1, k2 = jax.random.split(jax.random.PRNGKey(0))
        chains = init_chains(k1, nodes(CategoricalRBM(*p).expand((20,)), x), cfg)
        sa = jax.grad(
            lambda q: sa_objective(k2, nodes(CategoricalRBM(*q).expand((20,)), x), chains, cfg)[0]
        )(p)
    tol = 6 * 0.5 / np.sqrt(20000)  # per-chain statistics are indicators
    for e, s in zip(ex, sa):
        np.testing.assert_allclose(np.asarray(s), np.asarray(e), atol=tol)


def test_backends_agree():
    from conftest import Backend

    from ebm_ppl.numpyro import CategoricalRBM as J
    from ebm_ppl.pyro import CategoricalRBM as T

    w, b, a = cparams(np.random.default_rng(7), 5, 4, 3)
    v = np.array([[0, 3, -1, 2, 1], [1, 1, 1, 1, 1]], np.float32)
    out = {}
    for name, cls in (("torch", T), ("jax", J)):
        be = Backend(name)
        d = cls(*(be.array(x) for x in (w, b, a)))
        out[name] = [be.np(d.log_prob(be.array(v))), be.np(d.log_partition())]
    for x, y in zip(out["torch"], out["jax"]):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "value, match",
    [
        ([[0.0, 3.0, 1.0]], "category indices in 0..2"),
        ([[0.0, -2.0, 1.0]], "category indices"),
        ([[0.0, 0.5, 1.0]], "category indices"),
        ([[0.0, np.nan, 1.0]], "NaN"),
        ([[0.0, 1.0]], r"shape \(\.\.\., 3\)"),
    ],
)
def test_bad_values(cat, value, match):
    d = make(cat, *cparams(np.random.default_rng(0), 3, 3, 2))
    shape = "shape" in match  # shape errors raise in both; support: per host (see conftest)
    with pytest.raises(ValueError, match=match) if shape else cat.out_of_support(match):
        d.log_prob(cat.array(value))


def test_bad_parameters(cat):
    w, b, a = cparams(np.random.default_rng(0), 3, 3, 2)
    with pytest.raises(ValueError, match="visible_bias must have shape"):
        make(cat, w, b[:, :2], a)
    with pytest.raises(ValueError, match="weights must have shape"):
        make(cat, w[0], b, a)
