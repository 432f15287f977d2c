"""The deep Lambertian model on synthetic shaded digits (NumPyro): an albedo DBM pretrained on
albedo images, single-image inference of albedo / surface / light, relighting, and one-shot
recognition across illumination (nearest neighbour on inferred albedo vs on raw pixels),
echoing the slides' Yale B one-shot plot.

The data (:mod:`ebm_ppl.datasets.shaded_digits`, documented and seeded, not real faces): an identity
is a digit's albedo (14x14) on its own smooth random surface; its images are rendered
under random lights within ``--max-polar`` degrees of the viewing axis, plus noise.

Stages (checkpointed under ``--out``):

1. the albedo DBM 196-``h1``-``h2`` with Gaussian visible units (sigma = 1) on standardized
   albedos of training digits: a Gaussian RBM and an RBM by CD-1, composed, then SA-MLE
   (mean-field positive phase, persistent chains);
2. a learned surface prior: photometric stereo (:func:`photometric_stereo`) on ``--ps-identities``
   *training* identities, each seen under ``--lights`` known lights (as Yale B subjects are),
   gives example height fields; probabilistic PCA of rank ``--height-rank``
   (:func:`fit_height_prior`) makes them a Gaussian prior;
3. ``DeepLambertian.infer_map`` on every test image on its own (coordinate ascent: mean
   field for the DBM, exact conditional mean of the albedo, Adam on height field and light),
   once with the hand-set smoothness prior (``--smoothness``, ``--height-scale``) and once with
   the learned surface prior (smoothness ``--learned-smoothness``);
4. one-shot recognition over ``--identities`` test identities with ``--lights`` images each:
   for k = 1, 2, 3 gallery images per identity (random lights), the accuracy of nearest
   neighbour (Euclidean) on raw pixels (the image read as the albedo), on pixels divided by
   the image's norm (a brightness-normalised peer), and on each inferred albedo for the other
   images, over ``--trials`` random galleries (the same galleries for every feature, so the
   differences are paired); image grids of the inferred albedo, shading and relit images.

One JSON line per measurement. Example::

    EBM_PPL_DATA=../shared/data python benchmarks/shaded_digits_lambertian.py
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
from ebm_ppl.datasets.shaded_digits import albedo_from_digits, make_identities, make_lights
from ebm_ppl.datasets.shaded_digits import normals as normals_np
from ebm_ppl.io import load_model, save_model
from ebm_ppl.models.dbm import combine_pretrained
from ebm_ppl.models.lambertian import fit_height_prior, photometric_stereo


def emit(**kw):
    print(json.dumps(kw), flush=True)


def cd(kind, data, n_hidden, epochs, lr, seed):
    rng = np.random.default_rng(seed)
    n_vis = int(data.shape[1])
    w0 = jnp.asarray(0.01 * rng.standard_normal((n_vis, n_hidden)), jnp.float32)

    def build(w, b, c):
        return enp.GaussianRBM(w, b, c, 1.0) if kind == "gaussian" else enp.RBM(w, b, c)

    def model(batch):
        w = numpyro.param("W", w0)
        b = numpyro.param("b", jnp.zeros(n_vis))
        c = numpyro.param("c", jnp.zeros(n_hidden))
        with numpyro.plate("data", batch.shape[0]):
            numpyro.sample("v", build(w, b, c), obs=batch)

    opt = optax.chain(optax.add_decayed_weights(2e-4), optax.sgd(lr, momentum=0.9))
    tr = enp.SAMLE(model, opt, num_gibbs_steps=1, persistent=False)
    st = tr.run(jax.random.PRNGKey(seed), jnp.asarray(data), num_epochs=epochs)
    p = tr.get_params(st)
    return build(p["W"], p["b"], p["c"])


def albedo_dbm(v, args, out):
    path = out / "albedo_dbm.safetensors"
    if path.exists():
        return load_model(path, backend="jax")
    t0 = time.time()
    g = cd("gaussian", v, args.h1, args.pre_epochs, 0.002, args.seed)
    p1 = np.asarray(g.hidden_probs(jnp.asarray(v)))
    key = jax.random.PRNGKey(args.seed + 1)
    r = cd(
        "rbm",
        np.asarray(jax.random.bernoulli(key, p1), np.float32),
        args.h2,
        args.pre_epochs,
        0.05,
        args.seed + 1,
    )
    prm = combine_pretrained(
        [(g.weights, g.visible_bias, g.hidden_bias), (r.weights, r.visible_bias, r.hidden_bias)]
    )
    init = {
        "W1": prm.weights[0],
        "W2": prm.weights[1],
        "b0": prm.biases[0],
        "b1": prm.biases[1],
        "b2": prm.biases[2],
    }

    def model(batch):
        q = {k: numpyro.param(k, x) for k, x in init.items()}
        dbm = enp.DBM([q["W1"], q["W2"]], [q["b0"], q["b1"], q["b2"]], sigma=1.0)
        with numpyro.plate("data", batch.shape[0]):
            numpyro.sample("v", dbm.visible(num_iters=10), obs=batch)

    opt = optax.chain(
        optax.add_decayed_weights(2e-4, mask=lambda p: {k: k[0] == "W" for k in p}),
        optax.sgd(args.sa_lr, momentum=0.5),
    )
    tr = enp.SAMLE(model, opt, num_gibbs_steps=5, num_chains=100)
    st = tr.run(jax.random.PRNGKey(args.seed + 2), jnp.asarray(v), num_epochs=args.sa_epochs)
    q = tr.get_params(st)
    dbm = enp.DBM([q["W1"], q["W2"]], [q["b0"], q["b1"], q["b2"]], sigma=1.0)
    save_model(path, dbm, seconds=time.time() - t0)
    emit(
        stage="albedo_dbm",
        sizes=[196, args.h1, args.h2],
        seconds=round(time.time() - t0, 1),
        recon=tr.history[-1]["recon_error"],
    )
    return dbm


def nn_accuracies(feats, n_id, n_lights, k, trials, seed):
    """Per-trial accuracies ``(trials,)`` of 1-NN with k gallery images per identity (the rest
    are probes); the galleries depend on ``seed`` only, so features are compared paired."""
    rng = np.random.default_rng(seed)
    f = feats.reshape(n_id, n_lights, -1)
    accs = []
    for _ in range(trials):
        order = np.stack([rng.permutation(n_lights) for _ in range(n_id)])
        gal = np.stack([f[i, order[i, :k]] for i in range(n_id)]).reshape(n_id * k, -1)
        gal_y = np.repeat(np.arange(n_id), k)
        probes = np.stack([f[i, order[i, k:]] for i in range(n_id)]).reshape(-1, f.shape[-1])
        probe_y = np.repeat(np.arange(n_id), n_lights - k)
        d = ((probes[:, None, :] - gal[None]) ** 2).sum(-1)
        accs.append(float((gal_y[d.argmin(1)] == probe_y).mean()))
    return np.asarray(accs)


def angle_deg(a, b):
    """Angles in degrees between the vectors of ``a`` and ``b`` ``(..., 3)``."""
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def figure(rows, path, title, shape=(14, 14)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    n = rows[names[0]].shape[0]
    fig, axes = plt.subplots(len(names), n, figsize=(n * 0.9, len(names) * 1.0))
    for i, name in enumerate(names):
        for j in range(n):
            ax = axes[i, j]
            img = rows[name][j]
            ax.imshow(
                img.reshape(shape + ((3,) if img.size == 3 * shape[0] * shape[1] else ())),
                cmap="gray",
                vmin=0,
                vmax=1,
            )
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
    ap.add_argument("--out", default="benchmarks/runs/lambertian")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=20000)
    ap.add_argument("--h1", type=int, default=128)
    ap.add_argument("--h2", type=int, default=64)
    ap.add_argument("--pre-epochs", type=int, default=10)
    ap.add_argument("--sa-epochs", type=int, default=5)
    ap.add_argument("--sa-lr", type=float, default=0.0005)
    ap.add_argument("--identities", type=int, default=50)
    ap.add_argument("--lights", type=int, default=8)
    ap.add_argument("--max-polar", type=float, default=60.0)
    ap.add_argument("--noise", type=float, default=0.02)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--smoothness", type=float, default=100.0)
    ap.add_argument("--height-scale", type=float, default=3.0)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--ps-identities", type=int, default=1000)
    ap.add_argument("--height-rank", type=int, default=10)
    ap.add_argument("--learned-smoothness", type=float, default=0.0)
    ap.add_argument("--figures", default="benchmarks/figures")
    ap.add_argument(
        "--summary",
        default="benchmarks/checkpoints/lambertian.json",
        help="where the headline numbers go (read by benchmarks/paper_table.py build)",
    )
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.time()

    xtr, _ = load_mnist("train", root=args.data_root)
    xte, _ = load_mnist("test", root=args.data_root)
    a_tr = albedo_from_digits(xtr[: args.n_train])
    offset, scale = float(a_tr.mean()), float(a_tr.std())
    v_tr = ((a_tr - offset) / scale).astype(np.float32)
    emit(stage="data", n_train=len(a_tr), albedo_offset=offset, albedo_scale=scale)
    dbm = albedo_dbm(v_tr, args, out)

    data = make_identities(
        xte[: args.identities],
        args.lights,
        max_polar=args.max_polar,
        noise=args.noise,
        seed=args.seed + 5,
    )
    images = data["images"].reshape(-1, 196)
    true_a = np.repeat(data["albedo"], args.lights, 0)
    true_l = data["light"].reshape(-1, 3)
    true_n = np.repeat(normals_np(data["height"]), args.lights, 0)

    # the surface prior from training identities under known lights (photometric stereo)
    t0 = time.time()
    ps = make_identities(
        xtr[args.n_train : args.n_train + args.ps_identities],
        args.lights,
        max_polar=args.max_polar,
        noise=args.noise,
        seed=args.seed + 7,
    )
    z_ps = photometric_stereo(ps["images"], ps["light"], (14, 14))
    height_prior = fit_height_prior(z_ps, rank=args.height_rank)
    emit(
        stage="height_prior",
        identities=args.ps_identities,
        rank=args.height_rank,
        seconds=round(time.time() - t0, 1),
        ps_normal_error_deg=float(angle_deg(normals_np(z_ps), normals_np(ps["height"])).mean()),
    )

    common = dict(
        offset=offset,
        scale=scale,
        light_loc=(0.0, 0.0, 1.0),
        light_scale=0.5,
        noise=args.noise,
    )
    priors = {
        "smoothness": dict(height_scale=args.height_scale, smoothness=args.smoothness),
        "learned": dict(smoothness=args.learned_smoothness, height_prior=height_prior),
    }
    results, feats, summary = {}, {"pixels": images}, {}
    feats["pixels_normalised"] = images / np.linalg.norm(images, axis=1, keepdims=True)
    emit(
        stage="baseline",
        flat_surface_normal_error_deg=float(angle_deg(true_n, np.array([0.0, 0.0, 1.0])).mean()),
        light_error_deg_prior_mean=float(angle_deg(true_l, np.array([0.0, 0.0, 1.0])).mean()),
        albedo_rmse_image_as_albedo=float(np.sqrt(((images - true_a) ** 2).mean())),
    )
    for name, extra in priors.items():
        lam = enp.DeepLambertian(dbm, (14, 14), **common, **extra)
        t0 = time.time()
        res = lam.infer_map(images, num_steps=args.steps, lr=0.05)
        albedo = np.asarray(res["albedo"])
        secs = time.time() - t0
        fit = np.asarray(lam.relight(res["albedo"], res["height"], res["light"]))
        n_hat = np.asarray(res["normals"])
        tilt = angle_deg(n_hat, np.array([0.0, 0.0, 1.0]))
        emit(
            stage="inference",
            surface_prior=name,
            images=len(images),
            steps=args.steps,
            seconds=round(secs, 1),
            image_rmse=float(np.sqrt(((fit - images) ** 2).mean())),
            albedo_rmse=float(np.sqrt(((albedo - true_a) ** 2).mean())),
            light_angle_error_deg_mean=float(angle_deg(np.asarray(res["light"]), true_l).mean()),
            light_angle_error_deg_median=float(
                np.median(angle_deg(np.asarray(res["light"]), true_l))
            ),
            normal_error_deg_mean=float(angle_deg(n_hat, true_n).mean()),
            surface_tilt_deg_mean=float(tilt.mean()),
            true_surface_tilt_deg_mean=float(angle_deg(true_n, np.array([0.0, 0.0, 1.0])).mean()),
        )
        results[name] = (lam, res)
        feats[f"albedo_{name}"] = albedo
        summary[f"light_error_deg_{name}"] = round(
            float(angle_deg(np.asarray(res["light"]), true_l).mean()), 2
        )
        summary[f"normal_error_deg_{name}"] = round(float(angle_deg(n_hat, true_n).mean()), 2)
        summary[f"surface_tilt_deg_{name}"] = round(float(tilt.mean()), 2)

    for k in (1, 2, 3):
        accs = {
            name: nn_accuracies(f, args.identities, args.lights, k, args.trials, args.seed)
            for name, f in feats.items()
        }
        for name, a in accs.items():
            row = dict(
                stage="one_shot",
                gallery_per_identity=k,
                features=name,
                accuracy=float(a.mean()),
                sd=float(a.std()),
                identities=args.identities,
                trials=args.trials,
                chance=1 / args.identities,
            )
            if name.startswith("albedo"):
                for peer in ("pixels", "pixels_normalised"):
                    diff = a - accs[peer]
                    t = diff.mean() / (diff.std(ddof=1) / np.sqrt(len(diff)) + 1e-12)
                    row[f"paired_gain_over_{peer}"] = float(diff.mean())
                    row[f"paired_t_over_{peer}"] = float(t)
            emit(**row)
            summary[f"one_shot_{k}_pct_{name}"] = round(100 * float(a.mean()), 2)
            summary[f"one_shot_{k}_sd_{name}"] = round(100 * float(a.std()), 2)

    lam, res = results["learned"]
    albedo = np.asarray(res["albedo"])
    idx = np.arange(0, 10 * args.lights, args.lights)[:10]
    new = make_lights(3, max_polar=50, seed=99)
    rows = {
        "observed": images[idx],
        "inferred albedo": albedo[idx],
        "true albedo": true_a[idx],
        "true normals": (true_n[idx] * 0.5 + 0.5).reshape(len(idx), -1),
        "inferred shading": np.asarray(res["shading"])[idx] / 1.2,
        "normals (RGB)": (np.asarray(res["normals"])[idx] * 0.5 + 0.5).reshape(len(idx), -1),
    }
    for j, ell in enumerate(new):
        rows[f"relit {j + 1}"] = np.asarray(
            lam.relight(res["albedo"][idx], res["height"][idx], jnp.asarray(ell))
        )
    figure(
        rows,
        Path(args.figures) / "lambertian_relighting.png",
        "Deep Lambertian model: one image in, albedo / shading / normals / relit out",
    )
    secs = round(time.time() - t_all, 1)
    summary["true_surface_tilt_deg"] = round(
        float(angle_deg(true_n, np.array([0, 0, 1.0])).mean()), 2
    )
    summary["light_error_deg_prior_mean"] = round(
        float(angle_deg(true_l, np.array([0.0, 0.0, 1.0])).mean()), 2
    )
    record = {
        "ours": summary["one_shot_1_pct_albedo_learned"],
        "stderr": round(summary["one_shot_1_sd_albedo_learned"] / np.sqrt(args.trials), 2),
        "metric": (
            "one-shot recognition across illumination, % (1 gallery image per identity, "
            f"{args.identities} synthetic shaded-digit identities, {args.lights} lights each, "
            f"{args.trials} random galleries): nearest neighbour on the albedo inferred from one "
            "image with the learned surface prior"
        ),
        "baselines": {
            "pixels (the image read as the albedo)": summary["one_shot_1_pct_pixels"],
            "pixels divided by their norm": summary["one_shot_1_pct_pixels_normalised"],
            "inferred albedo, hand-set smoothness prior": summary[
                "one_shot_1_pct_albedo_smoothness"
            ],
        },
        "details": summary,
        "seed": args.seed,
        "wall_s": secs,
        "command": "EBM_PPL_DATA=../shared/data python benchmarks/shaded_digits_lambertian.py",
    }
    if args.summary:
        Path(args.summary).write_text(json.dumps(record, indent=1) + "\n")
    emit(stage="done", seconds=secs)


if __name__ == "__main__":
    main()
