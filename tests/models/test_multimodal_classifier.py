"""The multimodal DBM's fine-tuning network (Figure 8 carried over to the two pathways):
against a hand-written float64 forward pass in pathway form, the mean-field fixed point it
starts from, both backends, and fine-tuning through each frontend."""

from __future__ import annotations

import numpy as np
import pytest

from tests.models.test_multimodal import build, frontend, tiny

SIZES_1 = {"D": 4, "image": (3,), "joint": 2, "text": (3,), "K": 5}  # one layer per pathway
SIZES_2 = {"D": 4, "image": (3, 2), "joint": 3, "text": (2, 3), "K": 5}
SIZES_3 = {"D": 3, "image": (2, 3, 2), "joint": 2, "text": (3,), "K": 4}


def sig(x):
    return 1 / (1 + np.exp(-x))


def hand_logits(pw, sigma, down_img, down_txt, out_w, out_b, vm, vt, q_img, q_txt, tops=False):
    """The network written in pathway form, float64. ``q_img[i]`` is the marginal that image
    layer ``i`` (0-based, bottom up) reads from above (the next image layer, or the joint
    layer for the top one); ``q_txt`` likewise for the text layers; ``down_*[i]`` the
    matching weights ``(n_above, n_i)``."""
    f = {
        k: ([np.asarray(x, np.float64) for x in v] if isinstance(v, list) else np.asarray(v))
        for k, v in pw.items()
    }
    h = vm / sigma
    for i, w in enumerate(f["image_weights"]):
        h = sig(h @ w + q_img[i] @ down_img[i] + f["image_biases"][i + 1])
    h_img = h
    m = vt.sum(-1, keepdims=True)
    h = vt
    for i, w in enumerate(f["text_weights"]):
        scale = m if i == 0 else 1.0
        h = sig(h @ w + q_txt[i] @ down_txt[i] + scale * f["text_biases"][i + 1])
    h_txt = h
    h_joint = sig(h_img @ f["joint_weights"][0] + h_txt @ f["joint_weights"][1] + f["joint_bias"])
    read = np.concatenate([h_img, h_joint, h_txt], -1) if tops else h_joint
    return read @ out_w + out_b


def random_case(seed, sizes):
    """A tiny model and random network inputs/weights in both layouts."""
    rng = np.random.default_rng(seed)
    pw = tiny(seed, sizes, scale=0.8)
    n_img = list(sizes["image"]) + [sizes["joint"]]
    n_txt = list(sizes["text"]) + [sizes["joint"]]
    down_img = [rng.standard_normal((n_img[i + 1], n_img[i])) for i in range(len(n_img) - 1)]
    down_txt = [rng.standard_normal((n_txt[i + 1], n_txt[i])) for i in range(len(n_txt) - 1)]
    n = 6
    vm = rng.standard_normal((n, sizes["D"]))
    vt = rng.multinomial(3, np.ones(sizes["K"]) / sizes["K"], size=n).astype(np.float64)
    vt[0] = 0.0  # an untagged item
    return pw, down_img, down_txt, vm, vt, rng


@pytest.mark.parametrize("readout", ["joint", "tops"])
@pytest.mark.parametrize("sizes", [SIZES_1, SIZES_2, SIZES_3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_logits_match_hand_written_network(backend, sizes, seed, readout):
    """Arbitrary down weights and marginals (not a fixed point): the chain-form network
    equals the pathway-form one written out by hand, untagged rows included."""
    from ebm_ppl.models.multimodal import (
        augmented_layers,
        multimodal_augmented_input_size,
        multimodal_augmented_logits,
    )

    pw, down_img, down_txt, vm, vt, rng = random_case(seed, sizes)
    sigma = 0.7
    d = build(backend, pw, sigma=sigma)
    p = d.mm_params
    top, j = len(p.weights), p.joint
    n = vm.shape[0]
    # one marginal per hidden chain layer that the network reads
    q = {i: rng.uniform(size=(n, d.sizes[i])) for i in augmented_layers(j, top)}
    n_read = d.sizes[j] if readout == "joint" else sum(d.sizes[j - 1 : j + 2])
    out_w, out_b = rng.standard_normal((n_read, 4)), rng.standard_normal(4)
    # chain form: image D_i reads q_(i+1); text D_i (chain index i > J) reads q_(i-1)
    image_down = [down_img[i - 1] for i in range(1, j)]
    text_down = [down_txt[top - 1 - i] for i in range(j + 1, top)]
    a = backend.array
    x = np.concatenate([vm / sigma, vt] + [q[i] for i in augmented_layers(j, top)], 1)
    weights = list(p.weights)
    got = multimodal_augmented_logits(
        weights + [a(out_w)],
        [a(w) for w in image_down],
        [a(w) for w in text_down],
        list(p.biases[1:top]) + [a(out_b)],
        a(x),
    )
    assert (
        multimodal_augmented_input_size(weights + [a(out_w)], image_down, text_down) == x.shape[1]
    )
    q_img = [q[i + 1] for i in range(1, j)]
    q_txt = [q[i - 1] for i in range(top - 1, j, -1)]
    want = hand_logits(
        pw, sigma, down_img, down_txt, out_w, out_b, vm, vt, q_img, q_txt, readout == "tops"
    )
    np.testing.assert_allclose(backend.np(got), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("readout", ["joint", "tops"])
@pytest.mark.parametrize("sizes", [SIZES_1, SIZES_2, SIZES_3])
@pytest.mark.parametrize("seed", [3, 4, 5])
def test_starts_at_the_mean_field_fixed_point(backend, sizes, seed, readout):
    """Initialised from the DBM and fed ``dbm.augment(image, text)`` at the converged fixed
    point, the network's joint layer equals the mean-field joint marginals (identity output
    weights read the joint layer itself)."""
    from ebm_ppl.models.multimodal import (
        multimodal_augmented_logits,
        multimodal_classifier_params,
        readout_size,
    )

    pw, _, _, vm, vt, _ = random_case(seed, sizes)
    d = build(backend, pw, sigma=1.3)
    a = backend.array
    kw = {"num_iters": 2000, "tol": None}
    x = d.augment(a(vm), a(vt), **kw)
    n_read = readout_size(d.mm_params, readout)
    p = multimodal_classifier_params(d.mm_params, a(np.eye(n_read)), n_read)
    got = multimodal_augmented_logits(p["weights"], p["image_down"], p["text_down"], p["biases"], x)
    want = d.representation(a(vm), a(vt), with_pathway_tops=readout == "tops", **kw)
    np.testing.assert_allclose(backend.np(got), backend.np(want), atol=2e-5)


@pytest.mark.parametrize("readout", ["joint", "tops"])
def test_backends_agree_and_fine_tune_lowers_the_loss(readout):
    """The same model in both frontends: the same augmented input, the same initial logits
    (same output weights), and SGD fine-tuning that takes the training error down in both,
    by the same updates."""
    import jax
    import jax.numpy as jnp
    import optax
    import torch

    import ebm_ppl.numpyro as nfe
    import ebm_ppl.pyro as pfe

    sizes = {"D": 6, "image": (5, 4), "joint": 4, "text": (3, 3), "K": 5}
    pw = tiny(7, sizes, scale=0.5)
    rng = np.random.default_rng(7)
    n = 200
    y = rng.integers(0, 3, n)
    vm = rng.standard_normal((n, 6)) + 3.0 * np.eye(6)[y]  # the class moves pixel y
    vt = rng.multinomial(2, np.ones(5) / 5, size=n).astype(np.float64)
    t = pfe.MultimodalDBM(
        **{
            k: ([torch.tensor(x) for x in v] if isinstance(v, list) else torch.tensor(v))
            for k, v in pw.items()
        },
        sigma=1.0,
    )
    j = nfe.MultimodalDBM(
        **{
            k: ([jnp.asarray(x) for x in v] if isinstance(v, list) else jnp.asarray(v))
            for k, v in pw.items()
        },
        sigma=1.0,
    )
    xt = t.augment(torch.tensor(vm, dtype=torch.float32), torch.tensor(vt, dtype=torch.float32))
    xj = j.augment(jnp.asarray(vm, jnp.float32), jnp.asarray(vt, jnp.float32))
    np.testing.assert_allclose(xt.numpy(), np.asarray(xj), atol=1e-5)
    clf = pfe.MultimodalDBMClassifier(
        t, 3, generator=torch.Generator().manual_seed(0), readout=readout
    )
    params = nfe.multimodal_classifier_init(j, 3, jax.random.PRNGKey(0), readout=readout)
    assert clf.input_size == xt.shape[1]
    params["weights"][-1] = jnp.asarray(clf.weights[-1].detach().numpy())
    np.testing.assert_allclose(
        clf(xt).detach().numpy(), np.asarray(nfe.classifier_logits(params, xj)), atol=1e-5
    )
    before = pfe.classification_error(clf, xt, y)
    hist_t = pfe.fine_tune(
        clf, xt, torch.tensor(y), num_epochs=30, batch_size=20, lr=0.1, progress_bar=False
    )
    params, hist_j = nfe.fine_tune(
        params,
        xj,
        jnp.asarray(y),
        optax.sgd(0.1, momentum=0.9),
        num_epochs=30,
        batch_size=20,
        progress_bar=False,
    )
    after_t = pfe.classification_error(clf, xt, y)
    after_j = nfe.classification_error(params, xj, jnp.asarray(y))
    assert after_t < before - 0.2 and after_j < before - 0.2
    # the same minibatch orders and updates: the same trajectory up to float32 rounding
    np.testing.assert_allclose(
        [h["train_loss"] for h in hist_t], [h["train_loss"] for h in hist_j], rtol=1e-3
    )
    np.testing.assert_allclose(
        clf(xt).detach().numpy(), np.asarray(nfe.classifier_logits(params, xj)), atol=1e-3
    )


def test_bad_input(backend):
    from ebm_ppl.models.multimodal import multimodal_classifier_params, readout_size

    fe = frontend(backend)
    d = build(backend, tiny(0), sigma=1.0)
    with pytest.raises(ValueError, match="num_classes"):
        multimodal_classifier_params(d.mm_params, backend.array(np.zeros((2, 1))), 1)
    with pytest.raises(ValueError, match="out_weights"):
        multimodal_classifier_params(d.mm_params, backend.array(np.zeros((3, 2))), 2)
    with pytest.raises(ValueError, match="readout"):
        readout_size(d.mm_params, "every")
    if backend.name == "torch":
        with pytest.raises(TypeError, match="MultimodalDBM"):
            fe.MultimodalDBMClassifier(object(), 2)
        with pytest.raises(ValueError, match="num_classes"):
            fe.MultimodalDBMClassifier(d, 1)
    else:
        import jax

        with pytest.raises(TypeError, match="MultimodalDBM"):
            fe.multimodal_classifier_init(object(), 2, jax.random.PRNGKey(0))
        with pytest.raises(ValueError, match="num_classes"):
            fe.multimodal_classifier_init(d, 1, jax.random.PRNGKey(0))
