"""Block Gibbs and mean field by autodiff for DBMs written in plain PPL syntax (both PPLs),
against exact enumeration and against the DBM class."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

SIZES = (3, 3, 2)


def params(seed, scale=1.0):
    rng = np.random.default_rng(seed)
    ws = [
        (scale * rng.standard_normal((a, b))).astype(np.float32) for a, b in zip(SIZES, SIZES[1:])
    ]
    bs = [(0.5 * rng.standard_normal(n)).astype(np.float32) for n in SIZES]
    return ws, bs


def exact_joint(ws, bs):
    x = np.array(list(itertools.product([0, 1], repeat=sum(SIZES))), dtype=np.float64)
    v, h1, h2 = x[:, :3], x[:, 3:6], x[:, 6:]
    neg_e = (
        np.einsum("ni,ij,nj->n", v, ws[0], h1)
        + np.einsum("ni,ij,nj->n", h1, ws[1], h2)
        + v @ bs[0]
        + h1 @ bs[1]
        + h2 @ bs[2]
    )
    p = np.exp(neg_e - neg_e.max())
    return x, p / p.sum(), neg_e


def plain_model(backend, ws, bs, extra=None, chains=None):
    """A DBM in plain PPL syntax: Bernoulli layer sites with the biases as logits and the
    interactions as a factor, so log p = -E - sum softplus(b). With ``chains``, that many
    independent copies under a plate (the Pyro tests sample many chains in one trace)."""
    W1, W2 = (backend.array(w) for w in ws)
    b = [backend.array(x) for x in bs]
    if backend.name == "torch":
        import pyro as ppl
        import pyro.distributions as dist
    else:
        import numpyro as ppl
        import numpyro.distributions as dist

    def body(v=None):
        v = ppl.sample("v", dist.Bernoulli(logits=b[0]).to_event(1), obs=v)
        h1 = ppl.sample("h1", dist.Bernoulli(logits=b[1]).to_event(1))
        h2 = ppl.sample("h2", dist.Bernoulli(logits=b[2]).to_event(1))
        ppl.factor("energy", (v @ W1 * h1).sum(-1) + (h1 @ W2 * h2).sum(-1))
        if extra is not None:
            ppl.factor("extra", extra(v, h1, h2))

    if chains is None:
        return body

    def model(v=None):
        with ppl.plate("chains", chains):
            body(v)

    return model


TORCH_CHAINS = 100


def run_mcmc(backend, model, n, seed, chains=1, **kernel_kw):
    """``n`` draws: NumPyro runs 4 vectorized chains; Pyro runs one MCMC chain of a model
    whose ``chains`` plate holds that many independent copies (draws are flattened)."""
    if backend.name == "torch":
        import torch
        from pyro.infer import MCMC

        from ebm_ppl.pyro import BlockGibbs

        torch.manual_seed(seed)
        kernel = BlockGibbs(model, **kernel_kw)
        mc = MCMC(kernel, num_samples=max(1, n // chains), warmup_steps=50, disable_progbar=True)
        mc.run()
        samples = mc.get_samples()
        # chain-major, so that thinning by [::2] thins each chain in time
        return kernel, {
            k: np.asarray(v).swapaxes(0, 1).reshape((-1,) + tuple(v.shape[2:]))
            for k, v in samples.items()
        }
    else:
        import jax
        from numpyro.infer import MCMC

        from ebm_ppl.numpyro import BlockGibbs

        kernel = BlockGibbs(model, **kernel_kw)
        mc = MCMC(
            kernel,
            num_warmup=50,
            num_samples=n // 4,
            num_chains=4,
            progress_bar=False,
            chain_method="vectorized",
        )
        mc.run(jax.random.PRNGKey(seed))
    return kernel, {k: np.asarray(backend.np(s)) for k, s in mc.get_samples().items()}


@pytest.mark.parametrize("seed", [0, 1])
def test_block_gibbs_on_plain_dbm_matches_exact_joint(backend, seed):
    from conftest import chi2_pvalue, state_index

    ws, bs = params(seed)
    _, p, _ = exact_joint(ws, bs)
    chains = TORCH_CHAINS if backend.name == "torch" else None
    model = plain_model(backend, ws, bs, chains=chains)
    kernel, s = run_mcmc(backend, model, 6000, seed, chains=chains or 1)
    assert kernel.gibbs_blocks == (("v", "h2"), ("h1",))
    x = np.concatenate([s["v"], s["h1"], s["h2"]], axis=-1)[::2]  # thinned
    counts = np.bincount(state_index(x), minlength=p.size)
    assert chi2_pvalue(counts, p) > 1e-4


def test_autodiff_conditionals_equal_the_dbm_class(backend):
    """The gradient of the plain model's log joint is the DBM class's eq. 31-34 logits."""
    from ebm_ppl.inference import multilinear as ml

    fe = _frontend(backend)
    ws, bs = params(3, scale=1.5)
    dbm = fe.DBM([backend.array(w) for w in ws], [backend.array(b) for b in bs])
    model = plain_model(backend, ws, bs)
    rng = np.random.default_rng(0)
    x = (rng.random(sum(SIZES)) < 0.5).astype(np.float32)
    layers = dbm.split(backend.array(x))
    m = _multilinear(backend, model, (layers[0],))
    g = m.grad({"h1": layers[1], "h2": layers[2]})
    for name, i in (("h1", 1), ("h2", 2)):
        np.testing.assert_allclose(
            backend.np(g[name]), backend.np(dbm.conditional_logits(backend.array(x), i)), atol=1e-5
        )
    assert m.blocks == (("h1",), ("h2",))
    del ml


def _frontend(backend):
    if backend.name == "torch":
        import ebm_ppl.pyro as fe
    else:
        import ebm_ppl.numpyro as fe
    return fe


def _multilinear(backend, model, args, blocks=None):
    if backend.name == "torch":
        import pyro.poutine as poutine

        from ebm_ppl.pyro.multilinear import Multilinear

        tr = poutine.trace(model).get_trace(*args)
        return Multilinear(model, ["h1", "h2"], args, {}, blocks, tr)
    from ebm_ppl.numpyro.multilinear import Multilinear

    m = Multilinear(model, ["h1", "h2"], {"h1": (3,), "h2": (2,)}, args, {}, blocks)
    m.grad = m.fns(args, {})[1]
    return m


def test_clamped_plain_model_samples_the_conditional(backend):
    from conftest import chi2_pvalue, state_index

    ws, bs = params(4, scale=1.5)
    x, p, _ = exact_joint(ws, bs)
    keep = x[:, 0] == 1
    pv = np.zeros(4)
    np.add.at(pv, state_index(x[keep][:, 1:3]), p[keep])
    pv /= pv.sum()
    clamp = {"v": (np.array([True, False, False]), np.array([1.0, 0.0, 0.0], np.float32))}
    chains = TORCH_CHAINS if backend.name == "torch" else None
    model = plain_model(backend, ws, bs, chains=chains)
    _, s = run_mcmc(backend, model, 6000, 0, chains=chains or 1, clamp=clamp)
    assert np.all(s["v"][:, 0] == 1)
    counts = np.bincount(state_index(s["v"][::2, 1:]), minlength=4)
    assert chi2_pvalue(counts, pv) > 1e-4


def test_bad_models_and_blocks(backend):
    ws, bs = params(5)

    def sq(v, h1, h2):
        return 0.7 * (h1**2).sum(-1) - 0.7 * h1.sum(-1)  # zero on {0,1}, gradient is not

    with pytest.raises(ValueError, match="not multilinear in site 'h1'"):
        run_mcmc(backend, plain_model(backend, ws, bs, extra=sq), 4, 0)

    def self_inter(v, h1, h2):
        return h1[..., 0] * h1[..., 1]

    with pytest.raises(ValueError, match="site 'h1' interacts with itself"):
        run_mcmc(backend, plain_model(backend, ws, bs, extra=self_inter), 4, 0)
    with pytest.raises(ValueError, match="sites 'v' and 'h1' interact"):
        run_mcmc(backend, plain_model(backend, ws, bs), 4, 0, blocks=[["v", "h1"], ["h2"]])
    with pytest.raises(ValueError, match="every latent binary site exactly once"):
        run_mcmc(backend, plain_model(backend, ws, bs), 4, 0, blocks=[["v", "h2"]])
    # a user hint that is valid is used as given
    kernel, _ = run_mcmc(backend, plain_model(backend, ws, bs), 8, 0, blocks=[["h1"], ["h2", "v"]])
    assert kernel.gibbs_blocks == (("h1",), ("h2", "v"))


@pytest.mark.parametrize("seed", [0, 1])
def test_mean_field_guide_matches_the_dbm_and_bounds_log_p(backend, seed):
    """MeanFieldGuide on the plain model: the same fixed point as DBM.mean_field (same
    start), the analytic bound equals the DBM's eq. 38 bound and is <= exact log p(v); the
    PPL's Monte Carlo ELBO with the guide agrees with the analytic bound."""
    fe = _frontend(backend)
    ws, bs = params(10 + seed)
    dbm = fe.DBM([backend.array(w) for w in ws], [backend.array(b) for b in bs])
    model = plain_model(backend, ws, bs)
    x, _, neg_e = exact_joint(ws, bs)
    log_z_dbm = float(backend.np(dbm.log_partition()))
    softplus = sum(float(np.logaddexp(0, b).sum()) for b in bs)
    log_z_model = log_z_dbm - softplus  # the plain model's log joint is -E - sum softplus(b)

    def start(v):
        from ebm_ppl.models.dbm import bottom_up

        mus = bottom_up(dbm.dbm_params, v)
        return {"h1": mus[1], "h2": mus[2]}

    guide = fe.MeanFieldGuide(model, num_iters=500, tol=1e-7, init=start)
    for v_np in itertools.product([0.0, 1.0], repeat=3):
        v = backend.array(np.array(v_np, np.float32))
        mus = guide.mean_field(v)
        ref = dbm.mean_field(v, num_iters=500)
        for name, i in (("h1", 1), ("h2", 2)):
            np.testing.assert_allclose(backend.np(mus[name]), backend.np(ref[i]), atol=1e-4)
        b = float(backend.np(guide.bound(v, log_z=log_z_model)))
        b_ref = float(backend.np(dbm.mean_field_bound(v, log_z_dbm, num_iters=500)))
        assert b == pytest.approx(b_ref, abs=1e-3)
        match = np.all(x[:, :3] == np.array(v_np), axis=1)
        log_pv = np.log(np.exp(neg_e[match] - neg_e.max()).sum()) + neg_e.max() - log_z_dbm
        assert b <= log_pv + 1e-4
    v = backend.array(np.array([1.0, 0.0, 1.0], np.float32))
    analytic = float(backend.np(guide.bound(v)))
    if backend.name == "torch":
        import pyro
        from pyro.infer import Trace_ELBO

        pyro.set_rng_seed(seed)
        elbos = [-Trace_ELBO().loss(model, guide, v) for _ in range(100)]  # slow in Pyro
    else:
        import jax
        from numpyro.infer import Trace_ELBO

        loss = jax.jit(lambda k: Trace_ELBO().loss(k, {}, model, guide, v))
        elbos = [-float(loss(k)) for k in jax.random.split(jax.random.PRNGKey(seed), 300)]
    elbo, tol = np.mean(elbos), 4 * np.std(elbos) / np.sqrt(len(elbos))
    assert abs(elbo - analytic) < tol


def test_mean_field_guide_cross_backend_and_errors():
    import jax.numpy as jnp
    import torch
    from conftest import Backend

    import ebm_ppl.numpyro as nfe
    import ebm_ppl.pyro as pfe

    ws, bs = params(20)
    t = pfe.MeanFieldGuide(plain_model(Backend("torch"), ws, bs))
    j = nfe.MeanFieldGuide(plain_model(Backend("jax"), ws, bs))
    v = np.array([0.0, 1.0, 1.0], np.float32)
    mt, mj = t.mean_field(torch.tensor(v)), j.mean_field(jnp.asarray(v))
    for n in ("h1", "h2"):
        np.testing.assert_allclose(mt[n].numpy(), np.asarray(mj[n]), atol=1e-5)
    with pytest.raises(ValueError, match="damping must be a float"):
        pfe.MeanFieldGuide(lambda: None, damping=2.0)
    with pytest.raises(TypeError, match="model must be callable"):
        nfe.MeanFieldGuide(3)
