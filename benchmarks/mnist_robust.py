"""A robust Boltzmann machine on MNIST with synthetic structured occlusions (NumPyro), and the
recognition experiment of the slides' AR-faces table (robust BM vs RBM vs pixels on
sunglasses / scarf occlusions).

The data: MNIST digits in pixel space, occluded by the documented generator of
:mod:`ebm_ppl.datasets.occlusions` (not real occlusions), then centred per pixel and scaled by one
global standard deviation (so that occluder values stay on the scale of ink). Stages, each
checkpointed under ``--out`` so a rerun resumes:

1. the clean-image model: a Gaussian RBM trained by CD-1 on *clean* training digits (the
   analogue of training on clean faces), with a learned per-pixel sigma (``--learn-sigma``,
   floor ``--sigma-min``): a sharp model of the background, so that an occluder there is
   not explained as noise; and, as a second feature extractor, the previous benchmark's
   fixed sigma = 1 Gaussian RBM (``--baseline-sigma``);
2. the RoBM: that Gaussian RBM plus a binary mask RBM learned from *occluded* training
   digits only (no generator masks). By default (``--mask-prior regions``,
   :func:`train_region_prior`) the mask RBM is fitted by PCD to the occluded *regions* of the
   flat-prior evidence masks (holes closed, specks dropped) of 10,000 occluded training
   digits; its hidden units sit on 6x6 patches, 2 pixels apart (hole filling in blocks; a
   2-3 pixel bar covers at most half a patch) plus 200 fully connected ones (whole shapes),
   and one setting, the offset of its visible bias, is chosen on validation digits (test
   digits 5000-5499, outside the evaluation set); the patch side, the number of digits and
   the offset grid were chosen on the same validation digits (RESULTS.md, 2026-12-07).
   ``--outlier mixture`` replaces the Gaussian outlier density by a Gaussian mixture fitted
   by EM to the pixels inside the regions (tried; not better). ``--mask-prior sa`` is the
   previous recipe: a mask RBM trained by SA-MLE on *occluded* training digits (mixed
   kinds) through ``RobustBM.visible()``: structured mean-field positive phase
   (``--collapsed``, ``--init-mask evidence``), persistent prior chains; the observation
   model is fixed (shown pixels ``N(x, tau^2)``, occluded ``N(grey,
   varsigma^2)``). No occlusion masks are used for training: the mask RBM learns from the
   occluded images only. By default only the mask RBM learns here (``--learn-clean``
   fine-tunes the clean RBM too; a 10-epoch run that did so at lr 0.001 / momentum 0.9
   converged to a degenerate solution in which the mask RBM switched off the digit strokes
   and the outlier distribution explained them);
3. evaluation on occluded test digits, per kind: inferred masks (pixel accuracy, IoU,
   recall and precision of the occluded region against the generator's masks) and clean
   images (mean field and blocked Gibbs); recognition accuracy of logistic regressions
   trained on clean training digits, applied to (a) the occluded pixels, (b) the plain
   Gaussian RBM's hidden probabilities of the occluded image, (c) the robust BM's inferred
   clean image, (d) the hidden probabilities of that image, (e) those of the clean image
   inferred with the *true* mask (a ceiling for mask inference), and the sigma = 1 RBM's
   features of the occluded and of the inferred image; the clean test digits as the
   ceiling; image grids; a Pyro check that the trained model gives the same inference in
   both backends.

One JSON line per measurement on stdout. Example::

    EBM_PPL_DATA=../shared/data python benchmarks/mnist_robust.py --out benchmarks/runs/robust
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax

import ebm_ppl.numpyro as enp
from ebm_ppl.datasets import load_mnist
from ebm_ppl.datasets.occlusions import occlude
from ebm_ppl.io import load_model, save_model

# stage 2 (the mask RBM by SA from occluded digits): the defaults of the reported run
MASK_HIDDEN, EPOCHS, LR, MOMENTUM, N_MASK = 200, 4, 0.01, 0.5, 60000


def emit(**kw):
    print(json.dumps(kw), flush=True)


def scale(x, mean, std):
    return ((np.asarray(x, np.float32) - mean) / std).astype(np.float32)


def train_clean(x, args, out, learn_sigma, sigma=None):
    """A Gaussian RBM by CD-1 on clean digits. ``learn_sigma`` > 0: per-pixel ``sigma_i =
    max(exp(l_i), sigma_min)`` is learned too, its log at ``learn_sigma`` times the weights'
    learning rate (from ``sigma``, default ``args.sigma``); 0: ``sigma`` stays fixed."""
    sigma0 = args.sigma if sigma is None else sigma
    tag = f"ls{learn_sigma:g}_min{args.sigma_min:g}" if learn_sigma else f"s{sigma0:g}"
    path = out / f"clean_{args.hidden}_{tag}.safetensors"
    if path.exists():
        return load_model(path, backend="jax")
    rng = np.random.default_rng(args.seed)
    w0 = jnp.asarray(0.01 * rng.standard_normal((784, args.hidden)), jnp.float32)

    def sigma_of(p):
        if not learn_sigma:
            return sigma0
        return jnp.maximum(jnp.exp(p), args.sigma_min)

    def model(batch):
        w = numpyro.param("W", w0)
        b = numpyro.param("b", jnp.zeros(784))
        c = numpyro.param("c", jnp.zeros(args.hidden))
        ls = numpyro.param("log_sigma", jnp.full(784, np.log(sigma0), jnp.float32))
        with numpyro.plate("data", batch.shape[0]):
            numpyro.sample("v", enp.GaussianRBM(w, b, c, sigma_of(ls)), obs=batch)

    steps = args.clean_epochs * (len(x) // 100)
    sched = optax.linear_schedule(args.clean_lr, args.clean_lr * 0.1, steps)
    opt = optax.chain(
        optax.add_decayed_weights(2e-4, mask=lambda p: {k: k == "W" for k in p}),
        optax.multi_transform(
            {
                "rbm": optax.sgd(sched, momentum=0.9),
                "sigma": optax.sgd(lambda t: learn_sigma * sched(t), momentum=0.9),
            },
            lambda p: {k: "sigma" if k == "log_sigma" else "rbm" for k in p},
        ),
    )
    tr = enp.SAMLE(model, opt, num_gibbs_steps=1, persistent=False)
    t0 = time.time()
    st = tr.run(jax.random.PRNGKey(args.seed), jnp.asarray(x), num_epochs=args.clean_epochs)
    p = tr.get_params(st)
    sigma = sigma_of(p["log_sigma"])
    d = enp.GaussianRBM(p["W"], p["b"], p["c"], sigma)
    save_model(path, d, seconds=time.time() - t0)
    emit(
        stage="clean_rbm",
        hidden=args.hidden,
        epochs=args.clean_epochs,
        learn_sigma=learn_sigma,
        sigma_quantiles_0_10_50_90_100=[
            round(float(a), 3)
            for a in np.quantile(np.asarray(sigma) + np.zeros(784), [0, 0.1, 0.5, 0.9, 1])
        ],
        recon=tr.history[-1]["recon_error"],
        seconds=round(time.time() - t0, 1),
    )
    return d


def noise_model(mean, std, args):
    """Shown pixels: N(x, tau^2); occluded: N(mu_i, varsigma^2) with mu_i the standardized
    grey level ``args.outlier_grey`` (occluders are ink bars or [0, 1] textures)."""
    return args.tau, scale(np.full(784, args.outlier_grey, np.float32), mean, std), args.varsigma


def fit_outlier_mixture(values, k, floor, iters=200, seed=0):
    """A ``k``-component Gaussian mixture fitted by EM to pixel ``values`` ``(n,)`` (pixel
    space): the occluded pixels' values. Returns ``(weights, loc, scale)``, each ``(k,)``;
    each scale is held at least ``floor`` (a narrow component on the ink value 1 would
    otherwise shrink to a spike and claim every saturated stroke pixel). Starts from locs
    spread over ``[0.1, 1]``, scales 0.3, equal weights; ``seed`` only for ties."""
    x = np.asarray(values, np.float64)
    del seed
    loc, scale, w = np.linspace(0.1, 1.0, k), np.full(k, 0.3), np.full(k, 1.0 / k)
    for _ in range(iters):
        lp = np.log(w) - 0.5 * ((x[:, None] - loc) / scale) ** 2 - np.log(scale)
        lp -= lp.max(1, keepdims=True)
        r = np.exp(lp)
        r /= r.sum(1, keepdims=True)
        nk = r.sum(0) + 1e-12
        w, loc = nk / nk.sum(), (r * x[:, None]).sum(0) / nk
        scale = np.maximum(np.sqrt((r * (x[:, None] - loc) ** 2).sum(0) / nk), floor)
    return w.astype(np.float32), loc.astype(np.float32), scale.astype(np.float32)


def mixture_noise(mix, mean, std, tau):
    """The observation model with the pixel-space mixture ``mix = (weights, loc, scale)`` as
    the outlier density, in the standardized units of the data (per-pixel locs ``(K, 784)``,
    scales ``(K, 1)``): ``(tau, loc, scale, weights)``, the arguments of ``RobustBM`` after
    the two RBMs."""
    w, loc, sc = (np.asarray(a, np.float32) for a in mix)
    return (
        tau,
        ((loc[:, None] - mean[None]) / std).astype(np.float32),
        (sc[:, None] / std).astype(np.float32),
        w,
    )


def train_robust(clean, x_occ, noise, args, out):
    path_c = out / "robust_clean.safetensors"
    path_m = out / "robust_mask.safetensors"
    if path_c.exists() and path_m.exists():
        return enp.RobustBM(
            load_model(path_c, backend="jax"), load_model(path_m, backend="jax"), *noise
        )
    rng = np.random.default_rng(args.seed + 1)
    init = {
        "W": clean.weights,
        "b": clean.visible_bias,
        "c": clean.hidden_bias,
        "U": jnp.asarray(0.01 * rng.standard_normal((784, args.mask_hidden)), jnp.float32),
        "d": jnp.full((784,), args.mask_bias, jnp.float32),
        "e": jnp.zeros(args.mask_hidden),
    }

    def build(q):
        if q["W"] is clean.weights:  # the clean RBM is held fixed
            c_rbm = clean
        else:  # its sigma stays fixed (tied to a parameter so that jit does not check it)
            c_rbm = enp.GaussianRBM(q["W"], q["b"], q["c"], clean.sigma + 0.0 * q["b"])
        return enp.RobustBM(c_rbm, enp.RBM(q["U"], q["d"], q["e"]), *noise)

    learned = ("W", "b", "c", "U", "d", "e") if args.learn_clean else ("U", "d", "e")

    def model(batch):
        q = {k: numpyro.param(k, v) if k in learned else v for k, v in init.items()}
        with numpyro.plate("data", batch.shape[0]):
            site = build(q).visible(
                num_iters=args.mf_iters,
                tol=None,
                collapsed=args.collapsed,
                init_mask=init_mask(args),
            )
            numpyro.sample("v", site, obs=batch)

    per_epoch = len(x_occ) // 100
    opt = optax.chain(
        optax.add_decayed_weights(2e-4, mask=lambda p: {k: k in ("W", "U") for k in p}),
        optax.inject_hyperparams(optax.sgd)(
            optax.linear_schedule(args.lr, args.lr * 0.1, args.epochs * per_epoch),
            momentum=args.momentum,
        ),
    )
    tr = enp.SAMLE(model, opt, num_gibbs_steps=args.gibbs, num_chains=100)
    data = jnp.asarray(x_occ)
    key = jax.random.PRNGKey(args.seed + 2)
    ck = out / "robust_samle.safetensors"
    state = tr.load(ck, key, data[:100]) if ck.exists() else None
    t0 = time.time()
    st = tr.run(key, data, num_epochs=args.epochs, init_state=state, checkpoint=ck)
    p = dict(init, **tr.get_params(st))
    robm = build(p)
    save_model(path_c, robm.clean, seconds=time.time() - t0)
    save_model(path_m, robm.mask, seconds=time.time() - t0)
    emit(
        stage="robust_sa",
        epochs=args.epochs,
        mask_hidden=args.mask_hidden,
        monitor=tr.history[-1]["recon_error"],
        seconds=round(time.time() - t0, 1),
    )
    return robm


def patch_connectivity(k: int, stride: int, side: int = 28) -> np.ndarray:
    """The 0/1 connectivity ``(side*side, P)`` of a locally connected mask RBM: one hidden
    unit per ``k x k`` patch of the image, patches ``stride`` apart (``P = ((side - k) //
    stride + 1)^2``)."""
    cols = []
    for r in range(0, side - k + 1, stride):
        for c in range(0, side - k + 1, stride):
            z = np.zeros((side, side), np.float32)
            z[r : r + k, c : c + k] = 1.0
            cols.append(z.reshape(-1))
    return np.stack(cols, 1)


def region_masks(p_shown: np.ndarray, close: int = 1, min_size: int = 6, side: int = 28):
    """Occluded *regions* from per-pixel mask posteriors ``p_shown`` ``(n, side*side)``: the
    pixels with ``p_shown < 0.5``, closed by a 3x3 square ``close`` times (the image edge
    replicated, so regions touching it are not eroded), holes filled, connected regions
    smaller than ``min_size`` pixels dropped. Returns shown-masks ``(n, side*side)`` (1 =
    shown). This is how the mask prior's training masks are made from occluded images
    alone: the evidence marks most of an occluder, and the occluder is a region."""
    from scipy import ndimage

    out = np.empty(p_shown.shape, np.float32)
    square = np.ones((3, 3), bool)
    for i, row in enumerate(np.asarray(p_shown)):
        o = (row < 0.5).reshape(side, side)
        if close:
            pad = close + 1
            o = ndimage.binary_closing(np.pad(o, pad, mode="edge"), square, iterations=close)
            o = o[pad:-pad, pad:-pad]
        o = ndimage.binary_fill_holes(o)
        lab, n = ndimage.label(o)
        if n:
            sizes = ndimage.sum(o, lab, range(1, n + 1))
            o = np.isin(lab, 1 + np.flatnonzero(np.asarray(sizes) >= min_size))
        out[i] = 1.0 - o.reshape(-1)
    return out


def mask_iou(p_shown, shown) -> dict:
    """IoU, recall and precision of the occluded region (``p_shown < 0.5``) against the
    generator's masks ``shown`` (1 = shown), over all pixels of all images."""
    pred, occ = np.asarray(p_shown) < 0.5, np.asarray(shown) < 0.5
    inter = float((pred & occ).sum())
    return {
        "iou": inter / max(float((pred | occ).sum()), 1.0),
        "recall": inter / max(float(occ.sum()), 1.0),
        "precision": inter / max(float(pred.sum()), 1.0),
    }


def train_region_prior(clean, x_occ, noise, val, args, out, x_occ_raw=None, mean=None, std=None):
    """The mask RBM from the *regions* of evidence masks (``--mask-prior regions``), learned
    from occluded training digits only:

    1. the mask posterior of each occluded training digit under a flat mask prior
       (structured mean field, evidence start, 100 iterations);
    2. :func:`region_masks` of those posteriors: the occluders as regions, holes closed;
       with ``--outlier mixture``, a ``--outlier-k``-component Gaussian mixture is then
       fitted by EM (:func:`fit_outlier_mixture`) to the pixel values of ``x_occ_raw``
       (the same digits in pixel space) inside those regions; it replaces the Gaussian
       outlier density, and steps 1-2 are repeated with it;
    3. a mask RBM fitted to them by PCD (SAMLE, 5 Gibbs steps, 100 chains): hidden units on
       ``k x k`` patches (:func:`patch_connectivity`, the weights outside a unit's patch held
       at 0) plus ``--prior-dense`` fully connected ones;
    4. one setting, the offset of the prior's visible bias (its log-odds of a pixel being
       shown; the region masks under-count occluders), chosen from ``--prior-offsets`` on
       the validation digits ``val`` (``{kind: (scaled occluded, true masks)}``, test digits
       outside the evaluation set) as the offset with the best worst-kind mask IoU.
    """
    path_m = out / "robust_mask.safetensors"
    path_o = out / "outlier_mixture.json"
    if path_m.exists() and (args.outlier == "gaussian" or path_o.exists()):
        if args.outlier == "mixture":
            noise = mixture_noise(json.loads(path_o.read_text())["mixture"], mean, std, args.tau)
        return enp.RobustBM(clean, load_model(path_m, backend="jax"), *noise)
    t0 = time.time()
    conn = patch_connectivity(args.prior_k, args.prior_stride)
    if args.prior_dense:
        conn = np.concatenate([conn, np.ones((784, args.prior_dense), np.float32)], 1)
    conn = jnp.asarray(conn)
    n_hidden = int(conn.shape[1])
    flat = enp.RobustBM(
        clean, enp.RBM(jnp.zeros((784, 1)), jnp.full((784,), args.mask_bias), jnp.zeros(1)), *noise
    )
    mf = jax.jit(
        lambda r, v: (
            r.mean_field(v, num_iters=100, tol=None, collapsed=True, init_mask="evidence").s
        )
    )
    x_occ = jnp.asarray(x_occ)
    p_shown = np.concatenate(
        [np.asarray(mf(flat, x_occ[i : i + 2000])) for i in range(0, len(x_occ), 2000)]
    )
    regions = region_masks(p_shown, args.prior_close, args.prior_min_size)
    mix_info = {}
    if args.outlier == "mixture":
        inside = np.asarray(x_occ_raw)[regions < 0.5]
        pick = np.random.default_rng(args.seed + 4).choice(
            len(inside), min(args.outlier_values, len(inside)), replace=False
        )
        mix = fit_outlier_mixture(inside[pick], args.outlier_k, args.outlier_floor)
        path_o.write_text(json.dumps({"mixture": [a.tolist() for a in mix]}))
        noise = mixture_noise(mix, mean, std, args.tau)
        mix_info = {
            "outlier_mixture_weights": [round(float(a), 4) for a in mix[0]],
            "outlier_mixture_loc": [round(float(a), 4) for a in mix[1]],
            "outlier_mixture_scale": [round(float(a), 4) for a in mix[2]],
            "occluded_fraction_posterior_gaussian": round(float((p_shown < 0.5).mean()), 4),
            "occluded_fraction_regions_gaussian": round(float(1.0 - regions.mean()), 4),
        }
        flat = enp.RobustBM(flat.clean, flat.mask, *noise)
        p_shown = np.concatenate(
            [np.asarray(mf(flat, x_occ[i : i + 2000])) for i in range(0, len(x_occ), 2000)]
        )
        regions = region_masks(p_shown, args.prior_close, args.prior_min_size)
    t_e = time.time() - t0
    rng = np.random.default_rng(args.seed + 3)
    init = {
        "U": jnp.asarray(0.01 * rng.standard_normal((784, n_hidden)), jnp.float32),
        "d": jnp.zeros(784),
        "e": jnp.zeros(n_hidden),
    }

    def model(batch):
        p = {k: numpyro.param(k, v) for k, v in init.items()}
        with numpyro.plate("data", batch.shape[0]):
            numpyro.sample("s", enp.RBM(conn * p["U"], p["d"], p["e"]), obs=batch)

    steps = args.prior_epochs * (len(regions) // 100)
    opt = optax.chain(
        optax.add_decayed_weights(2e-4, mask=lambda p: {k: k == "U" for k in p}),
        optax.sgd(
            optax.linear_schedule(args.prior_lr, args.prior_lr * 0.1, steps),
            momentum=args.momentum,
        ),
    )
    tr = enp.SAMLE(model, opt, num_gibbs_steps=args.gibbs, num_chains=100)
    t1 = time.time()
    st = tr.run(
        jax.random.PRNGKey(args.seed + 2),
        jnp.asarray(regions),
        num_epochs=args.prior_epochs,
        progress_bar=False,
    )
    p = tr.get_params(st)
    t_m = time.time() - t1
    u, d, e = conn * p["U"], p["d"], p["e"]
    scores = {}
    for off in args.prior_offsets:
        r = enp.RobustBM(clean, enp.RBM(u, d + off, e), *noise)
        ious = {k: mask_iou(mf(r, jnp.asarray(v)), m)["iou"] for k, (v, m) in val.items()}
        scores[off] = ious
        emit(
            stage="mask_prior_validation",
            offset=off,
            iou={k: round(x, 3) for k, x in ious.items()},
            worst=round(min(ious.values()), 3),
        )
    best = max(args.prior_offsets, key=lambda o: min(scores[o].values()))
    mask = enp.RBM(u, d + best, e)
    save_model(path_m, mask, seconds=time.time() - t0)
    emit(
        stage="mask_prior",
        recipe="regions of flat-prior evidence masks, PCD",
        n_images=len(regions),
        hidden=n_hidden,
        occluded_fraction_posterior=round(float((p_shown < 0.5).mean()), 4),
        occluded_fraction_regions=round(float(1.0 - regions.mean()), 4),
        chosen_offset=best,
        seconds_posteriors_and_regions=round(t_e, 1),
        seconds_pcd=round(t_m, 1),
        **mix_info,
    )
    return enp.RobustBM(clean, mask, *noise)


def init_mask(args):
    """``--init-mask``: a number in [0, 1] or 'evidence' (see ``RobustBM.mean_field``)."""
    return args.init_mask if args.init_mask == "evidence" else float(args.init_mask)


def logistic(xtr, ytr, xte, yte, seed):
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=300, C=0.1)
    clf.fit(xtr, ytr)
    return clf, float((clf.predict(xte) == yte).mean())


def grid(rows, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    n = rows[names[0]].shape[0]
    fig, axes = plt.subplots(len(names), n, figsize=(n * 0.9, len(names) * 1.0))
    for i, name in enumerate(names):
        for j in range(n):
            ax = axes[i, j]
            ax.imshow(rows[name][j].reshape(28, 28), cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def oracle_clean(clean, tau, v, shown, num_iters=100):
    """The clean image's mean field when the mask is *given* (the generator's): ``h`` and
    ``Q(x)`` alternate with ``s`` fixed (a diagnostic ceiling for mask inference)."""
    w, b, c, sigma = clean.weights, clean.visible_bias, clean.hidden_bias, clean.sigma

    def body(_, x):
        m = b + sigma * (jax.nn.sigmoid(c + (x / sigma) @ w) @ w.T)
        prec = 1.0 / sigma**2 + shown / tau**2
        return (m / sigma**2 + shown * v / tau**2) / prec

    return jax.lax.fori_loop(0, num_iters, body, v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/runs/robust")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=500)
    ap.add_argument("--sigma", type=float, default=1.0, help="the clean RBM's (initial) sigma")
    ap.add_argument(
        "--learn-sigma",
        type=float,
        default=0.1,
        help="learn a per-pixel sigma for the clean RBM, at this multiple of its learning "
        "rate (0: sigma stays fixed)",
    )
    ap.add_argument("--sigma-min", type=float, default=0.3)
    ap.add_argument(
        "--baseline-sigma",
        type=float,
        default=1.0,
        help="also train a fixed-sigma Gaussian RBM (the previous benchmark's clean model) as "
        "a second feature extractor (0: skip)",
    )
    ap.add_argument("--mask-hidden", type=int, default=MASK_HIDDEN)
    ap.add_argument("--mask-bias", type=float, default=0.0)
    ap.add_argument(
        "--mask-prior",
        choices=("regions", "sa"),
        default="regions",
        help="regions: the mask RBM fitted by PCD to the occluded regions of flat-prior "
        "evidence masks (train_region_prior); sa: SA-MLE through RobustBM.visible() (the "
        "2026-12-06 recipe)",
    )
    ap.add_argument("--prior-n", type=int, default=10000, help="occluded digits for 'regions'")
    ap.add_argument("--prior-k", type=int, default=6, help="patch side of the local hidden units")
    ap.add_argument("--prior-stride", type=int, default=2)
    ap.add_argument("--prior-dense", type=int, default=200, help="fully connected hidden units")
    ap.add_argument("--prior-epochs", type=int, default=30)
    ap.add_argument("--prior-lr", type=float, default=0.2)
    ap.add_argument("--prior-close", type=int, default=1)
    ap.add_argument("--prior-min-size", type=int, default=6)
    ap.add_argument(
        "--prior-offsets",
        type=lambda t: [float(x) for x in t.split(",")],
        default=[0.0, -0.5, -1.0, -1.125, -1.25, -1.375, -1.5, -1.75, -2.0],
        help="offsets of the mask prior's visible bias to choose from on the validation digits",
    )
    ap.add_argument(
        "--val-start",
        type=int,
        default=5000,
        help="validation digits: test digits [val-start, val-start + n-val), outside the "
        "evaluation set [0, n-eval)",
    )
    ap.add_argument("--n-val", type=int, default=500)
    ap.add_argument("--val-seed", type=int, default=123)
    ap.add_argument("--clean-epochs", type=int, default=20)
    ap.add_argument("--clean-lr", type=float, default=0.002)
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--lr", type=float, default=LR)
    ap.add_argument("--momentum", type=float, default=MOMENTUM)
    ap.add_argument(
        "--learn-clean",
        action="store_true",
        help="also fine-tune the clean-image RBM on the occluded data (default: only the mask "
        "RBM is learned there; the clean RBM stays as trained on clean digits)",
    )
    ap.add_argument("--mf-iters", type=int, default=20)
    ap.add_argument(
        "--collapsed",
        type=int,
        default=1,
        help="1: structured mean field Q(x_i | s_i) (each mask unit with its pixel's clean value "
        "integrated out); 0: the factorial Q(x) Q(s)",
    )
    ap.add_argument(
        "--init-mask", default="evidence", help="mean-field start of Q(s): a number or 'evidence'"
    )
    ap.add_argument("--gibbs", type=int, default=5)
    ap.add_argument("--tau", type=float, default=0.3)
    ap.add_argument("--varsigma", type=float, default=1.0)
    ap.add_argument("--outlier-grey", type=float, default=0.7)
    ap.add_argument(
        "--outlier",
        choices=("gaussian", "mixture"),
        default="gaussian",
        help="the outlier density of occluded pixels (with --mask-prior regions): 'gaussian', "
        "N(--outlier-grey, --varsigma^2) fixed; 'mixture', a Gaussian mixture fitted by EM to "
        "the pixel values inside the flat-prior regions of occluded training digits (tried "
        "2026-12-07: lower validation IoU on blocks, see RESULTS.md)",
    )
    ap.add_argument("--outlier-k", type=int, default=3, help="mixture components")
    ap.add_argument(
        "--outlier-floor", type=float, default=0.05, help="the components' least scale (pixels)"
    )
    ap.add_argument("--outlier-values", type=int, default=300000, help="pixels the EM sees")
    ap.add_argument("--n-train", type=int, default=60000)
    ap.add_argument("--n-mask", type=int, default=N_MASK, help="occluded digits for stage 2")
    ap.add_argument("--n-clf", type=int, default=20000)
    ap.add_argument("--n-eval", type=int, default=2000)
    ap.add_argument("--eval-sweeps", type=int, default=50)
    ap.add_argument("--figures", default="benchmarks/figures")
    args = ap.parse_args()
    args.collapsed = bool(args.collapsed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    Path(args.figures).mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    emit(stage="settings", **vars(args))

    xtr_raw, ytr = load_mnist("train", root=args.data_root)
    xte_raw, yte = load_mnist("test", root=args.data_root)
    xtr_raw = xtr_raw[: args.n_train]
    xte_raw = xte_raw[: args.n_eval]
    ytr, yte = ytr[: args.n_train], yte[: args.n_eval]
    mean = xtr_raw.mean(0)
    std = np.float32(xtr_raw.std())
    xtr = scale(xtr_raw, mean, std)
    noise = noise_model(mean, std, args)
    occ_tr, _ = occlude(xtr_raw[: args.n_mask], "mixed", seed=args.seed + 10)
    emit(
        stage="data",
        n_train=len(xtr),
        n_mask=len(occ_tr),
        n_eval=len(xte_raw),
        global_std=float(std),
        occluded_fraction_train=float(1 - occlude(xtr_raw[:2000], "mixed", seed=0)[1].mean()),
    )

    clean = train_clean(xtr, args, out, args.learn_sigma)
    base = None
    if args.baseline_sigma:
        base = train_clean(xtr, args, out, 0.0, args.baseline_sigma)
    if args.mask_prior == "sa":
        robm = train_robust(clean, scale(occ_tr, mean, std), noise, args, out)
    else:
        if args.val_start < args.n_eval:
            raise ValueError("the validation digits must lie outside the evaluation set")
        xval_raw = load_mnist("test", root=args.data_root)[0][
            args.val_start : args.val_start + args.n_val
        ]
        val = {}
        for kind in ("sunglasses", "scarf", "blocks", "bars"):
            occ_v, m_v = occlude(xval_raw, kind, seed=args.val_seed)
            val[kind] = (scale(occ_v, mean, std), m_v)
        robm = train_region_prior(
            clean,
            scale(occ_tr[: args.prior_n], mean, std),
            noise,
            val,
            args,
            out,
            occ_tr[: args.prior_n],
            mean,
            std,
        )
        noise = tuple(robm.noise)

    # classifiers trained on clean training digits
    n = args.n_clf
    h_clean = jax.jit(lambda r, x: r.hidden_probs(x))
    xte = scale(xte_raw, mean, std)

    def feature_clf(rbm):
        f_tr = np.asarray(h_clean(rbm, jnp.asarray(xtr[:n])))
        return logistic(f_tr, ytr[:n], np.asarray(h_clean(rbm, jnp.asarray(xte))), yte, 0)

    clf_pix, acc_pix_clean = logistic(xtr[:n], ytr[:n], xte, yte, 0)
    clf_rbm, acc_rbm_clean = feature_clf(clean)
    clf_rob, acc_rob_clean = feature_clf(robm.clean)
    clf_base, acc_base_clean = feature_clf(base) if base is not None else (None, None)
    emit(
        stage="ceiling",
        split="clean test digits",
        pixels=acc_pix_clean,
        rbm_features=acc_rbm_clean,
        robust_rbm_features=acc_rob_clean,
        baseline_rbm_features=acc_base_clean,
    )

    def acc(clf, rbm, x):
        return float(correct(clf, rbm, x).mean())

    def correct(clf, rbm, x):
        return clf.predict(np.asarray(h_clean(rbm, jnp.asarray(x)))) == yte

    def paired(a, b, n_boot=2000):
        """The paired difference of two 0/1 correctness vectors on the same digits, in
        points: mean, bootstrap sd (``n_boot`` resamples of the digits), digits gained / lost."""
        diff = a.astype(np.float64) - b.astype(np.float64)
        idx = np.random.default_rng(args.seed).integers(0, len(diff), (n_boot, len(diff)))
        return {
            "diff": round(100 * float(diff.mean()), 2),
            "sd": round(100 * float(diff[idx].mean(1).std()), 2),
            "gained": int((a & ~b).sum()),
            "lost": int((~a & b).sum()),
        }

    mf = jax.jit(
        lambda r, v: r.mean_field(
            v, num_iters=100, collapsed=args.collapsed, init_mask=init_mask(args)
        )
    )
    oracle = jax.jit(lambda r, v, s: oracle_clean(r, args.tau, v, s))
    for kind in ("sunglasses", "scarf", "blocks", "bars"):
        occ, true_mask = occlude(xte_raw, kind, seed=args.seed + 20)
        v = jnp.asarray(scale(occ, mean, std))
        t0 = time.time()
        q = jax.block_until_ready(mf(robm, v))
        t_mf = time.time() - t0
        t0 = time.time()
        g = robm.infer(jax.random.PRNGKey(args.seed + 30), v, args.eval_sweeps, burn_in=20)
        g = jax.block_until_ready(g)
        t_g = time.time() - t0
        x_mf, x_g = np.asarray(q.x_mean), np.asarray(g["clean_mean"])
        occ_true = true_mask < 0.5
        for name, s_hat in (("mean_field", np.asarray(q.s)), ("gibbs", np.asarray(g["mask_mean"]))):
            pred = s_hat < 0.5
            inter = (pred & occ_true).sum()
            union = (pred | occ_true).sum()
            emit(
                stage="mask",
                kind=kind,
                inference=name,
                pixel_accuracy=float((pred == occ_true).mean()),
                occluded_iou=float(inter / union),
                occluded_recall=float(inter / occ_true.sum()),
                occluded_precision=float(inter / max(pred.sum(), 1)),
            )
        x_or = np.asarray(oracle(robm.clean, v, jnp.asarray(true_mask)))
        row = {
            "kind": kind,
            "pixels": float((clf_pix.predict(np.asarray(v)) == yte).mean()),
            "rbm_features": acc(clf_rbm, clean, v),
            "robust_image_mf": float((clf_pix.predict(x_mf) == yte).mean()),
            "robust_image_gibbs": float((clf_pix.predict(x_g) == yte).mean()),
            "robust_features_mf": acc(clf_rob, robm.clean, x_mf),
            "robust_features_gibbs": acc(clf_rob, robm.clean, x_g),
            "true_mask_features": acc(clf_rob, robm.clean, x_or),
        }
        row["paired_robust_mf_vs_rbm_features"] = paired(
            correct(clf_rob, robm.clean, x_mf), correct(clf_rbm, clean, v)
        )
        if base is not None:
            row["baseline_rbm_features"] = acc(clf_base, base, v)
            row["baseline_rbm_features_of_robust_mf"] = acc(clf_base, base, x_mf)
            row["paired_baseline_of_robust_mf_vs_occluded"] = paired(
                correct(clf_base, base, x_mf), correct(clf_base, base, v)
            )
        emit(
            stage="recognition",
            **row,
            seconds_mean_field=round(t_mf, 2),
            seconds_gibbs=round(t_g, 2),
            n=len(yte),
        )
        k = 10
        grid(
            {
                "occluded": occ[:k],
                "true mask": true_mask[:k],
                "inferred mask": np.asarray(q.s)[:k],
                "inferred clean": x_mf[:k] * std + mean,
                "truth": xte_raw[:k],
            },
            Path(args.figures) / f"robust_{kind}.png",
            f"Robust BM on '{kind}' occlusions (mean field, 100 iterations)",
        )

    # the learned occlusion prior: samples of the mask RBM
    sm = robm.mask.sample(jax.random.PRNGKey(5), (16,))
    grid(
        {"mask RBM samples": np.asarray(sm)[:8], "(more)": np.asarray(sm)[8:]},
        Path(args.figures) / "robust_mask_samples.png",
        "Samples of the learned mask RBM",
    )

    # Pyro agrees on the trained model
    import torch

    import ebm_ppl.pyro as epp

    tc = epp.GaussianRBM(
        *(
            torch.tensor(np.asarray(a))
            for a in (robm.clean.weights, robm.clean.visible_bias, robm.clean.hidden_bias)
        ),
        sigma=torch.tensor(np.asarray(robm.clean.sigma)),
    )
    tm = epp.RBM(
        *(
            torch.tensor(np.asarray(a))
            for a in (robm.mask.weights, robm.mask.visible_bias, robm.mask.hidden_bias)
        )
    )
    tr = epp.RobustBM(
        tc, tm, *(None if a is None else torch.tensor(np.asarray(a)) for a in robm.noise)
    )
    occ, _ = occlude(xte_raw[:200], "scarf", seed=1)
    v = scale(occ, mean, std)
    # per sweep the two agree to float32 rounding; over 100 sweeps of the (sharp, not
    # contracting) fixed-point map a few pixels' rounding differences grow, so both are shown
    for sweeps in (1, 100):
        kw = {"num_iters": sweeps, "collapsed": args.collapsed, "init_mask": init_mask(args)}
        qt = tr.mean_field(torch.tensor(v), **kw)
        qj = jax.jit(lambda r, x, kw=kw: r.mean_field(x, **kw))(robm, jnp.asarray(v))
        diff = np.abs(qt.x_mean.numpy() - np.asarray(qj.x_mean))
        emit(
            stage="backend_agreement",
            sweeps=sweeps,
            max_abs_diff_clean=float(diff.max()),
            mean_abs_diff_clean=float(diff.mean()),
            values_off_by_over_1e_3=int((diff > 1e-3).sum()),
            values=int(diff.size),
            max_abs_diff_mask=float(np.abs(qt.s.numpy() - np.asarray(qj.s)).max()),
        )
    emit(stage="done", seconds=round(time.time() - t_all, 1))


if __name__ == "__main__":
    main()
