"""Polak–Ribière nonlinear conjugate gradients with a Wolfe–Powell line search, written once
for both backends.

This is the optimizer of the discriminative fine-tuning of Hinton & Salakhutdinov (2006) (also
used for the DBM classifiers of Salakhutdinov & Hinton 2009): a few line searches (3) on each
large minibatch (1,000 images), then on to the next minibatch. The method, in the style of
Rasmussen's ``minimize.m``:

* **Direction.** Start along steepest descent ``s = -g``; after each successful line search
  ``s <- beta s - g_new`` with the Polak–Ribière ``beta = (g_new.g_new - g.g_new) / (g.g)``,
  reset to ``-g_new`` whenever that is not a descent direction.
* **Line search** along ``phi(t) = f(x + t s)``. A step ``t`` is accepted when it meets the
  strong Wolfe–Powell conditions

  - sufficient decrease ``phi(t) <= phi(0) + rho t phi'(0)``, and
  - curvature ``|phi'(t)| <= sigma |phi'(0)|``

  (``rho = 0.05``, ``sigma = 0.1``: a fairly exact search). While trial points still descend
  steeply with enough decrease, the step grows by cubic extrapolation (at most
  ``extrap_limit`` times the current step, at least ``interp_limit`` of the last interval
  beyond it); once a point overshoots (slope turned up or too little decrease), the minimizer
  is bracketed and trial points come from cubic interpolation (quadratic when the far end has
  risen above ``phi(0)``, where its slope is not to be trusted), kept at least
  ``interp_limit`` of the bracket away from its ends. A search gives up after ``max_evals``
  evaluations and returns the lowest point it saw.
* **Step guesses.** The first search tries ``t = 1 / (1 + g.g)``; each later one the last
  accepted step times the ratio of the old and new directional derivatives (at most
  ``max_step_ratio``). After a failed search the direction resets to steepest descent; two
  failures in a row end :func:`minimize`.

Everything works on a flat float64 numpy vector and a callable ``f_and_grad(x) -> (f(x),
grad f(x))``; the Pyro and NumPyro frontends flatten their parameters and supply the callable
(torch autograd, ``jax.value_and_grad``). The state / info pair follows the BlackJAX
``init`` / ``step`` style.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

__all__ = [
    "CGInfo",
    "CGState",
    "LineSearchOptions",
    "LineSearchResult",
    "MinibatchInfo",
    "check_options",
    "init",
    "line_search",
    "minimize",
    "minimize_minibatches",
    "step",
]

FAndGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]


class LineSearchOptions(NamedTuple):
    """Constants of the line search (the defaults are those of Rasmussen's ``minimize.m``)."""

    sufficient_decrease: float = 0.05
    """``rho``: accept only ``phi(t) <= phi(0) + rho t phi'(0)``."""
    curvature: float = 0.1
    """``sigma``: accept only ``|phi'(t)| <= sigma |phi'(0)|``; ``0 < rho < sigma < 1``."""
    interp_limit: float = 0.1
    """New trial points stay this fraction of the interval away from known points."""
    extrap_limit: float = 3.0
    """Extrapolation grows the step by at most this factor."""
    max_evals: int = 20
    """Function-and-gradient evaluations allowed per line search."""
    max_step_ratio: float = 10.0
    """The first trial step of the next search is at most this multiple of the last step."""


class LineSearchResult(NamedTuple):
    """The outcome of :func:`line_search`: the point ``x + step * direction`` it returns (the
    accepted step, or on failure the lowest point seen, ``step = 0`` when none was lower than
    the start), its value and gradient."""

    step: float
    value: float
    grad: np.ndarray
    success: bool
    """Whether ``step`` meets the strong Wolfe–Powell conditions."""
    num_evals: int


class CGState(NamedTuple):
    """Where conjugate gradients stand: the point, ``f`` and its gradient there, the next search
    direction and the first step to try along it."""

    position: np.ndarray
    value: float
    grad: np.ndarray
    direction: np.ndarray
    step: float


class CGInfo(NamedTuple):
    """What one :func:`step` (one line search) did."""

    value: float
    """``f`` at the new position."""
    step: float
    """The step taken along the old direction (0 when the position did not move)."""
    success: bool
    """Whether the line search met the Wolfe–Powell conditions."""
    num_evals: int


class MinibatchInfo(NamedTuple):
    """What :func:`minimize_minibatches` did, one entry per minibatch where an array."""

    values: np.ndarray
    """``f_b`` at the start of minibatch ``b`` (before its line searches)."""
    aux: np.ndarray
    """The third output of ``evaluate`` at the start of minibatch ``b``."""
    num_evals: int
    num_line_searches: int
    num_failed: int
    """Line searches that did not meet the Wolfe–Powell conditions."""


def check_options(options: LineSearchOptions) -> LineSearchOptions:
    """Validate line-search constants; a clear ``ValueError`` naming the field otherwise."""
    if not isinstance(options, LineSearchOptions):
        raise TypeError(f"options must be a LineSearchOptions, got {type(options).__name__}")
    rho, sig = options.sufficient_decrease, options.curvature
    if not (0 < rho < 1):
        raise ValueError(f"sufficient_decrease must lie in (0, 1), got {rho!r}")
    if not (rho < sig < 1):
        raise ValueError(
            f"curvature must lie in (sufficient_decrease, 1) = ({rho}, 1), got {sig!r}"
        )
    if not (0 < options.interp_limit < 0.5):
        raise ValueError(f"interp_limit must lie in (0, 0.5), got {options.interp_limit!r}")
    if not (options.extrap_limit > 1 and math.isfinite(options.extrap_limit)):
        raise ValueError(f"extrap_limit must be a finite number > 1, got {options.extrap_limit!r}")
    if not _positive_int(options.max_evals):
        raise ValueError(f"max_evals must be a positive int, got {options.max_evals!r}")
    if not (options.max_step_ratio > 0 and math.isfinite(options.max_step_ratio)):
        raise ValueError(
            f"max_step_ratio must be a finite number > 0, got {options.max_step_ratio!r}"
        )
    return options


def _positive_int(n: object) -> bool:
    return isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1


def _as_vector(x: object, name: str) -> np.ndarray:
    try:
        v = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 1-D array of floats") from None
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} must be finite")
    return v


def _evaluate(f_and_grad: FAndGrad, x: np.ndarray) -> tuple[float, np.ndarray]:
    """``f_and_grad(x)`` as (float, float64 vector of x's shape); non-finite -> ``(inf, nan)``."""
    value, grad = f_and_grad(x)
    value = float(value)
    grad = np.asarray(grad, dtype=np.float64).reshape(-1)
    if grad.shape != x.shape:
        raise ValueError(
            f"f_and_grad returned a gradient of {grad.size} entries for {x.size} parameters"
        )
    if not (math.isfinite(value) and np.isfinite(grad).all()):
        return math.inf, np.full_like(x, np.nan)
    return value, grad


def _cubic_minimizer(a, fa, da, b, fb, db) -> float:
    """The local minimizer of the cubic with values ``fa, fb`` and slopes ``da, db`` at ``a, b``
    (``nan`` when the cubic has none). Works for ``b`` on either side of ``a`` and beyond the
    interval (extrapolation)."""
    if a == b:
        return math.nan
    d1 = da + db - 3.0 * (fa - fb) / (a - b)
    disc = d1 * d1 - da * db
    if not disc >= 0:
        return math.nan
    d2 = math.copysign(math.sqrt(disc), b - a)
    denom = db - da + 2.0 * d2
    if denom == 0:
        return math.nan
    return b - (b - a) * (db + d2 - d1) / denom


def _quadratic_minimizer(a, fa, da, b, fb) -> float:
    """The minimizer of the parabola with value ``fa`` and slope ``da`` at ``a`` and value
    ``fb`` at ``b`` (``nan`` when it opens downwards)."""
    w = b - a
    curv = fb - fa - da * w
    if not (curv > 0 and w != 0):
        return math.nan
    return a - da * w * w / (2.0 * curv)


def line_search(
    f_and_grad: FAndGrad,
    position: np.ndarray,
    value: float,
    grad: np.ndarray,
    direction: np.ndarray,
    step: float,
    options: LineSearchOptions = LineSearchOptions(),
) -> LineSearchResult:
    """Search ``phi(t) = f(position + t direction)`` for a step meeting the strong
    Wolfe–Powell conditions (see the module notes), starting with the trial ``step``.

    ``value`` and ``grad`` are ``f`` and its gradient at ``position``; ``direction`` must be a
    descent direction (``grad . direction < 0``). Returns the accepted point, or on failure
    (``options.max_evals`` evaluations used) the lowest point seen."""
    rho, sig = check_options(options).sufficient_decrease, options.curvature
    slope0 = float(grad @ direction)
    if not slope0 < 0:
        raise ValueError(
            f"direction must be a descent direction (grad . direction < 0), got {slope0}"
        )
    if not (step > 0 and math.isfinite(step)):
        raise ValueError(f"step must be a finite number > 0, got {step!r}")

    evals = 0
    best = (0.0, value, grad)  # (t, phi, gradient): the lowest point seen

    def probe(t: float) -> tuple[float, float, float, np.ndarray]:
        nonlocal evals, best
        evals += 1
        f, g = _evaluate(f_and_grad, position + t * direction)
        d = float(g @ direction) if math.isfinite(f) else math.inf
        if f < best[1]:
            best = (t, f, g)
        return t, f, d, g

    def decreases(t: float, f: float) -> bool:
        return f <= value + rho * t * slope0

    def wolfe(t: float, f: float, d: float) -> bool:
        return decreases(t, f) and abs(d) <= -sig * slope0

    def done(t, f, g, ok) -> LineSearchResult:
        if ok:
            return LineSearchResult(float(t), f, g, True, evals)
        return LineSearchResult(float(best[0]), best[1], best[2], False, evals)

    # Extrapolation: grow the step while trial points descend steeply with enough decrease.
    lo = (0.0, value, slope0)  # the last acceptable-decrease point with a steep negative slope
    hi = None  # the first point beyond the acceptable steps: the bracket's far end
    t = step
    while evals < options.max_evals:
        t, f, d, g = probe(t)
        if not math.isfinite(f):  # overflow or NaN: back off towards the last good point
            t = lo[0] + 0.5 * (t - lo[0])
            continue
        if wolfe(t, f, d):
            return done(t, f, g, True)
        if d > sig * slope0 or not decreases(t, f):
            hi = (t, f, d)
            break
        t_new = _cubic_minimizer(lo[0], lo[1], lo[2], t, f, d)
        far, near = options.extrap_limit * t, t + options.interp_limit * (t - lo[0])
        if not (math.isfinite(t_new) and t_new > 0) or t_new > far:
            t_new = far
        elif t_new < near:
            t_new = near
        lo, t = (t, f, d), t_new
    if hi is None:
        return done(0.0, value, grad, False)

    # Interpolation inside the bracket [lo, hi] until a point meets the conditions.
    while evals < options.max_evals:
        (a, fa, da), (b, fb, db) = lo, hi
        w = b - a
        if fb > value:
            t = _quadratic_minimizer(a, fa, da, b, fb)
        else:
            t = _cubic_minimizer(a, fa, da, b, fb, db)
        if not math.isfinite(t):
            t = a + 0.5 * w
        t = min(max(t, a + options.interp_limit * w), b - options.interp_limit * w)
        t, f, d, g = probe(t)
        if wolfe(t, f, d):
            return done(t, f, g, True)
        if d > 0 or not decreases(t, f):
            hi = (t, f, d)
        else:
            lo = (t, f, d)
    return done(0.0, value, grad, False)


def init(
    position: np.ndarray,
    f_and_grad: FAndGrad | None = None,
    *,
    value: float | None = None,
    grad: np.ndarray | None = None,
) -> CGState:
    """The starting state at ``position``: direction ``-grad``, first trial step
    ``1 / (1 + grad.grad)``. ``f`` and its gradient come from ``f_and_grad`` unless both
    ``value`` and ``grad`` are given."""
    x = _as_vector(position, "position")
    if value is None or grad is None:
        if f_and_grad is None:
            raise ValueError("init needs f_and_grad, or both value and grad")
        value, grad = _evaluate(f_and_grad, x)
    else:
        value = float(value)
        grad = np.asarray(grad, dtype=np.float64).reshape(-1)
        if grad.shape != x.shape:
            raise ValueError(f"grad must have shape {x.shape}, got {grad.shape}")
    if not (math.isfinite(value) and np.isfinite(grad).all()):
        raise ValueError("f and its gradient must be finite at the starting position")
    return _restart(x, value, grad)


def _restart(x: np.ndarray, value: float, grad: np.ndarray) -> CGState:
    """Steepest descent from ``x`` with the first-search step guess."""
    return CGState(x, value, grad, -grad, 1.0 / (1.0 + float(grad @ grad)))


def step(
    state: CGState,
    f_and_grad: FAndGrad,
    options: LineSearchOptions = LineSearchOptions(),
) -> tuple[CGState, CGInfo]:
    """One line search along ``state.direction``, then the Polak–Ribière update of the
    direction (steepest descent again after a failed search, or when the update is not a
    descent direction). At a point with zero gradient nothing moves (``num_evals = 0``)."""
    x, value, grad, s, t0 = state
    slope0 = float(grad @ s)
    if not slope0 < 0:  # not a descent direction: restart along steepest descent
        state = _restart(x, value, grad)
        x, value, grad, s, t0 = state
        slope0 = float(grad @ s)
        if not slope0 < 0:  # zero gradient: a stationary point
            return state, CGInfo(value, 0.0, False, 0)
    res = line_search(f_and_grad, x, value, grad, s, t0, options)
    x_new = x + res.step * s if res.step != 0 else x
    if not res.success:
        return _restart(x_new, res.value, res.grad), CGInfo(
            res.value, res.step, False, res.num_evals
        )
    g_new = res.grad
    beta = (float(g_new @ g_new) - float(grad @ g_new)) / float(grad @ grad)
    s_new = beta * s - g_new
    slope_new = float(g_new @ s_new)
    if not slope_new < 0:
        s_new = -g_new
        slope_new = -float(g_new @ g_new)
    tiny = np.finfo(np.float64).tiny
    t_next = res.step * min(options.max_step_ratio, slope0 / (slope_new - tiny))
    if not (t_next > 0 and math.isfinite(t_next)):
        t_next = 1.0 / (1.0 + float(g_new @ g_new))
    new = CGState(x_new, res.value, g_new, s_new, t_next)
    return new, CGInfo(res.value, res.step, True, res.num_evals)


def minimize(
    f_and_grad: FAndGrad,
    x0: np.ndarray,
    *,
    max_line_searches: int,
    value: float | None = None,
    grad: np.ndarray | None = None,
    gtol: float = 0.0,
    options: LineSearchOptions = LineSearchOptions(),
) -> tuple[CGState, list[CGInfo]]:
    """Minimize ``f`` from ``x0`` by at most ``max_line_searches`` conjugate-gradient line
    searches (:func:`step`), stopping early when ``max |grad| <= gtol`` or after two failed
    line searches in a row. ``value``/``grad``: ``f`` and its gradient at ``x0`` if already
    known (saves one evaluation). Returns the final state (``state.position`` is the
    minimizer found) and one :class:`CGInfo` per line search."""
    if not _positive_int(max_line_searches):
        raise ValueError(f"max_line_searches must be a positive int, got {max_line_searches!r}")
    if not (gtol >= 0):
        raise ValueError(f"gtol must be a number >= 0, got {gtol!r}")
    if not callable(f_and_grad):
        raise TypeError("f_and_grad must be a callable x -> (value, gradient)")
    check_options(options)
    state = init(x0, f_and_grad, value=value, grad=grad)
    infos: list[CGInfo] = []
    for _ in range(max_line_searches):
        if float(np.max(np.abs(state.grad))) <= gtol:
            break
        state, info = step(state, f_and_grad, options)
        infos.append(info)
        if info.num_evals == 0:
            break
        if len(infos) >= 2 and not (infos[-1].success or infos[-2].success):
            break
    return state, infos


def minimize_minibatches(
    evaluate: Callable[[np.ndarray, int], tuple[float, np.ndarray, float]],
    x0: np.ndarray,
    num_batches: int,
    *,
    max_line_searches: int = 3,
    options: LineSearchOptions = LineSearchOptions(),
) -> tuple[np.ndarray, MinibatchInfo]:
    """Minibatch conjugate gradients (Hinton & Salakhutdinov 2006): for ``b = 0, 1, ...,
    num_batches - 1`` in turn, :func:`minimize` the minibatch objective ``f_b`` by at most
    ``max_line_searches`` line searches from where the previous minibatch left off (each
    minibatch starts afresh along steepest descent).

    ``evaluate(x, b)`` returns ``(f_b(x), grad f_b(x), aux)``; ``aux`` is any statistic of the
    point (e.g. the number of misclassified examples), recorded at the start of each
    minibatch. Returns the final position and a :class:`MinibatchInfo`."""
    if not _positive_int(num_batches):
        raise ValueError(f"num_batches must be a positive int, got {num_batches!r}")
    x = _as_vector(x0, "x0")
    values = np.empty(num_batches)
    aux = np.empty(num_batches)
    evals = searches = failed = 0
    for b in range(num_batches):
        f0, g0, a0 = evaluate(x, b)
        values[b], aux[b] = f0, a0
        evals += 1

        def f_and_grad(v: np.ndarray, b: int = b) -> tuple[float, np.ndarray]:
            f, g, _ = evaluate(v, b)
            return f, g

        state, infos = minimize(
            f_and_grad,
            x,
            max_line_searches=max_line_searches,
            value=f0,
            grad=g0,
            options=options,
        )
        x = state.position
        evals += sum(i.num_evals for i in infos)
        searches += len(infos)
        failed += sum(not i.success for i in infos)
    return x, MinibatchInfo(values, aux, evals, searches, failed)
