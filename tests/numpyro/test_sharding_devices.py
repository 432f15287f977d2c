"""Run ``test_sharding.py`` with 4 simulated CPU devices, plus single-device mesh checks.

``XLA_FLAGS=--xla_force_host_platform_device_count`` must be set before JAX starts, so the
4-device checks run in a fresh Python process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
import pytest

from ebm_ppl.numpyro import RBM, SAMLE, make_mesh

HERE = Path(__file__).parent


@pytest.mark.slow
def test_sharded_checks_on_4_simulated_devices():
    env = dict(os.environ)
    # one Eigen thread per simulated device: with more devices than cores, a device thread
    # starved by another device's matmul misses the all-reduce rendezvous (XLA aborts)
    flags = "--xla_force_host_platform_device_count=4 --xla_cpu_multi_thread_eigen=false"
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flags).strip()
    env["JAX_PLATFORMS"] = "cpu"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    cmd += ["-rs", str(HERE / "test_sharding.py")]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=900, env=env, cwd=HERE.parent.parent
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-8000:]
    assert "skipped" not in out.splitlines()[-1], out[-3000:]  # the checks really ran


def test_a_one_device_mesh_is_the_unsharded_run():
    def model(data):
        w = numpyro.param("W", 0.1 * jax.random.normal(jax.random.PRNGKey(0), (6, 3)))
        with numpyro.plate("data", data.shape[0]):
            numpyro.sample("v", RBM(w, jnp.zeros(6), jnp.zeros(3)), obs=data)

    x = (jax.random.uniform(jax.random.PRNGKey(1), (20, 6)) < 0.4).astype(jnp.float32)
    out = []
    for mesh in (None, 1):
        t = SAMLE(model, optax.sgd(0.1), num_chains=10, mesh=mesh)
        s = t.run(jax.random.PRNGKey(2), x, num_epochs=2, batch_size=10)
        out.append(np.asarray(t.get_params(s)["W"]))
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)
    assert make_mesh(None).shape["batch"] == jax.device_count()
    with pytest.raises(TypeError, match="mesh must be"):
        make_mesh(["cpu"])
