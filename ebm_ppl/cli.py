"""The ``ebm-ppl`` command line.

``ebm-ppl evaluate CHECKPOINT --data mnist`` estimates ``log Z`` of a saved RBM by annealed
importance sampling from the base-rate model (forward, and reverse with ``--reverse``) and
prints it with its error bars and the average test and train log-likelihoods.

``ebm-ppl demo`` trains a small binary RBM on binarized scikit-learn digits with persistent
CD in Pyro and/or NumPyro, prints the exact average train and test log-likelihood (exact:
the hidden layer is small enough to enumerate) next to independent Bernoulli pixels, samples
the trained model with block Gibbs under the PPL's own MCMC, and writes a sample grid, an
arviz trace plot and a safetensors checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def _baseline(train: np.ndarray, test: np.ndarray) -> tuple[float, float]:
    """Average log-likelihood of independent Bernoulli pixels (Laplace-smoothed MLE)."""
    p = (train.sum(0) + 1.0) / (len(train) + 2.0)

    def ll(x):
        return float((x * np.log(p) + (1 - x) * np.log1p(-p)).sum(1).mean())

    return ll(train), ll(test)


def _demo_pyro(args, train, test, out: Path) -> dict:
    import pyro
    import torch
    from pyro.infer import MCMC

    from ebm_ppl import diagnostics
    from ebm_ppl.io import save_model
    from ebm_ppl.pyro import RBM, SAMLE, BlockGibbs

    pyro.set_rng_seed(args.seed)
    pyro.clear_param_store()
    nv, nh = train.shape[1], args.hidden

    def model(data):
        W = pyro.param("W", 0.01 * torch.randn(nv, nh))
        b = pyro.param("b", torch.zeros(nv))
        c = pyro.param("c", torch.zeros(nh))
        with pyro.plate("data", data.shape[0]):
            pyro.sample("v", RBM(W, b, c), obs=data)

    t0 = time.perf_counter()
    trainer = SAMLE(
        model,
        pyro.optim.SGD({"lr": args.lr, "momentum": 0.5}),
        num_chains=args.chains,
    )
    trainer.run(train, num_epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    train_s = time.perf_counter() - t0
    rbm = RBM(*(pyro.param(n).detach() for n in "Wbc"), num_gibbs_steps=1000)
    log_z = rbm.log_partition()

    def ll(x):
        return float((rbm.log_prob(torch.as_tensor(x)) - log_z).mean())

    W, b, c = rbm.params

    def sampler():
        with pyro.plate("images", 50):
            pyro.sample("v", RBM(W, b, c))

    mcmc = MCMC(BlockGibbs(sampler), num_samples=args.draws, warmup_steps=args.draws, num_chains=2)
    mcmc.run()
    return _finish(
        "pyro", args, rbm, ll(train), ll(test), train_s, mcmc, out, save_model, diagnostics
    )


def _demo_numpyro(args, train, test, out: Path) -> dict:
    import jax
    import jax.numpy as jnp
    import numpyro
    import optax
    from numpyro.infer import MCMC

    from ebm_ppl import diagnostics
    from ebm_ppl.io import save_model
    from ebm_ppl.numpyro import RBM, SAMLE, BlockGibbs

    nv, nh = train.shape[1], args.hidden
    key = jax.random.PRNGKey(args.seed)
    k_init, k_train, k_mcmc = jax.random.split(key, 3)

    def model(data):
        W = numpyro.param("W", 0.01 * jax.random.normal(k_init, (nv, nh)))
        b = numpyro.param("b", jnp.zeros(nv))
        c = numpyro.param("c", jnp.zeros(nh))
        with numpyro.plate("data", data.shape[0]):
            numpyro.sample("v", RBM(W, b, c), obs=data)

    t0 = time.perf_counter()
    trainer = SAMLE(model, optax.sgd(args.lr, momentum=0.5), num_chains=args.chains)
    state = trainer.run(
        k_train, train, num_epochs=args.epochs, batch_size=args.batch_size, seed=args.seed
    )
    train_s = time.perf_counter() - t0
    p = trainer.get_params(state)
    rbm = RBM(p["W"], p["b"], p["c"], num_gibbs_steps=1000)
    log_z = rbm.log_partition()

    def ll(x):
        return float((rbm.log_prob(jnp.asarray(x)) - log_z).mean())

    W, b, c = rbm.params

    def sampler():
        with numpyro.plate("images", 50):
            numpyro.sample("v", RBM(W, b, c))

    mcmc = MCMC(
        BlockGibbs(sampler),
        num_warmup=args.draws,
        num_samples=args.draws,
        num_chains=2,
        chain_method="vectorized",
    )
    mcmc.run(k_mcmc, extra_fields=("free_energy",))
    return _finish(
        "numpyro", args, rbm, ll(train), ll(test), train_s, mcmc, out, save_model, diagnostics
    )


def _finish(name, args, rbm, ll_train, ll_test, train_s, mcmc, out, save_model, diagnostics):
    data = diagnostics.to_arviz(mcmc)
    summ = diagnostics.summary(data)
    trace_png = diagnostics.plot_trace(data, out / f"trace_{name}.png")
    last = np.asarray(data.posterior["v"].values[0, -1])  # 50 images from chain 0
    samples_png = diagnostics.plot_samples(last, out / f"samples_{name}.png", shape=(8, 8))
    ckpt = save_model(
        out / f"rbm_{name}.safetensors",
        rbm,
        trained_with={"epochs": args.epochs, "lr": args.lr, "seed": args.seed},
    )
    row = summ.loc["free_energy_v"] if "free_energy_v" in summ.index else summ.iloc[0]
    return {
        "backend": name,
        "train_ll": ll_train,
        "test_ll": ll_test,
        "train_s": train_s,
        "r_hat_free_energy": float(row["r_hat"]),
        "ess_bulk_free_energy": float(row["ess_bulk"]),
        "samples_png": str(samples_png),
        "trace_png": str(trace_png),
        "checkpoint": str(ckpt),
    }


def demo(args: argparse.Namespace) -> int:
    from ebm_ppl.datasets import binarize, load_digits

    if not 1 <= args.hidden <= 20:
        print("error: --hidden must be between 1 and 20 (exact log Z enumerates 2^hidden states)")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x_train, _ = load_digits("train", seed=args.seed)
    x_test, _ = load_digits("test", seed=args.seed)
    train, test = binarize(x_train), binarize(x_test)
    base_train, base_test = _baseline(train, test)
    print(
        f"binarized digits: {len(train)} train / {len(test)} test images of 8x8 pixels; "
        f"RBM 64-{args.hidden}, PCD-1 with {args.chains} chains, {args.epochs} epochs"
    )
    backends = ["pyro", "numpyro"] if args.backend == "both" else [args.backend]
    results = []
    for name in backends:
        run = _demo_pyro if name == "pyro" else _demo_numpyro
        results.append(run(args, train, test, out))
    print()
    print(f"{'model':<28}{'train LL':>12}{'test LL':>12}{'train s':>10}{'R-hat F':>10}")
    print(f"{'independent pixels':<28}{base_train:>12.3f}{base_test:>12.3f}{'':>10}{'':>10}")
    for r in results:
        label = f"RBM ({r['backend']})"
        print(
            f"{label:<28}{r['train_ll']:>12.3f}{r['test_ll']:>12.3f}"
            f"{r['train_s']:>10.1f}{r['r_hat_free_energy']:>10.3f}"
        )
    print("(average log-likelihood in nats per image, exact: log Z by enumeration)")
    for r in results:
        print(
            f"{r['backend']}: samples {r['samples_png']}, trace {r['trace_png']}, "
            f"checkpoint {r['checkpoint']}"
        )
    (out / "demo_results.json").write_text(
        json.dumps({"baseline": [base_train, base_test], "results": results}, indent=2)
    )
    return 0


def _eval_data(name: str, seed: int, data_root: str | None):
    """(train, test) binary float32 arrays of a named data set."""
    from ebm_ppl.datasets import binarize, load_binarized_mnist, load_digits, load_mnist

    if name == "mnist":  # stochastic binarization (a fixed draw), as in Salakhutdinov & Murray
        root = Path(data_root) / "mnist" if data_root else None
        if root is not None and not root.is_dir():
            root = Path(data_root)
        train, _ = load_mnist("train", root=root)
        test, _ = load_mnist("test", root=root)
        return binarize(train, "sample", seed=seed), binarize(test, "sample", seed=seed + 1)
    if name == "binarized_mnist":
        root = Path(data_root) / "binarized_mnist" if data_root else None
        if root is not None and not root.is_dir():
            root = Path(data_root)
        return load_binarized_mnist("train", root=root), load_binarized_mnist("test", root=root)
    x_train, _ = load_digits("train", seed=seed)
    x_test, _ = load_digits("test", seed=seed)
    return binarize(x_train), binarize(x_test)


def ais_evaluation(
    checkpoint: str | Path,
    data: str = "mnist",
    backend: str = "numpyro",
    runs: int = 100,
    betas: str = "sm",
    reverse: bool = False,
    reverse_sweeps: int = 1000,
    seed: int = 0,
    data_root: str | None = None,
    progress: bool | None = None,
) -> dict:
    """AIS evaluation of a saved RBM: ``log Z`` (forward, and reverse when asked) from the
    base-rate model of the training data, and the average test / train log-likelihoods.
    Returns a JSON-able dict (what ``ebm-ppl evaluate`` prints)."""
    import math

    from ebm_ppl.inference.ais import linear_schedule, salakhutdinov_murray_schedule
    from ebm_ppl.io import load_model

    if backend not in ("numpyro", "pyro"):
        raise ValueError(f"backend must be 'numpyro' or 'pyro', got {backend!r}")
    model = load_model(checkpoint, backend="jax" if backend == "numpyro" else "torch")
    train, test = _eval_data(data, seed, data_root)
    if train.shape[1] != model.n_visible:
        raise ValueError(
            f"the model has {model.n_visible} visible units but data {data!r} has "
            f"{train.shape[1]} pixels"
        )
    if betas == "sm":
        schedule = salakhutdinov_murray_schedule()
    elif betas.startswith("linear:"):
        schedule = linear_schedule(int(betas.split(":")[1]))
    else:
        raise ValueError(f"betas must be 'sm' or 'linear:N', got {betas!r}")
    if backend == "numpyro":
        import jax
        import jax.numpy as jnp

        from ebm_ppl import numpyro as fe

        train_x, test_x = (jnp.asarray(a) for a in (train, test))
        k_ais, k_chain = jax.random.split(jax.random.PRNGKey(seed))

        def run(**kw):
            return fe.AIS(model, rng_key=k_ais, **kw)
    else:
        import torch

        from ebm_ppl import pyro as fe

        torch.manual_seed(seed)
        train_x, test_x = (torch.as_tensor(a) for a in (train, test))
        k_chain = None

        def run(**kw):
            return fe.AIS(model, **kw)

    t0 = time.perf_counter()
    start = None
    if reverse:  # reverse AIS starts from the model: block-Gibbs chains started at test data
        start, _ = model.transition(k_chain, test_x[:runs], reverse_sweeps)
    chain_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = run(
        base=fe.base_rate(train_x),
        betas=schedule,
        num_runs=runs,
        reverse_samples=start,
        progress_bar=progress,
    )
    ais_s = time.perf_counter() - t0
    test_ll = fe.evaluate(model, test_x, res)
    train_ll = fe.evaluate(model, train_x, res)
    lo, hi = res.log_z_interval
    rev = res.reverse
    return {
        "checkpoint": str(checkpoint),
        "shape": [model.n_visible, model.n_hidden],
        "backend": backend,
        "data": data,
        "runs": runs,
        "num_betas": len(schedule),
        "log_z": res.log_z,
        "log_z_stderr": res.log_z_stderr,
        "log_z_interval": [lo if math.isfinite(lo) else None, hi],
        "ess": res.ess,
        "reverse_log_z": None if rev is None else rev.log_z,
        "reverse_log_z_stderr": None if rev is None else rev.log_z_stderr,
        "reverse_sweeps": reverse_sweeps if reverse else None,
        "test_ll": test_ll.mean,
        "test_ll_stderr": test_ll.stderr,
        "num_test": len(test),
        "train_ll": train_ll.mean,
        "train_ll_stderr": train_ll.stderr,
        "num_train": len(train),
        "ais_s": ais_s,
        "reverse_chain_s": chain_s if reverse else None,
    }


def evaluate(args: argparse.Namespace) -> int:
    try:
        r = ais_evaluation(
            args.checkpoint,
            data=args.data,
            backend=args.backend,
            runs=args.runs,
            betas=args.betas,
            reverse=args.reverse,
            reverse_sweeps=args.reverse_sweeps,
            seed=args.seed,
            data_root=args.data_root,
            progress=args.progress,
        )
    except ValueError as e:
        print(f"error: {e}")
        return 2
    lo, hi = r["log_z_interval"]
    lo_s = "-inf" if lo is None else f"{lo:.3f}"
    print(f"model {r['checkpoint']}: {r['shape'][0]}-{r['shape'][1]} RBM ({r['backend']})")
    print(
        f"AIS: {r['runs']} runs, {r['num_betas']} betas from the base-rate model; "
        f"{r['ais_s']:.1f} s; ESS {r['ess']:.1f}"
    )
    print(
        f"log Z = {r['log_z']:.3f} ± {r['log_z_stderr']:.3f}  (log(Z ± 3 sd): [{lo_s}, {hi:.3f}])"
    )
    if r["reverse_log_z"] is not None:
        print(f"reverse AIS: log Z = {r['reverse_log_z']:.3f} ± {r['reverse_log_z_stderr']:.3f}")
    print(
        f"average test log-likelihood ({r['data']}, n={r['num_test']}): "
        f"{r['test_ll']:.3f} ± {r['test_ll_stderr']:.3f} nats"
    )
    print(
        f"average train log-likelihood (n={r['num_train']}): "
        f"{r['train_ll']:.3f} ± {r['train_ll_stderr']:.3f} nats"
    )
    if args.json:
        print(json.dumps(r))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ebm-ppl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="train a small RBM on binarized digits in Pyro and NumPyro")
    d.add_argument("--backend", choices=["pyro", "numpyro", "both"], default="both")
    d.add_argument("--hidden", type=int, default=16, help="hidden units (<= 20: exact log Z)")
    d.add_argument("--epochs", type=int, default=100)
    d.add_argument("--lr", type=float, default=0.05)
    d.add_argument("--batch-size", type=int, default=50)
    d.add_argument("--chains", type=int, default=100, help="persistent chains")
    d.add_argument("--draws", type=int, default=300, help="MCMC draws per chain for the plots")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", default="ebm_ppl_demo", help="output folder")
    d.set_defaults(func=demo)
    e = sub.add_parser(
        "evaluate", help="estimate log Z of a saved RBM by AIS and its test log-likelihood"
    )
    e.add_argument("checkpoint", help="a model saved by ebm_ppl.io.save_model")
    e.add_argument("--data", choices=["mnist", "binarized_mnist", "digits"], default="mnist")
    e.add_argument("--backend", choices=["numpyro", "pyro"], default="numpyro")
    e.add_argument("--runs", type=int, default=100, help="AIS runs")
    e.add_argument(
        "--betas", default="sm", help="'sm' (14,501-value Salakhutdinov-Murray) or 'linear:N'"
    )
    e.add_argument("--reverse", action="store_true", help="also run reverse AIS (a bracket)")
    e.add_argument("--reverse-sweeps", type=int, default=1000, help="Gibbs sweeps from test data")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--data-root", default=None, help="folder with the data (else EBM_PPL_DATA)")
    e.add_argument("--json", action="store_true", help="also print one JSON line")
    e.add_argument(
        "--no-progress", dest="progress", action="store_false", help="hide the progress bar"
    )
    e.set_defaults(func=evaluate, progress=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
