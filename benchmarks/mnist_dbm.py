"""The MNIST DBM row of issue 6: the mean-field lower bound on the test log-probability with
log Z from AIS (Salakhutdinov & Hinton 2009).

    python benchmarks/mnist_dbm.py --model benchmarks/runs/dbm/dbm.safetensors \\
        [--backends numpyro,pyro] [--runs 100] [--reverse-sweeps 10000]

``log Z`` by forward AIS over the odd layer (``v`` and ``h2`` summed out analytically at every
temperature) with ``--runs`` runs from the base-rate model on ``v`` (uniform hidden units) along
the 20,000-beta schedule of the paper (1,000 steps to 0.5, 4,000 to 0.9, 15,000 to 1), checked
by reverse AIS from DBM Gibbs chains started at test images (``--reverse-sweeps`` sweeps). The
bound of eq. 38 per image at the mean-field fixed point (at most ``--mf-iters`` sweeps from the
doubled bottom-up pass), minus ``log Z``. Test and train images are the fixed stochastic
binarizations of ``mnist_rbm_table.py``. One JSON line per backend.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def dbm_schedule() -> np.ndarray:
    """20,001 inverse temperatures: steps of 5e-4 to 0.5, 1e-4 to 0.9, 1e-5... as in
    Salakhutdinov & Hinton (2009): 1,000 / 4,000 / 15,000 intervals."""
    return np.concatenate(
        [
            np.linspace(0.0, 0.5, 1000, endpoint=False),
            np.linspace(0.5, 0.9, 4000, endpoint=False),
            np.linspace(0.9, 1.0, 15000, endpoint=False),
            [1.0],
        ]
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--backends", default="numpyro")
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--reverse-sweeps", type=int, default=10000)
    p.add_argument("--mf-iters", type=int, default=50)
    p.add_argument("--betas", type=int, default=None, help="a linear schedule instead (quick)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=os.environ.get("EBM_PPL_DATA"))
    args = p.parse_args(argv)

    from ebm_ppl.cli import _eval_data
    from ebm_ppl.inference.ais import summarize
    from ebm_ppl.io import load_model

    train, test = _eval_data("mnist", args.seed, args.data_root)
    betas = dbm_schedule() if args.betas is None else np.linspace(0, 1, args.betas)
    for backend in args.backends.split(","):
        t0 = time.perf_counter()
        if backend == "numpyro":
            import jax
            import jax.numpy as jnp

            import ebm_ppl.numpyro as fe

            dbm = load_model(args.model, backend="jax")
            k_ais, k_chain = jax.random.split(jax.random.PRNGKey(args.seed))
            kw, as_array = {"rng_key": k_ais}, jnp.asarray
        else:
            import torch

            import ebm_ppl.pyro as fe

            dbm = load_model(args.model, backend="torch")
            torch.manual_seed(args.seed)
            k_chain, kw, as_array = None, {}, torch.as_tensor
        # reverse AIS starts: Gibbs chains from test images (h from the bottom-up pass)
        v0 = as_array(test[: args.runs])
        mus = dbm.mean_field(v0, num_iters=args.mf_iters)
        start = dbm.join([v0] + [(m > 0.5) * 1.0 for m in mus[1:]])
        start, _ = dbm.transition(k_chain, start, args.reverse_sweeps)
        res = fe.AIS(
            dbm,
            fe.base_rate(as_array(train)),
            betas,
            num_runs=args.runs,
            reverse_samples=start,
            progress_bar=False,
            **kw,
        )
        t_ais = time.perf_counter() - t0

        def bound(x, dbm=dbm, as_array=as_array, res=res):
            vals = [
                dbm.mean_field_bound(as_array(x[i : i + 2000]), num_iters=args.mf_iters)
                for i in range(0, len(x), 2000)
            ]
            vals = np.concatenate([np.asarray(v) for v in vals])
            return summarize(vals, res.log_z, res.log_z_stderr)

        test_b, train_b = bound(test), bound(train)
        rev = res.reverse
        print(
            json.dumps(
                {
                    "what": "dbm_bound",
                    "backend": backend,
                    "model": args.model,
                    "sizes": list(dbm.sizes),
                    "betas": len(betas),
                    "ais_runs": args.runs,
                    "log_z": res.log_z,
                    "log_z_stderr": res.log_z_stderr,
                    "ess": float(res.ess),
                    "reverse_log_z": rev.log_z,
                    "reverse_log_z_stderr": rev.log_z_stderr,
                    "forward_reverse_agree": abs(res.log_z - rev.log_z)
                    <= 3 * (res.log_z_stderr**2 + rev.log_z_stderr**2) ** 0.5,
                    "test_bound": test_b.mean,
                    "test_bound_stderr": test_b.stderr,
                    "train_bound": train_b.mean,
                    "train_bound_stderr": train_b.stderr,
                    "ais_s": round(t_ais, 1),
                    "total_s": round(time.perf_counter() - t0, 1),
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
