"""Robust Boltzmann machine: the program's log joint, exact posteriors by enumeration and
quadrature, block Gibbs (direct and through the PPL kernels) against them, mean field,
SA learning from occluded data, backend agreement and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import chi2_pvalue, state_index
from scipy import stats

NOISE = (0.3, 0.0, 2.0)  # tau, mu, varsigma
# tau, mixture outlier locs, scales (K,), weights (K,): an "ink" and a broad component
MIX = (
    0.3,
    np.array([2.0, -0.5], np.float32),
    np.array([0.4, 1.5], np.float32),
    np.array([0.3, 0.7], np.float32),
)
NOISES = pytest.mark.parametrize("noise", [NOISE, MIX], ids=["gaussian", "mixture"])


def tiny(seed: int, d: int = 3, f: int = 2, g: int = 2, scale: float = 1.0) -> dict:
    rng = np.random.default_rng(seed)
    r = lambda *s: (scale * rng.standard_normal(s)).astype(np.float32)  # noqa: E731
    return {
        "clean": (r(d, f), 0.5 * r(d), 0.5 * r(f)),
        "sigma": np.float32(0.8),
        "mask": (r(d, g), 0.5 * r(d) + 1.0, 0.5 * r(g)),
    }


def frontend(backend):
    if backend.name == "torch":
        import ebm_ppl.pyro as fe
    else:
        import ebm_ppl.numpyro as fe
    return fe


def build(backend, p: dict, noise=NOISE):
    fe = frontend(backend)
    a = backend.array
    clean = fe.GaussianRBM(*(a(x) for x in p["clean"]), sigma=float(p["sigma"]))
    mask = fe.RBM(*(a(x) for x in p["mask"]))
    return fe.RobustBM(clean, mask, *noise)


def numpy_free_energies(p: dict, x: np.ndarray, s: np.ndarray):
    w, b, c = (np.asarray(t, np.float64) for t in p["clean"])
    sig = float(p["sigma"])
    fx = ((x - b) ** 2).sum(-1) / (2 * sig**2) - np.logaddexp(0, c + (x / sig) @ w).sum(-1)
    u, d, e = (np.asarray(t, np.float64) for t in p["mask"])
    fs = -(s @ d) - np.logaddexp(0, e + s @ u).sum(-1)
    return fx, fs


def numpy_outlier(v: np.ndarray, noise=NOISE) -> np.ndarray:
    """log p_out(v) elementwise, float64: one Gaussian, or the mixture sum_k w_k N(mu_k,
    vs_k^2) (weights normalized), written out with scipy."""
    if len(noise) == 3:
        return stats.norm.logpdf(v, noise[1], noise[2])
    mu, vs, w = (np.asarray(a, np.float64) for a in noise[1:])
    k = len(w)
    lw = np.log(w / w.sum()).reshape(k, 1)
    vv = np.asarray(v, np.float64)[..., None, :]
    comp = stats.norm.logpdf(vv, mu.reshape(k, -1), vs.reshape(k, -1))
    return np.logaddexp.reduce(lw + comp, axis=-2)


def numpy_log_marginal(p: dict, v: np.ndarray, noise=NOISE) -> np.ndarray:
    """Exact log p(v) per row by brute force in float64: every clean hidden state h (x
    integrated: N(b + sigma W h, sigma^2 + tau^2) where shown) and every mask s."""
    from conftest import all_states

    w, b, c = (np.asarray(t, np.float64) for t in p["clean"])
    sig = float(p["sigma"])
    tau = noise[0]
    hs = all_states(w.shape[1]).astype(np.float64)
    m = b + sig * hs @ w.T  # (H, D)
    log_ph = hs @ c + (((m**2) - b**2) / (2 * sig**2)).sum(-1)  # log int exp(-E) dx + const
    log_ph -= np.logaddexp.reduce(log_ph)
    ss = all_states(w.shape[0]).astype(np.float64)
    _, fs = numpy_free_energies(p, np.zeros((1, w.shape[0])), ss)
    log_ps = -fs - np.logaddexp.reduce(-fs)
    on = stats.norm.logpdf(v[:, None, :], m[None], np.sqrt(sig**2 + tau**2))  # (N, H, D)
    off = numpy_outlier(v, noise)  # (N, D)
    lik = np.einsum("sd,nhd->nsh", ss, on) + ((1 - ss) @ off.T).T[:, :, None]
    return np.logaddexp.reduce(
        (lik + log_ps[None, :, None] + log_ph[None, None]).reshape(len(v), -1), axis=1
    )


def numpy_loglik(v, x, s, noise=NOISE):
    on = stats.norm.logpdf(v, x, noise[0])
    off = numpy_outlier(v, noise)
    return (s * on + (1 - s) * off).sum(-1)


# ---- the program ------------------------------------------------------------------------


@NOISES
def test_program_log_joint_by_hand(backend, noise):
    """log p of model(images) at given clean/mask values = -F_clean(x) - F_mask(s) + the
    observation log-density, all by hand in float64 (Gaussian and mixture outliers)."""
    p = tiny(0)
    robm = build(backend, p, noise)
    rng = np.random.default_rng(1)
    v = rng.normal(size=(5, 3)).astype(np.float32)
    x = rng.normal(size=(5, 3)).astype(np.float32)
    s = (rng.uniform(size=(5, 3)) < 0.5).astype(np.float32)
    values = {"clean": backend.array(x), "mask": backend.array(s)}
    if backend.name == "torch":
        import pyro.poutine as poutine

        tr = poutine.trace(poutine.condition(robm.model, data=values)).get_trace(backend.array(v))
        got = float(tr.log_prob_sum())
    else:
        from numpyro.infer.util import log_density

        got = float(log_density(robm.model, (backend.array(v),), {}, values)[0])
    fx, fs = numpy_free_energies(p, x, s)
    want = (-fx - fs + numpy_loglik(v, x, s, noise)).sum()
    assert got == pytest.approx(want, rel=1e-5, abs=1e-3)


def test_likelihood_sampling_moments(backend):
    """RobustLikelihood draws: mean/sd of N(x, tau) where shown, N(mu, varsigma) where not."""
    fe = frontend(backend)
    x = np.array([1.0, -2.0, 0.5, 3.0], np.float32)
    s = np.array([1.0, 1.0, 0.0, 0.0], np.float32)
    lik = fe.RobustLikelihood(backend.array(x), backend.array(s), 0.3, 0.5, 2.0)
    n = 20000
    draws = backend.np(
        lik.sample((n,)) if backend.name == "torch" else lik.sample(backend.key(0), (n,))
    )
    want_mean = np.array([1.0, -2.0, 0.5, 0.5])
    want_sd = np.array([0.3, 0.3, 2.0, 2.0])
    assert (np.abs(draws.mean(0) - want_mean) < 4.5 * want_sd / np.sqrt(n)).all()
    np.testing.assert_allclose(draws.std(0), want_sd, rtol=0.03)
    lp = backend.np(lik.log_prob(backend.array(draws[:3])))
    np.testing.assert_allclose(lp, numpy_loglik(draws[:3], x, s, (0.3, 0.5, 2.0)), rtol=1e-5)


def test_predictive_generates_images():
    """The program generates occluded images through Predictive (Pyro and NumPyro)."""
    import jax
    import torch
    from conftest import Backend
    from numpyro.infer import Predictive as NP
    from pyro.infer import Predictive as PP

    p = tiny(2)
    tp = build(Backend("torch"), p)
    out = PP(tp.model, num_samples=2)(None, num_images=7)
    assert tuple(out["image"].shape) == (2, 7, 3) and torch.isfinite(out["image"]).all()
    assert set(np.unique(out["mask"].numpy())) <= {0.0, 1.0}
    jp = build(Backend("jax"), p)
    out = NP(jp.model, num_samples=2)(jax.random.PRNGKey(0), None, num_images=7)
    assert out["image"].shape == (2, 7, 3)


# ---- exact inference: an independent check of the oracle ---------------------------------


@NOISES
def test_exact_posterior_by_quadrature(noise):
    """exact_posterior (enumeration of h and s with x integrated analytically) against a
    brute-force grid over x for a 2-pixel model: log p(v) and E[x | v] (Gaussian and
    mixture outliers)."""
    import torch
    from conftest import Backend

    from ebm_ppl.models.robust import exact_posterior

    p = tiny(3, d=2)
    robm = build(Backend("torch"), p, noise)
    v = np.array([0.4, 2.8], np.float32)
    ex = exact_posterior(robm.clean, robm.mask, robm.noise, torch.tensor(v))
    grid = np.linspace(-9, 9, 1201)
    dx = grid[1] - grid[0]
    xx = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    fx, _ = numpy_free_energies(p, xx, np.zeros((1, 2)))
    log_px = -fx - float(robm.clean.log_partition())
    masks = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float64)
    _, fs = numpy_free_energies(p, np.zeros((1, 2)), masks)
    log_ps = -fs - float(robm.mask.log_partition())
    total, ex_x = -np.inf, np.zeros(2)
    terms = []
    for m, lps in zip(masks, log_ps):
        lj = log_px + lps + numpy_loglik(v[None], xx, m[None], noise)
        terms.append(lj)
    lj = np.stack(terms)  # (4, G)
    total = np.logaddexp.reduce(lj.reshape(-1)) + 2 * np.log(dx)
    w = np.exp(lj - lj.max()).sum(0)
    ex_x = (w[:, None] * xx).sum(0) / w.sum()
    assert float(ex["log_marginal"]) == pytest.approx(total, abs=2e-3)
    assert numpy_log_marginal(p, v[None].astype(np.float64), noise)[0] == pytest.approx(
        total, abs=2e-3
    )
    np.testing.assert_allclose(ex["clean_mean"].numpy(), ex_x, atol=2e-3)
    post_s = np.exp(np.logaddexp.reduce(lj, axis=1) - np.logaddexp.reduce(lj.reshape(-1)))
    got = ex["mask_probs"].numpy()[state_index(ex["mask_states"].numpy())]
    np.testing.assert_allclose(got, post_s, atol=1e-4)


# ---- block Gibbs against the exact posterior ---------------------------------------------


def exact(backend, robm, v):
    from ebm_ppl.models.robust import exact_posterior

    ex = exact_posterior(robm.clean, robm.mask, robm.noise, backend.array(v))
    return {k: backend.np(x) for k, x in ex.items()}


@NOISES
@pytest.mark.parametrize("seed", [0, 1])
def test_direct_gibbs_matches_exact_posterior(backend, seed, noise):
    """RobustBM.infer on N copies of one image (N independent chains): the per-chain
    Rao-Blackwellised means of x and s agree with exact E[x | v], E[s | v] within 4.5 SE."""
    p = tiny(10 + seed)
    robm = build(backend, p, noise)
    v = np.array([0.3, -1.2, 2.5], np.float32)
    ex = exact(backend, robm, v)
    n = 1500
    images = backend.array(np.repeat(v[None], n, 0))
    if backend.name == "torch":
        backend.key(seed)
        out = robm.infer(images, num_sweeps=40, burn_in=20)
    else:
        out = robm.infer(backend.key(seed), images, num_sweeps=40, burn_in=20)
    for name in ("clean_mean", "mask_mean"):
        per_chain = backend.np(out[name])
        se = per_chain.std(0) / np.sqrt(n) + 1e-6
        z = np.abs(per_chain.mean(0) - ex[name]) / se
        assert (z < 4.5).all(), (name, per_chain.mean(0), ex[name], z)


def run_kernel(backend, robm, images, seed, warmup=25, samples=10):
    fe = frontend(backend)
    if backend.name == "torch":
        import pyro
        from pyro.infer import MCMC

        pyro.set_rng_seed(seed)
        m = MCMC(
            fe.BlockGibbs(robm.model),
            num_samples=samples,
            warmup_steps=warmup,
            disable_progbar=True,
        )
        m.run(images)
    else:
        from numpyro.infer import MCMC

        m = MCMC(
            fe.BlockGibbs(robm.model), num_warmup=warmup, num_samples=samples, progress_bar=False
        )
        m.run(backend.key(seed), images)
    return {k: backend.np(x) for k, x in m.get_samples().items()}


@NOISES
@pytest.mark.parametrize("seed", [0, 1])
def test_block_gibbs_kernel_samples_the_exact_posterior(backend, seed, noise):
    """BlockGibbs on the plain program model(images) (the observation folded into each RBM's
    conditional by autodiff): mask-state frequencies of the last draw of 600 independent
    chains (plate copies) pass a chi-square test against exact p(s | v); x's mean is within
    4.5 SE of E[x | v]."""
    p = tiny(20 + seed)
    robm = build(backend, p, noise)
    v = np.array([1.1, -0.4, -2.6], np.float32)
    ex = exact(backend, robm, v)
    n = 600
    smp = run_kernel(backend, robm, backend.array(np.repeat(v[None], n, 0)), seed)
    last_s = smp["mask"][-1]
    counts = np.bincount(state_index(last_s), minlength=8)
    probs = ex["mask_probs"][np.argsort(state_index(ex["mask_states"]))]
    assert chi2_pvalue(counts, probs) > 1e-3
    x = smp["clean"][-1]
    z = np.abs(x.mean(0) - ex["clean_mean"]) / (x.std(0) / np.sqrt(n))
    assert (z < 4.5).all(), z


def test_kernel_rejects_a_non_conjugate_observation(backend):
    """An observation that is not Gaussian in the clean image (here Normal(x**3, 1)) is
    refused with a clear error instead of sampling a wrong conditional."""
    fe = frontend(backend)
    robm = build(backend, tiny(4))
    if backend.name == "torch":
        import pyro
        import pyro.distributions as dist
        from pyro.infer import MCMC

        def model():
            x = pyro.sample("clean", robm.clean)
            pyro.sample("y", dist.Normal(x**3, 1.0).to_event(1), obs=backend.array(np.ones(3)))

        with pytest.raises(ValueError, match="not quadratic|not a Gaussian"):
            MCMC(fe.BlockGibbs(model), num_samples=2, disable_progbar=True).run()
    else:
        import numpyro
        import numpyro.distributions as dist
        from numpyro.infer import MCMC

        def model():
            x = numpyro.sample("clean", robm.clean)
            numpyro.sample("y", dist.Normal(x**3, 1.0).to_event(1), obs=np.ones(3))

        with pytest.raises(ValueError, match="not quadratic|not a Gaussian"):
            MCMC(fe.BlockGibbs(model), num_warmup=1, num_samples=2, progress_bar=False).run(
                backend.key(0)
            )


# ---- mean field ----------------------------------------------------------------------------


@NOISES
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mean_field_is_a_fixed_point_and_a_bound(backend, seed, noise):
    """The mean-field Q is a fixed point (one more sweep moves nothing), a local maximum of
    the bound (random perturbations lower it), and the bound is below the exact log p(v)
    for both starts of the mask."""
    from ebm_ppl.models import robust as R

    p = tiny(30 + seed)
    robm = build(backend, p, noise)
    rng = np.random.default_rng(seed)
    v = rng.normal(0, 1.5, (1, 3)).astype(np.float32)
    ex = exact(backend, robm, v[0])
    lzc, lzm = robm.clean.log_partition(), robm.mask.log_partition()
    cp, mp = robm._params()
    for init in (0.0, 1.0):
        q = robm.mean_field(backend.array(v), num_iters=500, tol=1e-7, init_mask=init)
        bound = float(
            backend.np(R.mean_field_bound(cp, mp, robm.noise, backend.array(v), q, lzc, lzm))[0]
        )
        assert bound <= float(ex["log_marginal"]) + 1e-4
        again = robm.mean_field(backend.array(v), num_iters=1, tol=None, init_mask=init)
        del again
        for _ in range(5):
            pert = R.MeanField(
                q.x_mean + backend.array(rng.normal(0, 0.05, (1, 3)).astype(np.float32)),
                q.x_var * float(np.exp(rng.normal(0, 0.05))),
                q.h,
                q.s,
                q.g,
            )
            b2 = float(
                backend.np(
                    R.mean_field_bound(cp, mp, robm.noise, backend.array(v), pert, lzc, lzm)
                )[0]
            )
            assert b2 <= bound + 1e-5


def test_sa_contrast_gradient():
    """The SA surrogate's gradient in the mask's visible bias d is -(mean Q(s) - mean s at
    the chains), and in the clean visible bias b it is -(mean (E_Q x - b) / sigma^2 - mean
    (x_chain - b) / sigma^2) (an autodiff identity of the shared math; the backends agree on
    the bound, tested below)."""
    import torch

    import ebm_ppl.pyro as fe

    p = tiny(40)
    a = lambda x: torch.tensor(x, requires_grad=True)  # noqa: E731
    w, b, c = (a(x) for x in p["clean"])
    u, d, e = (a(x) for x in p["mask"])
    robm = fe.RobustBM(fe.GaussianRBM(w, b, c, sigma=0.8), fe.RBM(u, d, e), *NOISE)
    site = robm.visible(num_iters=200, tol=1e-7)
    rng = np.random.default_rng(0)
    data = torch.tensor(rng.normal(size=(20, 3)).astype(np.float32))
    chains = torch.cat(
        [
            torch.tensor(rng.normal(size=(30, 3)).astype(np.float32)),
            torch.tensor((rng.uniform(size=(30, 3)) < 0.5).astype(np.float32)),
        ],
        -1,
    )
    loss = site.contrast(data, chains, 1 / 20, 1 / 30)
    gd, gb = torch.autograd.grad(loss, [d, b])
    q = robm.mean_field(data, num_iters=200, tol=1e-7)
    want_d = -(q.s.mean(0) - chains[:, 3:].mean(0))
    want_b = -(((q.x_mean - b) / 0.64).mean(0) - ((chains[:, :3] - b) / 0.64).mean(0))
    np.testing.assert_allclose(gd.numpy(), want_d.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(gb.numpy(), want_b.detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_samle_from_occluded_data_raises_the_exact_likelihood(backend, seed):
    """SA-MLE on the visible site (the PPL's own trainer) learns both RBMs from observed
    (occluded) data only: the exact mean log p(v) (brute force in float64) of data drawn
    from a true RoBM rises."""
    fe = frontend(backend)
    true = tiny(50 + seed, d=3)
    rng = np.random.default_rng(seed)
    n = 300
    # data from the true model by long Gibbs runs of each RBM, then the observation model
    tb = build(backend, true)
    if backend.name == "torch":
        backend.key(seed)
        x = tb.clean.sample((n,))
        s = tb.mask.sample((n,))
        data = fe.RobustLikelihood(x, s, *NOISE).sample()
    else:
        import jax

        k1, k2, k3 = jax.random.split(backend.key(seed), 3)
        x = tb.clean.sample(k1, (n,))
        s = tb.mask.sample(k2, (n,))
        data = fe.RobustLikelihood(x, s, *NOISE).sample(k3)
    start = {
        "clean": tuple(
            0.1 * rng.standard_normal(t.shape).astype(np.float32) for t in true["clean"]
        ),
        "sigma": true["sigma"],
        "mask": tuple(0.1 * rng.standard_normal(t.shape).astype(np.float32) for t in true["mask"]),
    }

    data_np = np.asarray(backend.np(data), np.float64)

    def exact_ll(prm):
        return numpy_log_marginal(prm, data_np).mean()

    def exact_bound(prm):
        robm = build(backend, prm)
        lz = (robm.clean.log_partition(), robm.mask.log_partition())
        return float(backend.np(robm.bound(data, *lz)).mean())

    before, bound_before = exact_ll(start), exact_bound(start)
    names = ["W", "b", "c", "U", "d", "e"]
    init = {k: v.copy() for k, v in zip(names, start["clean"] + start["mask"])}
    if backend.name == "torch":
        import pyro

        def model(batch):
            q = {k: pyro.param(k, backend.array(v)) for k, v in init.items()}
            robm = fe.RobustBM(
                fe.GaussianRBM(q["W"], q["b"], q["c"], sigma=0.8),
                fe.RBM(q["U"], q["d"], q["e"]),
                *NOISE,
            )
            with pyro.plate("data", batch.shape[0]):
                pyro.sample("v", robm.visible(), obs=batch)

        tr = fe.SAMLE(model, pyro.optim.SGD({"lr": 0.05}), num_gibbs_steps=2, num_chains=100)
        tr.run(data, num_epochs=30, batch_size=50, progress_bar=False)
        store = pyro.get_param_store()
        got = {k: backend.np(store[k]) for k in names}
    else:
        import numpyro
        import optax

        def model(batch):
            q = {k: numpyro.param(k, backend.array(v)) for k, v in init.items()}
            robm = fe.RobustBM(
                fe.GaussianRBM(q["W"], q["b"], q["c"], sigma=0.8),
                fe.RBM(q["U"], q["d"], q["e"]),
                *NOISE,
            )
            with numpyro.plate("data", batch.shape[0]):
                numpyro.sample("v", robm.visible(), obs=batch)

        tr = fe.SAMLE(model, optax.sgd(0.05), num_gibbs_steps=2, num_chains=100)
        st = tr.run(backend.key(seed), data, num_epochs=30, batch_size=50, progress_bar=False)
        got = {k: np.asarray(v) for k, v in tr.get_params(st).items()}
    after = exact_ll(
        {
            "clean": (got["W"], got["b"], got["c"]),
            "sigma": true["sigma"],
            "mask": (got["U"], got["d"], got["e"]),
        }
    )
    # The positive phase is mean field, so SA ascends the variational bound, not log p(v):
    # the exact likelihood still rises clearly (0.1-0.5 nats per image in these runs; the
    # true model is 0.4-1.6 above the start), and so does the exact bound.
    assert after > before + 0.05, (before, after, exact_ll(true))
    trained = {
        "clean": (got["W"], got["b"], got["c"]),
        "sigma": true["sigma"],
        "mask": (got["U"], got["d"], got["e"]),
    }
    assert exact_bound(trained) > bound_before + 0.05


# ---- agreement and bad input ----------------------------------------------------------------


def test_backends_agree():
    import jax
    import torch
    from conftest import Backend

    from ebm_ppl.models.robust import exact_posterior, log_likelihood

    p = tiny(60)
    tb, jb = Backend("torch"), Backend("jax")
    t, j = build(tb, p), build(jb, p)
    rng = np.random.default_rng(0)
    v = rng.normal(size=(4, 3)).astype(np.float32)
    s = (rng.uniform(size=(4, 3)) < 0.5).astype(np.float32)
    np.testing.assert_allclose(
        log_likelihood(torch.tensor(v), torch.tensor(v[::-1].copy()), torch.tensor(s), t.noise),
        np.asarray(
            log_likelihood(
                jax.numpy.asarray(v), jax.numpy.asarray(v[::-1]), jax.numpy.asarray(s), j.noise
            )
        ),
        rtol=1e-5,
    )
    qt, qj = t.mean_field(torch.tensor(v)), j.mean_field(jax.numpy.asarray(v))
    for a, b in zip(qt, qj):
        np.testing.assert_allclose(a.numpy(), np.asarray(b), atol=1e-4)
    et = exact_posterior(t.clean, t.mask, t.noise, torch.tensor(v[0]))
    ej = exact_posterior(j.clean, j.mask, j.noise, jax.numpy.asarray(v[0]))
    for k in et:
        np.testing.assert_allclose(et[k].numpy(), np.asarray(ej[k]), atol=1e-4)
    lt = t.visible().log_prob(torch.tensor(v)).numpy()
    lj = np.asarray(j.visible().log_prob(jax.numpy.asarray(v)))
    np.testing.assert_allclose(lt, lj, atol=1e-3)
    # the NumPyro RobustBM crosses jit as a pytree
    f = jax.jit(lambda r, x: r.mean_field(x).x_mean)
    np.testing.assert_allclose(np.asarray(f(j, jax.numpy.asarray(v))), qt.x_mean.numpy(), atol=1e-4)


def test_bad_input(backend):
    fe = frontend(backend)
    p = tiny(70)
    a = backend.array
    clean = fe.GaussianRBM(*(a(x) for x in p["clean"]), sigma=0.8)
    with pytest.raises(TypeError, match="mask must be an RBM"):
        fe.RobustBM(clean, clean)
    with pytest.raises(ValueError, match="same pixels"):
        fe.RobustBM(clean, fe.RBM(a(np.zeros((4, 2))), a(np.zeros(4)), a(np.zeros(2))))
    mask = fe.RBM(*(a(x) for x in p["mask"]))
    with pytest.raises(ValueError, match="noise_scale must be positive"):
        fe.RobustBM(clean, mask, noise_scale=-1.0)
    with pytest.raises(ValueError, match="outlier_scale must be a number or have shape"):
        fe.RobustBM(clean, mask, outlier_scale=np.ones(5, np.float32))
    robm = fe.RobustBM(clean, mask)
    with pytest.raises(ValueError, match="images"):
        robm.mean_field(a(np.ones((2, 4), np.float32)))
    with pytest.raises(ValueError, match="NaN"):
        robm.mean_field(a(np.full((2, 3), np.nan, np.float32)))
    with pytest.raises(ValueError, match="init_mask"):
        robm.mean_field(a(np.ones((2, 3), np.float32)), init_mask=2.0)
    with pytest.raises(ValueError, match="num_sweeps"):
        if backend.name == "torch":
            robm.infer(a(np.ones((2, 3), np.float32)), num_sweeps=0)
        else:
            robm.infer(backend.key(0), a(np.ones((2, 3), np.float32)), num_sweeps=0)
    with pytest.raises(ValueError, match="num_images"):
        robm.model()


@NOISES
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_collapsed_mean_field_is_a_fixed_point_and_a_bound(backend, seed, noise):
    """The structured mean field (Q(x_i | s_i), collapsed=True): a fixed point of its own
    sweep; its bound equals the same bound written out in numpy and is below the exact
    log p(v); its s is the exact conditional of a pixel given the clean hidden means (x_i
    integrated out); from both starts of the mask and from the 'evidence' start."""
    from ebm_ppl.models import robust as R

    p = tiny(30 + seed)
    robm = build(backend, p, noise)
    rng = np.random.default_rng(seed)
    v = rng.normal(0, 1.5, (1, 3)).astype(np.float32)
    va = backend.array(v)
    ex = exact(backend, robm, v[0])
    lzc, lzm = robm.clean.log_partition(), robm.mask.log_partition()
    cp, mp = robm._params()
    for init in (0.0, 1.0, "evidence"):
        q = robm.mean_field(va, num_iters=500, tol=1e-7, init_mask=init, collapsed=True)
        again = R.collapsed_update(cp, mp, robm.noise, va, q)
        for a, b in zip(q, again):
            np.testing.assert_allclose(backend.np(a), backend.np(b), atol=1e-4)
        bound = float(
            backend.np(R.mean_field_bound(cp, mp, robm.noise, va, q, lzc, lzm, collapsed=True))[0]
        )
        assert bound <= float(ex["log_marginal"]) + 1e-4
        # the same bound written out by hand in numpy
        w, b, c = (np.asarray(t, np.float64) for t in p["clean"])
        sig, tau = float(p["sigma"]), noise[0]
        h, s, g = (backend.np(a).astype(np.float64)[0] for a in (q.h, q.s, q.g))
        m = b + sig * w @ h
        var1 = 1 / (1 / sig**2 + 1 / tau**2)
        x1 = var1 * (m / sig**2 + v[0] / tau**2)
        ex2 = s * (var1 + x1**2) + (1 - s) * (sig**2 + m**2)
        ex1 = s * x1 + (1 - s) * m
        clean = -((ex2 - 2 * ex1 * b + b**2) / (2 * sig**2)).sum() + ex1 / sig @ w @ h + c @ h
        u, d, e = (np.asarray(t, np.float64) for t in p["mask"])
        mask = s @ d + s @ u @ g + e @ g
        on = stats.norm.logpdf(v[0], x1, tau) - var1 / (2 * tau**2)
        obs = (s * on + (1 - s) * numpy_outlier(v[0], noise)).sum()

        def hb(t):
            t = np.clip(t, 1e-12, 1 - 1e-12)
            return -(t * np.log(t) + (1 - t) * np.log(1 - t)).sum()

        hx = (s * 0.5 * np.log(2 * np.pi * np.e * var1)).sum()
        hx += ((1 - s) * 0.5 * np.log(2 * np.pi * np.e * sig**2)).sum()
        by_hand = clean + mask + obs + hx + hb(h) + hb(s) + hb(g)
        by_hand -= float(backend.np(lzc)) + float(backend.np(lzm))
        assert abs(by_hand - bound) < 1e-3 * max(1.0, abs(bound))
        # s is the exact P(s_i = 1 | h = E h, g = E g, v_i) with x_i integrated out
        logit = d + u @ g + stats.norm.logpdf(v[0], m, np.sqrt(sig**2 + tau**2))
        logit -= numpy_outlier(v[0], noise)
        np.testing.assert_allclose(s, 1 / (1 + np.exp(-logit)), atol=1e-4)


def test_collapsed_and_evidence_backends_agree():
    import jax
    import torch
    from conftest import Backend

    p = tiny(61)
    t, j = build(Backend("torch"), p), build(Backend("jax"), p)
    v = np.random.default_rng(1).normal(0, 1.5, size=(4, 3)).astype(np.float32)
    for kw in (
        {"collapsed": True},
        {"init_mask": "evidence"},
        {"collapsed": True, "init_mask": "evidence"},
    ):
        qt = t.mean_field(torch.tensor(v), **kw)
        qj = j.mean_field(jax.numpy.asarray(v), **kw)
        for a, b in zip(qt, qj):
            np.testing.assert_allclose(a.numpy(), np.asarray(b), atol=1e-4)
    lt = t.visible(collapsed=True, init_mask="evidence").log_prob(torch.tensor(v)).numpy()
    lj = np.asarray(j.visible(collapsed=True, init_mask="evidence").log_prob(jax.numpy.asarray(v)))
    np.testing.assert_allclose(lt, lj, atol=1e-3)
    f = jax.jit(lambda r, x: r.visible(collapsed=True).log_prob(x))
    np.testing.assert_allclose(np.asarray(f(j, jax.numpy.asarray(v))), lt, atol=1e-2)


def test_bad_init_mask(backend):
    p = tiny(71)
    robm = build(backend, p)
    x = backend.array(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="init_mask"):
        robm.mean_field(x, init_mask="data")
    with pytest.raises(ValueError, match="init_mask"):
        robm.visible(init_mask="data")
    with pytest.raises(ValueError, match="init_mask"):
        robm.visible(init_mask=-0.5)


# ---- a Gaussian-mixture outlier density ---------------------------------------------------


def test_mixture_likelihood_sampling_moments(backend):
    """RobustLikelihood with outlier_weights: occluded draws have the mixture's mean and
    variance (per-pixel components (K, D)), shown draws N(x, tau), and the mass near the
    narrow component is the mixture's; log_prob is the mixture's, written out in scipy."""
    fe = frontend(backend)
    x = np.array([1.0, -2.0, 0.5, 3.0], np.float32)
    s = np.array([1.0, 0.0, 0.0, 0.0], np.float32)
    mu = np.array([[2.0, 2.0, -1.0, 0.0], [-0.5, 1.0, 1.0, 4.0]], np.float32)  # (K, D)
    vs = np.array([[0.4], [1.5]], np.float32)  # (K, 1)
    w = np.array([0.3, 0.7], np.float32)
    a = backend.array
    lik = fe.RobustLikelihood(a(x), a(s), 0.3, a(mu), a(vs), outlier_weights=a(w))
    n = 40000
    draws = backend.np(
        lik.sample((n,)) if backend.name == "torch" else lik.sample(backend.key(0), (n,))
    )
    mix_mean = (w[:, None] * mu).sum(0)
    mix_var = (w[:, None] * (vs**2 + mu**2)).sum(0) - mix_mean**2
    want_mean = np.where(s > 0.5, x, mix_mean)
    want_sd = np.where(s > 0.5, 0.3, np.sqrt(mix_var))
    assert (np.abs(draws.mean(0) - want_mean) < 4.5 * want_sd / np.sqrt(n)).all()
    np.testing.assert_allclose(draws.std(0), want_sd, rtol=0.03)
    near = np.abs(draws[:, 2] - mu[0, 2]) < 0.2
    cdf = stats.norm.cdf
    p_near = w[0] * (cdf(0.5) - cdf(-0.5)) + w[1] * (
        cdf((mu[0, 2] + 0.2 - mu[1, 2]) / 1.5) - cdf((mu[0, 2] - 0.2 - mu[1, 2]) / 1.5)
    )
    assert abs(near.mean() - p_near) < 4.5 * np.sqrt(p_near * (1 - p_near) / n)
    lp = backend.np(lik.log_prob(a(draws[:3])))
    np.testing.assert_allclose(lp, numpy_loglik(draws[:3], x, s, (0.3, mu, vs, w)), rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mixture_of_identical_components_is_the_gaussian(backend, seed):
    """A mixture whose components are all N(mu, vs) (any weights) gives the same mean
    field and exact posterior as the single Gaussian outlier."""
    from ebm_ppl.models.robust import exact_posterior

    p = tiny(40 + seed)
    one = build(backend, p, NOISE)
    w = np.random.default_rng(seed).uniform(0.1, 1.0, 3).astype(np.float32)
    mix = build(backend, p, (0.3, np.zeros(3, np.float32), np.full(3, 2.0, np.float32), w))
    v = backend.array(np.random.default_rng(seed).normal(0, 1.5, (4, 3)).astype(np.float32))
    for kw in ({}, {"collapsed": True, "init_mask": "evidence"}):
        for a, b in zip(one.mean_field(v, **kw), mix.mean_field(v, **kw)):
            np.testing.assert_allclose(backend.np(a), backend.np(b), atol=1e-5)
    e1 = exact_posterior(one.clean, one.mask, one.noise, v[0])
    e2 = exact_posterior(mix.clean, mix.mask, mix.noise, v[0])
    for k in e1:
        np.testing.assert_allclose(backend.np(e1[k]), backend.np(e2[k]), atol=1e-5)


def test_mixture_backends_agree():
    """Pyro = NumPyro with a per-pixel (K, D) mixture outlier: likelihood, mean field (both
    families), the exact posterior (and it against numpy), the SA site's bound, and jit."""
    import jax
    import torch
    from conftest import Backend

    from ebm_ppl.models.robust import exact_posterior, log_likelihood

    p = tiny(62)
    rng = np.random.default_rng(3)
    noise = (
        0.3,
        rng.normal(0, 1, (3, 3)).astype(np.float32),
        rng.uniform(0.3, 2.0, (3, 1)).astype(np.float32),
        np.array([0.2, 0.5, 0.3], np.float32),
    )
    t, j = build(Backend("torch"), p, noise), build(Backend("jax"), p, noise)
    v = rng.normal(0, 1.5, size=(4, 3)).astype(np.float32)
    s = (rng.uniform(size=(4, 3)) < 0.5).astype(np.float32)
    jv = jax.numpy.asarray(v)
    np.testing.assert_allclose(
        log_likelihood(torch.tensor(v), torch.tensor(v[::-1].copy()), torch.tensor(s), t.noise),
        np.asarray(log_likelihood(jv, jax.numpy.asarray(v[::-1]), jax.numpy.asarray(s), j.noise)),
        rtol=1e-5,
    )
    for kw in ({}, {"collapsed": True, "init_mask": "evidence"}):
        qt, qj = t.mean_field(torch.tensor(v), **kw), j.mean_field(jv, **kw)
        for a, b in zip(qt, qj):
            np.testing.assert_allclose(a.numpy(), np.asarray(b), atol=1e-4)
    et = exact_posterior(t.clean, t.mask, t.noise, torch.tensor(v[0]))
    ej = exact_posterior(j.clean, j.mask, j.noise, jv[0])
    for k in et:
        np.testing.assert_allclose(et[k].numpy(), np.asarray(ej[k]), atol=1e-4)
    assert float(et["log_marginal"]) == pytest.approx(
        numpy_log_marginal(p, v[:1].astype(np.float64), noise)[0], abs=1e-3
    )
    lt = t.visible(collapsed=True).log_prob(torch.tensor(v)).numpy()
    lj = np.asarray(j.visible(collapsed=True).log_prob(jv))
    np.testing.assert_allclose(lt, lj, atol=1e-3)
    f = jax.jit(lambda r, x: r.mean_field(x, collapsed=True).x_mean)
    np.testing.assert_allclose(
        np.asarray(f(j, jv)), t.mean_field(torch.tensor(v), collapsed=True).x_mean, atol=1e-4
    )


def test_mixture_bad_input(backend):
    fe = frontend(backend)
    p = tiny(72)
    a = backend.array
    clean = fe.GaussianRBM(*(a(x) for x in p["clean"]), sigma=0.8)
    mask = fe.RBM(*(a(x) for x in p["mask"]))
    two = np.ones(2, np.float32)
    with pytest.raises(ValueError, match="outlier_weights must have shape"):
        fe.RobustBM(clean, mask, 0.3, two, two, np.ones((2, 1), np.float32))
    with pytest.raises(ValueError, match="outlier_weights must be positive"):
        fe.RobustBM(clean, mask, 0.3, two, two, np.array([0.5, -0.5], np.float32))
    with pytest.raises(ValueError, match="outlier_weights must be positive"):
        fe.RobustBM(clean, mask, 0.3, two, two, np.array([0.5, np.nan], np.float32))
    with pytest.raises(ValueError, match=r"outlier_loc must have shape \(2,\)"):
        fe.RobustBM(clean, mask, 0.3, np.ones(3, np.float32), two, two)
    with pytest.raises(ValueError, match=r"outlier_scale must have shape \(2,\)"):
        fe.RobustBM(clean, mask, 0.3, two, np.ones((2, 4), np.float32), two)
    with pytest.raises(ValueError, match="outlier_scale must be positive"):
        fe.RobustBM(clean, mask, 0.3, two, np.array([1.0, 0.0], np.float32), two)
    with pytest.raises(ValueError, match="outlier_loc must be finite"):
        fe.RobustBM(clean, mask, 0.3, np.array([1.0, np.inf], np.float32), two, two)
    with pytest.raises(ValueError, match="outlier_weights must have shape"):
        fe.RobustLikelihood(a(np.zeros(3)), a(np.ones(3)), 0.3, two, two, outlier_weights=1.0)
