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
