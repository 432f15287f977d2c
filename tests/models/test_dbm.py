"""DBM math against exact enumeration of tiny models (both backends)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ebm_ppl.models.dbm import (
    DBMParams,
    check_dbm,
    energy,
    gibbs_sweep,
    layer_logits,
    log_partition,
    mean_field,
    mean_field_bound,
)


def tiny(seed, sizes, scale=1.0):
    rng = np.random.default_rng(seed)
    ws = [
        (scale * rng.standard_normal((a, b))).astype(np.float32) for a, b in zip(sizes, sizes[1:])
    ]
    bs = [(0.5 * rng.standard_normal(n)).astype(np.float32) for n in sizes]
    return ws, bs


def as_params(backend, ws, bs):
    return DBMParams(tuple(map(backend.array, ws)), tuple(map(backend.array, bs)))


def all_configs(sizes):
    """Every joint state as a list of per-layer arrays, float64."""
    n = sum(sizes)
    x = np.array(list(itertools.product([0, 1], repeat=n)), dtype=np.float64)
    cuts = np.cumsum((0,) + tuple(sizes))
    return [x[:, a:b] for a, b in zip(cuts, cuts[1:])]


def exact_neg_energy(ws, bs, layers):
    out = 0.0
    for i, w in enumerate(ws):
        out = out + np.einsum("ni,ij,nj->n", layers[i], w.astype(np.float64), layers[i + 1])
    for i, b in enumerate(bs):
        out = out + layers[i] @ b.astype(np.float64)
    return out


def lse(x):
    m = x.max()
    return m + np.log(np.exp(x - m).sum())


@pytest.mark.parametrize("sizes", [(3, 2, 3), (2, 3, 2, 2)])
@pytest.mark.parametrize("seed", [0, 1])
def test_energy_and_log_partition_match_enumeration(backend, sizes, seed):
    ws, bs = tiny(seed, sizes, scale=1.5)
    params = as_params(backend, ws, bs)
    assert check_dbm(params.weights, params.biases) == sizes
    layers = all_configs(sizes)
    neg_e = exact_neg_energy(ws, bs, layers)
    ours = backend.np(energy(params, [backend.array(x.astype(np.float32)) for x in layers]))
    np.testing.assert_allclose(-ours, neg_e, rtol=1e-5, atol=1e-4)
    assert float(backend.np(log_partition(params))) == pytest.approx(lse(neg_e), abs=1e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_layer_conditionals_match_enumeration(backend, seed):
    """p(x_l = 1 | all other layers) from the joint equals g(layer_logits) (eq. 31-34), and
    it depends on the neighbours only."""
    sizes = (3, 2, 3)
    ws, bs = tiny(seed, sizes, scale=1.5)
    params = as_params(backend, ws, bs)
    layers = all_configs(sizes)
    neg_e = exact_neg_energy(ws, bs, layers)
    for i in range(len(sizes)):
        for j in range(sizes[i]):
            on = layers[i][:, j] == 1
            # pair every state having unit (l, j) on with the same state having it off
            idx_on = np.flatnonzero(on)
            idx_off = idx_on - 2 ** (sum(sizes) - 1 - (sum(sizes[:i]) + j))
            p_on = 1 / (1 + np.exp(neg_e[idx_off] - neg_e[idx_on]))
            sub = [backend.array(x[idx_on].astype(np.float32)) for x in layers]
            ours = 1 / (1 + np.exp(-backend.np(layer_logits(params, sub, i))[:, j]))
            np.testing.assert_allclose(ours, p_on, atol=1e-5)


def test_zero_top_weights_reduce_to_an_rbm(backend):
    """W2 = 0: the DBM is the RBM (W1, b0, b1) times independent top units, so log Z adds
    sum softplus(b2) to the RBM's and the marginal over v is the RBM's."""
    ws, bs = tiny(3, (4, 3, 2))
    ws[1] = np.zeros_like(ws[1])
    params = as_params(backend, ws, bs)
    rbm = backend.RBM(*(backend.array(a) for a in (ws[0], bs[0], bs[1])))
    expected = float(backend.np(rbm.log_partition())) + float(np.logaddexp(0, bs[2]).sum())
    assert float(backend.np(log_partition(params))) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_block_gibbs_matches_exact_marginal_of_v(backend, seed):
    from conftest import chi2_pvalue, state_index

    sizes = (3, 3, 2)
    ws, bs = tiny(10 + seed, sizes, scale=1.2)
    params = as_params(backend, ws, bs)
    layers = all_configs(sizes)
    neg_e = exact_neg_energy(ws, bs, layers)
    p = np.exp(neg_e - lse(neg_e))
    pv = np.zeros(8)
    np.add.at(pv, state_index(layers[0]), p)
    n = 4000
    x = [backend.array(np.zeros((n, k), np.float32)) for k in sizes]
    key = backend.key(seed)
    for _ in range(30):
        if backend.name == "jax":
            key, sub = backend.jax.random.split(key)
        else:
            sub = None
        x = gibbs_sweep(sub, params, x)
    counts = np.bincount(state_index(backend.np(x[0])), minlength=8)
    assert chi2_pvalue(counts, pv) > 1e-4


@pytest.mark.parametrize("seed", [0, 1])
def test_mean_field_bound_is_stationary_and_below_log_p(seed):
    """At the fixed point of eq. 39-41 the bound of eq. 38 is stationary in every mu_lj
    (checked by autodiff) and lies below the exact log p(v); damping reaches the same point."""
    import torch

    sizes = (4, 3, 3)
    ws, bs = tiny(20 + seed, sizes)
    params = DBMParams(tuple(map(torch.tensor, ws)), tuple(map(torch.tensor, bs)))
    params64 = DBMParams(*(tuple(t.double() for t in part) for part in params[:2]))
    log_z = float(log_partition(params64))
    layers = all_configs(sizes)
    neg_e = exact_neg_energy(ws, bs, layers)
    for v in np.array(list(itertools.product([0, 1], repeat=4)), dtype=np.float64):
        match = np.all(layers[0] == v, axis=1)
        log_pv = lse(neg_e[match]) - log_z
        mus = mean_field(params64, torch.tensor(v), num_iters=200)
        hidden = [m.clone().requires_grad_(True) for m in mus[1:]]
        bound = mean_field_bound(params64, [mus[0]] + hidden, log_z)
        grads = torch.autograd.grad(bound, hidden)
        assert max(float(g.abs().max()) for g in grads) < 1e-6
        assert float(bound.detach()) <= log_pv + 1e-9
        damped = mean_field(params64, torch.tensor(v), num_iters=400, damping=0.5)
        for a, b in zip(mus[1:], damped[1:]):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_bad_parameters():
    import torch

    with pytest.raises(ValueError, match="one entry per layer"):
        check_dbm([torch.zeros(3, 2)], [torch.zeros(3)])
    with pytest.raises(ValueError, match=r"weights\[1\] must have shape \(2, n_2\)"):
        check_dbm([torch.zeros(3, 2), torch.zeros(3, 2)], [torch.zeros(3)] * 3)
    with pytest.raises(ValueError, match=r"biases\[1\] must have shape \(2,\)"):
        check_dbm([torch.zeros(3, 2)], [torch.zeros(3), torch.zeros(3)])
    with pytest.raises(TypeError, match="weights\\[0\\] must be a torch.Tensor or a JAX array"):
        check_dbm([np.zeros((3, 2))], [torch.zeros(3), torch.zeros(2)])
    with pytest.raises(ValueError, match="estimate log Z with AIS"):
        log_partition(DBMParams((torch.zeros(2, 21),), (torch.zeros(2), torch.zeros(21))))


# --------------------------------------------------------------------------------------
# the DBM distributions of both frontends
# --------------------------------------------------------------------------------------


def frontend(backend):
    if backend.name == "torch":
        import ebm_ppl.pyro as fe
    else:
        import ebm_ppl.numpyro as fe
    return fe


def make_dbm(backend, ws, bs, **kw):
    fe = frontend(backend)
    return fe.DBM([backend.array(w) for w in ws], [backend.array(b) for b in bs], **kw)


def joint_probs(ws, bs, sizes):
    layers = all_configs(sizes)
    neg_e = exact_neg_energy(ws, bs, layers)
    return layers, np.exp(neg_e - lse(neg_e)), lse(neg_e)


def next_key(backend, key):
    if backend.name == "jax":
        key, sub = backend.jax.random.split(key)
        return key, sub
    return key, None


@pytest.mark.parametrize("sizes", [(3, 2, 3), (2, 3, 2, 2)])
def test_distribution_log_prob_normalizes(backend, sizes):
    ws, bs = tiny(5, sizes, scale=1.2)
    dbm = make_dbm(backend, ws, bs)
    assert tuple(dbm.event_shape) == (sum(sizes),) and dbm.sizes == sizes
    x = np.concatenate(all_configs(sizes), axis=1).astype(np.float32)
    lp = backend.np(dbm.log_prob(backend.array(x))).astype(np.float64)
    log_z = float(backend.np(dbm.log_partition()))
    assert np.exp(lp - log_z).sum() == pytest.approx(1.0, abs=1e-4)
    layers = dbm.split(backend.array(x))
    assert [tuple(t.shape) for t in layers] == [(len(x), n) for n in sizes]
    np.testing.assert_array_equal(backend.np(dbm.join(layers)), x)
    # conditionals through the class: p(h1 | v, h2) from the joint
    logits = backend.np(dbm.conditional_logits(backend.array(x[:5]), 1))
    expected = np.asarray(x[:5, : sizes[0]] @ ws[0] + bs[1])
    if len(sizes) > 2:
        expected = expected + x[:5, sizes[0] + sizes[1] : sum(sizes[:3])] @ ws[1].T
    np.testing.assert_allclose(logits, expected, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_sample_matches_exact_joint(backend, seed):
    """``sample`` (Gibbs from independent starts) against the exact joint over all 2^8
    states, by chi-square."""
    from conftest import chi2_pvalue, state_index

    sizes = (3, 3, 2)
    ws, bs = tiny(30 + seed, sizes)
    dbm = make_dbm(backend, ws, bs, num_gibbs_steps=40)
    _, p, _ = joint_probs(ws, bs, sizes)
    key = backend.key(seed)
    x = dbm.sample(key, (6000,)) if backend.name == "jax" else dbm.sample((6000,))
    counts = np.bincount(state_index(backend.np(x)), minlength=p.size)
    assert chi2_pvalue(counts, p) > 1e-4


@pytest.mark.parametrize("seed", [0, 1])
def test_block_gibbs_kernel_on_a_dbm_site(backend, seed):
    """A DBM site under the PPL's own MCMC with our BlockGibbs kernel: 200 chains in a plate,
    draws thinned in time, against the exact joint over all 2^8 states (chi-square); the run
    converts to arviz with a finite per-draw free energy."""
    from conftest import chi2_pvalue, state_index

    from ebm_ppl import diagnostics

    sizes = (3, 3, 2)
    ws, bs = tiny(40 + seed, sizes)
    dbm = make_dbm(backend, ws, bs)
    _, p, _ = joint_probs(ws, bs, sizes)
    if backend.name == "torch":
        import pyro
        from pyro.infer import MCMC

        from ebm_ppl.pyro import BlockGibbs

        def model():
            with pyro.plate("chains", 200):
                pyro.sample("x", dbm)

        pyro.set_rng_seed(seed)
        mcmc = MCMC(BlockGibbs(model), num_samples=40, warmup_steps=20, disable_progbar=True)
        mcmc.run()
    else:
        import jax
        import numpyro
        from numpyro.infer import MCMC

        from ebm_ppl.numpyro import BlockGibbs

        def model():
            with numpyro.plate("chains", 200):
                numpyro.sample("x", dbm)

        mcmc = MCMC(BlockGibbs(model), num_warmup=20, num_samples=40, progress_bar=False)
        mcmc.run(jax.random.PRNGKey(seed), extra_fields=("free_energy",))
    x = np.asarray(backend.np(mcmc.get_samples()["x"]))
    assert x.shape == (40, 200, 8)
    counts = np.bincount(state_index(x[::4].reshape(-1, 8)), minlength=p.size)
    assert chi2_pvalue(counts, p) > 1e-4
    fe = np.asarray(diagnostics.to_arviz(mcmc).posterior["free_energy_x"])
    assert fe.shape == (1, 40) and np.isfinite(fe).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_clamped_transition_samples_the_conditional(backend, seed):
    """Clamping v_0 = 1 (conditional sampling, e.g. completing half a digit): the free
    visible units follow p(v_1, v_2 | v_0 = 1) exactly."""
    from conftest import chi2_pvalue, state_index

    from ebm_ppl.models.rbm import Clamp

    sizes = (3, 3, 2)
    ws, bs = tiny(40 + seed, sizes, scale=1.5)
    dbm = make_dbm(backend, ws, bs)
    layers, p, _ = joint_probs(ws, bs, sizes)
    keep = layers[0][:, 0] == 1
    pv = np.zeros(4)
    np.add.at(pv, state_index(layers[0][keep][:, 1:]), p[keep])
    pv /= pv.sum()
    n = 5000
    key = backend.key(seed)
    key, sub = next_key(backend, key)
    x0 = dbm.init_chain(sub, (n, sum(sizes)))
    mask = backend.array(np.array([True, False, False]), dtype=bool)
    clamp = Clamp(mask, backend.array(np.ones(3, np.float32)))
    key, sub = next_key(backend, key)
    x, _ = dbm.transition(sub, x0, 40, clamp=clamp)
    v = backend.np(x)[:, :3]
    assert np.all(v[:, 0] == 1)
    counts = np.bincount(state_index(v[:, 1:]), minlength=4)
    assert chi2_pvalue(counts, pv) > 1e-4


@pytest.mark.parametrize("sizes", [(4, 3, 5), (3, 4, 3, 4)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ais_matches_exact_log_z(backend, sizes, seed):
    """AIS over the odd layers (even layers summed out) agrees with exact log Z within
    4 standard errors, forward and reverse (reverse from exact joint samples)."""
    fe = frontend(backend)
    ws, bs = tiny(50 + seed, sizes, scale=1.0)
    dbm = make_dbm(backend, ws, bs)
    layers, p, log_z = joint_probs(ws, bs, sizes)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(p), size=100, p=p)
    exact = np.concatenate(layers, axis=1)[idx].astype(np.float32)
    betas = np.linspace(0, 1, 400)
    base = backend.array(np.full(sizes[0], 0.3, np.float32))
    kw = {"rng_key": backend.key(seed)} if backend.name == "jax" else {}
    if backend.name == "torch":
        backend.key(seed)
    res = fe.AIS(
        dbm,
        base,
        betas,
        num_runs=100,
        reverse_samples=backend.array(exact),
        progress_bar=False,
        **kw,
    )
    assert abs(res.log_z - log_z) < 4 * res.log_z_stderr + 1e-3
    assert abs(res.reverse.log_z - log_z) < 4 * res.reverse.log_z_stderr + 1e-3


def test_sa_gradient_equals_gradient_of_exact_bound():
    """The SA-MLE gradient with the mean-field positive phase (the ``DBMVisible`` site's
    surrogate) equals the gradient of the exact bound of eq. 38 (mean field + exact log Z,
    differentiated through the fixed point by autodiff) within Monte Carlo error, with the
    chains drawn from the exact model."""
    import torch

    import ebm_ppl.pyro as fe

    sizes = (4, 3, 3)
    ws, bs = tiny(60, sizes)
    rng = np.random.default_rng(0)
    data = torch.tensor(rng.integers(0, 2, size=(7, 4)), dtype=torch.float64)
    params = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in ws + bs]
    nw = len(ws)

    def dbm():
        return fe.DBM(params[:nw], params[nw:])

    # exact: mean field (many sweeps, gradients through them) + exact log Z
    p = DBMParams(tuple(params[:nw]), tuple(params[nw:]))
    mus = mean_field(p, data, num_iters=300)
    exact_bound = (mean_field_bound(p, mus) - log_partition(p)).mean()
    exact = torch.autograd.grad(exact_bound, params)
    # SA: chains from the exact joint
    layers, probs, _ = joint_probs(ws, bs, sizes)
    n = 200_000
    idx = rng.choice(len(probs), size=n, p=probs)
    chains = torch.tensor(np.concatenate(layers, axis=1)[idx])
    site = dbm().visible(num_iters=300, tol=None)
    loss = site.contrast(data, chains, 1.0 / len(data), 1.0 / n)
    sa = torch.autograd.grad(-loss, params)
    # Monte Carlo standard error of each model statistic (sufficient statistics per chain)
    x = [t.numpy() for t in dbm().split(chains)]
    stats = [np.einsum("ni,nj->nij", x[i], x[i + 1]) for i in range(nw)] + x
    for e, s, st in zip(exact, sa, stats):
        se = st.reshape(n, -1).std(0) / np.sqrt(n)
        diff = np.abs(e.detach().numpy().reshape(-1) - s.detach().numpy().reshape(-1))
        assert np.all(diff <= 4.5 * se + 1e-6), (diff.max(), se.max())


@pytest.mark.parametrize("seed", [0, 1])
def test_samle_raises_the_exact_bound(backend, seed):
    """Training with the DBMVisible site (mean-field positive phase, persistent chains)
    raises the exact mean-field bound (exact log Z) of the training data."""
    fe = frontend(backend)
    sizes = (6, 4, 3)
    ws, bs = tiny(70 + seed, sizes, scale=0.1)
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 2, size=(2, 6))
    flips = rng.random((300, 6)) < 0.1
    data_np = np.abs(protos[rng.integers(0, 2, 300)] - flips).astype(np.float32)
    data = backend.array(data_np)

    def bound(w, b):
        d = make_dbm(backend, w, b)
        return float(backend.np(d.mean_field_bound(data, d.log_partition())).mean())

    before = bound(ws, bs)
    if backend.name == "torch":
        import pyro

        pyro.clear_param_store()
        backend.key(seed)

        def model(batch):
            w = [pyro.param(f"W{i}", backend.array(a)) for i, a in enumerate(ws)]
            b = [pyro.param(f"b{i}", backend.array(a)) for i, a in enumerate(bs)]
            with pyro.plate("data", batch.shape[0]):
                pyro.sample("v", fe.DBM(w, b).visible(), obs=batch)

        tr = fe.SAMLE(model, pyro.optim.SGD({"lr": 0.1}), num_gibbs_steps=2, num_chains=100)
        tr.run(data, num_epochs=60, batch_size=50, progress_bar=False)
        store = pyro.get_param_store()
        w_new = [backend.np(store[f"W{i}"]) for i in range(2)]
        b_new = [backend.np(store[f"b{i}"]) for i in range(3)]
    else:
        import numpyro
        import optax

        def model(batch):
            w = [numpyro.param(f"W{i}", backend.array(a)) for i, a in enumerate(ws)]
            b = [numpyro.param(f"b{i}", backend.array(a)) for i, a in enumerate(bs)]
            with numpyro.plate("data", batch.shape[0]):
                numpyro.sample("v", fe.DBM(w, b).visible(), obs=batch)

        tr = fe.SAMLE(model, optax.sgd(0.1), num_gibbs_steps=2, num_chains=100)
        st = tr.run(backend.key(seed), data, num_epochs=60, batch_size=50, progress_bar=False)
        prm = tr.get_params(st)
        w_new = [np.asarray(prm[f"W{i}"]) for i in range(2)]
        b_new = [np.asarray(prm[f"b{i}"]) for i in range(3)]
    after = bound(w_new, b_new)
    assert after > before + 0.5, (before, after)


def test_doubling_and_tiling():
    """The pretraining RBMs give an inner layer twice the input of its one neighbour."""
    import torch

    from ebm_ppl.models.dbm import combine_pretrained, doubling, tile_rbm
    from ebm_ppl.pyro import RBM

    assert [doubling(2, i) for i in range(2)] == [(2, 1), (1, 2)]
    assert [doubling(3, i) for i in range(3)] == [(2, 1), (2, 2), (1, 2)]
    assert doubling(1, 0) == (1, 1)
    g = torch.Generator().manual_seed(0)
    w, lo, hi = torch.randn(4, 3, generator=g), torch.randn(4, generator=g), torch.randn(3)
    v = (torch.rand(5, 4, generator=g) < 0.5).float()
    h = (torch.rand(5, 3, generator=g) < 0.5).float()
    bottom = RBM(*tile_rbm(w, lo, hi, (2, 1)))
    torch.testing.assert_close(bottom.hidden_logits(torch.cat([v, v], -1)), 2 * v @ w + hi)
    top = RBM(*tile_rbm(w, lo, hi, (1, 2)))
    torch.testing.assert_close(top.visible_logits(torch.cat([h, h], -1)), 2 * h @ w.T + lo)
    params = combine_pretrained([(w, lo, hi), (torch.ones(3, 2), torch.zeros(3), torch.ones(2))])
    torch.testing.assert_close(params.biases[1], 0.5 * hi)
    assert params.weights[0] is w


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("seed", [0, 1])
def test_tied_copies_chain_conditionals(backend, seed):
    """The bottom pretraining RBM's CD chain (S&H 2009): ``h ~ g(2 x W + c)`` and one
    ``x ~ g(W h + b)`` written into both copies. Frequencies over 40,000 independent chains
    from one state, per hidden configuration, against the exact conditionals."""
    from ebm_ppl.models.dbm import tied_copies_chain, tile_rbm

    rng = np.random.default_rng(seed)
    w, b, c = rng.normal(size=(3, 2)), rng.normal(size=3), rng.normal(size=2)
    x0 = np.array([1.0, 0.0, 1.0])
    n = 40_000
    if backend == "torch":
        import torch

        torch.manual_seed(seed)
        arr, key = (lambda a: torch.tensor(a, dtype=torch.float32)), None
    else:
        import jax
        import jax.numpy as jnp

        arr, key = (lambda a: jnp.asarray(a, dtype=jnp.float32)), jax.random.PRNGKey(seed)
    tw, tb, tc = tile_rbm(arr(w), arr(b), arr(c), (2, 1))
    start = arr(np.tile(np.concatenate([x0, x0]), (n, 1)))
    value, h = (np.asarray(t) for t in tied_copies_chain(key, tw, tb, tc, start, 2, 1))
    np.testing.assert_array_equal(value[:, :3], value[:, 3:])
    p_h = 1 / (1 + np.exp(-(2 * x0 @ w + c)))
    se = np.sqrt(p_h * (1 - p_h) / n)
    assert np.all(np.abs(h.mean(0) - p_h) < 4.5 * se + 1e-3)
    for hs in itertools.product([0.0, 1.0], repeat=2):
        rows = np.all(h == np.array(hs), axis=1)
        m = rows.sum()
        if m < 500:
            continue
        p_x = 1 / (1 + np.exp(-(w @ np.array(hs) + b)))
        se = np.sqrt(p_x * (1 - p_x) / m)
        assert np.all(np.abs(value[rows, :3].mean(0) - p_x) < 4.5 * se + 1e-3), hs


def test_greedy_pretrain_dbm_both_backends():
    """Greedy DBM pretraining runs in both PPLs, resumes from its checkpoints, and the
    composed DBM's bottom-up pass is the first RBM's doubled-input conditional."""
    import tempfile

    import jax
    import optax
    import pyro
    import torch

    import ebm_ppl.numpyro as nfe
    import ebm_ppl.pyro as pfe
    from ebm_ppl.models.dbm import bottom_up

    rng = np.random.default_rng(0)
    data = (rng.random((120, 6)) < 0.4).astype(np.float32)
    pyro.clear_param_store()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:
        a = pfe.greedy_pretrain_dbm(
            torch.tensor(data),
            [4, 3],
            pyro.optim.SGD({"lr": 0.05}),
            num_epochs=2,
            batch_size=30,
            progress_bar=False,
            checkpoint=d,
        )
        b = pfe.greedy_pretrain_dbm(  # resumes: nothing left to train, the same DBM
            torch.tensor(data),
            [4, 3],
            pyro.optim.SGD({"lr": 0.05}),
            num_epochs=2,
            batch_size=30,
            progress_bar=False,
            checkpoint=d,
        )
    assert a.sizes == b.sizes == (6, 4, 3)
    for x, y in zip(a.weights + a.biases, b.weights + b.biases):
        torch.testing.assert_close(x, y)
    c = nfe.greedy_pretrain_dbm(
        jax.random.PRNGKey(0),
        data,
        [4, 3],
        optax.sgd(0.05),
        num_epochs=2,
        batch_size=30,
        progress_bar=False,
    )
    assert c.sizes == (6, 4, 3)
    assert not np.allclose(np.asarray(c.weights[0]), 0)
    v = torch.tensor(data[:3])
    mus = bottom_up(a.dbm_params, v)
    torch.testing.assert_close(mus[1], torch.sigmoid(2 * v @ a.weights[0] + a.biases[1]))


def test_cross_backend_agreement():
    """The same parameters give the same energies, log Z, mean-field marginals and bound."""
    import jax.numpy as jnp
    import torch

    import ebm_ppl.numpyro as nfe
    import ebm_ppl.pyro as pfe

    sizes = (5, 4, 3)
    ws, bs = tiny(80, sizes)
    t = pfe.DBM([torch.tensor(w) for w in ws], [torch.tensor(b) for b in bs])
    j = nfe.DBM([jnp.asarray(w) for w in ws], [jnp.asarray(b) for b in bs])
    rng = np.random.default_rng(0)
    x = (rng.random((10, sum(sizes))) < 0.5).astype(np.float32)
    np.testing.assert_allclose(
        t.log_prob(torch.tensor(x)).numpy(), np.asarray(j.log_prob(jnp.asarray(x))), atol=1e-5
    )
    assert float(t.log_partition()) == pytest.approx(float(j.log_partition()), abs=1e-4)
    v = x[:, :5]
    for kw in ({}, {"damping": 0.3}, {"tol": 1e-6, "num_iters": 100}):
        mt = t.mean_field(torch.tensor(v), **kw)
        mj = j.mean_field(jnp.asarray(v), **kw)
        for a, b in zip(mt, mj):
            np.testing.assert_allclose(a.numpy(), np.asarray(b), atol=1e-5)
    np.testing.assert_allclose(
        t.mean_field_bound(torch.tensor(v)).numpy(),
        np.asarray(j.mean_field_bound(jnp.asarray(v))),
        atol=1e-4,
    )


def test_save_load_and_jit(tmp_path):
    import jax
    import torch

    import ebm_ppl.numpyro as nfe
    import ebm_ppl.pyro as pfe
    from ebm_ppl.io import load_model, save_model

    ws, bs = tiny(90, (4, 3, 2))
    t = pfe.DBM([torch.tensor(w) for w in ws], [torch.tensor(b) for b in bs])
    path = save_model(tmp_path / "dbm.safetensors", t, note="test")
    j = load_model(path, backend="jax")
    assert isinstance(j, nfe.DBM) and j.sizes == (4, 3, 2)
    assert float(j.log_partition()) == pytest.approx(float(t.log_partition()), abs=1e-4)
    x = jax.numpy.ones((2, 9))
    out = jax.jit(lambda d, x: d.log_prob(x))(j, x)
    np.testing.assert_allclose(np.asarray(out), np.asarray(j.log_prob(x)), atol=1e-6)
    site = j.visible()
    out = jax.jit(lambda s, v: s.log_prob(v))(site, x[:, :4])
    np.testing.assert_allclose(np.asarray(out), np.asarray(site.log_prob(x[:, :4])), atol=1e-5)


def test_bad_input(backend):
    fe = frontend(backend)
    ws, bs = tiny(0, (3, 2, 2))
    dbm = make_dbm(backend, ws, bs)
    with pytest.raises(TypeError, match="weights must be a list"):
        fe.DBM(backend.array(ws[0]), [backend.array(b) for b in bs])
    with pytest.raises(ValueError, match="one entry per layer"):
        fe.DBM([backend.array(w) for w in ws], [backend.array(b) for b in bs[:2]])
    bad = [w.copy() for w in ws]
    bad[1][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"weights\[1\] contains NaN"):
        make_dbm(backend, bad, bs)
    with backend.out_of_support("binary"):
        dbm.log_prob(backend.array(np.full((2, 7), 0.5, np.float32)))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 7\)"):
        dbm.log_prob(backend.array(np.zeros((2, 6), np.float32)))
    with pytest.raises(ValueError, match="num_iters must be a positive int"):
        dbm.visible(num_iters=0)
    with pytest.raises(ValueError, match="damping must be a float in"):
        dbm.mean_field(backend.array(np.zeros((1, 3), np.float32)), damping=1.0)
    with pytest.raises(ValueError, match="layer must be an int"):
        dbm.conditional_logits(backend.array(np.zeros((1, 7), np.float32)), 3)
    with pytest.raises(TypeError, match="base must be None"):
        dbm.ais_base("uniform")
    with pytest.raises(ValueError, match="one vector per layer"):
        dbm.ais_base(backend.array(np.zeros(5, np.float32)))


def test_augmented_network_starts_at_the_mean_field_marginals(backend):
    """Figure 8: initialised from the DBM and fed ``[v, q_2, ..., q_L]`` at the mean-field
    fixed point, every hidden layer of the network equals the mean-field marginal."""
    from ebm_ppl.models.dbm import augmented_logits, classifier_params

    ws, bs = tiny(95, (6, 5, 4, 3))
    dbm = make_dbm(backend, ws, bs)
    rng = np.random.default_rng(0)
    v = backend.array((rng.random((7, 6)) < 0.5).astype(np.float32))
    mus = dbm.mean_field(v, num_iters=500)
    x = dbm.augment(v, num_iters=500)
    assert tuple(x.shape) == (7, 6 + 4 + 3)
    p = classifier_params(dbm.dbm_params, backend.array(np.eye(3, 2, dtype=np.float32)), 2)
    # the "output layer" here is the identity on the top layer's first two units, so the
    # logits are the top marginals themselves
    out = backend.np(augmented_logits(p["weights"], p["down"], p["biases"], x))
    np.testing.assert_allclose(out, backend.np(mus[3])[:, :2], atol=1e-5)
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        classifier_params(dbm.dbm_params, p["weights"][-1], 1)


def test_dbm_fine_tuning_learns_and_backends_agree():
    """Backprop through the augmented-input network lowers the training error, and the Pyro
    and NumPyro networks follow the same trajectory from the same start."""
    import jax
    import jax.numpy as jnp
    import optax
    import torch

    import ebm_ppl.numpyro as nfe
    import ebm_ppl.pyro as pfe
    from ebm_ppl.datasets import binarize, load_digits

    x, y = load_digits("train")
    x = binarize(x)[:500]
    y = np.asarray(y[:500])
    ws, bs = tiny(96, (64, 16, 12), scale=1.0)
    t = pfe.DBM([torch.tensor(w) for w in ws], [torch.tensor(b) for b in bs])
    j = nfe.DBM([jnp.asarray(w) for w in ws], [jnp.asarray(b) for b in bs])
    xt = t.augment(torch.tensor(x))
    xj = j.augment(jnp.asarray(x))
    np.testing.assert_allclose(xt.numpy(), np.asarray(xj), atol=1e-5)
    clf = pfe.DBMClassifier(t, 10, generator=torch.Generator().manual_seed(0))
    params = nfe.dbm_classifier_init(j, 10, jax.random.PRNGKey(0))
    params["weights"][-1] = jnp.asarray(clf.weights[-1].detach().numpy())
    before = pfe.classification_error(clf, xt, y)
    hist_t = pfe.fine_tune(
        clf,
        xt,
        torch.tensor(y),
        num_epochs=10,
        batch_size=50,
        lr=0.5,
        momentum=0.9,
        progress_bar=False,
    )
    params, hist_j = nfe.fine_tune(
        params,
        xj,
        jnp.asarray(y),
        optax.sgd(0.5, momentum=0.9),
        num_epochs=10,
        batch_size=50,
        progress_bar=False,
    )
    assert hist_t[-1]["train_error"] < min(0.5, before - 0.3)
    for a, b in zip(hist_t, hist_j):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3, abs=1e-4)
    assert pfe.classification_error(clf, xt, y) == pytest.approx(
        nfe.classification_error(params, xj, y), abs=0.01
    )
    with pytest.raises(ValueError, match=r"x must have shape"):
        pfe.fine_tune(clf, torch.tensor(x), torch.tensor(y), num_epochs=1, progress_bar=False)


# --------------------------------------------------------------------------------------
# Gaussian visible units
# --------------------------------------------------------------------------------------

GSIZES = (2, 3, 2)
SIGMA = np.array([0.8, 1.3], np.float32)


def gaussian_exact(ws, bs, sigma=SIGMA):
    """log Z, p(h1, h2) and log p(v) by enumerating the hidden layers and integrating v on a
    fine 2-D grid (independent of the closed-form Gaussian integral in the package)."""
    h = np.array(list(itertools.product([0, 1], repeat=5)), dtype=np.float64)
    h1, h2 = h[:, :3], h[:, 3:]
    mean = bs[0] + sigma * (h1 @ ws[0].T)  # (32, 2): the conditional means of v
    grids = [np.linspace(-12, 12, 481) * s for s in sigma]
    step = np.prod([g[1] - g[0] for g in grids])
    va, vb = np.meshgrid(*grids, indexing="ij")
    v = np.stack([va.ravel(), vb.ravel()], 1)  # (G, 2)

    def neg_e(vv, k):
        return (
            -(((vv - bs[0]) / sigma) ** 2).sum(-1) / 2
            + (vv / sigma) @ ws[0] @ h1[k]
            + h1[k] @ ws[1] @ h2[k]
            + h1[k] @ bs[1]
            + h2[k] @ bs[2]
        )

    log_w = np.array([lse(neg_e(v, k)) + np.log(step) for k in range(32)])
    log_z = lse(log_w)

    def log_pv(vv):
        return lse(np.array([neg_e(vv[None], k)[0] for k in range(32)])) - log_z

    del mean
    return log_z, np.exp(log_w - log_z), log_pv


def make_gdbm(backend, ws, bs):
    return frontend(backend).DBM(
        [backend.array(w) for w in ws], [backend.array(b) for b in bs], sigma=backend.array(SIGMA)
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_gaussian_dbm_log_z_bound_and_rbm_limit(backend, seed):
    ws, bs = tiny(100 + seed, GSIZES)
    dbm = make_gdbm(backend, ws, bs)
    log_z, _, log_pv = gaussian_exact(ws, bs)
    assert float(backend.np(dbm.log_partition())) == pytest.approx(log_z, abs=1e-3)
    rng = np.random.default_rng(seed)
    v = (bs[0] + SIGMA * rng.standard_normal((5, 2))).astype(np.float32)
    bound = backend.np(dbm.mean_field_bound(backend.array(v), log_z, num_iters=300))
    exact = np.array([log_pv(x.astype(np.float64)) for x in v])
    assert np.all(bound <= exact + 1e-4)
    # W2 = 0: a Gaussian RBM times independent top units
    ws0 = [ws[0], np.zeros_like(ws[1])]
    g = backend.GaussianRBM(
        backend.array(ws[0]), backend.array(bs[0]), backend.array(bs[1]), backend.array(SIGMA)
    )
    expected = float(backend.np(g.log_partition())) + float(np.logaddexp(0, bs[2]).sum())
    got = float(backend.np(make_gdbm(backend, ws0, bs).log_partition()))
    assert got == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_gaussian_dbm_gibbs_and_ais(backend, seed):
    from conftest import chi2_pvalue, state_index

    fe = frontend(backend)
    ws, bs = tiny(110 + seed, GSIZES)
    dbm = make_gdbm(backend, ws, bs)
    log_z, p_h, _ = gaussian_exact(ws, bs)
    key = backend.key(seed)
    x = dbm.sample(key, (6000,)) if backend.name == "jax" else dbm.sample((6000,))
    x = backend.np(x)
    assert not np.all(np.isin(x[:, :2], [0.0, 1.0]))  # real-valued v
    counts = np.bincount(state_index(x[:, 2:]), minlength=32)
    assert chi2_pvalue(counts, p_h) > 1e-4
    for carry in ("odd", "even"):  # v summed out, or v carried (real-valued AIS state)
        kw = {"rng_key": backend.key(seed)} if backend.name == "jax" else {}
        path = dbm.ais_path(None, carry=carry)
        res = fe.AIS(dbm, path, np.linspace(0, 1, 500), num_runs=100, progress_bar=False, **kw)
        assert abs(res.log_z - log_z) < 4 * res.log_z_stderr + 1e-3


def test_gaussian_dbm_cross_backend_save_and_errors(tmp_path):
    import jax.numpy as jnp
    import torch
    from conftest import Backend

    from ebm_ppl.io import load_model, save_model

    ws, bs = tiny(120, GSIZES)
    t, j = make_gdbm(Backend("torch"), ws, bs), make_gdbm(Backend("jax"), ws, bs)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal((6, 2)), rng.integers(0, 2, (6, 5))], axis=1).astype(
        np.float32
    )
    np.testing.assert_allclose(
        t.log_prob(torch.tensor(x)).numpy(), np.asarray(j.log_prob(jnp.asarray(x))), atol=1e-5
    )
    v = x[:, :2]
    for a, b in zip(t.mean_field(torch.tensor(v)), j.mean_field(jnp.asarray(v))):
        np.testing.assert_allclose(a.numpy(), np.asarray(b), atol=1e-5)
    back = load_model(save_model(tmp_path / "g.safetensors", t), backend="jax")
    np.testing.assert_allclose(np.asarray(back.sigma), SIGMA)
    assert float(back.log_partition()) == pytest.approx(float(t.log_partition()), abs=1e-4)
    with pytest.raises(ValueError, match="sigma must be positive"):
        make_gdbm(Backend("torch"), ws, bs).__class__(
            [torch.tensor(w) for w in ws], [torch.tensor(b) for b in bs], sigma=-1.0
        )
    with pytest.raises(ValueError, match="sigma must broadcast"):
        type(t)([torch.tensor(w) for w in ws], [torch.tensor(b) for b in bs], sigma=torch.ones(3))
    with pytest.raises(ValueError, match="NaN or infinite"):
        t.mean_field(torch.tensor([[np.nan, 0.0]]))
    with pytest.raises(ValueError, match="binary"):
        t.log_prob(torch.tensor(np.concatenate([v, np.full((6, 5), 0.5, np.float32)], 1)))


@pytest.mark.parametrize("seed", [0, 1])
def test_gaussian_dbm_learns_sigma_and_raises_the_bound(seed):
    """SA-MLE on a Gaussian DBM with a learned sigma: the exact mean-field bound rises and
    sigma moves from 1 towards the data's spread (0.7)."""
    import pyro
    import torch
    from pyro.distributions import constraints

    import ebm_ppl.pyro as fe

    rng = np.random.default_rng(seed)
    data = torch.tensor((0.7 * rng.standard_normal((200, 2)) + 0.5).astype(np.float32))
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)

    def model(batch):
        w = [pyro.param("W1", 0.1 * torch.randn(2, 3)), pyro.param("W2", 0.1 * torch.randn(3, 2))]
        b = [pyro.param(f"b{i}", torch.zeros(n)) for i, n in enumerate((2, 3, 2))]
        s = pyro.param("sigma", torch.ones(2), constraint=constraints.positive)
        with pyro.plate("data", batch.shape[0]):
            pyro.sample("v", fe.DBM(w, b, sigma=s).visible(), obs=batch)

    def bound():
        st = pyro.get_param_store()
        d = fe.DBM(
            [st["W1"].detach(), st["W2"].detach()],
            [st[f"b{i}"].detach() for i in range(3)],
            sigma=st["sigma"].detach(),
        )
        return float(d.mean_field_bound(data, d.log_partition()).mean())

    tr = fe.SAMLE(model, pyro.optim.SGD({"lr": 0.05}), num_gibbs_steps=2, num_chains=100)
    tr.step(data)  # one update on all 200 points (step has no epochs; run then continues)
    before = bound()
    tr.run(data, num_epochs=30, batch_size=50, progress_bar=False)
    assert bound() > before + 0.2
    assert np.all(np.abs(pyro.param("sigma").detach().numpy() - 0.7) < 0.15)


@pytest.mark.parametrize("backend_name", ["torch", "jax"])
def test_mean_field_contrast_statistics_match_autodiff_through_the_energy(backend_name):
    """The binary DBM's surrogate, evaluated from the sufficient statistics (one product per
    weight and phase), has the value and gradient of autodiff through ``E``."""
    from ebm_ppl.models.dbm import mean_field_contrast

    sizes = (5, 4, 3)
    ws, bs = tiny(7, sizes)
    rng = np.random.default_rng(3)
    mus = [rng.integers(0, 2, size=(6, sizes[0])).astype(np.float32)]
    mus += [rng.random((6, n)).astype(np.float32) for n in sizes[1:]]
    chains = [rng.integers(0, 2, size=(2, 4, n)).astype(np.float32) for n in sizes]
    w_d, w_m = 1.0 / 6, 1.0 / 8

    def reference(p):
        return w_d * energy(p, mus_b).sum() - w_m * energy(p, chains_b).sum()

    if backend_name == "torch":
        import torch

        mus_b, chains_b = [torch.tensor(m) for m in mus], [torch.tensor(c) for c in chains]
        params = [torch.tensor(a, requires_grad=True) for a in ws + bs]
        p = DBMParams(tuple(params[:2]), tuple(params[2:]))
        got, want = mean_field_contrast(p, mus_b, chains_b, w_d, w_m), reference(p)
        g_got = torch.autograd.grad(got, params)
        g_want = torch.autograd.grad(want, params)
        got, want = got.item(), want.item()
        g_got, g_want = [g.numpy() for g in g_got], [g.numpy() for g in g_want]
    else:
        import jax
        import jax.numpy as jnp

        mus_b, chains_b = [jnp.asarray(m) for m in mus], [jnp.asarray(c) for c in chains]

        def f(fn, prm):
            return fn(DBMParams(tuple(prm[:2]), tuple(prm[2:])))

        prm = [jnp.asarray(a) for a in ws + bs]
        new = lambda p: mean_field_contrast(p, mus_b, chains_b, w_d, w_m)  # noqa: E731
        got, g_got = jax.value_and_grad(lambda q: f(new, q))(prm)
        want, g_want = jax.value_and_grad(lambda q: f(reference, q))(prm)
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5, atol=1e-5)
    for a, b in zip(g_got, g_want):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
