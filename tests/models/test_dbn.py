"""DBN math against exact enumeration of a tiny network (both backends)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ebm_ppl.models.dbn import DBNParams, check_dbn, log_joint, recognize, variational_bound


def states(n):
    return np.array(list(itertools.product([0, 1], repeat=n)), dtype=np.float32)


def tiny(rng, sizes, scale=1.0):
    ws = [
        (scale * rng.standard_normal((a, b))).astype(np.float32) for a, b in zip(sizes, sizes[1:])
    ]
    down = [(0.5 * rng.standard_normal(a)).astype(np.float32) for a in sizes[:-1]]
    up = [(0.5 * rng.standard_normal(b)).astype(np.float32) for b in sizes[1:]]
    return ws, down, up


def as_params(backend, ws, down, up):
    arr = backend.array
    return DBNParams(tuple(map(arr, ws)), tuple(map(arr, down)), tuple(map(arr, up)))


def top_log_z(backend, params):
    rbm = backend.RBM(params.weights[-1], params.down_biases[-1], params.up_biases[-1])
    return float(backend.np(rbm.log_partition()))


def exact_log_p(backend, params, sizes, log_z):
    """log P(v) for every v by summing the joint over h^1..h^(L-1)."""
    vs = states(sizes[0])
    hidden_states = [states(n) for n in sizes[1:-1]]
    out = []
    for v in vs:
        terms = []
        for hs in itertools.product(*hidden_states):
            lj = log_joint(params, backend.array(v), [backend.array(h) for h in hs], log_z)
            terms.append(float(backend.np(lj)))
        terms = np.array(terms, np.float64)
        m = terms.max()
        out.append(m + np.log(np.exp(terms - m).sum()))
    return vs, np.array(out)


@pytest.mark.parametrize("seed", [0, 1])
def test_joint_is_normalized(backend, seed):
    sizes = (3, 3, 2, 2)
    params = as_params(backend, *tiny(np.random.default_rng(seed), sizes, scale=1.5))
    check_dbn(*params)
    log_z = top_log_z(backend, params)
    _, lp = exact_log_p(backend, params, sizes, log_z)
    assert np.exp(lp).sum() == pytest.approx(1.0, abs=1e-5)


def exact_bound(backend, params, v, log_z, with_variance=False):
    """E_Q[log P(v, h^1) - log Q(h^1 | v)] (= E_Q[log P] + H(Q)) for a 2-layer DBN, by
    enumerating h^1; optionally also its variance under Q (for Monte Carlo tolerances)."""
    import math

    from ebm_ppl.models.dbn import up_logits

    logits = backend.np(up_logits(params, 1, backend.array(v))).astype(np.float64)
    q = 1 / (1 + np.exp(-logits))
    weights, terms = [], []
    for h in states(len(q)):
        qh = float(np.prod(np.where(h > 0, q, 1 - q)))
        if qh == 0:
            continue
        lj = float(backend.np(log_joint(params, backend.array(v), [backend.array(h)], log_z)))
        weights.append(qh)
        terms.append(lj - math.log(qh))
    weights, terms = np.array(weights), np.array(terms)
    mean = float((weights * terms).sum())
    if with_variance:
        return mean, float((weights * (terms - mean) ** 2).sum())
    return mean


@pytest.mark.parametrize("seed", [0, 1])
def test_bound_below_log_likelihood_and_tight_for_tied_weights(backend, seed):
    rng = np.random.default_rng(10 + seed)
    sizes = (4, 3, 3)
    ws, down, up = tiny(rng, sizes, scale=1.2)
    params = as_params(backend, ws, down, up)
    log_z = top_log_z(backend, params)
    vs, lp = exact_log_p(backend, params, sizes, log_z)
    for v, exact in zip(vs, lp):
        assert exact_bound(backend, params, v, log_z) <= exact + 1e-5
    # tied weights: top RBM = first RBM flipped, so P(v) is the first RBM's and Q is exact
    tied = as_params(backend, [ws[0], ws[0].T.copy()], [down[0], up[0]], [up[0], down[0]])
    log_z = top_log_z(backend, tied)
    vs, lp = exact_log_p(backend, tied, sizes, log_z)
    rbm = backend.RBM(*(backend.array(a) for a in (ws[0], down[0], up[0])))
    rbm_lp = backend.np(rbm.log_prob(backend.array(vs)) - rbm.log_partition())
    np.testing.assert_allclose(lp, rbm_lp, atol=1e-4)
    for v, exact in zip(vs, lp):
        assert exact_bound(backend, tied, v, log_z) == pytest.approx(exact, abs=1e-4)


def test_monte_carlo_bound_matches_its_expectation(backend):
    rng = np.random.default_rng(3)
    sizes = (4, 3, 3)
    params = as_params(backend, *tiny(rng, sizes))
    log_z = top_log_z(backend, params)
    v = np.array([1, 0, 1, 1], np.float32)
    n = 20000
    x = backend.array(np.tile(v, (n, 1)))
    est = backend.np(variational_bound(backend.key(0), params, x, log_z))
    exact = exact_bound(backend, params, v, log_z)
    assert abs(est.mean() - exact) < 5 * est.std() / np.sqrt(n)
    hs = recognize(backend.key(1), params, x, deterministic=True)
    assert len(hs) == 1 and tuple(hs[0].shape) == (n, 3)


def test_bad_stacks():
    import torch

    w = [torch.zeros(4, 3), torch.zeros(2, 2)]
    with pytest.raises(ValueError, match=r"weights\[1\] must have shape"):
        check_dbn(w, [torch.zeros(4), torch.zeros(3)], [torch.zeros(3), torch.zeros(2)])
    with pytest.raises(ValueError, match="one entry per RBM"):
        check_dbn(w[:1], [torch.zeros(4)], [])


@pytest.mark.parametrize("seed", [0, 1])
def test_predictive_matches_exact_marginal(backend, seed):
    """Predictive on the PPL program: top-RBM Gibbs, then the top-down pass."""
    from conftest import chi2_pvalue, state_index

    sizes = (3, 3, 2)
    ws, down, up = tiny(np.random.default_rng(20 + seed), sizes)
    params = as_params(backend, ws, down, up)
    _, lp = exact_log_p(backend, params, sizes, top_log_z(backend, params))
    n = 4000
    if backend.name == "torch":
        import pyro
        from pyro.infer import Predictive

        from ebm_ppl.pyro.dbn import dbn_model

        pyro.set_rng_seed(seed)
        model = dbn_model(params.weights, params.down_biases, params.up_biases, 50)
        v = Predictive(model, num_samples=1)(num_data=n)["v"][0].numpy()
    else:
        import jax
        from numpyro.infer import Predictive

        from ebm_ppl.numpyro.dbn import dbn_model

        model = dbn_model(params.weights, params.down_biases, params.up_biases, 50)
        out = Predictive(model, num_samples=1)(jax.random.PRNGKey(seed), num_data=n)
        v = np.asarray(out["v"][0])
    counts = np.bincount(state_index(v), minlength=8)
    assert chi2_pvalue(counts, np.exp(lp) / np.exp(lp).sum()) > 1e-4


def test_recognition_guide_gives_the_bound_through_the_ppl_elbo(backend):
    """Trace_ELBO of (dbn_model, dbn_guide) = -(bound + log Z_top) per data point."""
    sizes = (4, 3, 3)
    params = as_params(backend, *tiny(np.random.default_rng(4), sizes))
    log_z = top_log_z(backend, params)
    v = np.array([[1, 0, 1, 1]], np.float32)
    exact, var = exact_bound(backend, params, v[0], log_z, with_variance=True)
    n = 4000
    x = backend.array(np.tile(v, (n, 1)))
    if backend.name == "torch":
        import pyro
        from pyro.infer import Trace_ELBO

        from ebm_ppl.pyro.dbn import dbn_guide, dbn_model

        pyro.set_rng_seed(0)
        args = (params.weights, params.down_biases, params.up_biases)
        loss = Trace_ELBO().loss(dbn_model(*args), dbn_guide(*args), x)
    else:
        import jax
        from numpyro.infer import Trace_ELBO

        from ebm_ppl.numpyro.dbn import dbn_guide, dbn_model

        args = (params.weights, params.down_biases, params.up_biases)
        loss = Trace_ELBO().loss(jax.random.PRNGKey(0), {}, dbn_model(*args), dbn_guide(*args), x)
    bound = -float(loss) / n - log_z
    # n independent draws from Q: the estimate's standard error is sqrt(var / n)
    assert abs(bound - exact) < 5 * np.sqrt(var / n) + 1e-4, (bound, exact, np.sqrt(var / n))


# ---- greedy learning, the DBN object, fine-tuning ------------------------------------------


def frontend(backend):
    if backend.name == "torch":
        import ebm_ppl.pyro as fe
    else:
        import ebm_ppl.numpyro as fe
    return fe


def pretrain(backend, data, hidden_sizes, seed, **kw):
    fe = frontend(backend)
    x = backend.array(data)
    if backend.name == "torch":
        import pyro.optim

        optim = pyro.optim.SGD({"lr": 0.05})
        return fe.greedy_pretrain(x, hidden_sizes, optim, seed=seed, progress_bar=False, **kw)
    import jax
    import optax

    return fe.greedy_pretrain(
        jax.random.PRNGKey(seed),
        x,
        hidden_sizes,
        optax.sgd(0.05),
        seed=seed,
        progress_bar=False,
        **kw,
    )


def exact_mean_bound(backend, params, data):
    log_z = top_log_z(backend, params)
    return float(np.mean([exact_bound(backend, params, v, log_z) for v in data]))


def toy_data(seed, n=300):
    """Binary vectors of 6 units from a mixture of three noisy prototypes."""
    rng = np.random.default_rng(seed)
    protos = np.array([[1, 1, 1, 0, 0, 0], [0, 0, 1, 1, 1, 0], [1, 0, 0, 0, 1, 1]], np.float32)
    x = protos[rng.integers(0, 3, n)]
    flip = rng.random(x.shape) < 0.1
    return np.where(flip, 1 - x, x).astype(np.float32)


def max_bound_gain(backend, rbm1, data):
    """How much any second layer can raise the bound over the tied start: the mean KL-like
    gap E_data E_Q[log q_agg(h) - log P_rbm(h)] between the aggregated posterior and the
    RBM's own marginal of h^1 (the best prior over h^1 is the aggregated posterior)."""
    w, b, c = (backend.np(a).astype(np.float64) for a in rbm1.params)
    q = 1 / (1 + np.exp(-(data @ w + c)))
    hs = states(w.shape[1]).astype(np.float64)
    qh = np.prod(np.where(hs[None] > 0, q[:, None], 1 - q[:, None]), -1)
    log_ph = hs @ c + np.logaddexp(0, hs @ w.T + b).sum(-1)
    log_ph -= np.log(np.exp(log_ph).sum())
    return float((qh * (np.log(qh.mean(0)) - log_ph)).sum(1).mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_second_layer_raises_the_bound(backend, seed):
    """Algorithm 1 with W1 fixed: the second RBM starts tied (W2 = W1^T), where the bound of
    eq. 24 is tight and equals the RBM's log-likelihood; SA-MLE on draws from Q then raises
    the exact bound, by at least half of what the best possible second layer could add, and
    the bound stays below the DBN's exact log-likelihood."""
    from conftest import random_params

    from ebm_ppl.models.dbn import tied_init

    fe = frontend(backend)
    data = toy_data(seed)
    rng = np.random.default_rng(100 + seed)
    rbm1 = backend.RBM(*(backend.array(a) for a in random_params(rng, 6, 3)))
    top = backend.RBM(*tied_init(rbm1.weights, rbm1.visible_bias, rbm1.hidden_bias))
    before = exact_mean_bound(backend, fe.DBN.from_rbms([rbm1, top]).params, data)
    rbm_ll = float(backend.np(rbm1.log_prob(backend.array(data)) - rbm1.log_partition()).mean())
    assert before == pytest.approx(rbm_ll, abs=1e-4)  # tight at the tied start
    gain = max_bound_gain(backend, rbm1, data)
    assert gain > 0.05  # the test has room to fail
    stack = pretrain(backend, data, [6], seed, num_epochs=10, batch_size=20, below=[rbm1])
    assert len(stack) == 2 and stack[0] is rbm1
    dbn = fe.DBN.from_rbms(stack)
    after = exact_mean_bound(backend, dbn.params, data)
    assert after > before + 0.5 * gain, (before, after, gain)
    log_z = top_log_z(backend, dbn.params)
    vs, lp = exact_log_p(backend, dbn.params, (6, 3, 6), log_z)
    index = (data @ (2 ** np.arange(5, -1, -1))).astype(int)
    assert after <= lp[index].mean() + 1e-4


def small_stack(backend, seed=0, sizes=(4, 3, 2)):
    rng = np.random.default_rng(seed)
    from conftest import random_params

    return [
        backend.RBM(*(backend.array(a) for a in random_params(rng, m, n, scale=1.5)))
        for m, n in zip(sizes, sizes[1:])
    ]


def test_greedy_layer_data_modes(backend):
    """Algorithm 1 draws h^2 from Q(h^2|h^1)Q(h^1|v); Algorithm 2 from the factorial Q~
    (eq. 27-28); "mean" gives Q~'s probabilities. Checked against enumeration."""
    fe = frontend(backend)
    below = small_stack(backend)
    w1, _, c1 = (backend.np(a).astype(np.float64) for a in below[0].params)
    w2, _, c2 = (backend.np(a).astype(np.float64) for a in below[1].params)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    v = np.array([1, 0, 1, 1], np.float64)
    q1 = sig(v @ w1 + c1)
    q2_factorial = sig(q1 @ w2 + c2)
    hs = states(3).astype(np.float64)
    weights = np.prod(np.where(hs > 0, q1, 1 - q1), -1)
    q2_sample = (weights[:, None] * sig(hs @ w2 + c2)).sum(0)
    n = 20000
    x = np.tile(v.astype(np.float32), (n, 1))
    mean = backend.np(fe.GreedyLayerData(below, x, mode="mean")(0))
    np.testing.assert_allclose(mean, np.tile(q2_factorial, (n, 1)), atol=1e-5)
    for mode, p in (("sample", q2_sample), ("factorial", q2_factorial)):
        data = fe.GreedyLayerData(below, x, mode=mode, seed=3)
        draws = backend.np(data(0))
        assert set(np.unique(draws)) <= {0.0, 1.0}
        z = (draws.mean(0) - p) / np.sqrt(p * (1 - p) / n)
        assert np.all(np.abs(z) < 5), (mode, z)
        np.testing.assert_array_equal(backend.np(data(0)), draws)  # reproducible per epoch
        assert not np.array_equal(backend.np(data(1)), draws)  # fresh draws every epoch
    # the two algorithms really differ here (else the test above could not tell them apart)
    assert np.abs(q2_sample - q2_factorial).max() > 0.02


def test_greedy_arguments_are_checked(backend):
    fe = frontend(backend)
    below = small_stack(backend)
    with pytest.raises(ValueError, match="mode must be one of"):
        fe.GreedyLayerData(below, np.zeros((2, 4), np.float32), mode="up")
    with pytest.raises(TypeError, match="below must be a non-empty sequence"):
        fe.GreedyLayerData([], np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="visible units but below"):
        fe.GreedyLayerData(below[::-1], np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"data must have shape \(n, 4\)"):
        fe.GreedyLayerData(below, np.zeros((2, 5), np.float32))(0)
    data = toy_data(0, n=20)
    with pytest.raises(ValueError, match="hidden_sizes must be a non-empty"):
        pretrain(backend, data, [], 0)
    with pytest.raises(ValueError, match="num_epochs must be"):
        pretrain(backend, data, [3, 2], 0, num_epochs=[1])
    with pytest.raises(ValueError, match="Algorithm 1"):
        pretrain(backend, data, [3], 0, mode="mean")


def test_dbn_object_bound_is_exact_for_the_tied_stack(backend):
    """With W2 = W1^T, log P(v, h) - log Q(h | v) = log P_RBM(v) for every h, so even one
    draw from Q gives the RBM's log-likelihood; an AIS-style log Z adds its error."""
    from ebm_ppl.models.dbn import tied_init

    fe = frontend(backend)
    rbm = small_stack(backend, seed=5)[0]
    dbn = fe.DBN.from_rbms([rbm, backend.RBM(*tied_init(*rbm.params))])
    assert dbn.sizes == (4, 3, 4)
    data = states(4)
    exact = float(backend.np(rbm.log_prob(backend.array(data)) - rbm.log_partition()).mean())
    log_z = float(backend.np(dbn.top.log_partition()))
    kw = {"rng_key": backend.key(0)} if backend.name == "jax" else {}
    res = dbn.bound(backend.array(data), log_z, **kw)
    assert res.mean == pytest.approx(exact, abs=1e-4)

    from types import SimpleNamespace

    ais_like = SimpleNamespace(log_z=log_z + 0.5, log_z_stderr=0.2)
    res2 = dbn.bound(backend.array(data), ais_like, **kw)
    assert res2.mean == pytest.approx(exact - 0.5, abs=1e-4)
    assert res2.stderr == pytest.approx(np.hypot(res.stderr, 0.2), rel=1e-6)
    with pytest.raises(TypeError, match="log_z_top must be a number"):
        dbn.bound(backend.array(data), "big", **kw)
    with pytest.raises(ValueError, match=r"data must have shape \(n, 4\)"):
        dbn.bound(backend.array(data[:, :3]), log_z, **kw)
    with pytest.raises(TypeError, match="rbms must be a non-empty sequence"):
        fe.DBN.from_rbms([])


def test_factorial_guide_draws_from_q_tilde(backend):
    """dbn_guide(factorial=True): every layer Bernoulli with the probabilities of one
    deterministic bottom-up pass (eq. 27-28), not of the sample below."""
    fe = frontend(backend)
    stack = small_stack(backend, seed=2, sizes=(4, 3, 3, 2))
    dbn = fe.DBN.from_rbms(stack)
    x = backend.array(states(4))
    q = [x]
    for rbm in stack[:2]:
        q.append(
            1
            / (
                1
                + np.exp(
                    -(backend.np(q[-1]) @ backend.np(rbm.weights) + backend.np(rbm.hidden_bias))
                )
            )
        )
        q[-1] = backend.array(q[-1].astype(np.float32))
    if backend.name == "torch":
        import pyro.poutine as poutine

        tr = poutine.trace(dbn.guide(factorial=True)).get_trace(x).nodes
    else:
        from numpyro import handlers

        tr = handlers.trace(handlers.seed(dbn.guide(factorial=True), 0)).get_trace(x)
    for layer in (1, 2):
        probs = tr[f"h{layer}"]["fn"].base_dist.probs
        np.testing.assert_allclose(backend.np(probs), backend.np(q[layer]), atol=1e-5)


def test_program_log_density_agrees_across_backends():
    """The same DBN program, data and latent values: Pyro's and NumPyro's log joint agree."""
    import jax.numpy as jnp
    import pyro.poutine as poutine
    import torch
    from numpyro.infer.util import log_density

    import ebm_ppl.numpyro as npe
    import ebm_ppl.pyro as pe

    rng = np.random.default_rng(7)
    ws, down, up = tiny(rng, (5, 4, 3, 3))
    v = (rng.random((6, 5)) < 0.5).astype(np.float32)
    h1 = (rng.random((6, 4)) < 0.5).astype(np.float32)
    h2 = (rng.random((6, 3)) < 0.5).astype(np.float32)
    tm = pe.DBN(*([torch.tensor(a) for a in arrs] for arrs in (ws, down, up))).model()
    cond = poutine.condition(tm, data={"h1": torch.tensor(h1), "h2": torch.tensor(h2)})
    lp_t = poutine.trace(cond).get_trace(torch.tensor(v)).log_prob_sum().item()
    jm = npe.DBN(*([jnp.asarray(a) for a in arrs] for arrs in (ws, down, up))).model()
    lp_j, _ = log_density(jm, (jnp.asarray(v),), {}, {"h1": jnp.asarray(h1), "h2": jnp.asarray(h2)})
    assert lp_t == pytest.approx(float(lp_j), rel=1e-5, abs=1e-3)


def test_fine_tuning_agrees_across_backends():
    """Same DBN, same output-layer start and minibatch order: DBNClassifier + fine_tune
    (torch) and classifier_init + fine_tune (JAX/optax) give the same logits and training
    trajectory."""
    import jax
    import jax.numpy as jnp
    import optax
    import torch

    import ebm_ppl.numpyro as npe
    import ebm_ppl.pyro as pe

    rng = np.random.default_rng(0)
    ws, down, up = tiny(rng, (6, 5, 4), scale=0.5)
    x = rng.random((200, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > x[:, 2] + 0.5).astype(np.int64) + (x[:, 3] > 0.7)
    jdbn = npe.DBN(*([jnp.asarray(a) for a in arrs] for arrs in (ws, down, up)))
    params = npe.classifier_init(jdbn, 3, jax.random.PRNGKey(0))
    tdbn = pe.DBN(*([torch.tensor(a) for a in arrs] for arrs in (ws, down, up)))
    clf = pe.DBNClassifier(tdbn, 3)
    with torch.no_grad():
        clf.weights[-1].copy_(torch.tensor(np.asarray(params["weights"][-1])))
    np.testing.assert_allclose(
        clf(torch.tensor(x)).detach().numpy(),
        np.asarray(npe.classifier_logits(params, jnp.asarray(x))),
        atol=1e-5,
    )
    kw = dict(num_epochs=3, batch_size=20, seed=1)
    hist_t = pe.fine_tune(
        clf,
        torch.tensor(x),
        torch.tensor(y),
        lr=0.1,
        momentum=0.9,
        **kw,
        x_test=torch.tensor(x),
        y_test=torch.tensor(y),
        progress_bar=False,
    )
    params, hist_j = npe.fine_tune(
        params, x, y, optax.sgd(0.1, momentum=0.9), **kw, x_test=x, y_test=y, progress_bar=False
    )
    for a, b in zip(hist_t, hist_j):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-4)
        assert a["test_error"] == pytest.approx(b["test_error"], abs=1e-9)
    assert hist_t[-1]["train_loss"] < hist_t[0]["train_loss"]  # it learns
    np.testing.assert_allclose(
        clf.weights[0].detach().numpy(), np.asarray(params["weights"][0]), atol=1e-4
    )
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        pe.DBNClassifier(tdbn, 1)
    with pytest.raises(ValueError, match=r"y must have shape \(200,\)"):
        npe.fine_tune(params, x, y[:10])


def test_fine_tuning_in_several_calls_equals_one_call():
    """With the optimizer passed in (its momentum kept) and first_epoch counting on, two
    one-epoch calls give the same network as one two-epoch call."""
    import torch

    import ebm_ppl.pyro as pe

    rng = np.random.default_rng(1)
    ws, down, up = tiny(rng, (6, 5, 4), scale=0.5)
    x = torch.tensor(rng.random((120, 6)).astype(np.float32))
    y = torch.tensor((rng.random(120) < 0.5).astype(np.int64))
    dbn = pe.DBN(*([torch.tensor(a) for a in arrs] for arrs in (ws, down, up)))
    nets = [pe.DBNClassifier(dbn, 2, generator=torch.Generator().manual_seed(0)) for _ in "ab"]
    pe.fine_tune(nets[0], x, y, num_epochs=2, batch_size=20, seed=3, progress_bar=False)
    opt = torch.optim.SGD(nets[1].parameters(), lr=0.1, momentum=0.9)
    for e in range(2):
        pe.fine_tune(
            nets[1],
            x,
            y,
            num_epochs=1,
            batch_size=20,
            seed=3,
            first_epoch=e,
            optimizer=opt,
            progress_bar=False,
        )
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b)
