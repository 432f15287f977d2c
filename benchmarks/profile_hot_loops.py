"""Profile of the hottest loops in both backends against their matrix-product floor.

Loops (float32; one iteration of each is the unit):

* ``rbm_cd1`` / ``rbm_pcd1``: one CD-1 / PCD-1 update of a 784-500 binary RBM, minibatch 100
  (PCD: 100 persistent chains), plain SGD (lr 0.05), binarized MNIST;
* ``ais``: one AIS step of a 784-500 RBM (W ~ N(0, 0.05^2), as ``ais_speed.py``) with 100 runs;
* ``gibbs``: one block-Gibbs sweep of 100 chains of that RBM; the public implementation is the
  host PPL's ``MCMC`` running our ``BlockGibbs`` on a model with a plate of 100 chains, per
  sample (the difference between runs of ``n + 2`` and 2 samples: set-up excluded, the MCMC
  loop's own per-sample work and the storing of the samples included);
* ``dbm_sa``: one SA-MLE (PCD) update of a 784-500-1000 DBM, minibatch 100, 100 persistent
  chains, ``--mf-iters`` mean-field sweeps (default 10, ``tol=None``) from the doubled
  bottom-up pass, ``--gibbs`` block-Gibbs sweeps (default 5), plain SGD (lr 0.001);
* ``dbm_mf``: one mean-field iteration of that DBM at batch 100 (the difference between
  ``mean_field`` with ``--mf-hi`` and ``--mf-lo`` iterations, per iteration).

For every loop the matrix products it cannot avoid are listed with their shapes
(:func:`loop_gemms`); their FLOPs give the floor at the rate of a plain float32 matmul of the
same shapes and layouts, timed in the same run and the same backend, *interleaved* with the
measurements (peer, implementations, peer, ...) so that a slow spell of the machine hits both.
``ratio_to_floor`` is the median over repeats of (implementation time / that repeat's floor);
``ratio_to_floor_200`` uses the nominal 200 GFLOP/s of this machine instead, and for JAX
``ratio_to_torch_floor`` the torch (MKL) floor measured earlier in the run (XLA's own dot is
slower at these shapes). The torch peer is ``torch.mm(..., out=)``; the JAX peer takes, per
shape, the faster of jitted calls and a compiled ``fori_loop`` of products.

Implementations: the public API of each frontend (``pyro.SAMLE.step``, ``numpyro.SAMLE``'s
epoch scan as ``SAMLE.run`` executes it and its jitted ``update``, ``AIS``, ``MCMC`` with
``BlockGibbs``, ``DBM.mean_field``) and the same arithmetic written on the core functions of
:mod:`ebm_ppl.models` (``rbm.gibbs_sweep`` + ``rbm.contrast``, ``rbm.ais_step``,
``dbm.mean_field`` + ``dbm.gibbs_sweep`` + ``dbm.mean_field_contrast``) without a PPL layer
(torch: a Python loop; JAX: one jitted ``lax.scan``).

Where the time beyond the floor goes (``"kind": "breakdown"`` lines, on the core and public
implementations):

* both backends: ``rng_ms``, the in-context cost of the random draws, by timing the loop
  again with ``ebm_ppl.ops.uniform`` replaced by a constant (no random bits drawn), and
  ``rng_standalone_ms``, the same uniforms drawn on their own;
* torch: ``torch.profiler`` self CPU time per iteration by category (matmul, RNG,
  transcendental, compare/cast, arithmetic, reduction, copy/cat, alloc/view, other),
  the matrix-product FLOPs actually executed (``with_flops``) and the number of ATen ops;
* JAX: the compiled HLO: dots and their FLOPs executed per iteration (while-loop trip counts
  followed), kernels (fusions and other top-level instructions) per iteration, and the
  rolled threefry loops the RNG runs as on CPU.

Output: one JSON line per measurement (medians over ``--repeats``) on stdout, a summary
table on stderr. ``other_cpu_pct`` is the CPU share other processes took while a loop was
timed; above ``--busy-pct`` (default 10) the loop is measured again (``--retries``, after
waiting up to ``--wait-idle`` seconds for a quiet machine).

Usage::

    EBM_PPL_DATA=/path/to/data python benchmarks/profile_hot_loops.py      # ~2.5 min
    python benchmarks/profile_hot_loops.py --quick --synthetic             # ~1 min
    python benchmarks/profile_hot_loops.py --loops ais,dbm_mf --backends jax
    python benchmarks/profile_hot_loops.py --backends jax --jax-threefry unrolled --no-breakdown

``--jax-threefry unrolled`` is a what-if: it registers JAX's own unrolled threefry lowering
for the CPU (this process only; the random bits are identical, which the script checks)
instead of the rolled loop JAX uses on CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from cd_speed import CpuMonitor, _choices, jax_threads, load_data, settle, torch_threads
from dbm_speed import floor_flops

LOOPS = ("rbm_cd1", "rbm_pcd1", "ais", "gibbs", "dbm_sa", "dbm_mf")
BACKENDS = ("torch", "jax")
NOMINAL_GFLOPS = 200.0
TARGET_RATIO = 1.5
D, F = 784, 500  # the RBM
DBM_SIZES = (784, 500, 1000)
BATCH = 100
CHAINS = 100
RUNS = 100  # AIS


# --------------------------------------------------------------------------------------
# set-up
# --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--loops", default=",".join(LOOPS), help="subset of " + ",".join(LOOPS))
    p.add_argument("--backends", default=",".join(BACKENDS), help="subset of torch,jax")
    p.add_argument("--quick", action="store_true", help="3 repeats, shorter blocks")
    p.add_argument("--repeats", type=int, help="interleaved repeats per loop (default 5; quick 3)")
    p.add_argument("--mf-iters", type=int, default=10, help="mean-field sweeps per SA update")
    p.add_argument("--gibbs", type=int, default=5, help="Gibbs sweeps per DBM SA update")
    p.add_argument("--mf-lo", type=int, default=1, help="dbm_mf: iterations of the short call")
    p.add_argument("--mf-hi", type=int, default=31, help="dbm_mf: iterations of the long call")
    p.add_argument("--ais-betas", type=int, default=601, help="public AIS: linear betas")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-breakdown", action="store_true", help="skip profiles and ablations")
    p.add_argument(
        "--device",
        default="cpu",
        help="torch device of the torch rows, e.g. cuda (JAX uses its default device); off the "
        "CPU the torch breakdown (a CPU profile) is skipped",
    )
    p.add_argument(
        "--jax-threefry",
        choices=("rolled", "unrolled"),
        default="rolled",
        help="what-if: JAX's unrolled threefry lowering on CPU (default: JAX's rolled loop)",
    )
    p.add_argument("--busy-pct", type=float, default=10.0, help="rerun a loop above this")
    p.add_argument("--retries", type=int, default=2, help="reruns of a loop on a busy machine")
    p.add_argument(
        "--wait-idle",
        type=float,
        default=60.0,
        metavar="S",
        help="before each loop wait up to S seconds for other processes to leave the CPU",
    )
    p.add_argument("--data-root", help="folder with the MNIST .gz files (default $EBM_PPL_DATA)")
    p.add_argument("--download", action="store_true", help="download MNIST if it is missing")
    p.add_argument("--synthetic", action="store_true", help="random binary data, no MNIST")
    args = p.parse_args(argv)
    args.loops = _choices(p, "--loops", args.loops, LOOPS)
    args.backends = _choices(p, "--backends", args.backends, BACKENDS)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    if args.repeats < 1 or args.mf_iters < 1 or args.gibbs < 1:
        p.error("--repeats, --mf-iters and --gibbs must be positive")
    if not 1 <= args.mf_lo < args.mf_hi:
        p.error("need 1 <= --mf-lo < --mf-hi")
    if args.ais_betas < 3:
        p.error("--ais-betas must be >= 3")
    args.n_images = 10_000  # for cd_speed.load_data
    return args


def use_unrolled_threefry() -> bool:
    """Register JAX's unrolled threefry lowering for the CPU (JAX lowers threefry on CPU as
    a rolled ``fori_loop`` of 5 iterations, to save compile time). Returns whether the random
    bits stay identical (checked on a fixed key)."""
    import jax
    from jax._src.interpreters import mlir
    from jax._src.random import threefry2x32 as t2

    def draw(key):
        return jax.random.bits(key, (1000,))

    key = jax.random.PRNGKey(123)
    before = np.asarray(jax.jit(draw)(key))
    mlir.register_lowering(t2.threefry2x32_p, t2._threefry2x32_lowering_rule, platform="cpu")
    after = np.asarray(jax.jit(lambda k: draw(k))(key))  # a new function: lowered afresh
    return bool((before == after).all())


# --------------------------------------------------------------------------------------
# the matrix-product floor
# --------------------------------------------------------------------------------------


class Gemm(NamedTuple):
    """``count`` products ``(m x k) @ (k x n)``; ``ta`` / ``tb``: that operand is a
    transposed view of a stored ``(k, m)`` / ``(n, k)`` array (as in the implementations)."""

    m: int
    k: int
    n: int
    ta: bool = False
    tb: bool = False
    count: int = 1

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n * self.count

    @property
    def label(self) -> str:
        a = f"({self.k}x{self.m})^T" if self.ta else f"({self.m}x{self.k})"
        b = f"({self.n}x{self.k})^T" if self.tb else f"({self.k}x{self.n})"
        return f"{self.count}x {a}@{b}"


def merge(gemms: list[Gemm]) -> list[Gemm]:
    counts: Counter = Counter()
    for g in gemms:
        counts[g._replace(count=1)] += g.count
    return [g._replace(count=c) for g, c in counts.items()]


def loop_gemms(loop: str, args: argparse.Namespace) -> list[Gemm]:
    """The products one iteration of ``loop`` cannot avoid."""
    B, C = BATCH, CHAINS
    if loop == "rbm_cd1":  # v W (serves h|v and the positive statistics), h W^T, v' W, 2 stats
        return merge(
            [Gemm(B, D, F, count=2), Gemm(B, F, D, tb=True), Gemm(D, B, F, ta=True, count=2)]
        )
    if loop == "rbm_pcd1":  # as CD-1 plus the chains' own v W
        return merge(
            [
                Gemm(B, D, F),
                Gemm(C, D, F, count=2),
                Gemm(C, F, D, tb=True),
                Gemm(D, B, F, ta=True),
                Gemm(D, C, F, ta=True),
            ]
        )
    if loop in ("ais", "gibbs"):  # v W (the weight and h|v), h W^T
        return [Gemm(RUNS, D, F), Gemm(RUNS, F, D, tb=True)]
    n0, n1, n2 = DBM_SIZES
    mf = [Gemm(B, n2, n1, tb=True), Gemm(B, n1, n2)]  # mu2 W2^T, mu1 W2 (v W1 cached)
    if loop == "dbm_mf":
        return mf
    K, G = args.mf_iters, args.gibbs
    up = [Gemm(B, n0, n1), Gemm(B, n1, n2)]  # the doubled bottom-up pass
    sweep = [Gemm(C, n0, n1), Gemm(C, n2, n1, tb=True), Gemm(C, n1, n0, tb=True), Gemm(C, n1, n2)]
    stats = [Gemm(n0, B, n1, ta=True), Gemm(n1, B, n2, ta=True)]
    stats += [Gemm(n0, C, n1, ta=True), Gemm(n1, C, n2, ta=True)]
    out = merge(
        up + [g._replace(count=K) for g in mf] + [g._replace(count=G) for g in sweep] + stats
    )
    assert sum(g.flops for g in out) == floor_flops(DBM_SIZES, B, C, K, G)  # as dbm_speed.py
    return out


TORCH_DEVICE = "cpu"  # set by main from --device


def _t(a: np.ndarray):
    """A numpy array as a torch tensor on the torch device of this run."""
    import torch

    return torch.from_numpy(a).to(TORCH_DEVICE)


def _sync() -> None:
    """Wait for the torch device's queued work (a no-op on the CPU and for JAX rows)."""
    if TORCH_DEVICE != "cpu":
        import torch

        if torch.device(TORCH_DEVICE).type == "cuda":
            torch.cuda.synchronize(TORCH_DEVICE)


def device_name(backend: str) -> str:
    if backend == "jax":
        import jax

        d0 = jax.devices()[0]
        return f"{d0.platform} ({d0.device_kind})"
    import torch

    dev = torch.device(TORCH_DEVICE)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"{dev.type} ({platform.processor() or platform.machine()})"


def torch_peer(gemms: list[Gemm], calls: int) -> Callable[[], float]:
    """Seconds per loop iteration of the plain ``torch.mm`` calls of ``gemms``."""
    import torch

    gen = torch.Generator().manual_seed(0)
    ops = []
    for g in gemms:
        a = torch.rand((g.k, g.m) if g.ta else (g.m, g.k), generator=gen).to(TORCH_DEVICE)
        b = 0.01 * torch.randn((g.n, g.k) if g.tb else (g.k, g.n), generator=gen)
        b, out = b.to(TORCH_DEVICE), torch.empty(g.m, g.n, device=TORCH_DEVICE)
        ops.append((a.T if g.ta else a, b.T if g.tb else b, out, g.count))

    def run() -> float:
        total = 0.0
        for a, b, out, count in ops:
            t0 = time.perf_counter()
            for _ in range(calls):
                torch.mm(a, b, out=out)
            _sync()
            total += count * (time.perf_counter() - t0) / calls
        return total

    run()
    return run


def jax_peer(gemms: list[Gemm], calls: int) -> Callable[[], float]:
    """Seconds per loop iteration of plain ``a @ b`` products of ``gemms`` in JAX: per shape
    the faster of ``calls`` jitted calls and ``calls`` products in one compiled ``fori_loop``
    (each writing one entry of its left operand, ``+ 0 * sum(out)``, so that it depends on
    the previous one and is not hoisted). XLA's dot speed at these shapes varies with the
    context; the faster of the two is the floor."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    ops = []
    for g in gemms:
        a = jnp.asarray(rng.random((g.k, g.m) if g.ta else (g.m, g.k), dtype=np.float32))
        b = jnp.asarray(0.01 * rng.standard_normal((g.n, g.k) if g.tb else (g.k, g.n)), jnp.float32)

        def product(a, b, ta=g.ta, tb=g.tb):
            return (a.T if ta else a) @ (b.T if tb else b)

        def loop(a, b, product=product):
            def body(_, a):
                return a.at[0, 0].add(0.0 * product(a, b).sum())

            return jax.lax.fori_loop(0, calls, body, a)

        single = jax.jit(product)
        looped = jax.jit(loop).lower(a, b).compile()
        jax.block_until_ready((single(a, b), looped(a, b)))
        ops.append((single, looped, a, b, g.count))

    def run() -> float:
        total = 0.0
        for single, looped, a, b, count in ops:
            t0 = time.perf_counter()
            for _ in range(calls):
                out = single(a, b)
            jax.block_until_ready(out)
            t1 = time.perf_counter()
            jax.block_until_ready(looped(a, b))
            t2 = time.perf_counter()
            total += count * min(t1 - t0, t2 - t1) / calls
        return total

    run()
    return run


# --------------------------------------------------------------------------------------
# implementations: each is a callable returning seconds per iteration
# --------------------------------------------------------------------------------------


class Impl(NamedTuple):
    api: str
    run: Callable[[], float]
    step: Callable[[], Any] | None = None  # torch: one iteration, for the profiler
    compiled: Any = None  # JAX: the compiled loop, for the HLO statistics
    iters: int = 1  # iterations in ``compiled``
    note: str = ""


def timed(block: Callable[[], Any], iters: int) -> Callable[[], float]:
    """``block`` runs ``iters`` iterations and waits for them; returns seconds/iteration."""

    def run() -> float:
        _sync()
        t0 = time.perf_counter()
        block()
        _sync()
        return (time.perf_counter() - t0) / iters

    return run


def difference(call_hi: Callable, call_lo: Callable, d_iters: int, calls: int):
    """Seconds per iteration as ``(t(hi) - t(lo)) / d_iters`` over ``calls`` calls each."""

    def run() -> float:
        t0 = time.perf_counter()
        for _ in range(calls):
            call_hi()
        _sync()
        t1 = time.perf_counter()
        for _ in range(calls):
            call_lo()
        _sync()
        t2 = time.perf_counter()
        return ((t1 - t0) - (t2 - t1)) / (calls * d_iters)

    return run


def rbm_init(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w = 0.01 * np.random.default_rng(seed).standard_normal((D, F))
    return w.astype(np.float32), np.zeros(D, np.float32), np.zeros(F, np.float32)


def ais_model(seed: int) -> tuple[np.ndarray, ...]:
    """The random 784-500 RBM of ``ais_speed.py`` and its base logits."""
    rng = np.random.default_rng(seed)
    w = (0.05 * rng.standard_normal((D, F))).astype(np.float32)
    b = (-1.0 + 0.1 * rng.standard_normal(D)).astype(np.float32)
    return w, b, np.zeros(F, np.float32), np.clip(b, -10, 10).astype(np.float32)


def dbm_init(seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    sizes = DBM_SIZES
    ws = [(0.01 * rng.standard_normal((a, b))).astype(np.float32) for a, b in zip(sizes, sizes[1:])]
    return ws, [np.zeros(n, np.float32) for n in sizes]


def batches(x: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``(count, 100, 784)`` minibatches of ``x`` (shuffled, cycling)."""
    idx = np.random.default_rng(seed).permutation(len(x))
    idx = np.resize(idx, count * BATCH)
    return np.ascontiguousarray(x[idx].reshape(count, BATCH, -1))


def n_iters(loop: str, quick: bool) -> int:
    """Iterations per timed block."""
    base = {"rbm_cd1": 40, "rbm_pcd1": 40, "ais": 300, "gibbs": 200, "dbm_sa": 8, "dbm_mf": 3}
    base = base[loop]
    return max(2, base // 2) if quick else base


# ---- torch ---------------------------------------------------------------------------


def torch_impls(loop: str, x: np.ndarray, args, core_only: bool = False) -> list[Impl]:
    """The implementations of ``loop`` (``core_only``: just the core one)."""
    import torch

    torch.manual_seed(args.seed)
    n = n_iters(loop, args.quick)
    if loop in ("rbm_cd1", "rbm_pcd1"):
        return torch_rbm(loop == "rbm_pcd1", x, n, args, core_only)
    if loop == "ais":
        return torch_ais(n, args, core_only)
    if loop == "gibbs":
        return torch_gibbs(n, args, core_only)
    if loop == "dbm_sa":
        return torch_dbm_sa(x, n, args, core_only)
    return torch_dbm_mf(x, n, args)


def torch_rbm(persistent: bool, x: np.ndarray, n: int, args, core_only: bool) -> list[Impl]:
    import pyro
    import torch

    from ebm_ppl import ops
    from ebm_ppl.models import rbm
    from ebm_ppl.pyro import RBM, SAMLE

    data = _t(batches(x, n, args.seed))
    lr = 0.05

    # core: the trainer's arithmetic on ebm_ppl.models.rbm (fused analytic gradient)
    w, b, c = (_t(p).clone() for p in rbm_init(args.seed))
    state = {
        "chains": ops.bernoulli(None, torch.full((CHAINS, D), 0.5, device=TORCH_DEVICE)),
        "i": 0,
    }

    @torch.no_grad()
    def core_step():
        v = data[state["i"] % n]
        state["i"] += 1
        if persistent:
            vm, _ = rbm.gibbs_sweep(None, w, b, c, state["chains"])
            _, grads = rbm.contrast(w, b, c, v, vm, 1.0 / BATCH, 1.0 / CHAINS)
            state["chains"] = vm
        else:
            logits = rbm.hidden_logits(w, c, v)
            vm, _ = rbm.gibbs_sweep(None, w, b, c, v, logits=logits)
            _, grads = rbm.contrast(w, b, c, v, vm, 1.0 / BATCH, 1.0 / BATCH, data_logits=logits)
        for p_, g in zip((w, b, c), grads):
            p_.sub_(g, alpha=lr)

    if core_only:
        return [_torch_impl("core", core_step, n)]
    # public: pyro.SAMLE.step on a model with a plate
    w0, b0, c0 = (_t(p) for p in rbm_init(args.seed))

    def model(batch):
        wp, bp, cp = pyro.param("W", w0), pyro.param("b", b0), pyro.param("c", c0)
        with pyro.plate("data", batch.shape[0]):
            pyro.sample("v", RBM(wp, bp, cp), obs=batch)

    pyro.clear_param_store()
    svi = SAMLE(
        model,
        pyro.optim.SGD({"lr": lr}),
        num_gibbs_steps=1,
        persistent=persistent,
        num_chains=CHAINS if persistent else None,
    )
    pub = {"i": 0}

    def pub_step():
        svi.step(data[pub["i"] % n])
        pub["i"] += 1

    return [_torch_impl("pyro.SAMLE.step", pub_step, n), _torch_impl("core", core_step, n)]


def _torch_impl(api: str, step: Callable, n: int, note: str = "") -> Impl:
    for _ in range(3):
        step()

    def block():
        for _ in range(n):
            step()

    return Impl(api, timed(block, n), step=step, note=note)


def torch_ais(n: int, args, core_only: bool) -> list[Impl]:
    import torch

    import ebm_ppl.pyro as fe
    from ebm_ppl.inference.ais import linear_schedule
    from ebm_ppl.models import rbm

    w, b, c, a0 = (_t(p) for p in ais_model(args.seed))
    betas = np.linspace(0.0, 1.0, n + 1)
    pairs = [(float(p), float(q)) for p, q in zip(betas[:-1], betas[1:])]
    state = {"v": ops_bernoulli_torch(torch.sigmoid(a0).expand(RUNS, D)), "i": 0}
    acc = torch.zeros(RUNS, dtype=torch.float64, device=TORCH_DEVICE)

    @torch.no_grad()
    def core_step():
        bp, bb = pairs[state["i"] % n]
        state["i"] += 1
        state["v"], delta = rbm.ais_step(None, w, b, c, a0, state["v"], bp, bb)
        acc.add_(delta)

    if core_only:
        return [_torch_impl("core", core_step, n)]
    model = fe.RBM(w, b, c)
    base = fe.BernoulliBase(a0)
    sched = linear_schedule(args.ais_betas)
    steps = args.ais_betas - 1

    def public():
        fe.AIS(model, base=base, betas=sched, num_runs=RUNS, progress_bar=False)

    public()
    return [
        Impl(
            "pyro.AIS",
            timed(public, steps),
            note=f"{args.ais_betas} linear betas; seconds / {steps} steps",
        ),
        _torch_impl("core", core_step, n),
    ]


GIBBS_LO = 2  # MCMC samples of the short run that the per-sweep difference subtracts


def torch_gibbs(n: int, args, core_only: bool) -> list[Impl]:
    import pyro
    import torch
    from pyro.infer import MCMC

    import ebm_ppl.pyro as fe
    from ebm_ppl.models import rbm

    w, b, c, a0 = (_t(p) for p in ais_model(args.seed))
    state = {"v": ops_bernoulli_torch(torch.sigmoid(a0).expand(RUNS, D))}

    @torch.no_grad()
    def core_step():
        state["v"], _ = rbm.gibbs_sweep(None, w, b, c, state["v"])

    if core_only:
        return [_torch_impl("core", core_step, n)]
    site = fe.RBM(w, b, c)

    def model():
        with pyro.plate("chains", RUNS):
            pyro.sample("v", site)

    def run(k: int) -> None:
        MCMC(fe.BlockGibbs(model), num_samples=k, warmup_steps=0, disable_progbar=True).run()

    run(GIBBS_LO + n)
    note = f"(t({GIBBS_LO + n} samples) - t({GIBBS_LO})) / {n}: set-up excluded, storing included"
    public = Impl(
        "pyro MCMC(BlockGibbs)",
        difference(lambda: run(GIBBS_LO + n), lambda: run(GIBBS_LO), n, 1),
        note=note,
    )
    return [public, _torch_impl("core", core_step, n)]


def ops_bernoulli_torch(p):
    from ebm_ppl import ops

    return ops.bernoulli(None, p.contiguous())


def torch_dbm_sa(x: np.ndarray, n: int, args, core_only: bool) -> list[Impl]:
    import pyro
    import torch

    from ebm_ppl.models import dbm
    from ebm_ppl.pyro import DBM, SAMLE

    data = _t(batches(x, n, args.seed))
    ws, bs = dbm_init(args.seed)
    K, G, lr = args.mf_iters, args.gibbs, 1e-3

    # core: mean field + Gibbs + mean_field_contrast through autograd, on ebm_ppl.models.dbm
    params = [_t(a).clone().requires_grad_(True) for a in ws + bs]
    p = dbm.DBMParams(tuple(params[: len(ws)]), tuple(params[len(ws) :]))
    init = DBM([_t(a) for a in ws], [_t(a) for a in bs])
    state = {"chains": init.split(init.init_chain(None, (CHAINS, sum(DBM_SIZES)))), "i": 0}

    def core_step():
        v = data[state["i"] % n]
        state["i"] += 1
        fp = dbm.frozen(p)
        with torch.no_grad():
            mus = dbm.mean_field(fp, v, K)
            layers = state["chains"]
            for _ in range(G):
                layers = dbm.gibbs_sweep(None, fp, layers)
        loss = dbm.mean_field_contrast(p, mus, layers, 1.0 / BATCH, 1.0 / CHAINS)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for q, g in zip(params, grads):
                q.sub_(g, alpha=lr)
        state["chains"] = layers

    if core_only:
        return [_torch_impl("core", core_step, n)]

    def model(batch):
        w = [pyro.param(f"W{i}", _t(a)) for i, a in enumerate(ws)]
        b = [pyro.param(f"b{i}", _t(a)) for i, a in enumerate(bs)]
        with pyro.plate("data", batch.shape[0]):
            pyro.sample("v", DBM(w, b).visible(num_iters=K, tol=None), obs=batch)

    pyro.clear_param_store()
    svi = SAMLE(model, pyro.optim.SGD({"lr": lr}), num_gibbs_steps=G, num_chains=CHAINS)
    pub = {"i": 0}

    def pub_step():
        svi.step(data[pub["i"] % n])
        pub["i"] += 1

    return [_torch_impl("pyro.SAMLE.step", pub_step, n), _torch_impl("core", core_step, n)]


def torch_dbm_mf(x: np.ndarray, calls: int, args) -> list[Impl]:
    import torch

    from ebm_ppl.models import dbm
    from ebm_ppl.pyro import DBM

    v = _t(batches(x, 1, args.seed)[0])
    ws, bs = dbm_init(args.seed)
    model = DBM([_t(a) for a in ws], [_t(a) for a in bs])
    p = model.dbm_params
    lo, hi = args.mf_lo, args.mf_hi
    out = []
    for api, fn in (
        ("pyro.DBM.mean_field", lambda k: model.mean_field(v, num_iters=k)),
        ("core", lambda k: dbm.mean_field(p, v, k)),
    ):
        with torch.no_grad():
            fn(hi)
            run = difference(lambda fn=fn: fn(hi), lambda fn=fn: fn(lo), hi - lo, calls)
        out.append(
            Impl(
                api,
                _no_grad(run),
                step=lambda fn=fn: fn(hi),
                iters=hi,
                note=f"(t({hi}) - t({lo})) / {hi - lo}",
            )
        )
    return out


def _no_grad(run: Callable[[], float]) -> Callable[[], float]:
    import torch

    def wrapped() -> float:
        with torch.no_grad():
            return run()

    return wrapped


# ---- JAX ---------------------------------------------------------------------------------


def jax_impls(loop: str, x: np.ndarray, args, core_only: bool = False) -> list[Impl]:
    """The implementations of ``loop`` (``core_only``: just the core one)."""
    n = n_iters(loop, args.quick)
    if loop in ("rbm_cd1", "rbm_pcd1"):
        return jax_rbm(loop == "rbm_pcd1", x, n, args, core_only)
    if loop == "ais":
        return jax_ais(n, args, core_only)
    if loop == "gibbs":
        return jax_gibbs(n, args, core_only)
    if loop == "dbm_sa":
        return jax_dbm_sa(x, n, args, core_only)
    return jax_dbm_mf(x, n, args)


def _scan_impl(api: str, body: Callable, carry: Any, xs: Any, n: int, note: str = "") -> Impl:
    """A jitted ``lax.scan`` of ``body`` over ``xs`` (``n`` iterations), compiled once."""
    import jax

    @jax.jit
    def loop(carry, xs):
        return jax.lax.scan(lambda c, a: (body(c, a), None), carry, xs)[0]

    compiled = loop.lower(carry, xs).compile()
    holder = {"c": jax.block_until_ready(compiled(carry, xs))}

    def block():
        holder["c"] = jax.block_until_ready(compiled(holder["c"], xs))

    block()
    return Impl(api, timed(block, n), compiled=compiled, iters=n, note=note)


def jax_rbm(persistent: bool, x: np.ndarray, n: int, args, core_only: bool) -> list[Impl]:
    import jax
    import jax.numpy as jnp
    import numpyro
    import optax

    from ebm_ppl import ops
    from ebm_ppl.models import rbm
    from ebm_ppl.numpyro import RBM, SAMLE

    lr = 0.05
    data = jnp.asarray(batches(x, n, args.seed))
    params0 = tuple(jnp.asarray(p) for p in rbm_init(args.seed))
    key0 = jax.random.PRNGKey(args.seed)

    def core_body(carry, inp):
        params, chains = carry
        v, key = inp
        w, b, c = params
        if persistent:
            vm, _ = rbm.gibbs_sweep(key, w, b, c, chains)
            _, grads = rbm.contrast(w, b, c, v, vm, 1.0 / BATCH, 1.0 / CHAINS)
            chains = vm
        else:
            logits = rbm.hidden_logits(w, c, v)
            vm, _ = rbm.gibbs_sweep(key, w, b, c, v, logits=logits)
            _, grads = rbm.contrast(w, b, c, v, vm, 1.0 / BATCH, 1.0 / BATCH, data_logits=logits)
        return tuple(p - lr * g for p, g in zip(params, grads)), chains

    chains0 = ops.bernoulli(key0, jnp.full((CHAINS, D), 0.5, jnp.float32))
    keys = jax.random.split(key0, n)
    core = _scan_impl("core.scan", core_body, (params0, chains0), (data, keys), n)
    if core_only:
        return [core]

    def model(batch):
        w = numpyro.param("W", params0[0])
        b = numpyro.param("b", params0[1])
        c = numpyro.param("c", params0[2])
        with numpyro.plate("data", batch.shape[0]):
            numpyro.sample("v", RBM(w, b, c), obs=batch)

    svi = SAMLE(
        model,
        optax.sgd(lr),
        num_gibbs_steps=1,
        persistent=persistent,
        num_chains=CHAINS if persistent else None,
    )
    return _jax_trainer(svi, data, n, key0) + [core]


def _jax_trainer(svi, data, n: int, key0) -> list[Impl]:
    """``numpyro.SAMLE``: the epoch scan that ``SAMLE.run`` runs per epoch, and ``update``."""
    import jax
    import jax.numpy as jnp

    flat = data.reshape(-1, data.shape[-1])
    idx = jnp.arange(n * BATCH).reshape(n, BATCH)
    st = {"s": svi.init(key0, data[0])}
    epoch = svi._epoch_fn(n, BATCH, (), {})  # the compiled scan of SAMLE.run
    compiled = svi._epoch_fns[(n, BATCH)].lower(st["s"], flat, idx, (), {}).compile()
    st["s"] = jax.block_until_ready(epoch(st["s"], flat, idx))

    def run_epoch():
        st["s"] = jax.block_until_ready(epoch(st["s"], flat, idx))

    up = {"s": jax.block_until_ready(svi.update(st["s"], data[0])[0])}

    def run_updates():
        s = up["s"]
        for i in range(n):
            s, _ = svi.update(s, data[i])
        up["s"] = jax.block_until_ready(s)

    run_epoch()
    run_updates()
    return [
        Impl(
            "numpyro.SAMLE.run", timed(run_epoch, n), compiled=compiled, iters=n, note="epoch scan"
        ),
        Impl("numpyro.SAMLE.update", timed(run_updates, n)),
    ]


def jax_ais(n: int, args, core_only: bool) -> list[Impl]:
    import jax
    import jax.numpy as jnp

    import ebm_ppl.numpyro as fe
    from ebm_ppl import ops
    from ebm_ppl.inference.ais import linear_schedule
    from ebm_ppl.models import rbm

    w, b, c, a0 = (jnp.asarray(p) for p in ais_model(args.seed))
    key0 = jax.random.PRNGKey(args.seed)
    betas = np.linspace(0.0, 1.0, n + 1)
    bp = jnp.asarray(betas[:-1], jnp.float32)
    bb = jnp.asarray(betas[1:], jnp.float32)

    def body(carry, inp):
        v, acc = carry
        key, beta_prev, beta = inp
        v, delta = rbm.ais_step(key, w, b, c, a0, v, beta_prev, beta)
        return v, acc + delta

    v0 = ops.bernoulli(key0, jnp.broadcast_to(jax.nn.sigmoid(a0), (RUNS, D)))
    acc0 = jnp.zeros(RUNS, jnp.float32)
    core = _scan_impl("core.scan", body, (v0, acc0), (jax.random.split(key0, n), bp, bb), n)
    if core_only:
        return [core]
    model = fe.RBM(w, b, c)
    base = fe.BernoulliBase(a0)
    sched = linear_schedule(args.ais_betas)
    steps = args.ais_betas - 1

    def public():
        fe.AIS(model, base=base, betas=sched, num_runs=RUNS, rng_key=key0, progress_bar=False)

    public()
    note = f"{args.ais_betas} linear betas; seconds / {steps} steps"
    return [Impl("numpyro.AIS", timed(public, steps), note=note), core]


def jax_gibbs(n: int, args, core_only: bool) -> list[Impl]:
    import jax
    import jax.numpy as jnp
    import numpyro
    from numpyro.infer import MCMC

    import ebm_ppl.numpyro as fe
    from ebm_ppl import ops
    from ebm_ppl.models import rbm

    w, b, c, a0 = (jnp.asarray(p) for p in ais_model(args.seed))
    key0 = jax.random.PRNGKey(args.seed)

    def body(v, key):
        return rbm.gibbs_sweep(key, w, b, c, v)[0]

    v0 = ops.bernoulli(key0, jnp.broadcast_to(jax.nn.sigmoid(a0), (RUNS, D)))
    core = _scan_impl("core.scan", body, v0, jax.random.split(key0, n), n)
    if core_only:
        return [core]
    site = fe.RBM(w, b, c)

    def model():
        with numpyro.plate("chains", RUNS):
            numpyro.sample("v", site)

    def run(k: int) -> None:
        mcmc = MCMC(fe.BlockGibbs(model), num_warmup=0, num_samples=k, progress_bar=False)
        mcmc.run(key0)
        jax.block_until_ready(mcmc.get_samples())

    run(GIBBS_LO + n)
    note = (
        f"(t({GIBBS_LO + n} samples) - t({GIBBS_LO})) / {n}: set-up and compilation excluded, "
        "storing included"
    )
    public = Impl(
        "numpyro MCMC(BlockGibbs)",
        difference(lambda: run(GIBBS_LO + n), lambda: run(GIBBS_LO), n, 1),
        note=note,
    )
    return [public, core]


def jax_dbm_sa(x: np.ndarray, n: int, args, core_only: bool) -> list[Impl]:
    import jax
    import jax.numpy as jnp
    import numpyro
    import optax

    from ebm_ppl.models import dbm
    from ebm_ppl.numpyro import DBM, SAMLE

    data = jnp.asarray(batches(x, n, args.seed))
    ws, bs = dbm_init(args.seed)
    ws, bs = [jnp.asarray(a) for a in ws], [jnp.asarray(a) for a in bs]
    K, G, lr = args.mf_iters, args.gibbs, 1e-3
    key0 = jax.random.PRNGKey(args.seed)
    init = DBM(ws, bs)
    chains0 = init.split(init.init_chain(key0, (CHAINS, sum(DBM_SIZES))))

    def body(carry, inp):
        params, chains = carry
        v, key = inp
        p = dbm.DBMParams(tuple(params[: len(ws)]), tuple(params[len(ws) :]))
        fp = dbm.frozen(p)
        mus = dbm.mean_field(fp, v, K)
        layers = chains
        for k in jax.random.split(key, G):
            layers = dbm.gibbs_sweep(k, fp, layers)

        def loss(prm):
            q = dbm.DBMParams(tuple(prm[: len(ws)]), tuple(prm[len(ws) :]))
            return dbm.mean_field_contrast(q, mus, layers, 1.0 / BATCH, 1.0 / CHAINS)

        grads = jax.grad(loss)(params)
        return [q - lr * g for q, g in zip(params, grads)], layers

    keys = jax.random.split(key0, n)
    core = _scan_impl("core.scan", body, (ws + bs, chains0), (data, keys), n)
    if core_only:
        return [core]

    def model(batch):
        w = [numpyro.param(f"W{i}", a) for i, a in enumerate(ws)]
        b = [numpyro.param(f"b{i}", a) for i, a in enumerate(bs)]
        with numpyro.plate("data", batch.shape[0]):
            numpyro.sample("v", DBM(w, b).visible(num_iters=K, tol=None), obs=batch)

    svi = SAMLE(model, optax.sgd(lr), num_gibbs_steps=G, num_chains=CHAINS)
    return _jax_trainer(svi, data, n, key0) + [core]


def jax_dbm_mf(x: np.ndarray, calls: int, args) -> list[Impl]:
    import jax
    import jax.numpy as jnp

    from ebm_ppl.models import dbm
    from ebm_ppl.numpyro import DBM

    v = jnp.asarray(batches(x, 1, args.seed)[0])
    ws, bs = dbm_init(args.seed)
    model = DBM([jnp.asarray(a) for a in ws], [jnp.asarray(a) for a in bs])
    lo, hi = args.mf_lo, args.mf_hi
    out = []
    for api, fn in (
        ("numpyro.DBM.mean_field", lambda d, v, k: d.mean_field(v, num_iters=k)),
        ("core.jit", lambda d, v, k: dbm.mean_field(d.dbm_params, v, k)),
    ):
        f = {k: jax.jit(lambda d, v, fn=fn, k=k: fn(d, v, k)) for k in (lo, hi)}
        compiled = f[hi].lower(model, v).compile()
        for k in (lo, hi):
            jax.block_until_ready(f[k](model, v))

        def call(k, f=f):
            jax.block_until_ready(f[k](model, v))

        run = difference(lambda c=call: c(hi), lambda c=call: c(lo), hi - lo, calls)
        out.append(
            Impl(api, run, compiled=compiled, iters=hi, note=f"(t({hi}) - t({lo})) / {hi - lo}")
        )
    return out


# --------------------------------------------------------------------------------------
# breakdowns
# --------------------------------------------------------------------------------------

TORCH_CATEGORIES = (
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::dot")),
    ("rng", ("aten::uniform_", "aten::rand", "aten::bernoulli", "aten::random_", "aten::normal_")),
    (
        "transcendental",
        ("aten::sigmoid", "aten::softplus", "aten::exp", "aten::log", "aten::log1p", "aten::tanh"),
    ),
    (
        "compare/cast",
        (
            "aten::lt",
            "aten::gt",
            "aten::le",
            "aten::ge",
            "aten::to",
            "aten::_to_copy",
            "aten::where",
        ),
    ),
    (
        "arithmetic",
        (
            "aten::add",
            "aten::sub",
            "aten::mul",
            "aten::div",
            "aten::neg",
            "aten::rsub",
            "aten::pow",
            "aten::abs",
        ),
    ),
    ("reduction", ("aten::sum", "aten::mean", "aten::max", "aten::amax", "aten::min")),
    ("copy/cat", ("aten::copy_", "aten::cat", "aten::clone", "aten::contiguous", "aten::index")),
    (
        "alloc/view",
        (
            "aten::empty",
            "aten::zeros",
            "aten::full",
            "aten::fill_",
            "aten::zero_",
            "aten::ones_like",
            "aten::view",
            "aten::reshape",
            "aten::t",
            "aten::transpose",
            "aten::expand",
            "aten::slice",
            "aten::select",
            "aten::as_strided",
            "aten::detach",
            "aten::alias",
            "aten::unsqueeze",
            "aten::squeeze",
            "aten::permute",
            "aten::_unsafe_view",
            "aten::split",
            "aten::narrow",
            "aten::broadcast",
            "aten::resolve",
            "aten::lift",
            "aten::result_type",
        ),
    ),
)


def torch_category(name: str) -> str:
    for cat, prefixes in TORCH_CATEGORIES:
        for pre in prefixes:
            if name == pre or name.startswith(pre + "_") or name.startswith(pre + "."):
                return cat
    return "other"


def torch_profile(step: Callable[[], Any], iters: int, ms: float) -> dict:
    """``torch.profiler`` over ``iters`` calls of ``step``: self CPU time per iteration by
    category (``op_self_ms``, inflated by the profiler), each category's share of the
    profiled wall time and that share of the unprofiled time ``ms`` (``attributed_ms``;
    ``outside_ops`` is Python, the PPL layer and the profiler itself), the matrix-product
    FLOPs executed (``with_flops``) and the ATen ops per iteration."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU]):  # the profiler's own start-up
        step()
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        t0 = time.perf_counter()
        for _ in range(iters):
            step()
        wall = time.perf_counter() - t0
    cats: Counter = Counter()
    ops: Counter = Counter()
    n_ops = 0
    mm_flops = 0
    for evt in prof.key_averages():
        name = evt.key
        if not name.startswith("aten::"):
            continue  # autograd / profiler wrappers: their children are counted
        cat = torch_category(name)
        cats[cat] += evt.self_cpu_time_total
        ops[name] += evt.self_cpu_time_total
        n_ops += evt.count
        if cat == "matmul":
            mm_flops += evt.flops or 0
    per = 1e-3 / iters  # us -> ms per iteration
    wall_us = 1e6 * wall
    shares = {k: v / wall_us for k, v in cats.most_common()}
    shares["outside_ops"] = max(0.0, 1.0 - sum(shares.values()))
    return {
        "profiled_ms": round(1e3 * wall / iters, 3),
        "op_self_ms": {k: round(v * per, 3) for k, v in cats.most_common()},
        "op_share": {k: round(v, 3) for k, v in shares.items()},
        "attributed_ms": {k: round(v * ms, 3) for k, v in shares.items()},
        "top_ops_ms": {k: round(v * per, 3) for k, v in ops.most_common(8)},
        "aten_ops_per_iter": round(n_ops / iters, 1),
        "matmul_gflop_executed": round(mm_flops / iters / 1e9, 4),
    }


_TRIVIAL = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast", "after-all"}
_HEADER = re.compile(r"^(ENTRY\s+)?%([\w.\-]+)\s.*->.*\{\s*$")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(\(.*?\)|\S+)\s+([\w\-]+)\((.*?)\)(.*)$")
_TRIP = re.compile(r'"known_trip_count":\{"n":"(\d+)"')


def _dims(shape: str) -> list[int]:
    m = re.match(r"\w+\[([\d,]*)\]", shape)
    return [int(d) for d in m.group(1).split(",") if d] if m else []


def hlo_stats(text: str, iters: int) -> dict:
    """Dots, their FLOPs and kernels executed per iteration by a compiled module whose
    entry runs ``iters`` iterations (while-loop bodies weighted by their known trip
    counts; fusion bodies are one kernel each)."""
    comps: dict[str, list] = {}
    entry, cur = None, None
    for line in text.splitlines():
        h = _HEADER.match(line)
        if h:
            cur = h.group(2)
            comps[cur] = []
            if h.group(1):
                entry = cur
            continue
        m = _INSTR.match(line)
        if m and cur is not None:
            comps[cur].append(m.groups())
    stats: Counter = Counter()

    def walk(comp: str, mult: float, kernels: bool) -> None:
        shapes = {name: shape for name, shape, *_ in comps.get(comp, [])}
        for _name, shape, op, operands, rest in comps.get(comp, []):
            if op == "dot":
                lhs = shapes.get(operands.split(",")[0].strip().lstrip("%"), "")
                cd = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", rest)
                k = 1
                for i in (int(s) for s in cd.group(1).split(",") if s) if cd else ():
                    k *= _dims(lhs)[i] if i < len(_dims(lhs)) else 1
                out = 1
                for d in _dims(shape):
                    out *= d
                stats["dots"] += mult
                stats["dot_flops"] += mult * 2 * out * k
            if op == "while":
                trip = _TRIP.search(rest)
                n = int(trip.group(1)) if trip else 1
                if not trip:
                    stats["whiles_unknown_trip"] += mult
                if "threefry" in rest:
                    stats["threefry_loops"] += mult
                body = re.search(r"body=%([\w.\-]+)", rest)
                if body:
                    walk(body.group(1), mult * n, kernels)
                continue
            if op == "fusion":
                if kernels:
                    stats["kernels"] += mult
                called = re.search(r"calls=%([\w.\-]+)", rest)
                if called:
                    walk(called.group(1), mult, False)
                continue
            if op in ("call", "async-start"):
                called = re.search(r"(?:to_apply|calls)=%([\w.\-]+)", rest)
                if called:
                    walk(called.group(1), mult, kernels)
                continue
            if op == "conditional":
                for br in re.findall(r"%([\w.\-]+)", rest.split("branch_computations=")[-1]):
                    if br in comps:
                        walk(br, mult, kernels)
                continue
            if kernels and op not in _TRIVIAL:
                stats["kernels"] += mult

    if entry is not None:
        walk(entry, 1.0, True)
    return {
        "hlo_dots_per_iter": round(stats["dots"] / iters, 2),
        "hlo_matmul_gflop_per_iter": round(stats["dot_flops"] / iters / 1e9, 4),
        "hlo_kernels_per_iter": round(stats["kernels"] / iters, 1),
        "hlo_threefry_loops_per_iter": round(stats["threefry_loops"] / iters, 2),
        "hlo_whiles_unknown_trip": int(stats["whiles_unknown_trip"]),
    }


def loop_uniforms(loop: str, args) -> list[tuple[int, ...]]:
    """Shapes of the uniforms one iteration draws."""
    if loop in ("rbm_cd1", "rbm_pcd1"):
        n = CHAINS if loop == "rbm_pcd1" else BATCH
        return [(n, F), (n, D)]
    if loop in ("ais", "gibbs"):
        return [(RUNS, F), (RUNS, D)]
    if loop == "dbm_sa":
        return [(CHAINS, s) for s in DBM_SIZES] * args.gibbs
    return []


def rng_standalone(backend: str, shapes: list[tuple[int, ...]], reps: int) -> float | None:
    """Seconds to draw the uniforms of ``shapes`` on their own (``ebm_ppl.ops.uniform``)."""
    if not shapes:
        return None
    from ebm_ppl import ops

    if backend == "torch":
        import torch

        like = torch.zeros((), device=TORCH_DEVICE)
        for s in shapes:
            ops.uniform(None, s, like)
        _sync()
        t0 = time.perf_counter()
        for _ in range(reps):
            for s in shapes:
                ops.uniform(None, s, like)
        _sync()
        return (time.perf_counter() - t0) / reps
    import jax
    import jax.numpy as jnp

    like = jnp.zeros((), jnp.float32)

    @jax.jit
    def draw(key):
        def body(acc, k):
            ks = jax.random.split(k, len(shapes))
            return acc + sum(ops.uniform(kk, s, like).sum() for kk, s in zip(ks, shapes)), None

        return jax.lax.scan(body, jnp.zeros((), jnp.float32), jax.random.split(key, reps))[0]

    key = jax.random.PRNGKey(0)
    jax.block_until_ready(draw(key))
    t0 = time.perf_counter()
    jax.block_until_ready(draw(key))
    return (time.perf_counter() - t0) / reps


class NoRNG:
    """Context manager: ``ebm_ppl.ops.uniform`` returns 0.5 everywhere (no random bits are
    drawn; the buffer is still allocated and written, as torch's in-place Bernoulli needs)."""

    def __enter__(self):
        from ebm_ppl import ops

        self.ops, self.orig = ops, ops.uniform

        def const(key, shape, like):
            if ops.is_torch(like):
                import torch

                return torch.full(tuple(shape), 0.5, dtype=like.dtype, device=like.device)
            import jax.numpy as jnp

            return jnp.full(tuple(shape), 0.5, like.dtype)

        ops.uniform = const
        return self

    def __exit__(self, *exc):
        self.ops.uniform = self.orig
        return False


# --------------------------------------------------------------------------------------
# measuring a loop
# --------------------------------------------------------------------------------------


def interleave(peer: Callable[[], float], impls: list[Impl], repeats: int) -> tuple:
    """``repeats`` rounds of peer, impl_1, ..., impl_n; returns the per-round floors, the
    per-round times of each implementation and the other processes' CPU share."""
    floors: list[float] = []
    times: dict[str, list[float]] = {im.api: [] for im in impls}
    mon = CpuMonitor()
    for _ in range(repeats):
        floors.append(peer())
        for im in impls:
            times[im.api].append(im.run())
    return floors, times, mon.other_share()


def measure_loop(loop: str, backend: str, x: np.ndarray, args, emit, by_loop: dict) -> None:
    gemms = loop_gemms(loop, args)
    flops = sum(g.flops for g in gemms)
    calls = 20 if loop in ("rbm_cd1", "rbm_pcd1", "ais") else 5
    calls = max(3, calls // 2) if args.quick else calls
    peer = (torch_peer if backend == "torch" else jax_peer)(gemms, calls)
    t0 = time.perf_counter()
    impls = (torch_impls if backend == "torch" else jax_impls)(loop, x, args)
    setup_s = time.perf_counter() - t0
    for attempt in range(1 + args.retries):
        settle(args.wait_idle)
        floors, times, other = interleave(peer, impls, args.repeats)
        busy = other is not None and 100 * other > args.busy_pct
        if not busy:
            break
        print(
            f"# {loop} {backend}: other processes took {100 * other:.0f}% of the CPU; "
            + ("measuring again" if attempt < args.retries else "keeping it (retries spent)"),
            file=sys.stderr,
            flush=True,
        )
    floor_s = statistics.median(floors)
    rate = flops / floor_s / 1e9
    common = {
        "loop": loop,
        "backend": backend,
        "gemms": [g.label for g in gemms],
        "matmul_gflop": round(flops / 1e9, 4),
        "matmul_gflop_per_s": round(rate, 1),
        "floor_ms": round(1e3 * floor_s, 3),
        "floor_ms_all": [round(1e3 * f, 3) for f in floors],
        "floor_ms_at_200": round(1e3 * flops / (NOMINAL_GFLOPS * 1e9), 3),
        "other_cpu_pct": None if other is None else round(100 * other, 1),
        "attempts": attempt + 1,
    }
    by_loop.setdefault(loop, {})[backend] = common["floor_ms"]
    mkl = by_loop[loop].get("torch") if backend == "jax" else None
    results = {}
    for im in impls:
        secs = times[im.api]
        ms = 1e3 * statistics.median(secs)
        ratio = statistics.median(s / f for s, f in zip(secs, floors))
        results[im.api] = ms
        emit(
            {
                **common,
                "kind": "time",
                "api": im.api,
                "ms": round(ms, 3),
                "ms_all": [round(1e3 * s, 3) for s in secs],
                "ratio_to_floor": round(ratio, 3),
                "ratio_to_floor_200": round(ms / common["floor_ms_at_200"], 3),
                "within_target": ratio <= TARGET_RATIO,
                "ratio_to_torch_floor": None if mkl is None else round(ms / mkl, 3),
                "repeats": len(secs),
                "note": im.note,
                "setup_s": round(setup_s, 1),
                "settings": settings(loop, args),
            }
        )
    if args.no_breakdown or (backend == "torch" and torch_device_type() != "cpu"):
        return  # the breakdown profiles the CPU side only
    breakdown(loop, backend, x, impls, results, common, args, emit)


def torch_device_type() -> str:
    import torch

    return torch.device(TORCH_DEVICE).type


def settings(loop: str, args) -> dict:
    out: dict[str, Any] = {"seed": args.seed}
    if loop.startswith("rbm"):
        out.update(sizes=[D, F], batch=BATCH, lr=0.05)
        if loop == "rbm_pcd1":
            out["chains"] = CHAINS
    elif loop == "ais":
        out.update(sizes=[D, F], runs=RUNS, public_betas=args.ais_betas)
    elif loop == "gibbs":
        out.update(sizes=[D, F], chains=RUNS, gibbs_lo=GIBBS_LO)
    elif loop == "dbm_sa":
        out.update(sizes=list(DBM_SIZES), batch=BATCH, chains=CHAINS, mf_iters=args.mf_iters)
        out.update(gibbs=args.gibbs, lr=1e-3, tol=None)
    else:
        out.update(sizes=list(DBM_SIZES), batch=BATCH, mf_lo=args.mf_lo, mf_hi=args.mf_hi)
    return out


def breakdown(loop, backend, x, impls, results, common, args, emit) -> None:
    """Where the time beyond the floor goes, for each implementation that can be profiled."""
    shapes = loop_uniforms(loop, args)
    reps = 20 if loop != "dbm_sa" else 5
    settle(args.wait_idle)
    mon = CpuMonitor()
    rng_alone = rng_standalone(backend, shapes, reps)
    # in-context RNG cost: the core loop again without random bits, interleaved with the
    # normal one (torch patches at call time, JAX at tracing time: both run under NoRNG)
    rng_ctx = None
    core = next(im for im in impls if im.api.startswith("core"))
    if shapes:
        with NoRNG():
            norng = (torch_impls if backend == "torch" else jax_impls)(loop, x, args, True)
        core_norng = next(im for im in norng if im.api == core.api)
        pairs = []
        for _ in range(args.repeats):
            t_full = core.run()
            with NoRNG():
                pairs.append((t_full, core_norng.run()))
        t_full = statistics.median(a for a, _ in pairs)
        t_norng = statistics.median(b for _, b in pairs)
        rng_ctx = 1e3 * statistics.median(a - b for a, b in pairs)
    other = mon.other_share()
    floor_ms = common["floor_ms"]
    for im in impls:
        rec = {
            "loop": loop,
            "backend": backend,
            "kind": "breakdown",
            "api": im.api,
            "ms": round(results[im.api], 3),
            "floor_ms": floor_ms,
            "gap_ms": round(results[im.api] - floor_ms, 3),
            "rng_standalone_ms": None if rng_alone is None else round(1e3 * rng_alone, 3),
            "uniforms_per_iter": sum(int(np.prod(s)) for s in shapes),
        }
        if im.api == core.api and rng_ctx is not None:
            rec["rng_ms"] = round(rng_ctx, 3)
            rec["ablation_ms_with_rng"] = round(1e3 * t_full, 3)
            rec["ablation_ms_without_rng"] = round(1e3 * t_norng, 3)
            rec["ratio_without_rng_to_with"] = round(t_norng / t_full, 3)
        if backend == "torch" and im.step is not None:
            iters = {"dbm_sa": 4, "dbm_mf": 2}.get(loop, 20)
            per_call = results[im.api] * (args.mf_hi if loop == "dbm_mf" else 1)
            prof = torch_profile(im.step, iters, per_call)
            if loop == "dbm_mf":  # the profiled step is one call of mf_hi iterations
                prof["note"] = f"per call of {args.mf_hi} iterations (incl. the bottom-up pass)"
            rec.update(prof)
        if backend == "jax" and im.compiled is not None:
            rec.update(hlo_stats(im.compiled.as_text(), im.iters))
            if loop == "dbm_mf":
                rec["note"] = f"HLO per iteration of a call of {args.mf_hi} (bottom-up included)"
        rec["other_cpu_pct"] = None if other is None else round(100 * other, 1)
        emit(rec)


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    global TORCH_DEVICE
    args = parse_args(argv)
    TORCH_DEVICE = args.device
    t_start = time.perf_counter()
    identical = None
    if args.jax_threefry == "unrolled" and "jax" in args.backends:
        identical = use_unrolled_threefry()
    x, source = load_data(args)
    threads = {}
    if "torch" in args.backends:
        threads["torch"] = torch_threads()
    if "jax" in args.backends:
        threads["jax"] = jax_threads()
    records: list[dict] = []

    def emit(rec: dict) -> None:
        rec["data"] = source
        if rec["backend"] == "jax":
            rec["jax_threefry"] = args.jax_threefry
            if identical is not None:
                rec["threefry_bits_identical"] = identical
        rec["threads"] = threads[rec["backend"]]
        rec["device"] = device_name(rec["backend"])
        records.append(rec)
        print(json.dumps(rec), flush=True)

    print(
        f"# profile_hot_loops: {source} data, python {platform.python_version()}, "
        f"{os.cpu_count()} cpus, repeats={args.repeats}, loops={','.join(args.loops)}, "
        f"jax threefry {args.jax_threefry}",
        file=sys.stderr,
        flush=True,
    )
    floors_by_loop: dict = {}
    for loop in args.loops:
        for backend in args.backends:
            measure_loop(loop, backend, x, args, emit, floors_by_loop)

    wall = time.perf_counter() - t_start
    print(
        f"# {'loop':9} {'backend':7} {'api':22} {'ms':>8} {'floor':>7} {'GF/s':>5} "
        f"{'ratio':>6} {'@200':>6} {'xMKL':>6} other% target",
        file=sys.stderr,
    )
    for r in records:
        if r["kind"] != "time":
            continue
        other = "-" if r["other_cpu_pct"] is None else f"{r['other_cpu_pct']:.0f}"
        print(
            f"# {r['loop']:9} {r['backend']:7} {r['api']:22} {r['ms']:8.3f} {r['floor_ms']:7.3f} "
            f"{r['matmul_gflop_per_s']:5.0f} {r['ratio_to_floor']:6.2f} "
            f"{r['ratio_to_floor_200']:6.2f} {_fmt(r['ratio_to_torch_floor'])} {other:>6} "
            f"{'ok' if r['within_target'] else 'MISS'}",
            file=sys.stderr,
        )
    rows = [r for r in records if r["kind"] == "breakdown"]
    if rows:
        print(
            f"# {'loop':9} {'backend':7} {'api':22} {'gap ms':>7} {'rng':>6} {'rng1':>6} "
            f"{'mm-ex':>6} {'mm-ms':>6} {'ops':>6} {'kern':>6}",
            file=sys.stderr,
        )
        for r in rows:
            rng = r.get("rng_ms")
            mm = r.get("matmul_gflop_executed", r.get("hlo_matmul_gflop_per_iter"))
            ops_ = r.get("aten_ops_per_iter")
            kern = r.get("hlo_kernels_per_iter")
            mm_ms = r.get("attributed_ms", {}).get("matmul")
            print(
                f"# {r['loop']:9} {r['backend']:7} {r['api']:22} {r['gap_ms']:7.3f} "
                f"{_fmt(rng)} {_fmt(r['rng_standalone_ms'])} {_fmt(mm)} {_fmt(mm_ms)} "
                f"{_fmt(ops_)} {_fmt(kern)}",
                file=sys.stderr,
            )
        print(
            "# rng: in-context RNG ms (core only); rng1: the uniforms drawn alone; mm-ex: "
            "executed matmul GFLOP per iteration; mm-ms: torch matmul time (profiler share x ms); "
            "ops: ATen ops; kern: XLA kernels (dbm_mf torch: per call of --mf-hi iterations)",
            file=sys.stderr,
        )
    print(
        f"# ratio: to the same backend's matmul floor (interleaved); @200: to 200 GFLOP/s; xMKL: "
        f"JAX to the torch floor\n# target: ratio_to_floor <= {TARGET_RATIO}; "
        f"wall time {wall:.1f} s",
        file=sys.stderr,
    )
    return 0


def _fmt(v) -> str:
    return f"{v:6.3f}" if isinstance(v, float) else (f"{v:6}" if v is not None else "     -")


if __name__ == "__main__":
    sys.exit(main())
