"""Energy sites whose parameters depend on random variables: exact (normalized=True) or
refused with a clear error, never a silently wrong posterior.

The oracle: a 4-3 RBM whose hidden bias is ``c + u z`` with ``z ~ N(0, 1)``. With ``v``
latent the marginal of ``z`` is exactly N(0, 1); with ``v`` observed the posterior of ``z``
is computed by enumeration (log Z(z)) and quadrature on a fine grid.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import all_states, random_params
from scipy import stats

W, B, C = random_params(np.random.default_rng(5), 4, 3)
U = np.array([2.0, -1.5, 1.0], np.float32)
X = np.array([[1, 0, 1, 1], [1, 1, 0, 1], [0, 0, 1, 1]], np.float32)


def _log_f(v, z):
    """Unnormalized log p(v | z) (free energy), float64; v (N, 4), z (G,) -> (G, N)."""
    c = C[None, :] + z[:, None] * U[None, :]
    lin = v @ W.astype(np.float64)  # (N, 3)
    return v @ B + np.logaddexp(0, lin[None] + c[:, None]).sum(-1)


def exact_posterior_cdf(x: np.ndarray):
    """The exact posterior CDF of z given rows x, by enumeration + quadrature."""
    grid = np.linspace(-9, 9, 20001)
    log_z = np.logaddexp.reduce(_log_f(all_states(4).astype(np.float64), grid), axis=1)
    lp = stats.norm.logpdf(grid) + _log_f(x.astype(np.float64), grid).sum(1) - len(x) * log_z
    p = np.exp(lp - lp.max())
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    mean = (grid * p).sum() / p.sum()
    return (lambda t: np.interp(t, grid, cdf)), mean


def test_oracle_is_not_the_prior():
    """The test problem is informative: the posterior mean is far from 0 and from what an
    unnormalized joint gives (the bug this module guards against)."""
    _, mean = exact_posterior_cdf(X)
    assert abs(mean) > 0.2


# ---- normalized=True -------------------------------------------------------------------


def test_normalized_log_prob_sums_to_one(backend):
    from ebm_ppl import numpyro as en
    from ebm_ppl import pyro as ep

    mod = ep if backend.name == "torch" else en
    w, b, c = (backend.array(a) for a in (W, B, C))
    states = backend.array(all_states(4))
    rbm = mod.RBM(w, b, c, normalized=True)
    total = np.exp(backend.np(rbm.log_prob(states)).astype(np.float64)).sum()
    assert total == pytest.approx(1.0, abs=1e-5)
    # plates broadcast: batch of hidden biases, each normalized on its own
    rbm2 = mod.RBM(w, b, backend.array(np.stack([C, C + 1.0])), normalized=True)
    lp = backend.np(rbm2.log_prob(states[:, None, :])).astype(np.float64)
    np.testing.assert_allclose(np.exp(lp).sum(0), [1.0, 1.0], atol=1e-5)
    # a DBM: the joint over (v, h1, h2)
    rng = np.random.default_rng(1)
    ws = [backend.array(rng.normal(size=s).astype(np.float32)) for s in [(3, 2), (2, 2)]]
    bs = [backend.array(rng.normal(size=n).astype(np.float32)) for n in (3, 2, 2)]
    dbm = mod.DBM(ws, bs, normalized=True)
    lp = backend.np(dbm.log_prob(backend.array(all_states(7)))).astype(np.float64)
    assert np.exp(lp).sum() == pytest.approx(1.0, abs=1e-5)


def test_normalized_too_large_points_to_exchange(backend):
    from ebm_ppl import numpyro as en
    from ebm_ppl import pyro as ep

    mod = ep if backend.name == "torch" else en
    rng = np.random.default_rng(0)
    w = backend.array(rng.normal(size=(25, 22)).astype(np.float32))
    rbm = mod.RBM(
        w,
        backend.array(np.zeros(25, np.float32)),
        backend.array(np.zeros(22, np.float32)),
        normalized=True,
    )
    with pytest.raises(ValueError, match="Exchange"):
        rbm.log_prob(backend.array(np.zeros((1, 25), np.float32)))
    with pytest.raises(TypeError, match="normalized"):
        mod.RBM(
            w,
            backend.array(np.zeros(25, np.float32)),
            backend.array(np.zeros(22, np.float32)),
            normalized=1,
        )


@pytest.mark.parametrize("seed", [0, 1])
def test_numpyro_nuts_observed_matches_enumeration(seed):
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS

    from ebm_ppl.numpyro import RBM

    w, b, c, u, x = (jnp.asarray(a) for a in (W, B, C, U, X))

    def model():
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        with numpyro.plate("n", 3):
            numpyro.sample("v", RBM(w, b, c + z * u, normalized=True), obs=x)

    mcmc = MCMC(NUTS(model), num_warmup=300, num_samples=2000, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(seed))
    z = np.asarray(mcmc.get_samples()["z"])[::4]
    cdf, _ = exact_posterior_cdf(X)
    assert stats.kstest(z, cdf).pvalue > 1e-3


def test_pyro_nuts_observed_matches_enumeration():
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro.infer import MCMC, NUTS

    from ebm_ppl.pyro import RBM

    pyro.set_rng_seed(3)
    w, b, c, u, x = (torch.as_tensor(a) for a in (W, B, C, U, X))

    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        with pyro.plate("n", 3):
            pyro.sample("v", RBM(w, b, c + z * u, normalized=True), obs=x)

    mcmc = MCMC(NUTS(model), num_samples=600, warmup_steps=150, disable_progbar=True)
    mcmc.run()
    z = mcmc.get_samples()["z"].numpy()[::2]
    cdf, _ = exact_posterior_cdf(X)
    assert stats.kstest(z, cdf).pvalue > 1e-3


@pytest.mark.parametrize("seed", [0, 1])
def test_pyro_hmcgibbs_latent_site_is_exact_with_normalized(seed):
    """z ~ N(0,1), v ~ RBM(c + u z, normalized=True) latent: the z marginal stays N(0, 1)
    (the unnormalized site gave mean 12 before; now it is refused, below)."""
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro.infer import MCMC

    from ebm_ppl.pyro import RBM, HMCGibbs

    pyro.set_rng_seed(seed)
    w, b, c, u = (torch.as_tensor(a) for a in (W, B, C, U))

    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("v", RBM(w, b, c + z * u, normalized=True))

    mcmc = MCMC(HMCGibbs(model), num_samples=600, warmup_steps=150, disable_progbar=True)
    mcmc.run()
    z = mcmc.get_samples()["z"].numpy()[::2]
    assert stats.kstest(z, "norm").pvalue > 1e-3


# ---- refusals --------------------------------------------------------------------------


def _models(backend_name):
    if backend_name == "torch":
        import pyro as ppl
        import pyro.distributions as dist
        import torch

        from ebm_ppl import pyro as ep

        arr = torch.as_tensor
    else:
        import jax.numpy as jnp
        import numpyro as ppl
        import numpyro.distributions as dist

        from ebm_ppl import numpyro as ep

        arr = jnp.asarray
    w, b, c, u, x = (arr(a) for a in (W, B, C, U, X))

    def latent():
        z = ppl.sample("z", dist.Normal(0.0, 1.0))
        ppl.sample("v", ep.RBM(w, b, c + z * u))

    def observed():
        z = ppl.sample("z", dist.Normal(0.0, 1.0))
        with ppl.plate("n", 3):
            ppl.sample("v", ep.RBM(w, b, c + z * u), obs=x)

    def chained():  # one energy site's parameters depend on another's latent value
        v1 = ppl.sample("v1", ep.RBM(w, b, c))
        ppl.sample("v2", ep.RBM(w, b + v1, c))

    def samle_model(data):
        scale = ppl.sample("scale", dist.LogNormal(0.0, 1.0))
        wp = ppl.param("w", w)
        with ppl.plate("n", data.shape[0]):
            ppl.sample("v", ep.RBM(wp * scale, b, c), obs=data)

    return ep, ppl, dist, arr, latent, observed, chained, samle_model


def test_check_model_refuses_and_names_the_sites(backend):
    ep, *_, latent, observed, chained, _ = _models(backend.name)
    for model, site, up in ((latent, "v", "z"), (observed, "v", "z"), (chained, "v2", "v1")):
        with pytest.raises(ValueError, match=rf"'{site}' depends on latent site\(s\) \['{up}'\]"):
            ep.check_model(model)
    assert ep.energy_dependencies(observed) == {"v": ["z"]}


def test_block_gibbs_refuses_dependent_energy_site(backend):
    ep, *_, chained, _ = _models(backend.name)
    if backend.name == "torch":
        from pyro.infer import MCMC

        with pytest.raises(ValueError, match="BlockGibbs"):
            MCMC(ep.BlockGibbs(chained), num_samples=2, disable_progbar=True).run()
    else:
        import jax
        from numpyro.infer import MCMC

        with pytest.raises(ValueError, match="BlockGibbs"):
            MCMC(ep.BlockGibbs(chained), num_warmup=1, num_samples=2, progress_bar=False).run(
                jax.random.PRNGKey(0)
            )


def test_hmcgibbs_refuses_unnormalized_dependent_site(backend):
    ep, *_, latent, _, _, _ = _models(backend.name)
    if backend.name == "torch":
        from pyro.infer import MCMC

        with pytest.raises(ValueError, match="normalized=True"):
            MCMC(ep.HMCGibbs(latent), num_samples=2, disable_progbar=True).run()
    else:
        with pytest.raises(ValueError, match="normalized=True"):
            ep.BlockGibbs(latent).gibbs_fn()


def test_samle_refuses_random_parameters(backend):
    ep, ppl, dist, arr, *_, samle_model = _models(backend.name)
    data = arr(X)
    if backend.name == "torch":
        from pyro.optim import SGD

        with pytest.raises(ValueError, match="SAMLE"):
            ep.SAMLE(samle_model, SGD({"lr": 0.01})).step(data)
    else:
        import jax
        import optax

        with pytest.raises(ValueError, match="SAMLE"):
            ep.SAMLE(samle_model, optax.sgd(0.01)).init(jax.random.PRNGKey(0), data)


def test_mean_field_guide_refuses_random_parameters(backend):
    ep, ppl, dist, arr, *_ = _models(backend.name)
    w, b, c, x = arr(W), arr(B), arr(C), arr(X[0])

    def model():
        h = ppl.sample("h", dist.Bernoulli(0.5 + 0 * c).to_event(1))
        ppl.sample("v", ep.RBM(w, b, c + h), obs=x)

    with pytest.raises(ValueError, match="MeanFieldGuide"):
        ep.MeanFieldGuide(model).mean_field()


def test_detection_by_perturbation():
    """The perturbation check: one latent site changed at a time (negated, then redrawn)."""
    import torch

    from ebm_ppl.inference.dependence import by_perturbation, negated
    from ebm_ppl.pyro import RBM

    def rbm(z):  # depends on z only through its sign (invisible to provenance via .item())
        return RBM(torch.as_tensor(W), torch.as_tensor(B), torch.as_tensor(C) + (z.item() > 0))

    def site(fn, value, observed=False):
        return {"type": "sample", "fn": fn, "value": value, "is_observed": observed}

    normal = torch.distributions.Normal(0.0, 1.0)
    z0 = torch.tensor(0.3)
    nodes = {
        "z": site(normal, z0),
        "y": site(normal, torch.tensor(1.0)),
        "v": site(rbm(z0), torch.as_tensor(X), observed=True),
    }

    def retrace(name, k):
        z = z0
        if name == "z":
            z = negated(normal, z0) if k == 0 else torch.tensor(0.5 + k)
        return dict(nodes, v=site(rbm(z), torch.as_tensor(X), True))

    assert by_perturbation(nodes, retrace) == {"v": ["z"]}

    # a model with randomness outside its sample sites: the check cannot tell, returns {}
    def noisy(name, k):
        fn = RBM(torch.as_tensor(W), torch.as_tensor(B), torch.as_tensor(C) + torch.randn(3))
        return dict(nodes, v=site(fn, torch.as_tensor(X), True))

    assert by_perturbation(nodes, noisy) == {}


def test_lost_provenance_and_wrappers_are_caught(backend):
    """Dependence through .item()/float() (provenance loses it) and energy sites wrapped in
    to_event / mask are still found."""
    ep, ppl, dist, arr, *_ = _models(backend.name)
    w, b, c, u, x = (arr(a) for a in (W, B, C, U, X))

    def through_float():
        z = ppl.sample("z", dist.Normal(0.0, 1.0))
        sign = 1.0 if float(z) > 0 else -1.0
        with ppl.plate("n", 3):
            ppl.sample("v", ep.RBM(w, b, c + sign * u), obs=x)

    def wrapped():
        z = ppl.sample("z", dist.Normal(0.0, 1.0))
        ppl.sample("v", ep.RBM(w, b, c + z * u).expand([3]).to_event(1), obs=x)

    for model in (through_float, wrapped):
        with pytest.raises(ValueError, match="depends on latent site"):
            ep.check_model(model)


def test_normalized_categorical_refuses_missing_entries(backend):
    from ebm_ppl import numpyro as en
    from ebm_ppl import pyro as ep

    mod = ep if backend.name == "torch" else en
    rng = np.random.default_rng(0)
    crbm = mod.CategoricalRBM(
        backend.array(rng.normal(size=(3, 3, 2))),
        backend.array(np.zeros((3, 3))),
        backend.array(np.zeros(2)),
        normalized=True,
    )
    assert np.isfinite(backend.np(crbm.log_prob(backend.array([[0, 1, 2]])))).all()
    with pytest.raises(ValueError, match="missing entries"):
        crbm.log_prob(backend.array([[0, 1, -1]]))


def test_find_dependencies_shared_search():
    """The search both frontends run, on hand-made traces: provenance and perturbation are
    united; a raising provenance or re-trace only loses that source."""
    import pyro.distributions as pdist
    import torch

    from ebm_ppl.inference import dependence as dep
    from ebm_ppl.pyro import RBM

    def nodes_for(z):
        w = torch.zeros(3, 2) + z
        return {
            "z": {"type": "sample", "fn": pdist.Normal(0.0, 1.0), "value": z, "is_observed": False},
            "v": {
                "type": "sample",
                "fn": RBM(w, torch.zeros(3), torch.zeros(2)),
                "value": torch.zeros(3),
                "is_observed": True,
            },
        }

    nodes = nodes_for(torch.tensor(0.5))

    def trace_with(values):
        return nodes_for(values["z"])

    def fresh(name, k):
        return torch.tensor(float(k))

    def broken():
        raise RuntimeError("no provenance")

    assert dep.find_dependencies(nodes, broken, trace_with, fresh) == {"v": ["z"]}
    assert dep.find_dependencies(nodes, lambda: {"v": {"v": set()}}, trace_with, fresh) == {
        "v": ["z"]
    }

    def failing(values):
        raise RuntimeError("cannot run")

    assert dep.find_dependencies(nodes, broken, failing, fresh) == {}
