"""Mixture of Bernoullis: the math, once, for torch and JAX (the baseline of the MNIST table).

The model (Salakhutdinov 2015, Table 1's "mixture of 500 Bernoullis"; Salakhutdinov & Murray
2008) over binary vectors ``x in {0, 1}^D``::

    pi  in the (K - 1)-simplex            (a parameter)
    mu  in (0, 1)^(K x D)                 (a parameter)
    z_n ~ Categorical(pi)                 (summed out)
    x_nd | z_n ~ Bernoulli(mu_(z_n) d)

so that the exact, normalised log-likelihood of one image is

    ``log p(x) = logsumexp_k [log pi_k + sum_d x_d log mu_kd + (1 - x_d) log(1 - mu_kd)]``
    ``         = logsumexp_k [b_k + sum_d x_d w_kd]``

with ``w = logit(mu)`` and ``b_k = log pi_k + sum_d log(1 - mu_kd)``
(:func:`natural_params`): one ``(N, D) x (D, K)`` matrix product per minibatch
(:func:`component_log_joint`), never the ``(N, K, D)`` tensor of per-pixel terms.

It is fitted by EM (:func:`fit_em`). The E-step's responsibilities are the posterior
``p(z_n = k | x_n)`` (the softmax of the per-component log joint); the M-step is closed
form, the MAP estimate under a symmetric smoothing prior of pseudo-count ``a``
(``smoothing``): ``mu_k ~ Beta(1 + a, 1 + a)`` per pixel and ``pi ~ Dirichlet(1 + a)``,

    ``mu_kd = (sum_n r_nk x_nd + a) / (N_k + 2 a)``, ``pi_k = (N_k + a) / (N + K a)``

(:func:`m_step`), so no ``mu`` is ever exactly 0 or 1 and an empty component stays finite.
EM never decreases the penalised objective ``log p(data) + log prior`` (:func:`log_prior`);
with a small ``a`` that is the log-likelihood up to a small, slowly varying term.

The data are streamed in minibatches (``batch_size`` rows at a time), so memory is
``O(batch_size * (D + K) + K * D)`` whatever the number of images.

The Pyro and NumPyro programs of the same model (:func:`ebm_ppl.pyro.bernoulli_mixture`,
:func:`ebm_ppl.numpyro.bernoulli_mixture`) enumerate ``z`` with the host PPL; their E-step
(``estep="program"``) is tested to agree with the closed form used here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from ebm_ppl import ops
from ebm_ppl.ops import Array

__all__ = [
    "BernoulliMixtureFit",
    "bernoulli_mixture_init",
    "bernoulli_mixture_log_likelihood",
    "check_data",
    "check_num_components",
    "check_params",
    "component_log_joint",
    "add_statistics",
    "em_statistics",
    "fit_em",
    "log_prior",
    "m_step",
    "natural_params",
]


class BernoulliMixtureFit(NamedTuple):
    """The result of :func:`fit_em`.

    ``pi`` ``(K,)`` and ``mu`` ``(K, D)`` are arrays of the data's backend: the parameters
    at which the last entry of ``log_likelihoods`` was computed. ``log_likelihoods[t]`` is
    the average exact log-likelihood per data point (nats) after ``t`` EM iterations
    (``t = 0``: the initial parameters), ``objectives[t]`` the same plus the smoothing
    prior's ``log_prior / N`` (the quantity EM never decreases). ``num_iters`` is the number
    of M-steps taken; ``converged`` whether the relative improvement of the objective fell
    below ``tol`` before ``num_iters`` ran out."""

    pi: Array
    mu: Array
    log_likelihoods: tuple
    objectives: tuple
    num_iters: int
    converged: bool

    @property
    def log_likelihood(self) -> float:
        """Average log-likelihood per data point at the returned parameters."""
        return self.log_likelihoods[-1]


# --------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def check_num_components(num_components: Any) -> int:
    """``num_components`` as an int; ``ValueError`` unless it is an integer ``>= 1``."""
    if not _is_int(num_components) or num_components < 1:
        raise ValueError(f"num_components must be an integer >= 1, got {num_components!r}")
    return int(num_components)


def check_data(data: Array, name: str = "data") -> None:
    """``data`` must be a non-empty ``(N, D)`` array of 0/1 floats (checked when concrete)."""
    shape = tuple(data.shape)
    if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"{name} must have shape (N, D) with N, D >= 1, got shape {shape}")
    if not _is_floating(data):
        raise ValueError(f"{name} must hold floats (0./1.), got dtype {data.dtype}")
    if ops.is_concrete(data) and not ops.is_binary(data):
        if not ops.all_finite(data):
            raise ValueError(f"{name} contains NaN or infinite values")
        raise ValueError(
            f"{name} must be binary (0/1) for a mixture of Bernoullis; binarize it first "
            "(ebm_ppl.datasets.binarize)"
        )


def check_params(pi: Array, mu: Array, dim: int | None = None) -> None:
    """``pi`` ``(K,)`` on the simplex and ``mu`` ``(K, D)`` strictly inside ``(0, 1)``
    (``D == dim`` when given); values are checked when concrete."""
    if len(tuple(pi.shape)) != 1 or pi.shape[0] < 1:
        raise ValueError(f"pi must have shape (K,) with K >= 1, got shape {tuple(pi.shape)}")
    k = int(pi.shape[0])
    if len(tuple(mu.shape)) != 2 or int(mu.shape[0]) != k:
        raise ValueError(f"mu must have shape (K, D) = ({k}, D), got shape {tuple(mu.shape)}")
    if dim is not None and int(mu.shape[1]) != dim:
        raise ValueError(
            f"mu must have shape ({k}, {dim}) to match the data's {dim} columns, "
            f"got shape {tuple(mu.shape)}"
        )
    if ops.is_concrete(pi):
        p = np.asarray(ops.to_numpy(pi), np.float64)
        if not np.isfinite(p).all() or (p < 0).any() or abs(p.sum() - 1.0) > 1e-3:
            raise ValueError("pi must be finite, non-negative and sum to 1")
    if ops.is_concrete(mu):
        m = np.asarray(ops.to_numpy(mu))
        if not ((m > 0) & (m < 1)).all():  # NaN fails both comparisons
            raise ValueError(
                "mu must lie strictly inside (0, 1) (smooth it: a mean of exactly 0 or 1 "
                "gives 0 * log 0)"
            )


def _check_positive(name: str, x: Any, allow_zero: bool = False) -> None:
    ok = isinstance(x, (int, float, np.floating, np.integer)) and not isinstance(x, bool)
    if not ok or not math.isfinite(x) or x < 0 or (x == 0 and not allow_zero):
        what = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"{name} must be {what}, got {x!r}")


def _is_floating(x: Array) -> bool:
    if ops.is_torch(x):
        return x.is_floating_point()
    return np.issubdtype(np.dtype(x.dtype), np.floating)


# --------------------------------------------------------------------------------------
# the math
# --------------------------------------------------------------------------------------


def natural_params(pi: Array, mu: Array) -> tuple[Array, Array]:
    """``(b, w)``: ``w = logit(mu)`` ``(K, D)`` and ``b_k = log pi_k + sum_d log(1 - mu_kd)``
    ``(K,)``, so that ``log p(x, z = k) = b_k + x . w_k``."""
    log1m = ops.log(1.0 - mu)
    return ops.log(pi) + log1m.sum(-1), ops.log(mu) - log1m


def component_log_joint(x: Array, bias: Array, weight: Array) -> Array:
    """``log p(x_n, z_n = k)`` ``(N, K)`` from :func:`natural_params` ``(bias, weight)``:
    one matrix product."""
    return ops.addmm(bias[None, :], x, ops.transpose(weight))


def em_statistics(x: Array, bias: Array, weight: Array) -> tuple[Array, Array, Array]:
    """E-step on one minibatch ``x`` ``(B, D)``: ``(sum_n log p(x_n), N_k, S_k)`` with
    ``N_k = sum_n r_nk`` ``(K,)`` and ``S_k = sum_n r_nk x_n`` ``(K, D)``, ``r`` the
    responsibilities ``p(z_n = k | x_n)``."""
    return statistics_from_log_joint(x, component_log_joint(x, bias, weight))


def statistics_from_log_joint(x: Array, log_joint: Array) -> tuple[Array, Array, Array]:
    """:func:`em_statistics` from a given ``(B, K)`` log joint (e.g. a PPL program's)."""
    lse = ops.logsumexp(log_joint, axis=-1)
    r = ops.softmax(log_joint, axis=-1)
    return lse.sum(), r.sum(0), ops.transpose(r) @ x


def m_step(nk: Array, sk: Array, num_data: int, smoothing: float) -> tuple[Array, Array]:
    """Closed-form M-step, the MAP estimate under ``Beta(1 + a, 1 + a)`` per ``mu_kd`` and
    ``Dirichlet(1 + a)`` on ``pi`` (``a = smoothing``): returns ``(pi, mu)``."""
    k = int(nk.shape[0])
    pi = (nk + smoothing) / (num_data + k * smoothing)
    mu = (sk + smoothing) / (nk[:, None] + 2.0 * smoothing)
    return pi, mu


def log_prior(pi: Array, mu: Array, smoothing: float) -> Array:
    """Log density (up to its normalising constant) of the smoothing prior of :func:`m_step`:
    ``a (sum_kd [log mu_kd + log(1 - mu_kd)] + sum_k log pi_k)``."""
    return smoothing * ((ops.log(mu) + ops.log(1.0 - mu)).sum() + ops.log(pi).sum())


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield start, min(n, start + batch_size)


def bernoulli_mixture_log_likelihood(
    data: Array, pi: Array, mu: Array, batch_size: int = 1000
) -> Array:
    """Exact, normalised ``log p(x_n)`` ``(N,)`` (nats) of every row of ``data`` under the
    mixture ``(pi, mu)``, ``batch_size`` rows at a time. Arrays of one backend (torch or
    JAX); ``data`` binary ``(N, D)``, ``pi`` ``(K,)``, ``mu`` ``(K, D)`` inside ``(0, 1)``."""
    check_data(data)
    check_params(pi, mu, int(data.shape[1]))
    _check_batch_size(batch_size)
    bias, weight = natural_params(pi, mu)
    parts = [
        ops.logsumexp(component_log_joint(data[a:b], bias, weight), axis=-1)
        for a, b in _batches(int(data.shape[0]), batch_size)
    ]
    return parts[0] if len(parts) == 1 else ops.concat(parts)


def _check_batch_size(batch_size: Any) -> None:
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")


def bernoulli_mixture_init(
    data: Array, num_components: int, seed: int = 0, smoothing: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """Initial ``(pi, mu)`` as float32 numpy arrays (the same for both backends):
    ``pi`` uniform and ``mu_k`` halfway between the data mean and ``K`` data points drawn
    without replacement (with replacement when ``K > N``) by ``numpy.random.default_rng(seed)``,
    smoothed like the M-step so that every entry lies inside ``(0, 1)``."""
    check_data(data)
    k = check_num_components(num_components)
    _check_positive("smoothing", smoothing)
    n = int(data.shape[0])
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=k, replace=k > n))
    if ops.is_torch(data):
        # lazy: keeps this module free of torch until that backend is used
        import torch

        picked = data[torch.as_tensor(rows, device=data.device)]
    else:
        picked = data[rows]
    x = np.asarray(ops.to_numpy(picked), np.float64)
    mean = np.mean(ops.to_numpy(data), axis=0, dtype=np.float64)  # the same in any backend
    mu = (0.5 * (x + mean[None, :]) + smoothing) / (1.0 + 2.0 * smoothing)
    pi = np.full(k, 1.0 / k)
    return pi.astype(np.float32), mu.astype(np.float32)


# --------------------------------------------------------------------------------------
# EM
# --------------------------------------------------------------------------------------

#: ``estep(totals, x_batch, pi, mu, bias, weight) -> totals + (sum_n log p(x_n), N_k, S_k)``
#: (``totals`` is ``None`` for the first minibatch of a pass)
EStep = Callable[[Any, Array, Array, Array, Array, Array], tuple]


def add_statistics(totals: tuple | None, part: tuple) -> tuple:
    """Running sums of :func:`em_statistics` over minibatches (``totals=None``: none yet)."""
    return part if totals is None else tuple(t + p for t, p in zip(totals, part))


def _closed_form_estep(totals, x, pi, mu, bias, weight) -> tuple:
    return add_statistics(totals, em_statistics(x, bias, weight))


def fit_em(
    data: Array,
    init: tuple[Array, Array],
    num_iters: int = 100,
    tol: float | None = 1e-5,
    batch_size: int = 1000,
    smoothing: float = 0.01,
    estep: EStep | None = None,
    natural: Callable | None = None,
    mstep: Callable | None = None,
    prior: Callable | None = None,
    callback: Callable[[int, float, float], Any] | None = None,
) -> BernoulliMixtureFit:
    """EM for a mixture of Bernoullis on ``data`` ``(N, D)`` from ``init = (pi, mu)`` (arrays
    of ``data``'s backend and dtype).

    Each iteration streams the data in minibatches of ``batch_size`` rows through ``estep``
    (default: the closed form, :func:`em_statistics`), which also gives the exact
    log-likelihood of the current parameters, then takes the closed-form :func:`m_step`.
    Stops after ``num_iters`` M-steps, or earlier when the objective (average log-likelihood
    plus ``log_prior / N``) improves by less than ``tol`` relative to its magnitude
    (``tol=None``: never early). The objective is read on the host once per iteration.
    ``estep`` accumulates the statistics itself (see :data:`EStep`); ``natural`` / ``mstep``
    / ``prior`` replace :func:`natural_params` / :func:`m_step` / :func:`log_prior` (a
    frontend passes jitted versions); ``callback(t, log_likelihood, objective)`` is called
    after each E-step. Returns a :class:`BernoulliMixtureFit`.
    """
    check_data(data)
    pi, mu = init
    check_params(pi, mu, int(data.shape[1]))
    _check_batch_size(batch_size)
    _check_positive("smoothing", smoothing)
    if not _is_int(num_iters) or num_iters < 0:
        raise ValueError(f"num_iters must be an integer >= 0, got {num_iters!r}")
    if tol is not None:
        _check_positive("tol", tol, allow_zero=True)
    estep = estep or _closed_form_estep
    natural = natural or natural_params
    mstep = mstep or m_step
    prior = prior or log_prior
    n = int(data.shape[0])
    lls: list[float] = []
    objs: list[float] = []
    converged = False
    t = 0
    while True:
        bias, weight = natural(pi, mu)
        totals = None
        for a, b in _batches(n, batch_size):
            totals = estep(totals, data[a:b], pi, mu, bias, weight)
        ll, nk, sk = totals
        mean_ll = float(ll) / n
        obj = mean_ll + float(prior(pi, mu, smoothing)) / n
        if not math.isfinite(obj):
            raise FloatingPointError(f"EM: the objective became {obj} at iteration {t}")
        lls.append(mean_ll)
        objs.append(obj)
        if callback is not None:
            callback(t, mean_ll, obj)
        if t > 0 and tol is not None and (obj - objs[-2]) < tol * abs(objs[-2]):
            converged = True
            break
        if t == num_iters:
            break
        pi, mu = mstep(nk, sk, n, smoothing)
        t += 1
    return BernoulliMixtureFit(pi, mu, tuple(lls), tuple(objs), t, converged)


# --------------------------------------------------------------------------------------
# the program and its EM fit, written once for both PPLs
# --------------------------------------------------------------------------------------

__all__ += ["as_float_data", "bernoulli_mixture_program", "fit_mixture", "program_estep"]


def as_float_data(ppl: Any, data: Any, name: str = "data") -> Array:
    """``data`` as an array of ``ppl``'s backend, checked by :func:`check_data`: an array of
    that backend is kept as it is (a tensor keeps its device), anything else (numpy, lists,
    the other backend's arrays) goes through the host; integer and boolean 0/1 data become
    float32."""
    native = ops.is_torch(data) if ppl.NAME == "pyro" else ops.is_jax(data)
    x = data
    if not native:
        x = ppl.asarray(np.asarray(data.detach().cpu() if hasattr(data, "detach") else data), None)
    floating = x.is_floating_point() if ops.is_torch(x) else "float" in str(x.dtype)
    if not floating:
        x = ppl.asarray(x, "float32")
    check_data(x, name)
    return x


def bernoulli_mixture_program(ppl: Any, data: Array, num_components: int) -> None:
    """A mixture of ``num_components`` product-Bernoulli distributions over the rows of
    ``data`` ``(N, D)`` (0/1 floats), written once for the PPL adapter ``ppl``:

    * ``pi = ppl.param("pi", ..., constraint=simplex)``, ``(K,)``, initially uniform;
    * ``mu = ppl.param("mu", ..., constraint=unit_interval)``, ``(K, D)``, initially
      uniform on ``(0.25, 0.75)`` (:func:`ebm_ppl.pyro.ppl.uniform_init`: torch's global
      generator, or the ``seed`` handler's key);
    * in ``ppl.plate("data", N)``: ``z ~ Categorical(pi)`` with
      ``infer={"enumerate": "parallel"}`` and ``x ~ Bernoulli(mu[z]).to_event(1)``,
      observed at ``data``.
    """
    k = check_num_components(num_components)
    check_data(data)
    n, d = data.shape
    constraints = ppl.dist.constraints
    pi = ppl.param("pi", ops.zeros((k,), data) + 1.0 / k, constraint=constraints.simplex)
    mu = ppl.param(
        "mu", ppl.uniform_init((k, d), 0.25, 0.75, data), constraint=constraints.unit_interval
    )
    with ppl.plate("data", n):
        z = ppl.sample("z", ppl.dist.Categorical(pi), infer={"enumerate": "parallel"})
        ppl.sample("x", ppl.dist.Bernoulli(probs=mu[z]).to_event(1), obs=data)


def program_estep(log_joint: Callable[[Array, Array, Array], Array]) -> EStep:
    """The E-step (an :data:`EStep`) whose responsibilities come from ``log_joint(x, pi, mu)``
    ``(B, K)``, the enumerated program's ``log p(x_n, z_n = k)``
    (:func:`statistics_from_log_joint`), added to the running sums."""

    def estep(totals, x, pi, mu, bias, weight):
        return add_statistics(totals, statistics_from_log_joint(x, log_joint(x, pi, mu)))

    return estep


def fit_mixture(
    data: Any,
    num_components: int,
    init: tuple[Any, Any] | None = None,
    seed: int = 0,
    num_iters: int = 100,
    tol: float | None = 1e-5,
    batch_size: int = 1000,
    smoothing: float = 0.01,
    estep: str = "closed_form",
    callback: Callable[[int, float, float], Any] | None = None,
    *,
    ppl: Any,
    estep_program: EStep,
    estep_closed_form: EStep | None = None,
    natural: Callable | None = None,
    mstep: Callable | None = None,
    prior: Callable | None = None,
) -> BernoulliMixtureFit:
    """EM for the Bernoulli mixture program on ``data`` ``(N, D)`` (0/1), the frontends'
    ``fit_bernoulli_mixture``, with the PPL adapter ``ppl`` (data by :func:`as_float_data`);
    ``init`` is ``(pi, mu)`` (default :func:`bernoulli_mixture_init` with ``seed``, numpy, so
    both frontends start from the same point), converted to the data's backend and dtype;
    then :func:`fit_em` with minibatches of ``batch_size`` rows, at most ``num_iters``
    iterations, tolerance ``tol`` and pseudo-count ``smoothing``. ``estep``:
    ``"closed_form"`` (``estep_closed_form``, default one matrix product per minibatch) or
    ``"program"`` (``estep_program``, responsibilities from the enumerated program; see
    :func:`program_estep`). ``natural`` / ``mstep`` / ``prior``: the frontend's (e.g. jitted)
    versions of :func:`natural_params` / :func:`m_step` / :func:`log_prior`. Returns a
    :class:`BernoulliMixtureFit`."""
    k = check_num_components(num_components)
    x = as_float_data(ppl, data)
    if estep not in ("closed_form", "program"):
        raise ValueError(f"estep must be 'closed_form' or 'program', got {estep!r}")
    if init is None:
        init = bernoulli_mixture_init(x, k, seed=seed, smoothing=smoothing)
    pi, mu = (ops.asarray_like(a, x) for a in init)
    if pi.ndim != 1 or int(pi.shape[0]) != k:
        raise ValueError(f"init: pi must have shape ({k},), got {tuple(pi.shape)}")
    return fit_em(
        x,
        (pi, mu),
        num_iters=num_iters,
        tol=tol,
        batch_size=batch_size,
        smoothing=smoothing,
        estep=estep_program if estep == "program" else estep_closed_form,
        natural=natural,
        mstep=mstep,
        prior=prior,
        callback=callback,
    )
