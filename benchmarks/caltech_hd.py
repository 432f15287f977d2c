"""One-shot learning with a hierarchical-deep model on Caltech-101 Silhouettes (NumPyro).

1. Hold out ``--held-out`` classes (drawn with ``--seed`` among the classes with at least 40
   images in the three splits pooled); the other classes are the "known" categories.
2. A DBM (784-500-``--top``) learns generic features from the known classes' images only:
   greedy pretraining with the doubling trick, then SA-MLE with a mean-field positive phase.
   It is cached in ``--dbm`` (safetensors) and trained only when that file is missing.
3. Top-level features: the logits of the top layer's mean-field marginals ``q(h2 | v)``
   (``b2 + W2^T q(h1)``), clipped to ``+-clip``, then whitened by the known categories' pooled
   within-category covariance (``--whiten 1``) and scaled to unit sd: a transform learned from
   the known categories only. ``--pixel-pca D`` (default 50, chosen on validation splits)
   concatenates the first ``D`` principal components of the pixels (learned on the known
   categories) before the whitening.
4. The Normal HD prior (:func:`ebm_ppl.numpyro.hd_normal_prior`: truncated stick-breaking
   super-categories, each with its own mean; within- and between-category variances learned in
   the program, shared by the super-categories with ``--shared-variances 1``; every category's
   mean integrated out) is fit to the known categories by NUTS (assignments enumerated
   exactly), from a k-means start. The flat prior is the same program with one
   super-category, fit the same way.
5. One-shot test, repeated ``--trials`` times with fresh examples (trial ``t`` drawn with
   seed ``--trial-seed + t``): each held-out class is
   given 1 or 3 examples; every other image of those classes is classified among them by
   (a) the HD posterior predictive (the new category's super-category inferred from its
   examples), (b) the flat prior's, (c) nearest neighbour in pixel space (Hamming), (d) nearest
   neighbour in DBM feature space (Euclidean on the marginals), (e) nearest neighbour in the
   HD's whitened features (Euclidean). Chance is ``1 / held-out``; the class-balanced accuracy
   (mean of the per-class recalls) is reported too. Paired tests over the trials (paired t,
   exact sign test) compare (a) with each of the others.
6. ``--validate S1 S2 ...``: instead of the held-out classes, for each seed 10 of the KNOWN
   classes (drawn with that seed) play the new classes and everything downstream of the DBM
   (PCA, whitening, priors) is learned from the other known classes: the validation splits on
   which settings are chosen (the DBM has seen the validation classes' images, which flatters
   only the DBM-feature baseline). ``--extra-hd`` fits further HD priors next to the default
   one and compares each with the flat prior (paired).
   ``--full-cov NU0 ...`` (issue 25, branch hd27) adds full-covariance super-categories on the
   same posterior samples (:class:`ebm_ppl.models.hd_cov.HDCovPosterior`: each super-category's
   within-category covariance from its known categories' scatter, inverse-Wishart prior of
   weight ``NU0`` images around the pooled covariance) for the HD and the flat prior (methods
   ``hd_cov<NU0>``, ``flat_cov<NU0>``); ``--gibbs-cov`` regroups the known categories by
   collapsed Gibbs with that marginal first, ``--equal-volume 1`` also tests the covariances
   rescaled to the pooled determinant. None of these beat the default on the validation splits.
7. Figures under ``--out``: the learned super-category tree (a row of member silhouettes per
   super-category, and the held-out categories where the posterior places them) and a new
   category simulated from 3 examples (HD features -> DBM Gibbs with the top layer clamped).

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

    path = Path(args.dbm) if args.dbm else out / "dbm.safetensors"
    if path.exists():
        emit(stage="dbm_cached", path=str(path))
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
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(path, dbm, epochs=args.epochs, pre_epochs=args.pre_epochs, seed=args.seed)
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


def dbm_features(dbm, x):
    """``(q, logits)`` ``(N, top)``: the top layer's mean-field marginals and their logits
    ``b2 + W2^T q(h1)`` at the fixed point."""
    from ebm_ppl.models.dbm import layer_logits

    p = dbm._frozen()

    @jax.jit
    def f(v):
        mus = dbm.mean_field(v, num_iters=50, tol=1e-5)
        return mus[-1], layer_logits(p, mus, len(mus) - 1)

    outs = [f(jnp.asarray(x[i : i + 2000])) for i in range(0, len(x), 2000)]
    return tuple(np.concatenate([np.asarray(o[j]) for o in outs]) for j in range(2))


class Whitening:
    """The features' transform, learned from the known categories only: centre, and with
    ``within=True`` rotate and scale so that the pooled within-category covariance is the
    identity (an eigendecomposition, eigenvalues floored at 1e-3 of their mean); then scale
    each output to unit sd over the known images. ``inverse`` maps back."""

    def __init__(self, f, labels, within=True):
        self.loc = f.mean(0)
        if within:
            cats = np.unique(labels)
            means = np.stack([f[labels == c].mean(0) for c in cats])
            r = f - means[np.searchsorted(cats, labels)]
            ev, u = np.linalg.eigh(r.T @ r / len(r))
            self.rot = u / np.sqrt(ev + 1e-3 * ev.mean())
        else:
            self.rot = np.eye(f.shape[1])
        self.scale = ((f - self.loc) @ self.rot).std(0) + 1e-9

    def __call__(self, f):
        return (f - self.loc) @ self.rot / self.scale

    def inverse(self, g):
        return (g * self.scale) @ np.linalg.inv(self.rot) + self.loc


def validation_split(y, known, seed, num, min_images=40):
    """``(fit, val)``: ``num`` of the ``known`` classes (those with at least ``min_images``
    images), drawn with their own ``seed``, play the new classes; the prior, the whitening and
    the pixel PCA are then learned from the other known classes only (``fit``). The held-out
    classes of the split are never touched."""
    sizes = np.bincount(y, minlength=int(known.max()) + 1)
    pool = known[sizes[known] >= min_images]
    val = np.sort(np.random.default_rng(seed).choice(pool, num, replace=False))
    return np.setdiff1d(known, val), val


def make_features(logits, x, y, fit_classes, clip, whiten, pixel_pca):
    """Real-valued features ``(N, F)`` for the HD prior and the transform behind them, learned
    from the images of ``fit_classes`` only: the top-level logits clipped to ``+-clip``, with
    ``pixel_pca > 0`` concatenated with the first ``pixel_pca`` principal components of the
    pixels, then :class:`Whitening`. Returns ``(features float32, whitening)``."""
    is_fit = np.isin(y, fit_classes)
    f = np.clip(logits, -clip, clip)
    if pixel_pca > 0:
        xc = x.astype(np.float64)
        loc = xc[is_fit].mean(0)
        _, _, vt = np.linalg.svd(xc[is_fit] - loc, full_matrices=False)
        f = np.concatenate([f, (xc - loc) @ vt[:pixel_pca].T], axis=1)
    white = Whitening(f[is_fit], y[is_fit], whiten)
    return white(f).astype(np.float32), white


def parse_gamma(value):
    """``--gamma`` (and ``gamma`` in ``--extra-hd``): a positive number fixes the
    stick-breaking concentration; ``learn`` (or JSON ``null``) learns it in the program,
    ``gamma ~ Gamma(1, 1)`` (returned as ``None``)."""
    if value is None or (isinstance(value, str) and value.lower() in ("learn", "none", "null")):
        return None
    try:
        g = float(value)
    except (TypeError, ValueError):
        g = float("nan")
    if not g > 0:
        raise argparse.ArgumentTypeError(f"gamma must be a positive number or 'learn': {value!r}")
    return g


def paired(a, b):
    """Paired comparison of per-trial accuracies ``a`` and ``b``: mean and sd of the
    difference, two-sided paired t-test and exact sign test (ties dropped)."""
    from scipy.stats import binomtest, ttest_rel

    a, b = np.asarray(a), np.asarray(b)
    d = a - b
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    t = ttest_rel(a, b)
    return dict(
        mean_diff=float(d.mean()),
        sd_diff=float(d.std(ddof=1)),
        t=float(t.statistic),
        p_t=float(t.pvalue),
        wins=wins,
        losses=losses,
        ties=len(d) - wins - losses,
        p_sign=float(binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else 1.0,
    )


def tree_figure(groups, x, y, names, path, new=(), max_rows=10, cols=12, new_cols=4):
    """The learned tree: a root (the global prior), one node per super-category (largest
    first), and a row of its member categories' silhouettes (one image per category). ``new``:
    ``(row, image, name)`` of held-out categories placed by the posterior, drawn (red labels)
    right of the known members."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = min(max_rows, len(groups))
    left = 3.0
    width = left + cols + (new_cols + 0.4 if len(new) else 0)
    fig, ax = plt.subplots(figsize=(width * 0.75, rows * 0.8 + 0.3))
    ax.set_xlim(0, width)
    ax.set_ylim(0, rows)
    ax.axis("off")
    root = (0.35, rows / 2)
    ax.text(
        *root,
        "global",
        ha="center",
        va="center",
        fontsize=7,
        bbox=dict(boxstyle="round", fc="lightyellow"),
    )
    for i, g in enumerate(groups[:rows]):
        yc = rows - i - 0.5
        node = (2.0, yc)
        ax.plot([root[0] + 0.3, node[0] - 0.45], [root[1], yc], color="gray", lw=0.8)
        ax.text(
            *node,
            f"S{i + 1}\n{len(g)} cat.",
            ha="center",
            va="center",
            fontsize=6,
            bbox=dict(boxstyle="round", fc="lightblue"),
        )
        for j, c in enumerate(g[:cols]):
            x0 = left + j
            img = x[np.flatnonzero(y == c)[0]].reshape(28, 28)
            ax.imshow(
                img,
                cmap="gray",
                vmin=0,
                vmax=1,
                extent=(x0 + 0.05, x0 + 0.95, yc - 0.38, yc + 0.38),
            )
            ax.text(x0 + 0.5, yc - 0.47, names[c][:11], ha="center", va="center", fontsize=4.5)
        placed = [(img, name) for row, img, name in new if row == i][:new_cols]
        for j, (img, name) in enumerate(placed):
            x0 = left + cols + 0.4 + j
            ax.imshow(
                img.reshape(28, 28),
                cmap="gray",
                vmin=0,
                vmax=1,
                extent=(x0 + 0.05, x0 + 0.95, yc - 0.38, yc + 0.38),
            )
            label = "new: " + name[:9]
            ax.text(x0 + 0.5, yc - 0.47, label, ha="center", va="center", fontsize=4.5, color="red")
        if len(g) > cols:
            ax.text(left + cols - 0.05, yc + 0.45, f"+{len(g) - cols}", ha="right", fontsize=5)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate(args, x, y, q, logits, known, held, names, tag="test"):
    """Features learned on the ``known`` classes, the HD and flat priors fit to them, and the
    one-shot trials on the ``held`` classes (every method, paired tests). Emits the results
    (``tag``: ``test``, or ``val<seed>`` for a validation split) and returns
    ``(hd posterior, features, whitening, last trial's example moments, last trial's test
    features)``."""
    import ebm_ppl.numpyro as enp
    from ebm_ppl.models.hd import HDNormalPosterior, category_moments
    from ebm_ppl.models.hd_cov import HDCovPosterior, category_scatter

    feats, white = make_features(logits, x, y, known, args.clip, args.whiten, args.pixel_pca)
    is_fit = np.isin(y, known)

    def log(**kw):
        emit(tag=tag, **kw)

    # ---- HD prior and flat prior on the known categories --------------------------------
    index = {c: i for i, c in enumerate(known)}
    yk = np.array([index[c] for c in y[is_fit]])
    moments = category_moments(feats[is_fit], yk, len(known))
    posts = {}
    base = dict(
        num_super=args.num_super,
        gamma=args.gamma,
        spread=args.spread,
        shared_variances=bool(args.shared_variances),
        learn_spread=bool(args.learn_spread),
    )
    fits = [("hd", base), ("flat", {**base, "num_super": 1})]
    fits += [
        (f"hd_extra{i}", {**base, **kw, "gamma": parse_gamma(kw.get("gamma", base["gamma"]))})
        for i, kw in enumerate(args.extra_hd)
    ]
    for name, kw in fits:
        t0 = time.time()
        posts[name] = enp.fit_hd_normal_prior(
            jax.random.PRNGKey(args.seed + 2),
            *moments,
            num_warmup=args.warmup,
            num_samples=args.samples,
            max_tree_depth=args.tree_depth,
            **kw,
        )
        seconds = round(time.time() - t0, 1)
        extra = {}
        if "gamma" in posts[name].samples:  # learned: its posterior
            g = np.asarray(posts[name].samples["gamma"], np.float64)
            extra = dict(
                gamma_mean=float(g.mean()),
                gamma_sd=float(g.std()),
                gamma_q05_q95=[round(float(v), 3) for v in np.quantile(g, [0.05, 0.95])],
            )
        if kw["num_super"] > 1:
            extra["super_categories_used"] = int(len(np.unique(posts[name].clustering())))
        log(
            stage="fit",
            prior=name,
            **{**kw, "gamma": "learn" if kw["gamma"] is None else kw["gamma"]},
            **extra,
            warmup=args.warmup,
            samples=args.samples,
            seconds=seconds,
        )
    # ---- full-covariance super-categories on the same posterior samples -----------------
    covs = {}
    if args.full_cov or args.gibbs_cov:
        import torch

        t0 = time.time()
        scatter = category_scatter(feats[is_fit], yk, len(known))

        def torch64(p):  # the same posterior samples as float64 torch arrays (fast on CPU)
            return HDNormalPosterior(
                {
                    k: torch.as_tensor(np.array(v), dtype=torch.float64)
                    for k, v in p.samples.items()
                },
                *(
                    torch.as_tensor(np.asarray(a), dtype=torch.float64)
                    for a in (p.counts, p.sums, p.sumsq)
                ),
            )

        bases = {base: torch64(posts[base]) for base in ("hd", "flat")}
        for nu0 in args.full_cov:
            for base in ("hd", "flat"):
                name = f"{base}_cov{nu0:g}"
                covs[name] = HDCovPosterior(
                    bases[base], scatter, nu0=nu0, max_samples=args.cov_samples
                )
                cv = np.asarray(covs[name].cov)  # (S, K, F, F)
                pooled = np.asarray(covs[name].cov.mean(0)).mean(0)
                resp = np.asarray(bases[base].assignment_probs())[covs[name].keep].mean(0)
                used = resp.sum(0) > 0.5
                dist = np.linalg.norm(cv.mean(0) - pooled, axis=(-2, -1)) / np.linalg.norm(pooled)
                log(
                    stage="fit_cov",
                    prior=name,
                    nu0=nu0,
                    samples=covs[name].num_samples,
                    rel_dist_from_mean_cov_used=[round(float(d), 3) for d in dist[used]],
                )
                if args.equal_volume and base == "hd":
                    covs[name + "v"] = covs[name].with_equal_volume()
        for nu0 in args.gibbs_cov:
            t1 = time.time()
            name = f"hd_gibbs{nu0:g}"
            covs[name] = HDCovPosterior.from_gibbs(
                bases["hd"],
                scatter,
                nu0=nu0,
                num_sweeps=args.gibbs_sweeps,
                num_keep=args.gibbs_keep,
                seed=args.seed,
            )
            z = covs[name].assignments
            sizes = [int(v) for v in np.sort(np.bincount(z[-1]))[::-1] if v > 0]
            groups_g = [
                [names[known[c]] for c in np.flatnonzero(z[-1] == g)] for g in np.unique(z[-1])
            ]
            log(
                stage="fit_gibbs",
                prior=name,
                nu0=nu0,
                sizes_last=sizes,
                changed_last_sweeps=int((z[1:] != z[:-1]).sum()),
                groups_last=sorted(groups_g, key=len, reverse=True),
                seconds=round(time.time() - t1, 1),
            )
            if args.equal_volume:
                covs[name + "v"] = covs[name].with_equal_volume()
            covs[f"flat_gibbs{nu0:g}"] = HDCovPosterior(
                bases["flat"], scatter, nu0=nu0, max_samples=args.cov_samples
            )
        log(stage="fit_cov_done", seconds=round(time.time() - t0, 1))
    post = posts["hd"]
    labels = post.clustering()
    probs = np.asarray(post.assignment_probs())
    w = np.exp(np.asarray(post.log_w)).mean(0)
    log(
        stage="hd_posterior",
        super_categories_used=int(len(np.unique(labels))),
        mean_max_assignment_prob=float(probs.max(-1).mean()),
        stick_weights_top5=[round(float(v), 3) for v in np.sort(w)[::-1][:5]],
        sigma_spread_across_super=float(np.sqrt(np.asarray(post.sigma2)).mean(0).std(0).mean()),
        mu_spread_across_super=float(np.asarray(post.mu).mean(0).std(0).mean()),
    )
    groups = [known[labels == g] for g in np.unique(labels)]
    groups.sort(key=len, reverse=True)
    for i, g in enumerate(groups):
        log(stage="super_category", index=i + 1, size=len(g), members=[names[c] for c in g])

    # ---- one-shot trials ---------------------------------------------------------------
    methods = tuple(posts) + tuple(covs) + ("nn_pixels", "nn_dbm_features", "nn_hd_features")
    acc = {k: {1: [], 3: []} for k in methods}
    bal = {k: {1: [], 3: []} for k in methods}  # class-balanced: mean of per-class recalls
    t0 = time.time()
    for trial in range(args.trials):
        r = np.random.default_rng(args.trial_seed + trial)
        for shots in (1, 3):
            ex_idx = [r.choice(np.flatnonzero(y == c), shots, replace=False) for c in held]
            used = np.concatenate(ex_idx)
            test = np.setdiff1d(np.flatnonzero(np.isin(y, held)), used)
            truth = np.searchsorted(held, y[test])
            owner = np.repeat(np.arange(len(held)), shots)
            ex_mom = [
                jnp.asarray(a, jnp.float32) for a in category_moments(feats[used], owner, len(held))
            ]
            xt = jnp.asarray(feats[test])
            pred = {
                k: np.asarray(posts[k].predictive_log_prob(xt, *ex_mom)).argmax(1) for k in posts
            }
            if covs:
                ex_sc = category_scatter(feats[used], owner, len(held))
                n_ex, s_ex = (np.asarray(a, np.float64) for a in ex_mom[:2])
                for k, cp in covs.items():
                    lp = cp.predictive_log_prob(feats[test], n_ex, s_ex, ex_sc)
                    pred[k] = np.asarray(lp).argmax(1)
            trial_mom = ex_mom
            for name, f, metric in (
                ("nn_pixels", x, "hamming"),
                ("nn_dbm_features", q, "l2"),
                ("nn_hd_features", feats, "l2"),
            ):
                ex = f[used]
                t = f[test]
                if metric == "hamming":
                    d = (t[:, None, :] != ex[None]).sum(-1)
                else:
                    d = ((t[:, None, :] - ex[None]) ** 2).sum(-1)
                pred[name] = owner[d.argmin(1)]
            for k, p in pred.items():
                acc[k][shots].append(float((p == truth).mean()))
                recall = [(p[truth == j] == j).mean() for j in range(len(held))]
                bal[k][shots].append(float(np.mean(recall)))
    for k in methods:
        for shots in (1, 3):
            a, b = np.array(acc[k][shots]), np.array(bal[k][shots])
            log(
                stage="one_shot",
                method=k,
                shots=shots,
                accuracy_mean=float(a.mean()),
                accuracy_sd=float(a.std(ddof=1)) if len(a) > 1 else 0.0,
                balanced_mean=float(b.mean()),
                balanced_sd=float(b.std(ddof=1)) if len(b) > 1 else 0.0,
                trials=len(a),
                chance=1.0 / len(held),
                per_trial=[round(v, 4) for v in a],
            )
    pairs = [("hd", other) for other in methods[1:]]
    pairs += [(k, "flat") for k in posts if k.startswith("hd_extra")]
    for k in covs:
        if k.startswith("hd_cov") or k.startswith("hd_gibbs"):
            flat_k = "flat_" + k[3:].rstrip("v")
            others = (flat_k, "flat", "hd", "nn_pixels", "nn_dbm_features")
            pairs += [(k, other) for other in others]
        else:
            pairs += [(k, "flat")]
    for shots in (1, 3):
        for one, other in pairs:
            for metric, table in (("accuracy", acc), ("balanced", bal)):
                log(
                    stage="paired",
                    metric=metric,
                    shots=shots,
                    a=one,
                    b=other,
                    **paired(table[one][shots], table[other][shots]),
                )
    log(stage="trials_done", seconds=round(time.time() - t0, 1))
    return dict(
        post=post,
        feats=feats,
        white=white,
        trial_mom=trial_mom,
        xt=xt,
        groups=groups,
        probs=probs,
        index=index,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/runs/hd")
    ap.add_argument(
        "--dbm",
        default=None,
        help="DBM cache (safetensors); default OUT/dbm_top{top}_pre{pre}_sa{epochs}_seed{seed}",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--held-out", type=int, default=10)
    ap.add_argument("--top", type=int, default=100)
    ap.add_argument("--pre-epochs", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument(
        "--num-super",
        type=int,
        default=10,
        help="truncation level K (10: chosen on validation splits with the pixel components)",
    )
    ap.add_argument("--clip", type=float, default=10.0, help="top-level logits clipped to +-clip")
    ap.add_argument(
        "--whiten",
        type=int,
        default=1,
        help="1: whiten the features by the known categories' pooled within-category "
        "covariance; 0: standardise each feature only",
    )
    ap.add_argument(
        "--shared-variances",
        type=int,
        default=1,
        help="1: super-categories share sigma and tau and differ in their means",
    )
    ap.add_argument(
        "--gamma",
        type=parse_gamma,
        default=1.0,
        help="stick-breaking concentration of the super-categories, v_k ~ Beta(1, gamma); "
        "'learn': learned inside the program, gamma ~ Gamma(1, 1) (its posterior mean is "
        "emitted with the fit)",
    )
    ap.add_argument(
        "--spread",
        type=float,
        default=0.5,
        help="free variances: sd of log sigma_k, log tau_k around the typical ones (with "
        "--learn-spread 1: the HalfNormal scale of that sd)",
    )
    ap.add_argument(
        "--learn-spread",
        type=int,
        default=0,
        help="1: the spread of the super-categories' variances is learned (free variances only)",
    )
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--tree-depth", type=int, default=7)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument(
        "--trial-seed",
        type=int,
        default=1000,
        help="trial t draws its examples with numpy seed trial_seed + t (a fresh value gives "
        "fresh trials on the same split, e.g. for a confirmatory run)",
    )
    ap.add_argument(
        "--pixel-pca",
        type=int,
        default=50,
        help="concatenate this many principal components of the pixels (learned on the known "
        "classes) to the top-level logits before whitening; 0: logits only (the 2026-12-06 "
        "recipe)",
    )
    ap.add_argument(
        "--validate",
        type=int,
        nargs="*",
        default=None,
        help="validation seeds: for each, 10 (--held-out) of the KNOWN classes drawn with that "
        "seed play the new classes, and the prior, whitening and PCA are learned from the other "
        "known classes; the split's held-out classes are not used (no figures)",
    )
    ap.add_argument(
        "--extra-hd",
        type=json.loads,
        default=[],
        help="JSON list of extra HD priors fit and tested next to the default one, each a dict "
        "overriding num_super, gamma, spread, shared_variances, learn_spread "
        '(e.g. \'[{"num_super": 10}]\'; \'[{"gamma": "learn"}]\' learns gamma)',
    )
    ap.add_argument(
        "--full-cov",
        type=float,
        nargs="*",
        default=[],
        help="full-covariance super-categories (ebm_ppl.models.hd_cov.HDCovPosterior) on the HD "
        "and flat posteriors' samples, one pair per inverse-Wishart weight nu0 (pseudo-images; "
        "inf: the pooled covariance for every super-category); methods hd_cov<nu0>, "
        "flat_cov<nu0>",
    )
    ap.add_argument(
        "--gibbs-cov",
        type=float,
        nargs="*",
        default=[],
        help="like --full-cov, but the known categories' super-categories are regrouped by "
        "collapsed Gibbs with the inverse-Wishart marginal (HDCovPosterior.from_gibbs; "
        "methods hd_gibbs<nu0>, and flat_gibbs<nu0> = flat_cov<nu0>)",
    )
    ap.add_argument("--gibbs-sweeps", type=int, default=20)
    ap.add_argument("--gibbs-keep", type=int, default=10)
    ap.add_argument(
        "--equal-volume",
        type=int,
        default=0,
        help="1: also test each full-covariance HD prior with its covariances rescaled to the "
        "pooled one's determinant (methods ...v: the metric's shape without its volume)",
    )
    ap.add_argument(
        "--cov-samples",
        type=int,
        default=25,
        help="posterior samples kept (evenly spaced) for the full-covariance predictive",
    )
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.dbm is None:
        args.dbm = str(
            out / f"dbm_top{args.top}_pre{args.pre_epochs}_sa{args.epochs}_seed{args.seed}"
            ".safetensors"
        )
    t_all = time.time()
    emit(stage="settings", **vars(args))

    from ebm_ppl.datasets import load_caltech101_silhouettes
    from ebm_ppl.models.dbm import layer_logits
    from ebm_ppl.models.hd import HDNormalPosterior, category_moments

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
    t0 = time.time()
    q, logits = dbm_features(dbm, x)
    emit(
        stage="features",
        top=args.top,
        mean_marginal=float(q.mean()),
        logits_clipped=float((np.abs(logits) > args.clip).mean()),
        whiten=args.whiten,
        pixel_pca=args.pixel_pca,
        seconds=round(time.time() - t0, 1),
    )
    if args.validate is not None:
        for vseed in args.validate:
            fit_cls, val = validation_split(y, known, vseed, args.held_out)
            emit(stage="validation", seed=vseed, new=[names[c] for c in val])
            evaluate(args, x, y, q, logits, fit_cls, val, names, f"val{vseed}")
        emit(stage="total", seconds=round(time.time() - t_all, 1))
        return
    res = evaluate(args, x, y, q, logits, known, held, names)
    post, feats, white, trial_mom, xt = (
        res[k] for k in ("post", "feats", "white", "trial_mom", "xt")
    )
    groups, probs, index = res["groups"], res["probs"], res["index"]

    # where the held-out classes go, from 3 examples each (the first three images)
    ex_idx = [np.flatnonzero(y == c)[:3] for c in held]
    ex_mom = category_moments(
        feats[np.concatenate(ex_idx)], np.repeat(np.arange(len(held)), 3), len(held)
    )
    tmp = HDNormalPosterior(post.samples, *(jnp.asarray(a, jnp.float32) for a in ex_mom))
    rp = np.asarray(tmp.assignment_probs()).mean(0)  # (Q, K) averaged over samples
    comp_to_group, new = {}, []
    pk = probs.mean(0)  # (C, K) known categories' assignments, for naming components
    for gi, g in enumerate(groups):
        members = np.array([index[c] for c in g])
        comp_to_group[gi] = pk[members].mean(0)
    for qi, c in enumerate(held):
        # the tree node whose members share the new category's components most
        score = [float(rp[qi] @ comp_to_group[gi]) for gi in range(len(groups))]
        emit(
            stage="new_category_placement",
            category=names[c],
            super_category=int(np.argmax(score)) + 1,
            overlap=round(max(score), 3),
        )
        new.append((int(np.argmax(score)), x[ex_idx[qi][0]], names[c]))
    tree_figure(groups, x, y, names, out / "hd_super_categories.png", new)

    # ---- a new category simulated from 3 examples -------------------------------------
    c = held[0]
    ex = np.flatnonzero(y == c)[:3]
    n1, s1, s2 = category_moments(feats[ex], np.zeros(3, np.int64), 1)
    zs = post.sample_new_category(np.random.default_rng(7), s1[0], s2[0], 3.0, 12)
    # back to the top-level logits (the first ``top`` features; the pixel components drop)
    top_p = 1.0 / (1.0 + np.exp(-white.inverse(zs)[:, : logits.shape[1]]))
    top = (np.random.default_rng(8).random(top_p.shape) < top_p).astype(np.float32)
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

    gen = np.asarray(clamped_gibbs(key, jnp.asarray(top)))
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

    tp = HDNormalPosterior(
        {k: torch.as_tensor(np.array(v)) for k, v in post.samples.items()},
        *(torch.as_tensor(np.asarray(a)) for a in (post.counts, post.sums, post.sumsq)),
    )
    args_t = [xt[:50]] + trial_mom
    a = np.asarray(post.predictive_log_prob(*args_t))
    b = tp.predictive_log_prob(*(torch.as_tensor(np.asarray(t)) for t in args_t)).numpy()
    emit(stage="backends", max_abs_diff_predictive=float(np.abs(a - b).max()))
    emit(stage="total", seconds=round(time.time() - t_all, 1))


if __name__ == "__main__":
    main()
