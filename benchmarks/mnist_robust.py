"""A robust Boltzmann machine on MNIST with synthetic structured occlusions (NumPyro), and the
recognition experiment of the slides' AR-faces table (robust BM vs RBM vs pixels on
sunglasses / scarf occlusions).

The data: MNIST digits in pixel space, occluded by the documented generator of
:mod:`ebm_ppl.datasets.occlusions` (not real occlusions), then centred per pixel and scaled by one
global standard deviation (so that occluder values stay on the scale of ink). Stages, each
checkpointed under ``--out`` so a rerun resumes:

1. the clean-image model: a Gaussian RBM (sigma = 1) trained by CD-1 on *clean* training
   digits (the analogue of training on clean faces);
2. the RoBM: that Gaussian RBM plus a binary mask RBM trained by SA-MLE on *occluded*
   training digits (mixed kinds) through ``RobustBM.visible()``: mean-field positive phase,
   persistent prior chains; the observation model is fixed. By default only the mask RBM
   learns here (``--learn-clean`` fine-tunes the clean RBM too; a 10-epoch run that did so
   at lr 0.001 / momentum 0.9 converged to a degenerate solution in which the mask RBM
   switched off the digit strokes and the outlier distribution explained them);
3. evaluation on occluded test digits, per kind: inferred masks (pixel accuracy and IoU of
   the occluded region against the generator's masks) and clean images (mean field and
   blocked Gibbs); recognition accuracy of logistic regressions trained on clean training
   digits, applied to (a) the occluded pixels, (b) the plain Gaussian RBM's hidden
   probabilities of the occluded image, (c) the robust BM's inferred clean image, (d) the
   hidden probabilities of that image; the clean test digits as the ceiling; image grids;
   a Pyro check that the trained model gives the same inference in both backends.

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


def emit(**kw):
    print(json.dumps(kw), flush=True)


def scale(x, mean, std):
    return ((np.asarray(x, np.float32) - mean) / std).astype(np.float32)


def train_clean(x, args, out):
    path = out / f"clean_{args.hidden}.safetensors"
    if path.exists():
        return load_model(path, backend="jax")
    rng = np.random.default_rng(args.seed)
    w0 = jnp.asarray(0.01 * rng.standard_normal((784, args.hidden)), jnp.float32)

    def model(batch):
        w = numpyro.param("W", w0)
        b = numpyro.param("b", jnp.zeros(784))
        c = numpyro.param("c", jnp.zeros(args.hidden))
        with numpyro.plate("data", batch.shape[0]):
            numpyro.sample("v", enp.GaussianRBM(w, b, c, 1.0), obs=batch)

    steps = args.clean_epochs * (len(x) // 100)
    opt = optax.chain(
        optax.add_decayed_weights(2e-4),
        optax.sgd(optax.linear_schedule(args.clean_lr, args.clean_lr * 0.1, steps), momentum=0.9),
    )
    tr = enp.SAMLE(model, opt, num_gibbs_steps=1, persistent=False)
    t0 = time.time()
    st = tr.run(jax.random.PRNGKey(args.seed), jnp.asarray(x), num_epochs=args.clean_epochs)
    p = tr.get_params(st)
    d = enp.GaussianRBM(p["W"], p["b"], p["c"], 1.0)
    save_model(path, d, seconds=time.time() - t0)
    emit(
        stage="clean_rbm",
        hidden=args.hidden,
        epochs=args.clean_epochs,
        recon=tr.history[-1]["recon_error"],
        seconds=round(time.time() - t0, 1),
    )
    return d


def noise_model(mean, std, args):
    """Shown pixels: N(x, tau^2); occluded: N(mu_i, varsigma^2) with mu_i the standardized
    mid-grey 0.5 (occluders are ink bars or [0, 1] textures)."""
    return args.tau, scale(np.full(784, 0.5, np.float32), mean, std), args.varsigma


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
        return enp.RobustBM(
            enp.GaussianRBM(q["W"], q["b"], q["c"], 1.0), enp.RBM(q["U"], q["d"], q["e"]), *noise
        )

    learned = ("W", "b", "c", "U", "d", "e") if args.learn_clean else ("U", "d", "e")

    def model(batch):
        q = {k: numpyro.param(k, v) if k in learned else v for k, v in init.items()}
        with numpyro.plate("data", batch.shape[0]):
            numpyro.sample("v", build(q).visible(num_iters=args.mf_iters, tol=None), obs=batch)

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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/runs/robust")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=500)
    ap.add_argument("--mask-hidden", type=int, default=100)
    ap.add_argument("--mask-bias", type=float, default=2.0)
    ap.add_argument("--clean-epochs", type=int, default=20)
    ap.add_argument("--clean-lr", type=float, default=0.002)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.0005)
    ap.add_argument("--momentum", type=float, default=0.5)
    ap.add_argument(
        "--learn-clean",
        action="store_true",
        help="also fine-tune the clean-image RBM on the occluded data (default: only the mask "
        "RBM is learned there; the clean RBM stays as trained on clean digits)",
    )
    ap.add_argument("--mf-iters", type=int, default=20)
    ap.add_argument("--gibbs", type=int, default=5)
    ap.add_argument("--tau", type=float, default=0.5)
    ap.add_argument("--varsigma", type=float, default=1.5)
    ap.add_argument("--n-train", type=int, default=60000)
    ap.add_argument("--n-clf", type=int, default=20000)
    ap.add_argument("--n-eval", type=int, default=2000)
    ap.add_argument("--eval-sweeps", type=int, default=50)
    ap.add_argument("--figures", default="benchmarks/figures")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.time()

    xtr_raw, ytr = load_mnist("train", root=args.data_root)
    xte_raw, yte = load_mnist("test", root=args.data_root)
    xtr_raw = xtr_raw[: args.n_train]
    xte_raw = xte_raw[: args.n_eval]
    ytr, yte = ytr[: args.n_train], yte[: args.n_eval]
    mean = xtr_raw.mean(0)
    std = np.float32(xtr_raw.std())
    xtr = scale(xtr_raw, mean, std)
    noise = noise_model(mean, std, args)
    occ_tr, _ = occlude(xtr_raw, "mixed", seed=args.seed + 10)
    emit(
        stage="data",
        n_train=len(xtr),
        n_eval=len(xte_raw),
        global_std=float(std),
        occluded_fraction_train=float(1 - occlude(xtr_raw[:2000], "mixed", seed=0)[1].mean()),
    )

    clean = train_clean(xtr, args, out)
    robm = train_robust(clean, scale(occ_tr, mean, std), noise, args, out)

    # classifiers trained on clean training digits
    n = args.n_clf
    h_clean = jax.jit(lambda r, x: r.hidden_probs(x))
    clf_pix, acc_pix_clean = logistic(xtr[:n], ytr[:n], scale(xte_raw, mean, std), yte, 0)
    f_tr = np.asarray(h_clean(clean, jnp.asarray(xtr[:n])))
    clf_rbm, acc_rbm_clean = logistic(
        f_tr, ytr[:n], np.asarray(h_clean(clean, jnp.asarray(scale(xte_raw, mean, std)))), yte, 0
    )
    f_tr_r = np.asarray(h_clean(robm.clean, jnp.asarray(xtr[:n])))
    clf_rob, acc_rob_clean = logistic(
        f_tr_r,
        ytr[:n],
        np.asarray(h_clean(robm.clean, jnp.asarray(scale(xte_raw, mean, std)))),
        yte,
        0,
    )
    emit(
        stage="ceiling",
        split="clean test digits",
        pixels=acc_pix_clean,
        rbm_features=acc_rbm_clean,
        robust_rbm_features=acc_rob_clean,
    )

    mf = jax.jit(lambda r, v: r.mean_field(v, num_iters=100))
    for kind in ("sunglasses", "scarf", "blocks", "bars"):
        occ, true_mask = occlude(xte_raw, kind, seed=args.seed + 20)
        v = jnp.asarray(scale(occ, mean, std))
        t0 = time.time()
        q = mf(robm, v)
        t_mf = time.time() - t0
        t0 = time.time()
        g = robm.infer(jax.random.PRNGKey(args.seed + 30), v, args.eval_sweeps, burn_in=20)
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
            )
        row = {
            "kind": kind,
            "pixels": float((clf_pix.predict(np.asarray(v)) == yte).mean()),
            "rbm_features": float((clf_rbm.predict(np.asarray(h_clean(clean, v))) == yte).mean()),
            "robust_image_mf": float((clf_pix.predict(x_mf) == yte).mean()),
            "robust_image_gibbs": float((clf_pix.predict(x_g) == yte).mean()),
            "robust_features_mf": float(
                (clf_rob.predict(np.asarray(h_clean(robm.clean, jnp.asarray(x_mf)))) == yte).mean()
            ),
            "robust_features_gibbs": float(
                (clf_rob.predict(np.asarray(h_clean(robm.clean, jnp.asarray(x_g)))) == yte).mean()
            ),
        }
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
                "inferred mask": np.asarray(g["mask_mean"])[:k],
                "inferred clean": x_g[:k] * std + mean,
                "truth": xte_raw[:k],
            },
            Path(args.figures) / f"robust_{kind}.png",
            f"Robust BM on '{kind}' occlusions (blocked Gibbs, {args.eval_sweeps} sweeps)",
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
        sigma=1.0,
    )
    tm = epp.RBM(
        *(
            torch.tensor(np.asarray(a))
            for a in (robm.mask.weights, robm.mask.visible_bias, robm.mask.hidden_bias)
        )
    )
    tr = epp.RobustBM(tc, tm, noise[0], torch.tensor(noise[1]), noise[2])
    occ, _ = occlude(xte_raw[:200], "scarf", seed=1)
    v = scale(occ, mean, std)
    qt = tr.mean_field(torch.tensor(v), num_iters=100)
    qj = mf(robm, jnp.asarray(v))
    emit(
        stage="backend_agreement",
        max_abs_diff_clean=float(np.abs(qt.x_mean.numpy() - np.asarray(qj.x_mean)).max()),
        max_abs_diff_mask=float(np.abs(qt.s.numpy() - np.asarray(qj.s)).max()),
    )
    emit(stage="done", seconds=round(time.time() - t_all, 1))


if __name__ == "__main__":
    main()
