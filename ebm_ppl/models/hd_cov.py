"""Full-covariance super-categories for the Normal HD prior (Salakhutdinov, Tenenbaum &
Torralba 2013: a super-category transfers a *metric*, how its categories' images vary), for
torch and JAX.

The Normal HD prior (:func:`ebm_ppl.models.hd.hd_normal_program`) gives each super-category
``k`` a mean ``mu_k`` and diagonal variances. Here each super-category also carries a full
within-category covariance ``Sigma_k`` ``(F, F)`` with a conjugate inverse-Wishart prior
centred at a reference covariance ``Sigma_0`` (by default the pooled within-category
covariance of the known categories, about the identity after whitening), ``nu0`` pseudo-images
strong:

    ``Sigma_k ~ IW(nu0 Sigma_0, nu0 + F + 1)``   (prior mean ``Sigma_0``).

The images of a category scatter around its own mean with covariance ``Sigma_k``; its scatter
matrix ``S_c = sum_n (x_n - xbar_c)(x_n - xbar_c)^T`` (:func:`category_scatter`) is Wishart
with ``n_c - 1`` degrees of freedom whatever the category mean, so given the known categories'
super-categories (responsibilities ``r_ck``, from the HD posterior's exact assignment
probabilities) the posterior is ``IW(nu0 Sigma_0 + sum_c r_ck S_c, nu0 + F + 1 + sum_c r_ck
(n_c - 1))``, whose mean is

    ``E[Sigma_k | data] = (nu0 Sigma_0 + sum_c r_ck S_c) / (nu0 + sum_c r_ck (n_c - 1))``

(:func:`niw_posterior_covariance`; ``nu0 = inf``: ``Sigma_0`` itself, every super-category
with the same metric). It is used as a plug-in (a super-category holds hundreds of images, so
integrating ``Sigma_k`` out changes the predictive little).

A new category known through ``n`` examples (mean ``xbar``, scatter ``S``) with mean
``nu ~ N(mu_k, T_k)`` (``T_k = diag(tau_k^2)``, the HD posterior's between-category variances)
and images ``x ~ N(nu, Sigma_k)`` has, with ``A = T_k + Sigma_k / n``,

    ``log p(examples | k) = log N(xbar; mu_k, A) - (n - 1) F / 2 log 2pi - (n - 1) / 2 log|Sigma_k|
                            - tr(Sigma_k^-1 S) / 2 - F / 2 log n``

and predicts ``x ~ N(mu_k + T_k A^-1 (xbar - mu_k), Sigma_k + T_k - T_k A^-1 T_k)``; the
super-category is summed out with posterior ``∝ w_k p(examples | k)``
(:func:`cov_predictive_log_prob`). With ``Sigma_k = diag(sigma_k^2)`` this is exactly
:func:`ebm_ppl.models.hd.normal_predictive_log_prob`. The flat prior (one super-category) gets
the same treatment: its ``Sigma`` is the pooled covariance.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ebm_ppl import ops
from ebm_ppl.models.hd import (
    HDNormalPosterior,
    _host,
    _map_samples,
    assignment_log_probs,
)
from ebm_ppl.ops import Array

_LOG_2PI = math.log(2.0 * math.pi)


# ---- backend-neutral linear algebra (torch or JAX) ----------------------------------------


def _cholesky(a: Array) -> Array:
    """Lower Cholesky factor of the symmetric positive-definite ``a`` ``(..., F, F)``."""
    if ops.is_torch(a):
        import torch

        return torch.linalg.cholesky(a)
    return ops._jnp().linalg.cholesky(a)


def _solve_lower(chol: Array, b: Array) -> Array:
    """``chol^-1 b`` for a lower-triangular ``chol`` ``(..., F, F)`` and ``b`` ``(..., F, M)``
    (batch axes broadcast)."""
    if ops.is_torch(chol):
        import torch

        shape = torch.broadcast_shapes(chol.shape[:-2], b.shape[:-2])
        return torch.linalg.solve_triangular(
            chol.expand(shape + chol.shape[-2:]), b.expand(shape + b.shape[-2:]), upper=False
        )
    import jax

    jnp = ops._jnp()
    shape = jnp.broadcast_shapes(chol.shape[:-2], b.shape[:-2])
    return jax.scipy.linalg.solve_triangular(
        jnp.broadcast_to(chol, shape + chol.shape[-2:]),
        jnp.broadcast_to(b, shape + b.shape[-2:]),
        lower=True,
    )


def _diagonal(a: Array) -> Array:
    if ops.is_torch(a):
        return a.diagonal(dim1=-2, dim2=-1)
    return ops._jnp().diagonal(a, axis1=-2, axis2=-1)


def _diag_embed(v: Array) -> Array:
    """``(..., F) -> (..., F, F)`` diagonal matrices."""
    if ops.is_torch(v):
        import torch

        return torch.diag_embed(v)
    jnp = ops._jnp()
    return v[..., :, None] * jnp.eye(v.shape[-1], dtype=v.dtype)


def _eye_like(f: int, like: Array) -> Array:
    return _diag_embed(ops.zeros((f,), like) + 1.0)


def _einsum(spec: str, *xs: Array) -> Array:
    if ops.is_torch(xs[0]):
        import torch

        return torch.einsum(spec, *xs)
    return ops._jnp().einsum(spec, *xs)


def _log_det_chol(chol: Array) -> Array:
    """``log |a|`` ``(...)`` from the Cholesky factor of ``a``."""
    return 2.0 * ops.log(_diagonal(chol)).sum(-1)


def _inverse_from_chol(chol: Array) -> Array:
    """``a^-1`` ``(..., F, F)`` from the lower Cholesky factor of ``a``."""
    w = _solve_lower(chol, _eye_like(int(chol.shape[-1]), chol))
    return ops.transpose(w) @ w


# ---- the statistics and the conjugate update ---------------------------------------------


def category_scatter(features: Array, labels: Array, num_categories: int) -> np.ndarray:
    """Within-category scatter matrices ``S_c = sum_(n in c) (x_n - xbar_c)(x_n - xbar_c)^T``
    ``(C, F, F)`` (numpy float64) of real features ``(N, F)`` with integer ``labels`` ``(N,)``
    in ``[0, num_categories)``; zero for a category with fewer than two images."""
    x, y = _host(features, np.float64), _host(labels)
    if x.ndim != 2:
        raise ValueError(f"features must have shape (N, F), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features must be finite")
    if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be {x.shape[0]} integers, got shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= num_categories):
        raise ValueError(f"labels must lie in [0, {num_categories})")
    out = np.zeros((num_categories, x.shape[1], x.shape[1]))
    for c in np.unique(y):
        r = x[y == c] - x[y == c].mean(0)
        out[c] = r.T @ r
    return out


def pooled_covariance(scatter: Any, counts: Any) -> np.ndarray:
    """The pooled within-category covariance ``sum_c S_c / sum_c (n_c - 1)`` ``(F, F)``
    (numpy float64) of scatter matrices ``(C, F, F)`` and counts ``(C,)``."""
    s, n = _host(scatter, np.float64), _host(counts, np.float64)
    dof = (n - 1.0).sum()
    if not dof > 0:
        raise ValueError("the pooled covariance needs some category with two or more images")
    return s.sum(0) / dof


def niw_posterior_covariance(
    scatter: Array, counts: Array, resp: Array, prior_cov: Array, nu0: float
) -> Array:
    """Posterior mean of each super-category's within-category covariance ``(..., K, F, F)``
    under ``Sigma_k ~ IW(nu0 Sigma_0, nu0 + F + 1)`` (module docstring): ``scatter``
    ``(C, F, F)`` (:func:`category_scatter`), ``counts`` ``(C,)``, ``resp`` ``(..., C, K)``
    the categories' super-category probabilities, ``prior_cov`` ``Sigma_0`` ``(F, F)``,
    ``nu0 > 0`` the prior's weight in images (``math.inf``: ``Sigma_0`` for every k)."""
    check_nu0(nu0)
    k = int(resp.shape[-1])
    shape = tuple(resp.shape[:-2]) + (k,) + tuple(prior_cov.shape)
    if math.isinf(nu0):
        return ops.broadcast_to(prior_cov, shape)
    tot = _einsum("...ck,cfg->...kfg", resp, scatter)
    dof = _einsum("...ck,c->...k", resp, counts - 1.0)
    return (nu0 * prior_cov + tot) / (nu0 + dof)[..., None, None]


def check_nu0(nu0: Any) -> None:
    if isinstance(nu0, bool) or not isinstance(nu0, (int, float)) or not nu0 > 0:
        raise ValueError(f"nu0 must be a positive number (or math.inf), got {nu0!r}")


# ---- the one-shot predictive -------------------------------------------------------------


def cov_example_log_likelihood(
    n: float, xbar: Array, scatter: Array, mu: Array, tau2: Array, cov: Array
) -> Array:
    """``log p(examples of q | k)`` ``(Q, K)`` for new categories with ``n`` examples each
    (a number), means ``xbar`` ``(Q, F)``, scatter ``(Q, F, F)``, under super-categories
    with means ``mu`` ``(K, F)``, between-category variances ``tau2`` ``(K, F)`` and
    within-category covariances ``cov`` ``(K, F, F)`` (module docstring)."""
    f = int(mu.shape[-1])
    chol_a = _cholesky(_diag_embed(tau2) + cov / n)  # (K, F, F)
    d = xbar[:, None, :] - mu[None]  # (Q, K, F)
    z = _solve_lower(chol_a[None], d[..., None])[..., 0]
    ll = -0.5 * (z * z).sum(-1) - 0.5 * _log_det_chol(chol_a)[None] - 0.5 * f * _LOG_2PI
    if n > 1:
        chol_s = _cholesky(cov)
        inv = _inverse_from_chol(chol_s)  # (K, F, F)
        tr = _einsum("kfg,qfg->qk", inv, scatter)
        ll = ll - 0.5 * tr - 0.5 * (n - 1.0) * _log_det_chol(chol_s)[None]
        ll = ll - 0.5 * (n - 1.0) * f * _LOG_2PI - 0.5 * f * math.log(n)
    return ll


def cov_predictive_log_prob(
    x: Array,
    counts: Array,
    sums: Array,
    scatter: Array,
    mu: Array,
    tau2: Array,
    cov: Array,
    log_w: Array,
) -> Array:
    """``log p(x_i | examples of new category q)`` ``(N, Q)`` for test features ``x`` ``(N, F)``
    and new categories with example counts ``(Q,)`` (concrete: grouped by value), sums
    ``(Q, F)`` and scatter matrices ``(Q, F, F)``; one parameter setting: ``mu``, ``tau2``
    ``(K, F)``, ``cov`` ``(K, F, F)``, ``log_w`` ``(K,)``. Each new category's super-category
    is summed out with its posterior ``∝ w_k p(examples | k)``; given it, the Gaussian
    predictive of the module docstring."""
    n_host = _host(counts, np.float64)
    f = int(mu.shape[-1])
    xt = ops.transpose(x)  # (F, N)
    cols, order = [], []
    for n in np.unique(n_host):
        idx = np.flatnonzero(n_host == n)
        ix = ops.asarray_like(idx, counts).long() if ops.is_torch(counts) else idx
        xbar = sums[ix] / float(n)
        ll = cov_example_log_likelihood(float(n), xbar, scatter[ix], mu, tau2, cov)
        post = assignment_log_probs(log_w, ll)  # (Qg, K)
        a_inv = _inverse_from_chol(_cholesky(_diag_embed(tau2) + cov / float(n)))  # (K, F, F)
        d = xbar[:, None, :] - mu[None]  # (Qg, K, F)
        mean = mu[None] + tau2[None] * _einsum("kfg,qkg->qkf", a_inv, d)
        pcov = cov + _diag_embed(tau2) - tau2[:, :, None] * a_inv * tau2[:, None, :]
        chol_c = _cholesky(pcov)  # (K, F, F)
        zx = _solve_lower(chol_c, xt[None])  # (K, F, N)
        zm = _solve_lower(chol_c, _einsum("qkf->kfq", mean))  # (K, F, Qg)
        quad = (
            (zx * zx).sum(-2)[:, :, None]
            - 2.0 * (ops.transpose(zx) @ zm)
            + (zm * zm).sum(-2)[:, None, :]
        )  # (K, N, Qg)
        lp = -0.5 * (quad + (_log_det_chol(chol_c) + f * _LOG_2PI)[:, None, None])
        cols.append(ops.logsumexp(lp + ops.transpose(post)[:, None, :], axis=0))  # (N, Qg)
        order.append(idx)
    out = ops.concat(cols, axis=1)
    inv = np.argsort(np.concatenate(order))
    ix = ops.asarray_like(inv, counts).long() if ops.is_torch(counts) else inv
    return out[:, ix]


class HDCovPosterior:
    """The Normal HD posterior with full-covariance super-categories: from an
    :class:`~ebm_ppl.models.hd.HDNormalPosterior` (its samples of ``mu``, ``tau``, the
    stick-breaking weights, and its exact assignment probabilities of the known categories)
    and the known categories' scatter matrices ``(C, F, F)``, each posterior sample gets
    ``Sigma_k`` = :func:`niw_posterior_covariance` with weight ``nu0`` around ``prior_cov``
    (``None``: :func:`pooled_covariance` of the known categories). ``max_samples`` evenly
    spaced posterior samples are kept (the predictive costs ``K F^2 N`` per sample).
    Attributes ``mu``, ``tau2`` ``(S, K, F)``, ``cov`` ``(S, K, F, F)``, ``log_w`` ``(S, K)``
    in the backend of ``base``."""

    def __init__(
        self,
        base: HDNormalPosterior,
        scatter: Any,
        nu0: float = 1000.0,
        prior_cov: Any = None,
        max_samples: int = 25,
    ) -> None:
        check_nu0(nu0)
        if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
            raise ValueError(f"max_samples must be a positive integer, got {max_samples!r}")
        like = base.mu
        c, f = tuple(base.sums.shape)
        sc = _host(scatter, np.float64)
        if sc.shape != (c, f, f):
            raise ValueError(f"scatter must have shape {(c, f, f)}, got {sc.shape}")
        if prior_cov is None:
            prior_cov = pooled_covariance(sc, base.counts)
        p0 = _host(prior_cov, np.float64)
        if p0.shape != (f, f) or not np.allclose(p0, p0.T, atol=1e-6 * np.abs(p0).max()):
            raise ValueError(f"prior_cov must be a symmetric ({f}, {f}) matrix")
        if np.linalg.eigvalsh(p0).min() <= 0:
            raise ValueError("prior_cov must be positive definite")
        s = base.num_samples
        keep = np.unique(np.linspace(0, s - 1, min(s, max_samples)).round().astype(np.int64))
        ix = ops.asarray_like(keep, base.counts).long() if ops.is_torch(like) else keep
        self.nu0, self.base, self.keep = nu0, base, keep
        self.mu, self.tau2, self.log_w = base.mu[ix], base.tau2[ix], base.log_w[ix]
        resp = base.assignment_probs()[ix]  # (S', C, K)
        self.cov = niw_posterior_covariance(
            ops.asarray_like(sc, like),
            ops.asarray_like(_host(base.counts, np.float64), like),
            resp,
            ops.asarray_like(p0, like),
            nu0,
        )

    @property
    def num_samples(self) -> int:
        return int(self.mu.shape[0])

    def predictive_log_prob(self, x: Array, counts: Array, sums: Array, scatter: Array) -> Array:
        """``log p(x_i | examples of new category q)`` ``(N, Q)`` averaged over the kept
        posterior samples (log-mean-exp of :func:`cov_predictive_log_prob`); ``x`` ``(N, F)``,
        the examples' ``counts`` ``(Q,)``, ``sums`` ``(Q, F)``, ``scatter`` ``(Q, F, F)``."""
        x = ops.asarray_like(x, self.mu)
        sums = ops.asarray_like(sums, self.mu)
        scatter = ops.asarray_like(scatter, self.mu)
        counts = ops.asarray_like(counts, self.mu)
        n = _host(counts, np.float64)
        if n.ndim != 1 or n.min() < 1:
            raise ValueError("counts must be (Q,) with every new category seen at least once")
        q, f = n.shape[0], int(self.mu.shape[-1])
        if tuple(sums.shape) != (q, f) or tuple(scatter.shape) != (q, f, f):
            raise ValueError(f"sums must be {(q, f)} and scatter {(q, f, f)}")
        if len(x.shape) != 2 or int(x.shape[1]) != f:
            raise ValueError(f"x must have shape (N, {f}), got {tuple(x.shape)}")
        return _map_samples(
            lambda mu, t2, cv, lw: cov_predictive_log_prob(
                x, counts, sums, scatter, mu, t2, cv, lw
            ),
            self.mu,
            self.tau2,
            self.cov,
            self.log_w,
        )


def fit_hd_cov(
    fit_normal: Any,
    rng_key: Any,
    counts: Any,
    sums: Any,
    sumsq: Any,
    scatter: Any,
    nu0: float = 1000.0,
    prior_cov: Any = None,
    max_samples: int = 25,
    **kwargs: Any,
) -> HDCovPosterior:
    """A frontend's ``fit_hd_normal_prior`` (``fit_normal``; ``rng_key`` ``None`` for Pyro)
    on the known categories' moments, then :class:`HDCovPosterior` with their ``scatter``
    ``(C, F, F)`` (:func:`category_scatter`). ``kwargs``: those of
    :func:`ebm_ppl.models.hd.fit_hd_normal`."""
    check_nu0(nu0)
    if rng_key is None:
        base = fit_normal(counts, sums, sumsq, **kwargs)
    else:
        base = fit_normal(rng_key, counts, sums, sumsq, **kwargs)
    return HDCovPosterior(base, scatter, nu0, prior_cov, max_samples)
