"""Speed of one DBM SA-MLE update against its matrix-product floor (issue 6).

    python benchmarks/dbm_speed.py                       # 784-500-1000, minibatch 100
    python benchmarks/dbm_speed.py --sizes 784,500,1000 --mf-iters 10,30 --repeats 5

One update of ``SAMLE`` on ``sample("v", DBM(W, b).visible(num_iters=K, tol=None), obs=batch)``:
``K`` mean-field sweeps for the batch (from the doubled bottom-up pass), ``--gibbs`` block-Gibbs
sweeps of ``--chains`` persistent chains, and the gradient. The floor counts the matrix
products an update cannot avoid, at ``--gflops`` (about 200 GFLOP/s float32 on this machine's
2 cores): the bottom-up pass, per mean-field sweep ``mu1 W2^T`` and ``mu1 W2`` (``v W1`` is
computed once), per Gibbs sweep every layer's input, and the four sufficient-statistics
products. The peer, in the same run, is a PCD-1 update of a 784-500 RBM through the same
trainer. Prints one JSON line per measurement (medians over ``--repeats`` blocks of
``--updates`` updates, after a compiled warm-up); NumPyro (one ``lax.scan`` per block) and
Pyro (``SAMLE.step``). ``--device cuda`` runs the Pyro rows on that torch device (JAX uses its
default device); every line names its device.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time


def floor_flops(sizes, batch, chains, mf_iters, gibbs) -> float:
    n = list(sizes)
    pair = [n[i] * n[i + 1] for i in range(len(n) - 1)]
    up = 2 * batch * sum(pair)  # bottom-up pass
    # each mean-field sweep: every hidden layer's input from above and below, with v W1 cached
    mf = 2 * batch * (sum(pair) - pair[0] + sum(pair[1:]))
    sweep = 2 * chains * 2 * sum(pair)  # every layer's input: each W used twice
    stats = 2 * (batch + chains) * sum(pair)
    return up + mf_iters * mf + gibbs * sweep + stats


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="784,500,1000")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--chains", type=int, default=100)
    p.add_argument("--gibbs", type=int, default=5)
    p.add_argument("--mf-iters", default="10,30")
    p.add_argument("--updates", type=int, default=30)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--gflops", type=float, default=200.0)
    p.add_argument("--backends", default="jax,torch")
    p.add_argument("--device", default="cpu", help="torch device of the Pyro rows, e.g. cuda")
    args = p.parse_args(argv)

    import numpy as np

    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(0)
    data = (rng.random((args.batch * args.updates, sizes[0])) < 0.15).astype(np.float32)
    ws = [(0.01 * rng.standard_normal((a, b))).astype(np.float32) for a, b in zip(sizes, sizes[1:])]
    bs = [np.zeros(n, np.float32) for n in sizes]

    def report(line):
        print(json.dumps(line), flush=True)

    for backend in args.backends.split(","):
        for k in [int(x) for x in args.mf_iters.split(",")] + [0]:
            times, device = run(backend, k, sizes, ws, bs, data, args)
            ms = statistics.median(times) * 1e3
            if k == 0:  # the peer: an RBM 784-500 PCD-1 update in the same trainer
                # v W for the batch and h|v, v|h for the chains; the two statistics products
                flops = 2 * sizes[0] * sizes[1] * (2 * args.batch + 3 * args.chains)
                name = f"rbm {sizes[0]}-{sizes[1]} PCD-1 (peer)"
            else:
                flops = floor_flops(sizes, args.batch, args.chains, k, args.gibbs)
                name = f"dbm {'-'.join(map(str, sizes))} SA, {k} mean-field sweeps"
            floor_ms = flops / (args.gflops * 1e9) * 1e3
            report(
                {
                    "backend": backend,
                    "what": name,
                    "ms_per_update": round(ms, 2),
                    "floor_ms": round(floor_ms, 2),
                    "ratio_to_floor": round(ms / floor_ms, 2),
                    "s_per_epoch_60k": round(ms * 0.6, 1),
                    "ms_all": [round(t * 1e3, 2) for t in times],
                    "mf_iters": k,
                    "gibbs": args.gibbs if k else 1,
                    "batch": args.batch,
                    "chains": args.chains,
                    "device": device,
                }
            )
    return 0


def run(backend, k, sizes, ws, bs, data, args) -> tuple[list[float], str]:
    """Seconds per update over ``repeats`` blocks of ``updates`` updates, and the device."""
    n_up = args.updates
    if backend == "jax":
        import jax
        import jax.numpy as jnp
        import numpyro
        import optax

        from ebm_ppl.numpyro import DBM, RBM, SAMLE

        def model(batch):
            if k == 0:
                w = numpyro.param("W0", jnp.asarray(ws[0]))
                b = numpyro.param("b0", jnp.asarray(bs[0]))
                c = numpyro.param("b1", jnp.asarray(bs[1]))
                site = RBM(w, b, c)
            else:
                w = [numpyro.param(f"W{i}", jnp.asarray(x)) for i, x in enumerate(ws)]
                b = [numpyro.param(f"b{i}", jnp.asarray(x)) for i, x in enumerate(bs)]
                site = DBM(w, b).visible(num_iters=k, tol=None)
            with numpyro.plate("data", batch.shape[0]):
                numpyro.sample("v", site, obs=batch)

        gibbs = args.gibbs if k else 1
        tr = SAMLE(
            model, optax.sgd(1e-3, momentum=0.9), num_gibbs_steps=gibbs, num_chains=args.chains
        )
        x = jnp.asarray(data)
        state = tr.init(jax.random.PRNGKey(0), x[: args.batch])
        idx = jnp.arange(len(data)).reshape(n_up, args.batch)
        epoch = tr._epoch_fn(n_up, args.batch, (), {})
        state = epoch(state, x, idx)  # compile
        jax.block_until_ready(state)
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            state = epoch(state, x, idx)
            jax.block_until_ready(state)
            times.append((time.perf_counter() - t) / n_up)
        d0 = jax.devices()[0]
        return times, f"{d0.platform} ({d0.device_kind})"
    import pyro
    import torch

    from ebm_ppl.pyro import DBM, RBM, SAMLE

    pyro.clear_param_store()
    dev = torch.device(args.device)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def model(batch):
        if k == 0:
            site = RBM(
                *(
                    pyro.param(n, torch.tensor(x, device=dev))
                    for n, x in (("W0", ws[0]), ("b0", bs[0]), ("b1", bs[1]))
                )
            )
        else:
            w = [pyro.param(f"W{i}", torch.tensor(x, device=dev)) for i, x in enumerate(ws)]
            b = [pyro.param(f"b{i}", torch.tensor(x, device=dev)) for i, x in enumerate(bs)]
            site = DBM(w, b).visible(num_iters=k, tol=None)
        with pyro.plate("data", batch.shape[0]):
            pyro.sample("v", site, obs=batch)

    gibbs = args.gibbs if k else 1
    tr = SAMLE(
        model,
        pyro.optim.SGD({"lr": 1e-3, "momentum": 0.9}),
        num_gibbs_steps=gibbs,
        num_chains=args.chains,
    )
    x = torch.tensor(data, device=dev)
    batches = x.reshape(n_up, args.batch, -1)
    tr.step(batches[0])
    times = []
    for _ in range(args.repeats):
        sync()
        t = time.perf_counter()
        for b in batches:
            tr._step(False, (b,), {})
        sync()
        times.append((time.perf_counter() - t) / n_up)
    if dev.type == "cuda":
        return times, torch.cuda.get_device_name(dev)
    return times, f"{dev.type} ({platform.processor() or platform.machine()})"


if __name__ == "__main__":
    raise SystemExit(main())
