"""Contracts every RBM-family distribution shares, checked for each member and backend:
save/load round trip, arviz conversion of BlockGibbs runs, lazy expand, and jit round trip."""

from __future__ import annotations

import numpy as np
import pytest

from ebm_ppl import diagnostics
from ebm_ppl.io import load_model, save_model
from ebm_ppl.ops import to_numpy

MODELS = {
    "RBM": (lambda r: (r.normal(size=(5, 3)), r.normal(size=5), r.normal(size=3)), {}),
    "GaussianRBM": (
        lambda r: (r.normal(size=(5, 3)), r.normal(size=5), r.normal(size=3), r.uniform(0.5, 1, 5)),
        {},
    ),
    "ReplicatedSoftmax": (
        lambda r: (r.normal(size=(5, 3)), r.normal(size=5), 0.1 * r.normal(size=3)),
        {"total_count": 6.0},
    ),
    "CategoricalRBM": (
        lambda r: (r.normal(size=(5, 3, 3)), r.normal(size=(5, 3)), r.normal(size=3)),
        {},
    ),
}


def build(backend, name, seed=0):
    import ebm_ppl.numpyro as jfront
    import ebm_ppl.pyro as tfront

    front = tfront if backend.name == "torch" else jfront
    params, kw = MODELS[name]
    arrays = [backend.array(0.5 * p) for p in params(np.random.default_rng(seed))]
    return getattr(front, name)(*arrays, **kw), arrays


@pytest.mark.parametrize("name", sorted(MODELS))
def test_save_load_round_trip(backend, name, tmp_path):
    d, _ = build(backend, name)
    path = save_model(tmp_path / name, d, note="round trip")
    x = np.array(to_numpy(d.init_chain(backend.key(0), (4, 5))))
    for target in ("torch", "jax"):
        back = load_model(path, backend=target)
        assert type(back).__name__ == name
        if name == "ReplicatedSoftmax":  # the document length is not a parameter
            back = back.with_total_count(6)
        from conftest import Backend

        be = Backend(target)
        np.testing.assert_allclose(
            to_numpy(back.log_prob(be.array(x))), to_numpy(d.log_prob(backend.array(x))), rtol=1e-5
        )
        np.testing.assert_allclose(
            to_numpy(back.log_partition()), to_numpy(d.log_partition()), rtol=1e-5
        )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_block_gibbs_runs_convert_to_arviz(backend, name):
    d, _ = build(backend, name)
    if backend.name == "torch":
        import pyro
        from pyro.infer import MCMC

        from ebm_ppl.pyro import BlockGibbs

        def model():
            with pyro.plate("chains", 3):
                pyro.sample("v", d)

        mcmc = MCMC(
            BlockGibbs(model), num_samples=30, warmup_steps=5, num_chains=2, disable_progbar=True
        )
        pyro.set_rng_seed(0)
        mcmc.run()
    else:
        import jax
        import numpyro
        from numpyro.infer import MCMC

        from ebm_ppl.numpyro import BlockGibbs

        def model():
            with numpyro.plate("chains", 3):
                numpyro.sample("v", d)

        mcmc = MCMC(
            BlockGibbs(model), num_warmup=5, num_samples=30, num_chains=2, progress_bar=False
        )
        mcmc.run(jax.random.PRNGKey(0), extra_fields=("free_energy",))
    idata = diagnostics.to_arviz(mcmc)
    fe = np.asarray(idata.posterior["free_energy_v"])
    assert fe.shape == (2, 30) and np.isfinite(fe).all()


def test_numpyro_distributions_cross_jit():
    import jax
    from conftest import Backend

    be = Backend("jax")
    for name in MODELS:
        d, _ = build(be, name)
        x = d.init_chain(be.key(1), (2, 5))
        out = jax.jit(lambda dist, v: dist.log_prob(v))(d, x)
        np.testing.assert_allclose(np.asarray(out), np.asarray(d.log_prob(x)), rtol=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_infer_shapes_matches_an_instance(backend, name):
    """The hosts' infer_shapes (shapes in, (batch_shape, event_shape) out, no arrays) agrees
    with an instance built from parameters of those shapes, batched ones included."""
    import ebm_ppl.numpyro as jfront
    import ebm_ppl.pyro as tfront

    cls = getattr(tfront if backend.name == "torch" else jfront, name)
    params, kw = MODELS[name]
    raw = list(params(np.random.default_rng(0)))
    raw[0] = np.broadcast_to(raw[0], (2,) + raw[0].shape)  # a batch of 2 weight matrices
    arrays = [backend.array(np.ascontiguousarray(0.5 * p)) for p in raw]
    d = cls(*arrays, **kw)
    import inspect

    names = [p for p in inspect.signature(cls.infer_shapes).parameters if p != "_"]
    shapes = dict(zip(names, (tuple(a.shape) for a in arrays)))  # the constructor's order
    assert cls.infer_shapes(**shapes) == (tuple(d.batch_shape), tuple(d.event_shape))


def test_dbm_infer_shapes_matches_an_instance_and_refuses_bad_layers(backend):
    """DBM.infer_shapes takes lists of layer shapes; it agrees with an instance (before and
    after ``expand``'s batch) and refuses layers that do not chain."""
    import ebm_ppl.numpyro as jfront
    import ebm_ppl.pyro as tfront

    cls = (tfront if backend.name == "torch" else jfront).DBM
    rng = np.random.default_rng(0)
    sizes = (5, 3, 2)
    w = [backend.array(rng.normal(size=s)) for s in zip(sizes[:-1], sizes[1:])]
    b = [backend.array(rng.normal(size=n)) for n in sizes]
    d = cls(w, b)
    shapes = {"weights": [tuple(x.shape) for x in w], "biases": [tuple(x.shape) for x in b]}
    assert cls.infer_shapes(**shapes) == (tuple(d.batch_shape), tuple(d.event_shape)) == ((), (10,))
    assert tuple(d.expand((4,)).event_shape) == cls.infer_shapes(**shapes)[1]
    with pytest.raises(ValueError, match="infer_shapes"):
        cls.infer_shapes(weights=[(5, 3), (2, 2)], biases=[(5,), (3,), (2,)])
