"""Multimodal DBM math against exact enumeration of tiny models (both backends)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

# image D, image layers, joint, text layers (top down), K words
SIZES = {"D": 2, "image": (2, 2), "joint": 2, "text": (2, 2), "K": 3}


def tiny(seed, sizes=SIZES, scale=0.9):
    rng = np.random.default_rng(seed)

    def r(*s):
        return (scale * rng.standard_normal(s)).astype(np.float32)

    im, tx = (sizes["D"],) + sizes["image"], (sizes["K"],) + sizes["text"]
    return {
        "image_weights": [r(a, b) for a, b in zip(im, im[1:])],
        "image_biases": [r(n) for n in im],
        "text_weights": [r(a, b) for a, b in zip(tx, tx[1:])],
        "text_biases": [r(n) for n in tx],
        "joint_weights": [r(im[-1], sizes["joint"]), r(tx[-1], sizes["joint"])],
        "joint_bias": r(sizes["joint"]),
    }


def frontend(backend):
    if backend.name == "torch":
        import ebm_ppl.pyro as fe
    else:
        import ebm_ppl.numpyro as fe
    return fe


def build(backend, pw, **kw):
    conv = {
        k: ([backend.array(x) for x in v] if isinstance(v, list) else backend.array(v))
        for k, v in pw.items()
    }
    return frontend(backend).MultimodalDBM(**conv, **kw)


def docs(k, m):
    """Every count vector of ``m`` words over ``k`` words, float64 ``(S, k)``."""
    out = [c for c in itertools.product(range(m + 1), repeat=k) if sum(c) == m]
    return np.array(out, dtype=np.float64).reshape(-1, k)


def log_coef(v):
    from math import lgamma

    return np.array([lgamma(r.sum() + 1) - sum(lgamma(x + 1) for x in r) for r in v])


def hand_neg_energy(pw, vm, hm, hj, ht, vt, sigma=None):
    """``-E`` of eq. 42 written in the pathway form (not the chain), float64; ``hm`` and
    ``ht`` are lists bottom-up."""
    f = {
        k: (
            [np.asarray(x, np.float64) for x in v]
            if isinstance(v, list)
            else np.asarray(v, np.float64)
        )
        for k, v in pw.items()
    }
    m = vt.sum(-1)
    out = 0.0
    x = vm / sigma if sigma is not None else vm
    out += np.einsum("ni,ij,nj->n", x, f["image_weights"][0], hm[0])
    out += np.einsum("ni,ij,nj->n", hm[0], f["image_weights"][1], hm[1])
    out += np.einsum("ni,ij,nj->n", vt, f["text_weights"][0], ht[0])
    out += np.einsum("ni,ij,nj->n", ht[0], f["text_weights"][1], ht[1])
    out += np.einsum("ni,ij,nj->n", hm[1], f["joint_weights"][0], hj)
    out += np.einsum("ni,ij,nj->n", ht[1], f["joint_weights"][1], hj)
    if sigma is None:
        out += vm @ f["image_biases"][0]
    else:
        out -= (((vm - f["image_biases"][0]) / sigma) ** 2).sum(-1) / 2
    out += hm[0] @ f["image_biases"][1] + hm[1] @ f["image_biases"][2]
    out += (
        vt @ f["text_biases"][0] + m * (ht[0] @ f["text_biases"][1]) + ht[1] @ f["text_biases"][2]
    )
    out += hj @ f["joint_bias"]
    return out


def all_hidden(sizes=SIZES):
    """Every hidden state as ``(hm, hj, ht)`` lists of float64 arrays."""
    ns = list(sizes["image"]) + [sizes["joint"]] + list(sizes["text"])
    x = np.array(list(itertools.product([0, 1], repeat=sum(ns))), dtype=np.float64)
    cuts = np.cumsum([0] + ns)
    parts = [x[:, a:b] for a, b in zip(cuts, cuts[1:])]
    return parts[:2], parts[2], parts[3:]


def lse(x, axis=None):
    m = np.max(x, axis=axis, keepdims=True)
    out = m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))
    return out.squeeze() if axis is None else np.squeeze(out, axis)


def exact_log_joint(pw, vm, vt, sigma=None):
    """Unnormalized ``log p~(v^m, v^t)`` for each pair of rows (hidden layers enumerated)."""
    hm, hj, ht = all_hidden()
    s = len(hj)
    out = []
    for a, b in zip(vm, vt):
        ne = hand_neg_energy(
            pw, np.repeat(a[None], s, 0), hm, hj, ht, np.repeat(b[None], s, 0), sigma
        )
        out.append(lse(ne) + log_coef(b[None])[0])
    return np.array(out)


def to_value(layers):
    return np.concatenate(layers, axis=-1)


# --------------------------------------------------------------------------------------


def test_chain_round_trip_and_energy_matches_eq_42(backend):
    pw = tiny(0)
    d = build(backend, pw, sigma=0.7)
    assert d.sizes == (2, 2, 2, 2, 2, 2, 3) and d.joint == 3
    back = d.pathways()
    for k, v in pw.items():
        got = back[k] if isinstance(v, list) else [back[k]]
        want = v if isinstance(v, list) else [v]
        for g, w in zip(got, want):
            np.testing.assert_array_equal(backend.np(g), w)
    rng = np.random.default_rng(1)
    n = 50
    vm = rng.standard_normal((n, 2))
    hm = [rng.integers(0, 2, (n, 2)).astype(float) for _ in range(2)]
    hj = rng.integers(0, 2, (n, 2)).astype(float)
    ht = [rng.integers(0, 2, (n, 2)).astype(float) for _ in range(2)]
    vt = rng.integers(0, 3, (n, 3)).astype(float)
    x = to_value([vm, hm[0], hm[1], hj, ht[1], ht[0], vt])
    want = hand_neg_energy(pw, vm, hm, hj, ht, vt, sigma=0.7)
    got = backend.np(d.log_prob(backend.array(x)))
    np.testing.assert_allclose(got, want + log_coef(vt), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(backend.np(d.energy(backend.array(x))), -want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("m", [0, 1, 3])
def test_log_partition_binary_image_matches_enumeration(backend, seed, m):
    pw = tiny(seed)
    d = build(backend, pw)
    vms = np.array(list(itertools.product([0, 1], repeat=2)), dtype=np.float64)
    vts = docs(3, m)
    pairs = [(a, b) for a in vms for b in vts]
    lj = exact_log_joint(pw, np.array([a for a, _ in pairs]), np.array([b for _, b in pairs]))
    assert float(d.log_partition(m)) == pytest.approx(lse(lj), abs=2e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_log_partition_gaussian_image_matches_quadrature(backend, seed):
    """One Gaussian image unit: ``Z(M)`` by trapezoidal quadrature over ``v^m``. Given the
    hidden layers the integrand is a Gaussian in ``v^m`` with standard deviation ``sigma``,
    for which the trapezoidal rule with spacing ``h`` has relative error about
    ``2 exp(-2 pi^2 sigma^2 / h^2)`` (below 1e-300 at h = 0.04, sigma = 0.8), and +-12 leaves
    out more than 9 sigma of every component; 601 points give the same value as 4001 to the
    last bit."""
    sizes = dict(SIZES, D=1)
    pw = tiny(seed + 10, sizes)
    sigma = 0.8
    d = build(backend, pw, sigma=sigma)
    grid = np.linspace(-12, 12, 601)
    vts = docs(3, 2)
    vals = []
    for b in vts:
        lj = exact_log_joint(pw, grid[:, None], np.repeat(b[None], len(grid), 0), sigma)
        mx = lj.max()
        vals.append(mx + np.log(np.trapezoid(np.exp(lj - mx), grid)))
    assert float(d.log_partition(2)) == pytest.approx(lse(np.array(vals)), abs=2e-4)


def test_conditionals_match_enumeration(backend):
    """Every hidden layer's conditional equals the ratio of exact joint probabilities; the
    text layer's conditional is the softmax of eq. 19 with the M-scaled bias below it."""
    pw = tiny(3)
    d = build(backend, pw)
    rng = np.random.default_rng(3)
    layers = [rng.integers(0, 2, (1, n)).astype(float) for n in d.sizes[:-1]]
    layers.append(np.array([[2.0, 0.0, 1.0]]))
    for i in range(1, len(layers) - 1):
        logits = backend.np(d.conditional_logits(backend.array(to_value(layers)), i))[0]
        for j in range(d.sizes[i]):
            on = [x.copy() for x in layers]
            off = [x.copy() for x in layers]
            on[i][0, j], off[i][0, j] = 1, 0
            ln = backend.np(d.log_prob(backend.array(to_value(on)))) - backend.np(
                d.log_prob(backend.array(to_value(off)))
            )
            assert logits[j] == pytest.approx(float(ln[0]), abs=1e-4)
    # text: p(v^t | h^(1t)) is Multinomial(M, softmax(logits))
    logits = backend.np(d.conditional_logits(backend.array(to_value(layers)), 6))[0]
    probs = np.exp(logits - lse(logits))
    cands = docs(3, 3)
    lp = []
    for c in cands:
        st = [x.copy() for x in layers[:-1]] + [c[None]]
        lp.append(float(backend.np(d.log_prob(backend.array(to_value(st))))[0]))
    lp = np.array(lp) - lse(np.array(lp))
    want = log_coef(cands) + cands @ np.log(probs)
    np.testing.assert_allclose(lp, want, atol=1e-4)


def _freq_check(samples, probs, n):
    """Every state's frequency within 4.5 standard errors (+ a small floor) of its exact
    probability, and total variation below a bound set by the number of states."""
    se = np.sqrt(probs * (1 - probs) / n)
    assert np.all(np.abs(samples - probs) <= 4.5 * se + 2e-3), np.abs(samples - probs).max()


@pytest.mark.parametrize("seed", [0, 1])
def test_fill_in_text_samples_the_exact_conditional(backend, seed):
    """Gibbs with the image clamped draws the text from the exact ``p(v^t | v^m)``, and
    with the text clamped the (binary) image from ``p(v^m | v^t)``."""
    pw = tiny(seed + 20)
    d = build(backend, pw, max_words=2)
    vm = np.array([1.0, 0.0])
    n = 4000
    key = backend.key(seed)
    out = d.fill_in(key, image=backend.array(np.tile(vm, (n, 1))), total_count=2, num_steps=40)
    text = backend.np(d.split(out["state"])[-1])
    cands = docs(3, 2)
    lj = exact_log_joint(pw, np.repeat(vm[None], len(cands), 0), cands)
    probs = np.exp(lj - lse(lj))
    freq = np.array([(text == c).all(-1).mean() for c in cands])
    _freq_check(freq, probs, n)
    assert out["word_probs"].shape == (1, n, 3) and out["image_mean"].shape == (1, n, 2)

    vt = np.array([0.0, 2.0, 1.0])
    key = backend.key(seed + 100)
    out = d.fill_in(key, text=backend.array(np.tile(vt, (n, 1))), num_steps=40, every=20)
    assert out["word_probs"].shape == (2, n, 3)
    img = backend.np(d.split(out["state"])[0])
    np.testing.assert_array_equal(backend.np(d.split(out["state"])[-1]), np.tile(vt, (n, 1)))
    vms = np.array(list(itertools.product([0, 1], repeat=2)), dtype=np.float64)
    lj = exact_log_joint(pw, vms, np.repeat(vt[None], 4, 0))
    probs = np.exp(lj - lse(lj))
    freq = np.array([(img == c).all(-1).mean() for c in vms])
    _freq_check(freq, probs, n)


def test_unclamped_gibbs_samples_the_exact_joint(backend):
    """Free-running chains (document length 1) visit ``(v^m, v^t)`` with the exact joint
    probabilities."""
    pw = tiny(30)
    d = build(backend, pw, total_count=1, num_gibbs_steps=40)
    n = 4000
    key = backend.key(30)
    x = d.sample(key, (n,)) if backend.name == "jax" else d.sample((n,))
    layers = d.split(x)
    vm, vt = backend.np(layers[0]), backend.np(layers[-1])
    vms = np.array(list(itertools.product([0, 1], repeat=2)), dtype=np.float64)
    vts = docs(3, 1)
    pairs = [(a, b) for a in vms for b in vts]
    lj = exact_log_joint(pw, np.array([a for a, _ in pairs]), np.array([b for _, b in pairs]))
    probs = np.exp(lj - lse(lj))
    freq = np.array([((vm == a).all(-1) & (vt == b).all(-1)).mean() for a, b in pairs])
    _freq_check(freq, probs, n)


@pytest.mark.parametrize("seed", [0, 1])
def test_mean_field_fixed_point_and_bound(backend, seed):
    """Both modalities observed: the marginals satisfy eq. 39-41 and the bound (exact log Z)
    lies below the exact ``log p(v^m, v^t)``. Text missing: the text marginal is
    ``M softmax(logits)`` at the fixed point."""
    from ebm_ppl.models.multimodal import layer_logits

    pw = tiny(seed + 40, scale=0.6)
    d = build(backend, pw, sigma=1.0)
    rng = np.random.default_rng(seed)
    vm = rng.standard_normal((5, 2))
    vt = np.array([[1, 0, 1], [0, 0, 2], [2, 0, 0], [0, 1, 1], [1, 1, 0]], dtype=np.float64)
    mus = d.mean_field(backend.array(vm), backend.array(vt), num_iters=300, tol=None)
    p = d.mm_params
    for i in range(1, 6):
        want = 1 / (1 + np.exp(-backend.np(layer_logits(p, mus, i))))
        np.testing.assert_allclose(backend.np(mus[i]), want, atol=1e-4)
    logz = d.log_partition(2)
    bound = backend.np(
        d.mean_field_bound(backend.array(vm), backend.array(vt), logz, num_iters=300, tol=None)
    )
    exact = exact_log_joint(pw, vm, vt, sigma=1.0) - float(logz)
    assert np.all(bound <= exact + 1e-4) and np.all(bound >= exact - 3.0)

    mus = d.mean_field(backend.array(vm), None, total_count=2, num_iters=300, tol=None)
    logits = backend.np(layer_logits(p, mus, 6))
    want = 2 * np.exp(logits - lse(logits, axis=-1)[:, None])
    np.testing.assert_allclose(backend.np(mus[6]), want, atol=1e-4)
    rep = backend.np(d.representation(backend.array(vm), total_count=2, num_iters=300, tol=None))
    np.testing.assert_allclose(rep, backend.np(mus[3]), atol=1e-5)


def test_sa_gradient_is_data_minus_model_statistics():
    """The SA surrogate's gradient: for each weight, ``-(mu_l mu_(l+1)^T averaged over data -
    x_l x_(l+1)^T averaged over chains)``; the M-scaled text bias gets ``M``-weighted
    statistics."""
    import torch

    import ebm_ppl.pyro as fe

    pw = tiny(50)
    tp = {
        k: (
            [torch.tensor(x, requires_grad=True) for x in v]
            if isinstance(v, list)
            else torch.tensor(v, requires_grad=True)
        )
        for k, v in pw.items()
    }
    d = fe.MultimodalDBM(**tp, sigma=1.0, total_count=2)
    site = d.visible(num_iters=50, tol=None)
    rng = np.random.default_rng(0)
    data = torch.tensor(
        np.concatenate([rng.standard_normal((6, 2)), rng.integers(0, 3, (6, 3))], -1),
        dtype=torch.float32,
    )
    torch.manual_seed(0)
    chains = d.init_chain(None, (8, sum(d.sizes)))
    loss = site.contrast(data, chains, 1.0 / 6, 1.0 / 8)
    g_w1t, g_b1t = torch.autograd.grad(-loss, [tp["text_weights"][0], tp["text_biases"][1]])
    mus = site.mean_field(data)
    layers = d.split(chains)
    want_w = (mus[6].T @ mus[5]) / 6 - (layers[6].T @ layers[5]) / 8
    want_b = (mus[6].sum(-1, keepdim=True) * mus[5]).mean(0) - (
        layers[6].sum(-1, keepdim=True) * layers[5]
    ).mean(0)
    np.testing.assert_allclose(g_w1t.numpy(), want_w.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(g_b1t.numpy(), want_b.detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_samle_raises_the_exact_bound(backend, seed):
    """SA-MLE with the visible site in the PPL's own trainer raises the exact mean-field
    bound (exact ``log Z(M)``) of bimodal data whose text depends on the image."""
    fe = frontend(backend)
    pw = tiny(60 + seed, scale=0.1)
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, 2, 300)
    img = np.stack([lab, 1 - lab], -1) + 0.3 * rng.standard_normal((300, 2))
    text = np.zeros((300, 3))
    text[np.arange(300), lab] = 2.0
    data_np = np.concatenate([img, text], -1).astype(np.float32)
    data = backend.array(data_np)

    def bound(params):
        d = build(backend, params, sigma=1.0)
        lz = d.log_partition(2)
        return float(backend.np(d.mean_field_bound(data[:, :2], data[:, 2:], lz)).mean())

    before = bound(pw)
    names = [(k, i) for k, v in pw.items() for i in range(len(v) if isinstance(v, list) else 1)]

    def assemble(get):
        out = {}
        for k, v in pw.items():
            out[k] = (
                [get(f"{k}{i}", x) for i, x in enumerate(v)] if isinstance(v, list) else get(k, v)
            )
        return out

    if backend.name == "torch":
        import pyro

        pyro.clear_param_store()
        backend.key(seed)

        def model(batch):
            prm = assemble(lambda n, x: pyro.param(n, backend.array(x)))
            with pyro.plate("data", batch.shape[0]):
                pyro.sample(
                    "x", fe.MultimodalDBM(**prm, sigma=1.0, total_count=2).visible(), obs=batch
                )

        tr = fe.SAMLE(model, pyro.optim.SGD({"lr": 0.05}), num_gibbs_steps=2, num_chains=100)
        tr.run(data, num_epochs=40, batch_size=50, progress_bar=False)
        store = pyro.get_param_store()
        new = assemble(lambda n, x: backend.np(store[n]))
    else:
        import numpyro
        import optax

        def model(batch):
            prm = assemble(lambda n, x: numpyro.param(n, backend.array(x)))
            with numpyro.plate("data", batch.shape[0]):
                numpyro.sample(
                    "x",
                    fe.MultimodalDBM(**prm, sigma=1.0, total_count=2, max_words=2).visible(),
                    obs=batch,
                )

        tr = fe.SAMLE(model, optax.sgd(0.05), num_gibbs_steps=2, num_chains=100)
        st = tr.run(backend.key(seed), data, num_epochs=40, batch_size=50, progress_bar=False)
        prm = tr.get_params(st)
        new = assemble(lambda n, x: np.asarray(prm[n]))
    assert len(names) == 13  # every parameter is trained
    after = bound(new)
    assert after > before + 0.5, (before, after)


def test_backends_agree_and_save_load(tmp_path):
    import jax
    import jax.numpy as jnp
    import torch

    import ebm_ppl.numpyro as nfe
    import ebm_ppl.pyro as pfe
    from ebm_ppl.io import load_model, save_model

    pw = tiny(70)
    t = pfe.MultimodalDBM(
        **{
            k: ([torch.tensor(x) for x in v] if isinstance(v, list) else torch.tensor(v))
            for k, v in pw.items()
        },
        sigma=0.9,
        total_count=2,
    )
    j = nfe.MultimodalDBM(
        **{
            k: ([jnp.asarray(x) for x in v] if isinstance(v, list) else jnp.asarray(v))
            for k, v in pw.items()
        },
        sigma=0.9,
        total_count=2,
    )
    rng = np.random.default_rng(0)
    vm = rng.standard_normal((4, 2)).astype(np.float32)
    vt = rng.integers(0, 3, (4, 3)).astype(np.float32)
    assert float(t.log_partition(3)) == pytest.approx(float(j.log_partition(3)), abs=1e-4)
    a = t.mean_field(torch.tensor(vm), torch.tensor(vt))
    b = j.mean_field(jnp.asarray(vm), jnp.asarray(vt))
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.numpy(), np.asarray(y), atol=1e-5)
    a = t.representation(torch.tensor(vm), total_count=2)
    b = j.representation(jnp.asarray(vm))
    np.testing.assert_allclose(a.numpy(), np.asarray(b), atol=1e-5)
    x = t.sample((3,))
    np.testing.assert_allclose(
        t.log_prob(x).numpy(), np.asarray(j.log_prob(jnp.asarray(x.numpy()))), atol=1e-4
    )
    path = save_model(tmp_path / "mm.safetensors", t)
    back = load_model(path, backend="jax")
    assert isinstance(back, nfe.MultimodalDBM) and back.sizes == t.sizes
    assert float(back.log_partition(2)) == pytest.approx(float(t.log_partition(2)), abs=1e-4)
    out = jax.jit(lambda d, x: d.log_prob(x))(j, jnp.asarray(x.numpy()))
    np.testing.assert_allclose(
        np.asarray(out), np.asarray(j.log_prob(jnp.asarray(x.numpy()))), atol=1e-5
    )
    site = j.visible()
    v = jnp.concatenate([jnp.asarray(vm), jnp.asarray(vt)], -1)
    out = jax.jit(lambda s, v: s.log_prob(v))(site, v)
    np.testing.assert_allclose(np.asarray(out), np.asarray(site.log_prob(v)), atol=1e-4)


def test_bad_input(backend):
    pw = tiny(80)
    fe = frontend(backend)
    conv = {
        k: ([backend.array(x) for x in v] if isinstance(v, list) else backend.array(v))
        for k, v in pw.items()
    }
    with pytest.raises(ValueError, match="same parity"):
        fe.MultimodalDBM(
            **dict(
                conv,
                text_weights=conv["text_weights"][:1],
                text_biases=conv["text_biases"][:2],
                joint_weights=[conv["joint_weights"][0], backend.array(np.zeros((2, 2)))],
            )
        )
    with pytest.raises(ValueError, match="joint_weights\\[1\\]"):
        fe.MultimodalDBM(
            **dict(conv, joint_weights=[conv["joint_weights"][0], backend.array(np.zeros((3, 2)))])
        )
    with pytest.raises(ValueError, match="text_biases"):
        fe.MultimodalDBM(**dict(conv, text_biases=conv["text_biases"][:2]))
    with pytest.raises(TypeError, match="image_weights\\[0\\]"):
        fe.MultimodalDBM(
            **dict(conv, image_weights=[np.zeros((2, 2)).tolist(), conv["image_weights"][1]])
        )
    with pytest.raises(ValueError, match="sigma"):
        fe.MultimodalDBM(**conv, sigma=-1.0)
    d = fe.MultimodalDBM(**conv)
    with pytest.raises(ValueError, match="document length"):
        d.init_chain(backend.key(0), (2, 15))
    bad = np.zeros((1, 15))
    bad[0, 12:] = 0.5
    with pytest.raises(ValueError, match="text layer"):
        d.log_prob(backend.array(bad))
    with pytest.raises(ValueError, match="total_count"):
        d.log_partition(1.5)
    with pytest.raises(ValueError, match="total_count"):
        d.mean_field(backend.array(np.zeros((1, 2))))
    with pytest.raises(ValueError, match="at least one"):
        d.fill_in(backend.key(0))
    from ebm_ppl.models.rbm import Clamp

    x = backend.array(np.zeros((2, 15)))
    mask = np.zeros((2, 15), bool)
    mask[:, 2] = True
    with pytest.raises(ValueError, match="only the image and text"):
        d.transition(backend.key(0), x, 1, Clamp(backend.array(mask, bool), x))
    mask = np.zeros((2, 15), bool)
    mask[:, 12] = True
    with pytest.raises(ValueError, match="whole or not at all"):
        d.transition(backend.key(0), x, 1, Clamp(backend.array(mask, bool), x))


def test_combine_pretrained_pathways(backend):
    """The documented recipe: bottom weights kept, the weights above halved, inner biases
    the mean of the two RBMs' biases, the M-scaled first text layer's bias from the RSM."""
    from ebm_ppl.models.multimodal import combine_pretrained_pathways

    rng = np.random.default_rng(0)

    def rbm(a, b):
        return tuple(backend.array(rng.standard_normal(s)) for s in ((a, b), (a,), (b,)))

    g1, g2, t1, t2, j = rbm(4, 3), rbm(3, 2), rbm(5, 3), rbm(3, 2), rbm(4, 3)
    pw = combine_pretrained_pathways([g1, g2], [t1, t2], j)
    d = frontend(backend).MultimodalDBM(**pw)
    assert d.sizes == (4, 3, 2, 3, 2, 3, 5)
    n = backend.np
    np.testing.assert_allclose(n(pw["image_weights"][0]), n(g1[0]))
    np.testing.assert_allclose(n(pw["image_weights"][1]), 0.5 * n(g2[0]))
    np.testing.assert_allclose(n(pw["image_biases"][1]), 0.5 * (n(g1[2]) + n(g2[1])))
    np.testing.assert_allclose(n(pw["image_biases"][2]), 0.5 * (n(g2[2]) + n(j[1])[:2]))
    np.testing.assert_allclose(n(pw["text_biases"][0]), n(t1[1]))
    np.testing.assert_allclose(n(pw["text_biases"][1]), n(t1[2]))
    np.testing.assert_allclose(n(pw["text_biases"][2]), 0.5 * (n(t2[2]) + n(j[1])[2:]))
    np.testing.assert_allclose(n(pw["joint_weights"][1]), 0.5 * n(j[0])[2:])
    np.testing.assert_allclose(n(pw["joint_bias"]), n(j[2]))
    with pytest.raises(ValueError, match="joint RBM"):
        combine_pretrained_pathways([g1, g2], [t1, t2], rbm(5, 3))
