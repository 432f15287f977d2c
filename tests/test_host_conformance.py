"""The hosts' generic distribution contracts, checked for every energy distribution we export.

Modelled on the generic tests of Pyro's ``tests/distributions/test_distributions.py`` and
NumPyro's ``test/test_distributions.py`` (shapes of ``sample`` and ``log_prob``, support,
``expand`` and repeated ``expand``, ``infer_shapes``, ``mask``, ``to_event``, plates and
``Predictive``, pytrees and ``jit`` in NumPyro, pickling in Pyro), adapted only to construct our
distributions. Normalization and exact-sampling checks are left out on purpose: our ``log_prob``
is unnormalized and ``sample()`` runs a Gibbs chain (both are tested against enumeration
elsewhere).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from ebm_ppl.ops import to_numpy


def _layers(r, sizes):
    return [0.5 * r.normal(size=s) for s in zip(sizes[:-1], sizes[1:])], [
        0.5 * r.normal(size=n) for n in sizes
    ]


def build(front, be, name):
    """A small instance of ``name`` from ``front`` (``ebm_ppl.pyro`` or ``ebm_ppl.numpyro``),
    with two Gibbs sweeps per ``sample()`` (the contracts concern shapes, not mixing)."""
    r = np.random.default_rng(0)
    a = be.array
    k = {"num_gibbs_steps": 2}
    if name == "RBM":
        return front.RBM(a(r.normal(size=(5, 3))), a(r.normal(size=5)), a(r.normal(size=3)), **k)
    if name == "GaussianRBM":
        return front.GaussianRBM(
            a(r.normal(size=(5, 3))), a(r.normal(size=5)), a(r.normal(size=3)), 0.8, **k
        )
    if name == "ReplicatedSoftmax":
        w, b, c = r.normal(size=(5, 3)), r.normal(size=5), 0.1 * r.normal(size=3)
        return front.ReplicatedSoftmax(a(w), a(b), a(c), total_count=6.0, **k)
    if name == "CategoricalRBM":
        return front.CategoricalRBM(
            a(r.normal(size=(5, 3, 3))), a(r.normal(size=(5, 3))), a(r.normal(size=3)), **k
        )
    if name == "Ising":
        return front.Ising(0.3, 0.1, shape=(3, 4), **k)
    if name in ("DBM", "DBMVisible"):
        w, b = _layers(r, (5, 3, 2))
        dbm = front.DBM([a(x) for x in w], [a(x) for x in b], **k)
        return dbm if name == "DBM" else dbm.visible()
    if name in ("MultimodalDBM", "MultimodalDBMVisible"):
        wi, bi = _layers(r, (4, 3, 2))
        wt, bt = _layers(r, (6, 3, 2))
        mm = front.MultimodalDBM(
            image_weights=[a(x) for x in wi],
            image_biases=[a(x) for x in bi],
            text_weights=[a(x) for x in wt],
            text_biases=[a(x) for x in bt],
            joint_weights=[a(0.5 * r.normal(size=(2, 3))), a(0.5 * r.normal(size=(2, 3)))],
            joint_bias=a(0.5 * r.normal(size=3)),
            sigma=1.0,
            total_count=4,
            **k,
        )
        return mm if name == "MultimodalDBM" else mm.visible()
    if name == "RobustBMVisible":
        clean = front.GaussianRBM(
            a(r.normal(size=(4, 2))), a(r.normal(size=4)), a(r.normal(size=2)), 1.0
        )
        mask = front.RBM(a(r.normal(size=(4, 2))), a(r.normal(size=4) + 1), a(r.normal(size=2)))
        return front.RobustBM(clean, mask, noise_scale=0.3).visible()
    raise KeyError(name)


NAMES = [
    "RBM",
    "GaussianRBM",
    "ReplicatedSoftmax",
    "CategoricalRBM",
    "Ising",
    "DBM",
    "DBMVisible",
    "MultimodalDBM",
    "MultimodalDBMVisible",
    "RobustBMVisible",
]


class Host:
    """The few calls in which the two hosts differ."""

    def __init__(self, backend):
        self.be = backend
        if backend.name == "torch":
            import ebm_ppl.pyro as front
        else:
            import ebm_ppl.numpyro as front
        self.front = front

    def sample(self, d, shape, seed=0):
        if self.be.name == "torch":
            self.be.torch.manual_seed(seed)
            return d.sample(shape)
        return d.sample(self.be.jax.random.PRNGKey(seed), shape)

    def in_support(self, d, x):
        ok = d.support.check(x) if self.be.name == "torch" else d.support(x)
        return bool(np.all(to_numpy(ok)))


@pytest.fixture
def host(backend):
    return Host(backend)


@pytest.mark.parametrize("name", NAMES)
def test_sample_log_prob_shapes_and_support(host, name):
    d = build(host.front, host.be, name)
    assert not d.has_rsample and not d.has_enumerate_support
    for shape in [(), (2, 3)]:
        x = host.sample(d, shape)
        assert tuple(x.shape) == shape + tuple(d.batch_shape) + tuple(d.event_shape)
        assert host.in_support(d, x)
        lp = d.log_prob(x)
        assert tuple(lp.shape) == shape + tuple(d.batch_shape)
        assert np.isfinite(to_numpy(lp)).all()


@pytest.mark.parametrize("name", NAMES)
def test_expand_and_repeated_expand(host, name):
    """``expand`` gives the requested batch shape (new and existing dimensions), draws and
    scores with it, expands again, and refuses a shape it cannot broadcast to."""
    d = build(host.front, host.be, name)
    x = host.sample(d, (2,))
    e = d.expand((3,) + tuple(d.batch_shape))
    assert tuple(e.batch_shape) == (3,) + tuple(d.batch_shape)
    assert tuple(host.sample(e, (2,)).shape) == (2, 3) + tuple(d.batch_shape) + tuple(d.event_shape)
    lp = e.log_prob(x[:, None])
    assert tuple(lp.shape) == (2, 3) + tuple(d.batch_shape)
    np.testing.assert_allclose(to_numpy(lp[:, 0]), to_numpy(d.log_prob(x)), rtol=1e-5, atol=1e-5)
    ee = e.expand((4, 3) + tuple(d.batch_shape))
    assert tuple(ee.batch_shape) == (4, 3) + tuple(d.batch_shape)
    assert tuple(ee.log_prob(x[:, None, None]).shape) == (2, 4, 3) + tuple(d.batch_shape)
    with pytest.raises((ValueError, RuntimeError)):
        e.expand((5,) + tuple(d.batch_shape))  # 3 cannot become 5


@pytest.mark.parametrize("name", NAMES)
def test_mask_and_to_event(host, name):
    d = build(host.front, host.be, name).expand((3,))
    x = host.sample(d, ())
    lp = to_numpy(d.log_prob(x))
    np.testing.assert_array_equal(to_numpy(d.mask(False).log_prob(x)), np.zeros(3))
    np.testing.assert_allclose(to_numpy(d.to_event(1).log_prob(x)), lp.sum(), rtol=1e-5)
    assert tuple(d.to_event(1).event_shape) == (3,) + tuple(d.event_shape)


@pytest.mark.parametrize("name", NAMES)
def test_plate_and_predictive(host, name):
    """Inside a plate the site is expanded natively; ``Predictive`` draws with the shapes the
    host gives every distribution."""
    d = build(host.front, host.be, name)
    if host.be.name == "torch":
        import pyro
        from pyro.infer import Predictive

        def model():
            with pyro.plate("n", 4):
                pyro.sample("x", d)

        host.be.torch.manual_seed(0)
        out = Predictive(model, num_samples=2)()["x"]
    else:
        import numpyro
        from numpyro.infer import Predictive

        def model():
            with numpyro.plate("n", 4):
                numpyro.sample("x", d)

        out = Predictive(model, num_samples=2)(host.be.jax.random.PRNGKey(0))["x"]
    assert tuple(out.shape) == (2, 4) + tuple(d.event_shape)


@pytest.mark.parametrize("name", NAMES)
def test_pytree_jit_or_pickle(host, name):
    """NumPyro: a pytree (flatten/unflatten) whose ``log_prob`` is the same under ``jit``, with the
    distribution passed as an argument. Pyro: survives pickling (multiprocessing relies on it)."""
    d = build(host.front, host.be, name)
    x = host.sample(d, (2,))
    lp = to_numpy(d.log_prob(x))
    if host.be.name == "torch":
        back = pickle.loads(pickle.dumps(d))  # our own object, in memory: a host contract
        np.testing.assert_allclose(to_numpy(back.log_prob(x)), lp, rtol=1e-6)
        return
    import jax

    leaves, tree = jax.tree_util.tree_flatten(d)
    back = jax.tree_util.tree_unflatten(tree, leaves)
    np.testing.assert_allclose(to_numpy(back.log_prob(x)), lp, rtol=1e-6)
    jitted = jax.jit(lambda dist, v: dist.log_prob(v))(d, x)
    np.testing.assert_allclose(to_numpy(jitted), lp, rtol=1e-5, atol=1e-5)
