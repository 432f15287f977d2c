"""The MNIST DBN rows of issue 5: the variational bound with AIS, and fine-tuned test error.

    python benchmarks/mnist_dbn.py bound --layers L1,L2[,L3] [--backends numpyro,pyro]
    python benchmarks/mnist_dbn.py finetune --layers L1,L2,L3 [--epochs 50] [--random-init]
        [--optimizer cg --cg-batch-size 1000]

``--layers`` lists the greedily trained RBM checkpoints, bottom first (``ebm_ppl.io`` model
files, e.g. from ``benchmarks/train_mnist_dbn.sh``).

``bound``: the DBN's lower bound (eq. 24) on the average test log-probability: ``log Z`` of
the top RBM by forward AIS (``--runs`` runs, 14,501-beta schedule of Salakhutdinov & Murray,
from the base-rate model of the top RBM's training data, i.e. draws from Q of the training
images) checked by reverse AIS (chains started at Q-draws of test images, ``--reverse-sweeps``
Gibbs sweeps), and the Monte Carlo bound with ``--samples`` draws from Q per image. Test and
train images are the same fixed stochastic binarizations as ``mnist_rbm_table.py``. One JSON
line per backend.

``finetune``: the feed-forward network made from the DBN (sigmoid layers initialised from
the recognition weights, a 10-way softmax output from N(0, 0.01^2)) trained by backprop on the
60,000 gray-level training images for a fixed number of epochs (no early stopping on the test
set), SGD with momentum (one optimizer for the run; ``--lr-decay linear`` lowers the
learning rate linearly to 0 over the epochs); ``--random-init`` trains the same architecture
from random weights (``W ~ N(0, 1/fan_in)``, zero biases) as the peer. ``--optimizer cg`` trains
by Polak–Ribière conjugate gradients instead, as in Hinton & Salakhutdinov (2006):
``--cg-line-searches`` (3) line searches on each minibatch of ``--cg-batch-size`` (1,000)
images (``--lr``, ``--momentum``, ``--lr-decay`` and ``--batch-size`` are then unused). One JSON
line per epoch with the test error on the 10,000 test digits; with ``--validation N`` the last N
training images are held out instead, the per-epoch error is on them, and the test error is
computed once, after the last epoch (to choose a recipe without looking at the test set).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def _stack(paths: list[str], backend: str):
    from ebm_ppl.io import load_model

    return [load_model(p, backend="jax" if backend == "numpyro" else "torch") for p in paths]


def bound(args) -> int:
    from ebm_ppl.cli import _eval_data

    train, test = _eval_data("mnist", args.seed, args.data_root)
    paths = args.layers.split(",")
    for backend in args.backends.split(","):
        t0 = time.perf_counter()
        rbms = _stack(paths, backend)
        if backend == "numpyro":
            import jax
            import jax.numpy as jnp

            import ebm_ppl.numpyro as fe

            _, k_ais, k_chain, k_bound = jax.random.split(jax.random.PRNGKey(args.seed), 4)
            ais_kw, bound_args, as_array = {"rng_key": k_ais}, (k_bound,), jnp.asarray
        else:
            import torch

            import ebm_ppl.pyro as fe

            torch.manual_seed(args.seed)
            k_chain, ais_kw, bound_args, as_array = None, {}, (), torch.as_tensor
        dbn = fe.DBN.from_rbms(rbms)
        top_train = fe.GreedyLayerData(rbms[:-1], train, seed=args.seed)(0)
        top_test = fe.GreedyLayerData(rbms[:-1], test[: args.runs], seed=args.seed + 1)(0)
        start, _ = dbn.top.transition(k_chain, top_test, args.reverse_sweeps)
        res = fe.AIS(
            dbn.top,
            base=fe.base_rate(top_train),
            betas=fe.salakhutdinov_murray_schedule(),
            num_runs=args.runs,
            reverse_samples=start,
            progress_bar=False,
            **ais_kw,
        )
        t_ais = time.perf_counter() - t0
        test_b = dbn.bound(as_array(test), res, *bound_args, num_samples=args.samples)
        train_b = dbn.bound(as_array(train), res, *bound_args, num_samples=args.samples)
        line = {
            "what": "dbn_bound",
            "backend": backend,
            "layers": [Path(p).name for p in paths],
            "sizes": list(dbn.sizes),
            "ais_runs": args.runs,
            "log_z_top": res.log_z,
            "log_z_top_stderr": res.log_z_stderr,
            "ess": float(res.ess),
            "reverse_log_z_top": res.reverse.log_z if res.reverse is not None else None,
            "reverse_log_z_top_stderr": (
                res.reverse.log_z_stderr if res.reverse is not None else None
            ),
            # the bound is only as good as log Z: flag runs whose AIS bracket does not close
            "forward_reverse_agree": (
                res.reverse is None
                or abs(res.log_z - res.reverse.log_z)
                <= 3 * (res.log_z_stderr**2 + res.reverse.log_z_stderr**2) ** 0.5
            ),
            "q_samples_per_image": args.samples,
            "test_bound": test_b.mean,
            "test_bound_stderr": test_b.stderr,
            "train_bound": train_b.mean,
            "train_bound_stderr": train_b.stderr,
            "ais_s": round(t_ais, 1),
            "total_s": round(time.perf_counter() - t0, 1),
        }
        print(json.dumps(line), flush=True)
    return 0


def finetune(args) -> int:
    import torch

    import ebm_ppl.pyro as fe
    from ebm_ppl.datasets import load_mnist

    root = Path(args.data_root) / "mnist" if args.data_root else None
    if root is not None and not root.is_dir():
        root = Path(args.data_root)
    x, y = load_mnist("train", root=root)
    xt, yt = load_mnist("test", root=root)
    x, xt = (torch.as_tensor(a, dtype=torch.float32).reshape(len(a), -1) for a in (x, xt))
    y, yt = (torch.as_tensor(a, dtype=torch.long) for a in (y, yt))
    if args.validation:  # choose recipes on held-out training images; test once, at the end
        x, xv, y, yv = (
            x[: -args.validation],
            x[-args.validation :],
            y[: -args.validation],
            y[-args.validation :],
        )
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    dbn = fe.DBN.from_rbms(_stack(args.layers.split(","), "pyro"))
    clf = fe.DBNClassifier(dbn, 10, generator=gen)
    if args.random_init:
        with torch.no_grad():
            for w, c in zip(clf.weights, clf.biases):
                w.copy_(torch.randn(w.shape, generator=gen) / w.shape[0] ** 0.5)
                c.zero_()
    torch.set_num_threads(args.threads)
    cg = args.optimizer == "cg"
    if cg:
        opt, batch_size, recipe = "cg", args.cg_batch_size, {"batch_size": args.cg_batch_size}
        recipe["cg_line_searches"] = args.cg_line_searches
    else:
        opt = torch.optim.SGD(
            clf.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay
        )
        batch_size, recipe = args.batch_size, {"lr": args.lr, "lr_decay": args.lr_decay}
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        top_only = epoch < args.top_epochs
        for w, c in list(zip(clf.weights, clf.biases))[:-1]:
            w.requires_grad_(not top_only)
            c.requires_grad_(not top_only)
        if args.lr_decay == "linear" and not cg:
            for group in opt.param_groups:
                group["lr"] = args.lr * (1 - epoch / args.epochs)
        # one epoch per call (the optimizer keeps its momentum) so each record prints at once
        (rec,) = fe.fine_tune(
            clf,
            x,
            y,
            num_epochs=1,
            batch_size=batch_size,
            seed=args.seed,
            first_epoch=epoch,
            optimizer=opt,
            cg_line_searches=args.cg_line_searches,
            x_test=xv if args.validation else xt,
            y_test=yv if args.validation else yt,
            progress_bar=False,
        )
        if args.validation:
            rec["val_error"] = rec.pop("test_error")
            if epoch == args.epochs - 1:
                rec["test_error"] = fe.classification_error(clf, xt, yt)
        rec.update(
            epoch=epoch + 1,
            what="dbn_finetune",
            init="random" if args.random_init else "dbn",
            optimizer=args.optimizer,
            top_only=top_only,
            **recipe,
            weight_decay=args.weight_decay,
            sizes=list(dbn.sizes) + [10],
            elapsed_s=round(time.perf_counter() - t0, 1),
        )
        print(json.dumps(rec), flush=True)
    if args.save:
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous() for k, v in clf.state_dict().items()}, args.save)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bound")
    b.add_argument("--layers", required=True)
    b.add_argument("--backends", default="numpyro,pyro")
    b.add_argument("--runs", type=int, default=100)
    b.add_argument("--samples", type=int, default=1)
    b.add_argument("--reverse-sweeps", type=int, default=10_000)
    f = sub.add_parser("finetune")
    f.add_argument("--layers", required=True)
    f.add_argument("--epochs", type=int, default=50)
    f.add_argument("--lr", type=float, default=0.1)
    f.add_argument("--momentum", type=float, default=0.9)
    f.add_argument("--weight-decay", type=float, default=0.0)
    f.add_argument("--lr-decay", choices=["none", "linear"], default="none")
    f.add_argument("--validation", type=int, default=0, help="hold out the last N training images")
    f.add_argument("--batch-size", type=int, default=100)
    f.add_argument("--random-init", action="store_true")
    f.add_argument("--optimizer", choices=["sgd", "cg"], default="sgd")
    f.add_argument("--cg-batch-size", type=int, default=1000)
    f.add_argument("--cg-line-searches", type=int, default=3)
    f.add_argument(
        "--top-epochs",
        type=int,
        default=0,
        help="the first N epochs train only the output layer (backpropclassify.m: 5)",
    )
    f.add_argument("--threads", type=int, default=2)
    f.add_argument("--save", default=None, help="safetensors file for the fine-tuned weights")
    for q in (b, f):
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--data-root", default=None)
    args = p.parse_args(argv)
    return bound(args) if args.cmd == "bound" else finetune(args)


if __name__ == "__main__":
    raise SystemExit(main())
