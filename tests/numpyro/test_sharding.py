"""Sharded NumPyro algorithms on 4 JAX devices give the single-device numbers.

Needs 4 devices: ``test_sharding_devices.py`` runs this file in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (CPU); on a machine with 4 or more
accelerators it also runs directly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
import pytest
from jax.sharding import Mesh
from numpyro.infer import MCMC

from ebm_ppl.inference.ais import anneal, linear_schedule
from ebm_ppl.numpyro import (
    AIS,
    RBM,
    SAMLE,
    BlockGibbs,
    ParallelTempering,
    make_mesh,
    run_chains,
)
from ebm_ppl.numpyro.sharding import shard_batch

pytestmark = pytest.mark.skipif(
    jax.device_count() < 4,
    reason="needs 4 JAX devices (test_sharding_devices.py runs it with 4 simulated CPU devices)",
)

N_VIS, N_HID = 20, 8


def model(data):
    w = numpyro.param("W", 0.1 * jax.random.normal(jax.random.PRNGKey(0), (N_VIS, N_HID)))
    b = numpyro.param("b", jnp.zeros(N_VIS))
    c = numpyro.param("c", jnp.zeros(N_HID))
    with numpyro.plate("data", data.shape[0]):
        numpyro.sample("v", RBM(w, b, c), obs=data)


def data_set(n=400, seed=1):
    p = jnp.linspace(0.1, 0.7, N_VIS)
    return (jax.random.uniform(jax.random.PRNGKey(seed), (n, N_VIS)) < p).astype(jnp.float32)


def spec(x):
    """The mesh axes each array axis is split over, as tuples (``()``: not split)."""
    out = []
    for a in x.sharding.spec:
        out.append(() if a is None else (a,) if isinstance(a, str) else tuple(a))
    return tuple(out) + ((),) * (x.ndim - len(out))


def trainer(mesh, transition=None):
    return SAMLE(
        model, optax.sgd(0.05, momentum=0.5), num_chains=40, mesh=mesh, transition=transition
    )


def train(t, epochs, init_state=None, seed=2):
    return t.run(
        jax.random.PRNGKey(seed),
        data_set(),
        num_epochs=epochs,
        batch_size=40,
        init_state=init_state,
    )


def assert_same_run(a, b, ta, tb):
    pa, pb = ta.get_params(a), tb.get_params(b)
    for k in pa:  # float reduction order differs across devices: allow float32 noise
        np.testing.assert_allclose(np.asarray(pa[k]), np.asarray(pb[k]), atol=2e-5, rtol=1e-5)
    same = np.mean(np.asarray(a.chains["v"]) == np.asarray(b.chains["v"]))
    assert same >= 0.99, f"only {same:.3f} of the chain units agree"


@pytest.fixture(scope="module")
def reference():
    """Two epochs of 10 updates on one device."""
    t = trainer(None)
    return t, train(t, 2)


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    """The same run on 4 devices, checkpointed after the first epoch."""
    t = trainer(4)
    s1 = train(t, 1)
    ck = t.save(tmp_path_factory.mktemp("sharded") / "ck.safetensors", s1)
    return t, s1, train(t, 2, init_state=s1), ck


def test_samle_sharded_equals_unsharded(reference, four):
    t4, _, s4, _ = four
    assert_same_run(reference[1], s4, reference[0], t4)
    assert spec(s4.chains["v"]) == (("batch",), ())
    assert len(s4.chains["v"].sharding.device_set) == 4
    w = s4.optim_state[1][0]["W"]  # the optimizer's parameter copy: replicated
    assert w.sharding.is_fully_replicated and len(w.sharding.device_set) == 4


def test_samle_on_a_2d_mesh_splits_over_both_axes(reference):
    mesh = Mesh(np.asarray(jax.devices()[:4]).reshape(2, 2), ("data", "model"))
    t = trainer(mesh)
    s = train(t, 2)
    assert spec(s.chains["v"]) == (("data", "model"), ())
    assert len(s.chains["v"].sharding.device_set) == 4
    assert_same_run(reference[1], s, reference[0], t)


@pytest.mark.parametrize("mesh", [2, None])
def test_checkpoint_saved_on_4_devices_resumes_on_2_and_on_1(reference, four, mesh):
    _, s4, _, ck = four
    t = trainer(mesh)
    s = t.load(ck, jax.random.PRNGKey(0), data_set()[:40])
    assert len(s.chains["v"].sharding.device_set) == (1 if mesh is None else mesh)
    np.testing.assert_array_equal(np.asarray(s.chains["v"]), np.asarray(s4.chains["v"]))
    s = train(t, 2, init_state=s)
    assert_same_run(reference[1], s, reference[0], t)


def test_samle_parallel_tempering_sharded_along_the_chain_axis():
    pt = ParallelTempering(np.linspace(0.4, 1.0, 3))
    t1, t4 = trainer(None, pt), trainer(4, pt)
    s1, s4 = train(t1, 1), train(t4, 1)
    assert s4.chains["v"].shape == (3, 40, N_VIS)
    assert spec(s4.chains["v"]) == ((), ("batch",), ())  # the ladder stays whole
    assert_same_run(s1, s4, t1, t4)


def test_samle_update_shards_an_unsharded_batch():
    x = data_set(40)
    t1 = SAMLE(model, optax.sgd(0.1), num_chains=40)
    t4 = SAMLE(model, optax.sgd(0.1), num_chains=40, mesh=4)
    s1, s4 = t1.init(jax.random.PRNGKey(3), x), t4.init(jax.random.PRNGKey(3), x)
    for _ in range(3):
        s1, _ = t1.update(s1, x)
        s4, _ = t4.update(s4, x)
    assert spec(s4.chains["v"]) == (("batch",), ())
    assert_same_run(s1, s4, t1, t4)


def test_ais_sharded_equals_unsharded():
    k = jax.random.split(jax.random.PRNGKey(4), 3)
    rbm = RBM(
        jax.random.normal(k[0], (N_VIS, N_HID)),
        0.5 * jax.random.normal(k[1], (N_VIS,)),
        0.5 * jax.random.normal(k[2], (N_HID,)),
    )
    betas = linear_schedule(200)
    rev = data_set(64)  # any states will do for checking that the numbers agree
    a = AIS(rbm, betas=betas, num_runs=64, rng_key=jax.random.PRNGKey(3), reverse_samples=rev)
    b = AIS(
        rbm, betas=betas, num_runs=64, rng_key=jax.random.PRNGKey(3), reverse_samples=rev, mesh=4
    )
    np.testing.assert_allclose(a.log_weights, b.log_weights, rtol=0, atol=1e-6)
    np.testing.assert_allclose(a.reverse.log_weights, b.reverse.log_weights, rtol=0, atol=1e-6)
    # the annealing really runs split over the devices
    base = rbm.ais_base(None)
    v0 = shard_batch(base.sample(jax.random.PRNGKey(0), (64,)), make_mesh(4))
    _, v = anneal(jax.random.PRNGKey(1), rbm, base, v0, betas, False)
    assert len(v.sharding.device_set) == 4 and spec(v) == (("batch",), ())


def test_block_gibbs_mcmc_parallel_chains_over_devices():
    w = 0.5 * jax.random.normal(jax.random.PRNGKey(0), (12, 6))

    def prior():
        numpyro.sample("v", RBM(w, jnp.zeros(12), jnp.zeros(6)))

    out = {}
    for method in ("vectorized", "parallel"):
        mcmc = MCMC(
            BlockGibbs(prior),
            num_warmup=0,
            num_samples=40,
            num_chains=4,
            chain_method=method,
            progress_bar=False,
        )
        mcmc.run(jax.random.PRNGKey(1))
        out[method] = mcmc.get_samples(group_by_chain=True)["v"]
    assert len(out["parallel"].sharding.device_set) == 4  # one chain per device (pmap)
    np.testing.assert_array_equal(np.asarray(out["parallel"]), np.asarray(out["vectorized"]))


def test_run_chains_sharded_equals_unsharded():
    # (parallel tempering sharded along its chain axis is checked through SAMLE above)
    rbm = RBM(2.0 * jax.random.normal(jax.random.PRNGKey(0), (12, 6)), jnp.zeros(12), jnp.zeros(6))
    key = jax.random.PRNGKey(6)
    s1, x1 = run_chains(key, rbm, 64, 20)
    s4, x4 = run_chains(key, rbm, 64, 20, mesh=4)
    np.testing.assert_array_equal(np.asarray(x1), np.asarray(x4))
    assert spec(s4) == (("batch",), ()) and len(s4.sharding.device_set) == 4
    s4, _ = run_chains(key, rbm, num_steps=20, state=s4, mesh=4)  # continue
    assert len(s4.sharding.device_set) == 4


def test_uneven_splits_and_bad_meshes_are_refused():
    x = data_set(42)
    with pytest.raises(ValueError, match="multiple of 4"):
        SAMLE(model, optax.sgd(0.1), num_chains=42, mesh=4).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="batch_size=42 must be a multiple"):
        SAMLE(model, optax.sgd(0.1), num_chains=40, mesh=4).run(
            jax.random.PRNGKey(0), data_set(84), batch_size=42
        )
    with pytest.raises(ValueError, match="8 devices requested but 4"):
        make_mesh(8)
    with pytest.raises(TypeError, match="mesh must be"):
        make_mesh("gpu")
    rbm = RBM(jnp.zeros((4, 2)), jnp.zeros(4), jnp.zeros(2))
    with pytest.raises(ValueError, match="AIS runs"):
        AIS(rbm, betas=linear_schedule(3), num_runs=6, rng_key=jax.random.PRNGKey(0), mesh=4)
