"""Train the 784-500 MNIST RBMs of Salakhutdinov & Murray (2008) with our SA-MLE.

    python benchmarks/train_mnist_rbm.py --method cd25 --epochs 100 --out benchmarks/runs

Methods: ``cd1``, ``cd3``, ``cd25`` (CD-k, chains restarted at the data), ``cdramp`` (CD-k
with k raised linearly from 1 to ``--k-max`` over the epochs, as Salakhutdinov & Murray did
for their CD-25 model) and ``pcd`` (persistent chains, which the paper did not have).
Data: the 60,000 MNIST training images with a fresh stochastic binarization every epoch
(intensities as probabilities, as in the paper). Settings follow common practice for these
models: minibatch 100, W ~ N(0, 0.01^2), visible biases at the log-odds of the pixel means,
SGD with momentum 0.5 for 5 epochs then 0.9, weight decay 2e-4 on W, learning rate 0.05
(linearly decayed to 0 for PCD; ``--lr-decay`` chooses for every method).

Training runs in NumPyro (one ``lax.scan`` per epoch). After every epoch the full trainer
state is checkpointed (safetensors + JSON) in ``OUT/<method>/trainer.safetensors``; running
the same command again resumes from it. When done, the model is written to
``OUT/<method>/rbm_<method>.safetensors`` with its training config (``ebm_ppl.io.save_model``),
and one JSON line per epoch is appended to ``OUT/<method>/log.jsonl``.

Greedy layer-wise learning of a DBN (issue 5): ``--below A.safetensors,B.safetensors`` trains
the next RBM of the stack on the top layer of a bottom-up pass through the saved RBMs
``A``, ``B`` (bottom first), drawn afresh every epoch by
:class:`ebm_ppl.numpyro.GreedyLayerData` (``--mode sample`` is Algorithm 1 of the review,
``factorial`` Algorithm 2); ``--name`` names the output folder (default: the method).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

METHODS = {
    "cd1": (1, False),
    "cd3": (3, False),
    "cd25": (25, False),
    "cdramp": (None, False),
    "pcd": (1, True),
}


def cd_steps(method: str, epoch: int, epochs: int, k_max: int) -> int:
    """Gibbs steps for ``epoch`` (0-based): fixed, or raised linearly from 1 to ``k_max``."""
    steps = METHODS[method][0]
    if steps is not None:
        return steps
    return 1 + round((k_max - 1) * epoch / max(epochs - 1, 1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", choices=sorted(METHODS), required=True)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument(
        "--lr-decay",
        choices=["none", "linear"],
        default=None,
        help="learning-rate schedule (default: linear to 0 for pcd, constant otherwise)",
    )
    p.add_argument("--k-max", type=int, default=25, help="final k of cdramp")
    p.add_argument("--chains", type=int, default=None, help="persistent chains (pcd)")
    p.add_argument("--weight-decay", type=float, default=2e-4)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=os.environ.get("EBM_PPL_DATA"))
    p.add_argument("--out", default="benchmarks/runs")
    p.add_argument("--below", default=None, help="comma-separated RBM checkpoints below")
    p.add_argument("--mode", choices=["sample", "factorial"], default="sample")
    p.add_argument("--name", default=None, help="output folder name (default: the method)")
    args = p.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import numpyro
    import optax

    from ebm_ppl.datasets import StochasticBinarization, load_mnist
    from ebm_ppl.io import load_model, save_model
    from ebm_ppl.numpyro import RBM, SAMLE
    from ebm_ppl.numpyro.dbn import GreedyLayerData

    _, persistent = METHODS[args.method]
    decay = args.lr_decay or ("linear" if persistent else "none")
    num_chains = (args.chains or args.batch_size) if persistent else None
    root = Path(args.data_root) / "mnist" if args.data_root else None
    if root is not None and not root.is_dir():
        root = Path(args.data_root)
    x, _ = load_mnist("train", root=root)
    data = StochasticBinarization(x, seed=args.seed)
    below = [p for p in (args.below or "").split(",") if p]
    if below:
        layers = [load_model(p, backend="jax") for p in below]
        data = GreedyLayerData(layers, data, mode=args.mode, seed=args.seed)
        x = np.asarray(GreedyLayerData(layers, x, mode="mean")(0))  # Q~ probabilities
    n_visible = x.shape[1]
    steps_per_epoch = len(x) // args.batch_size
    total = steps_per_epoch * args.epochs

    mean = np.clip(x.mean(0), 1e-3, 1 - 1e-3)
    b0 = jnp.asarray(np.log(mean / (1 - mean)), dtype=jnp.float32)
    w0 = 0.01 * jax.random.normal(jax.random.PRNGKey(args.seed), (n_visible, args.hidden))

    def model(batch):
        W = numpyro.param("W", w0)
        b = numpyro.param("b", b0)
        c = numpyro.param("c", jnp.zeros(args.hidden))
        with numpyro.plate("data", batch.shape[0]):
            numpyro.sample("v", RBM(W, b, c), obs=batch)

    if decay == "linear":
        lr = optax.linear_schedule(args.lr, 0.0, total)
    else:
        lr = args.lr
    momentum = optax.join_schedules(
        [optax.constant_schedule(0.5), optax.constant_schedule(0.9)], [5 * steps_per_epoch]
    )
    decay_w = optax.add_decayed_weights(
        args.weight_decay, mask=lambda params: {k: k == "W" for k in params}
    )
    optim = optax.chain(decay_w, optax.inject_hyperparams(optax.sgd)(lr, momentum=momentum))
    trainers: dict[int, SAMLE] = {}

    def trainer_for(epoch: int) -> SAMLE:
        k = cd_steps(args.method, epoch, args.epochs, args.k_max)
        if k not in trainers:
            trainers[k] = SAMLE(
                model, optim, num_gibbs_steps=k, persistent=persistent, num_chains=num_chains
            )
        return trainers[k]

    trainer = trainer_for(0)

    name = args.name or args.method
    out = Path(args.out) / name
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "trainer.safetensors"
    key = jax.random.PRNGKey(args.seed + 1)
    state = None
    if ckpt.exists():
        state = trainer.load(ckpt, key, jnp.asarray(data(0)[: args.batch_size]))
        print(f"resuming {args.method} at update {int(state.optim_state[0])}", flush=True)
    log = out / "log.jsonl"
    t_start = time.perf_counter()
    done = 0 if state is None else int(state.optim_state[0]) // steps_per_epoch
    for epoch in range(done, args.epochs):
        t0 = time.perf_counter()
        trainer = trainer_for(epoch)
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
        rec = trainer.history[-1]["recon_error"]
        line = {
            "method": args.method,
            "epoch": epoch + 1,
            "updates": int(state.optim_state[0]),
            "recon_error": rec,
            "gibbs_steps": trainer.config.num_gibbs_steps,
            "epoch_s": round(time.perf_counter() - t0, 2),
        }
        with log.open("a") as f:
            f.write(json.dumps(line) + "\n")
        print(json.dumps(line), flush=True)
    params = trainer.get_params(state)
    rbm = RBM(params["W"], params["b"], params["c"])
    config = {
        "method": args.method,
        "num_gibbs_steps": (
            f"1 to {args.k_max}, raised linearly over the epochs"
            if METHODS[args.method][0] is None
            else METHODS[args.method][0]
        ),
        "persistent": persistent,
        "num_chains": num_chains,
        "epochs": args.epochs,
        "hidden": args.hidden,
        "lr": args.lr,
        "lr_schedule": "linear to 0" if decay == "linear" else "constant",
        "momentum": "0.5 for 5 epochs, then 0.9",
        "weight_decay_W": args.weight_decay,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "data": "MNIST train (60,000), fresh stochastic binarization per epoch",
        "backend": "numpyro",
        "session_train_s": round(time.perf_counter() - t_start, 1),
    }
    if below:
        config["below"] = [Path(p).name for p in below]
        config["data"] = (
            f"greedy layer data: {args.mode} mode (Algorithm "
            f"{1 if args.mode == 'sample' else 2}) through {config['below']} of " + config["data"]
        )
    path = save_model(out / f"rbm_{name}.safetensors", rbm, training=config)
    print(f"saved {path}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
