"""ArviZ conversion, summaries and plots of ebm_ppl.diagnostics."""

from __future__ import annotations

import numpy as np
import pytest

from ebm_ppl import diagnostics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N_VISIBLE, N_HIDDEN, PLATE = 6, 3, 2
NUM_SAMPLES, WARMUP, CHAINS = 300, 50, 2


def _params():
    rng = np.random.default_rng(3)
    w = (0.8 * rng.standard_normal((N_VISIBLE, N_HIDDEN))).astype(np.float32)
    b = (0.5 * rng.standard_normal(N_VISIBLE)).astype(np.float32)
    c = (0.5 * rng.standard_normal(N_HIDDEN)).astype(np.float32)
    return w, b, c


def _is_png(path) -> bool:
    data = path.read_bytes()
    return len(data) > 100 and data[:8] == PNG_MAGIC


def _direct_free_energy(w, b, c, v):
    """Free energy of eq. 5 in float64 numpy, summed over the plate: (..., P, D) -> (...)."""
    w, b, c, v = (np.asarray(a, np.float64) for a in (w, b, c, v))
    fe = -(v @ b) - np.logaddexp(0.0, v @ w + c).sum(-1)
    return fe.sum(-1)


@pytest.fixture(scope="module")
def pyro_mcmc():
    import pyro
    import torch
    from pyro.infer import MCMC

    from ebm_ppl.pyro import RBM, BlockGibbs

    w, b, c = (torch.as_tensor(a) for a in _params())

    def model():
        with pyro.plate("d", PLATE):
            pyro.sample("v", RBM(w, b, c))

    pyro.set_rng_seed(0)
    mcmc = MCMC(
        BlockGibbs(model, report_hidden=True),
        num_samples=NUM_SAMPLES,
        warmup_steps=WARMUP,
        num_chains=CHAINS,
        disable_progbar=True,
    )
    mcmc.run()
    return mcmc


@pytest.fixture(scope="module")
def numpyro_mcmc():
    import jax
    import jax.numpy as jnp
    import numpyro
    from numpyro.infer import MCMC

    from ebm_ppl.numpyro import RBM, BlockGibbs

    w, b, c = (jnp.asarray(a) for a in _params())

    def model():
        with numpyro.plate("d", PLATE):
            numpyro.sample("v", RBM(w, b, c))

    mcmc = MCMC(
        BlockGibbs(model, report_hidden=True),
        num_warmup=WARMUP,
        num_samples=NUM_SAMPLES,
        num_chains=CHAINS,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(0), extra_fields=("free_energy",))
    return mcmc


# ---- dict sources -----------------------------------------------------------------------


def test_dict_shapes_dims_and_thin():
    import torch

    rng = np.random.default_rng(0)
    samples = {
        "a": rng.standard_normal((2, 50)),
        "v": torch.as_tensor(rng.integers(0, 2, (2, 50, 3, 4)).astype(np.float32)),
    }
    dt = diagnostics.to_arviz(samples)
    post = dt["posterior"]
    assert post["a"].dims == ("chain", "draw")
    assert post["v"].shape == (2, 50, 3, 4)
    assert post["v"].dims == ("chain", "draw", "v_dim_0", "v_dim_1")
    assert isinstance(post["v"].values, np.ndarray)
    assert diagnostics.energy_var_names(dt) == []

    thinned = diagnostics.to_arviz(samples, thin=3)
    assert thinned["posterior"]["v"].shape == (2, 17, 3, 4)
    np.testing.assert_array_equal(thinned["posterior"]["a"].values, samples["a"][:, ::3])

    # without energy summaries every variable is summarised
    table = diagnostics.summary(dt)
    assert list(table.columns) == ["mean", "sd", "ess_bulk", "ess_tail", "r_hat"]
    assert len(table) == 1 + 12


def test_dict_with_energy_sites_matches_direct_computation():
    import jax.numpy as jnp

    from ebm_ppl.numpyro import RBM

    w, b, c = _params()
    v = np.random.default_rng(1).integers(0, 2, (2, 10, PLATE, N_VISIBLE)).astype(np.float32)
    h = np.random.default_rng(2).integers(0, 2, (2, 10, PLATE, N_HIDDEN)).astype(np.float32)
    dist = RBM(jnp.asarray(w), jnp.asarray(b), jnp.asarray(c))
    dt = diagnostics.to_arviz({"v": v, "v_hidden": h}, energy_sites={"v": dist}, thin=2)
    post = dt["posterior"]
    assert diagnostics.energy_var_names(dt) == [
        "free_energy_v",
        "mean_activation_v",
        "mean_activation_v_hidden",
    ]
    np.testing.assert_allclose(
        post["free_energy_v"].values, _direct_free_energy(w, b, c, v[:, ::2]), rtol=1e-5
    )
    np.testing.assert_allclose(post["mean_activation_v"].values, v[:, ::2].mean((2, 3)))
    np.testing.assert_allclose(post["mean_activation_v_hidden"].values, h[:, ::2].mean((2, 3)))


def test_bad_inputs_name_the_argument():
    good = {"a": np.zeros((2, 10))}
    with pytest.raises(ValueError, match="share \\(chains, draws\\)"):
        diagnostics.to_arviz({"a": np.zeros((2, 10)), "b": np.zeros((2, 9, 3))})
    with pytest.raises(ValueError, match="source\\['a'\\].*\\(chains, draws, ...\\)"):
        diagnostics.to_arviz({"a": np.zeros(10)})
    with pytest.raises(ValueError, match="source has no variables"):
        diagnostics.to_arviz({})
    with pytest.raises(TypeError, match="source must be"):
        diagnostics.to_arviz([np.zeros((2, 10))])
    with pytest.raises(TypeError, match="numeric"):
        diagnostics.to_arviz({"a": np.array([["x"] * 3] * 2)})
    with pytest.raises(ValueError, match="thin"):
        diagnostics.to_arviz(good, thin=0)
    with pytest.raises(TypeError, match="energy_sites\\['a'\\]"):
        diagnostics.to_arviz(good, energy_sites={"a": object()})
    with pytest.raises(ValueError, match="var_names"):
        diagnostics.summary(good, var_names=["nope"])


def test_unrun_mcmc_is_rejected():
    import jax.numpy as jnp
    import numpyro
    import pyro
    import torch
    from numpyro.infer import MCMC as NumPyroMCMC
    from pyro.infer import MCMC as PyroMCMC

    from ebm_ppl import numpyro as enp
    from ebm_ppl import pyro as epy

    w, b, c = _params()

    def pmodel():
        pyro.sample("v", epy.RBM(torch.as_tensor(w), torch.as_tensor(b), torch.as_tensor(c)))

    def nmodel():
        numpyro.sample("v", enp.RBM(jnp.asarray(w), jnp.asarray(b), jnp.asarray(c)))

    pyro_mcmc = PyroMCMC(epy.BlockGibbs(pmodel), num_samples=5, disable_progbar=True)
    with pytest.raises(ValueError, match="source.*has not run"):
        diagnostics.to_arviz(pyro_mcmc)
    numpyro_mcmc = NumPyroMCMC(
        enp.BlockGibbs(nmodel), num_warmup=1, num_samples=5, progress_bar=False
    )
    with pytest.raises(ValueError, match="source.*has not run"):
        diagnostics.to_arviz(numpyro_mcmc)


# ---- real MCMC runs ---------------------------------------------------------------------


def _check_energy_summaries(dt, w, b, c, raw_v):
    post = dt["posterior"]
    assert diagnostics.energy_var_names(dt) == [
        "free_energy_v",
        "mean_activation_v",
        "mean_activation_v_hidden",
    ]
    assert post["v"].shape == (CHAINS, NUM_SAMPLES, PLATE, N_VISIBLE)
    assert post["v_hidden"].shape == (CHAINS, NUM_SAMPLES, PLATE, N_HIDDEN)
    fe = post["free_energy_v"]
    assert fe.dims == ("chain", "draw")
    for chain, draw in [(0, 0), (0, 123), (1, 7), (1, NUM_SAMPLES - 1)]:
        expected = _direct_free_energy(w, b, c, raw_v[chain, draw])
        np.testing.assert_allclose(fe.values[chain, draw], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(post["mean_activation_v"].values, raw_v.mean((2, 3)), rtol=1e-6)

    table = diagnostics.summary(dt)
    assert list(table.index) == [
        "free_energy_v",
        "mean_activation_v",
        "mean_activation_v_hidden",
    ]
    assert list(table.columns) == ["mean", "sd", "ess_bulk", "ess_tail", "r_hat"]
    assert table.loc["free_energy_v", "r_hat"] < 1.1
    assert table.loc["free_energy_v", "ess_bulk"] > 50

    r = diagnostics.rhat(dt)
    assert set(r) == set(table.index) and r["free_energy_v"].shape == ()
    np.testing.assert_allclose(r["free_energy_v"], table.loc["free_energy_v", "r_hat"])
    e = diagnostics.ess(dt, var_names="free_energy_v")
    np.testing.assert_allclose(e["free_energy_v"], table.loc["free_energy_v", "ess_bulk"])
    assert diagnostics.rhat(dt, var_names=["v"])["v"].shape == (PLATE, N_VISIBLE)


def test_pyro_mcmc(pyro_mcmc, tmp_path):
    w, b, c = _params()
    raw_v = pyro_mcmc.get_samples(group_by_chain=True)["v"].numpy()
    dt = diagnostics.to_arviz(pyro_mcmc)
    assert "sample_stats" not in dt.children
    _check_energy_summaries(dt, w, b, c, raw_v)

    path = diagnostics.plot_trace(dt, tmp_path / "plots" / "trace.png")
    assert path == tmp_path / "plots" / "trace.png" and _is_png(path)

    thinned = diagnostics.to_arviz(pyro_mcmc, thin=10)
    np.testing.assert_allclose(
        thinned["posterior"]["free_energy_v"].values,
        dt["posterior"]["free_energy_v"].values[:, ::10],
    )


def test_pyro_kernel_not_set_up_in_this_process(pyro_mcmc, monkeypatch):
    """Parallel Pyro chains set up the kernel in workers: the sites come from a re-trace."""
    monkeypatch.setattr(pyro_mcmc.kernel, "_dists", {})
    assert pyro_mcmc.kernel.energy_sites == {}
    w, b, c = _params()
    raw_v = pyro_mcmc.get_samples(group_by_chain=True)["v"].numpy()
    dt = diagnostics.to_arviz(pyro_mcmc)
    np.testing.assert_allclose(
        dt["posterior"]["free_energy_v"].values, _direct_free_energy(w, b, c, raw_v), rtol=1e-5
    )


def test_numpyro_mcmc(numpyro_mcmc, tmp_path):
    w, b, c = _params()
    raw_v = np.asarray(numpyro_mcmc.get_samples(group_by_chain=True)["v"])
    dt = diagnostics.to_arviz(numpyro_mcmc)
    _check_energy_summaries(dt, w, b, c, raw_v)
    # the kernel's own free-energy trace agrees with the one recomputed here
    stats = dt["sample_stats"]["free_energy"]
    assert stats.dims == ("chain", "draw")
    np.testing.assert_allclose(
        stats.values, dt["posterior"]["free_energy_v"].values, rtol=1e-5, atol=1e-5
    )
    path = diagnostics.plot_trace(
        dt, tmp_path / "trace.png", var_names=["free_energy_v", "mean_activation_v"]
    )
    assert _is_png(path)


def test_plot_samples(tmp_path):
    import jax.numpy as jnp
    import torch

    rng = np.random.default_rng(0)
    images = rng.integers(0, 2, (23, 64)).astype(np.float32)
    images[:, :8] = 1.0  # a white top row in every image
    path = diagnostics.plot_samples(torch.as_tensor(images), tmp_path / "a" / "grid.png")
    assert _is_png(path)
    gray = jnp.asarray(rng.standard_normal((3, 4, 5)))
    assert _is_png(diagnostics.plot_samples(gray, tmp_path / "gray.png", shape=(4, 5), ncols=2))
    with pytest.raises(ValueError, match="images must have shape"):
        diagnostics.plot_samples(images[:, :60], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="ncols"):
        diagnostics.plot_samples(images, tmp_path / "bad.png", ncols=0)
