"""Cost of one parallel-tempering step over 10 temperatures vs 10 plain block-Gibbs sweeps.

    python benchmarks/pt_speed.py [--repeats 5] [--steps 50]

784-500 binary RBM (random weights, W ~ N(0, 0.05^2)), 100 chains per temperature. One PT
step = swap proposals between neighbours + one sweep of each of the 10 replicas (the ladder
is one batch of 1,000 chains); the peer is 10 sweeps of the 100 target chains. One JSON line
per backend with the medians over ``--repeats`` of ``--steps`` steps, and their ratio (the
issue's target: <= 1.2). JAX compile time is excluded (one warm-up call).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def _time(fn, repeats):
    fn()  # warm-up (compilation in JAX)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def _report(backend: str, t_pt: float, t_gibbs: float, steps: int, L: int, n: int) -> None:  # noqa: N803
    line = {
        "backend": backend,
        "pt_step_ms": round(1e3 * t_pt / steps, 3),
        "ten_sweeps_ms": round(1e3 * t_gibbs / steps, 3),
        "ratio": round(t_pt / t_gibbs, 3),
        "temperatures": L,
        "chains": n,
    }
    print(json.dumps(line), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--chains", type=int, default=100)
    p.add_argument("--temperatures", type=int, default=10)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    w = (0.05 * rng.standard_normal((784, 500))).astype(np.float32)
    b = np.zeros(784, np.float32)
    c = np.zeros(500, np.float32)
    betas = np.linspace(0.0, 1.0, args.temperatures)
    L, n, steps = args.temperatures, args.chains, args.steps

    # torch
    import torch

    from ebm_ppl.inference.tempering import pt_run
    from ebm_ppl.pyro import RBM as TorchRBM

    d = TorchRBM(*(torch.as_tensor(a) for a in (w, b, c)))
    base = d.ais_base(None)
    v = d.init_chain(None, (n, 784))
    ladder = d.init_chain(None, (L, n, 784))
    with torch.no_grad():
        t_pt = _time(lambda: pt_run(None, d, base, ladder, betas, steps), args.repeats)
        t_gibbs = _time(lambda: d.transition(None, v, steps * L), args.repeats)
    _report("torch", t_pt, t_gibbs, steps, L, n)

    # JAX
    import jax

    from ebm_ppl.numpyro import RBM as JaxRBM

    d = JaxRBM(*(jax.numpy.asarray(a) for a in (w, b, c)))
    base = d.ais_base(None)
    key = jax.random.PRNGKey(0)
    v = d.init_chain(key, (n, 784))
    ladder = d.init_chain(key, (L, n, 784))
    pt = jax.jit(lambda k, x: pt_run(k, d, base, x, betas, steps)[0])
    gibbs = jax.jit(lambda k, x: d.transition(k, x, steps * L)[0])
    t_pt = _time(lambda: pt(key, ladder).block_until_ready(), args.repeats)
    t_gibbs = _time(lambda: gibbs(key, v).block_until_ready(), args.repeats)
    _report("jax", t_pt, t_gibbs, steps, L, n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
