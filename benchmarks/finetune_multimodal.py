"""Discriminative fine-tuning of the multimodal DBM of ``benchmarks/mnist_multimodal.py``
next to late fusion and the unimodal pathways fine-tuned the same way (NumPyro).

    EBM_PPL_DATA=../shared/data python benchmarks/finetune_multimodal.py \\
        --out benchmarks/runs/mm5

Reads from ``--out`` (a finished ``mnist_multimodal.py`` run with the same ``--seed``,
``--n-train`` and ``--n-val``) the greedily pretrained RBMs and the multimodal DBM chosen on
the validation split (``mmdbm_<seed>_chosen.safetensors``). Four networks, each ending in a
softmax layer from ``N(0, 0.01^2)``, trained by the same :func:`ebm_ppl.numpyro.fine_tune`
(SGD, momentum 0.9, lr ``--lr`` decayed linearly to 0 over ``--epochs`` epochs, minibatch
100, cross-entropy) on the same training items (the training split, validation items held
out):

* **joint**: the multimodal DBM's Figure-8 network
  (:func:`ebm_ppl.numpyro.multimodal_classifier_init`), input ``dbm.augment(image, tags)``
  (the mean-field marginals given both, computed once), softmax on the joint layer;
  **joint_tops**: the same network with the softmax on ``[h2m, joint, h2t]`` (the headline
  of the two is the one with the lower validation error);
* **late fusion**: the two pretrained pathways as one feed-forward network on
  ``[image, tags, M]`` (the first layer's weights block-diagonal at the start, the document
  length ``M`` carrying the replicated softmax's scaled bias; the off-diagonal blocks start
  at zero and are trained too), softmax on the concatenated tops ``[h2m, h2t]``;
* **image pathway** and **text pathway** alone, likewise.

The number of epochs and the learning rate are fixed in advance (or chosen with
``--lr-grid`` on the validation split, the same rule for every network); the test set is only
evaluated. One JSON line per epoch and network, then a summary line (also written to
``--summary``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="the mnist_multimodal.py run folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--data-seed",
        type=int,
        default=0,
        help="seed of the constructed tags (the dataset); --seed varies the model only",
    )
    p.add_argument("--n-train", type=int, default=60000)
    p.add_argument("--n-val", type=int, default=10000)
    p.add_argument("--n-eval", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument(
        "--lr-grid",
        default="",
        help="comma-separated learning rates: each network takes the one with the lowest "
        "validation error after --epochs (overrides --lr)",
    )
    p.add_argument("--mf-iters", type=int, default=50)
    p.add_argument("--networks", default="joint,joint_tops,late_fusion,image,text")
    p.add_argument("--summary", default="benchmarks/checkpoints/multimodal_finetune.json")
    p.add_argument(
        "--data-root",
        default=None,
        help="folder holding the MNIST .gz files (default: $EBM_PPL_DATA, then the cache)",
    )
    args = p.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import ebm_ppl.numpyro as fe
    from ebm_ppl.datasets.tagged_digits import load_tagged_mnist, standardize
    from ebm_ppl.io import load_model

    t_all = time.perf_counter()
    out, s = Path(args.out), args.seed
    tr = load_tagged_mnist("train", seed=args.data_seed, root=args.data_root)
    te = load_tagged_mnist("test", seed=args.data_seed, root=args.data_root)
    n_fit = args.n_train - args.n_val
    x, mean, std = standardize(tr["images"][:n_fit])
    xv, _, _ = standardize(tr["images"][n_fit : args.n_train], mean, std)
    xt, _, _ = standardize(te["images"][: args.n_eval], mean, std)
    t, tv, tt = tr["tags"][:n_fit], tr["tags"][n_fit : args.n_train], te["tags"][: args.n_eval]
    y, yv, yt = (
        tr["labels"][:n_fit],
        tr["labels"][n_fit : args.n_train],
        te["labels"][: args.n_eval],
    )

    r1 = load_model(out / f"pre_{s}_gaussian_256.safetensors", backend="jax")
    r2 = load_model(out / f"pre_{s + 1}_rbm_256.safetensors", backend="jax")
    t1 = load_model(out / f"pre_{s + 2}_rsm_64.safetensors", backend="jax")
    t2 = load_model(out / f"pre_{s + 3}_rbm_64.safetensors", backend="jax")
    mm = load_model(out / f"mmdbm_{s}_chosen.safetensors", backend="jax")
    chosen = json.loads((out / "chosen.json").read_text())

    def block(a, b):
        a, b = np.asarray(a), np.asarray(b)
        z = np.zeros((a.shape[0] + b.shape[0], a.shape[1] + b.shape[1]), np.float32)
        z[: a.shape[0], : a.shape[1]], z[a.shape[0] :, a.shape[1] :] = a, b
        return z

    def out_layer(n_in, key):
        return 0.01 * jax.random.normal(jax.random.PRNGKey(key), (n_in, 10))

    def with_m(tags):  # [tags, M]: M carries the replicated softmax's scaled hidden bias
        return np.concatenate([tags, tags.sum(1, keepdims=True)], 1).astype(np.float32)

    # inputs and initial parameters of each network (feed-forward nets in the DBN format of
    # ebm_ppl.numpyro.fine_tune: {"weights": [...], "biases": [...]})
    g_w1m = np.asarray(r1.weights) / np.asarray(r1.sigma).reshape(-1, 1)
    g_c1m = np.asarray(r1.hidden_bias)
    rsm_w, rsm_c = np.asarray(t1.weights), np.asarray(t1.hidden_bias)
    text_w1 = np.concatenate([rsm_w, rsm_c[None]], 0)  # rows: words, then M

    def build(name):
        t0 = time.perf_counter()
        if name in ("joint", "joint_tops"):
            aug = jax.jit(lambda a, b: mm.augment(a, b, num_iters=args.mf_iters, tol=1e-4))

            def inputs(a, b):
                return jnp.concatenate(
                    [
                        aug(jnp.asarray(a[i : i + 1000]), jnp.asarray(b[i : i + 1000]))
                        for i in range(0, len(a), 1000)
                    ]
                )

            data = [inputs(x, t), inputs(xv, tv), inputs(xt, tt)]

            readout = "tops" if name == "joint_tops" else "joint"

            def init():
                key = jax.random.PRNGKey(s + 100)
                return fe.multimodal_classifier_init(mm, 10, key, readout=readout)

        elif name == "late_fusion":
            data = [
                jnp.asarray(np.concatenate([a, with_m(b)], 1))
                for a, b in ((x, t), (xv, tv), (xt, tt))
            ]
            w1 = block(g_w1m, text_w1)
            b1 = np.concatenate([g_c1m, np.zeros_like(rsm_c)])
            w2 = block(r2.weights, t2.weights)
            b2 = np.concatenate([np.asarray(r2.hidden_bias), np.asarray(t2.hidden_bias)])

            def init():
                return {
                    "weights": [jnp.asarray(w1), jnp.asarray(w2), out_layer(w2.shape[1], s + 100)],
                    "biases": [jnp.asarray(b1), jnp.asarray(b2), jnp.zeros(10)],
                }

        elif name == "image":
            data = [jnp.asarray(a) for a in (x, xv, xt)]

            def init():
                return {
                    "weights": [
                        jnp.asarray(g_w1m),
                        r2.weights,
                        out_layer(r2.weights.shape[1], s + 100),
                    ],
                    "biases": [jnp.asarray(g_c1m), r2.hidden_bias, jnp.zeros(10)],
                }

        elif name == "text":
            data = [jnp.asarray(with_m(b)) for b in (t, tv, tt)]

            def init():
                return {
                    "weights": [
                        jnp.asarray(text_w1),
                        t2.weights,
                        out_layer(t2.weights.shape[1], s + 100),
                    ],
                    "biases": [jnp.zeros_like(jnp.asarray(rsm_c)), t2.hidden_bias, jnp.zeros(10)],
                }

        else:
            raise SystemExit(f"unknown network {name!r}")
        return data, init, time.perf_counter() - t0

    lrs = [float(v) for v in args.lr_grid.split(",") if v.strip()] or [args.lr]
    steps = args.epochs * (n_fit // 100)
    results = {}
    for name in args.networks.split(","):
        (a, av, at), init, t_in = build(name)
        before = fe.classification_error(init(), av, jnp.asarray(yv))
        best = None
        for lr in lrs:
            t0 = time.perf_counter()
            opt = optax.sgd(optax.linear_schedule(lr, 0.0, steps), momentum=0.9)
            params, hist = fe.fine_tune(
                init(), a, jnp.asarray(y), opt, num_epochs=args.epochs, batch_size=100,
                seed=s, x_test=av, y_test=jnp.asarray(yv), progress_bar=False,
            )  # fmt: skip
            for rec in hist:
                print(
                    json.dumps(
                        {
                            "what": "finetune",
                            "network": name,
                            "lr": lr,
                            **{k.replace("test_", "val_"): v for k, v in rec.items()},
                        }
                    ),
                    flush=True,
                )
            val = hist[-1]["test_error"]  # the validation split (passed as x_test)
            if best is None or val < best["val_error"]:
                best = {
                    "lr": lr,
                    "val_error": val,
                    "test_error": fe.classification_error(params, at, jnp.asarray(yt)),
                    "train_error": hist[-1]["train_error"],
                    "seconds": round(time.perf_counter() - t0, 1),
                }
        best.update(val_error_before=before, inputs_s=round(t_in, 1), input_size=int(a.shape[1]))
        results[name] = best
        print(json.dumps({"what": "finetune_result", "network": name, **best}), flush=True)

    acc = {k: round(100 * (1 - v["test_error"]), 2) for k, v in results.items()}
    joint = [k for k in ("joint", "joint_tops") if k in results]
    head = min(joint, key=lambda k: results[k]["val_error"]) if joint else None
    names = {
        "joint": "multimodal Figure-8 network, softmax on the joint layer",
        "joint_tops": "multimodal Figure-8 network, softmax on [h2m, joint, h2t]",
        "late_fusion": "late fusion: both pretrained pathways, fine-tuned alike",
        "image": "image pathway alone, fine-tuned alike",
        "text": "text pathway alone, fine-tuned alike",
    }
    summary = {
        "ours": acc.get(head),
        "stderr": None,
        "headline": names.get(head),
        "baselines": {names[k]: v for k, v in acc.items() if k != head},
        "metric": (
            "MNIST test accuracy, % (10,000 test digits with constructed tags) of the "
            "multimodal DBM's Figure-8 network (input image + tags + mean-field marginals; "
            "readout and lr chosen on validation) after discriminative fine-tuning "
            f"({args.epochs} epochs, SGD momentum 0.9, lr decayed linearly, minibatch 100, on "
            "the training split)"
        ),
        "dbm_sa_epochs": chosen["epoch"],
        "accuracy": acc,
        "val_accuracy": {k: round(100 * (1 - v["val_error"]), 2) for k, v in results.items()},
        "runs": results,
        "command": "EBM_PPL_DATA=../shared/data python benchmarks/finetune_multimodal.py "
        + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "wall_s": round(time.perf_counter() - t_all, 1),
    }
    print(json.dumps({"what": "summary", **summary}), flush=True)
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
