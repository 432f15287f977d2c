"""Exact oracles for the binary RBM, on both backends (eq. 1-8)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import all_states, exact_visible_probs, random_params
from scipy.special import logsumexp


def brute_log_z(w, b, c) -> float:
    w, b, c = (np.asarray(a, np.float64) for a in (w, b, c))
    vs = all_states(w.shape[0]).astype(np.float64)
    hs = all_states(w.shape[1]).astype(np.float64)
    neg_e = vs @ w @ hs.T + (vs @ b)[:, None] + (hs @ c)[None, :]
    return float(logsumexp(neg_e))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(6, 4), (4, 7), (5, 5)])
def test_log_partition_matches_brute_force(backend, seed, shape):
    w, b, c = random_params(np.random.default_rng(seed), *shape, scale=1.5)
    d = backend.RBM(backend.array(w), backend.array(b), backend.array(c))
    assert float(backend.np(d.log_partition())) == pytest.approx(brute_log_z(w, b, c), rel=1e-5)


def test_log_prob_normalizes_and_matches_joint(backend):
    w, b, c = random_params(np.random.default_rng(3), 7, 3, scale=2.0)
    d = backend.RBM(backend.array(w), backend.array(b), backend.array(c))
    vs = all_states(7)
    log_p = backend.np(d.log_prob(backend.array(vs))) - float(backend.np(d.log_partition()))
    assert logsumexp(log_p) == pytest.approx(0.0, abs=1e-5)
    np.testing.assert_allclose(np.exp(log_p), exact_visible_probs(w, b, c), rtol=1e-4, atol=1e-7)
    # free energy = -log sum_h exp(-E(v, h)), checked against the joint energy
    hs = all_states(3)
    e = backend.np(d.energy(backend.array(vs[:, None, :]), backend.array(hs[None, :, :])))
    np.testing.assert_allclose(
        -logsumexp(-e.astype(np.float64), axis=1),
        backend.np(d.free_energy(backend.array(vs))),
        rtol=1e-5,
        atol=1e-5,
    )


def test_conditionals_match_enumeration(backend):
    rng = np.random.default_rng(4)
    w, b, c = random_params(rng, 5, 4, scale=1.5)
    d = backend.RBM(backend.array(w), backend.array(b), backend.array(c))
    vs, hs = all_states(5).astype(np.float64), all_states(4).astype(np.float64)
    joint = np.exp(vs @ w @ hs.T + (vs @ b)[:, None] + (hs @ c)[None, :])
    # p(h_j = 1 | v) (eq. 7) and p(v_i = 1 | h) (eq. 8) from the enumerated joint
    p_h = (joint @ hs) / joint.sum(1, keepdims=True)
    p_v = (joint.T @ vs) / joint.sum(0)[:, None]
    np.testing.assert_allclose(
        backend.np(d.hidden_probs(backend.array(vs))), p_h, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        backend.np(d.visible_probs(backend.array(hs))), p_v, rtol=1e-5, atol=1e-6
    )


def test_batched_parameters(backend):
    rng = np.random.default_rng(5)
    ws, bs, cs = zip(*[random_params(rng, 5, 3) for _ in range(4)])
    w, b, c = np.stack(ws), np.stack(bs), np.stack(cs)
    d = backend.RBM(backend.array(w), backend.array(b), backend.array(c))
    assert tuple(d.batch_shape) == (4,)
    log_z = backend.np(d.log_partition())
    np.testing.assert_allclose(log_z, [brute_log_z(*p) for p in zip(ws, bs, cs)], rtol=1e-5)
    v = (rng.random((4, 5)) < 0.5).astype(np.float32)
    lp = backend.np(d.log_prob(backend.array(v)))
    for k in range(4):
        single = backend.RBM(backend.array(ws[k]), backend.array(bs[k]), backend.array(cs[k]))
        assert lp[k] == pytest.approx(float(backend.np(single.log_prob(backend.array(v[k])))))


@pytest.mark.parametrize("scale", [50.0, -50.0])
def test_large_weights_stay_finite(backend, scale):
    rng = np.random.default_rng(6)
    w = (scale * np.sign(rng.standard_normal((6, 4)))).astype(np.float32)
    b = np.zeros(6, np.float32)
    c = np.zeros(4, np.float32)
    d = backend.RBM(backend.array(w), backend.array(b), backend.array(c))
    lp = backend.np(d.log_prob(backend.array(all_states(6))))
    log_z = float(backend.np(d.log_partition()))
    assert np.isfinite(lp).all() and math.isfinite(log_z)
    assert log_z == pytest.approx(brute_log_z(w, b, c), rel=1e-5)


def test_cross_backend_agreement():
    from conftest import Backend

    t, j = Backend("torch"), Backend("jax")
    rng = np.random.default_rng(7)
    w, b, c = random_params(rng, 9, 6, scale=1.0)
    v = (rng.random((13, 9)) < 0.4).astype(np.float32)
    h = (rng.random((13, 6)) < 0.5).astype(np.float32)
    dt = t.RBM(t.array(w), t.array(b), t.array(c))
    dj = j.RBM(j.array(w), j.array(b), j.array(c))
    for method, arg in [
        ("log_prob", v),
        ("free_energy", v),
        ("hidden_probs", v),
        ("visible_probs", h),
        ("hidden_logits", v),
    ]:
        np.testing.assert_allclose(
            t.np(getattr(dt, method)(t.array(arg))),
            j.np(getattr(dj, method)(j.array(arg))),
            rtol=1e-5,
            atol=1e-5,
            err_msg=method,
        )
    np.testing.assert_allclose(
        t.np(dt.energy(t.array(v), t.array(h))), j.np(dj.energy(j.array(v), j.array(h))), rtol=1e-5
    )
    assert float(t.np(dt.log_partition())) == pytest.approx(
        float(j.np(dj.log_partition())), rel=1e-6
    )


def test_sample_matches_exact_marginal(backend):
    """Independent approximate draws (200 sweeps each) against exact p(v): chi-square."""
    from conftest import chi2_pvalue, state_index

    w, b, c = random_params(np.random.default_rng(8), 4, 3, scale=1.0)
    d = backend.RBM(backend.array(w), backend.array(b), backend.array(c), num_gibbs_steps=200)
    if backend.name == "torch":
        backend.key(0)
        x = d.sample((4000,))
    else:
        x = d.sample(backend.key(0), (4000,))
    counts = np.bincount(state_index(backend.np(x)), minlength=16)
    assert chi2_pvalue(counts, exact_visible_probs(w, b, c)) > 1e-3


# ---- bad input ---------------------------------------------------------------------------


def test_bad_parameters(backend):
    w, b, c = random_params(np.random.default_rng(9), 5, 3)
    A = backend.array
    with pytest.raises(ValueError, match="visible_bias"):
        backend.RBM(A(w), A(np.zeros(4)), A(c))
    with pytest.raises(ValueError, match="hidden_bias"):
        backend.RBM(A(w), A(b), A(np.zeros(5)))
    with pytest.raises(ValueError, match="weights"):
        backend.RBM(A(np.zeros(5)), A(b), A(c))
    bad = w.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="weights.*NaN"):
        backend.RBM(A(bad), A(b), A(c))
    badb = b.copy()
    badb[1] = np.inf
    with pytest.raises(ValueError, match="visible_bias"):
        backend.RBM(A(w), A(badb), A(c))
    with pytest.raises(ValueError, match="batch shapes"):
        backend.RBM(A(np.stack([w, w])), A(np.stack([b, b, b])), A(c))
    with pytest.raises(TypeError, match="weights"):
        backend.RBM(w.tolist(), A(b), A(c))


def test_bad_values(backend):
    w, b, c = random_params(np.random.default_rng(10), 5, 3)
    d = backend.RBM(backend.array(w), backend.array(b), backend.array(c))
    with backend.out_of_support("value.*binary"):  # NumPyro: a warning, as its host's
        d.log_prob(backend.array(np.full((2, 5), 0.5)))
    with pytest.raises(ValueError, match=r"value must have shape \(\.\.\., 5\)"):
        d.log_prob(backend.array(np.zeros((2, 4))))
    nan = np.zeros((2, 5))
    nan[0, 0] = np.nan
    with backend.out_of_support("value.*NaN"):
        d.log_prob(backend.array(nan))
    with pytest.raises(ValueError, match="value is empty"):
        d.log_prob(backend.array(np.zeros((0, 5))))
    with pytest.raises(ValueError, match="hidden"):
        d.energy(backend.array(np.zeros(5)), backend.array(np.full(3, 2.0)))


def test_log_partition_too_large_points_to_ais(backend):
    w = np.zeros((30, 25), np.float32)
    d = backend.RBM(backend.array(w), backend.array(np.zeros(30)), backend.array(np.zeros(25)))
    with pytest.raises(ValueError, match="AIS"):
        d.log_partition()
    # one small layer is enough: 784 visible x 12 hidden is exact
    w = np.zeros((784, 12), np.float32)
    d = backend.RBM(backend.array(w), backend.array(np.zeros(784)), backend.array(np.zeros(12)))
    assert float(backend.np(d.log_partition())) == pytest.approx(796 * math.log(2), rel=1e-6)


def test_contrast_analytic_gradient_matches_autodiff(backend):
    """The fused SA-MLE surrogate (eq. 9) has the gradient of its plain autodiff form."""
    from ebm_ppl.models.rbm import contrast, free_energy

    rng = np.random.default_rng(11)
    w, b, c = random_params(rng, 7, 5, scale=1.0)
    v = (rng.random((9, 7)) < 0.4).astype(np.float32)
    x = (rng.random((6, 7)) < 0.6).astype(np.float32)
    wd, wm = 0.3, 0.7
    value, grads = contrast(*(backend.array(a) for a in (w, b, c, v, x)), wd, wm)

    def plain(w_, b_, c_):
        return (
            wd * free_energy(w_, b_, c_, backend.array(v)).sum()
            - wm * free_energy(w_, b_, c_, backend.array(x)).sum()
        )

    if backend.name == "torch":
        ps = [backend.torch.tensor(a, requires_grad=True) for a in (w, b, c)]
        ref = plain(*ps)
        ref_grads = backend.torch.autograd.grad(ref, ps)
        # and through the custom autograd.Function used by the distribution
        d = backend.RBM(*ps).expand((9,))
        fused = d.contrast(backend.array(v), backend.array(x), wd, wm)
        fused_grads = backend.torch.autograd.grad(2.0 * fused, ps)
        for g, r in zip(fused_grads, ref_grads):
            np.testing.assert_allclose(g.numpy(), 2.0 * r.numpy(), rtol=1e-5, atol=1e-5)
        # seeded with 1 (loss.backward(): no scaling pass), then once more through the
        # retained graph (the gradients are recomputed), accumulating into .grad
        fused = d.contrast(backend.array(v), backend.array(x), wd, wm)
        fused.backward(retain_graph=True)
        fused.backward()
        for p, r in zip(ps, ref_grads):
            np.testing.assert_allclose(p.grad.numpy(), 2.0 * r.numpy(), rtol=1e-5, atol=1e-5)
        # a parameter changed in place between the two: refused, not silently recomputed
        fused = d.contrast(backend.array(v), backend.array(x), wd, wm)
        fused.backward(retain_graph=True)
        with backend.torch.no_grad():
            ps[0].add_(1.0)
        with pytest.raises(RuntimeError, match="modified in place"):
            fused.backward()
    else:
        import jax

        ps = tuple(backend.array(a) for a in (w, b, c))
        ref, ref_grads = jax.value_and_grad(lambda p: plain(*p))(ps)
    assert float(backend.np(value)) == pytest.approx(float(backend.np(ref)), rel=1e-5)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(backend.np(g), backend.np(r), rtol=1e-5, atol=1e-5)
