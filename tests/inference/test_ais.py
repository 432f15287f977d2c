"""AIS against exact log Z of enumerable RBMs, on both backends."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from conftest import all_states, exact_visible_probs, random_params

from ebm_ppl.inference.ais import (
    check_schedule,
    geometric_schedule,
    linear_schedule,
    salakhutdinov_murray_schedule,
)


def frontend(backend):
    if backend.name == "torch":
        import ebm_ppl.pyro as fe
    else:
        import ebm_ppl.numpyro as fe
    return fe


def run(backend, d, seed, **kw):
    fe = frontend(backend)
    kw.setdefault("progress_bar", False)
    if backend.name == "torch":
        backend.key(seed)
        return fe.AIS(d, **kw)
    return fe.AIS(d, rng_key=backend.key(seed), **kw)


def exact_samples(w, b, c, n, seed):
    p = exact_visible_probs(w, b, c)
    idx = np.random.default_rng(seed).choice(len(p), size=n, p=p)
    return all_states(w.shape[0])[idx]


CASES = [
    # (n_visible, n_hidden, weight scale, bias scale): the last ones are strongly multimodal
    (10, 6, 1.0, 0.5),
    (8, 12, 2.0, 0.5),
    (12, 5, 4.0, 0.0),
]


@pytest.mark.parametrize("case", CASES, ids=["mild", "wide", "multimodal"])
@pytest.mark.parametrize("seed", [0, 1])
def test_forward_within_error_bars_and_reverse_brackets(backend, case, seed):
    nv, nh, scale, bias = case
    rng = np.random.default_rng(10 * seed + nv)
    w = (scale * rng.standard_normal((nv, nh))).astype(np.float32)
    b = (bias * rng.standard_normal(nv)).astype(np.float32)
    c = (bias * rng.standard_normal(nh)).astype(np.float32)
    d = backend.RBM(backend.array(w), backend.array(b), backend.array(c))
    exact = float(backend.np(d.log_partition()))
    fe = frontend(backend)
    data = backend.array(exact_samples(w, b, c, 400, seed))
    res = run(
        backend,
        d,
        seed,
        base=fe.base_rate(data),
        betas=linear_schedule(2000),
        num_runs=400,
        reverse_samples=data,
    )
    lo, hi = res.log_z_interval
    assert lo <= exact <= hi, (res.log_z, res.log_z_stderr, exact)
    assert abs(res.log_z - exact) <= 3 * res.log_z_stderr + 1e-4
    rev = res.reverse
    assert res.log_z - 3 * res.log_z_stderr <= exact <= rev.log_z + 3 * rev.log_z_stderr
    assert 0 < res.ess <= 400 and res.log_weights.shape == (400,)


def test_multimodal_model_with_uniform_base_and_sm_schedule(backend):
    """A strongly multimodal RBM (|W| ~ 6) from the uniform base on the 14,501-beta schedule."""
    rng = np.random.default_rng(5)
    w = (6.0 * np.sign(rng.standard_normal((9, 4)))).astype(np.float32)
    b = -0.5 * np.abs(w).sum(1) / 2
    c = -0.5 * np.abs(w).sum(0) / 2
    d = backend.RBM(*(backend.array(a) for a in (w, b.astype(np.float32), c.astype(np.float32))))
    exact = float(backend.np(d.log_partition()))
    res = run(backend, d, 3, betas=salakhutdinov_murray_schedule(), num_runs=200)
    assert abs(res.log_z - exact) <= 3 * res.log_z_stderr + 1e-3, (res.log_z, exact)


@pytest.mark.slow
def test_error_shrinks_with_runs_and_betas(backend):
    w, b, c = random_params(np.random.default_rng(2), 10, 6, scale=1.5)
    d = backend.RBM(backend.array(w), backend.array(b), backend.array(c))
    exact = float(backend.np(d.log_partition()))
    few = [run(backend, d, s, betas=linear_schedule(10), num_runs=200) for s in range(3)]
    many = [run(backend, d, s, betas=linear_schedule(1000), num_runs=200) for s in range(3)]
    err_few = np.mean([abs(r.log_z - exact) for r in few])
    err_many = np.mean([abs(r.log_z - exact) for r in many])
    assert err_many < err_few / 3
    assert np.mean([r.log_z_stderr for r in many]) < np.mean([r.log_z_stderr for r in few]) / 3
    small = run(backend, d, 0, betas=linear_schedule(100), num_runs=50)
    large = run(backend, d, 0, betas=linear_schedule(100), num_runs=2000)
    assert large.log_z_stderr < small.log_z_stderr / 3  # ~ 1/sqrt(runs): sqrt(40) = 6.3


def test_backends_agree():
    from conftest import Backend

    w, b, c = random_params(np.random.default_rng(3), 11, 7, scale=2.0)
    out = []
    for name in ("torch", "jax"):
        be = Backend(name)
        d = be.RBM(be.array(w), be.array(b), be.array(c))
        out.append(run(be, d, 0, betas=geometric_schedule(1500), num_runs=300))
    tol = 3 * math.hypot(out[0].log_z_stderr, out[1].log_z_stderr)
    assert abs(out[0].log_z - out[1].log_z) <= tol


@pytest.mark.jax_optimized
def test_sm_schedule_many_runs_stays_finite(backend):
    """14,501 betas x 1,000 runs, large weights: log-weights stay finite."""
    rng = np.random.default_rng(4)
    w = (50.0 * np.sign(rng.standard_normal((8, 5)))).astype(np.float32)
    d = backend.RBM(backend.array(w), backend.array(np.zeros(8)), backend.array(np.zeros(5)))
    res = run(backend, d, 0, betas=salakhutdinov_murray_schedule(), num_runs=1000)
    assert np.isfinite(res.log_weights).all() and math.isfinite(res.log_z)
    assert math.isfinite(res.log_z_stderr)


def test_evaluate_and_log_prob(backend):
    fe = frontend(backend)
    w, b, c = random_params(np.random.default_rng(6), 9, 4, scale=1.0)
    d = backend.RBM(backend.array(w), backend.array(b), backend.array(c))
    x = exact_samples(w, b, c, 300, 0)
    res = run(backend, d, 0, betas=linear_schedule(500), num_runs=300)
    ll = fe.evaluate(d, backend.array(x), res)
    exact = float(backend.np((d.log_prob(backend.array(x)) - d.log_partition()).mean()))
    assert abs(ll.mean - exact) <= 3 * res.log_z_stderr + 1e-4
    assert ll.stderr >= res.log_z_stderr and ll.num_data == 300
    lp = backend.np(res.log_prob(backend.array(x[:3])))
    np.testing.assert_allclose(lp, backend.np(d.log_prob(backend.array(x[:3]))) - res.log_z)


def test_base_rate_model(backend):
    fe = frontend(backend)
    x = np.array([[1, 0, 1], [1, 0, 0], [1, 1, 0], [1, 0, 0]], np.float32)
    base = fe.base_rate(backend.array(x), pseudocount=1.0)
    p = (x.sum(0) + 1) / (4 + 2)
    np.testing.assert_allclose(backend.np(base.logits), np.log(p / (1 - p)), rtol=1e-5)
    states = all_states(3)
    lp = backend.np(base.log_prob(backend.array(states))) - float(backend.np(base.log_partition()))
    assert np.exp(lp).sum() == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError, match="data"):
        fe.base_rate(backend.array(np.zeros((0, 3))))


def test_reverse_disagreement_warns(backend):
    """Reverse AIS from samples that are not from the target disagrees, and says so."""
    w, b, c = random_params(np.random.default_rng(7), 10, 6, scale=3.0)
    d = backend.RBM(backend.array(w), backend.array(b), backend.array(c))
    wrong = backend.array(np.ones((200, 10)))
    with pytest.warns(RuntimeWarning, match="disagree"):
        run(backend, d, 0, betas=linear_schedule(20), num_runs=200, reverse_samples=wrong)


def test_bad_input(backend):
    fe = frontend(backend)
    w, b, c = random_params(np.random.default_rng(8), 6, 3)
    d = backend.RBM(backend.array(w), backend.array(b), backend.array(c))
    for betas, msg in [
        ([0.0, 0.5, 0.4, 1.0], "increasing"),
        ([0.1, 0.5, 1.0], "from 0 to 1"),
        ([0.0, 0.5], "from 0 to 1"),
        ([[0.0, 1.0]], "1-D"),
        ([0.0, float("nan"), 1.0], "NaN"),
    ]:
        with pytest.raises(ValueError, match=msg):
            run(backend, d, 0, betas=betas, num_runs=5)
    with pytest.raises(ValueError, match="num_runs"):
        run(backend, d, 0, betas=[0.0, 1.0], num_runs=0)
    with pytest.raises(ValueError, match="base"):
        run(backend, d, 0, base=fe.uniform_base(5, backend.array(np.zeros(1))), num_runs=5)
    with pytest.raises(ValueError, match="reverse_samples"):
        run(backend, d, 0, betas=[0.0, 1.0], num_runs=5, reverse_samples=backend.array(np.zeros(6)))
    with pytest.raises(ValueError, match="binary"):
        run(
            backend,
            d,
            0,
            betas=[0.0, 1.0],
            num_runs=5,
            reverse_samples=backend.array(np.full((2, 6), 0.5)),
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_schedule([0, 1]).dtype == np.float64


def test_schedules():
    sm = salakhutdinov_murray_schedule()
    assert len(sm) == 14501 and sm[0] == 0 and sm[-1] == 1
    assert np.allclose(np.diff(sm)[:500], 1e-3) and np.allclose(np.diff(sm)[-10:], 1e-5)
    assert np.allclose(np.diff(sm)[500:4500], 1e-4)
    for s in (linear_schedule(7), geometric_schedule(7), sm):
        check_schedule(s)
    with pytest.raises(ValueError):
        linear_schedule(1)


def test_annealing_path_is_exact(backend):
    """The path's ends and increments, by enumeration: f_0 is the base (times 2^F, as
    ``ais_log_z0`` says), f_1 is the RBM's -F(v), and ``ais_step`` adds log f_b - log f_b'."""
    from scipy.special import logsumexp

    fe = frontend(backend)
    w, b, c = random_params(np.random.default_rng(9), 7, 4, scale=1.5)
    d = backend.RBM(backend.array(w), backend.array(b), backend.array(c))
    base = fe.BernoulliBase(backend.array(np.linspace(-2, 2, 7)))
    v = backend.array(all_states(7))
    log_f0 = backend.np(d.ais_log_f(v, 0.0, base)).astype(np.float64)
    assert logsumexp(log_f0) == pytest.approx(float(backend.np(d.ais_log_z0(base))), rel=1e-6)
    np.testing.assert_allclose(
        backend.np(d.ais_log_f(v, 1.0, base)), backend.np(d.log_prob(v)), rtol=1e-5, atol=1e-5
    )
    _, delta = d.ais_step(backend.key(0), v, 0.3, 0.45, base)
    expected = backend.np(d.ais_log_f(v, 0.45, base)) - backend.np(d.ais_log_f(v, 0.3, base))
    np.testing.assert_allclose(backend.np(delta), expected, rtol=1e-4, atol=1e-4)


def test_ais_target_contract_is_a_clear_type_error():
    """A target that is not an AnnealingPath is refused up front, naming what it lacks."""
    from ebm_ppl.inference.ais import run_ais, run_raise
    from ebm_ppl.models.protocols import AnnealingPath

    class HalfPath:
        def log_prob(self, v): ...
        def ais_base(self, base): ...
        def ais_log_z0(self, base): ...

    assert not isinstance(HalfPath(), AnnealingPath)
    with pytest.raises(TypeError, match=r"AnnealingPath.*HalfPath lacks ais_log_f, ais_step"):
        run_ais(None, HalfPath(), None, [0.0, 1.0], 2)
    with pytest.raises(TypeError, match=r"RaisePath.*lacks ais_log_f, ais_step, raise_base"):
        run_raise(None, HalfPath(), np.zeros((2, 3)))


def test_every_model_class_declares_the_paths_it_is_used_on(backend):
    from ebm_ppl.models.protocols import (
        AnnealingPath,
        EnergyDistribution,
        RaisePath,
        TemperingPath,
    )

    w, b, c = random_params(np.random.default_rng(0), 4, 3)
    d = backend.RBM(*(backend.array(a) for a in (w, b, c)))
    for proto in (AnnealingPath, RaisePath, TemperingPath, EnergyDistribution):
        assert isinstance(d, proto), proto
