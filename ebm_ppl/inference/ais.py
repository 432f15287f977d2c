"""Annealed importance sampling (Neal 2001; Salakhutdinov & Murray 2008), for both backends.

AIS estimates the partition function of a target energy model by annealing from a tractable
base along ``f_beta`` (``beta = 0`` the base, ``beta = 1`` the target): runs start with exact
base samples, each step adds ``log f_beta_k(v) - log f_beta_(k-1)(v)`` to the run's
log-weight and moves ``v`` by a transition that leaves ``f_beta_k`` invariant. Then
``Z_target / Z_0 = E[w]``, so ``log Z = log Z_0 + log mean(w)``: unbiased in ``Z``, a
stochastic lower bound in ``log Z`` (Jensen). **Reverse AIS** starts from samples of the
target and anneals to the base; ``E[w_rev] = Z_0 / Z_target`` gives an estimate that tends
to lie above ``log Z``, so the two bracket it.

The target supplies the path, the contract
:class:`~ebm_ppl.models.protocols.AnnealingPath`: ``ais_base(base)`` (its default base, or
the user's checked), ``ais_log_z0(base)``, ``ais_step(key, v, beta_prev, beta, base) -> (v,
increment)`` and ``ais_log_f(v, beta, base)``; RAISE needs
:class:`~ebm_ppl.models.protocols.RaisePath` too. The RBM family implements them (binary,
Gaussian, ...) and later models plug in the same way; a target that lacks a member is
refused with a ``TypeError`` naming it. All runs advance as one batch: a Python loop over the
schedule in torch, chunks of ``lax.scan`` in JAX; log-weights are summed per chunk and
accumulated in float64.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from ebm_ppl import ops
from ebm_ppl.models.protocols import (
    AnnealingPath,
    CarriesAISState,
    RaisePath,
    check_value,
    require,
)
from ebm_ppl.ops import Array, Key

__all__ = [
    "AISResult",
    "LogLikelihood",
    "linear_schedule",
    "geometric_schedule",
    "salakhutdinov_murray_schedule",
    "check_schedule",
    "run_ais",
    "evaluate",
    "Routes",
    "compare_routes",
    "RAISEResult",
    "run_raise",
]


# --------------------------------------------------------------------------------------
# schedules
# --------------------------------------------------------------------------------------


def linear_schedule(num: int) -> np.ndarray:
    """``num`` inverse temperatures evenly spaced from 0 to 1 (both included)."""
    if not isinstance(num, int) or num < 2:
        raise ValueError(f"num must be an int >= 2, got {num!r}")
    return np.linspace(0.0, 1.0, num)


def geometric_schedule(num: int, start: float = 1e-4) -> np.ndarray:
    """0, then ``num - 1`` geometrically spaced values from ``start`` to 1."""
    if not isinstance(num, int) or num < 3:
        raise ValueError(f"num must be an int >= 3, got {num!r}")
    if not 0.0 < start < 1.0:
        raise ValueError(f"start must be in (0, 1), got {start}")
    return np.concatenate([[0.0], np.geomspace(start, 1.0, num - 1)])


def salakhutdinov_murray_schedule() -> np.ndarray:
    """The schedule of Salakhutdinov & Murray (2008): steps of 1e-3 from 0 to 0.5, 1e-4 from
    0.5 to 0.9 and 1e-5 from 0.9 to 1; 14,501 values (14,500 transitions)."""
    return np.concatenate(
        [
            np.linspace(0.0, 0.5, 500, endpoint=False),
            np.linspace(0.5, 0.9, 4000, endpoint=False),
            np.linspace(0.9, 1.0, 10000, endpoint=False),
            [1.0],
        ]
    )


def check_schedule(betas: Any) -> np.ndarray:
    """``betas`` as float64 numpy; ``ValueError`` unless strictly increasing from 0 to 1."""
    try:
        b = np.asarray(
            ops.to_numpy(betas) if not isinstance(betas, (list, tuple)) else betas, dtype=np.float64
        )
    except (TypeError, ValueError):
        raise ValueError("betas must be a 1-D array of numbers") from None
    if b.ndim != 1 or b.size < 2:
        raise ValueError(f"betas must be a 1-D array of at least 2 values, got shape {b.shape}")
    if not np.isfinite(b).all():
        raise ValueError("betas contains NaN or infinite values")
    if b[0] != 0.0 or b[-1] != 1.0:
        raise ValueError(f"betas must run from 0 to 1, got {b[0]} ... {b[-1]}")
    if not (np.diff(b) > 0).all():
        raise ValueError("betas must be strictly increasing")
    return b


# --------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------


@dataclass
class AISResult:
    """An AIS estimate of ``log Z`` of ``target``.

    - **log_z**: the estimate; **log_z_stderr**: its standard error (delta method,
      ``sd(w) / (sqrt(n) mean(w))``); **log_z_interval**: ``log(Z_hat -/+ 3 sd_hat)`` as in
      Salakhutdinov & Murray (2008) (the lower end is ``-inf`` when ``3 sd`` exceeds ``Z_hat``).
    - **log_weights** ``(num_runs,)`` and their effective sample size **ess**.
    - **log_z0**: ``log Z`` of the ``beta = 0`` end; **direction**: ``"forward"`` or
      ``"reverse"``; **reverse**: the reverse-AIS result when it was run.
    """

    log_z: float
    log_z_stderr: float
    log_z_interval: tuple[float, float]
    log_weights: np.ndarray
    ess: float
    log_z0: float
    direction: str
    num_betas: int
    reverse: AISResult | None = None
    target: AnnealingPath | None = field(default=None, repr=False)

    def log_prob(self, value: Any) -> Any:
        """Normalised log-probability ``log p~(v) - log Z_hat`` under the target."""
        return self.target.log_prob(value) - self.log_z

    @property
    def bracket(self) -> tuple[float, float] | None:
        """``(forward log Z, reverse log Z)`` when reverse AIS was run."""
        if self.reverse is None:
            return None
        return (self.log_z, self.reverse.log_z)


@dataclass
class LogLikelihood:
    """Average log-likelihood of a data set with its standard error (data sampling error and
    the AIS error of ``log Z`` combined)."""

    mean: float
    stderr: float
    log_z: float
    log_z_stderr: float
    num_data: int

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.stderr:.3f} nats (n={self.num_data})"


def _as_state(target: AnnealingPath, base: Any, x: Array, name: str) -> Array:
    """Samples of the target (full states) as the path's AIS state, checked."""
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (runs, n_units), got {tuple(x.shape)}")
    if isinstance(target, CarriesAISState):  # e.g. a DBM: full states -> the carried layers
        return target.ais_state(x, base)
    check_value(target, x, name)
    return x


def estimate(
    log_w: np.ndarray,
    log_z0: float,
    direction: str,
    num_betas: int,
    log_z0_stderr: float = 0.0,
) -> AISResult:
    """Turn per-run log-weights into an :class:`AISResult`; ``log_z0_stderr`` (the standard
    error of an estimated ``log Z`` at ``beta = 0``) is added in quadrature to the result's
    and widens its interval by three of it."""
    log_w = np.asarray(log_w, dtype=np.float64)
    if not np.isfinite(log_w).all():
        raise FloatingPointError("AIS log-weights are not finite")
    n = log_w.size
    m = float(log_w.max())
    r = np.exp(log_w - m)
    mean = float(r.mean())
    sd = float(r.std(ddof=1)) / math.sqrt(n) if n > 1 else float("inf")
    rel = sd / mean
    log_mean = m + math.log(mean)
    lo = m + math.log(mean - 3 * sd) if mean - 3 * sd > 0 else -math.inf
    hi = m + math.log(mean + 3 * sd)
    if direction == "forward":
        log_z = log_z0 + log_mean
        interval = (log_z0 + lo, log_z0 + hi)
    else:
        log_z = log_z0 - log_mean
        interval = (log_z0 - hi, log_z0 - lo)
    ess = float(r.sum() ** 2 / (r**2).sum())
    if log_z0_stderr:
        interval = (interval[0] - 3 * log_z0_stderr, interval[1] + 3 * log_z0_stderr)
    return AISResult(
        log_z=log_z,
        log_z_stderr=math.hypot(rel, log_z0_stderr),
        log_z_interval=interval,
        log_weights=log_w,
        ess=ess,
        log_z0=log_z0,
        direction=direction,
        num_betas=num_betas,
    )


# --------------------------------------------------------------------------------------
# the annealing loop
# --------------------------------------------------------------------------------------

_JAX_CHUNKS: dict = {}


def _jax_chunk_fn():
    if "fn" not in _JAX_CHUNKS:
        # lazy: keeps this module free of jax until that backend is used
        import jax

        @jax.jit
        def chunk(target, base, key, v, beta_prev, beta):
            def body(carry, b):
                v, acc, key = carry
                key, sub = jax.random.split(key)
                v, delta = target.ais_step(sub, v, b[0], b[1], base)
                return (v, acc + delta, key), None

            acc = ops.zeros(v.shape[:-1], v)
            (v, acc, key), _ = jax.lax.scan(body, (v, acc, key), (beta_prev, beta))
            return v, acc, key

        _JAX_CHUNKS["fn"] = chunk
    return _JAX_CHUNKS["fn"]


def anneal(
    key: Key,
    target: AnnealingPath,
    base: Any,
    v0: Array,
    betas: np.ndarray,
    progress_bar: bool | None = None,
    desc: str = "AIS",
) -> tuple[np.ndarray, Any]:
    """Run the AIS chains from ``v0`` (shape ``(runs, D)``) along ``betas`` (any direction).

    Returns the float64 log-weights ``(runs,)`` and the final states. A tqdm bar over the
    schedule is shown when stderr is a terminal (or as ``progress_bar`` says).
    """

    pairs = np.stack([betas[:-1], betas[1:]], axis=1)
    num = len(pairs)
    chunk = max(1, math.ceil(num / 100))
    log_w = np.zeros(v0.shape[0], dtype=np.float64)
    v = v0
    disable = None if progress_bar is None else not progress_bar
    with tqdm(total=num, disable=disable, desc=desc, unit="β") as bar:
        if ops.is_torch(v0):
            # lazy: keeps this module free of torch until that backend is used
            import torch

            with torch.no_grad():
                for start in range(0, num, chunk):
                    acc = torch.zeros(v.shape[0], dtype=torch.float64, device=v.device)
                    for bp, b in pairs[start : start + chunk]:
                        v, delta = target.ais_step(key, v, float(bp), float(b), base)
                        acc += delta
                    log_w += acc.cpu().numpy()
                    bar.update(min(chunk, num - start))
        else:
            # lazy: keeps this module free of jax until that backend is used
            import jax.numpy as jnp

            fn = _jax_chunk_fn()
            for start in range(0, num, chunk):
                part = pairs[start : start + chunk]
                bp = jnp.asarray(part[:, 0], dtype=v.dtype)
                b = jnp.asarray(part[:, 1], dtype=v.dtype)
                v, acc, key = fn(target, base, key, v, bp, b)
                log_w += ops.to_numpy(acc).astype(np.float64)
                bar.update(len(part))
    return log_w, v


def run_ais(
    key: Key,
    target: AnnealingPath,
    base: Any,
    betas: Any,
    num_runs: int,
    reverse_samples: Any = None,
    progress_bar: bool | None = None,
    place: Any = None,
    gather: Any = None,
    start_samples: Any = None,
) -> AISResult:
    """Forward AIS from ``base`` to ``target`` with ``num_runs`` runs (and reverse AIS from
    ``reverse_samples`` when given); see :class:`AISResult`.

    ``base`` defaults to the uniform model, ``betas`` to :func:`salakhutdinov_murray_schedule`.

    ``key`` is a JAX key for JAX targets and ``None`` / a ``torch.Generator`` for torch.

    ``start_samples`` ``(num_runs, D)``: the runs' states at ``beta = 0`` instead of exact
    draws of the base, for paths that start at a model with no exact sampler (e.g. a
    :class:`~ebm_ppl.models.dbm.DBMPath` from another DBM; give long-run chain states).

    Scaling out: ``place(v)`` puts the runs' starting states where they should live (e.g.
    split over JAX devices; the annealing then stays sharded), and ``gather(log_w)`` turns
    this process's float64 log-weights into those of all runs everywhere (e.g. an
    all-gather over torch.distributed ranks, each of which annealed its own runs).
    """
    require(target, AnnealingPath, "the AIS target")
    if not isinstance(num_runs, int) or isinstance(num_runs, bool) or num_runs < 1:
        raise ValueError(f"num_runs must be a positive int, got {num_runs!r}")
    betas = salakhutdinov_murray_schedule() if betas is None else check_schedule(betas)
    base = target.ais_base(base)
    log_z0 = float(target.ais_log_z0(base))
    k_init, k_fwd, k_rev = ops.split(key, 3)
    if start_samples is None:
        v0 = base.sample(k_init, (num_runs,))
    else:
        v0 = _as_state(target, base, start_samples, "start_samples")
        if int(v0.shape[0]) != num_runs:
            raise ValueError(
                f"start_samples must have num_runs={num_runs} rows, got {int(v0.shape[0])}"
            )
    if place is not None:
        v0 = place(v0)
    log_w, _ = anneal(k_fwd, target, base, v0, betas, progress_bar, "AIS")
    if gather is not None:
        log_w = gather(log_w)
    log_z0_stderr = float(getattr(base, "log_z_start_stderr", 0.0))
    result = estimate(log_w, log_z0, "forward", len(betas), log_z0_stderr)
    result.target = target
    if reverse_samples is not None:
        x = _as_state(target, base, reverse_samples, "reverse_samples")
        if place is not None:
            x = place(x)
        log_w_r, _ = anneal(k_rev, target, base, x, betas[::-1].copy(), progress_bar, "reverse AIS")
        if gather is not None:
            log_w_r = gather(log_w_r)
        rev = estimate(log_w_r, log_z0, "reverse", len(betas), log_z0_stderr)
        rev.target = target
        result.reverse = rev
        gap = rev.log_z - result.log_z
        tol = 3 * math.hypot(result.log_z_stderr, rev.log_z_stderr)
        if abs(gap) > tol:
            warnings.warn(
                f"forward ({result.log_z:.3f} ± {result.log_z_stderr:.3f}) and reverse "
                f"({rev.log_z:.3f} ± {rev.log_z_stderr:.3f}) AIS estimates of log Z disagree "
                "by more than 3 standard errors: use more intermediate distributions or runs "
                "(or better reverse starting samples)",
                RuntimeWarning,
                stacklevel=3,
            )
    return result


def evaluate(target: AnnealingPath, data: Array, result: AISResult) -> LogLikelihood:
    """Average log-likelihood of ``data`` (``(n, D)``) under ``target`` with ``log Z`` from
    an AIS ``result``; the standard error combines the spread over data points and the AIS
    standard error of ``log Z``."""
    if data.ndim < 2:
        raise ValueError(f"data must have shape (n, n_visible), got {tuple(data.shape)}")
    return summarize(target.log_prob(data), result.log_z, result.log_z_stderr)


def summarize(values: Array, log_z: float, log_z_stderr: float = 0.0) -> LogLikelihood:
    """Average of per-data-point unnormalized log-probabilities (or Monte Carlo bounds)
    ``values`` minus ``log_z``; the standard error combines the spread of ``values`` over
    data points with ``log_z_stderr``."""
    lp = ops.to_numpy(values).astype(np.float64).reshape(-1)
    n = lp.size
    sd = float(lp.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    return LogLikelihood(
        mean=float(lp.mean()) - float(log_z),
        stderr=math.hypot(sd, float(log_z_stderr)),
        log_z=float(log_z),
        log_z_stderr=float(log_z_stderr),
        num_data=n,
    )


# --------------------------------------------------------------------------------------
# independent routes, and RAISE
# --------------------------------------------------------------------------------------


@dataclass
class Routes:
    """Estimates of the same ``log Z`` by independent routes (bases, paths, directions),
    side by side. Agreement of routes is the check that a biased estimate fails: one
    route's standard error and ESS can look healthy while it misses modes by nats.

    Forward AIS underestimates ``log Z`` when it misses mass and reverse AIS overestimates
    it when its start is off (chains not mixed, or a path that strays from the model), so
    every forward estimate is a lower end and every reverse estimate an upper end:

    - **estimates**: ``{name: (log_z, stderr, "forward" | "reverse")}``;
    - **lower**: the largest forward estimate; **upper**: the smallest reverse one (``None``
      without reverse runs);
    - **spread**: ``|upper - lower|`` (the tightest bracket), or, without reverse runs, the
      largest minus the smallest forward estimate; **agree**: ``spread <= tol``;
    - **log_z** / **log_z_stderr** / **best**: ``max(lower, upper)`` and its route, the
      conservative end for a likelihood (a larger ``log Z`` lowers it).
    """

    estimates: dict
    tol: float

    def _ends(self, kind: str) -> dict:
        return {k: v for k, v in self.estimates.items() if v[2] == kind}

    @property
    def lower(self) -> float:
        return max(v for v, _, _ in self._ends("forward").values())

    @property
    def upper(self) -> float | None:
        rev = self._ends("reverse")
        return min(v for v, _, _ in rev.values()) if rev else None

    @property
    def spread(self) -> float:
        if self.upper is not None:
            return abs(self.upper - self.lower)
        values = [v for v, _, _ in self._ends("forward").values()]
        return max(values) - min(values)

    @property
    def agree(self) -> bool:
        return self.spread <= self.tol

    @property
    def best(self) -> str:
        fwd, rev = self._ends("forward"), self._ends("reverse")
        low = max(fwd, key=lambda k: fwd[k][0])
        if not rev:
            return low
        high = min(rev, key=lambda k: rev[k][0])
        return high if rev[high][0] > fwd[low][0] else low

    @property
    def log_z(self) -> float:
        return self.estimates[self.best][0]

    @property
    def log_z_stderr(self) -> float:
        return self.estimates[self.best][1]

    def __str__(self) -> str:
        rows = [f"{k}: {v:.3f} ± {s:.3f}" for k, (v, s, _) in self.estimates.items()]
        verdict = "agree" if self.agree else "DISAGREE"
        what = "bracket" if self.upper is not None else "spread"
        return "; ".join(rows) + f" ({what} {self.spread:.3f} nats: {verdict} at {self.tol})"


def compare_routes(results: dict, tol: float = 0.5, warn: bool = True) -> Routes:
    """Put estimates of one ``log Z`` by different routes side by side (see :class:`Routes`):
    ``results`` maps a route's name to an :class:`AISResult` (its reverse estimate, when it
    has one, becomes the route ``name + " (reverse)"``) or to ``(log_z, stderr)`` (a
    forward estimate) or ``(log_z, stderr, "reverse")``. A ``RuntimeWarning`` (when
    ``warn``) says when the tightest bracket (or, without reverse runs, the forward
    estimates) spans more than ``tol`` nats."""
    if not isinstance(results, dict) or len(results) < 1:
        raise ValueError("results must be a non-empty dict {route name: AISResult}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
    estimates: dict = {}
    for name, r in results.items():
        if isinstance(r, AISResult):
            estimates[name] = (float(r.log_z), float(r.log_z_stderr), r.direction)
            if r.reverse is not None:
                rev = r.reverse
                estimates[f"{name} (reverse)"] = (
                    float(rev.log_z),
                    float(rev.log_z_stderr),
                    "reverse",
                )
            continue
        try:
            v, s, *kind = r
            kind = kind[0] if kind else "forward"
            if kind not in ("forward", "reverse") or len(r) > 3:
                raise ValueError
            estimates[name] = (float(v), float(s), kind)
        except (TypeError, ValueError):
            raise TypeError(
                f"results[{name!r}] must be an AISResult, (log_z, stderr) or "
                f"(log_z, stderr, 'reverse'), got {r!r}"
            ) from None
    if not any(k == "forward" for _, _, k in estimates.values()):
        raise ValueError("results must hold at least one forward estimate")
    routes = Routes(estimates, float(tol))
    if warn and not routes.agree:
        warnings.warn(
            f"independent routes to log Z disagree by {routes.spread:.2f} nats (> {tol}): "
            f"{routes}. At least one route is biased (forward AIS misses modes, reverse AIS "
            "starts from chains that have not mixed); anneal longer or from a better base",
            RuntimeWarning,
            stacklevel=2,
        )
    return routes


@dataclass
class RAISEResult:
    """RAISE estimates (Burda, Grosse & Salakhutdinov 2015) of ``log p(v)`` per data point.

    - **log_p** ``(n,)``: ``log mean_m w_m`` over ``num_samples`` reverse runs per point: a
      stochastic lower bound on ``log p_ann(v)``, the likelihood of the *annealing model*
      (the base followed by the AIS transitions), a proper distribution that tends to the
      target as the schedule gets finer. It does not depend on an estimate of ``log Z``.
    - **log_weights** ``(num_samples, n)``; **summary**: their mean as a
      :class:`LogLikelihood`; **num_betas**.
    """

    log_p: np.ndarray
    log_weights: np.ndarray
    summary: LogLikelihood
    num_betas: int


def run_raise(
    key: Key,
    target: RaisePath,
    data: Array,
    base: Any = None,
    betas: Any = None,
    num_samples: int = 1,
    progress_bar: bool | None = None,
) -> RAISEResult:
    """RAISE: reverse annealing from each data point to the base.

    The annealing model draws ``x_0`` from the base and applies the AIS transitions
    ``T_1, ..., T_K`` (``T_K`` at ``beta = 1``); its likelihood of ``v`` is estimated without
    bias by running the chain backwards from ``v``: start at ``x_K = (v, h ~ q(h | v))``
    (``q`` the mean-field posterior for DBMs; nothing for RBMs, whose state is ``v``), apply
    ``T_K, ..., T_1`` (each reversible) and weight by
    ``w = f_K(x_K) / q(h | v) * prod_k f_(k-1)(x_(k-1)) / f_k(x_(k-1)) / Z_0``.
    ``E[w] = p_ann(v)``, so ``log w`` underestimates ``log p_ann(v)`` on average.

    :param data: ``(n, D)`` data points (each gets ``num_samples`` runs; all run together).
    :param base: the base or path (``target.raise_base`` turns it into one that carries
        ``v``); ``betas``: the schedule (default :func:`salakhutdinov_murray_schedule`).
    """
    require(target, RaisePath, "the RAISE target")
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    if getattr(data, "ndim", 0) != 2 or int(data.shape[0]) == 0:
        raise ValueError(
            f"data must have shape (n, n_visible) with n > 0, got {getattr(data, 'shape', None)}"
        )
    betas = salakhutdinov_murray_schedule() if betas is None else check_schedule(betas)
    base = target.raise_base(base)
    log_z0 = float(target.ais_log_z0(base))
    n = int(data.shape[0])
    v = ops.concat([data] * num_samples, axis=0)  # sample m of point i at row m * n + i
    k_start, k_top, k_rev = ops.split(key, 3)
    x, log_q = target.raise_start(k_start, v, base)
    log_f1 = ops.to_numpy(target.ais_log_f(x, 1.0, base)).astype(np.float64)
    log_q = ops.to_numpy(log_q).astype(np.float64)
    x, _ = target.ais_step(k_top, x, 1.0, 1.0, base)  # T_K, at beta = 1
    log_w_rev, _ = anneal(k_rev, target, base, x, betas[::-1].copy(), progress_bar, "RAISE")
    log_w = (log_f1 - log_q - log_z0 + log_w_rev).reshape(num_samples, n)
    if not np.isfinite(log_w).all():
        raise FloatingPointError("RAISE log-weights are not finite")
    m = log_w.max(0)
    log_p = m + np.log(np.exp(log_w - m).mean(0))
    stderr0 = float(getattr(base, "log_z_start_stderr", 0.0))
    return RAISEResult(log_p, log_w, summarize(log_p, 0.0, stderr0), len(betas))
