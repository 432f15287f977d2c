"""Deep Lambertian model: geometry, the program's log joint, the exact albedo posterior by
an independent enumeration, block Gibbs and HMC-within-Gibbs against exact posteriors,
coordinate-ascent inference, the data generator, backend agreement and bad input."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
from scipy import stats

PRIORS = {
    "offset": 0.5,
    "scale": 0.2,
    "height_scale": 1.0,
    "smoothness": 1.0,
    "light_loc": (0.2, -0.1, 1.0),
    "light_scale": 0.3,
    "noise": 0.05,
}
SHAPE = (2, 2)


def tiny_dbm(seed: int, sizes=(4, 3, 2)) -> dict:
    rng = np.random.default_rng(seed)
    ws = [(0.7 * rng.standard_normal((a, b))).astype(np.float32) for a, b in zip(sizes, sizes[1:])]
    bs = [(0.5 * rng.standard_normal(n)).astype(np.float32) for n in sizes]
    return {"weights": ws, "biases": bs, "sigma": 0.8}


def frontend(backend):
    if backend.name == "torch":
        import ebm_ppl.pyro as fe
    else:
        import ebm_ppl.numpyro as fe
    return fe


def build(backend, p, **priors):
    fe = frontend(backend)
    a = backend.array
    dbm = fe.DBM([a(w) for w in p["weights"]], [a(b) for b in p["biases"]], sigma=p["sigma"])
    return fe.DeepLambertian(dbm, SHAPE, **dict(PRIORS, **priors))


def np_shading(z, light):
    from ebm_ppl.datasets.shaded_digits import normals

    return np.maximum((normals(z) * np.asarray(light)[..., None, :]).sum(-1), 0.0)


# ---- geometry ---------------------------------------------------------------------------


def test_normals_of_a_plane_and_shading(backend):
    """A plane z = 0.3 x - 0.5 y has normal (-0.3, 0.5, 1)/norm at every pixel except the
    repeated far edges; shading is max(0, n . l); the numpy generator agrees."""
    from ebm_ppl.models.lambertian import normals_from_height, shading

    h, w = 4, 5
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    z = (0.3 * xx - 0.5 * yy).astype(np.float32)
    n = backend.np(normals_from_height(backend.array(z))).reshape(h, w, 3)
    want = np.array([-0.3, 0.5, 1.0]) / np.linalg.norm([-0.3, 0.5, 1.0])
    np.testing.assert_allclose(
        n[: h - 1, : w - 1], np.broadcast_to(want, (h - 1, w - 1, 3)), atol=1e-6
    )
    np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1.0, atol=1e-6)
    light = np.array([0.9, -0.2, 0.1], np.float32)
    s = backend.np(shading(backend.array(z), backend.array(light)))
    np.testing.assert_allclose(s, np_shading(z, light), atol=1e-6)
    assert (s >= 0).all() and (s == 0).any()


# ---- the program --------------------------------------------------------------------------


def numpy_dbm_energy(p, layers):
    ws, bs, sig = p["weights"], p["biases"], p["sigma"]
    v = layers[0]
    e = ((v - bs[0]) ** 2).sum(-1) / (2 * sig**2) - (v / sig) @ ws[0] @ layers[1]
    for i in range(1, len(bs)):
        e = e - bs[i] @ layers[i]
    for i in range(1, len(ws)):
        e = e - layers[i] @ ws[i] @ layers[i + 1]
    return e


def program_log_joint(backend, lam, values, images):
    """The program's log joint at ``values`` with ``images`` observed, by the host PPL."""
    if backend.name == "torch":
        import pyro.poutine as poutine

        tr = poutine.trace(poutine.condition(lam.model, data=values)).get_trace(
            backend.array(images)
        )
        return float(tr.log_prob_sum())
    from numpyro.infer.util import log_density

    return float(log_density(lam.model, (backend.array(images),), {}, values)[0])


def test_program_log_joint_by_hand(backend):
    """log p(albedo state, height, light, image) of the program = -E_DBM + the Gaussian
    height prior + smoothness + the light prior + the Lambertian observation, by hand."""
    p = tiny_dbm(0)
    lam = build(backend, p)
    rng = np.random.default_rng(1)
    v = rng.normal(size=4).astype(np.float32)
    h1 = (rng.uniform(size=3) < 0.5).astype(np.float32)
    h2 = (rng.uniform(size=2) < 0.5).astype(np.float32)
    z = rng.normal(0, 0.5, SHAPE).astype(np.float32)
    light = np.array([0.3, 0.1, 0.9], np.float32)
    y = rng.uniform(0, 0.5, 4).astype(np.float32)
    state = np.concatenate([v, h1, h2])[None]
    values = {
        "albedo": backend.array(state),
        "height": backend.array(z[None]),
        "light": backend.array(light[None]),
    }
    got = program_log_joint(backend, lam, values, y[None])
    pr = PRIORS
    dx = np.diff(z, axis=1)
    dy = np.diff(z, axis=0)
    want = (
        -numpy_dbm_energy(p, [v, h1, h2])
        + stats.norm.logpdf(z, 0, pr["height_scale"]).sum()
        - 0.5 * pr["smoothness"] * ((dx**2).sum() + (dy**2).sum())
        + stats.norm.logpdf(light, pr["light_loc"], pr["light_scale"]).sum()
        + stats.norm.logpdf(
            y, (pr["offset"] + pr["scale"] * v) * np_shading(z, light), pr["noise"]
        ).sum()
    )
    assert got == pytest.approx(want, rel=1e-5, abs=1e-3)


def random_height_prior(seed: int, d: int = 4):
    from ebm_ppl.models.lambertian import HeightPrior

    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d))
    cov = a @ a.T / d + 0.3 * np.eye(d)
    mean = rng.normal(0, 0.5, d)
    prec = np.linalg.inv(cov)
    hp = HeightPrior(mean.astype(np.float32), prec.astype(np.float32), np.linalg.slogdet(prec)[1])
    return hp, mean, cov


@pytest.mark.parametrize("seed", [0, 1])
def test_program_log_joint_with_a_learned_height_prior(backend, seed):
    """With a learned Gaussian height prior the program's log joint replaces the per-pixel
    N(0, height_scale^2) term by the prior's multivariate normal density (scipy), the height
    site holding the flattened field; the coordinate ascent's objective
    (continuous_log_joint) is the same density without the DBM's energy."""
    from ebm_ppl.models.lambertian import continuous_log_joint

    p = tiny_dbm(seed)
    hp, mean, cov = random_height_prior(seed + 10)
    lam = build(backend, p, height_prior=hp)
    rng = np.random.default_rng(seed + 1)
    v = rng.normal(size=4).astype(np.float32)
    h1 = (rng.uniform(size=3) < 0.5).astype(np.float32)
    h2 = (rng.uniform(size=2) < 0.5).astype(np.float32)
    z = rng.normal(0, 0.5, SHAPE).astype(np.float32)
    light = np.array([0.3, 0.1, 0.9], np.float32)
    y = rng.uniform(0, 0.5, 4).astype(np.float32)
    values = {
        "albedo": backend.array(np.concatenate([v, h1, h2])[None]),
        "height": backend.array(z.reshape(1, 4)),
        "light": backend.array(light[None]),
    }
    got = program_log_joint(backend, lam, values, y[None])
    pr = PRIORS
    dx, dy = np.diff(z, axis=1), np.diff(z, axis=0)
    rest = (
        stats.multivariate_normal(mean, cov).logpdf(z.ravel())
        - 0.5 * pr["smoothness"] * ((dx**2).sum() + (dy**2).sum())
        + stats.norm.logpdf(light, pr["light_loc"], pr["light_scale"]).sum()
        + stats.norm.logpdf(
            y, (pr["offset"] + pr["scale"] * v) * np_shading(z, light), pr["noise"]
        ).sum()
    )
    assert got == pytest.approx(-numpy_dbm_energy(p, [v, h1, h2]) + rest, rel=1e-5, abs=1e-3)
    a = backend.array
    obj = continuous_log_joint(a(y), a(v), a(z), a(light), lam.priors)
    assert float(obj) == pytest.approx(rest, rel=1e-5, abs=1e-3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_photometric_stereo_recovers_generated_surfaces(seed):
    """Noise-free images of generated surfaces under >= 3 lights close enough to the viewing
    axis that no pixel is in shadow: photometric stereo gives back the height field up to
    its mean (so the normals exactly). (Its accuracy with noise is measured in
    benchmarks/shaded_digits_lambertian.py.)"""
    from ebm_ppl.datasets.shaded_digits import make_lights, make_surfaces, render
    from ebm_ppl.models.lambertian import photometric_stereo

    rng = np.random.default_rng(seed)
    z = make_surfaces(5, (7, 9), seed=seed).astype(np.float64)
    lights = make_lights(5 * 4, max_polar=25.0, seed=seed).reshape(5, 4, 3)
    albedo = rng.uniform(0.3, 0.9, (5, 1, 63))
    images = render(albedo, z[:, None], lights)
    assert (images > 0).all()  # no shadows: the least-squares normals are exact
    got = photometric_stereo(images, lights, (7, 9))
    assert got.shape == (5, 7, 9)
    np.testing.assert_allclose(got.mean((1, 2)), 0.0, atol=1e-9)
    np.testing.assert_allclose(got, z - z.mean((1, 2), keepdims=True), atol=2e-3)
    with pytest.raises(ValueError, match="at least 3 lights"):
        photometric_stereo(images[:, :2], lights[:, :2], (7, 9))
    with pytest.raises(ValueError, match="lights must have shape"):
        photometric_stereo(images, lights[:, :, :2], (7, 9))
    with pytest.raises(ValueError, match="images must have shape"):
        photometric_stereo(images, lights, (7, 7))


@pytest.mark.parametrize("rank", [0, 2, 5])
def test_fit_height_prior_is_probabilistic_pca(rank):
    """The learned prior is probabilistic PCA: its precision and log-determinant equal
    scikit-learn's PCA(n_components=rank).get_precision() (an independent implementation of
    Tipping & Bishop's estimate) on the same samples."""
    from sklearn.decomposition import PCA

    from ebm_ppl.models.lambertian import fit_height_prior

    rng = np.random.default_rng(rank)
    z = rng.normal(size=(60, 3, 4)) @ np.diag([1.0, 2.0, 0.5, 1.5]) + rng.normal(size=(60, 3, 1))
    hp = fit_height_prior(z, rank=rank)
    flat = z.reshape(60, 12)
    pca = PCA(n_components=rank, svd_solver="full").fit(flat)
    want = pca.get_precision()
    np.testing.assert_allclose(hp.mean, flat.mean(0), atol=1e-6)
    np.testing.assert_allclose(hp.precision, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert hp.log_det == pytest.approx(np.linalg.slogdet(want)[1], rel=1e-6)
    with pytest.raises(ValueError, match="rank"):
        fit_height_prior(z, rank=12)
    with pytest.raises(ValueError, match="heights"):
        fit_height_prior(z.reshape(60, 12))


# ---- the exact albedo posterior -------------------------------------------------------------


def brute_albedo_posterior(p, y, shade, pr=PRIORS):
    """E[v | y] and log p(y) by enumerating *every* hidden state (h1 and h2) and integrating
    v in closed form, in float64: an independent route to exact_albedo_posterior."""
    ws = [np.asarray(w, np.float64) for w in p["weights"]]
    bs = [np.asarray(b, np.float64) for b in p["biases"]]
    sig = p["sigma"]
    a = pr["scale"] * shade
    logs, means = [], []
    for h1 in itertools.product([0, 1], repeat=len(bs[1])):
        for h2 in itertools.product([0, 1], repeat=len(bs[2])):
            h1a, h2a = np.array(h1, float), np.array(h2, float)
            m = bs[0] + sig * ws[0] @ h1a
            # int exp(-E) dv = exp(b1 h1 + b2 h2 + h1 W2 h2 + sum(m^2 - b0^2) / 2 sig^2) * C
            lw = (
                bs[1] @ h1a
                + bs[2] @ h2a
                + h1a @ ws[1] @ h2a
                + ((m**2 - bs[0] ** 2) / (2 * sig**2)).sum()
            )
            var_y = a**2 * sig**2 + pr["noise"] ** 2
            pred = pr["offset"] * shade + a * m
            ly = stats.norm.logpdf(y, pred, np.sqrt(var_y)).sum()
            logs.append((lw, ly))
            means.append(m + a * sig**2 * (y - pred) / var_y)
    lw = np.array([t[0] for t in logs])
    ly = np.array([t[1] for t in logs])
    w = np.exp(lw + ly - (lw + ly).max())
    w /= w.sum()
    ev = np.logaddexp.reduce(lw + ly) - np.logaddexp.reduce(lw)
    return (w[:, None] * np.array(means)).sum(0), ev


@pytest.mark.parametrize("seed", [0, 1])
def test_exact_albedo_posterior_by_full_enumeration(backend, seed):
    from ebm_ppl.models.lambertian import exact_albedo_posterior

    p = tiny_dbm(10 + seed)
    lam = build(backend, p)
    rng = np.random.default_rng(seed)
    y = rng.uniform(0.1, 0.6, 4).astype(np.float32)
    shade = rng.uniform(0.2, 1.0, 4).astype(np.float32)
    mean, ev = exact_albedo_posterior(lam.dbm, backend.array(y), backend.array(shade), lam.priors)
    want_mean, want_ev = brute_albedo_posterior(p, y.astype(np.float64), shade.astype(np.float64))
    np.testing.assert_allclose(backend.np(mean), want_mean, atol=1e-4)
    assert float(backend.np(ev)) == pytest.approx(want_ev, abs=1e-3)


# ---- samplers against exact answers -----------------------------------------------------------


def conditioned(backend, lam, z, light=None, copies=1):
    data = {"height": backend.array(np.repeat(z[None], copies, 0))}
    if light is not None:
        data["light"] = backend.array(np.repeat(light[None], copies, 0))
    if backend.name == "torch":
        import pyro.poutine as poutine

        return poutine.condition(lam.model, data=data)
    from numpyro import handlers

    return handlers.condition(lam.model, data=data)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.slow
def test_block_gibbs_samples_the_albedo_posterior(backend, seed):
    """With surface and light observed, BlockGibbs on the program (the Lambertian observation
    folded into the DBM's visible conditional): the last states of 1000 independent chains
    (plate copies) have a mean within 4.5 SE of the exact E[v | y]."""
    from ebm_ppl.models.lambertian import exact_albedo_posterior

    fe = frontend(backend)
    p = tiny_dbm(20 + seed)
    lam = build(backend, p)
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 0.4, SHAPE).astype(np.float32)
    light = np.array([0.3, -0.2, 0.95], np.float32)
    y = rng.uniform(0.1, 0.6, (1, 4)).astype(np.float32)
    shade = np_shading(z, light).astype(np.float32)
    want, _ = exact_albedo_posterior(lam.dbm, backend.array(y[0]), backend.array(shade), lam.priors)
    want = backend.np(want)
    n = 1000  # independent chains: plate copies of the one image
    model = conditioned(backend, lam, z, light, copies=n)
    images = backend.array(np.repeat(y, n, 0))
    if backend.name == "torch":
        import pyro
        from pyro.infer import MCMC

        pyro.set_rng_seed(seed)
        m = MCMC(fe.BlockGibbs(model), num_samples=1, warmup_steps=40, disable_progbar=True)
        m.run(images)
    else:
        from numpyro.infer import MCMC

        m = MCMC(fe.BlockGibbs(model), num_warmup=40, num_samples=1, progress_bar=False)
        m.run(backend.key(seed), images)
    v = backend.np(m.get_samples()["albedo"])[-1, :, :4]
    se = v.std(0, ddof=1) / np.sqrt(n)
    assert (np.abs(v.mean(0) - want) < 4.5 * se).all(), (v.mean(0), want, se)


def brute_evidence_many(p, y, shades, pr=PRIORS):
    """log p(y | shading) for many shadings ``(P, D)`` at once, by the enumeration of
    :func:`brute_albedo_posterior` (every hidden state; v integrated in closed form)."""
    ws = [np.asarray(w, np.float64) for w in p["weights"]]
    bs = [np.asarray(b, np.float64) for b in p["biases"]]
    sig = p["sigma"]
    a = pr["scale"] * shades
    var_y = a**2 * sig**2 + pr["noise"] ** 2
    lws, lys = [], []
    for h1 in itertools.product([0, 1], repeat=len(bs[1])):
        for h2 in itertools.product([0, 1], repeat=len(bs[2])):
            h1a, h2a = np.array(h1, float), np.array(h2, float)
            m = bs[0] + sig * ws[0] @ h1a
            lws.append(
                bs[1] @ h1a
                + bs[2] @ h2a
                + h1a @ ws[1] @ h2a
                + ((m**2 - bs[0] ** 2) / (2 * sig**2)).sum()
            )
            pred = pr["offset"] * shades + a * m
            lys.append(stats.norm.logpdf(y, pred, np.sqrt(var_y)).sum(-1))
    lw, ly = np.array(lws), np.stack(lys, -1)  # (S,), (P, S)
    return np.logaddexp.reduce(lw + ly, axis=-1) - np.logaddexp.reduce(lw)


def light_posterior_by_quadrature(lam, p, y, z, grid=25):
    """E[l | y, z] by a 3-D grid over the light, with the albedo DBM summed/integrated out
    exactly at every grid point."""
    pr = PRIORS
    loc, sc = np.array(pr["light_loc"]), pr["light_scale"]
    axes = [np.linspace(m - 4.5 * sc, m + 4.5 * sc, grid) for m in loc]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    shades = np_shading(z[None], pts)  # (P, D)
    logs = brute_evidence_many(p, y, shades) + stats.norm.logpdf(pts, loc, sc).sum(-1)
    w = np.exp(logs - logs.max())
    w /= w.sum()
    return (w[:, None] * pts).sum(0)


@functools.lru_cache(maxsize=1)
def light_problem():
    """A 2x2 image of a tiny albedo DBM with the surface known: (params, z, y, exact E[l|y])."""
    p = tiny_dbm(30)
    rng = np.random.default_rng(3)
    z = rng.normal(0, 0.4, SHAPE).astype(np.float32)
    true_light = np.array([0.35, -0.25, 0.9], np.float32)
    y = (0.5 * np_shading(z, true_light) + 0.05 * rng.standard_normal(4)).astype(np.float32)
    return p, z, y, light_posterior_by_quadrature(None, p, y.astype(np.float64), z)


def check_light(samples, want):
    """``samples`` (draws, copies, 3), the copies independent chains: the mean is within
    5 SE of ``want``, with the SE from the effective sample size."""
    from numpyro.diagnostics import effective_sample_size

    chains = np.swapaxes(samples, 0, 1)
    ess = effective_sample_size(chains)
    flat = chains.reshape(-1, 3)
    err = np.abs(flat.mean(0) - want)
    assert (err < 5 * flat.std(0) / np.sqrt(ess)).all(), (flat.mean(0), want, ess)


@pytest.mark.slow
def test_numpyro_hmc_gibbs_matches_the_light_posterior():
    """NumPyro HMCGibbs: NUTS on the light + our block Gibbs on the albedo DBM (gibbs_fn),
    surface observed: E[l | y] against a 3-D quadrature with the DBM summed out exactly;
    30 plate copies of the image are 30 independent chains."""
    import jax
    from conftest import Backend
    from numpyro import handlers
    from numpyro.infer import MCMC, NUTS, HMCGibbs

    import ebm_ppl.numpyro as enp

    p, z, y, want = light_problem()
    jb = Backend("jax")
    lam = build(jb, p)
    n = 30
    model = handlers.condition(lam.model, data={"height": jb.array(np.repeat(z[None], n, 0))})
    images = jb.array(np.repeat(y[None], n, 0))
    gibbs = enp.BlockGibbs(model).gibbs_fn(images)
    kern = HMCGibbs(NUTS(model), gibbs_fn=gibbs, gibbs_sites=["albedo"])
    m = MCMC(kern, num_warmup=150, num_samples=100, progress_bar=False)
    m.run(jax.random.PRNGKey(0), images)
    check_light(np.asarray(m.get_samples()["light"]), want)


def test_pyro_hmc_gibbs_matches_the_light_posterior():
    """ebm_ppl.pyro.HMCGibbs (NUTS with a potential closing over the DBM state, its cache
    cleared after each Gibbs step) on the same problem, 8 plate copies."""
    import pyro
    import pyro.poutine as poutine
    from conftest import Backend
    from pyro.infer import MCMC

    import ebm_ppl.pyro as epp

    p, z, y, want = light_problem()
    tb = Backend("torch")
    lam = build(tb, p)
    n = 8
    model = poutine.condition(lam.model, data={"height": tb.array(np.repeat(z[None], n, 0))})
    pyro.set_rng_seed(0)
    mcmc = MCMC(
        epp.HMCGibbs(model, max_tree_depth=5), num_samples=60, warmup_steps=50, disable_progbar=True
    )
    mcmc.run(tb.array(np.repeat(y[None], n, 0)))
    check_light(mcmc.get_samples()["light"].numpy(), want)


# ---- coordinate ascent on the synthetic benchmark ------------------------------------------


def test_map_inference_recovers_albedo_and_backends_agree():
    """On generated identities (8x8 from digits) with a DBM whose visible bias is the mean
    albedo, coordinate ascent fits the image (residual near the noise) and recovers albedo
    better than the flat-surface, prior-light reading; Pyro and NumPyro agree."""
    import torch

    import ebm_ppl.numpyro as enp
    import ebm_ppl.pyro as epp
    from ebm_ppl.datasets import load_digits
    from ebm_ppl.datasets.shaded_digits import make_identities

    x, _ = load_digits()
    x = x[:6]  # 8x8 digits in [0, 1]; upsample to 28x28 by repetition for the generator
    big = np.kron(x.reshape(-1, 8, 8), np.ones((4, 4)))[:, 2:30, 2:30].reshape(-1, 784)
    data = make_identities(big, n_lights=2, shape=(7, 7), noise=0.01, seed=0)
    imgs = data["images"].reshape(-1, 49)
    albedo = np.repeat(data["albedo"], 2, 0)
    mean = albedo.mean(0)
    rng = np.random.default_rng(0)
    ws = [
        (0.01 * rng.standard_normal((49, 16))).astype(np.float32),
        (0.01 * rng.standard_normal((16, 8))).astype(np.float32),
    ]
    bs = [
        ((mean - 0.5) / 0.2).astype(np.float32),
        np.zeros(16, np.float32),
        np.zeros(8, np.float32),
    ]
    kw = dict(
        shape=(7, 7),
        offset=0.5,
        scale=0.2,
        height_scale=3.0,
        smoothness=2.0,
        light_loc=(0.0, 0.0, 1.0),
        light_scale=0.5,
        noise=0.02,
    )
    lam_j = enp.DeepLambertian(enp.DBM([np.asarray(w) for w in ws], bs, sigma=1.0), **kw)
    lam_t = epp.DeepLambertian(
        epp.DBM([torch.tensor(w) for w in ws], [torch.tensor(b) for b in bs], sigma=1.0), **kw
    )
    # the two backends agree step for step (long runs amplify float32 differences, so
    # compare a short one)
    short_j = lam_j.infer_map(imgs, num_steps=20, lr=0.05)
    short_t = lam_t.infer_map(torch.tensor(imgs), num_steps=20, lr=0.05)
    np.testing.assert_allclose(short_t["albedo"].numpy(), np.asarray(short_j["albedo"]), atol=1e-3)
    np.testing.assert_allclose(short_t["light"].numpy(), np.asarray(short_j["light"]), atol=1e-3)
    out_j = lam_j.infer_map(imgs, num_steps=150, lr=0.05)
    a_j = np.asarray(out_j["albedo"])
    fit = np.asarray(lam_j.relight(out_j["albedo"], out_j["height"], out_j["light"]))
    assert np.sqrt(((fit - imgs) ** 2).mean()) < 0.03
    naive = imgs / np.maximum(np_shading(np.zeros((7, 7)), np.array([0, 0, 1.0])), 1e-3)
    assert np.abs(a_j - albedo).mean() < np.abs(naive - albedo).mean()


def test_learned_height_prior_recovers_light_and_surface_and_backends_agree():
    """A surface prior learned by photometric stereo from other identities (known lights)
    lets single-image inference recover the light and the surface: light and normal errors
    well below those of the prior-mean light and a flat surface, and below the hand-set
    smoothness prior's; Pyro and NumPyro agree."""
    import torch

    import ebm_ppl.numpyro as enp
    import ebm_ppl.pyro as epp
    from ebm_ppl.datasets import load_digits
    from ebm_ppl.datasets.shaded_digits import make_identities, normals
    from ebm_ppl.models.lambertian import fit_height_prior, photometric_stereo

    x, _ = load_digits()
    big = np.kron(x[:208].reshape(-1, 8, 8), np.ones((4, 4)))[:, 2:30, 2:30].reshape(-1, 784)
    train = make_identities(big[8:], n_lights=6, shape=(7, 7), noise=0.01, seed=1)
    prior = fit_height_prior(photometric_stereo(train["images"], train["light"], (7, 7)), rank=5)
    test = make_identities(big[:8], n_lights=2, shape=(7, 7), noise=0.01, seed=0)
    imgs = test["images"].reshape(-1, 49)
    mean = np.repeat(test["albedo"], 2, 0).mean(0)
    rng = np.random.default_rng(0)
    ws = [
        (0.01 * rng.standard_normal((49, 16))).astype(np.float32),
        (0.01 * rng.standard_normal((16, 8))).astype(np.float32),
    ]
    bs = [
        ((mean - 0.5) / 0.2).astype(np.float32),
        np.zeros(16, np.float32),
        np.zeros(8, np.float32),
    ]
    kw = dict(shape=(7, 7), offset=0.5, scale=0.2, light_loc=(0.0, 0.0, 1.0), noise=0.01)
    learned = dict(kw, smoothness=0.0, height_prior=prior)
    lam_j = enp.DeepLambertian(enp.DBM([np.asarray(w) for w in ws], bs, sigma=1.0), **learned)
    lam_t = epp.DeepLambertian(
        epp.DBM([torch.tensor(w) for w in ws], [torch.tensor(b) for b in bs], sigma=1.0), **learned
    )
    short_j = lam_j.infer_map(imgs, num_steps=20, lr=0.05)
    short_t = lam_t.infer_map(torch.tensor(imgs), num_steps=20, lr=0.05)
    np.testing.assert_allclose(short_t["height"].numpy(), np.asarray(short_j["height"]), atol=1e-3)
    np.testing.assert_allclose(short_t["light"].numpy(), np.asarray(short_j["light"]), atol=1e-3)

    def errors(lam):
        out = lam.infer_map(imgs, num_steps=300, lr=0.05)
        light, n = np.asarray(out["light"]), np.asarray(out["normals"])
        true_l = test["light"].reshape(-1, 3)
        true_n = np.repeat(normals(test["height"]), 2, 0)
        cos_l = (light * true_l).sum(-1) / np.linalg.norm(light, axis=-1)
        return np.degrees(np.arccos(np.clip(cos_l, -1, 1))).mean(), np.degrees(
            np.arccos(np.clip((n * true_n).sum(-1), -1, 1))
        ).mean()

    light_err, normal_err = errors(lam_j)
    smooth = enp.DeepLambertian(
        enp.DBM([np.asarray(w) for w in ws], bs, sigma=1.0),
        **dict(kw, smoothness=100.0, height_scale=3.0),
    )
    light_err_s, normal_err_s = errors(smooth)
    true_n = np.repeat(normals(test["height"]), 2, 0)
    flat_err = np.degrees(np.arccos(np.clip(true_n[..., 2], -1, 1))).mean()
    prior_light_err = np.degrees(np.arccos(test["light"].reshape(-1, 3)[:, 2])).mean()
    assert light_err < 0.75 * prior_light_err and light_err < light_err_s
    assert normal_err < 0.5 * flat_err and normal_err < normal_err_s


# ---- the generator and bad input ------------------------------------------------------------


def test_generator_is_deterministic_and_consistent():
    from ebm_ppl.datasets.shaded_digits import make_identities, make_lights, make_surfaces, render

    rng = np.random.default_rng(0)
    digits = rng.uniform(size=(3, 784)).astype(np.float32)
    a = make_identities(digits, 4, seed=5)
    b = make_identities(digits, 4, seed=5)
    c = make_identities(digits, 4, seed=6)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["images"], c["images"])
    assert a["images"].shape == (3, 4, 196) and a["albedo"].min() >= 0.35
    clean = render(a["albedo"][:, None], a["height"][:, None], a["light"])
    assert (a["images"] - clean).std() == pytest.approx(0.02, rel=0.1)
    lights = make_lights(500, max_polar=40, seed=1)
    np.testing.assert_allclose(np.linalg.norm(lights, axis=-1), 1.0, atol=1e-6)
    assert np.degrees(np.arccos(lights[:, 2])).max() <= 40.0 + 1e-4
    z = make_surfaces(2, (14, 14), seed=0)
    assert np.abs(np.diff(z, axis=-1)).max() < 3.0  # smooth: no jumps


def test_bad_input(backend):
    fe = frontend(backend)
    p = tiny_dbm(40)
    a = backend.array
    binary = fe.DBM([a(w) for w in p["weights"]], [a(b) for b in p["biases"]])
    with pytest.raises(ValueError, match="Gaussian visible"):
        fe.DeepLambertian(binary, SHAPE)
    gauss = fe.DBM([a(w) for w in p["weights"]], [a(b) for b in p["biases"]], sigma=1.0)
    with pytest.raises(ValueError, match="pixels"):
        fe.DeepLambertian(gauss, (3, 3))
    with pytest.raises(ValueError, match="noise must be a positive"):
        fe.DeepLambertian(gauss, SHAPE, noise=0.0)
    with pytest.raises(ValueError, match="light_loc"):
        fe.DeepLambertian(gauss, SHAPE, light_loc=(0.0, 1.0))
    with pytest.raises(TypeError, match="albedo_dbm must be a DBM"):
        fe.DeepLambertian("dbm", SHAPE)
    lam = fe.DeepLambertian(gauss, SHAPE)
    with pytest.raises(ValueError, match="num_steps"):
        lam.infer_map(a(np.ones((1, 4), np.float32)), num_steps=0)
    with pytest.raises(ValueError, match="images"):
        lam.infer_map(a(np.ones((1, 5), np.float32)))
    from ebm_ppl.datasets.shaded_digits import albedo_from_digits

    with pytest.raises(ValueError, match="divide"):
        albedo_from_digits(np.zeros((1, 784)), (5, 5))
