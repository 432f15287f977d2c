"""Scaling out: PCD updates and AIS steps on 1, 2 and 4 JAX devices / torch.distributed ranks.

Setting: a 784-500 binary RBM, a global minibatch of 100 with 100 persistent chains
(PCD-1), and AIS with 100 runs; every count splits the same global work (weak scaling is
not the point here). JAX counts are simulated CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=N``, one fresh process per count,
``mesh=N``; the 1-device run is the unsharded program, the peer). torch counts are gloo
ranks started with ``torchrun --nproc-per-node N`` (``distributed=True``), each with
``max(1, cores // N)`` threads. On a machine with fewer cores than devices the devices
share the cores, so what this measures is the cost of sharding and communication, not a
speed-up: ``overhead_vs_1 = time_N / time_1 - 1``. The data are random binary images with
MNIST's mean density (0.13): the arithmetic does not depend on the pixel values.

One JSON line per (backend, count, loop) on stdout with ``ms`` (median over repeats),
``ms_all``, ``overhead_vs_1``, ``other_cpu_pct`` (CPU share other processes took while
timing: above a few percent the time is not trustworthy) and, for torch, ``allreduce_ms``
(median time per update inside the gradient all-reduce, rank 0). A table goes to stderr.

    python benchmarks/scaling.py                    # ~3 min
    python benchmarks/scaling.py --quick            # ~1 min
    python benchmarks/scaling.py --backends jax --counts 1,2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cd_speed import CpuMonitor, settle  # noqa: E402 (shared timing helpers)

N_VIS, N_HID, BATCH, CHAINS, RUNS = 784, 500, 100, 100, 100


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", default="jax,torch", help="comma list of jax, torch")
    p.add_argument("--counts", default="1,2,4", help="device / process counts")
    p.add_argument("--quick", action="store_true", help="fewer updates and AIS steps")
    p.add_argument("--updates", type=int, default=None, help="timed updates per repeat")
    p.add_argument("--ais-steps", type=int, default=None, help="AIS transitions per repeat")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--wait-idle", type=float, default=0.0, help="wait for an idle CPU (s)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.updates is None:
        args.updates = 20 if args.quick else 100
    if args.ais_steps is None:
        args.ais_steps = 200 if args.quick else 1000
    if args.quick:
        args.repeats = min(args.repeats, 3)
    return args


def data(n: int = 2000) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random((n, N_VIS)) < 0.13).astype(np.float32)


def init_params(seed: int = 0):
    rng = np.random.default_rng(seed)
    w = (0.01 * rng.standard_normal((N_VIS, N_HID))).astype(np.float32)
    return w, np.zeros(N_VIS, np.float32), np.zeros(N_HID, np.float32)


def timed(fn, repeats: int, wait_idle: float) -> tuple[list[float], float | None]:
    fn()  # warm-up (compilation, first allocations)
    settle(wait_idle)
    mon = CpuMonitor()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out, mon.other_share()


# --------------------------------------------------------------------------------------
# children: one process (JAX) or one torchrun rank (torch) per count
# --------------------------------------------------------------------------------------


def child_jax(args) -> None:
    import jax
    import jax.numpy as jnp
    import numpyro
    import optax

    from ebm_ppl.inference.ais import linear_schedule
    from ebm_ppl.numpyro import AIS, RBM, SAMLE
    from ebm_ppl.numpyro.sharding import batch_sharding, make_mesh

    n = args.count
    assert jax.device_count() >= n, jax.devices()
    mesh = None if n == 1 else n
    w0, b0, c0 = init_params()

    def model(batch):
        w = numpyro.param("W", jnp.asarray(w0))
        b = numpyro.param("b", jnp.asarray(b0))
        c = numpyro.param("c", jnp.asarray(c0))
        with numpyro.plate("data", batch.shape[0]):
            numpyro.sample("v", RBM(w, b, c), obs=batch)

    x = data()
    trainer = SAMLE(model, optax.sgd(0.05, momentum=0.5), num_chains=CHAINS, mesh=mesh)
    state = trainer.init(jax.random.PRNGKey(0), jnp.asarray(x[:BATCH]))
    batches = [jnp.asarray(x[i : i + BATCH]) for i in range(0, len(x), BATCH)]
    if mesh is not None:
        m = make_mesh(n)
        batches = [jax.device_put(b, batch_sharding(m, 2)) for b in batches]
    box = [state]

    def updates():
        s = box[0]
        for i in range(args.updates):
            s, _ = trainer.update(s, batches[i % len(batches)])
        jax.block_until_ready(s)
        box[0] = s

    times, other = timed(updates, args.repeats, args.wait_idle)
    emit("jax", n, "pcd1_update", [t / args.updates for t in times], other)

    p = trainer.get_params(box[0])
    rbm = RBM(p["W"], p["b"], p["c"])
    betas = linear_schedule(args.ais_steps + 1)

    def ais():
        AIS(rbm, betas=betas, num_runs=RUNS, rng_key=jax.random.PRNGKey(1), mesh=mesh)

    times, other = timed(ais, args.repeats, args.wait_idle)
    emit("jax", n, "ais_step", [t / args.ais_steps for t in times], other)


def child_torch(args) -> None:
    import pyro
    import torch

    from ebm_ppl.inference.ais import linear_schedule
    from ebm_ppl.pyro import AIS, RBM, SAMLE, init_distributed
    from ebm_ppl.pyro import distributed as dist_utils

    rank, world = init_distributed("gloo")
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    reduce_times: list[float] = []
    inner = dist_utils.all_reduce_mean_

    def timed_reduce(grads):
        t0 = time.perf_counter()
        inner(grads)
        reduce_times.append(time.perf_counter() - t0)

    dist_utils.all_reduce_mean_ = timed_reduce
    w0, b0, c0 = init_params()

    def model(batch):
        w = pyro.param("W", torch.as_tensor(w0))
        b = pyro.param("b", torch.as_tensor(b0))
        c = pyro.param("c", torch.as_tensor(c0))
        with pyro.plate("data", batch.shape[0]):
            pyro.sample("v", RBM(w, b, c), obs=batch)

    pyro.set_rng_seed(0)
    x = torch.as_tensor(data())
    share = BATCH // world
    batches = [x[i : i + BATCH][rank * share : (rank + 1) * share] for i in range(0, len(x), BATCH)]
    trainer = SAMLE(
        model,
        pyro.optim.SGD({"lr": 0.05, "momentum": 0.5}),
        num_chains=CHAINS,
        distributed=world > 1,
    )

    def updates():
        for i in range(args.updates):
            trainer._step(False, (batches[i % len(batches)],), {})
        dist_utils.barrier()

    reduce_times.clear()
    times, other = timed(updates, args.repeats, args.wait_idle)
    red = reduce_times[args.updates :]  # past the warm-up
    extra = {"allreduce_ms": 1e3 * statistics.median(red) if red else 0.0}
    if rank == 0:
        emit("torch", world, "pcd1_update", [t / args.updates for t in times], other, extra)

    store = pyro.get_param_store()
    rbm = RBM(store["W"].detach(), store["b"].detach(), store["c"].detach())
    betas = linear_schedule(args.ais_steps + 1)

    def ais():
        AIS(rbm, betas=betas, num_runs=RUNS, distributed=world > 1, progress_bar=False)

    times, other = timed(ais, args.repeats, args.wait_idle)
    if rank == 0:
        emit("torch", world, "ais_step", [t / args.ais_steps for t in times], other)
    if world > 1:
        torch.distributed.destroy_process_group()


def emit(backend, count, loop, secs, other, extra=None) -> None:
    rec = {
        "backend": backend,
        "count": count,
        "loop": loop,
        "ms": 1e3 * statistics.median(secs),
        "ms_all": [round(1e3 * s, 4) for s in secs],
        "other_cpu_pct": None if other is None else round(100 * other, 1),
        **(extra or {}),
    }
    print("RESULT " + json.dumps(rec), flush=True)


# --------------------------------------------------------------------------------------
# parent
# --------------------------------------------------------------------------------------


def run_child(backend: str, count: int, args) -> list[dict]:
    common = [
        "--updates",
        str(args.updates),
        "--ais-steps",
        str(args.ais_steps),
        "--repeats",
        str(args.repeats),
        "--wait-idle",
        str(args.wait_idle),
        "--count",
        str(count),
        "--child",
        backend,
    ]
    env = dict(os.environ)
    if backend == "jax":
        flag = f"--xla_force_host_platform_device_count={count}"
        if count > 1:  # one Eigen thread per device (else starved devices miss collectives)
            flag += " --xla_cpu_multi_thread_eigen=false"
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flag).strip()
        env["JAX_PLATFORMS"] = "cpu"
        cmd = [sys.executable, str(Path(__file__).resolve()), *common]
    else:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // count))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd += ["--nproc-per-node", str(count), str(Path(__file__).resolve()), *common]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{backend} with {count} failed (exit {proc.returncode})")
    return [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child == "jax":
        return child_jax(args)
    if args.child == "torch":
        return child_torch(args)
    counts = [int(c) for c in args.counts.split(",")]
    backends = [b for b in args.backends.split(",") if b]
    for b in backends:
        if b not in ("jax", "torch"):
            raise SystemExit(f"unknown backend {b!r}: use jax and/or torch")
    rows = []
    for backend in backends:
        base = {}
        for count in counts:
            for rec in run_child(backend, count, args):
                key = rec["loop"]
                if count == counts[0]:
                    base[key] = rec["ms"]
                rec["overhead_vs_1"] = round(rec["ms"] / base[key] - 1, 4) if key in base else None
                rec.update(updates=args.updates, ais_steps=args.ais_steps, cores=os.cpu_count())
                print(json.dumps(rec), flush=True)
                rows.append(rec)
    print(
        f"\n{'backend':8} {'count':>5} {'loop':12} {'ms':>9} {'overhead':>9} {'other%':>7}",
        file=sys.stderr,
    )
    for r in rows:
        ov = "" if r["overhead_vs_1"] is None else f"{100 * r['overhead_vs_1']:+.1f}%"
        print(
            f"{r['backend']:8} {r['count']:5d} {r['loop']:12} {r['ms']:9.3f} {ov:>9} "
            f"{r['other_cpu_pct']!s:>7}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
