"""Fine-tune a trained MNIST DBM as the augmented-input network of Figure 8 (Salakhutdinov &
Hinton 2009) and report the test error of the last epoch.

    python benchmarks/finetune_mnist_dbm.py \
        --model benchmarks/checkpoints/dbm_784_500_1000.safetensors

NumPyro: the inputs are ``dbm.augment(x) = [x, q(h2 | x)]`` with ``x`` the gray-level images and
``q`` the mean-field marginals (``--mf-iters`` sweeps from the doubled bottom-up pass), computed
once; the network ``h1 = g(x W1 + q2 W2^T + b1)``, ``h2 = g(h1 W2 + b2)``, softmax output starts
from the DBM (:func:`ebm_ppl.numpyro.dbm_classifier_init`) and is trained by SGD with momentum
0.9, lr ``--lr`` decayed linearly to 0 over ``--epochs`` epochs, minibatch 100, cross-entropy
(:func:`ebm_ppl.numpyro.fine_tune`, one ``lax.scan`` per epoch); ``--optimizer cg`` trains by
Polak–Ribière conjugate gradients instead (Hinton & Salakhutdinov 2006; Salakhutdinov & Hinton
2009): ``--cg-line-searches`` (3) line searches on each minibatch of ``--cg-batch-size`` (1,000)
images, ``--lr`` and ``--batch-size`` unused. ``--top-epochs N`` trains only the output layer
(on the fixed top-layer features) for the first ``N`` of the ``--epochs`` epochs, then the whole
network, as the published code does (N = 5). The number of epochs is fixed
in advance; the test set is never used to choose anything. One JSON line per epoch, then a
summary line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--mf-iters", type=int, default=30)
    p.add_argument("--optimizer", choices=["sgd", "cg"], default="sgd")
    p.add_argument("--cg-batch-size", type=int, default=1000)
    p.add_argument("--cg-line-searches", type=int, default=3)
    p.add_argument(
        "--top-epochs",
        type=int,
        default=0,
        help="of --epochs, the first N train only the output layer (the DBM code's backprop.m: 5)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=os.environ.get("EBM_PPL_DATA"))
    args = p.parse_args(argv)
    if not 0 <= args.top_epochs < args.epochs:
        p.error(f"--top-epochs must be in [0, --epochs), got {args.top_epochs}")

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import ebm_ppl.numpyro as fe
    from ebm_ppl.datasets import load_mnist
    from ebm_ppl.io import load_model

    root = Path(args.data_root) / "mnist" if args.data_root else None
    if root is not None and not root.is_dir():
        root = Path(args.data_root)
    (x, y), (xt, yt) = load_mnist("train", root=root), load_mnist("test", root=root)
    x, xt = (np.asarray(a, np.float32).reshape(len(a), -1) for a in (x, xt))
    t0 = time.perf_counter()
    trained = load_model(args.model, backend="jax")
    # gray levels in [0, 1] as mean-field inputs (the binary-value check is off)
    dbm = fe.DBM(list(trained.weights), list(trained.biases), validate_args=False)
    augment = jax.jit(lambda v: dbm.augment(v, num_iters=args.mf_iters))
    a, at = (
        jnp.concatenate([augment(jnp.asarray(d[i : i + 5000])) for i in range(0, len(d), 5000)])
        for d in (x, xt)
    )
    t_aug = time.perf_counter() - t0
    if args.optimizer == "cg":
        optim, batch_size = "cg", args.cg_batch_size
        recipe = {"batch_size": batch_size, "cg_line_searches": args.cg_line_searches}
    else:
        steps = args.epochs * (len(x) // args.batch_size)
        optim = optax.sgd(optax.linear_schedule(args.lr, 0.0, steps), momentum=0.9)
        batch_size, recipe = args.batch_size, {"lr": args.lr}
    params = fe.dbm_classifier_init(dbm, 10, jax.random.PRNGKey(args.seed))
    history_top = []
    if args.top_epochs:
        from ebm_ppl.models.dbm import augmented_logits

        # the top hidden layer's activations: the network with an identity output layer
        n_top = params["weights"][-1].shape[0]
        inner = (params["weights"][:-1] + [jnp.eye(n_top)], params["down"])
        top_features = jax.jit(
            lambda v: augmented_logits(*inner, params["biases"][:-1] + [jnp.zeros(n_top)], v)
        )
        f, ft = (
            jnp.concatenate([top_features(d[i : i + 5000]) for i in range(0, len(d), 5000)])
            for d in (a, at)
        )
        top = {"weights": [params["weights"][-1]], "biases": [params["biases"][-1]]}
        top, history_top = fe.fine_tune(
            top,
            f,
            jnp.asarray(y),
            optim,
            num_epochs=args.top_epochs,
            batch_size=batch_size,
            seed=args.seed,
            cg_line_searches=args.cg_line_searches,
            x_test=ft,
            y_test=jnp.asarray(yt),
            progress_bar=False,
        )
        params["weights"][-1], params["biases"][-1] = top["weights"][0], top["biases"][0]
        del f, ft
    for rec in history_top:
        print(json.dumps({"what": "dbm_finetune", "top_only": True, **rec}), flush=True)
    params, history = fe.fine_tune(
        params,
        a,
        jnp.asarray(y),
        optim,
        num_epochs=args.epochs - args.top_epochs,
        batch_size=batch_size,
        # a different seed, so that the whole-network epochs see new minibatch orders
        seed=args.seed + (1 if args.top_epochs else 0),
        cg_line_searches=args.cg_line_searches,
        x_test=at,
        y_test=jnp.asarray(yt),
        progress_bar=False,
    )
    for rec in history:
        rec["epoch"] += args.top_epochs
        print(json.dumps({"what": "dbm_finetune", **rec}), flush=True)
    print(
        json.dumps(
            {
                "what": "dbm_finetune_summary",
                "model": args.model,
                "sizes": list(dbm.sizes) + [10],
                "epochs": args.epochs,
                "optimizer": args.optimizer,
                "top_epochs": args.top_epochs,
                **recipe,
                "mf_iters": args.mf_iters,
                "test_error": fe.classification_error(params, at, jnp.asarray(yt)),
                "train_error": fe.classification_error(params, a, jnp.asarray(y)),
                "augment_s": round(t_aug, 1),
                "total_s": round(time.perf_counter() - t0, 1),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
