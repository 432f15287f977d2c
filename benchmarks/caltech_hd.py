"""One-shot learning with a hierarchical-deep model on Caltech-101 Silhouettes (NumPyro).

1. Hold out ``--held-out`` classes (drawn with ``--seed`` among the classes with at least 40
   images in the three splits pooled); the other classes are the "known" categories.
2. A DBM (784-500-``--top``) learns generic features from the known classes' images only:
   greedy pretraining with the doubling trick, then SA-MLE with a mean-field positive phase.
3. Top-level features: the mean-field marginals ``q(h2 | v)`` thresholded at 0.5.
4. The HD prior (:func:`ebm_ppl.numpyro.hd_prior`: truncated stick-breaking super-categories,
   each sharing a distribution over top-level features, categories drawn around them) is fit
   to the known categories by NUTS (assignments enumerated exactly).
5. One-shot test, repeated ``--trials`` times with fresh examples: each held-out class is
   given 1 or 3 examples; every other image of those classes is classified among them by
   (a) the HD posterior predictive, (b) the same Beta-Bernoulli model with one global prior
   (no hierarchy), (c) nearest neighbour in pixel space (Hamming), (d) nearest neighbour in
   DBM feature space (Euclidean on the marginals). Chance is ``1 / held-out``.
6. Figures under ``--out``: the learned super-categories (one image per member category), and
   a new category simulated from 3 examples (HD features -> DBM Gibbs with the top layer
   clamped).

One JSON line per measurement on stdout. Example::

    EBM_PPL_DATA=../shared/data python benchmarks/caltech_hd.py --out benchmarks/runs/hd
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np


def emit(**kw):
    print(json.dumps(kw), flush=True)


def train_dbm(x, args, out):
    import numpyro
    import optax

    from ebm_ppl.io import load_model, save_model
    from ebm_ppl.numpyro import DBM, SAMLE, greedy_pretrain_dbm

    path = out / "dbm.safetensors"
    if path.exists():
        return load_model(path, backend="jax")
    steps = len(x) // 100

    def sgd(lr0, epochs):
        lr = optax.linear_schedule(lr0, 0.0, epochs * steps)
        mom = optax.join_schedules(
            [optax.constant_schedule(0.5), optax.constant_schedule(0.9)], [5 * steps]
        )
        return optax.chain(
            optax.add_decayed_weights(2e-4), optax.inject_hyperparams(optax.sgd)(lr, momentum=mom)
        )

    t0 = time.time()
    dbm0 = greedy_pretrain_dbm(
        jax.random.PRNGKey(args.seed),
        jnp.asarray(x),
        [500, args.top],
        sgd(0.05, args.pre_epochs),
        num_epochs=args.pre_epochs,
        batch_size=100,
        seed=args.seed,
        progress_bar=False,
        num_gibbs_steps=1,
        persistent=False,
    )
    emit(stage="dbm_pretrain", epochs=args.pre_epochs, seconds=round(time.time() - t0, 1))
    names_w = [f"W{i}" for i in range(len(dbm0.weights))]
    names_b = [f"b{i}" for i in range(len(dbm0.biases))]

    def model(batch):
        ws = [numpyro.param(n, w) for n, w in zip(names_w, dbm0.weights)]
        bs = [numpyro.param(n, b) for n, b in zip(names_b, dbm0.biases)]
        with numpyro.plate("data", batch.shape[0]):
            numpyro.sample("v", DBM(ws, bs).visible(num_iters=10), obs=batch)

    t0 = time.time()
    tr = SAMLE(model, sgd(0.002, args.epochs), num_gibbs_steps=5, num_chains=100)
    st = tr.run(
        jax.random.PRNGKey(args.seed + 1),
        jnp.asarray(x),
        num_epochs=args.epochs,
        batch_size=100,
        seed=args.seed,
        progress_bar=False,
    )
    prm = tr.get_params(st)
    dbm = DBM([prm[n] for n in names_w], [prm[n] for n in names_b])
    save_model(path, dbm, epochs=args.epochs)
    emit(
        stage="dbm_sa",
        epochs=args.epochs,
        recon=tr.history[-1]["recon_error"],
        seconds=round(time.time() - t0, 1),
    )
    return dbm


def grid(images, rows, cols, path, titles=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.25))
    for ax in np.ravel(axes):
        ax.axis("off")
    for i, img in enumerate(images[: rows * cols]):
        ax = np.ravel(axes)[i]
        ax.imshow(img.reshape(28, 28), cmap="gray", vmin=0, vmax=1)
        if titles is not None:
            ax.set_title(titles[i], fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/runs/hd")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--held-out", type=int, default=10)
    ap.add_argument("--top", type=int, default=100)
    ap.add_argument("--pre-epochs", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--num-super", type=int, default=20)
    ap.add_argument("--alpha", type=float, default=None, help="default: chosen by select_alpha")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--tree-depth", type=int, default=7)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.time()

    import ebm_ppl.numpyro as enp
    from ebm_ppl.datasets import load_caltech101_silhouettes
    from ebm_ppl.models.dbm import layer_logits
    from ebm_ppl.models.hd import HDPosterior, category_counts, select_alpha

    parts = [load_caltech101_silhouettes(s) for s in ("train", "valid", "test")]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    names = parts[0][2]
    rng = np.random.default_rng(args.seed)
    sizes = np.bincount(y, minlength=101)
    held = np.sort(rng.choice(np.flatnonzero(sizes >= 40), args.held_out, replace=False))
    known = np.setdiff1d(np.arange(101), held)
    is_known = np.isin(y, known)
    emit(
        stage="data",
        images=len(x),
        known_classes=len(known),
        known_images=int(is_known.sum()),
        held_out=[names[c] for c in held],
        held_out_images=int((~is_known).sum()),
    )

    # ---- DBM features ------------------------------------------------------------------
    dbm = train_dbm(x[is_known], args, out)
    mf = jax.jit(lambda v: dbm.mean_field(v, num_iters=50, tol=1e-5)[-1])
    q = np.concatenate(
        [np.asarray(mf(jnp.asarray(x[i : i + 2000]))) for i in range(0, len(x), 2000)]
    )
    z = (q > 0.5).astype(np.float32)
    emit(stage="features", top=args.top, mean_active=float(z.mean()))

    # ---- HD prior on the known categories ---------------------------------------------
    index = {c: i for i, c in enumerate(known)}
    yk = np.array([index[c] for c in y[is_known]])
    ones, counts = category_counts(z[is_known], yk, len(known))
    if args.alpha is None:  # empirical Bayes on a grid, at the k-means start
        args.alpha, scores = select_alpha(ones, counts, args.num_super)
        emit(
            stage="alpha",
            chosen=args.alpha,
            log_likelihood={str(k): round(v, 1) for k, v in scores.items()},
        )
    t0 = time.time()
    post = enp.fit_hd_prior(
        jax.random.PRNGKey(args.seed + 2),
        ones,
        counts,
        num_super=args.num_super,
        alpha=args.alpha,
        num_warmup=args.warmup,
        num_samples=args.samples,
        max_tree_depth=args.tree_depth,
    )
    labels = post.clustering()
    emit(
        stage="hd_fit",
        num_super=args.num_super,
        alpha=args.alpha,
        warmup=args.warmup,
        samples=args.samples,
        super_categories_used=int(len(np.unique(labels))),
        seconds=round(time.time() - t0, 1),
    )
    groups = [known[labels == g] for g in np.unique(labels)]
    groups.sort(key=len, reverse=True)
    for g in groups[:8]:
        emit(stage="super_category", size=len(g), members=[names[c] for c in g][:12])
    # figure: one image per member category, a row per super-category
    cols = 12
    imgs, titles = [], []
    for g in groups[:8]:
        row = [x[np.flatnonzero(y == c)[0]] for c in g[:cols]]
        t = [names[c][:10] for c in g[:cols]]
        imgs += row + [np.ones(784)] * (cols - len(row))
        titles += t + [""] * (cols - len(t))
    grid(np.array(imgs), min(8, len(groups)), cols, out / "hd_super_categories.png", titles)
    # the flat model: one global prior (the known features' mean), no super-categories
    m = z[is_known].mean(0).clip(1e-3, 1 - 1e-3)
    flat = HDPosterior(
        {"theta": jnp.asarray(m[None, None]), "v": jnp.zeros((1, 0))},
        jnp.asarray(ones),
        jnp.asarray(counts),
        args.alpha,
    )

    # ---- one-shot trials ---------------------------------------------------------------
    acc = {k: {1: [], 3: []} for k in ("hd", "flat", "nn_pixels", "nn_dbm_features")}
    for trial in range(args.trials):
        r = np.random.default_rng(1000 + trial)
        for shots in (1, 3):
            ex_idx = [r.choice(np.flatnonzero(y == c), shots, replace=False) for c in held]
            used = np.concatenate(ex_idx)
            test = np.setdiff1d(np.flatnonzero(~is_known), used)
            truth = np.searchsorted(held, y[test])
            ex_ones = np.stack([z[i].sum(0) for i in ex_idx])
            ex_n = np.full(len(held), float(shots))
            args_j = (jnp.asarray(z[test]), jnp.asarray(ex_ones), jnp.asarray(ex_n))
            pred = {
                "hd": np.asarray(post.predictive_log_prob(*args_j)).argmax(1),
                "flat": np.asarray(flat.predictive_log_prob(*args_j)).argmax(1),
            }
            for name, feats, metric in (("nn_pixels", x, "hamming"), ("nn_dbm_features", q, "l2")):
                ex = feats[used]
                owner = np.repeat(np.arange(len(held)), shots)
                t = feats[test]
                if metric == "hamming":
                    d = (t[:, None, :] != ex[None]).sum(-1)
                else:
                    d = ((t[:, None, :] - ex[None]) ** 2).sum(-1)
                pred[name] = owner[d.argmin(1)]
            for k, p in pred.items():
                acc[k][shots].append(float((p == truth).mean()))
    for k, v in acc.items():
        for shots in (1, 3):
            a = np.array(v[shots])
            emit(
                stage="one_shot",
                method=k,
                shots=shots,
                accuracy_mean=float(a.mean()),
                accuracy_sd=float(a.std(ddof=1)) if len(a) > 1 else 0.0,
                trials=len(a),
                chance=1.0 / len(held),
            )

    # ---- a new category simulated from 3 examples -------------------------------------
    c = held[0]
    ex = np.flatnonzero(y == c)[:3]
    zs = post.sample_new_category(np.random.default_rng(7), z[ex].sum(0), 3.0, 12)
    p = dbm._frozen()
    key = jax.random.PRNGKey(9)

    @jax.jit
    def clamped_gibbs(key, top):
        v = jnp.full((top.shape[0], 784), 0.5)

        def step(carry, k):
            v, h1 = carry
            k1, k2 = jax.random.split(k)
            h1 = jax.random.bernoulli(k1, jax.nn.sigmoid(layer_logits(p, [v, h1, top], 1)))
            h1 = h1.astype(jnp.float32)
            mean = jax.nn.sigmoid(layer_logits(p, [v, h1, top], 0))
            v = jax.random.bernoulli(k2, mean).astype(jnp.float32)
            return (v, h1), mean

        h1 = jnp.zeros((top.shape[0], 500))
        (_, _), means = jax.lax.scan(step, (v, h1), jax.random.split(key, 300))
        return means[-1]

    gen = np.asarray(clamped_gibbs(key, jnp.asarray(zs)))
    grid(
        np.concatenate([x[ex], gen]),
        3,
        5,
        out / "hd_new_category.png",
        [f"example {i + 1}" for i in range(3)] + ["simulated"] * 12,
    )
    emit(stage="new_category", category=names[c], examples=3, simulated=len(gen))

    # ---- the Pyro backend gives the same one-shot predictive from the same samples -------
    import torch

    tp = HDPosterior(
        {k: torch.as_tensor(np.array(v)) for k, v in post.samples.items()},
        torch.as_tensor(ones),
        torch.as_tensor(counts),
        args.alpha,
    )
    a = np.asarray(
        post.predictive_log_prob(*(t[:50] if i == 0 else t for i, t in enumerate(args_j)))
    )
    b = tp.predictive_log_prob(
        *(
            torch.as_tensor(np.asarray(t))[:50] if i == 0 else torch.as_tensor(np.asarray(t))
            for i, t in enumerate(args_j)
        )
    ).numpy()
    emit(stage="backends", max_abs_diff_predictive=float(np.abs(a - b).max()))
    emit(stage="total", seconds=round(time.time() - t_all, 1))


if __name__ == "__main__":
    main()
