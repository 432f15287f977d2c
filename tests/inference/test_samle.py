"""SA-MLE: the stochastic gradient matches the exact gradient; training raises the exact
log-likelihood; checkpoints resume exactly. Both backends."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_params

from ebm_ppl.inference.samle import SAConfig, init_chains, robbins_monro, sa_objective


def _nodes(fn, data):
    return {"v": {"type": "sample", "fn": fn, "value": data, "is_observed": True, "scale": None}}


def exact_and_sa_gradients(backend, w, b, c, data, num_chains, num_steps, seed, transition=None):
    """(exact gradient of mean log p(data), SA gradient) for W, b, c as numpy arrays."""
    cfg = SAConfig(num_steps, True, num_chains, transition)
    if backend.name == "torch":
        import torch

        from ebm_ppl.pyro import RBM

        torch.manual_seed(seed)
        params = [torch.tensor(a, requires_grad=True) for a in (w, b, c)]
        x = torch.as_tensor(data)
        d = RBM(*params)
        (-(d.log_prob(x).mean() - d.log_partition())).backward()
        exact = [p.grad.numpy().copy() for p in params]
        for p in params:
            p.grad = None
        nodes = _nodes(RBM(*params).expand((len(data),)), x)
        chains = init_chains(None, nodes, cfg)
        loss, _, _ = sa_objective(None, nodes, chains, cfg)
        loss.backward()
        return exact, [p.grad.numpy() for p in params]
    import jax
    import jax.numpy as jnp

    from ebm_ppl.numpyro import RBM

    params = tuple(jnp.asarray(a) for a in (w, b, c))
    x = jnp.asarray(data)
    exact = jax.grad(lambda p: -(RBM(*p).log_prob(x).mean() - RBM(*p).log_partition()))(params)
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    chains = init_chains(k1, _nodes(RBM(*params).expand((len(data),)), x), cfg)
    sa = jax.grad(
        lambda p: sa_objective(k2, _nodes(RBM(*p).expand((len(data),)), x), chains, cfg)[0]
    )(params)
    return [np.asarray(g) for g in exact], [np.asarray(g) for g in sa]


@pytest.mark.parametrize("seed", [0, 1])
def test_sa_gradient_matches_exact_gradient(backend, seed):
    rng = np.random.default_rng(seed)
    w, b, c = random_params(rng, 6, 4, scale=0.8)
    data = (rng.random((25, 6)) < 0.3).astype(np.float32)
    exact, sa = exact_and_sa_gradients(backend, w, b, c, data, 20000, 200, seed)
    # Monte Carlo error of E_model[v h] with 20000 independent chains is <= 0.5/sqrt(20000)
    # = 0.0035 per entry; 6 standard errors over the 34 entries keeps false alarms < 1e-6
    tol = 6 * 0.5 / np.sqrt(20000)
    for e, s in zip(exact, sa):
        np.testing.assert_allclose(s, e, atol=tol)
    # the tolerance is tight enough to tell apart the gradient of a slightly different model
    other, _ = exact_and_sa_gradients(backend, 1.2 * w, b, c, data, 10, 1, seed)
    assert max(np.abs(s - e).max() for s, e in zip(sa, other)) > 2 * tol


@pytest.mark.parametrize("kind", ["pt", "tt"])
def test_tempered_operators_give_the_exact_gradient(backend, kind):
    """SA gradients with parallel tempering / tempered transitions as the negative phase match
    the exact gradient (the ladder states are what the persistent chains carry)."""
    from ebm_ppl.inference.tempering import ParallelTempering, TemperedTransitions

    rng = np.random.default_rng(4)
    w, b, c = random_params(rng, 6, 4, scale=3.0)
    data = (rng.random((25, 6)) < 0.3).astype(np.float32)
    if kind == "pt":
        op, n = ParallelTempering(np.linspace(0.0, 1.0, 8)), 40
    else:
        op, n = TemperedTransitions(np.linspace(0.0, 1.0, 20)), 10
    exact, sa = exact_and_sa_gradients(backend, w, b, c, data, 10000, n, 4, transition=op)
    tol = 6 * 0.5 / np.sqrt(10000)
    for e, s in zip(exact, sa):
        np.testing.assert_allclose(s, e, atol=tol)


def test_transition_operator_checks():
    from ebm_ppl.inference.samle import check_config
    from ebm_ppl.inference.tempering import ParallelTempering

    with pytest.raises(ValueError, match="persistent"):
        check_config(1, False, None, ParallelTempering([0.5, 1.0]))
    with pytest.raises(TypeError, match="transition must be"):
        check_config(1, True, None, "pt")


def digits_data(n=400):
    from ebm_ppl.datasets import binarize, load_digits

    x, _ = load_digits("train")
    return binarize(x[:n])


def exact_mean_ll(backend, params, x) -> float:
    d = backend.RBM(*(backend.array(backend.np(p)) for p in params))
    return float(backend.np((d.log_prob(backend.array(x)) - d.log_partition()).mean()))


def train(backend, x, persistent, epochs=6, seed=0, **kw):
    if backend.name == "torch":
        import pyro
        import torch

        from ebm_ppl.pyro import RBM, SAMLE

        pyro.set_rng_seed(seed)

        def model(data):
            W = pyro.param("W", 0.01 * torch.randn(64, 16))
            b = pyro.param("b", torch.zeros(64))
            c = pyro.param("c", torch.zeros(16))
            with pyro.plate("data", data.shape[0]):
                pyro.sample("v", RBM(W, b, c), obs=data)

        trainer = SAMLE(
            model, pyro.optim.SGD({"lr": 0.05, "momentum": 0.5}), persistent=persistent, **kw
        )
        if len(x) == 0:
            trainer.run(x, num_epochs=epochs, batch_size=20, progress_bar=False)
        model(torch.as_tensor(x[:2]))
        before = [pyro.param(n).detach().clone() for n in "Wbc"]
        trainer.run(x, num_epochs=epochs, batch_size=20, progress_bar=False)
        return before, [pyro.param(n).detach() for n in "Wbc"], trainer
    import jax
    import jax.numpy as jnp
    import numpyro
    import optax

    from ebm_ppl.numpyro import RBM, SAMLE

    def model(data):
        W = numpyro.param("W", 0.01 * jax.random.normal(jax.random.PRNGKey(seed), (64, 16)))
        b = numpyro.param("b", jnp.zeros(64))
        c = numpyro.param("c", jnp.zeros(16))
        with numpyro.plate("data", data.shape[0]):
            numpyro.sample("v", RBM(W, b, c), obs=data)

    trainer = SAMLE(model, optax.sgd(0.05, momentum=0.5), persistent=persistent, **kw)
    key = jax.random.PRNGKey(seed)
    if len(x) == 0:
        trainer.run(key, x, num_epochs=epochs, batch_size=20, progress_bar=False)
    init = trainer.get_params(trainer.init(key, jnp.asarray(x[:20])))
    state = trainer.run(key, x, num_epochs=epochs, batch_size=20, progress_bar=False)
    p = trainer.get_params(state)
    return [init[n] for n in "Wbc"], [p[n] for n in "Wbc"], trainer


@pytest.mark.parametrize("persistent", [True, False], ids=["pcd", "cd1"])
def test_training_raises_exact_log_likelihood(backend, persistent):
    x = digits_data()
    before, after, trainer = train(backend, x, persistent)
    ll0, ll1 = exact_mean_ll(backend, before, x), exact_mean_ll(backend, after, x)
    # independent pixels fitted by maximum likelihood score about -30 nats here; an RBM that
    # learned anything beats the initial -44 by a wide margin
    assert ll0 < -40 and ll1 > ll0 + 12, (ll0, ll1)
    assert trainer.history and np.isfinite(trainer.history[-1]["recon_error"])


def test_robbins_monro_schedule():
    s = robbins_monro(2.0, 10.0)
    assert s(0) == pytest.approx(0.2) and s(10) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        robbins_monro(0.0, 1.0)


def test_pyro_lr_schedule_and_subsampling():
    import pyro
    import torch

    from ebm_ppl.pyro import RBM, SAMLE

    x = torch.as_tensor(digits_data(200))

    def model(data):
        W = pyro.param("W", 0.01 * torch.randn(64, 8))
        b = pyro.param("b", torch.zeros(64))
        c = pyro.param("c", torch.zeros(8))
        with pyro.plate("data", data.shape[0], subsample_size=20) as idx:
            pyro.sample("v", RBM(W, b, c), obs=data[idx])

    trainer = SAMLE(model, pyro.optim.SGD({"lr": 1.0}), lr_schedule=robbins_monro(1.0, 10.0))
    stats = [trainer.step(x) for _ in range(3)]
    lrs = [g["lr"] for o in trainer.optim.optim_objs.values() for g in o.param_groups]
    assert lrs and all(lr == pytest.approx(1.0 / 12.0) for lr in lrs)
    assert trainer.chains["v"].shape == (20, 64)  # one chain per data point of a batch
    assert all(np.isfinite(s["loss"]) for s in stats)


def test_numpyro_robbins_monro_through_optax():
    import jax
    import jax.numpy as jnp
    import numpyro
    import optax

    from ebm_ppl.numpyro import RBM, SAMLE

    def model(data):
        W = numpyro.param("W", jnp.zeros((64, 8)))
        b = numpyro.param("b", jnp.zeros(64))
        c = numpyro.param("c", jnp.zeros(8))
        with numpyro.plate("data", data.shape[0]):
            numpyro.sample("v", RBM(W, b, c), obs=data)

    x = jnp.asarray(digits_data(40))
    trainer = SAMLE(model, optax.sgd(robbins_monro(1.0, 10.0)), num_chains=10)
    state = trainer.init(jax.random.PRNGKey(0), x)
    state, stats = trainer.update(state, x)
    assert int(state.optim_state[0]) == 1 and state.chains["v"].shape == (10, 64)
    # first SGD step with lr = 1/10: b moves by 0.1 * (mean data - mean chains)
    b = trainer.get_params(state)["b"]
    assert float(jnp.abs(b).max()) <= 0.1 + 1e-6 and float(jnp.abs(b).max()) > 0


def test_resume_from_checkpoint_is_exact(backend, tmp_path):
    x = digits_data(100)
    path = tmp_path / "ckpt"
    if backend.name == "torch":
        import pyro
        import torch

        from ebm_ppl.pyro import RBM, SAMLE

        def model(data):
            W = pyro.param("W", 0.01 * torch.randn(64, 8))
            b = pyro.param("b", torch.zeros(64))
            c = pyro.param("c", torch.zeros(8))
            with pyro.plate("data", data.shape[0]):
                pyro.sample("v", RBM(W, b, c), obs=data)

        def make():
            return SAMLE(model, pyro.optim.SGD({"lr": 0.05, "momentum": 0.9}))

        pyro.set_rng_seed(0)
        t = make()
        t.run(x, num_epochs=2, batch_size=25, progress_bar=False)
        straight = pyro.param("W").detach().clone()
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        t = make()
        t.run(x, num_epochs=1, batch_size=25, progress_bar=False)
        t.save(path)
        pyro.clear_param_store()
        torch.manual_seed(123)  # the checkpoint restores the RNG state
        t2 = make().load(path)
        t2.run(x, num_epochs=2, batch_size=25, progress_bar=False)
        assert t2.num_steps == 8
        assert torch.equal(pyro.param("W").detach(), straight)
        return
    import jax
    import jax.numpy as jnp
    import numpyro
    import optax

    from ebm_ppl.numpyro import RBM, SAMLE

    def model(data):
        W = numpyro.param("W", 0.01 * jax.random.normal(jax.random.PRNGKey(0), (64, 8)))
        b = numpyro.param("b", jnp.zeros(64))
        c = numpyro.param("c", jnp.zeros(8))
        with numpyro.plate("data", data.shape[0]):
            numpyro.sample("v", RBM(W, b, c), obs=data)

    def make():
        return SAMLE(model, optax.sgd(0.05, momentum=0.9))

    key = jax.random.PRNGKey(0)
    t0 = make()
    straight = t0.get_params(t0.run(key, x, num_epochs=2, batch_size=25, progress_bar=False))
    t = make()
    half = t.run(key, x, num_epochs=1, batch_size=25, progress_bar=False)
    t.save(path, half)
    t2 = make()
    restored = t2.load(path, jax.random.PRNGKey(99), jnp.asarray(x[:25]))
    resumed = t2.run(key, x, num_epochs=2, batch_size=25, progress_bar=False, init_state=restored)
    assert int(resumed.optim_state[0]) == 8
    np.testing.assert_array_equal(t2.get_params(resumed)["W"], straight["W"])
    # a state handed to a fresh trainer (e.g. one with more Gibbs steps) continues as well
    t3 = make()
    handed = t3.run(key, x, num_epochs=2, batch_size=25, progress_bar=False, init_state=half)
    np.testing.assert_array_equal(t3.get_params(handed)["W"], straight["W"])


def test_bad_training_input(backend):
    x = digits_data(50)
    bad = x.copy()
    bad[0, 0] = 0.5
    with pytest.raises(ValueError, match="binary"):
        train(backend, bad, True, epochs=1)
    with pytest.raises(ValueError, match="empty"):
        train(backend, x[:0], True, epochs=1)
    with pytest.raises(ValueError, match="num_gibbs_steps"):
        train(backend, x, True, epochs=1, num_gibbs_steps=0)
    with pytest.raises(ValueError, match="num_chains"):
        train(backend, x, False, epochs=1, num_chains=5)


def test_bad_optimizer_and_model():
    import optax
    import pyro
    import torch

    from ebm_ppl.numpyro import SAMLE as NSAMLE
    from ebm_ppl.pyro import RBM, SAMLE

    with pytest.raises(TypeError, match="optim"):
        SAMLE(lambda x: None, torch.optim.SGD)
    with pytest.raises(TypeError, match="optim"):
        NSAMLE(lambda x: None, "adam")
    assert NSAMLE(lambda x: None, optax.adam(1e-3)) is not None

    def no_obs(data):
        W = pyro.param("W", torch.zeros(4, 2))
        pyro.sample("v", RBM(W, torch.zeros(4), torch.zeros(2)))

    with pytest.raises(ValueError, match="no observed energy site"):
        SAMLE(no_obs, pyro.optim.SGD({"lr": 0.1})).step(torch.zeros(3, 4))


def gaussian_gradients(backend, params, data, num_chains, num_steps, seed):
    """(exact, SA) gradients of the mean log-likelihood of a GaussianRBM, for W, b, c, sigma."""
    cfg = SAConfig(num_gibbs_steps=num_steps, persistent=True, num_chains=num_chains)
    if backend.name == "torch":
        import torch

        from ebm_ppl.pyro import GaussianRBM

        torch.manual_seed(seed)
        p = [torch.tensor(a, requires_grad=True) for a in params]
        x = torch.as_tensor(data)
        d = GaussianRBM(*p)
        (-(d.log_prob(x).mean() - d.log_partition())).backward()
        exact = [q.grad.numpy().copy() for q in p]
        for q in p:
            q.grad = None
        nodes = _nodes(GaussianRBM(*p).expand((len(data),)), x)
        loss, _, _ = sa_objective(None, nodes, init_chains(None, nodes, cfg), cfg)
        loss.backward()
        return exact, [q.grad.numpy() for q in p]
    import jax
    import jax.numpy as jnp

    from ebm_ppl.numpyro import GaussianRBM

    p = tuple(jnp.asarray(a) for a in params)
    x = jnp.asarray(data)

    def nll(q):
        return -(GaussianRBM(*q).log_prob(x).mean() - GaussianRBM(*q).log_partition())

    exact = jax.grad(nll)(p)
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    chains = init_chains(k1, _nodes(GaussianRBM(*p).expand((len(data),)), x), cfg)
    sa = jax.grad(
        lambda q: sa_objective(k2, _nodes(GaussianRBM(*q).expand((len(data),)), x), chains, cfg)[0]
    )(p)
    return [np.asarray(g) for g in exact], [np.asarray(g) for g in sa]


@pytest.mark.parametrize("seed", [0, 1])
def test_gaussian_sa_gradient_matches_exact_gradient(backend, seed):
    from conftest import exact_mixture, gparams

    rng = np.random.default_rng(seed)
    w, b, c, s = gparams(rng, 4, 3, scale=0.6)
    data = (rng.standard_normal((25, 4)) + b).astype(np.float32)
    n = 20000
    exact, sa = gaussian_gradients(backend, (w, b, c, s), data, n, 100, seed)
    # per-chain statistics of the negative phase: v_i h_j / s_i (dW), (v_i - b_i) / s_i^2 (db),
    # h_j (dc); their standard deviations are bounded by the root second moments below
    ph, means = exact_mixture(w, b, c, s)
    s64 = s.astype(np.float64)
    ev2 = ph @ (means**2) + s64**2
    evb2 = ph @ ((means - b) ** 2) + s64**2
    bound = [
        np.sqrt(ev2)[:, None] / s64[:, None] * np.ones((1, 3)),
        np.sqrt(evb2) / s64**2,
        np.full(3, 0.5),
    ]
    for e, g, sd in zip(exact[:3], sa[:3], bound):
        np.testing.assert_array_less(np.abs(g - e), 6 * sd / np.sqrt(n))
    # dsigma: no simple bound is used; it agrees to a looser, relative tolerance
    np.testing.assert_allclose(sa[3], exact[3], rtol=0.1, atol=0.05)


def test_gaussian_training_with_learned_sigma_raises_exact_log_likelihood(backend):
    from conftest import exact_log_z_gaussian

    from ebm_ppl.datasets import load_digits

    x, _ = load_digits("train")
    x = ((x[:300] - x[:300].mean(0)) / (x[:300].std(0) + 0.5)).astype(np.float32)
    rng = np.random.default_rng(0)
    w0 = (0.01 * rng.standard_normal((64, 6))).astype(np.float32)

    def exact_ll(w, b, c, s):
        lp = backend.np(
            backend.GaussianRBM(*(backend.array(a) for a in (w, b, c, s))).log_prob(
                backend.array(x)
            )
        )
        return float(lp.mean() - exact_log_z_gaussian(w, b, c, s))

    if backend.name == "torch":
        import pyro
        import torch
        from pyro.distributions import constraints

        from ebm_ppl.pyro import SAMLE, GaussianRBM

        pyro.clear_param_store()
        pyro.set_rng_seed(0)

        def model(data):
            W = pyro.param("W", torch.as_tensor(w0))
            b = pyro.param("b", torch.zeros(64))
            c = pyro.param("c", torch.zeros(6))
            s = pyro.param("s", torch.full((64,), 2.0), constraint=constraints.positive)
            with pyro.plate("data", data.shape[0]):
                pyro.sample("v", GaussianRBM(W, b, c, s), obs=data)

        trainer = SAMLE(model, pyro.optim.SGD({"lr": 0.01, "momentum": 0.5}))
        trainer.run(torch.as_tensor(x), num_epochs=15, batch_size=30, progress_bar=False)
        after = [pyro.param(n).detach().numpy() for n in ("W", "b", "c", "s")]
    else:
        import jax
        import jax.numpy as jnp
        import numpyro
        import optax
        from numpyro.distributions import constraints

        from ebm_ppl.numpyro import SAMLE, GaussianRBM

        def model(data):
            W = numpyro.param("W", jnp.asarray(w0))
            b = numpyro.param("b", jnp.zeros(64))
            c = numpyro.param("c", jnp.zeros(6))
            s = numpyro.param("s", jnp.full((64,), 2.0), constraint=constraints.positive)
            with numpyro.plate("data", data.shape[0]):
                numpyro.sample("v", GaussianRBM(W, b, c, s), obs=data)

        trainer = SAMLE(model, optax.sgd(0.01, momentum=0.5))
        state = trainer.run(
            jax.random.PRNGKey(0), x, num_epochs=15, batch_size=30, progress_bar=False
        )
        after = [np.asarray(v) for v in trainer.get_params(state).values()]
        after = [dict(zip(trainer.get_params(state), after))[n] for n in ("W", "b", "c", "s")]
    before = exact_ll(w0, np.zeros(64, np.float32), np.zeros(6, np.float32), np.full(64, 2.0))
    ll = exact_ll(*after)
    assert np.all(after[3] > 0) and np.abs(after[3] - 2.0).max() > 0.1  # sigma was learned
    assert ll > before + 10, (before, ll)


# ---- Pyro: the model is traced once per structure -------------------------------------


def _counting_rbm_model(calls, n_vis=64, n_hid=8, extra=None):
    import pyro
    import torch

    from ebm_ppl.pyro import RBM

    def model(data, scale=None):
        calls.append(tuple(data.shape))
        W = pyro.param("W", torch.full((n_vis, n_hid), 0.01))
        b = pyro.param("b", torch.zeros(n_vis))
        c = pyro.param("c", torch.zeros(n_hid))
        if extra is not None:
            W = extra(W)
        with pyro.plate("data", data.shape[0]):
            pyro.sample("v", RBM(W, b, c), obs=data)

    return model


def test_pyro_samle_traces_once_per_epoch_not_per_update():
    import pyro
    import torch

    from ebm_ppl.pyro import SAMLE

    x = torch.as_tensor(digits_data(200))
    counts = []
    for batch_size in (100, 20):  # 2 and 10 updates per epoch
        pyro.clear_param_store()
        calls: list = []
        trainer = SAMLE(_counting_rbm_model(calls), pyro.optim.SGD({"lr": 0.05}))
        trainer.run(x, num_epochs=3, batch_size=batch_size, progress_bar=False)
        assert trainer.num_steps == 3 * 200 // batch_size
        counts.append(len(calls))
    assert counts[0] == counts[1]  # model calls do not grow with the number of updates
    assert counts[1] < 3 * 10


def test_pyro_samle_fast_path_is_bit_identical_to_retracing():
    """Reusing the traced distributions gives exactly the updates of tracing every time,
    through batch-shape changes (a re-trace) and a parameter replaced in the store."""
    import pyro
    import torch

    from ebm_ppl.pyro import SAMLE

    x = torch.as_tensor(digits_data(120))
    batches = [x[:20], x[20:40], x[40:47], x[47:54], x[54:74], x[74:94]]
    results = []
    for retrace in (True, False):
        pyro.clear_param_store()
        torch.manual_seed(3)
        calls: list = []
        trainer = SAMLE(
            _counting_rbm_model(calls),
            pyro.optim.SGD({"lr": 0.1, "momentum": 0.5}),
            num_gibbs_steps=2,
            num_chains=20,
            retrace=retrace,
        )
        losses = []
        for i, xb in enumerate(batches):
            if i == 4:  # replace a parameter: the next update must train the new tensor
                store = pyro.get_param_store()
                store["c"] = torch.full((8,), 0.25)
                new_c = store._params["c"]
            losses.append(trainer.step(xb)["loss"])
        assert not torch.equal(new_c.detach(), torch.full((8,), 0.25))
        store = pyro.get_param_store()
        results.append(
            (losses, {k: store[k].detach().clone() for k in ("W", "b", "c")}, len(calls))
        )
    (l_slow, p_slow, n_slow), (l_fast, p_fast, n_fast) = results
    assert l_slow == l_fast
    assert all(torch.equal(p_slow[k], p_fast[k]) for k in p_slow)
    assert n_fast < n_slow


def test_pyro_samle_traces_models_that_do_not_qualify():
    """A distribution holding a tensor derived from a parameter is rebuilt every update."""
    import pyro
    import torch

    from ebm_ppl.pyro import SAMLE

    x = torch.as_tensor(digits_data(60))
    calls: list = []
    pyro.clear_param_store()
    trainer = SAMLE(
        _counting_rbm_model(calls, extra=lambda w: 2.0 * w), pyro.optim.SGD({"lr": 0.05})
    )
    for i in range(3):
        trainer.step(x[20 * i : 20 * i + 20])
    assert len(calls) >= 3


def test_pyro_samle_run_device_and_moving_parameters():
    """``run(device=...)`` trains where it is told; moving the parameters, their optimizer
    state and the chains to new tensors mid-training changes nothing."""
    import pyro
    import torch

    from ebm_ppl.pyro import SAMLE

    x = digits_data(80)
    finals = []
    for move in (False, True):
        pyro.clear_param_store()
        torch.manual_seed(1)
        trainer = SAMLE(
            _counting_rbm_model([]), pyro.optim.SGD({"lr": 0.1, "momentum": 0.9}), num_chains=20
        )
        trainer.run(x, num_epochs=1, batch_size=20, progress_bar=False, device="cpu")
        if move:  # as a move to another device does, with new tensors on this one
            store = pyro.get_param_store()
            before = {k: store._params[k] for k in ("W", "b", "c")}
            chains = trainer.chains["v"]
            trainer._place(torch.device("cpu"), torch.as_tensor(x), (), {}, copy=True)
            assert all(store._params[k] is not before[k] for k in before)
            assert trainer.chains["v"] is not chains
        trainer.run(x, num_epochs=3, batch_size=20, progress_bar=False, device="cpu")
        store = pyro.get_param_store()
        assert store["W"].device == torch.device("cpu")
        finals.append({k: store[k].detach().clone() for k in ("W", "b", "c")})
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])
    with pytest.raises(ValueError, match="device must be a torch device"):
        trainer.run(x, num_epochs=4, batch_size=20, progress_bar=False, device="gpu0")


def _rewrite(path, drop=None, transpose=None):
    """The checkpoint at ``path`` again, without entry ``drop`` or with entry ``transpose``
    transposed (as a damaged or mismatched file would be)."""
    from ebm_ppl.io import load_checkpoint, save_checkpoint

    tensors, config = load_checkpoint(path)
    if drop is not None:
        del tensors[drop]
    if transpose is not None:
        tensors[transpose] = np.ascontiguousarray(tensors[transpose].T)
    return save_checkpoint(path, tensors, config)


def _rbm_model(backend):
    """``model(data)``: a 6-3 binary RBM site with parameters W, b, c, in either backend."""
    w0, b0, c0 = random_params(np.random.default_rng(1), 6, 3)
    if backend.name == "torch":
        import pyro
        import torch

        from ebm_ppl.pyro import RBM

        def model(data):
            W = pyro.param("W", torch.tensor(w0))  # copies: the updates are in place
            b = pyro.param("b", torch.tensor(b0))
            c = pyro.param("c", torch.tensor(c0))
            with pyro.plate("data", data.shape[0]):
                pyro.sample("v", RBM(W, b, c), obs=data)

        return model
    import jax.numpy as jnp
    import numpyro

    from ebm_ppl.numpyro import RBM

    def model(data):
        W = numpyro.param("W", jnp.asarray(w0))
        b = numpyro.param("b", jnp.asarray(b0))
        c = numpyro.param("c", jnp.asarray(c0))
        with numpyro.plate("data", data.shape[0]):
            numpyro.sample("v", RBM(W, b, c), obs=data)

    return model


@pytest.mark.parametrize(
    "damage, match",
    [
        ("param", "holds no parameter"),
        ("chains", "persistent chains"),
        ("rng", "has no 'rng/"),
        (
            "transposed",
            r"'W': this model has shape \(6, 3\) but .* holds shape \(3, 6\) \(transposed\?\)",
        ),
    ],
)
def test_load_refuses_a_checkpoint_that_does_not_fit(backend, tmp_path, damage, match):
    """SAMLE.load never re-initialises a parameter or restarts chains in silence: a missing
    parameter, missing persistent chains, a missing generator state or transposed weights
    are refused with a ValueError that names them (Pyro: at load with a batch, else at the
    first update)."""
    x = (np.random.default_rng(0).random((8, 6)) < 0.5).astype(np.float32)
    path = tmp_path / "ckpt.safetensors"
    model = _rbm_model(backend)
    if backend.name == "torch":
        import pyro
        import torch

        from ebm_ppl.pyro import SAMLE

        def make():
            return SAMLE(model, pyro.optim.SGD({"lr": 0.05}), persistent=True, num_chains=4)

        pyro.clear_param_store()
        t = make()
        t.run(x, num_epochs=1, batch_size=4, progress_bar=False)
        t.save(path)
        entry = {"param": "param/c", "chains": "chains/v", "rng": "rng/torch"}.get(damage)
        _rewrite(path, drop=entry, transpose="param/W" if damage == "transposed" else None)
        batch = torch.as_tensor(x[:4])
        for eager in (True, False):
            pyro.clear_param_store()
            with pytest.raises(ValueError, match=match):
                t2 = make()
                t2.load(path, batch) if eager else t2.load(path)
                t2.step(batch)
        return
    import jax
    import jax.numpy as jnp
    import optax

    from ebm_ppl.numpyro import SAMLE

    def make():
        return SAMLE(model, optax.sgd(0.05), persistent=True, num_chains=4)

    key = jax.random.PRNGKey(0)
    t = make()
    t.save(path, t.run(key, jnp.asarray(x), num_epochs=1, batch_size=4, progress_bar=False))
    from ebm_ppl.io import load_checkpoint

    names = sorted(load_checkpoint(path)[0])
    w_entry = next(n for n in names if n.startswith("optim/") and "W" in n)
    c_entry = next(n for n in names if n.startswith("optim/") and n.endswith("c"))
    entry = {"param": c_entry, "chains": "chains/v", "rng": "rng/key"}.get(damage)
    _rewrite(path, drop=entry, transpose=w_entry if damage == "transposed" else None)
    if damage in ("param", "transposed"):  # the parameters live in the optimizer state
        match = "does not fit this trainer's parameters and optimizer state"
    with pytest.raises(ValueError, match=match):
        make().load(path, jax.random.PRNGKey(1), jnp.asarray(x[:4]))


def _small_trainer(backend, lr=0.05):
    """``(run(x, **kw) -> None, trainer)`` for the 6-3 RBM of :func:`_rbm_model` in either
    backend, the state carried between calls of ``run`` (NumPyro: as ``init_state``)."""
    model = _rbm_model(backend)
    if backend.name == "torch":
        import pyro

        from ebm_ppl.pyro import SAMLE

        pyro.clear_param_store()
        t = SAMLE(model, pyro.optim.SGD({"lr": lr}))
        return lambda x, **kw: t.run(x, progress_bar=False, **kw), t
    import jax
    import jax.numpy as jnp
    import optax

    from ebm_ppl.numpyro import SAMLE

    t = SAMLE(model, optax.sgd(lr))
    held = {"state": None}

    def run(x, **kw):
        held["state"] = t.run(
            jax.random.PRNGKey(0),
            jnp.asarray(x),
            progress_bar=False,
            init_state=held["state"],
            **kw,
        )

    return run, t


def test_run_semantics_are_explicit(backend):
    """num_epochs is the total (a second call with nothing left warns); the batch size cannot
    change under a trainer's update count; data never used (shuffle=False, a batch size that
    does not divide n) warns. Alike in both backends."""
    x = (np.random.default_rng(0).random((10, 6)) < 0.5).astype(np.float32)
    run, _ = _small_trainer(backend)
    run(x, num_epochs=2, batch_size=5)
    with pytest.warns(UserWarning, match="nothing to train: num_epochs=2 is the total"):
        run(x, num_epochs=2, batch_size=5)
    with pytest.raises(ValueError, match="were made with batch_size=5"):
        run(x, num_epochs=3, batch_size=2)
    run(x, num_epochs=3, batch_size=5)  # the same batch size continues
    run, _ = _small_trainer(backend)
    with pytest.warns(UserWarning, match="the last 1 of the 10 examples are never used"):
        run(x, num_epochs=1, batch_size=3, shuffle=False)
    with pytest.raises(ValueError, match="num_epochs must be an int"):
        run(x, num_epochs=1.5, batch_size=5)


@pytest.mark.parametrize("lr, outcome", [(1e6, "warns"), (float("nan"), "stops")])
def test_diverging_training_warns_or_stops(backend, lr, outcome):
    """A learning rate far too large: parameters beyond 1e4 warn (once); non-finite
    parameters (here from a NaN learning rate) stop the run with a FloatingPointError naming
    the parameter."""
    x = (np.random.default_rng(0).random((10, 6)) < 0.5).astype(np.float32)
    run, _ = _small_trainer(backend, lr=lr)
    if outcome == "warns":
        with pytest.warns(RuntimeWarning, match="probably diverging; lower the learning rate"):
            run(x, num_epochs=2, batch_size=5)
    else:
        with pytest.raises(FloatingPointError, match="diverged in epoch 0: parameter '"):
            run(x, num_epochs=2, batch_size=5)
