"""The two PPL adapters that programs written once take: the same names, each bound to its host."""

import numpyro
import numpyro.distributions
import pyro
import pyro.distributions
import pytest

from ebm_ppl.numpyro import ppl as numpyro_ppl
from ebm_ppl.pyro import ppl as pyro_ppl


def test_same_names():
    assert sorted(pyro_ppl.__all__) == sorted(numpyro_ppl.__all__)
    for name in pyro_ppl.__all__:
        assert hasattr(pyro_ppl, name) and hasattr(numpyro_ppl, name), name


@pytest.mark.parametrize(
    "adapter, host, dist",
    [(pyro_ppl, pyro, pyro.distributions), (numpyro_ppl, numpyro, numpyro.distributions)],
)
def test_bound_to_host(adapter, host, dist):
    assert adapter.NAME == host.__name__
    assert adapter.dist is dist
    for name in ("sample", "factor", "plate", "param", "deterministic"):
        assert getattr(adapter, name) is getattr(host, name), name


@pytest.mark.parametrize("adapter", [pyro_ppl, numpyro_ppl])
def test_asarray(adapter):
    x = adapter.asarray([1, 2], "float32")
    assert str(x.dtype).endswith("float32")
    i = adapter.asarray([1.0, 2.0], "int")
    assert "int" in str(i.dtype) and i.tolist() == [1, 2]
    with pytest.raises(KeyError):
        adapter.asarray([1], "float16")


@pytest.mark.parametrize("adapter", [pyro_ppl, numpyro_ppl])
def test_grad_iterate_compiled(adapter):
    def f(a, b, c):
        return (a * b * b).sum() + c

    x, y = adapter.asarray([1.0, 2.0]), adapter.asarray([3.0, 4.0])
    ga, gb = adapter.grad(f, (0, 1))(x, y, 1.0)
    assert ga.tolist() == [9.0, 16.0] and gb.tolist() == [6.0, 16.0]
    run = adapter.compiled(lambda s: adapter.iterate(lambda t: 2.0 * t + 1.0, s, 3))
    assert run(x).tolist() == [15.0, 23.0]


def test_uniform_init():
    import jax
    import torch

    like = pyro_ppl.asarray([0.0])
    torch.manual_seed(0)
    a = pyro_ppl.uniform_init((2, 3), 0.25, 0.75, like)()
    torch.manual_seed(0)
    assert torch.equal(a, 0.25 + 0.5 * torch.rand(2, 3))
    key = jax.random.PRNGKey(1)
    b = numpyro_ppl.uniform_init((2, 3), 0.25, 0.75, numpyro_ppl.asarray([0.0]))(key)
    assert (b == 0.25 + 0.5 * jax.random.uniform(key, (2, 3))).all()
    assert b.shape == a.shape == (2, 3) and float(b.min()) >= 0.25 and float(b.max()) < 0.75


def test_frontends_reexport_the_shared_names():
    """The backend-neutral names are listed once (``inference.frontend_api``) and both
    frontends export the very same objects."""
    import ebm_ppl.numpyro as npf
    import ebm_ppl.pyro as ppf
    from ebm_ppl.inference import frontend_api

    for name in frontend_api.__all__:
        assert name in ppf.__all__ and name in npf.__all__, name
        assert getattr(ppf, name) is getattr(npf, name) is getattr(frontend_api, name), name
