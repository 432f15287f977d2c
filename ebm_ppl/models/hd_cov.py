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

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ebm_ppl import ops
from ebm_ppl.models.hd import (
    HDNormalPosterior,
    _features_and_labels,
    _host,
    assignment_log_probs,
)
from ebm_ppl.ops import Array

_LOG_2PI = math.log(2.0 * math.pi)


# ---- backend-neutral linear algebra (torch or JAX) ----------------------------------------


def _cholesky(a: Array) -> Array:
    """Lower Cholesky factor of the symmetric positive-definite ``a`` ``(..., F, F)``."""
    if ops.is_torch(a):
        # lazy: torch only for torch arrays (the other backend may not be installed)
        import torch

        return torch.linalg.cholesky(a)
    return ops._jnp().linalg.cholesky(a)


def _solve_lower(chol: Array, b: Array) -> Array:
    """``chol^-1 b`` for a lower-triangular ``chol`` ``(..., F, F)`` and ``b`` ``(..., F, M)``
    (batch axes broadcast)."""
    if ops.is_torch(chol):
        # lazy: torch only for torch arrays (the other backend may not be installed)
        import torch

        shape = torch.broadcast_shapes(chol.shape[:-2], b.shape[:-2])
        return torch.linalg.solve_triangular(
            chol.expand(shape + chol.shape[-2:]), b.expand(shape + b.shape[-2:]), upper=False
        )
    # lazy: jax only for JAX arrays (the other backend may not be installed)
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
        # lazy: torch only for torch arrays (the other backend may not be installed)
        import torch

        return torch.diag_embed(v)
    jnp = ops._jnp()
    return v[..., :, None] * jnp.eye(v.shape[-1], dtype=v.dtype)


def _eye_like(f: int, like: Array) -> Array:
    return _diag_embed(ops.zeros((f,), like) + 1.0)


def _einsum(spec: str, *xs: Array) -> Array:
    if ops.is_torch(xs[0]):
        # lazy: torch only for torch arrays (the other backend may not be installed)
        import torch

        return torch.einsum(spec, *xs)
    return ops._jnp().einsum(spec, *xs)


def _log_det_chol(chol: Array) -> Array:
    """``log |a|`` ``(...)`` from the Cholesky factor of ``a``."""
    return 2.0 * ops.log(_diagonal(chol)).sum(-1)


# ---- the statistics and the conjugate update ---------------------------------------------


def category_scatter(features: Array, labels: Array, num_categories: int) -> np.ndarray:
    """Within-category scatter matrices ``S_c = sum_(n in c) (x_n - xbar_c)(x_n - xbar_c)^T``
    ``(C, F, F)`` (numpy float64) of real features ``(N, F)`` with integer ``labels`` ``(N,)``
    in ``[0, num_categories)``; zero for a category with fewer than two images."""
    x, y = _features_and_labels(features, labels, num_categories)
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


def _inverse_chol(a: Array) -> tuple:
    """``(W, log |a|)`` with ``W = L^-1`` for the lower Cholesky factor ``L`` of ``a``
    ``(..., F, F)``, so that ``a^-1 = W^T W``."""
    chol = _cholesky(a)
    return _solve_lower(chol, _eye_like(int(a.shape[-1]), a)), _log_det_chol(chol)


def cov_prepare(n: float, tau2: Array, cov: Array) -> dict:
    """The factors of the one-shot predictive that depend only on the number of examples
    ``n`` and the parameters, not on the examples or test points (reused across calls):
    ``tau2`` ``(..., K, F)``, ``cov`` ``(..., K, F, F)``. With ``A = T + Sigma / n`` and the
    predictive covariance ``C = Sigma + T - T A^-1 T``: ``w_a``, ``w_c`` ``(..., K, F, F)``
    (inverse Cholesky factors), ``a_inv``, ``log_det_a``, ``log_det_c``; for ``n > 1`` also
    ``sigma_inv`` and ``log_det_sigma``."""
    if not n >= 1:
        raise ValueError(f"the number of examples must be >= 1, got {n}")
    t = _diag_embed(tau2)
    w_a, ld_a = _inverse_chol(t + cov / n)
    a_inv = ops.transpose(w_a) @ w_a
    w_c, ld_c = _inverse_chol(cov + t - tau2[..., :, None] * a_inv * tau2[..., None, :])
    out = dict(w_a=w_a, a_inv=a_inv, log_det_a=ld_a, w_c=w_c, log_det_c=ld_c)
    if n > 1:
        w_s, ld_s = _inverse_chol(cov)
        out.update(sigma_inv=ops.transpose(w_s) @ w_s, log_det_sigma=ld_s)
    return out


def cov_example_log_likelihood(
    n: float, xbar: Array, scatter: Array, mu: Array, prep: dict
) -> Array:
    """``log p(examples of q | k)`` ``(..., Q, K)`` for new categories with ``n`` examples each
    (a number), means ``xbar`` ``(Q, F)`` and scatter ``(Q, F, F)``, under super-categories with
    means ``mu`` ``(..., K, F)`` and the factors ``prep`` = :func:`cov_prepare` ``(n, tau2,
    cov)`` (module docstring)."""
    f = int(mu.shape[-1])
    d = xbar[:, None, :] - mu[..., None, :, :]  # (..., Q, K, F)
    z = _einsum("...kfg,...qkg->...qkf", prep["w_a"], d)
    ll = -0.5 * (z * z).sum(-1) - 0.5 * prep["log_det_a"][..., None, :] - 0.5 * f * _LOG_2PI
    if n > 1:
        tr = _einsum("...kfg,qfg->...qk", prep["sigma_inv"], scatter)
        ll = ll - 0.5 * tr - 0.5 * (n - 1.0) * prep["log_det_sigma"][..., None, :]
        ll = ll - 0.5 * (n - 1.0) * f * _LOG_2PI - 0.5 * f * math.log(n)
    return ll


def _predict_group(
    x: Array,
    n: float,
    xbar: Array,
    scatter: Array,
    mu: Array,
    tau2: Array,
    log_w: Array,
    prep: dict,
) -> Array:
    """``log p(x_i | examples of q)`` ``(..., N, Q)`` for new categories that all have ``n``
    examples (the super-category summed out), per parameter setting ``(...)``."""
    f = int(mu.shape[-1])
    ll = cov_example_log_likelihood(n, xbar, scatter, mu, prep)
    post = assignment_log_probs(log_w, ll)  # (..., Q, K)
    d = xbar[:, None, :] - mu[..., None, :, :]  # (..., Q, K, F)
    mean = mu[..., None, :, :] + tau2[..., None, :, :] * _einsum(
        "...kfg,...qkg->...qkf", prep["a_inv"], d
    )
    zx = prep["w_c"] @ ops.transpose(x)  # (..., K, F, N)
    zm = _einsum("...kfg,...qkg->...kfq", prep["w_c"], mean)  # (..., K, F, Q)
    quad = (
        (zx * zx).sum(-2)[..., :, :, None]
        - 2.0 * (ops.transpose(zx) @ zm)
        + (zm * zm).sum(-2)[..., :, None, :]
    )  # (..., K, N, Q)
    lp = -0.5 * (quad + (prep["log_det_c"] + f * _LOG_2PI)[..., :, None, None])
    return ops.logsumexp(lp + ops.transpose(post)[..., :, None, :], axis=-3)


def _index(idx: np.ndarray, like: Array) -> Any:
    return ops.asarray_like(idx, like).long() if ops.is_torch(like) else idx


def _by_count(counts: Array, fn: Callable) -> Array:
    """``fn(n, idx)`` ``(..., N, Q_n)`` for each distinct example count ``n`` (the new
    categories ``idx`` with that count), put together in the order of ``counts`` along the
    last axis."""
    n_host = _host(counts, np.float64)
    cols, order = [], []
    for n in np.unique(n_host):
        idx = np.flatnonzero(n_host == n)
        cols.append(fn(float(n), _index(idx, counts)))
        order.append(idx)
    out = ops.concat(cols, axis=-1)
    return out[..., _index(np.argsort(np.concatenate(order)), counts)]


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
    """``log p(x_i | examples of new category q)`` ``(..., N, Q)`` for test features ``x``
    ``(N, F)`` and new categories with example counts ``(Q,)`` (concrete: grouped by value),
    sums ``(Q, F)`` and scatter matrices ``(Q, F, F)``; parameters ``mu``, ``tau2``
    ``(..., K, F)``, ``cov`` ``(..., K, F, F)``, ``log_w`` ``(..., K)`` (one setting per leading
    index). Each new category's super-category is summed out with its posterior
    ``∝ w_k p(examples | k)``; given it, the Gaussian predictive of the module docstring."""

    def group(n: float, ix: Any) -> Array:
        prep = cov_prepare(n, tau2, cov)
        return _predict_group(x, n, sums[ix] / n, scatter[ix], mu, tau2, log_w, prep)

    return _by_count(counts, group)


def _equal_volume(cov: Array, prior_cov: Array) -> Array:
    """``cov`` ``(..., F, F)`` rescaled to the determinant of ``prior_cov`` ``(F, F)``: each
    super-category keeps the *shape* of its metric (the directions its categories vary in)
    but not its volume."""
    f = int(cov.shape[-1])
    gap = _log_det_chol(_cholesky(prior_cov)) - _log_det_chol(_cholesky(cov))
    return cov * _exp(gap / f)[..., None, None]


def _exp(x: Array) -> Array:
    return x.exp() if ops.is_torch(x) else ops._jnp().exp(x)


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
        equal_volume: bool = False,
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
        if equal_volume:
            self.cov = _equal_volume(self.cov, ops.asarray_like(p0, like))
        self._prepared: dict = {}  # cov_prepare per number of examples, reused across calls
        self._scatter = sc

    @classmethod
    def from_gibbs(
        cls,
        base: HDNormalPosterior,
        scatter: Any,
        nu0: float = 1000.0,
        prior_cov: Any = None,
        alpha: float = 1.0,
        num_sweeps: int = 20,
        num_keep: int = 10,
        seed: int = 0,
        equal_volume: bool = False,
    ) -> HDCovPosterior:
        """Super-categories regrouped by :func:`gibbs_super_categories` (categories that vary
        alike share one), started from ``base``'s point clustering, with ``base``'s posterior
        means of ``m``, ``lam``, ``tau``, ``sigma``; per kept sweep ``mu_k`` is the conjugate
        posterior mean given its members, ``Sigma_k`` :func:`niw_posterior_covariance` with
        the hard assignments, ``w_k = (n_k + alpha / K) / (C + alpha)``. Arrays in ``base``'s
        backend."""
        like = base.mu
        k = int(like.shape[-2])
        n = _host(base.counts, np.float64)
        s1 = _host(base.sums, np.float64)
        sc = _host(scatter, np.float64)
        c, f = s1.shape
        if sc.shape != (c, f, f):
            raise ValueError(f"scatter must have shape {(c, f, f)}, got {sc.shape}")
        p0 = pooled_covariance(sc, n) if prior_cov is None else _host(prior_cov, np.float64)
        mean = {key: _host(base.samples[key], np.float64).mean(0) for key in ("m",)}
        lam2 = (_host(base.samples["lam"], np.float64) ** 2).mean(0)
        tau2 = _host(base.tau2, np.float64).mean(0).mean(0)  # (F,) shared (or averaged)
        sigma2 = _host(base.sigma2, np.float64).mean(0).mean(0)
        init = _host(base.clustering()).astype(np.int64)
        init = np.unique(init, return_inverse=True)[1].reshape(-1)
        z = gibbs_super_categories(
            n,
            s1,
            sc,
            init,
            mean["m"],
            lam2,
            tau2,
            sigma2,
            k,
            alpha,
            nu0,
            p0,
            num_sweeps,
            num_keep,
            seed,
        )
        xbar = s1 / n[:, None]
        v = tau2[None] + sigma2[None] / n[:, None]
        resp = np.eye(k)[z]  # (S, C, K)
        prec = 1.0 / lam2 + np.einsum("sck,cf->skf", resp, 1.0 / v)
        mu = (mean["m"] / lam2 + np.einsum("sck,cf->skf", resp, xbar / v)) / prec
        log_w = np.log((resp.sum(1) + alpha / k) / (c + alpha))
        cov = np.stack([(nu0 * p0 + np.einsum("ck,cfg->kfg", r, sc)) for r in resp])
        cov = cov / (nu0 + np.einsum("sck,c->sk", resp, n - 1.0))[..., None, None]
        self = cls.__new__(cls)
        self.nu0, self.base, self.keep, self.assignments = nu0, base, None, z
        self.mu, self.log_w, self.cov = (ops.asarray_like(a, like) for a in (mu, log_w, cov))
        if equal_volume:
            self.cov = _equal_volume(self.cov, ops.asarray_like(p0, like))
        self.tau2 = ops.asarray_like(np.broadcast_to(tau2, mu.shape).copy(), like)
        self._prepared = {}
        self._scatter = sc
        return self

    def with_equal_volume(self, prior_cov: Any = None) -> HDCovPosterior:
        """A copy whose covariances are rescaled to the determinant of ``prior_cov``
        (``None``: the known categories' pooled covariance): the super-categories keep the shape
        of their metrics, not their volumes."""
        if prior_cov is None:
            base = self.base
            prior_cov = pooled_covariance(self._scatter, base.counts)
        out = copy.copy(self)
        out.cov = _equal_volume(self.cov, ops.asarray_like(_host(prior_cov, np.float64), self.mu))
        out._prepared = {}
        return out

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

        def group(n: float, ix: Any) -> Array:
            if n not in self._prepared:
                self._prepared[n] = cov_prepare(n, self.tau2, self.cov)
            xbar = sums[ix] / n
            lp = _predict_group(
                x, n, xbar, scatter[ix], self.mu, self.tau2, self.log_w, self._prepared[n]
            )  # (S, N, Q_n)
            return ops.logsumexp(lp, axis=0) - math.log(self.num_samples)

        return _by_count(counts, group)


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


# ---- super-categories that share a metric: collapsed Gibbs over the assignments -----------


def _iw_log_norm(log_det_psi: float, nu: float, f: int) -> float:
    """``log`` of the inverse-Wishart normaliser
    ``2^(nu F / 2) Gamma_F(nu / 2) |Psi|^(-nu / 2)``."""
    # lazy: scipy (heavy) only for the collapsed Gibbs regrouping, an optional step
    from scipy.special import multigammaln

    return 0.5 * nu * f * math.log(2.0) + float(multigammaln(0.5 * nu, f)) - 0.5 * nu * log_det_psi


def gibbs_super_categories(
    counts: Any,
    sums: Any,
    scatter: Any,
    init: Any,
    m: Any,
    lam2: Any,
    tau2: Any,
    sigma2: Any,
    num_super: int,
    alpha: float = 1.0,
    nu0: float = 1000.0,
    prior_cov: Any = None,
    num_sweeps: int = 20,
    num_keep: int = 10,
    seed: int = 0,
) -> np.ndarray:
    """Collapsed Gibbs sampling of the known categories' super-categories ``(num_keep, C)``
    (numpy int64; the last ``num_keep`` sweeps) when a super-category carries a full
    within-category covariance as well as a mean, so that categories that *vary* alike are
    grouped (the metric the HD model transfers). Host numpy, float64.

    Model, everything but the assignments integrated out: ``z_c`` with a symmetric
    ``Dirichlet(alpha / K)`` prior over ``K = num_super`` (predictive ``∝ n_k + alpha / K``);
    ``Sigma_k ~ IW(nu0 Sigma_0, nu0 + F + 1)`` and a category's scatter contributes
    ``|Sigma_k|^(-(n_c - 1)/2) exp(-tr(Sigma_k^-1 S_c) / 2) (2 pi)^(-(n_c - 1) F / 2)`` (the
    inverse-Wishart marginal: a ratio of normalisers); per feature ``mu_k ~ N(m, lam2)`` and the
    category mean ``xbar_c ~ N(mu_k, tau2 + sigma2 / n_c)`` (the diagonal HD model's
    between- and within-category variances, fixed at ``tau2``, ``sigma2`` ``(F,)``).
    ``counts`` ``(C,)``, ``sums`` ``(C, F)``, ``scatter`` ``(C, F, F)``, ``init`` ``(C,)``
    starting assignments in ``[0, K)``; ``m``, ``lam2`` ``(F,)``; ``prior_cov`` ``Sigma_0``
    (``None``: :func:`pooled_covariance`)."""
    check_nu0(nu0)
    if math.isinf(nu0):
        raise ValueError("gibbs_super_categories needs a finite nu0")
    n = _host(counts, np.float64)
    s1, sc = _host(sums, np.float64), _host(scatter, np.float64)
    c, f = s1.shape
    if sc.shape != (c, f, f) or n.shape != (c,):
        raise ValueError(f"counts, sums, scatter must be ({c},), ({c}, {f}), ({c}, {f}, {f})")
    z = _host(init).astype(np.int64).copy()
    if z.shape != (c,) or z.min() < 0 or z.max() >= num_super:
        raise ValueError(f"init must be ({c},) integers in [0, {num_super})")
    if num_keep < 1 or num_sweeps < num_keep:
        raise ValueError("need 1 <= num_keep <= num_sweeps")
    p0 = pooled_covariance(sc, n) if prior_cov is None else _host(prior_cov, np.float64)
    m, lam2, tau2, sigma2 = (_host(a, np.float64) for a in (m, lam2, tau2, sigma2))
    xbar = s1 / n[:, None]
    v = tau2[None] + sigma2[None] / n[:, None]  # (C, F) variance of a category mean about mu_k
    dof = n - 1.0
    rng = np.random.default_rng(seed)

    def logdet(a: np.ndarray) -> float:
        return float(np.linalg.slogdet(a)[1])

    psi = np.stack([nu0 * p0 + sc[z == k].sum(0) for k in range(num_super)])
    nu = np.array([nu0 + f + 1.0 + dof[z == k].sum() for k in range(num_super)])
    ld = np.array([logdet(p) for p in psi])
    size = np.bincount(z, minlength=num_super).astype(np.float64)
    prec_sum = np.stack([(1.0 / v[z == k]).sum(0) for k in range(num_super)])  # (K, F)
    mean_sum = np.stack([(xbar[z == k] / v[z == k]).sum(0) for k in range(num_super)])
    keep = []
    for sweep in range(num_sweeps):
        for i in rng.permutation(c):
            k = z[i]
            psi[k] -= sc[i]
            nu[k] -= dof[i]
            ld[k] = logdet(psi[k])
            size[k] -= 1.0
            prec_sum[k] -= 1.0 / v[i]
            mean_sum[k] -= xbar[i] / v[i]
            lp = np.log(size + alpha / num_super)
            for j in range(num_super):
                lp[j] += (
                    _iw_log_norm(logdet(psi[j] + sc[i]), nu[j] + dof[i], f)
                    - _iw_log_norm(ld[j], nu[j], f)
                    - 0.5 * dof[i] * f * _LOG_2PI
                )
            prec = 1.0 / lam2[None] + prec_sum  # (K, F) posterior precision of mu_k
            mean = (m[None] / lam2[None] + mean_sum) / prec
            var = 1.0 / prec + v[i][None]
            lp += -0.5 * (np.log(2.0 * np.pi * var) + (xbar[i][None] - mean) ** 2 / var).sum(-1)
            p = np.exp(lp - lp.max())
            k = int(rng.choice(num_super, p=p / p.sum()))
            z[i] = k
            psi[k] += sc[i]
            nu[k] += dof[i]
            ld[k] = logdet(psi[k])
            size[k] += 1.0
            prec_sum[k] += 1.0 / v[i]
            mean_sum[k] += xbar[i] / v[i]
        if sweep >= num_sweeps - num_keep:
            keep.append(z.copy())
    return np.stack(keep)
