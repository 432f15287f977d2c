"""Bad input meets a clear TypeError / ValueError naming the argument, alike in both backends
(issue 23's table; rows on checkpoints, run semantics, clamps and the CLI are tested next to
their features: tests/inference/test_samle.py, tests/inference/test_block_gibbs.py,
tests/test_cli.py, tests/test_io.py)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_params


def _other_float(backend):
    """A floating dtype other than float32 that the backend keeps (JAX without x64 mode
    turns float64 into float32, so float16 there)."""
    return np.float64 if backend.name == "torch" else np.float16


def _cases(backend):
    if backend.name == "torch":
        import ebm_ppl.pyro as fe
    else:
        import ebm_ppl.numpyro as fe
    w, b, c = random_params(np.random.default_rng(0), 5, 3)
    odd = _other_float(backend)
    sigma = np.ones(5)
    return {
        "RBM weights float64/float16, biases float32": (
            lambda: fe.RBM(backend.array(w, odd), backend.array(b), backend.array(c)),
            TypeError,
            r"share one dtype, got weights \w*float(64|16), visible_bias \w*float32",
        ),
        "GaussianRBM sigma of another dtype": (
            lambda: fe.GaussianRBM(
                backend.array(w), backend.array(b), backend.array(c), backend.array(sigma, odd)
            ),
            TypeError,
            "share one dtype",
        ),
        "DBM biases of another dtype": (
            lambda: fe.DBM(
                [backend.array(w), backend.array(w[:3, :2])],
                [backend.array(b), backend.array(c, odd), backend.array(np.zeros(2))],
            ),
            TypeError,
            r"share one dtype.*biases\[1\]",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "RBM weights float64/float16, biases float32",
        "GaussianRBM sigma of another dtype",
        "DBM biases of another dtype",
    ],
)
def test_mixed_parameter_dtypes_are_refused(backend, case):
    make, error, match = _cases(backend)[case]
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("kind", ["numpy", "bool", "int64", "float64"])
def test_values_of_other_types_are_converted(backend, kind):
    """The documented conversion: NumPy arrays, and arrays of bool, integer or float64
    dtype, are cast to the parameters' backend and dtype by log_prob (exact for 0/1 units),
    giving the float32 result."""
    w, b, c = random_params(np.random.default_rng(2), 5, 3)
    d = backend.RBM(backend.array(w), backend.array(b), backend.array(c))
    v = (np.random.default_rng(3).random((4, 5)) < 0.5).astype(np.float32)
    ref = backend.np(d.log_prob(backend.array(v)))
    if kind == "numpy":
        value = v.astype(np.float64)
    elif backend.name == "torch":
        import torch

        value = torch.as_tensor(v).to(getattr(torch, kind))
    elif kind == "float64":
        value = backend.array(v, np.float16)  # JAX without x64 keeps float16, not float64
    else:
        import jax.numpy as jnp

        value = jnp.asarray(v).astype(jnp.bool_ if kind == "bool" else jnp.int32)
    np.testing.assert_allclose(backend.np(d.log_prob(value)), ref, rtol=1e-6)


@pytest.mark.parametrize("kind", ["bool", "int64", "float64"])
def test_pyro_trainer_takes_data_of_other_dtypes(kind):
    """SAMLE.run on bool / int64 / float64 data trains exactly as on the same data in
    float32 (the batches are cast to the parameters' dtype)."""
    import pyro
    import torch

    from ebm_ppl.pyro import RBM, SAMLE

    w, b, c = random_params(np.random.default_rng(4), 6, 3)
    x = (np.random.default_rng(5).random((20, 6)) < 0.5).astype(np.float32)

    def model(data):
        W = pyro.param("W", torch.tensor(w))  # copies: the updates are in place
        bb = pyro.param("b", torch.tensor(b))
        cc = pyro.param("c", torch.tensor(c))
        with pyro.plate("data", data.shape[0]):
            pyro.sample("v", RBM(W, bb, cc), obs=data)

    out = []
    for data in (torch.as_tensor(x), torch.as_tensor(x).to(getattr(torch, kind))):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        SAMLE(model, pyro.optim.SGD({"lr": 0.1})).run(
            data, num_epochs=2, batch_size=5, progress_bar=False
        )
        out.append(pyro.param("W").detach().clone())
    assert torch.equal(out[0], out[1])


@pytest.mark.parametrize("switch", ["default", "validate_args=False", "global"])
def test_validation_switches_turn_value_checks_off(backend, switch):
    """Value checks (NaN parameters, non-binary values) follow the hosts' switches:
    validate_args=False in both backends and pyro.validation_enabled(False) in Pyro turn
    them off (NumPyro's global default is off, so its global switch is not honoured: the
    checks stay on unless validate_args=False); shape checks stay on regardless."""
    import contextlib

    w, b, c = random_params(np.random.default_rng(6), 5, 3)
    w[0, 0] = np.nan
    kwargs = {"validate_args": False} if switch == "validate_args=False" else {}
    context = contextlib.nullcontext()
    if switch == "global":
        if backend.name != "torch":
            pytest.skip("NumPyro's global validation is off by default: not a switch")
        import pyro

        context = pyro.validation_enabled(False)

    def make():
        return backend.RBM(backend.array(w), backend.array(b), backend.array(c), **kwargs)

    with context:
        if switch == "default":
            with pytest.raises(ValueError, match="weights contains NaN"):
                make()
            return
        d = make()
        half = np.full((2, 5), 0.5, np.float32)
        assert backend.np(d.log_prob(backend.array(half))).shape == (2,)  # not checked
        with pytest.raises(ValueError, match="shape"):
            d.log_prob(backend.array(np.zeros((2, 4))))


def test_expand_error_uses_the_hosts_wording(backend):
    w, b, c = random_params(np.random.default_rng(7), 5, 3)
    d = backend.RBM(backend.array(np.stack([w, w, w])), backend.array(b), backend.array(c))
    with pytest.raises(ValueError, match=r"Cannot broadcast distribution of shape \(3,\)"):
        d.expand((2,))
    assert tuple(d.expand((4, 3)).batch_shape) == (4, 3)
