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
        mcmc, z, _ = _pyro_run(False, 1, n=1500)
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
