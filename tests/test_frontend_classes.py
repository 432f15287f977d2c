"""The twin classes of the two frontends share their constructors and docstring heads
(:mod:`ebm_ppl.inference.frontend_classes`) and keep the hosts' bases."""

import inspect

import numpyro.distributions
import numpyro.infer.mcmc
import pyro.distributions
import pyro.infer.mcmc.mcmc_kernel
import pytest

import ebm_ppl.numpyro as npf
import ebm_ppl.pyro as ppf
from ebm_ppl.inference import frontend_classes as fc

CONSTRUCTORS = {
    "RBM": fc.RBMConstructor,
    "GaussianRBM": fc.GaussianRBMConstructor,
    "ReplicatedSoftmax": fc.ReplicatedSoftmaxConstructor,
    "DBM": fc.DBMConstructor,
    "MultimodalDBM": fc.MultimodalDBMConstructor,
}
DOC_HEADS = {
    "RBM": fc.RBM_DOC,
    "GaussianRBM": fc.GAUSSIAN_RBM_DOC,
    "MultimodalDBM": fc.MULTIMODAL_DBM_DOC,
}


@pytest.mark.parametrize("name", sorted(CONSTRUCTORS))
def test_constructor_written_once(name):
    p, n = getattr(ppf, name), getattr(npf, name)
    assert p.__init__ is n.__init__ is CONSTRUCTORS[name].__init__
    assert issubclass(p, pyro.distributions.TorchDistribution)
    assert issubclass(n, numpyro.distributions.Distribution)
    assert list(inspect.signature(p).parameters) == list(inspect.signature(n).parameters)


def test_categorical_rbm_takes_the_rbm_constructor():
    assert ppf.CategoricalRBM.__init__ is npf.CategoricalRBM.__init__ is fc.RBMConstructor.__init__


@pytest.mark.parametrize("name", sorted(DOC_HEADS))
def test_docstring_heads(name):
    for front in (ppf, npf):
        doc = getattr(front, name).__doc__
        assert doc.startswith(DOC_HEADS[name]) and len(doc) > len(DOC_HEADS[name])


def test_exchange_docstrings():
    assert issubclass(ppf.Exchange, pyro.infer.mcmc.mcmc_kernel.MCMCKernel)
    assert issubclass(npf.Exchange, numpyro.infer.mcmc.MCMCKernel)
    for front, host, mcmc in ((ppf, "Pyro", "pyro"), (npf, "NumPyro", "numpyro")):
        doc = front.Exchange.__doc__
        assert "{" not in doc and f"under ``{mcmc}.infer.MCMC``" in doc
        assert f":param model: a {host} model" in doc
        assert f"~ebm_ppl.{mcmc}.BlockGibbs" in doc


def test_numpyro_kernels_share_sample():
    from ebm_ppl.numpyro.kernels import ZKernel

    assert npf.BlockGibbs.sample is npf.Exchange.sample is ZKernel.sample
