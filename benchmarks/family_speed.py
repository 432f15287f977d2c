"""SA-MLE updates per second for the RBM family, in both backends.

    python benchmarks/family_speed.py [--repeats 5] [--updates 50]

Models (minibatch 100, CD-1 through each frontend's ``SAMLE``, SGD lr 1e-3 with momentum
0.5): a 784-500 Gaussian-Bernoulli RBM on standardized MNIST-sized random data, and a
1,995-50 replicated softmax on 20-Newsgroups-sized random documents (Poisson(50) words each,
made once with a fixed seed; NumPyro gets ``max_words`` = the longest document). The peer
in the same run is the binary 784-500 RBM (CD-1). One JSON line per (model, backend) with
the median over ``--repeats`` of ``--updates`` updates (after a warm-up; JAX compile time
excluded).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def _data(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "gaussian":
        return rng.standard_normal((n, 784)).astype(np.float32)
    if kind == "binary":
        return (rng.random((n, 784)) < 0.13).astype(np.float32)
    words = rng.poisson(50, n)
    out = np.zeros((n, 1995), np.float32)
    for i, m in enumerate(words):
        np.add.at(out[i], rng.integers(1, 1995, m), 1.0)
    return out


def _shapes(kind: str) -> tuple[int, int]:
    return (1995, 50) if kind == "rsm" else (784, 500)


def torch_rate(kind: str, x: np.ndarray, updates: int, repeats: int) -> float:
    import pyro
    import torch

    from ebm_ppl.pyro import RBM, SAMLE, GaussianRBM, ReplicatedSoftmax

    d, f = _shapes(kind)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)

    def model(batch):
        W = pyro.param("W", 0.01 * torch.randn(d, f))
        b = pyro.param("b", torch.zeros(d))
        c = pyro.param("c", torch.zeros(f))
        with pyro.plate("data", batch.shape[0]):
            if kind == "gaussian":
                pyro.sample("v", GaussianRBM(W, b, c, 1.0), obs=batch)
            elif kind == "rsm":
                pyro.sample("v", ReplicatedSoftmax(W, b, c), obs=batch)
            else:
                pyro.sample("v", RBM(W, b, c), obs=batch)

    trainer = SAMLE(
        model, pyro.optim.SGD({"lr": 1e-3, "momentum": 0.5}), num_gibbs_steps=1, persistent=False
    )
    xt = torch.as_tensor(x)
    batches = [xt[i * 100 : (i + 1) * 100] for i in range(len(x) // 100)]
    for b in batches[:3]:
        trainer.step(b)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(updates):
            trainer.step(batches[i % len(batches)])
        times.append(time.perf_counter() - t0)
    return updates / statistics.median(times)


def jax_rate(kind: str, x: np.ndarray, updates: int, repeats: int) -> float:
    import jax
    import jax.numpy as jnp
    import numpyro
    import optax

    from ebm_ppl.numpyro import RBM, SAMLE, GaussianRBM, ReplicatedSoftmax

    d, f = _shapes(kind)
    w0 = 0.01 * jax.random.normal(jax.random.PRNGKey(0), (d, f))
    # a bound on the document lengths lets words be drawn one by one inside jit
    max_words = int(x.sum(1).max()) if kind == "rsm" else None

    def model(batch):
        W = numpyro.param("W", w0)
        b = numpyro.param("b", jnp.zeros(d))
        c = numpyro.param("c", jnp.zeros(f))
        with numpyro.plate("data", batch.shape[0]):
            if kind == "gaussian":
                numpyro.sample("v", GaussianRBM(W, b, c, 1.0), obs=batch)
            elif kind == "rsm":
                numpyro.sample("v", ReplicatedSoftmax(W, b, c, max_words=max_words), obs=batch)
            else:
                numpyro.sample("v", RBM(W, b, c), obs=batch)

    trainer = SAMLE(model, optax.sgd(1e-3, momentum=0.5), num_gibbs_steps=1, persistent=False)
    xj = jnp.asarray(x)
    batches = [xj[i * 100 : (i + 1) * 100] for i in range(len(x) // 100)]
    state = trainer.init(jax.random.PRNGKey(1), batches[0])
    for b in batches[:3]:
        state, _ = trainer.update(state, b)
    jax.block_until_ready(state)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(updates):
            state, _ = trainer.update(state, batches[i % len(batches)])
        jax.block_until_ready(state)
        times.append(time.perf_counter() - t0)
    return updates / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--updates", type=int, default=50)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    for kind in ("binary", "gaussian", "rsm"):
        x = _data(kind, 1000, rng)
        d, f = _shapes(kind)
        for backend, fn in (("pyro", torch_rate), ("numpyro", jax_rate)):
            rate = fn(kind, x, args.updates, args.repeats)
            line = {
                "model": kind,
                "shape": [d, f],
                "backend": backend,
                "update": "CD-1",
                "batch_size": 100,
                "updates_per_s": round(rate, 1),
                "ms_per_update": round(1e3 / rate, 3),
            }
            print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
