"""Peak memory of a 784-500-1000 DBM SA-MLE training run, in both backends.

Setting (that of ``train_mnist_dbm.py``'s SA stage): ``SAMLE`` on
``sample("v", DBM(W, b).visible(num_iters=10, tol=1e-5), obs=batch)``, minibatch 100, 100
persistent chains, 5 block-Gibbs sweeps per update, SGD with momentum 0.9 and weight decay
2e-4 (optax: on the weights; Pyro: ``pyro.optim.SGD``, on every parameter), ``--updates``
updates (default 300) by ``SAMLE.run`` over one epoch of the first ``100 * updates`` MNIST
training images, freshly binarized (``StochasticBinarization``, as in training).

The parent saves the gray levels of those images to a temporary ``.npy``; each backend then
runs in a fresh Python subprocess (``sys.executable`` running this script with ``--child``),
one after the other. The child imports its stack (numpy, torch + pyro + ``ebm_ppl.pyro``, or
jax + numpyro + optax + ``ebm_ppl.numpyro``), records the baseline
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after the imports, reads the ``.npy`` (so that
decompressing MNIST does not set its peak), trains, and reports the peak.
``peak_minus_baseline_mib`` is the number asked for; ``stages`` gives the peak and current
RSS (``/proc/self/status`` VmRSS) after the imports, the data, the first update (Pyro;
NumPyro's ``run`` initialises and compiles inside) and the run.
``analytic_mib`` is the size of the parameters, the optimizer state (one momentum buffer per
parameter), the chains and the data arrays.

Prints one JSON line per backend on stdout and a summary on stderr.

    EBM_PPL_DATA=/path/to/data python benchmarks/dbm_memory.py           # ~1.5 min
    python benchmarks/dbm_memory.py --synthetic --updates 100             # no MNIST needed
    python benchmarks/dbm_memory.py --backends jax --updates 600
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

SIZES = (784, 500, 1000)
BATCH = 100
CHAINS = 100
MIB = 1024 * 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--backends", default="torch,jax", help="subset of torch,jax")
    p.add_argument("--updates", type=int, default=300, help="SA-MLE updates (default 300)")
    p.add_argument("--mf-iters", type=int, default=10, help="at most this many mean-field sweeps")
    p.add_argument("--mf-tol", type=float, default=1e-5)
    p.add_argument("--gibbs", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", help="folder with the MNIST .gz files (default $EBM_PPL_DATA)")
    p.add_argument("--synthetic", action="store_true", help="random gray levels, no MNIST")
    p.add_argument("--child", choices=("torch", "jax"), help=argparse.SUPPRESS)
    p.add_argument("--probs-file", help=argparse.SUPPRESS)
    p.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--source", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not args.backends or any(b not in ("torch", "jax") for b in args.backends):
        p.error("--backends: choose from torch,jax")
    if not 1 <= args.updates <= 600:
        p.error("--updates must be in [1, 600] (one epoch of at most the 60,000 images)")
    return args


# --------------------------------------------------------------------------------------
# the child: one backend, one fresh process
# --------------------------------------------------------------------------------------


def peak_mib() -> float:
    """``ru_maxrss`` (KiB on Linux) in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_mib() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def stage(name: str, stages: list) -> None:
    stages.append({"stage": name, "peak_mib": round(peak_mib(), 1), "rss_mib": _r(current_mib())})


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def write_probs(args: argparse.Namespace, path: str) -> str:
    """Save the ``(100 * updates, 784)`` float32 gray levels in [0, 1] to ``path`` (``.npy``)
    and return their source; the child reads them with one ``np.load``, so that loading
    MNIST (decompression, conversion of all 60,000 images) does not set the child's peak."""
    import numpy as np

    n = BATCH * args.updates
    if args.synthetic:
        rng = np.random.default_rng(args.seed)
        x, source = (rng.random((n, SIZES[0])) ** 6).astype(np.float32), "synthetic"
    else:
        from ebm_ppl.datasets import load_mnist

        try:
            x, _ = load_mnist("train", root=args.data_root, download=False)
        except (FileNotFoundError, RuntimeError) as exc:
            sys.exit(
                f"dbm_memory: MNIST not found ({exc})\nSet EBM_PPL_DATA, pass --data-root, or "
                "run on random gray levels with --synthetic."
            )
        x, source = np.ascontiguousarray(x[:n], dtype=np.float32), "mnist"
    np.save(path, x)
    return source


def child(args: argparse.Namespace) -> int:
    backend = args.child
    t_start = time.perf_counter()
    import numpy as np

    if backend == "torch":
        import pyro
        import torch

        import ebm_ppl.pyro as fe
    else:
        import jax
        import jax.numpy as jnp
        import numpyro
        import optax

        import ebm_ppl.numpyro as fe
    from ebm_ppl.datasets import StochasticBinarization

    stages: list = []
    stage("imports", stages)
    baseline = peak_mib()

    probs, source = np.load(args.probs_file), args.source  # one read, no transient
    data = StochasticBinarization(probs, seed=args.seed)  # keeps a private float32 copy
    del probs
    stage("data", stages)

    rng = np.random.default_rng(args.seed)
    ws = [(0.01 * rng.standard_normal((a, b))).astype(np.float32) for a, b in zip(SIZES, SIZES[1:])]
    bs = [np.zeros(n, np.float32) for n in SIZES]
    K, tol, G = args.mf_iters, args.mf_tol, args.gibbs
    t0 = time.perf_counter()
    if backend == "torch":
        torch.manual_seed(args.seed)
        pyro.clear_param_store()

        def model(batch):
            w = [pyro.param(f"W{i + 1}", torch.from_numpy(a)) for i, a in enumerate(ws)]
            b = [pyro.param(f"b{i}", torch.from_numpy(a)) for i, a in enumerate(bs)]
            with pyro.plate("data", batch.shape[0]):
                pyro.sample("v", fe.DBM(w, b).visible(num_iters=K, tol=tol), obs=batch)

        optim = pyro.optim.SGD({"lr": args.lr, "momentum": 0.9, "weight_decay": 2e-4})
        trainer = fe.SAMLE(model, optim, num_gibbs_steps=G, num_chains=CHAINS)
        trainer.step(torch.from_numpy(data(0)[:BATCH]))  # creates the chains and optimizers
        stage("first update", stages)
        trainer.run(data, num_epochs=1, batch_size=BATCH, seed=args.seed, progress_bar=False)
        chains = trainer.chains
        opt_bytes = 0
        for opt_state in trainer.optim.get_state().values():  # one torch optimizer per param
            for per_param in opt_state["state"].values():
                for t in per_param.values():
                    if isinstance(t, torch.Tensor):
                        opt_bytes += t.numel() * t.element_size()
        updates_done = trainer.num_steps
        versions = {"torch": torch.__version__, "pyro": pyro.__version__}
    else:

        def model(batch):
            w = [numpyro.param(f"W{i + 1}", jnp.asarray(a)) for i, a in enumerate(ws)]
            b = [numpyro.param(f"b{i}", jnp.asarray(a)) for i, a in enumerate(bs)]
            with numpyro.plate("data", batch.shape[0]):
                numpyro.sample("v", fe.DBM(w, b).visible(num_iters=K, tol=tol), obs=batch)

        decay = optax.add_decayed_weights(2e-4, mask=lambda p: {k: k.startswith("W") for k in p})
        optim = optax.chain(decay, optax.sgd(args.lr, momentum=0.9))
        trainer = fe.SAMLE(model, optim, num_gibbs_steps=G, num_chains=CHAINS)
        key = jax.random.PRNGKey(args.seed)
        state = trainer.run(  # initialises, compiles the epoch scan, runs it
            key, data, num_epochs=1, batch_size=BATCH, seed=args.seed, progress_bar=False
        )
        jax.block_until_ready(state)
        chains = {k: np.asarray(v) for k, v in state.chains.items()}
        leaves = jax.tree_util.tree_leaves(state.optim_state[1])
        params = trainer.get_params(state)
        param_bytes = sum(int(np.prod(v.shape)) * 4 for v in params.values())
        opt_bytes = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in leaves) - param_bytes
        updates_done = int(state.optim_state[0])
        versions = {"jax": jax.__version__, "numpyro": numpyro.__version__}
    train_s = time.perf_counter() - t0
    stage("run", stages)
    peak = peak_mib()

    n_params = sum(a * b for a, b in zip(SIZES, SIZES[1:])) + sum(SIZES)
    chain_bytes = sum(int(np.prod(v.shape)) * 4 for v in chains.values())
    n = len(data)
    analytic = {
        "params": n_params * 4 / MIB,
        "optimizer_state": opt_bytes / MIB,
        "chains": chain_bytes / MIB,
        "data_probs": n * SIZES[0] * 4 / MIB,  # StochasticBinarization's float32 copy
        "data_epoch": n * SIZES[0] * 4 / MIB,  # one epoch's float32 0/1 draw
    }
    analytic["model_total"] = analytic["params"] + analytic["optimizer_state"] + analytic["chains"]
    rec = {
        "name": "dbm_memory",
        "backend": backend,
        "peak_mib": round(peak, 1),
        "baseline_mib": round(baseline, 1),
        "peak_minus_baseline_mib": round(peak - baseline, 1),
        "peak_minus_data_stage_mib": round(peak - stages[1]["peak_mib"], 1),
        "analytic_mib": {k: round(v, 3) for k, v in analytic.items()},
        "stages": stages,
        "updates": updates_done,
        "train_s": round(train_s, 1),
        "wall_s": round(time.perf_counter() - t_start, 1),
        "sizes": list(SIZES),
        "batch": BATCH,
        "chains": CHAINS,
        "mf_iters": K,
        "mf_tol": tol,
        "gibbs": G,
        "lr": args.lr,
        "seed": args.seed,
        "n_images": n,
        "data": source,
        "jax_imported": "jax" in sys.modules,
        "torch_imported": "torch" in sys.modules,
        "versions": versions,
        "python": platform.python_version(),
    }
    print(json.dumps(rec), flush=True)
    return 0


# --------------------------------------------------------------------------------------
# the parent
# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args)
    if args.prepare:
        print(write_probs(args, args.probs_file))
        return 0
    t0 = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="dbm_memory_")
    probs_file = os.path.join(tmp, "probs.npy")
    # The data is prepared in a subprocess too: a child's ru_maxrss starts at the peak of the
    # process that spawned it (Linux keeps the old memory's high-water mark across exec), so
    # this parent must stay small (no numpy, no MNIST).
    prep = [sys.executable, os.path.abspath(__file__), "--prepare", f"--probs-file={probs_file}"]
    prep += [f"--updates={args.updates}", f"--seed={args.seed}"]
    prep += [f"--data-root={args.data_root}"] if args.data_root else []
    prep += ["--synthetic"] if args.synthetic else []
    proc = subprocess.run(prep, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
        return proc.returncode
    source = proc.stdout.strip().splitlines()[-1]
    passthrough = [
        f"--probs-file={probs_file}",
        f"--source={source}",
        f"--updates={args.updates}",
        f"--mf-iters={args.mf_iters}",
        f"--mf-tol={args.mf_tol}",
        f"--gibbs={args.gibbs}",
        f"--lr={args.lr}",
        f"--seed={args.seed}",
    ]
    records = []
    try:
        for backend in args.backends:
            cmd = [sys.executable, os.path.abspath(__file__), f"--child={backend}", *passthrough]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr)
                return proc.returncode
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
            rec = json.loads(line)
            records.append(rec)
            print(json.dumps(rec), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"# {'backend':7} {'peak MiB':>9} {'baseline':>9} {'peak-base':>9} {'model':>6} "
        f"{'data':>6} {'train s':>7}",
        file=sys.stderr,
    )
    for r in records:
        a = r["analytic_mib"]
        print(
            f"# {r['backend']:7} {r['peak_mib']:9.1f} {r['baseline_mib']:9.1f} "
            f"{r['peak_minus_baseline_mib']:9.1f} {a['model_total']:6.2f} "
            f"{a['data_probs'] + a['data_epoch']:6.1f} {r['train_s']:7.1f}",
            file=sys.stderr,
        )
    print(
        "# model = parameters + optimizer state + chains (analytic); data = the float32 "
        f"probabilities and one epoch's draw; wall time {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
