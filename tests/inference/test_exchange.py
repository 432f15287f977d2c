"""The exchange algorithm in both PPLs, against the exact posterior (enumeration of log Z and
quadrature over the parameter), several seeds. Chains are thinned before the KS tests so the
draws are close to independent (the acceptance rate is about 0.3)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from test_random_parameters import B, C, U, W, X, exact_posterior_cdf


def _numpyro_run(observed: bool, seed: int, aux_sweeps=None, n=4000, chains=1):
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC

    from ebm_ppl.numpyro import RBM, Exchange

    w, b, c, u, x = (jnp.asarray(a) for a in (W, B, C, U, X))

    def model():
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        if observed:
            with numpyro.plate("n", 3):
                numpyro.sample("v", RBM(w, b, c + z * u), obs=x)
        else:
            numpyro.sample("v", RBM(w, b, c + z * u))

    kernel = Exchange(model, step_size=0.5, aux_sweeps=aux_sweeps)
    mcmc = MCMC(
        kernel,
        num_warmup=500,
        num_samples=n,
        num_chains=chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(seed), extra_fields=("accept_prob",))
    acc = float(np.mean(mcmc.get_extra_fields()["accept_prob"]))
    return mcmc, np.asarray(mcmc.get_samples(group_by_chain=True)["z"]), acc


def _pyro_run(observed: bool, seed: int, aux_sweeps=None, n=2500):
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro.infer import MCMC

    from ebm_ppl.pyro import RBM, Exchange

    pyro.set_rng_seed(seed)
    w, b, c, u, x = (torch.as_tensor(a) for a in (W, B, C, U, X))

    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        if observed:
            with pyro.plate("n", 3):
                pyro.sample("v", RBM(w, b, c + z * u), obs=x)
        else:
            pyro.sample("v", RBM(w, b, c + z * u))

    kernel = Exchange(model, step_size=0.5, aux_sweeps=aux_sweeps)
    mcmc = MCMC(kernel, num_samples=n, warmup_steps=400, disable_progbar=True)
    mcmc.run()
    return mcmc, mcmc.get_samples()["z"].numpy()[None], kernel.diagnostics()["acceptance rate"]


@pytest.mark.parametrize("seed", [0, 1])
def test_numpyro_exchange_matches_exact_posterior(seed):
    _, z, acc = _numpyro_run(True, seed)
    cdf, _ = exact_posterior_cdf(X)
    assert stats.kstest(z[0, ::10], cdf).pvalue > 1e-3
    assert 0.1 < acc < 0.7  # warmup adapted the step size


def test_pyro_exchange_matches_exact_posterior():
    _, z, acc = _pyro_run(True, 0)
    cdf, _ = exact_posterior_cdf(X)
    assert stats.kstest(z[0, ::10], cdf).pvalue > 1e-3
    assert 0.1 < acc < 0.7


def test_exchange_with_latent_energy_site_keeps_the_prior(backend):
    """v latent (block Gibbs inside the kernel), z exchanged: z's marginal is N(0, 1)."""
    if backend.name == "torch":
        mcmc, z, _ = _pyro_run(False, 1, n=1000)
        v = mcmc.get_samples()["v"].numpy()
    else:
        mcmc, z, _ = _numpyro_run(False, 2, n=3000, chains=2)
        v = np.asarray(mcmc.get_samples()["v"])
        assert z.shape == (2, 3000)
    assert stats.kstest(z.reshape(-1)[::10], "norm").pvalue > 1e-3
    assert set(np.unique(v)) <= {0.0, 1.0}


def test_double_mh_is_close_with_many_sweeps(backend):
    """aux_sweeps=K (approximate) lands near the exact posterior mean on a fast-mixing
    model; the gap is well inside a Monte Carlo error bar here."""
    _, exact_mean = exact_posterior_cdf(X)
    if backend.name == "torch":
        _, z, _ = _pyro_run(True, 4, aux_sweeps=10, n=2500)
    else:
        _, z, _ = _numpyro_run(True, 4, aux_sweeps=10)
    z = z[0]
    # batch-means Monte Carlo standard error
    batches = z[: len(z) // 50 * 50].reshape(50, -1).mean(1)
    mcse = batches.std(ddof=1) / np.sqrt(50)
    assert abs(z.mean() - exact_mean) < 5 * mcse + 0.05


def test_exchange_argument_errors(backend):
    from test_random_parameters import _models

    ep, ppl, dist, arr, latent, observed, chained, _ = _models(backend.name)
    with pytest.raises(ValueError, match="step_size"):
        ep.Exchange(observed, step_size=0.0)
    with pytest.raises(ValueError, match="aux_sweeps"):
        ep.Exchange(observed, aux_sweeps=0)
    w = arr(np.zeros((25, 22), np.float32))

    def big():
        z = ppl.sample("z", dist.Normal(0.0, 1.0))
        ppl.sample("v", ep.RBM(w, arr(np.zeros(25, np.float32)), z + arr(np.zeros(22, np.float32))))

    def independent():
        ppl.sample("z", dist.Normal(0.0, 1.0))
        ppl.sample("v", ep.RBM(w, arr(np.zeros(25, np.float32)), arr(np.zeros(22, np.float32))))

    for model, match in (
        (big, "aux_sweeps=K"),
        (independent, "not needed"),
        (chained, "continuous"),
    ):
        if backend.name == "torch":
            from pyro.infer import MCMC

            with pytest.raises(ValueError, match=match):
                MCMC(ep.Exchange(model), num_samples=2, disable_progbar=True).run()
        else:
            import jax
            from numpyro.infer import MCMC

            with pytest.raises(ValueError, match=match):
                MCMC(ep.Exchange(model), num_warmup=1, num_samples=2, progress_bar=False).run(
                    jax.random.PRNGKey(0)
                )


# ---- Bayesian Ising: coupling and field from observed lattices --------------------------


def _ising_grid_posterior(x: np.ndarray):
    """Exact marginal posteriors of (J, h) under N(0, 1) priors for 3x3 free-boundary
    configurations ``x`` (N, 3, 3): log Z by enumerating all 512 states, a 2-D grid."""
    import itertools

    states = np.array(list(itertools.product([-1.0, 1.0], repeat=9))).reshape(-1, 3, 3)

    def stats_of(s):
        pair = (s[..., 1:, :] * s[..., :-1, :]).sum((-1, -2)) + (
            s[..., :, 1:] * s[..., :, :-1]
        ).sum((-1, -2))
        return pair, s.sum((-1, -2))

    sp, ss = stats_of(states)
    xp, xs = stats_of(x.astype(np.float64))
    js, hs = np.linspace(-1.0, 2.0, 301), np.linspace(-1.5, 1.5, 301)
    jj, hh = np.meshgrid(js, hs, indexing="ij")
    log_z = np.logaddexp.reduce(jj[..., None] * sp + hh[..., None] * ss, axis=-1)
    lp = -(jj**2 + hh**2) / 2 + jj * xp.sum() + hh * xs.sum() - len(x) * log_z
    p = np.exp(lp - lp.max())
    p /= p.sum()
    out = {}
    for name, grid, marg in (("J", js, p.sum(1)), ("h", hs, p.sum(0))):
        cdf = np.cumsum(marg)
        out[name] = (lambda t, g=grid, c=cdf: np.interp(t, g, c), (grid * marg).sum())
    return out


@pytest.mark.parametrize("backend_name,aux_sweeps", [("torch", None), ("jax", None), ("jax", 10)])
def test_ising_coupling_and_field_posterior(backend_name, aux_sweeps):
    """Exact auxiliary draws (and double MH with 10 sweeps, which mixes a 3x3 lattice
    completely) recover the exact posterior of (J, h) in both PPLs."""
    if backend_name == "torch":
        import pyro
        import pyro.distributions as dist
        from pyro.infer import MCMC

        from ebm_ppl.pyro import Exchange, Ising

        pyro.set_rng_seed(0)
        x = Ising(0.4, 0.1, shape=(3, 3)).exact_sample(None, (30,))

        def model():
            j = pyro.sample("J", dist.Normal(0.0, 1.0))
            h = pyro.sample("h", dist.Normal(0.0, 1.0))
            with pyro.plate("obs", 30):
                pyro.sample("s", Ising(j, h, shape=(3, 3)), obs=x)

        mcmc = MCMC(
            Exchange(model, aux_sweeps=aux_sweeps),
            num_samples=2500,
            warmup_steps=500,
            disable_progbar=True,
        )
        mcmc.run()
        draws = {k: v.numpy() for k, v in mcmc.get_samples().items()}
        x = x.numpy()
    else:
        import jax
        import numpyro
        import numpyro.distributions as dist
        from numpyro.infer import MCMC

        from ebm_ppl.numpyro import Exchange, Ising

        x = Ising(0.4, 0.1, shape=(3, 3)).exact_sample(jax.random.PRNGKey(0), (30,))

        def model():
            j = numpyro.sample("J", dist.Normal(0.0, 1.0))
            h = numpyro.sample("h", dist.Normal(0.0, 1.0))
            with numpyro.plate("obs", 30):
                numpyro.sample("s", Ising(j, h, shape=(3, 3)), obs=x)

        mcmc = MCMC(
            Exchange(model, aux_sweeps=aux_sweeps),
            num_warmup=500,
            num_samples=4000,
            progress_bar=False,
        )
        mcmc.run(jax.random.PRNGKey(1))
        draws = {k: np.asarray(v) for k, v in mcmc.get_samples().items()}
        x = np.asarray(x)
    exact = _ising_grid_posterior(x)
    for name in ("J", "h"):
        cdf, _ = exact[name]
        assert stats.kstest(draws[name][::10], cdf).pvalue > 1e-3, name


def test_exchange_refuses_sites_it_cannot_cancel(backend):
    """Scaled or masked sites (Z**scale does not cancel), and energy sites whose log_prob is
    not the exact unnormalized density (DBMVisible: a mean-field bound)."""
    from test_random_parameters import _models

    ep, ppl, dist, arr, *_ = _models(backend.name)
    w, b, c, u, x = (arr(a) for a in (W, B, C, U, X))
    if backend.name == "torch":
        import pyro.poutine as handlers
        import torch

        mask = torch.tensor([True, True, False])
    else:
        import jax.numpy as jnp
        from numpyro import handlers

        mask = jnp.array([True, True, False])

    def scaled():
        z = ppl.sample("z", dist.Normal(0.0, 1.0))
        with ppl.plate("n", 3), handlers.scale(scale=3.0):
            ppl.sample("v", ep.RBM(w, b, c + z * u), obs=x)

    def masked():
        z = ppl.sample("z", dist.Normal(0.0, 1.0))
        with ppl.plate("n", 3), handlers.mask(mask=mask):
            ppl.sample("v", ep.RBM(w, b, c + z * u), obs=x)

    rng = np.random.default_rng(0)
    ws = [arr(rng.normal(size=s).astype(np.float32)) for s in [(4, 2), (2, 2)]]

    def bound():
        z = ppl.sample("z", dist.Normal(0.0, 1.0))
        dbm = ep.DBM(
            ws,
            [
                arr(np.zeros(4, np.float32)),
                z + arr(np.zeros(2, np.float32)),
                arr(np.zeros(2, np.float32)),
            ],
        )
        with ppl.plate("n", 3):
            ppl.sample("v", dbm.visible(), obs=x)

    for model, match in ((scaled, "scaled"), (masked, "mask"), (bound, "not the exact")):
        if backend.name == "torch":
            from pyro.infer import MCMC

            with pytest.raises(ValueError, match=match):
                MCMC(ep.Exchange(model, aux_sweeps=2), num_samples=2, disable_progbar=True).run()
        else:
            import jax
            from numpyro.infer import MCMC

            with pytest.raises(ValueError, match=match):
                MCMC(
                    ep.Exchange(model, aux_sweeps=2),
                    num_warmup=1,
                    num_samples=2,
                    progress_bar=False,
                ).run(jax.random.PRNGKey(0))
