"""Train the 784-500-1000 MNIST deep Boltzmann machine of Salakhutdinov & Hinton (2009).

    python benchmarks/train_mnist_dbm.py --out benchmarks/runs            # pretrain + SA
    EBM_PPL_DATA=../shared/data nohup python benchmarks/train_mnist_dbm.py ... &

Two stages, both NumPyro, both resumable (running the same command again continues):

1. Greedy pretraining (:func:`ebm_ppl.numpyro.greedy_pretrain_dbm`): a 784-500 RBM with
   doubled visible input and a 500-1000 RBM with doubled hidden units, CD-1, ``--pre-epochs``
   epochs each, SGD lr ``--pre-lr`` decayed linearly to 0, momentum 0.5 for 5 epochs then
   0.9, weight decay 2e-4 on the weights. Per-layer trainer checkpoints in
   ``OUT/NAME/pretrain/``; the composed DBM in ``OUT/NAME/pretrained.safetensors``.
2. Stochastic approximation (section 4.2 of the review): :class:`ebm_ppl.numpyro.SAMLE` on
   ``numpyro.sample("v", dbm.visible(), obs=batch)``: positive phase at the mean-field
   fixed point (at most ``--mf-iters`` sweeps from the doubled bottom-up pass, tolerance
   ``--mf-tol``), negative phase from ``--chains`` persistent chains advanced by
   ``--gibbs`` block-Gibbs sweeps per update; lr ``--lr`` decayed linearly to 0 over
   ``--epochs`` epochs, momentum 0.9, weight decay 2e-4 on the weights. The whole trainer
   (parameters, optimizer state, chains, key) is checkpointed after every epoch in
   ``OUT/NAME/trainer.safetensors``; one JSON line per epoch goes to ``OUT/NAME/log.jsonl``;
   ``OUT/NAME/dbm.safetensors`` (``ebm_ppl.io.save_model``) is rewritten after every epoch.

Data: the 60,000 MNIST training images, a fresh stochastic binarization every epoch
(intensities as probabilities), minibatch 100, as in the original code.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", default="500,1000", help="hidden layer sizes")
    p.add_argument("--pre-epochs", type=int, default=100)
    p.add_argument("--pre-lr", type=float, default=0.05)
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--chains", type=int, default=100)
    p.add_argument("--gibbs", type=int, default=5)
    p.add_argument("--mf-iters", type=int, default=30)
    p.add_argument("--mf-tol", type=float, default=1e-5)
    p.add_argument("--weight-decay", type=float, default=2e-4)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=os.environ.get("EBM_PPL_DATA"))
    p.add_argument("--out", default="benchmarks/runs")
    p.add_argument("--name", default="dbm")
    args = p.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import numpyro
    import optax

    from ebm_ppl.datasets import StochasticBinarization, load_mnist
    from ebm_ppl.io import load_model, save_model
    from ebm_ppl.numpyro import DBM, SAMLE, greedy_pretrain_dbm

    sizes = [int(s) for s in args.hidden.split(",")]
    root = Path(args.data_root) / "mnist" if args.data_root else None
    if root is not None and not root.is_dir():
        root = Path(args.data_root)
    x, _ = load_mnist("train", root=root)
    data = StochasticBinarization(x, seed=args.seed)
    steps_per_epoch = len(x) // args.batch_size
    out = Path(args.out) / args.name
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.jsonl"

    def write(line: dict) -> None:
        with log.open("a") as f:
            f.write(json.dumps(line) + "\n")
        print(json.dumps(line), flush=True)

    def sgd(lr0: float, epochs: int):
        lr = optax.linear_schedule(lr0, 0.0, epochs * steps_per_epoch)
        momentum = optax.join_schedules(
            [optax.constant_schedule(0.5), optax.constant_schedule(0.9)], [5 * steps_per_epoch]
        )
        decay = optax.add_decayed_weights(
            args.weight_decay,
            mask=lambda params: {k: k == "weights" or k.startswith("W") for k in params},
        )
        return optax.chain(decay, optax.inject_hyperparams(optax.sgd)(lr, momentum=momentum))

    # ---- stage 1: greedy pretraining ---------------------------------------------------
    pretrained = out / "pretrained.safetensors"
    if not pretrained.exists():
        t0 = time.perf_counter()
        dbm = greedy_pretrain_dbm(
            jax.random.PRNGKey(args.seed),
            data,
            sizes,
            sgd(args.pre_lr, args.pre_epochs),
            num_epochs=args.pre_epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            progress_bar=False,
            checkpoint=out / "pretrain",
            num_gibbs_steps=1,
            persistent=False,
        )
        save_model(pretrained, dbm, stage="pretrained", settings=vars(args))
        write({"stage": "pretrain", "wall_s": round(time.perf_counter() - t0, 1)})
    dbm0 = load_model(pretrained, backend="jax")

    # ---- stage 2: stochastic approximation with mean field -----------------------------
    names_w = [f"W{i + 1}" for i in range(len(dbm0.weights))]
    names_b = [f"b{i}" for i in range(len(dbm0.biases))]

    def model(batch):
        ws = [numpyro.param(n, w) for n, w in zip(names_w, dbm0.weights)]
        bs = [numpyro.param(n, b) for n, b in zip(names_b, dbm0.biases)]
        site = DBM(ws, bs).visible(num_iters=args.mf_iters, tol=args.mf_tol)
        with numpyro.plate("data", batch.shape[0]):
            numpyro.sample("v", site, obs=batch)

    trainer = SAMLE(
        model, sgd(args.lr, args.epochs), num_gibbs_steps=args.gibbs, num_chains=args.chains
    )
    ckpt = out / "trainer.safetensors"
    key = jax.random.PRNGKey(args.seed + 1)
    state = None
    if ckpt.exists():
        state = trainer.load(ckpt, key, jnp.asarray(data(0)[: args.batch_size]))
        print(f"resuming at update {int(state.optim_state[0])}", flush=True)
    done = 0 if state is None else int(state.optim_state[0]) // steps_per_epoch
    for epoch in range(done, args.epochs):
        t0 = time.perf_counter()
        state = trainer.run(
            key,
            data,
            num_epochs=epoch + 1,
            batch_size=args.batch_size,
            seed=args.seed,
            progress_bar=False,
            init_state=state,
        )
        trainer.save(ckpt, state)
        prm = trainer.get_params(state)
        dbm = DBM([prm[n] for n in names_w], [prm[n] for n in names_b])
        save_model(out / "dbm.safetensors", dbm, stage="sa", epoch=epoch + 1, settings=vars(args))
        write(
            {
                "stage": "sa",
                "epoch": epoch + 1,
                "updates": int(state.optim_state[0]),
                "recon_error": trainer.history[-1]["recon_error"],
                "epoch_s": round(time.perf_counter() - t0, 2),
            }
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
