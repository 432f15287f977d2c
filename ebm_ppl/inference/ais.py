"""Annealed importance sampling (Neal 2001; Salakhutdinov & Murray 2008), for both backends.

AIS estimates the partition function of a target energy model by annealing from a tractable
base along ``f_beta`` (``beta = 0`` the base, ``beta = 1`` the target): runs start with exact
base samples, each step adds ``log f_beta_k(v) - log f_beta_(k-1)(v)`` to the run's
log-weight and moves ``v`` by a transition that leaves ``f_beta_k`` invariant. Then
``Z_target / Z_0 = E[w]``, so ``log Z = log Z_0 + log mean(w)``: unbiased in ``Z``, a
stochastic lower bound in ``log Z`` (Jensen). **Reverse AIS** starts from samples of the
target and anneals to the base; ``E[w_rev] = Z_0 / Z_target`` gives an estimate that tends
to lie above ``log Z``, so the two bracket it.

The target supplies the path: ``ais_base(base)`` (its default base, or the user's checked),
``ais_log_z0(base)``, ``ais_step(key, v, beta_prev, beta, base) -> (v, increment)`` and
``ais_log_f(v, beta, base)``; the RBM family implements them (binary, Gaussian, ...) and
later models plug in the same way. All runs advance as one batch: a Python loop over the
schedule in torch, chunks of ``lax.scan`` in JAX; log-weights are summed per chunk and
accumulated in float64.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ebm_ppl import ops

__all__ = [
    "AISResult",
    "LogLikelihood",
    "linear_schedule",
    "geometric_schedule",
    "salakhutdinov_murray_schedule",
    "check_schedule",
    "run_ais",
    "evaluate",
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
    target: Any = field(default=None, repr=False)

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


def _log_mean_exp(x: np.ndarray) -> float:
    m = float(np.max(x))
    return m + math.log(float(np.mean(np.exp(x - m))))


def estimate(log_w: np.ndarray, log_z0: float, direction: str, num_betas: int) -> AISResult:
    """Turn per-run log-weights into an :class:`AISResult`."""
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
    return AISResult(
        log_z=log_z,
        log_z_stderr=rel,
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
    key: Any,
    target: Any,
    base: Any,
    v0: Any,
    betas: np.ndarray,
    progress_bar: bool | None = None,
    desc: str = "AIS",
) -> tuple[np.ndarray, Any]:
    """Run the AIS chains from ``v0`` (shape ``(runs, D)``) along ``betas`` (any direction).

    Returns the float64 log-weights ``(runs,)`` and the final states. A tqdm bar over the
    schedule is shown when stderr is a terminal (or as ``progress_bar`` says).
    """
    from tqdm import tqdm

    pairs = np.stack([betas[:-1], betas[1:]], axis=1)
    num = len(pairs)
    chunk = max(1, math.ceil(num / 100))
    log_w = np.zeros(v0.shape[0], dtype=np.float64)
    v = v0
    disable = None if progress_bar is None else not progress_bar
    with tqdm(total=num, disable=disable, desc=desc, unit="β") as bar:
        if ops.is_torch(v0):
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
    key: Any,
    target: Any,
    base: Any,
    betas: Any,
    num_runs: int,
    reverse_samples: Any = None,
    progress_bar: bool | None = None,
    place: Any = None,
    gather: Any = None,
) -> AISResult:
    """Forward AIS from ``base`` to ``target`` with ``num_runs`` runs (and reverse AIS from
    ``reverse_samples`` when given); see :class:`AISResult`.

    ``base`` defaults to the uniform model, ``betas`` to :func:`salakhutdinov_murray_schedule`.

    ``key`` is a JAX key for JAX targets and ``None`` / a ``torch.Generator`` for torch.

    Scaling out: ``place(v)`` puts the runs' starting states where they should live (e.g.
    split over JAX devices; the annealing then stays sharded), and ``gather(log_w)`` turns
    this process's float64 log-weights into those of all runs everywhere (e.g. an
    all-gather over torch.distributed ranks, each of which annealed its own runs).
    """
    if not isinstance(num_runs, int) or isinstance(num_runs, bool) or num_runs < 1:
        raise ValueError(f"num_runs must be a positive int, got {num_runs!r}")
    betas = salakhutdinov_murray_schedule() if betas is None else check_schedule(betas)
    base = target.ais_base(base)
    log_z0 = float(target.ais_log_z0(base))
    k_init, k_fwd, k_rev = ops.split(key, 3)
    v0 = base.sample(k_init, (num_runs,))
    if place is not None:
        v0 = place(v0)
    log_w, _ = anneal(k_fwd, target, base, v0, betas, progress_bar, "AIS")
    if gather is not None:
        log_w = gather(log_w)
    result = estimate(log_w, log_z0, "forward", len(betas))
    result.target = target
    if reverse_samples is not None:
        x = reverse_samples
        if x.ndim != 2:
            raise ValueError(
                f"reverse_samples must have shape (runs, n_visible), got {tuple(x.shape)}"
            )
        if hasattr(target, "ais_state"):  # e.g. a DBM: full states -> the annealed layers
            x = target.ais_state(x)
        else:
            target._check_value(x, "reverse_samples")
        if place is not None:
            x = place(x)
        log_w_r, _ = anneal(k_rev, target, base, x, betas[::-1].copy(), progress_bar, "reverse AIS")
        if gather is not None:
            log_w_r = gather(log_w_r)
        rev = estimate(log_w_r, log_z0, "reverse", len(betas))
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


def evaluate(target: Any, data: Any, result: AISResult) -> LogLikelihood:
    """Average log-likelihood of ``data`` (``(n, D)``) under ``target`` with ``log Z`` from
    an AIS ``result``; the standard error combines the spread over data points and the AIS
    standard error of ``log Z``."""
    if data.ndim < 2:
        raise ValueError(f"data must have shape (n, n_visible), got {tuple(data.shape)}")
    return summarize(target.log_prob(data), result.log_z, result.log_z_stderr)


def summarize(values: Any, log_z: float, log_z_stderr: float = 0.0) -> LogLikelihood:
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
