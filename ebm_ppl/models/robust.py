"""The robust Boltzmann machine (Tang, Salakhutdinov & Hinton, CVPR 2012), written once for
torch and JAX.

The generative story (the slides' "learning structured and robust models"): a clean image
``x`` ``(D,)`` from a Gaussian-Bernoulli RBM (hidden ``h``), a binary mask ``s`` ``(D,)``
from a binary RBM (hidden ``g``; the mask has shape structure, not independent pixels), and
the observed image

    ``v_i | x_i, s_i = 1 ~ N(x_i, tau_i^2)``   (the pixel shows the clean image),
    ``v_i | s_i = 0     ~ N(mu_i, varsigma_i^2)``   (occluded: a broad outlier distribution),

or, with mixture weights ``w`` ``(K,)`` (:class:`Noise`), the outlier density is a Gaussian
mixture ``v_i | s_i = 0 ~ sum_k w_k N(mu_ki, varsigma_ki^2)`` (e.g. one component for an
occluder's ink and others for a texture). Every formula below uses the outlier density only
through ``log p_out(v_i)`` of the *observed* pixel, so the mixture's component is summed out
exactly and all conditionals stay closed form.

Written with normalized observation densities, this directed reading is the RoBM of the
paper (whose energy has the same conditionals; the Gaussian normalizers there are absorbed
in the mask RBM's visible bias). The marginal ``p(v_i | x_i)`` is a heavy-tailed mixture.

Every block conditional given the observed ``v`` is closed form:

- ``h | x`` and ``g | s``: the RBMs' own hidden conditionals;
- ``x | h, s, v``: ``N(b + sigma W h, sigma^2)`` times ``N(v; x, tau^2)^s``: precision
  ``1/sigma^2 + s/tau^2`` (a :class:`~ebm_ppl.models.fields.Field` with
  ``precision = s / tau^2``, ``linear = s v / tau^2``);
- ``s | g, x, v``: logits ``d + U g + log N(v; x, tau^2) - log N(v; mu, varsigma^2)``.

:func:`gibbs_sweep` samples ``(x, s)`` jointly given ``(h, g)`` (``x`` integrated out of
``s``'s conditional); the PPL kernels (``BlockGibbs``) derive the fields above by autodiff
from the program and alternate the two sites. Variational
inference (the slides' "Inference: variational inference; learning: stochastic
approximation") is :func:`mean_field`, a factorial ``Q(x) Q(h) Q(s) Q(g)`` with Gaussian
``Q(x)``, whose bound :func:`mean_field_bound` is the positive phase of SA learning
(:class:`RobustVisibleMethods`, trained with ``SAMLE``). :func:`exact_posterior`
enumerates ``h`` and ``s`` of tiny models: the oracle of the tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

from ebm_ppl import ops
from ebm_ppl.models.family import check_values
from ebm_ppl.models.fields import Field, combine_gaussian
from ebm_ppl.models.gaussian_rbm import hidden_input, log_visible_integral, visible_mean
from ebm_ppl.models.rbm import hidden_logits, visible_logits
from ebm_ppl.models.variational import (
    VisibleSiteMethods,
    bernoulli_entropy,
    check_mean_field_args,
    max_abs_diff,
)
from ebm_ppl.ops import Array

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class Noise(NamedTuple):
    """The observation model: ``tau`` (noise of shown pixels, a number or ``(D,)``) and the
    outlier density of occluded pixels.

    - ``weights`` ``None`` (the default): one Gaussian ``N(mu_i, varsigma_i^2)``; ``mu`` and
      ``varsigma`` are numbers or ``(D,)``.
    - ``weights`` ``(K,)`` (positive; normalized to sum to 1 where used): a Gaussian mixture
      ``sum_k w_k N(mu_ki, varsigma_ki^2)``; ``mu`` and ``varsigma`` have shape ``(K,)``
      (each component shared by all pixels), ``(K, 1)`` or ``(K, D)``.
    """

    tau: Array
    mu: Array
    varsigma: Array
    weights: Array | None = None


class MeanField(NamedTuple):
    """A factorial posterior ``Q``: ``x_mean``/``x_var`` (Gaussian ``Q(x)``), ``h`` (clean
    hidden marginals), ``s`` (mask marginals), ``g`` (mask hidden marginals)."""

    x_mean: Array
    x_var: Array
    h: Array
    s: Array
    g: Array


def normal_log_prob(v: Array, loc: Array, scale: Array) -> Array:
    """Elementwise ``log N(v; loc, scale^2)``."""
    return -(((v - loc) / scale) ** 2) / 2.0 - ops.log(scale + 0.0 * v) - _HALF_LOG_2PI


def _mixture(noise: Noise) -> tuple[Array, Array, Array]:
    """A mixture outlier's ``(loc, scale, log_weights)``: ``(K, 1)`` or ``(K, D)``, the same,
    and ``(K, 1)`` normalized log weights."""
    w = noise.weights
    k = int(w.shape[-1])
    log_w = ops.log(w / w.sum())[:, None]
    return noise.mu.reshape(k, -1), noise.varsigma.reshape(k, -1), log_w


def _outlier(v: Array, noise: Noise) -> Array:
    """``log p_out(v)``, elementwise, shape of ``v`` ``(..., D)``: an occluded pixel's
    density, ``log N(v; mu, varsigma^2)`` or, for a mixture, ``log sum_k w_k N(v; mu_k,
    varsigma_k^2)``."""
    if noise.weights is None:
        return normal_log_prob(v, noise.mu, noise.varsigma)
    loc, scale, log_w = _mixture(noise)
    return ops.logsumexp(log_w + normal_log_prob(v[..., None, :], loc, scale), axis=-2)


def _expected_shown(v: Array, x_mean: Array, x_var: Array, noise: Noise) -> Array:
    """``E_Q[log N(v; x, tau^2)] = log N(v; x_mean, tau^2) - x_var / (2 tau^2)``,
    elementwise, under a Gaussian ``Q(x)``: a shown pixel's expected density."""
    return normal_log_prob(v, x_mean, noise.tau) - x_var / (2.0 * noise.tau**2)


def log_likelihood(v: Array, x: Array, s: Array, noise: Noise) -> Array:
    """``log p(v | x, s) = sum_i s_i log N(v_i; x_i, tau_i^2) + (1 - s_i) log p_out(v_i)``
    (``p_out`` the outlier density of :class:`Noise`), shape ``(...,)``."""
    on = normal_log_prob(v, x, noise.tau)
    off = _outlier(v, noise)
    return (s * on + (1.0 - s) * off).sum(-1)


def sample_observation(key: Any, x: Array, s: Array, noise: Noise) -> Array:
    """A draw of ``v ~ p(v | x, s)``, shape of ``x`` (a mixture outlier: each occluded pixel's
    component drawn first, from the weights)."""
    k_z, k_c = ops.split(key, 2)
    z = ops.normal(k_z, tuple(x.shape), x)
    if noise.weights is None:
        loc, scale = noise.mu, noise.varsigma
    else:
        mu, vs, log_w = _mixture(noise)
        k = int(log_w.shape[0])
        comp = ops.categorical(k_c, log_w[:, 0] + 0.0 * x[..., None])  # (..., D)
        pick = ops.one_hot(comp, k, x)  # (..., D, K)
        loc = (pick * ops.transpose(mu + 0.0 * x[..., None, :])).sum(-1)
        scale = (pick * ops.transpose(vs + 0.0 * x[..., None, :])).sum(-1)
    return ops.where(s > 0.5, x + noise.tau * z, loc + scale * z)


def clean_field(v: Array, s: Array, noise: Noise) -> Field:
    """The factor ``N(v; x, tau^2)^s`` on the clean image, as a field on ``x``."""
    prec = s / noise.tau**2
    return Field(prec * v, prec)


def check_noise(noise: Noise, d: int) -> None:
    """Each noise parameter must be a positive (scales) / finite number or ``(D,)`` array;
    with mixture ``weights`` ``(K,)`` (positive), the outlier's ``mu`` and ``varsigma`` must
    have shape ``(K,)``, ``(K, 1)`` or ``(K, D)`` (:class:`Noise`)."""
    shapes = {"noise_scale": ((), (1,), (d,))}
    if noise.weights is None:
        shapes["outlier_loc"] = shapes["outlier_scale"] = ((), (1,), (d,))
        what = f"be a number or have shape ({d},)"
    else:
        w = noise.weights
        w_shape = tuple(getattr(w, "shape", ()))
        if len(w_shape) != 1 or w_shape[0] < 1:
            raise ValueError(f"outlier_weights must have shape (K,), K >= 1, got {w_shape}")
        if ops.is_concrete(w) and (not ops.all_finite(w) or float(ops.to_numpy(w).min()) <= 0):
            raise ValueError("outlier_weights must be positive and finite")
        k = int(w.shape[0])
        shapes["outlier_loc"] = shapes["outlier_scale"] = ((k,), (k, 1), (k, d))
        what = f"have shape ({k},), ({k}, 1) or ({k}, {d}) (K = {k} mixture weights)"
    for name, x in zip(("noise_scale", "outlier_loc", "outlier_scale"), noise[:3]):
        shape = tuple(getattr(x, "shape", ()))
        if shape not in shapes[name]:
            if name == "noise_scale":
                raise ValueError(f"{name} must be a number or have shape ({d},), got {shape}")
            raise ValueError(f"{name} must {what}, got shape {shape}")
        if ops.is_concrete(x) and not ops.all_finite(x):
            raise ValueError(f"{name} must be finite")
        if name != "outlier_loc" and ops.is_concrete(x) and float(ops.to_numpy(x).min()) <= 0:
            raise ValueError(f"{name} must be positive")


def check_image(v: Array, d: int, name: str = "images") -> None:
    """Observed images: real ``(..., D)``, finite."""
    if check_values(v, d, name) and not ops.all_finite(v):
        raise ValueError(f"{name} contains NaN or infinite values")


def check_init_mask(init_mask: Any) -> float | str:
    """A mean-field start of the mask: a number in ``[0, 1]`` (returned as a float) or
    ``"evidence"``; anything else is a ``ValueError``."""
    if isinstance(init_mask, str):
        if init_mask != "evidence":
            raise ValueError(
                f"init_mask must be a number in [0, 1] or 'evidence', got {init_mask!r}"
            )
        return init_mask
    if not 0.0 <= float(init_mask) <= 1.0:
        raise ValueError(f"init_mask must be in [0, 1], got {init_mask!r}")
    return float(init_mask)


def gibbs_sweep(
    key: Any, clean_params: tuple, mask_params: tuple, noise: Noise, v: Array, x: Array, s: Array
) -> tuple[Array, Array, Array, Array]:
    """One sweep of blocked Gibbs given the observed ``v``, in two blocks:

    1. ``h ~ p(h | x)`` and ``g ~ p(g | s)`` (independent given ``(x, s)``);
    2. ``(x, s) ~ p(x, s | h, g, v)``, exactly: first ``s_i`` with ``x_i`` integrated out,
       logits ``d_i + (U g)_i + log N(v_i; m_i, sigma_i^2 + tau_i^2) - log p_out(v_i)``
       with ``m = b + sigma W h``, then ``x ~ p(x | h, s, v)``
       (:func:`clean_field`).

    Sampling ``x`` and ``s`` jointly mixes far better than alternating them (a pixel whose
    ``x`` sits on the occluder would keep ``s = 1``); the PPL kernels, which see only the
    program, alternate. ``clean_params`` are ``(W, b, c, sigma)``, ``mask_params``
    ``(U, d, e)``. Returns ``(x, s, h, g)``."""
    return _blocked_sweep(key, clean_params, mask_params, noise, v, x, s)[:4]


def _blocked_sweep(key, clean_params, mask_params, noise, v, x, s):
    """:func:`gibbs_sweep`, also returning the conditional means it sampled from:
    ``E[x | h, s, v]`` and ``P(s = 1 | h, g, v)`` (for Rao-Blackwellised averages)."""
    w, b, c, sigma = clean_params
    u, d, e = mask_params
    k_h, k_g, k_s, k_x = ops.split(key, 4)
    h = ops.bernoulli(k_h, ops.sigmoid(hidden_input(w, c, sigma, x)))
    g = ops.bernoulli(k_g, ops.sigmoid(hidden_logits(u, e, s)))
    m = visible_mean(w, b, sigma, h)
    var = sigma**2 + 0.0 * m
    shown = normal_log_prob(v, m, (var + noise.tau**2) ** 0.5)
    p_shown = ops.sigmoid(visible_logits(u, d, g) + shown - _outlier(v, noise))
    s = ops.bernoulli(k_s, p_shown)
    mean, var = combine_gaussian(m, var, clean_field(v, s, noise))
    x = mean + var**0.5 * ops.normal(k_x, tuple(mean.shape), mean)
    return x, s, h, g, mean, p_shown


def mean_field(
    clean_params: tuple,
    mask_params: tuple,
    noise: Noise,
    v: Array,
    num_iters: int = 50,
    damping: float = 0.0,
    tol: float | None = 1e-5,
    init_mask: float | str = 0.0,
    collapsed: bool = False,
) -> MeanField:
    """The mean-field fixed point for observed ``v`` ``(..., D)``: coordinate updates

    - ``h = g(c + W^T (m / sigma))``, ``g = g(e + U^T s)``;
    - ``Q(x_i)`` precision ``1/sigma_i^2 + s_i/tau_i^2``, mean
      ``((b + sigma W h)_i / sigma_i^2 + s_i v_i / tau_i^2) / precision``;
    - ``s_i = g(d_i + (U g)_i + E_Q[log N(v_i; x_i, tau_i^2)] - log N(v_i; mu_i,
      varsigma_i^2))``, with ``E_Q[log N] = log N(v_i; m_i, tau_i^2) - var_i / (2 tau_i^2)``.

    ``clean_params`` are ``(W, b, c, sigma)``, ``mask_params`` ``(U, d, e)``; at most
    ``num_iters`` sweeps, stopping once no marginal moves by more than ``tol``. Starts from
    ``Q(s_i = 1) = init_mask``: the default 0 lets the clean model reconstruct the image
    first and then claim the pixels it explains, which avoids the poor fixed point where an
    all-shown start pulls ``x`` onto the occluder. ``init_mask="evidence"`` starts each
    ``Q(s_i)`` at its pixel's own likelihood ratio ``g(log N(v_i; r_i, sigma_i^2 + tau_i^2)
    - log N(v_i; mu_i, varsigma_i^2))``, with ``r`` the clean RBM's reconstruction of ``v``
    (no mask prior yet), and ``E_Q[x]`` at ``v`` where it is likely shown and at ``r``
    elsewhere: the first updates then start from the observed occluder rather than from a
    blank or full mask, and the clean hidden units see less of it.

    ``collapsed=True`` uses the structured family ``Q(h) Q(g) prod_i Q(s_i) Q(x_i | s_i)``
    instead (:func:`collapsed_update`): each pixel's mask is updated with its clean value
    integrated out, as in :func:`gibbs_sweep`, so a pixel counts as shown only if the clean
    model *predicts* it (``log N(v_i; m_i, sigma_i^2 + tau_i^2)``), not merely because
    ``Q(x_i)`` was pulled onto it. ``x_mean``/``x_var`` are then the moments of the
    two-component ``Q(x_i)``; the bound is :func:`mean_field_bound` with ``collapsed=True``."""
    check_mean_field_args(num_iters, damping, tol)
    init_mask = check_init_mask(init_mask)
    evidence = init_mask == "evidence"
    w, b, c, sigma = clean_params
    u, d, e = mask_params
    var_prior = sigma**2 + 0.0 * v
    off = _outlier(v, noise)

    def update(q: MeanField) -> MeanField:
        if collapsed:
            new = collapsed_update(clean_params, mask_params, noise, v, q)
            if damping == 0.0:
                return new
            return MeanField(*(damping * a + (1.0 - damping) * n for a, n in zip(q, new)))
        h = ops.sigmoid(hidden_input(w, c, sigma, q.x_mean))
        prior_mean = visible_mean(w, b, sigma, h)
        prec = 1.0 / var_prior + q.s / noise.tau**2
        x_mean = (prior_mean / var_prior + q.s * v / noise.tau**2) / prec
        x_var = 1.0 / prec
        g = ops.sigmoid(hidden_logits(u, e, q.s))
        on = _expected_shown(v, x_mean, x_var, noise)
        s = ops.sigmoid(visible_logits(u, d, g) + on - off)
        new = MeanField(x_mean, x_var, h, s, g)
        if damping == 0.0:
            return new
        return MeanField(*(damping * a + (1.0 - damping) * n for a, n in zip(q, new)))

    lead = tuple(v.shape[:-1])
    h0 = ops.sigmoid(hidden_input(w, c, sigma, v))
    x0 = v + 0.0 * b
    if evidence:  # each pixel's own likelihood ratio, the clean model reconstructing v
        recon = visible_mean(w, b, sigma, h0)
        s0 = ops.sigmoid(normal_log_prob(v, recon, (var_prior + noise.tau**2) ** 0.5) - off)
        x0 = s0 * v + (1.0 - s0) * recon
    else:
        s0 = float(init_mask) + 0.0 * v
    q0 = MeanField(
        x0,
        var_prior,
        h0,
        s0,
        ops.broadcast_to(ops.sigmoid(e), lead + (int(e.shape[-1]),)) + 0.0,
    )
    q0 = update(q0)
    return ops.fixed_point(update, q0, num_iters, tol, max_abs_diff, v)


def _shown_conditional(m: Array, var_prior: Array, v: Array, noise: Noise) -> tuple[Array, Array]:
    """``Q(x_i | s_i = 1)``: the prior ``N(m_i, sigma_i^2)`` times ``N(v_i; x_i, tau_i^2)``;
    returns its mean and variance."""
    prec = 1.0 / var_prior + 1.0 / noise.tau**2
    return (m / var_prior + v / noise.tau**2) / prec, 1.0 / prec + 0.0 * m


def collapsed_update(
    clean_params: tuple, mask_params: tuple, noise: Noise, v: Array, q: MeanField
) -> MeanField:
    """One sweep of the structured mean field ``Q(h) Q(g) prod_i Q(s_i) Q(x_i | s_i)``:

    - ``h = g(c + W^T (E_Q[x] / sigma))``, ``m = b + sigma W h``; ``g = g(e + U^T s)``;
    - ``s_i = g(d_i + (U g)_i + log N(v_i; m_i, sigma_i^2 + tau_i^2) - log N(v_i; mu_i,
      varsigma_i^2))`` (``x_i`` integrated out: the optimal ``Q(x_i, s_i)`` given ``Q(h)``,
      ``Q(g)``);
    - ``Q(x_i | s_i = 1) = N(x_i; m_i, sigma_i^2) N(v_i; x_i, tau_i^2) / Z`` and
      ``Q(x_i | s_i = 0) = N(m_i, sigma_i^2)``; ``x_mean``/``x_var`` are the moments of
      their mixture with weights ``s``."""
    w, b, c, sigma = clean_params
    u, d, e = mask_params
    var_prior = sigma**2 + 0.0 * v
    h = ops.sigmoid(hidden_input(w, c, sigma, q.x_mean))
    m = visible_mean(w, b, sigma, h)
    g = ops.sigmoid(hidden_logits(u, e, q.s))
    shown = normal_log_prob(v, m, (var_prior + noise.tau**2) ** 0.5)
    s = ops.sigmoid(visible_logits(u, d, g) + shown - _outlier(v, noise))
    x1, var1 = _shown_conditional(m, var_prior, v, noise)
    x_mean = s * x1 + (1.0 - s) * m
    second = s * (var1 + x1**2) + (1.0 - s) * (var_prior + m**2)
    return MeanField(x_mean, second - x_mean**2, h, s, g)


def expected_log_joint(
    clean_params: tuple, mask_params: tuple, noise: Noise, v: Array, q: MeanField
) -> tuple[Array, Array, Array]:
    """``(E_Q[log p~(x, h)], E_Q[log p~(s, g)], E_Q[log p(v | x, s)])``, each ``(...,)``:
    the unnormalized clean-RBM and mask-RBM log-densities and the observation term under
    the factorial ``Q`` (all exact: the energies are linear in each factor's moments)."""
    w, b, c, sigma = clean_params
    u, d, e = mask_params
    quad = (((q.x_mean - b) ** 2 + q.x_var) / (2.0 * sigma**2)).sum(-1)
    inter = ((hidden_input(w, c, sigma, q.x_mean) - c) * q.h).sum(-1)
    clean = -quad + inter + (q.h * c).sum(-1)
    mask = (q.s * d).sum(-1) + (hidden_logits(u, e, q.s) * q.g).sum(-1)
    on = _expected_shown(v, q.x_mean, q.x_var, noise)
    off = _outlier(v, noise)
    obs = (q.s * on + (1.0 - q.s) * off).sum(-1)
    return clean, mask, obs


def mean_field_bound(
    clean_params: tuple,
    mask_params: tuple,
    noise: Noise,
    v: Array,
    q: MeanField,
    log_z_clean: Any = 0.0,
    log_z_mask: Any = 0.0,
    collapsed: bool = False,
) -> Array:
    """The variational lower bound ``E_Q[log p(x, h, s, g, v)] + H(Q) <= log p(v)``, shape
    ``(...,)`` (without the log partition functions when they are left at 0).

    ``collapsed=True``: ``q`` is a fixed point of the structured family of
    :func:`collapsed_update` (``Q(x_i | s_i)`` are recomputed from ``q.h``): the clean and
    mask terms as before (with the mixture's moments), the observation term
    ``s_i E[log N(v_i; x_i, tau_i^2) | s_i = 1] + (1 - s_i) log N(v_i; mu_i, varsigma_i^2)``
    and the entropy ``H(s_i) + s_i H(x_i | s_i = 1) + (1 - s_i) H(x_i | s_i = 0)``."""
    clean, mask, obs = expected_log_joint(clean_params, mask_params, noise, v, q)
    if collapsed:
        w, b, _, sigma = clean_params
        var_prior = sigma**2 + 0.0 * v
        m = visible_mean(w, b, sigma, q.h)
        x1, var1 = _shown_conditional(m, var_prior, v, noise)
        on = _expected_shown(v, x1, var1, noise)
        obs = (q.s * on + (1.0 - q.s) * _outlier(v, noise)).sum(-1)
        h_x = 0.5 * (q.s * ops.log(var1) + (1.0 - q.s) * ops.log(var_prior)) + 0.5 + _HALF_LOG_2PI
        h_x = h_x.sum(-1)
    else:
        h_x = (0.5 * ops.log(q.x_var) + 0.5 + _HALF_LOG_2PI).sum(-1)
    ent = h_x + bernoulli_entropy(q.h) + bernoulli_entropy(q.s) + bernoulli_entropy(q.g)
    return clean + mask + obs + ent - log_z_clean - log_z_mask


def exact_posterior(clean: Any, mask: Any, noise: Noise, v: Array) -> dict:
    """Exact inference for one observed image ``v`` ``(D,)`` of a tiny model, by
    enumerating the clean RBM's hidden states and the masks (``2^F + 2^D`` states):
    ``log_marginal`` (the normalized ``log p(v)``), ``mask_states`` ``(2^D, D)`` with their
    posterior ``mask_probs``, the posterior means ``clean_mean`` ``E[x | v]`` and
    ``mask_mean`` ``E[s | v]``. ``clean``/``mask`` are the distributions (exact ``log Z``
    from their own ``log_partition``)."""
    w, b, c, sigma = (ops.stop_gradient(p) for p in clean.params)
    f, dim = int(w.shape[-1]), int(w.shape[-2])
    if f > 12 or dim > 12:
        raise ValueError("exact_posterior enumerates 2^F + 2^D states: F, D <= 12 only")
    hs = ops.binary_states(f, w)
    ss = ops.binary_states(dim, w)

    log_ph = log_visible_integral(w, b, c, sigma, hs) - clean.log_partition()  # (S_h,)
    log_ps = mask.log_prob(ss) - mask.log_partition()  # (S_s,)
    m = visible_mean(w, b, sigma, hs)  # (S_h, D)
    var_on = sigma**2 + noise.tau**2
    on = normal_log_prob(v, m, var_on**0.5)  # (S_h, D)
    off = _outlier(v, noise) + 0.0 * v  # (D,)
    lik = ss @ ops.transpose(on) + ((1.0 - ss) @ off[:, None])  # (S_s, S_h)
    joint = log_ps[:, None] + log_ph[None, :] + lik
    log_marginal = ops.logsumexp(joint.reshape(-1), axis=0)
    post = ops.softmax(joint.reshape(-1), axis=0).reshape(tuple(joint.shape))
    shrunk = (m / sigma**2 + v / noise.tau**2) / (1.0 / sigma**2 + 1.0 / noise.tau**2)
    # E[x | h, s, v]: shrunk where s = 1, the prior mean where s = 0
    cond = ss[:, None, :] * shrunk[None] + (1.0 - ss[:, None, :]) * m[None]
    clean_mean = (post[..., None] * cond).sum(0).sum(0)
    mask_probs = post.sum(-1)
    return {
        "log_marginal": log_marginal,
        "mask_states": ss,
        "mask_probs": mask_probs,
        "clean_mean": clean_mean,
        "mask_mean": (mask_probs[:, None] * ss).sum(0),
    }


class RobustLikelihoodMethods:
    r"""What the Pyro and NumPyro ``RobustLikelihood`` share: the RoBM observation model
    ``p(v | x, s)``, per pixel ``N(x_i, noise_scale_i^2)`` where the mask ``s_i = 1`` and
    ``N(outlier_loc_i, outlier_scale_i^2)`` where ``s_i = 0``, or the mixture
    ``sum_k w_k N(outlier_loc_ki, outlier_scale_ki^2)`` given ``outlier_weights`` ``w``
    ``(K,)`` (:class:`Noise`, :func:`log_likelihood`). A
    subclass stores ``clean`` ``(..., D)``, ``shown`` (the mask, ``(..., D)``) and exposes
    ``noise`` (a :class:`Noise`)."""

    clean: Array
    shown: Array
    noise: Noise

    def _likelihood_shapes(self, noise: Noise) -> tuple[tuple, tuple]:
        """Checks ``noise`` against the ``D`` pixels; returns ``(batch_shape, event_shape)``:
        the broadcast of the clean image's and the mask's batch shapes, and ``(D,)``."""
        d = int(self.clean.shape[-1])
        check_noise(noise, d)
        batch = ops.broadcast_shapes(tuple(self.clean.shape[:-1]), tuple(self.shown.shape[:-1]))
        return batch, (d,)

    def log_prob(self, value: Array) -> Array:
        """``log p(v | x, s)``, summed over pixels."""
        return log_likelihood(value, self.clean, self.shown, self.noise)


class RobustBMMethods:
    """What the Pyro and NumPyro ``RobustBM`` share: the constructor, the program
    (:meth:`model`), block Gibbs, mean field and the bound, written once. A subclass names its
    PPL adapter ``ppl``, its RBM classes ``_clean_class`` (GaussianRBM) and ``_mask_class``
    (RBM), the observation distribution class ``_likelihood_cls`` and ``_noise(noise_scale,
    outlier_loc, outlier_scale, like)``, which makes the :class:`Noise` arrays (placed like
    the array ``like``, or ``None``); it stores ``clean`` (a GaussianRBM), ``mask`` (an RBM
    over the same ``D`` pixels) and ``noise`` (a :class:`Noise`)."""

    ppl: Any
    _clean_class: type
    _mask_class: type
    _likelihood_cls: type
    _noise: Callable[..., Noise]
    clean: Any
    mask: Any
    noise: Noise

    def __init__(
        self,
        clean: Any,
        mask: Any,
        noise_scale: float | Array = 0.1,
        outlier_loc: float | Array = 0.0,
        outlier_scale: float | Array = 1.0,
        outlier_weights: Array | None = None,
    ) -> None:
        like = getattr(clean, "weights", None)  # None: not an RBM, refused below
        noise = self._noise(noise_scale, outlier_loc, outlier_scale, like, outlier_weights)
        self._init_robust(clean, mask, noise, self._clean_class, self._mask_class)

    def _init_robust(self, clean, mask, noise: Noise, clean_cls: type, mask_cls: type) -> None:
        if not isinstance(clean, clean_cls):
            raise TypeError(f"clean must be a GaussianRBM, got {type(clean).__name__}")
        if not isinstance(mask, mask_cls):
            raise TypeError(f"mask must be an RBM, got {type(mask).__name__}")
        if clean.n_visible != mask.n_visible:
            raise ValueError(
                f"clean and mask must cover the same pixels: the clean RBM has "
                f"{clean.n_visible} visible units, the mask RBM {mask.n_visible}"
            )
        if tuple(clean.batch_shape) or tuple(mask.batch_shape):
            raise ValueError("clean and mask must not have batch dimensions")
        check_noise(noise, clean.n_visible)
        self.clean, self.mask, self.noise = clean, mask, noise

    @property
    def n_pixels(self) -> int:
        return self.clean.n_visible

    def _params(self) -> tuple[tuple, tuple]:
        return (
            tuple(ops.stop_gradient(p) for p in self.clean.params),
            tuple(ops.stop_gradient(p) for p in self.mask.params),
        )

    def mean_field(
        self,
        images: Array,
        num_iters: int = 50,
        damping: float = 0.0,
        tol: float | None = 1e-5,
        init_mask: float | str = 0.0,
        collapsed: bool = False,
    ) -> MeanField:
        """The factorial posterior ``Q`` given observed ``images`` ``(..., D)``
        (:func:`mean_field`; ``collapsed=True``: the structured ``Q(x_i | s_i)`` family);
        ``Q.x_mean`` is the denoised image, ``Q.s`` the inferred mask (probability that each
        pixel shows the clean image)."""
        check_image(images, self.n_pixels)
        cp, mp = self._params()
        return mean_field(
            cp, mp, self.noise, images, num_iters, damping, tol, init_mask, bool(collapsed)
        )

    def bound(self, images: Array, log_z_clean: Any, log_z_mask: Any, **mean_field_kwargs):
        """The mean-field lower bound on ``log p(v)`` per image, given the two RBMs' log
        partition functions (exact, or AIS estimates)."""
        q = self.mean_field(images, **mean_field_kwargs)
        cp, mp = self._params()
        collapsed = bool(mean_field_kwargs.get("collapsed", False))
        return mean_field_bound(
            cp, mp, self.noise, images, q, log_z_clean, log_z_mask, collapsed=collapsed
        )

    def _check_sweeps(self, num_sweeps: Any, burn_in: Any) -> None:
        for name, x, low in (("num_sweeps", num_sweeps, 1), ("burn_in", burn_in, 0)):
            if not isinstance(x, int) or isinstance(x, bool) or x < low:
                raise ValueError(f"{name} must be an int >= {low}, got {x!r}")

    def _gibbs(self, key: Any, images: Array, num_sweeps: int, burn_in: int) -> dict:
        """Blocked Gibbs given ``images`` (:func:`gibbs_sweep`): ``burn_in`` sweeps, then the
        running means over ``num_sweeps`` sweeps of ``E[x | h, s, v]`` and ``P(s = 1 | h,
        g, v)`` (Rao-Blackwellised: the conditional means, not the draws), and the last
        state."""
        check_image(images, self.n_pixels)
        self._check_sweeps(num_sweeps, burn_in)
        cp, mp = self._params()
        noise = self.noise
        k0, k1 = ops.split(key, 2)
        x = images + 0.0
        s = ops.zeros(tuple(images.shape), images) + 1.0

        def sweep(k, carry):
            x, s, _, _ = gibbs_sweep(k, cp, mp, noise, images, carry[0], carry[1])
            return x, s

        if burn_in:
            x, s = ops.iterate(sweep, k0, (x, s), burn_in, images)

        def accumulate(k, carry):
            x, s, sum_x, sum_s = carry
            x, s, _, _, ex, ps = _blocked_sweep(k, cp, mp, noise, images, x, s)
            return x, s, sum_x + ex, sum_s + ps

        zero = ops.zeros(tuple(images.shape), images)
        x, s, sum_x, sum_s = ops.iterate(accumulate, k1, (x, s, zero, zero), num_sweeps, images)
        return {
            "clean_mean": sum_x / num_sweeps,
            "mask_mean": sum_s / num_sweeps,
            "clean": x,
            "mask": s,
        }

    def model(self, images: Array | None = None, num_images: int | None = None) -> Array:
        """The generative program: a plate ``"images"`` over ``clean ~ GaussianRBM``,
        ``mask ~ RBM`` and ``image ~ p(v | clean, mask)`` (observed on ``images`` when
        given). Returns the images."""
        if images is None and num_images is None:
            raise ValueError("model needs images (to observe) or num_images (to generate)")
        n = int(images.shape[0]) if images is not None else int(num_images)
        if images is not None:
            check_image(images, self.n_pixels)
            if images.ndim != 2:
                raise ValueError(f"images must have shape (N, {self.n_pixels})")
        ppl = self.ppl
        with ppl.plate("images", n):
            x = ppl.sample("clean", self.clean.expand((n,)))
            s = ppl.sample("mask", self.mask.expand((n,)))
            like = self._likelihood_cls(x, s, *self.noise[:3], outlier_weights=self.noise.weights)
            return ppl.sample("image", like, obs=images)


class RobustVisibleMethods(VisibleSiteMethods):
    """What the Pyro and NumPyro ``RobustBMVisible`` share: the RoBM seen through its
    observed image ``(..., D)``, the site SA-MLE learns from occluded data.

    ``log_prob(v)`` is the mean-field bound on ``log p~(v)`` (without the two ``log Z``);
    ``contrast`` is the SA surrogate whose positive phase is ``E_Q[log p~(x, h)] +
    E_Q[log p~(s, g)]`` at the mean-field posterior of the data and whose negative phase is
    ``log p~(x) + log p~(s)`` (free energies) at the persistent prior chains; the chains are
    ``[x, s]`` ``(..., 2 D)``, advanced by the two RBMs' own transitions. The noise model is
    held fixed."""

    robust: Any
    num_iters: int
    damping: float
    tol: float | None
    collapsed: bool = False
    init_mask: float | str = 0.0

    _robust_class: type

    def __init__(
        self,
        robust: Any,
        num_iters: int = 30,
        damping: float = 0.0,
        tol: float | None = 1e-5,
        collapsed: bool = False,
        init_mask: float | str = 0.0,
    ) -> None:
        kind = "a RobustBM"
        self._init_site("robust", robust, self._robust_class, kind, num_iters, damping, tol)
        self.collapsed = bool(collapsed)
        self.init_mask = check_init_mask(init_mask)
        self._finish_init((), (robust.n_pixels,), None)

    @property
    def n_visible(self) -> int:
        return self.robust.n_pixels

    def _check_value(self, value: Array, name: str = "value") -> None:
        check_image(value, self.n_visible, name)

    def _q(self, value: Array) -> MeanField:
        r = self.robust
        cp, mp = r._params()
        q = mean_field(
            cp,
            mp,
            r.noise,
            value,
            self.num_iters,
            self.damping,
            self.tol,
            self.init_mask,
            self.collapsed,
        )
        return MeanField(*(ops.stop_gradient(a) for a in q))

    def log_prob(self, value: Array) -> Array:
        """Mean-field lower bound on ``log p~(v)`` (the bound without ``log Z``)."""
        self._check_value(value)
        return self.log_prob_unchecked(value)

    def log_prob_unchecked(self, value: Array) -> Array:
        r = self.robust
        q = self._q(value)
        bound = mean_field_bound(
            r.clean.params, r.mask.params, r.noise, value, q, collapsed=self.collapsed
        )
        return self._out(bound, value)

    def contrast(self, data: Array, samples: Array, w_data, w_model, cache=None) -> Array:
        """The SA-MLE surrogate (gradient = model statistics - posterior statistics)."""
        r = self.robust
        q = self._q(data)
        clean, mask, _ = expected_log_joint(r.clean.params, r.mask.params, r.noise, data, q)
        d = self.n_visible
        xs, ss = samples[..., :d], samples[..., d:]
        model = r.clean.log_prob_unchecked(xs).sum() + r.mask.log_prob_unchecked(ss).sum()
        return -(w_data * (clean + mask).sum() - w_model * model)

    def init_chain(self, key: Any, shape: tuple) -> Array:
        k1, k2 = ops.split(key, 2)
        lead = tuple(shape[:-1])
        d = self.n_visible
        x = self.robust.clean.init_chain(k1, lead + (d,))
        s = self.robust.mask.init_chain(k2, lead + (d,))
        return ops.concat([x, s], axis=-1)

    def transition(self, key: Any, value: Array, num_steps: int = 1, cache: Any = None):
        d = self.n_visible
        k1, k2 = ops.split(key, 2)
        x, _ = self.robust.clean.transition(k1, value[..., :d], num_steps)
        s, _ = self.robust.mask.transition(k2, value[..., d:], num_steps)
        return ops.concat([x, s], axis=-1), None

    def _sample(self, key: Any, sample_shape: tuple) -> Array:
        k1, k2, k3 = ops.split(key, 3)
        shape = tuple(sample_shape) + tuple(self.batch_shape)
        r = self.robust
        x = r.clean._sample(k1, shape)
        s = r.mask._sample(k2, shape)
        return sample_observation(k3, x, s, r.noise)

    def monitor(self, value: Array) -> Array:
        """Mean over the batch of ``sum_i Q(s_i) (v_i - E_Q[x_i])^2``: how well the clean
        model explains the pixels it claims (a training monitor)."""
        q = self._q(value)
        err = (q.s * (value - q.x_mean) ** 2).reshape(value.shape[0], -1).sum(-1)
        return err.mean()
