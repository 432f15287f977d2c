"""AIS speed: log Z of a 784-500 RBM, 100 runs over the 14,501-beta schedule, both backends.

    python benchmarks/ais_speed.py [--checkpoint benchmarks/checkpoints/rbm_cd25.safetensors]
                                   [--quick] [--backends torch,jax] [--repeats 3]
                                   [--device cuda]

Prints one JSON line per backend: ``{"name": "ais", "backend", "seconds" (median over
repeats), "seconds_all", "compile_s" (JAX, first call minus the median), "log_z",
"log_z_stderr", "num_runs", "num_betas", "gflop", "gflop_per_s", "device", ...}``;
``--device`` is the torch device of the torch row (JAX uses its default device). Each AIS step costs
two (runs x 784 x 500) matrix products (the hidden logits serve both the weight update and
the transition), so 100 runs x 14,500 steps is ~2.3 TFLOP. Without ``--checkpoint`` the
model is a random 784-500 RBM (W ~ N(0, 0.05^2)); the timing does not depend on the weights.
``--quick`` uses 1,001 linear betas.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--backends", default="torch,jax")
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="torch device of the torch row, e.g. cuda")
    args = p.parse_args(argv)

    from ebm_ppl.inference.ais import linear_schedule, salakhutdinov_murray_schedule
    from ebm_ppl.io import load_checkpoint

    betas = linear_schedule(1001) if args.quick else salakhutdinov_murray_schedule()
    repeats = 1 if args.quick else args.repeats
    if args.checkpoint:
        t, _ = load_checkpoint(args.checkpoint)
        w, b, c = t["weights"], t["visible_bias"], t["hidden_bias"]
    else:
        rng = np.random.default_rng(args.seed)
        w = (0.05 * rng.standard_normal((784, 500))).astype(np.float32)
        b = (-1.0 + 0.1 * rng.standard_normal(784)).astype(np.float32)
        c = np.zeros(500, np.float32)
    base_logits = np.clip(b, -10, 10).astype(np.float32)
    steps = len(betas) - 1
    gflop = 2 * 2 * args.runs * w.shape[0] * w.shape[1] * steps / 1e9
    print(
        f"# ais_speed: {w.shape[0]}-{w.shape[1]} RBM, {args.runs} runs, {len(betas)} betas, "
        f"{repeats} repeats, python {platform.python_version()}",
        file=sys.stderr,
    )
    for backend in args.backends.split(","):
        times, results = [], []
        if backend == "torch":
            import torch

            import ebm_ppl.pyro as fe

            dev = torch.device(args.device)
            model = fe.RBM(*(torch.as_tensor(a, device=dev) for a in (w, b, c)))
            base = fe.BernoulliBase(torch.as_tensor(base_logits, device=dev))
            for r in range(repeats):
                torch.manual_seed(args.seed + r)
                t0 = time.perf_counter()
                res = fe.AIS(model, base=base, betas=betas, num_runs=args.runs, progress_bar=False)
                times.append(time.perf_counter() - t0)
                results.append(res)
            extra = {
                "torch_threads": torch.get_num_threads(),
                "device": torch.cuda.get_device_name(dev)
                if dev.type == "cuda"
                else f"{dev.type} ({platform.processor() or platform.machine()})",
            }
        elif backend == "jax":
            import jax
            import jax.numpy as jnp

            import ebm_ppl.numpyro as fe

            model = fe.RBM(*(jnp.asarray(a) for a in (w, b, c)))
            base = fe.BernoulliBase(jnp.asarray(base_logits))
            t0 = time.perf_counter()  # the first call compiles; it is not timed
            fe.AIS(
                model,
                base=base,
                betas=betas,
                num_runs=args.runs,
                rng_key=jax.random.PRNGKey(99),
                progress_bar=False,
            )
            first = time.perf_counter() - t0
            for r in range(repeats):
                t0 = time.perf_counter()
                res = fe.AIS(
                    model,
                    base=base,
                    betas=betas,
                    num_runs=args.runs,
                    rng_key=jax.random.PRNGKey(args.seed + r),
                    progress_bar=False,
                )
                times.append(time.perf_counter() - t0)
                results.append(res)
            extra = {
                "jax_devices": len(jax.devices()),
                "device": f"{jax.devices()[0].platform} ({jax.devices()[0].device_kind})",
                "compile_s": round(first - statistics.median(times), 2),
            }
        else:
            raise SystemExit(f"unknown backend {backend!r}")
        sec = statistics.median(times)
        line = {
            "name": "ais",
            "backend": backend,
            "seconds": round(sec, 3),
            "seconds_all": [round(t, 3) for t in times],
            "log_z": results[0].log_z,
            "log_z_stderr": results[0].log_z_stderr,
            "log_z_all": [r.log_z for r in results],
            "num_runs": args.runs,
            "num_betas": len(betas),
            "n_visible": int(w.shape[0]),
            "n_hidden": int(w.shape[1]),
            "gflop": round(gflop, 1),
            "gflop_per_s": round(gflop / sec, 1),
            "checkpoint": args.checkpoint,
            **extra,
        }
        print(json.dumps(line), flush=True)
        print(
            f"# {backend}: {sec:.2f} s, log Z {results[0].log_z:.3f} ± "
            f"{results[0].log_z_stderr:.3f}, {gflop / sec:.0f} GFLOP/s",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
