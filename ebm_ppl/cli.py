"""The ``ebm-ppl`` command line.

``ebm-ppl evaluate CHECKPOINT... --data mnist`` scores a saved RBM, DBM or DBN stack: ``log Z``
by independent AIS routes side by side (:mod:`ebm_ppl.evaluation`), optionally reverse AIS
and RAISE, and the average test and train log-likelihoods (or bounds).

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
import warnings
from pathlib import Path

import numpy as np

from ebm_ppl import diagnostics
from ebm_ppl.datasets import DownloadError, binarize, load_digits
from ebm_ppl.evaluation import eval_data, evaluate_model
from ebm_ppl.io import save_model
from ebm_ppl.models.family import MAX_ENUMERATE_UNITS


def _baseline(train: np.ndarray, test: np.ndarray) -> tuple[float, float]:
    """Average log-likelihood of independent Bernoulli pixels (Laplace-smoothed MLE)."""
    p = (train.sum(0) + 1.0) / (len(train) + 2.0)

    def ll(x):
        return float((x * np.log(p) + (1 - x) * np.log1p(-p)).sum(1).mean())

    return ll(train), ll(test)


def _ll_and_sampler(ppl, rbm_cls, rbm, as_array):
    """For the trained ``rbm`` of the demo: its exact average log-likelihood of a data array
    (``log Z`` by enumeration) and a model drawing 50 images from it, in the PPL module
    ``ppl`` (``pyro`` or ``numpyro``, which share ``plate`` and ``sample``; ``rbm_cls`` is its
    ``RBM``, ``as_array`` its array constructor)."""
    log_z = rbm.log_partition()

    def ll(x):
        return float((rbm.log_prob(as_array(x)) - log_z).mean())

    W, b, c = rbm.params

    def sampler():
        with ppl.plate("images", 50):
            ppl.sample("v", rbm_cls(W, b, c))

    return ll, sampler


def _demo_pyro(args, train, test, out: Path) -> dict:
    # lazy: keeps this module free of pyro, torch until that backend is used
    import pyro
    import torch
    from pyro.infer import MCMC

    # lazy: keeps this module free of pyro, torch until that backend is used
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
    ll, sampler = _ll_and_sampler(pyro, RBM, rbm, torch.as_tensor)
    with warnings.catch_warnings():  # two chains on one process run one after the other
        warnings.filterwarnings("ignore", "num_chains=.*available_cpu", UserWarning)
        mcmc = MCMC(
            BlockGibbs(sampler), num_samples=args.draws, warmup_steps=args.draws, num_chains=2
        )
        mcmc.run()
    return _finish(
        "pyro", args, rbm, ll(train), ll(test), train_s, mcmc, out, save_model, diagnostics
    )


def _demo_numpyro(args, train, test, out: Path) -> dict:
    # lazy: keeps this module free of jax, numpyro, optax until that backend is used
    import jax
    import jax.numpy as jnp
    import numpyro
    import optax
    from numpyro.infer import MCMC

    # lazy: keeps this module free of jax, numpyro until that backend is used
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
    ll, sampler = _ll_and_sampler(numpyro, RBM, rbm, jnp.asarray)
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
    trace_png = diagnostics.plot_trace(
        data,
        out / f"trace_{name}.png",
        title=f"{name}: block Gibbs on the trained RBM, 2 chains\nfree_energy_v: F(v) summed "
        "over the 50 images of a draw (nats); mean_activation_v: share of pixels on",
    )
    last = np.asarray(data.posterior["v"].values[0, -1])  # 50 images from chain 0
    samples_png = diagnostics.plot_samples(
        last,
        out / f"samples_{name}.png",
        shape=(8, 8),
        title=f"{name}: 50 samples after {args.draws} warm-up + {args.draws} Gibbs sweeps",
    )
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

    if not 1 <= args.hidden <= MAX_ENUMERATE_UNITS:
        print(
            f"error: --hidden must be between 1 and {MAX_ENUMERATE_UNITS} (exact log Z "
            "enumerates 2^hidden states)",
            file=sys.stderr,
        )
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
    summary = out / "demo_results.json"
    summary.write_text(
        json.dumps({"baseline": [base_train, base_test], "results": results}, indent=2)
    )
    print(f"all numbers above: {summary}")
    return 0


def _eval_data(name: str, seed: int, data_root: str | None):
    """(train, test) binary float32 arrays of a named data set (see
    :func:`ebm_ppl.evaluation.eval_data`)."""

    return eval_data(name, seed, data_root)


def ais_evaluation(checkpoint, **kwargs) -> dict:
    """Score a saved model; see :func:`ebm_ppl.evaluation.evaluate_model`."""

    return evaluate_model(checkpoint, **kwargs)


def evaluate(args: argparse.Namespace) -> int:

    try:
        r = evaluate_model(
            args.checkpoint,
            data=args.data,
            backend=args.backend,
            runs=args.runs,
            betas=args.betas,
            routes=args.routes,
            reverse=args.reverse,
            reverse_sweeps=args.reverse_sweeps,
            raise_points=args.raise_points,
            raise_betas=args.raise_betas,
            seed=args.seed,
            data_root=args.data_root,
            progress=args.progress,
            num_base=args.num_base,
            mf_iters=args.mf_iters,
            tol=args.tol,
            device=args.device,
        )
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    shape = "-".join(str(s) for s in r["shape"])
    print(f"model {r['checkpoint']}: {shape} {r['kind']} ({r['backend']})")
    print(f"log Z by {len(r['routes'])} AIS route(s), {r['runs']} runs x {r['num_betas']} betas:")
    for name, x in r["routes"].items():
        line = f"  {name:14s} {x['log_z']:.3f} ± {x['log_z_stderr']:.3f}  ESS {x['ess']:.1f}"
        if "reverse_log_z" in x:
            line += f"; reverse {x['reverse_log_z']:.3f} ± {x['reverse_log_z_stderr']:.3f}"
        print(line + f"  ({x['s']:.1f} s)")
    verdict = "agree" if r["routes_agree"] else "DISAGREE: do not quote the numbers below"
    what = "spread of the forward routes" if r["log_z_upper"] is None else "tightest bracket"
    print(
        f"log Z = {r['log_z']:.3f} ± {r['log_z_stderr']:.3f} (route {r['log_z_route']}; {what} "
        f"{r['routes_spread']:.3f} nats, routes {verdict} at {r['routes_tol']})"
    )
    print(
        f"average test {r['likelihood']} ({r['data']}, n={r['num_test']}): "
        f"{r['test_ll']:.3f} ± {r['test_ll_stderr']:.3f} nats"
    )
    print(
        f"average train {r['likelihood']} (n={r['num_train']}): "
        f"{r['train_ll']:.3f} ± {r['train_ll_stderr']:.3f} nats"
    )
    if "raise" in r:
        x = r["raise"]
        print(
            f"RAISE on the first {x['num_points']} test images ({x['num_betas']} betas): "
            f"{x['mean']:.3f} ± {x['stderr']:.3f} nats; with AIS's log Z: "
            f"{x['ais_same_points']:.3f} ± {x['ais_same_points_stderr']:.3f}"
        )
    if args.json:
        print(json.dumps(r))
    return 0


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter  # every option's default in --help
    parser = argparse.ArgumentParser(
        prog="ebm-ppl",
        description="Energy-based models in Pyro and NumPyro: a demo, and scoring of saved "
        "models. 'ebm-ppl COMMAND --help' describes a command.",
        formatter_class=fmt,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = sub.add_parser(
        "demo",
        help="train a small RBM on binarized digits in Pyro and NumPyro",
        description="Train a 64-H RBM on binarized 8x8 digits with SA-MLE in Pyro and NumPyro, "
        "score it exactly (log Z by enumeration), sample it with block Gibbs under each PPL's "
        "MCMC, and write plots, checkpoints and demo_results.json to --out.",
        formatter_class=fmt,
    )
    d.add_argument(
        "--backend", choices=["pyro", "numpyro", "both"], default="both", help="which PPL(s)"
    )
    d.add_argument("--hidden", type=int, default=16, help="hidden units (<= 20: exact log Z)")
    d.add_argument("--epochs", type=int, default=100, help="training epochs")
    d.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (momentum 0.5)")
    d.add_argument("--batch-size", type=int, default=50, help="images per update")
    d.add_argument("--chains", type=int, default=100, help="persistent chains")
    d.add_argument("--draws", type=int, default=300, help="MCMC draws per chain for the plots")
    d.add_argument("--seed", type=int, default=0, help="random seed")
    d.add_argument("--out", default="ebm_ppl_demo", help="output folder")
    d.set_defaults(func=demo)
    e = sub.add_parser(
        "evaluate",
        help="log Z of a saved model by independent AIS routes, and its test log-likelihood",
        description="Score a saved RBM, DBM (any depth) or DBN (several RBM checkpoints, "
        "bottom first): log Z by independent AIS routes side by side (a warning when they "
        "disagree), the average test and train log-likelihood (bounds for DBMs and DBNs), "
        "optionally reverse AIS from long chains and RAISE.",
        formatter_class=fmt,
    )
    e.add_argument(
        "checkpoint", nargs="+", help="a model saved by ebm_ppl.io.save_model (several: a DBN)"
    )
    e.add_argument(
        "--data",
        choices=["mnist", "binarized_mnist", "digits"],
        default="mnist",
        help="test (and train) data to score",
    )
    e.add_argument(
        "--backend", choices=["numpyro", "pyro"], default="numpyro", help="which PPL computes"
    )
    e.add_argument("--runs", type=int, default=100, help="AIS runs per route")
    e.add_argument(
        "--betas",
        default="auto",
        help="'auto' (RBM/DBN: sm; DBM: dbm:10001), 'sm' (14,501 Salakhutdinov-Murray), "
        "'dbm[:N]' (Salakhutdinov-Hinton shape, 20,001 by default) or 'linear:N'",
    )
    e.add_argument(
        "--routes",
        default="auto",
        help="comma-separated AIS routes (RBM/DBN: v|base-rate,h|matched; DBM: odd|matched,"
        "even|matched,odd|uniform); 'auto': the kind's two independent default routes",
    )
    e.add_argument("--tol", type=float, default=0.5, help="nats by which routes may differ")
    e.add_argument("--reverse", action="store_true", help="also run reverse AIS (a bracket)")
    e.add_argument("--reverse-sweeps", type=int, default=1000, help="Gibbs sweeps from test data")
    e.add_argument(
        "--raise", dest="raise_points", type=int, default=0, help="RAISE on the first N test images"
    )
    e.add_argument("--raise-betas", default="linear:1000", help="RAISE schedule (as --betas)")
    e.add_argument(
        "--num-base", type=int, default=10_000, help="training images for the matched base"
    )
    e.add_argument("--mf-iters", type=int, default=30, help="mean-field sweeps (DBMs)")
    e.add_argument("--seed", type=int, default=0, help="random seed")
    e.add_argument(
        "--device", default=None, help="torch device for --backend pyro (e.g. cuda); None: cpu"
    )
    e.add_argument("--data-root", default=None, help="folder with the data (else EBM_PPL_DATA)")
    e.add_argument("--json", action="store_true", help="also print one JSON line")
    e.add_argument(
        "--no-progress", dest="progress", action="store_false", help="hide the progress bar"
    )
    e.set_defaults(func=evaluate, progress=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The ``ebm-ppl`` command. A user error (a missing file or folder, data that cannot be
    found or downloaded, an option out of range) prints one ``error:`` line and returns 2;
    argparse's own usage errors also exit with 2."""

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DownloadError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
