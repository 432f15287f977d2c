"""BlockGibbs under each PPL's own MCMC reproduces exact RBM probabilities."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import all_states, chi2_pvalue, exact_visible_probs, random_params, state_index


def run_mcmc(backend, w, b, c, *, plate=1, num_samples=1, warmup=60, num_chains=1, **kw):
    """Sample site 'v' of a model with an RBM under a plate of ``plate`` independent chains."""
    seed = kw.pop("seed", 0)
    chain_method = kw.pop("chain_method", "sequential")
    make = kw.pop("make", None)  # frontend module, arrays -> distribution
    if backend.name == "torch":
        import pyro
        import torch
        from pyro.infer import MCMC

        import ebm_ppl.pyro as frontend
        from ebm_ppl.pyro import RBM, BlockGibbs

        W, B, C = (torch.as_tensor(a) for a in (w, b, c))
        dist = RBM(W, B, C) if make is None else make(frontend, torch.as_tensor)

        def model():
            with pyro.plate("chains", plate):
                pyro.sample("v", dist)

        mcmc = MCMC(
            BlockGibbs(model, **kw),
            num_samples=num_samples,
            warmup_steps=warmup,
            num_chains=num_chains,
            disable_progbar=True,
        )
        pyro.set_rng_seed(seed)
        mcmc.run()
        return {k: v.numpy() for k, v in mcmc.get_samples(group_by_chain=True).items()}
    import jax
    import jax.numpy as jnp
    import numpyro
    from numpyro.infer import MCMC

    import ebm_ppl.numpyro as frontend
    from ebm_ppl.numpyro import RBM, BlockGibbs

    W, B, C = (jnp.asarray(a) for a in (w, b, c))
    dist = RBM(W, B, C) if make is None else make(frontend, jnp.asarray)

    def model():
        with numpyro.plate("chains", plate):
            numpyro.sample("v", dist)

    mcmc = MCMC(
        BlockGibbs(model, **kw),
        num_warmup=warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(seed))
    return {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_independent_chains_match_exact_marginal(backend, seed):
    """3000 independent chains (a plate) after 60 sweeps: chi-square against exact p(v)."""
    w, b, c = random_params(np.random.default_rng(100 + seed), 4, 3, scale=1.2)
    backend.key(seed)
    out = run_mcmc(backend, w, b, c, plate=3000, seed=seed)
    v = out["v"][0, -1]  # last draw of each independent chain
    counts = np.bincount(state_index(v), minlength=16)
    assert chi2_pvalue(counts, exact_visible_probs(w, b, c)) > 1e-3


@pytest.mark.parametrize("seed", [0, 1])
def test_gaussian_rbm_chains_match_exact_moments(backend, seed):
    """GaussianRBM under MCMC: 3000 independent chains, moments of the exact mixture."""
    from conftest import exact_mixture, gparams, hidden_states

    w, b, c, s = gparams(np.random.default_rng(200 + seed), 3, 4, scale=0.6)

    def make(frontend, arr):
        return frontend.GaussianRBM(arr(w), arr(b), arr(c), arr(s))

    backend.key(seed)
    out = run_mcmc(backend, w, b, c, plate=3000, seed=seed, make=make, report_hidden=True)
    v, h = out["v"][0, -1], out["v_hidden"][0, -1]
    ph, means = exact_mixture(w, b, c, s)
    mu = ph @ means
    sd = np.sqrt(ph @ (means**2) + s.astype(np.float64) ** 2 - mu**2)
    np.testing.assert_array_less(np.abs(v.mean(0) - mu), 5 * sd / np.sqrt(3000))
    # hidden marginals p(h_j = 1) from the exact p(h)
    p1 = ph @ hidden_states(4)
    np.testing.assert_array_less(np.abs(h.mean(0) - p1), 5 * np.sqrt(p1 * (1 - p1) / 3000))


def test_single_long_chain_thinned(backend):
    """One chain, thinned by 5 sweeps per draw: chi-square on the visited states."""
    w, b, c = random_params(np.random.default_rng(7), 4, 2, scale=0.8)
    backend.key(3)
    out = run_mcmc(backend, w, b, c, num_samples=3000, num_sweeps=5, seed=3)
    counts = np.bincount(state_index(out["v"][0, :, 0]), minlength=16)
    assert chi2_pvalue(counts, exact_visible_probs(w, b, c)) > 1e-3


@pytest.mark.parametrize("seed", [0, 1])
def test_clamped_sampling_matches_exact_conditional(backend, seed):
    w, b, c = random_params(np.random.default_rng(200 + seed), 5, 3, scale=1.2)
    mask = np.array([True, False, True, False, False])
    values = np.array([1.0, 0.0, 0.0, 0.0, 0.0], np.float32)
    backend.key(seed)
    out = run_mcmc(backend, w, b, c, plate=3000, clamp={"v": (mask, values)}, seed=seed, warmup=40)
    v = out["v"][0, -1]
    assert (v[:, mask] == values[mask]).all()
    # exact p(v_free | v_clamped) by enumeration
    p = exact_visible_probs(w, b, c)
    states = all_states(5)
    keep = (states[:, mask] == values[mask]).all(1)
    p_cond = p[keep] / p[keep].sum()
    free = states[keep][:, ~mask]
    counts = np.bincount(state_index(v[:, ~mask]), minlength=8)
    assert chi2_pvalue(counts, p_cond[np.argsort(state_index(free))]) > 1e-3


def test_multiple_chains_and_hidden(backend):
    w, b, c = random_params(np.random.default_rng(1), 6, 3)
    kw = {"chain_method": "vectorized"} if backend.name == "jax" else {}
    out = run_mcmc(
        backend, w, b, c, plate=2, num_samples=10, warmup=5, num_chains=2, report_hidden=True, **kw
    )
    assert out["v"].shape == (2, 10, 2, 6)
    assert out["v_hidden"].shape == (2, 10, 2, 3)
    assert set(np.unique(out["v"])) <= {0.0, 1.0}


def test_numpyro_parallel_chain_method():
    from conftest import Backend

    w, b, c = random_params(np.random.default_rng(1), 6, 3)
    out = run_mcmc(
        Backend("jax"), w, b, c, num_samples=5, warmup=2, num_chains=2, chain_method="parallel"
    )
    assert out["v"].shape == (2, 5, 1, 6)


def test_rejects_bad_clamp_and_other_latent_sites(backend):
    w, b, c = random_params(np.random.default_rng(1), 6, 3)
    with pytest.raises(ValueError, match="clamp"):
        run_mcmc(backend, w, b, c, clamp={"v": (np.ones(5, bool), np.ones(5))})
    with pytest.raises(ValueError, match="not a latent energy site"):
        run_mcmc(backend, w, b, c, clamp={"x": (np.ones(6, bool), np.ones(6))})


def test_setup_traces_run_no_gibbs_sampler(backend, monkeypatch):
    """Set-up only reads the model's structure: latent energy sites get init_chain states
    there, never their num_gibbs_steps-sweep sample(); the refusal of an energy site whose
    parameters depend on another latent site still fires."""
    import ebm_ppl.numpyro
    import ebm_ppl.pyro

    frontend = ebm_ppl.pyro if backend.name == "torch" else ebm_ppl.numpyro

    def refuse(self, *args, **kwargs):
        raise AssertionError("a structure trace ran the distribution's Gibbs sampler")

    monkeypatch.setattr(frontend.RBM, "sample", refuse)
    w, b, c = random_params(np.random.default_rng(2), 5, 3)
    out = run_mcmc(backend, w, b, c, plate=4, num_samples=3, warmup=2)
    assert out["v"].shape == (1, 3, 4, 5)
    assert set(np.unique(out["v"])) <= {0.0, 1.0}
    # the dependence check traces the model too, with the sampler still refused
    if backend.name == "torch":
        import pyro
        import pyro.distributions as dist
        import torch
        from pyro.infer import MCMC

        W, B, C = (torch.as_tensor(a) for a in (w, b, c))

        def dependent():
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("v", frontend.RBM(W, B, C + z))

        with pytest.raises(ValueError, match="depend"):
            MCMC(frontend.HMCGibbs(dependent), num_samples=2, disable_progbar=True).run()
    else:
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as dist

        W, B, C = (jnp.asarray(a) for a in (w, b, c))

        def dependent():
            z = numpyro.sample("z", dist.Normal(0.0, 1.0))
            numpyro.sample("v", frontend.RBM(W, B, C + z))

        with pytest.raises(ValueError, match="depend"):
            frontend.BlockGibbs(dependent).gibbs_fn()


@pytest.mark.parametrize("bad", [0.5, 2.0, float("nan")])
def test_clamp_values_outside_the_support_are_refused(backend, bad):
    """Clamping binary units at 0.5 (or 2, or NaN) is refused at set-up, not sampled."""
    w, b, c = random_params(np.random.default_rng(1), 6, 3)
    mask = np.zeros(6, bool)
    mask[:2] = True
    values = np.zeros(6)
    values[1] = bad
    with pytest.raises(ValueError, match=r"clamp\['v'\] values"):
        run_mcmc(backend, w, b, c, clamp={"v": (mask, values)}, num_samples=1, warmup=0)


def test_rejects_continuous_sites_in_pyro_and_other_factors():
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro.infer import MCMC

    from ebm_ppl.pyro import RBM, BlockGibbs

    w, b, c = (torch.as_tensor(a) for a in random_params(np.random.default_rng(1), 4, 2))

    def with_normal():
        pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("v", RBM(w, b, c))

    with pytest.raises(ValueError, match="other latent sites"):
        MCMC(BlockGibbs(with_normal), num_samples=2, disable_progbar=True).run()

    def with_likelihood():
        v = pyro.sample("v", RBM(w, b, c))
        pyro.sample("y", dist.Normal(v.sum(), 1.0), obs=torch.tensor(1.0))

    with pytest.raises(ValueError, match="other factors"):
        MCMC(BlockGibbs(with_likelihood), num_samples=2, disable_progbar=True).run()


@pytest.mark.parametrize("seed", [0, 1])
def test_numpyro_hmcgibbs_composition(seed):
    """z ~ N(0,1); v ~ RBM(normalized=True) with hidden bias c + z u: z stays N(0,1)."""
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS, HMCGibbs
    from scipy import stats

    from ebm_ppl.numpyro import RBM, BlockGibbs

    w, b, c = (jnp.asarray(a) for a in random_params(np.random.default_rng(11), 4, 3))
    u = jnp.array([1.5, -1.0, 0.5])

    def model():
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        numpyro.sample("v", RBM(w, b, c + z * u, normalized=True))

    kernel = HMCGibbs(NUTS(model), gibbs_fn=BlockGibbs(model).gibbs_fn(), gibbs_sites=["v"])
    mcmc = MCMC(kernel, num_warmup=300, num_samples=2000, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(seed))
    z = np.asarray(mcmc.get_samples()["z"])[::5]
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert set(np.unique(np.asarray(mcmc.get_samples()["v"]))) <= {0.0, 1.0}


@pytest.mark.parametrize("kind", ["pt", "tt"])
@pytest.mark.slow
def test_tempered_kernels_cross_between_modes(backend, kind):
    """BlockGibbs(transition=...) under each PPL's MCMC: chains started in one mode of a
    two-mode RBM reach the exact 50/50 split (plain Gibbs stays put: test_tempering)."""
    from conftest import all_states

    from ebm_ppl.inference.tempering import ParallelTempering, TemperedTransitions

    w = np.zeros((10, 2), np.float32)
    w[:5, 0], w[5:, 0], w[:5, 1], w[5:, 1] = 8.0, -8.0, -8.0, 8.0
    b, c = np.full(10, -2.0, np.float32), np.full(2, -20.0, np.float32)
    vs = all_states(10).astype(np.float64)
    log_p = vs @ b + np.logaddexp(0, vs @ w + c).sum(1)
    p = np.exp(log_p - log_p.max())
    p /= p.sum()
    in_b = (vs[:, 5:].sum(1) >= 4) & (vs[:, :5].sum(1) <= 1)
    exact = p[in_b].sum()
    n = 1000
    start = np.zeros((n, 10), np.float32)
    start[:, :5] = 1.0
    if kind == "pt":
        op, steps = ParallelTempering(np.linspace(0.0, 1.0, 10)), 150
    else:
        op, steps = TemperedTransitions(np.linspace(0.0, 1.0, 30)), 30
    if backend.name == "torch":
        import pyro
        import torch
        from pyro.infer import MCMC

        from ebm_ppl.pyro import RBM, BlockGibbs

        dist = RBM(*(torch.as_tensor(a) for a in (w, b, c)))

        def model():
            with pyro.plate("chains", n):
                pyro.sample("v", dist)

        kernel = BlockGibbs(model, transition=op)
        mcmc = MCMC(
            kernel,
            num_samples=1,
            warmup_steps=steps,
            initial_params={"v": torch.as_tensor(start)},
            disable_progbar=True,
        )
        pyro.set_rng_seed(0)
        mcmc.run()
        v = mcmc.get_samples()["v"][-1].numpy()
        diag = kernel.diagnostics()
        assert ("swap_acceptance" in diag) if kind == "pt" else ("acceptance" in diag)
    else:
        import jax
        import jax.numpy as jnp
        import numpyro
        from numpyro.infer import MCMC

        from ebm_ppl.numpyro import RBM, BlockGibbs

        dist = RBM(*(jnp.asarray(a) for a in (w, b, c)))

        def model():
            with numpyro.plate("chains", n):
                numpyro.sample("v", dist)

        mcmc = MCMC(
            BlockGibbs(model, transition=op), num_warmup=steps, num_samples=1, progress_bar=False
        )
        mcmc.run(jax.random.PRNGKey(0), init_params={"v": jnp.asarray(start)})
        v = np.asarray(mcmc.get_samples()["v"][-1])
    frac = np.mean((v[:, 5:].sum(1) >= 4) & (v[:, :5].sum(1) <= 1))
    assert abs(frac - exact) < 5 * np.sqrt(exact * (1 - exact) / n), (frac, exact)


def test_tempered_kernel_argument_checks(backend):
    from ebm_ppl.inference.tempering import ParallelTempering

    Kernel = backend_kernel(backend)
    with pytest.raises(ValueError, match="clamp cannot be combined"):
        Kernel(
            lambda: None,
            clamp={"v": (np.ones(4), np.ones(4))},
            transition=ParallelTempering([0.5, 1.0]),
        )
    with pytest.raises(TypeError, match="transition must be"):
        Kernel(lambda: None, transition="pt")


def backend_kernel(backend):
    if backend.name == "torch":
        from ebm_ppl.pyro import BlockGibbs
    else:
        from ebm_ppl.numpyro import BlockGibbs
    return BlockGibbs


def test_numpyro_gibbs_fn_leaves_the_kernel_unchanged():
    """gibbs_fn builds what it needs (sites, fields, clamps) once and closes over it."""
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    from ebm_ppl.numpyro import RBM, BlockGibbs

    w, b, c = (jnp.asarray(a) for a in random_params(np.random.default_rng(11), 4, 3))

    def model():
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        numpyro.sample("v", RBM(w, b, c + z, normalized=True))

    kernel = BlockGibbs(model, clamp={"v": (np.array([1, 0, 0, 0], bool), np.ones(4))})
    before = dict(vars(kernel))
    fn = kernel.gibbs_fn()
    v = fn(jax.random.PRNGKey(0), {"v": jnp.zeros(4)}, {"z": jnp.array(0.3)})["v"]
    assert vars(kernel) == before
    assert float(v[0]) == 1.0 and set(np.unique(np.asarray(v))) <= {0.0, 1.0}


@pytest.mark.parametrize("plain_ppl", [False, True])
def test_numpyro_kernel_builds_its_clamps_once(monkeypatch, plain_ppl):
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC

    import ebm_ppl.numpyro.kernels as kernels
    from ebm_ppl.numpyro import RBM, BlockGibbs

    w, b, c = (jnp.asarray(a) for a in random_params(np.random.default_rng(3), 4, 3))

    def model():
        if plain_ppl:
            v = numpyro.sample("v", dist.Bernoulli(logits=jnp.zeros(4)).to_event(1))
            h = numpyro.sample("h", dist.Bernoulli(logits=jnp.zeros(3)).to_event(1))
            numpyro.factor("energy", v @ w @ h + v @ b + h @ c)
        else:
            numpyro.sample("v", RBM(w, b, c))

    calls = []
    make = kernels.make_clamps
    monkeypatch.setattr(kernels, "make_clamps", lambda *a, **k: calls.append(1) or make(*a, **k))
    mask, values = np.array([1, 1, 0, 0], bool), np.array([1.0, 0.0, 0.0, 0.0])
    mcmc = MCMC(
        BlockGibbs(model, clamp={"v": (mask, values)}),
        num_warmup=3,
        num_samples=5,
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(0))
    assert len(calls) == 1
    v = np.asarray(mcmc.get_samples()["v"])
    assert (v[:, :2] == values[:2]).all()
