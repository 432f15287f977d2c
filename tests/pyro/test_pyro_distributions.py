"""The Pyro RBM behaves as a native Pyro distribution (plates, handlers, Predictive)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Predictive

from ebm_ppl.pyro import RBM


def params(nv=6, nh=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(nv, nh, generator=g),
        torch.randn(nv, generator=g) * 0.3,
        torch.randn(nh, generator=g) * 0.3,
    )


def model(data=None, n=5):
    W = pyro.param("W", params()[0])
    b = pyro.param("b", torch.zeros(6))
    c = pyro.param("c", torch.zeros(3))
    with pyro.plate("data", n if data is None else data.shape[0]):
        return pyro.sample("v", RBM(W, b, c, num_gibbs_steps=20), obs=data)


def test_support_and_flags():
    d = RBM(*params())
    assert d.support.event_dim == 1
    assert not d.has_rsample and not d.has_enumerate_support
    assert isinstance(d, dist.TorchDistribution)
    assert d.event_shape == (6,) and d.batch_shape == ()


def test_native_expand_under_plate():
    data = torch.bernoulli(torch.full((5, 6), 0.5))
    tr = poutine.trace(model).get_trace(data)
    fn = tr.nodes["v"]["fn"]
    assert type(fn) is RBM and fn.batch_shape == (5,)
    assert fn.weights.shape == (6, 3)  # lazily broadcast, not copied
    lp = tr.nodes["v"]["fn"].log_prob(data)
    assert lp.shape == (5,)
    assert torch.allclose(tr.log_prob_sum(), lp.sum())
    e = RBM(*params()).expand((2, 5))
    assert e.batch_shape == (2, 5) and e.log_prob(data).shape == (2, 5)
    with pytest.raises(ValueError, match="expand"):
        e.expand((3, 5))


def test_trace_condition_seed_predictive():
    pyro.set_rng_seed(0)
    x1 = model()
    pyro.set_rng_seed(0)
    x2 = model()
    assert torch.equal(x1, x2) and x1.shape == (5, 6)
    assert set(x1.unique().tolist()) <= {0.0, 1.0}
    data = torch.ones(5, 6)
    conditioned = poutine.condition(model, data={"v": data})
    tr = poutine.trace(conditioned).get_trace()
    assert tr.nodes["v"]["is_observed"] and torch.equal(tr.nodes["v"]["value"], data)
    seeded = poutine.seed(model, rng_seed=3)
    assert torch.equal(seeded(), poutine.seed(model, rng_seed=3)())
    pred = Predictive(model, num_samples=4)()
    assert pred["v"].shape == (4, 5, 6)


def test_sample_shape():
    pyro.set_rng_seed(1)
    d = RBM(*params(), num_gibbs_steps=3).expand((2,))
    assert d.sample((7,)).shape == (7, 2, 6)


def test_validate_args_false_skips_value_checks():
    d = RBM(*params(), validate_args=False)
    d.log_prob(torch.full((2, 6), 0.5))  # no error: caller opted out
    with pytest.raises(ValueError):
        RBM(*params()).log_prob(torch.full((2, 6), 0.5))


def module_level_model():
    with pyro.plate("d", 3):
        pyro.sample("v", RBM(*params()))


def test_block_gibbs_kernel_is_picklable():
    """Pyro's multiprocessing chains pickle the kernel."""
    import pickle

    from pyro.infer import MCMC

    from ebm_ppl.pyro import BlockGibbs

    kernel = BlockGibbs(module_level_model, report_hidden=True)
    MCMC(kernel, num_samples=3, warmup_steps=1, disable_progbar=True).run()
    clone = pickle.loads(pickle.dumps(kernel))
    assert clone.report_hidden and set(clone.energy_sites) == {"v"}
    mcmc = MCMC(clone, num_samples=3, warmup_steps=1, disable_progbar=True)
    mcmc.run()
    assert mcmc.get_samples()["v"].shape == (3, 3, 6)
