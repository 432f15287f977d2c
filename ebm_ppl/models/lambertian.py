"""The deep Lambertian model (Tang, Salakhutdinov & Hinton, ICML 2012), written once for torch
and JAX.

Image formation (the slides' "Lambertian reflectance model"): each pixel ``i`` of an
``H x W`` image has an albedo ``a_i`` (diffuse reflectivity; illumination independent), a
unit surface normal ``n_i`` and is lit by one distant light ``l`` (a 3-vector: direction
times strength):

    ``y_i = a_i max(0, n_i . l) + eps_i``,  ``eps_i ~ N(0, noise^2)``.

The priors of the PPL program (:class:`DeepLambertianMethods.model`):

- albedo ``a = offset + scale * v``, where ``v`` is the visible layer of a Gaussian DBM
  (the "albedo DBM", pretrained on albedo-like images; the site's value is the DBM state);
- the surface as a height field ``z`` ``(H, W)`` with a Gaussian smoothness prior
  ``N(0, height_scale^2)`` per pixel times ``exp(-smoothness / 2 * sum |grad z|^2)``;
  normals by finite differences, ``n ~ (-dz/dx, -dz/dy, 1)`` normalised
  (:func:`normals_from_height`), so every surface is integrable; or, instead of the
  per-pixel Gaussian, a learned :class:`HeightPrior` (probabilistic PCA of example surfaces,
  :func:`fit_height_prior`; the examples can come from :func:`photometric_stereo` of
  subjects seen under several known lights, as Yale B's are);
- ``l ~ N(light_loc, light_scale^2 I)``.

Given the shading ``s_i = max(0, n_i . l)`` the observation is linear-Gaussian in ``v``:
``N(y_i; offset s_i + scale s_i v_i, noise^2)`` is the :class:`~ebm_ppl.models.fields.Field`
``precision = (scale s_i / noise)^2``, ``linear = scale s_i (y_i - offset s_i) / noise^2``
(:func:`albedo_field`), so block Gibbs samples the DBM layers and the albedo exactly, while
NUTS (NumPyro ``HMCGibbs``, Pyro :class:`~ebm_ppl.pyro.HMCGibbs`) or gradient steps take
the height field and the light. :func:`exact_albedo_posterior` enumerates a tiny DBM's
hidden layers for the tests; :func:`map_update` is one step of the coordinate ascent
(mean field for the DBM, the exact conditional mean of the albedo, gradient steps on the
surface and light) used to infer many images at once.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ebm_ppl import ops
from ebm_ppl.models.dbm import _odd_free_energy, bottom_up, layer_logits, split_odd
from ebm_ppl.models.family import check_values
from ebm_ppl.models.fields import Field, combine_gaussian
from ebm_ppl.ops import Array

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class HeightPrior(NamedTuple):
    """A Gaussian prior over height fields flattened to ``(H*W,)``: ``mean`` ``(H*W,)``,
    ``precision`` ``(H*W, H*W)`` (the inverse covariance) and ``log_det`` (``log det
    precision``). Made from example surfaces by :func:`fit_height_prior`."""

    mean: Any
    precision: Any
    log_det: float


class LambertianPriors(NamedTuple):
    """The fixed numbers of the program: albedo ``offset``/``scale`` (``a = offset + scale
    v``), ``height_scale``, ``smoothness``, ``light_loc`` ``(3,)``, ``light_scale``,
    ``noise`` (observation standard deviation), the image ``shape`` ``(H, W)`` and an
    optional learned :class:`HeightPrior` ``height_prior`` (which then replaces the
    per-pixel ``N(0, height_scale^2)`` term; the smoothness factor stays)."""

    offset: float
    scale: float
    height_scale: float
    smoothness: float
    light_loc: Any
    light_scale: float
    noise: float
    shape: tuple
    height_prior: Any = None


def check_priors(p: LambertianPriors) -> None:
    for name in ("scale", "height_scale", "light_scale", "noise"):
        x = float(getattr(p, name))
        if not (math.isfinite(x) and x > 0):
            raise ValueError(f"{name} must be a positive number, got {x!r}")
    if not (math.isfinite(float(p.smoothness)) and float(p.smoothness) >= 0):
        raise ValueError(f"smoothness must be >= 0, got {p.smoothness!r}")
    if not math.isfinite(float(p.offset)):
        raise ValueError("offset must be finite")
    shape = tuple(p.shape)
    if len(shape) != 2 or min(shape) < 2:
        raise ValueError(f"shape must be (H, W) with H, W >= 2, got {p.shape!r}")
    if tuple(getattr(p.light_loc, "shape", (len(p.light_loc),))) != (3,):
        raise ValueError("light_loc must have 3 entries (a light direction times strength)")
    if p.height_prior is not None:
        hp, d = p.height_prior, shape[0] * shape[1]
        if not isinstance(hp, HeightPrior):
            raise TypeError(
                f"height_prior must be a HeightPrior (see fit_height_prior), got "
                f"{type(hp).__name__}"
            )
        if tuple(hp.mean.shape) != (d,) or tuple(hp.precision.shape) != (d, d):
            raise ValueError(
                f"height_prior must have mean ({d},) and precision ({d}, {d}) for shape "
                f"{shape}, got {tuple(hp.mean.shape)} and {tuple(hp.precision.shape)}"
            )


def _diffs(z: Array) -> tuple[Array, Array]:
    """Forward differences of ``z`` ``(..., H, W)`` with the last row/column repeated
    (zero slope at the far edges): ``(dz/dx, dz/dy)``, each ``(..., H, W)``."""
    dx = ops.concat([z[..., :, 1:] - z[..., :, :-1], 0.0 * z[..., :, -1:]], axis=-1)
    dy = ops.concat([z[..., 1:, :] - z[..., :-1, :], 0.0 * z[..., -1:, :]], axis=-2)
    return dx, dy


def normals_from_height(z: Array) -> Array:
    """Unit normals ``(..., H*W, 3)`` of the height field ``z`` ``(..., H, W)``:
    ``(-dz/dx, -dz/dy, 1) / norm``, finite differences on a unit pixel grid."""
    dx, dy = _diffs(z)
    norm = (dx**2 + dy**2 + 1.0) ** 0.5
    n = [(-dx / norm), (-dy / norm), (1.0 / norm)]
    lead = tuple(z.shape[:-2])
    return ops.concat([c.reshape(lead + (-1, 1)) for c in n], axis=-1)


def shading(z: Array, light: Array) -> Array:
    """``max(0, n_i . l)`` ``(..., H*W)`` for heights ``(..., H, W)`` and light ``(..., 3)``."""
    n = normals_from_height(z)
    dot = (n * light[..., None, :]).sum(-1)
    return ops.where(dot > 0, dot, 0.0 * dot)


def render(albedo: Array, z: Array, light: Array) -> Array:
    """The noise-free image ``a * max(0, n . l)`` ``(..., H*W)``."""
    return albedo * shading(z, light)


def _difference_operator(shape: tuple) -> np.ndarray:
    """The matrix ``D`` ``(H (W-1) + (H-1) W + 1, H*W)`` of the forward differences of
    :func:`_diffs` that are not fixed to zero (rows: every ``dz/dx`` but the last column's,
    then every ``dz/dy`` but the last row's), plus one row for the mean height."""
    h, w = shape
    idx = np.arange(h * w).reshape(h, w)
    rows = []
    for a, b in list(zip(idx[:, :-1].ravel(), idx[:, 1:].ravel())) + list(
        zip(idx[:-1, :].ravel(), idx[1:, :].ravel())
    ):
        r = np.zeros(h * w)
        r[a], r[b] = -1.0, 1.0
        rows.append(r)
    rows.append(np.full(h * w, 1.0 / (h * w)))
    return np.stack(rows)


def photometric_stereo(images: Any, lights: Any, shape: tuple) -> np.ndarray:
    """Height fields ``(..., H, W)`` (float64, zero mean) of surfaces seen under several
    known lights: ``images`` ``(..., L, H*W)`` of one surface each under ``lights``
    ``(..., L, 3)``, ``L >= 3``. Per pixel, ``b = a n`` by least squares from ``y = L b``
    (Woodham 1980; pixels in attached shadow bias it), the normal ``n = b / |b|``, its slopes
    ``dz/dx = -n_x / n_z``, ``dz/dy = -n_y / n_z``, and the heights that fit those slopes best
    in the forward differences of :func:`normals_from_height` (least squares, mean zero).
    Yale B-style data (a subject under many known lights) gives a sample of surfaces this way
    from which :func:`fit_height_prior` learns a prior."""
    y = np.asarray(ops.to_numpy(images), np.float64)
    ell = np.asarray(ops.to_numpy(lights), np.float64)
    h, w = int(shape[0]), int(shape[1])
    if y.ndim < 2 or y.shape[-1] != h * w:
        raise ValueError(f"images must have shape (..., L, {h * w}), got {y.shape}")
    if ell.shape != y.shape[:-1] + (3,):
        raise ValueError(f"lights must have shape {y.shape[:-1] + (3,)}, got {ell.shape}")
    if y.shape[-2] < 3:
        raise ValueError(f"photometric stereo needs at least 3 lights, got {y.shape[-2]}")
    gram = np.swapaxes(ell, -1, -2) @ ell  # (..., 3, 3)
    b = np.linalg.solve(gram, np.swapaxes(ell, -1, -2) @ y)  # (..., 3, HW)
    nz = np.maximum(b[..., 2, :], 1e-6 * np.linalg.norm(b, axis=-2) + 1e-12)
    gx = (-b[..., 0, :] / nz).reshape(y.shape[:-2] + (h, w))
    gy = (-b[..., 1, :] / nz).reshape(y.shape[:-2] + (h, w))
    target = np.concatenate(
        [
            gx[..., :, :-1].reshape(y.shape[:-2] + (-1,)),
            gy[..., :-1, :].reshape(y.shape[:-2] + (-1,)),
            np.zeros(y.shape[:-2] + (1,)),
        ],
        -1,
    )
    z = target @ np.linalg.pinv(_difference_operator((h, w))).T
    return z.reshape(y.shape[:-2] + (h, w))


def fit_height_prior(heights: Any, rank: int = 10, floor: float = 1e-4) -> HeightPrior:
    """A Gaussian :class:`HeightPrior` fitted to example height fields ``(n, H, W)`` by
    probabilistic PCA (Tipping & Bishop 1999): the sample mean, the top ``rank`` principal
    directions with their variances, and one residual variance ``sigma^2`` (the mean of the
    other eigenvalues, at least ``floor`` times the largest) for every other direction:
    ``C = U (Lambda - sigma^2) U^T + sigma^2 I``. Returns float32 arrays (mean, precision
    ``C^{-1}``) and ``log det C^{-1}``."""
    z = np.asarray(heights, np.float64)
    if z.ndim != 3:
        raise ValueError(f"heights must have shape (n, H, W), got {z.shape}")
    n, d = z.shape[0], z.shape[1] * z.shape[2]
    if not isinstance(rank, int) or isinstance(rank, bool) or not 0 <= rank < d:
        raise ValueError(f"rank must be an int in [0, {d}), got {rank!r}")
    if n < 2 or not np.isfinite(z).all():
        raise ValueError("heights must hold at least 2 finite height fields")
    flat = z.reshape(n, d)
    mean = flat.mean(0)
    cov = np.cov(flat, rowvar=False, bias=False).reshape(d, d)
    lam, u = np.linalg.eigh(cov)
    lam, u = lam[::-1], u[:, ::-1]
    top = max(float(lam[0]), 1e-12)
    sigma2 = max(float(lam[rank:].mean()), floor * top)
    lam_k = np.maximum(lam[:rank], sigma2)
    uk = u[:, :rank]
    precision = (uk * (1.0 / lam_k - 1.0 / sigma2)) @ uk.T + np.eye(d) / sigma2
    log_det = float(-np.log(lam_k).sum() - (d - rank) * np.log(sigma2))
    return HeightPrior(mean.astype(np.float32), precision.astype(np.float32), log_det)


def smoothness_log_prior(z: Array, priors: LambertianPriors) -> Array:
    """``-smoothness / 2 * sum |grad z|^2`` ``(...,)`` (the Gaussian per-pixel term is the
    program's ``Normal`` site)."""
    dx, dy = _diffs(z)
    return -0.5 * priors.smoothness * ((dx**2).sum((-1, -2)) + (dy**2).sum((-1, -2)))


def albedo_field(image: Array, shade: Array, priors: LambertianPriors) -> Field:
    """The observation ``N(y; (offset + scale v) s, noise^2)`` as a field on ``v``."""
    a = priors.scale * shade
    prec = (a / priors.noise) ** 2
    return Field(a * (image - priors.offset * shade) / priors.noise**2, prec)


def observation_log_prob(image: Array, albedo: Array, z: Array, light: Array, noise: float):
    """``log N(y; a * max(0, n . l), noise^2)`` summed over pixels, ``(...,)``."""
    r = (image - render(albedo, z, light)) / noise
    return (-0.5 * r**2 - math.log(noise) - _HALF_LOG_2PI).sum(-1)


def height_log_prior(z: Array, priors: LambertianPriors) -> Array:
    """The height field's Gaussian log density ``(...,)`` for ``z`` ``(..., H, W)``: the
    learned :class:`HeightPrior` when ``priors.height_prior`` is set, else independent
    ``N(0, height_scale^2)`` per pixel (the smoothness factor is apart:
    :func:`smoothness_log_prior`)."""
    hp = priors.height_prior
    if hp is None:
        hs = priors.height_scale
        return (-0.5 * (z / hs) ** 2 - math.log(hs) - _HALF_LOG_2PI).sum((-1, -2))
    d = int(hp.mean.shape[-1])
    r = z.reshape(tuple(z.shape[:-2]) + (d,)) - hp.mean
    quad = ((r @ hp.precision) * r).sum(-1)
    return -0.5 * quad + 0.5 * hp.log_det - d * _HALF_LOG_2PI


def continuous_log_joint(
    image: Array, v: Array, z: Array, light: Array, priors: LambertianPriors
) -> Array:
    """``log p(y, z, l | v)`` ``(...,)``: the observation, the height prior (Gaussian and
    smoothness terms) and the light prior, with the albedo's visible units ``v`` fixed (the
    objective of the surface/light steps)."""
    albedo = priors.offset + priors.scale * v
    lz = height_log_prior(z, priors)
    ls = priors.light_scale
    loc = ops.asarray_like(priors.light_loc, light)
    ll = (-0.5 * ((light - loc) / ls) ** 2 - math.log(ls) - _HALF_LOG_2PI).sum(-1)
    obs = observation_log_prob(image, albedo, z, light, priors.noise)
    return obs + lz + smoothness_log_prior(z, priors) + ll


def exact_albedo_posterior(dbm: Any, image: Array, shade: Array, priors: LambertianPriors):
    """Exact ``E[v | y, z, l]`` ``(D,)`` and ``log p(y | z, l)`` for one image of a tiny
    Gaussian DBM (its odd layers enumerated, ``v`` integrated: given ``h1`` it is
    ``N(b0 + sigma W1 h1, sigma^2)``, the observation linear-Gaussian in it), with
    the even hidden layers above ``v`` summed out analytically. Returns ``(mean,
    log_evidence)``."""

    p = dbm._frozen()
    if p.sigma is None:
        raise ValueError("the albedo DBM must have Gaussian visible units (sigma given)")
    sizes = [int(b.shape[-1]) for b in p.biases]
    odd = sum(sizes[1::2])
    if odd > 16:
        raise ValueError("exact_albedo_posterior enumerates the odd layers: 16 units at most")
    states = ops.binary_states(odd, p.biases[0])
    layers = split_odd(p, states)  # v and even layers None
    # log of sum over even layers >= 2 and integral over v of exp(-E), per odd state (the
    # DBM's odd free energy; its constant Gaussian normaliser cancels below)
    log_w = -_odd_free_energy(p, layers)
    mean_v = layer_logits(p, layers, 0)  # (S, D): b0 + sigma W1 h1
    sig2 = p.sigma**2 + 0.0 * mean_v
    # observation y = offset s + scale s v + noise, v ~ N(mean_v, sigma^2): marginal and
    # posterior mean of v per odd state
    a = priors.scale * shade
    pred = priors.offset * shade + a * mean_v
    var_y = a**2 * sig2 + priors.noise**2
    log_y = (-0.5 * (image - pred) ** 2 / var_y - 0.5 * ops.log(var_y) - _HALF_LOG_2PI).sum(-1)
    post_mean = mean_v + a * sig2 * (image - pred) / var_y
    logits = log_w + log_y
    wts = ops.softmax(logits, axis=0)
    log_prior_z = ops.logsumexp(log_w, axis=0)
    return (wts[:, None] * post_mean).sum(0), ops.logsumexp(logits, axis=0) - log_prior_z


class MapState(NamedTuple):
    """State of the coordinate ascent for many images: DBM mean-field marginals ``mus``
    (per layer, ``v`` first), heights ``z`` ``(N, H, W)``, lights ``light`` ``(N, 3)``, and
    Adam moments ``m``/``s`` of ``(z, light)`` with step count ``t``."""

    mus: list
    z: Array
    light: Array
    m: tuple
    s: tuple
    t: Array


def albedo_step(
    dbm: Any, image: Array, mus: list, shade: Array, priors: LambertianPriors, num_iters: int = 5
) -> list:
    """Mean-field sweeps of the albedo DBM with the observation folded into ``v``: each
    hidden layer given its neighbours' marginals, and ``v`` set to the mean of its exact
    Gaussian conditional given ``h1`` and the image (``N(b0 + sigma W1 mu_1, sigma^2)`` times
    :func:`albedo_field`)."""

    p = dbm._frozen()
    field = albedo_field(image, shade, priors)
    mus = list(mus)
    for _ in range(num_iters):
        for i in range(1, len(mus), 2):
            mus[i] = ops.sigmoid(layer_logits(p, mus, i))
        for i in range(2, len(mus), 2):
            mus[i] = ops.sigmoid(layer_logits(p, mus, i))
        mean = layer_logits(p, mus, 0)
        mus[0] = combine_gaussian(mean, p.sigma**2 + 0.0 * mean, field)[0]
    return mus


def adam(
    params: tuple,
    grads: tuple,
    m: tuple,
    s: tuple,
    t: Array,
    lr: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
):
    """One Adam ascent step on each array of ``params`` (gradient ``grads``)."""
    t = t + 1
    m = tuple(b1 * a + (1 - b1) * g for a, g in zip(m, grads))
    s = tuple(b2 * a + (1 - b2) * g**2 for a, g in zip(s, grads))
    c1, c2 = 1 - b1**t, 1 - b2**t
    new = tuple(p + lr * (a / c1) / ((b / c2) ** 0.5 + eps) for p, a, b in zip(params, m, s))
    return new, m, s, t


def map_update(
    dbm: Any,
    image: Array,
    state: MapState,
    priors: LambertianPriors,
    grad_fn: Any,
    lr: float,
    mf_iters: int = 3,
) -> MapState:
    """One round of the coordinate ascent: :func:`albedo_step` at the current shading, then
    one Adam step on ``(z, light)`` of :func:`continuous_log_joint` with the albedo fixed.
    ``grad_fn(image, v, z, light) -> (d/dz, d/dlight)`` is the frontend's autodiff of the
    summed objective."""
    shade = shading(state.z, state.light)
    mus = albedo_step(dbm, image, state.mus, shade, priors, mf_iters)
    gz, gl = grad_fn(image, ops.stop_gradient(mus[0]), state.z, state.light)
    (z, light), m, s, t = adam((state.z, state.light), (gz, gl), state.m, state.s, state.t, lr)
    return MapState(mus, z, light, m, s, t)


def init_map_state(dbm: Any, image: Array, priors: LambertianPriors) -> MapState:
    """A nearly flat surface (the learned height prior's mean surface, where the program has
    one), the prior-mean light, and the DBM's bottom-up marginals of the
    albedo ``(y - offset s) / (scale s)`` seen at that shading."""

    h, w = priors.shape
    lead = tuple(image.shape[:-1])
    # a flat surface is a saddle of the objective when the light is on the viewing axis
    # (first-order changes of the normals do not change n . l), so start from a small,
    # deterministic ripple: the same start in both backends
    # (a learned height prior starts from its mean surface instead)
    if priors.height_prior is not None:
        start = priors.height_prior.mean.reshape((h, w))
    else:
        ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        start = ops.asarray_like((0.05 * np.sin(1.3 * ii + 2.1 * jj + 0.4)), image)
    z = ops.zeros(lead + (h, w), image) + ops.asarray_like(start, image)
    light = ops.zeros(lead + (3,), image) + ops.asarray_like(priors.light_loc, image)
    shade = shading(z, light)
    v0 = (image - priors.offset * shade) / (priors.scale * shade + 1e-3)
    p = dbm._frozen()
    mus = bottom_up(p, v0)
    zero = (0.0 * z, 0.0 * light)
    return MapState(list(mus), z, light, zero, zero, ops.zeros((), image))


class DeepLambertianMethods:
    """What the Pyro and NumPyro ``DeepLambertian`` share: the constructor, the program
    (:meth:`model`) and the coordinate ascent (:meth:`infer_map`), written once. A subclass
    names its PPL adapter ``ppl`` (:mod:`ebm_ppl.pyro.ppl` or :mod:`ebm_ppl.numpyro.ppl`) and
    its DBM class ``_dbm_class``; it stores ``dbm`` (the albedo DBM, Gaussian visible units)
    and ``priors`` (:class:`LambertianPriors`)."""

    ppl: Any
    _dbm_class: type
    dbm: Any
    priors: LambertianPriors

    def __init__(
        self,
        albedo_dbm: Any,
        shape: tuple,
        offset: float = 0.5,
        scale: float = 0.2,
        height_scale: float = 3.0,
        smoothness: float = 2.0,
        light_loc: Any = (0.0, 0.0, 1.0),
        light_scale: float = 0.5,
        noise: float = 0.05,
        height_prior: HeightPrior | None = None,
    ) -> None:
        biases = getattr(albedo_dbm, "biases", None)  # not a DBM: refused below
        like = biases[0] if biases else None
        if isinstance(height_prior, HeightPrior):
            height_prior = HeightPrior(
                self.ppl.asarray(height_prior.mean, "float32", like=like),
                self.ppl.asarray(height_prior.precision, "float32", like=like),
                float(height_prior.log_det),
            )
        priors = LambertianPriors(
            float(offset),
            float(scale),
            float(height_scale),
            float(smoothness),
            self.ppl.asarray(light_loc, "float32", like=like),
            float(light_scale),
            float(noise),
            tuple(shape),
            height_prior,
        )
        self._init_lambertian(albedo_dbm, self._dbm_class, priors)

    def _init_lambertian(self, dbm: Any, dbm_cls: type, priors: LambertianPriors) -> None:
        if not isinstance(dbm, dbm_cls):
            raise TypeError(f"albedo_dbm must be a DBM, got {type(dbm).__name__}")
        if not dbm.gaussian:
            raise ValueError("albedo_dbm must have Gaussian visible units (give it sigma)")
        check_priors(priors)
        h, w = priors.shape
        if dbm.n_visible != h * w:
            raise ValueError(
                f"albedo_dbm has {dbm.n_visible} visible units but shape {priors.shape} has "
                f"{h * w} pixels"
            )
        self.dbm, self.priors = dbm, priors

    @property
    def n_pixels(self) -> int:
        return self.dbm.n_visible

    def albedo(self, v: Array) -> Array:
        """``offset + scale * v``: the albedo of the DBM's visible units."""
        return self.priors.offset + self.priors.scale * v

    def _check_images(self, images: Array) -> None:

        if check_values(images, self.n_pixels, "images") and not ops.all_finite(images):
            raise ValueError("images contains NaN or infinite values")

    def model(self, images: Array | None = None, num_images: int | None = None) -> Array:
        """The generative program, in a plate ``"images"``: ``albedo`` (the albedo DBM's
        state; its visible units give the albedo), ``height`` ``(H, W)`` (Gaussian, plus the
        ``smoothness`` factor; with a learned ``height_prior`` the site is its
        ``MultivariateNormal`` over the flattened field, ``(H*W,)``), ``light`` ``(3,)`` and
        ``image`` (observed on ``images``)."""
        if images is None and num_images is None:
            raise ValueError("model needs images (to observe) or num_images (to generate)")
        if images is not None:
            self._check_images(images)
            if images.ndim != 2:
                raise ValueError(f"images must have shape (N, {self.n_pixels})")
        n = int(images.shape[0]) if images is not None else int(num_images)
        p = self.priors
        h, w = p.shape
        d = self.n_pixels
        like = self.dbm.biases[0]
        ppl = self.ppl
        with ppl.plate("images", n):
            state = ppl.sample("albedo", self.dbm.expand((n,)))
            hp = p.height_prior
            if hp is None:
                z = ppl.sample(
                    "height",
                    ppl.dist.Normal(ops.zeros((h, w), like), p.height_scale).to_event(2),
                )
            else:
                flat = ppl.sample(
                    "height", ppl.dist.MultivariateNormal(hp.mean, precision_matrix=hp.precision)
                )
                z = flat.reshape(tuple(flat.shape[:-1]) + (h, w))
            ppl.factor("smoothness", smoothness_log_prior(z, p))
            loc = ops.asarray_like(p.light_loc, like)
            light = ppl.sample("light", ppl.dist.Normal(loc, p.light_scale).to_event(1))
            mean = render(self.albedo(state[..., :d]), z, light)
            return ppl.sample("image", ppl.dist.Normal(mean, p.noise).to_event(1), obs=images)

    def infer_map(
        self, images: Array, num_steps: int = 300, lr: float = 0.05, mf_iters: int = 3
    ) -> dict:
        """Coordinate ascent for ``images`` ``(N, H*W)``: :func:`init_map_state`, then
        ``num_steps`` rounds of :func:`map_update` (mean field for the DBM, the exact
        conditional mean of the albedo, one Adam step on surface and light; one compiled loop
        in JAX). Returns ``albedo``, ``height``, ``normals``, ``light``, ``shading`` and the
        DBM's marginals (``dbm_marginals``)."""
        ppl, priors, dbm = self.ppl, self.priors, self.dbm
        images = ppl.asarray(images, "float32", like=dbm.biases[0])
        self._check_images(images)
        self._check_map_args(num_steps, lr)

        def objective(image, v, z, light):
            return continuous_log_joint(image, v, z, light, priors).sum()

        grad_fn = ppl.grad(objective, (2, 3))

        def run(images):
            state = init_map_state(dbm, images, priors)

            def step(st):
                return map_update(dbm, images, st, priors, grad_fn, lr, mf_iters)

            return ppl.iterate(step, state, num_steps)

        return self._map_result(ppl.compiled(run)(images))

    def _check_map_args(self, num_steps: Any, lr: Any) -> None:
        if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"lr must be a positive number, got {lr!r}")

    def _map_result(self, state: MapState) -> dict:
        albedo = self.albedo(state.mus[0])
        return {
            "albedo": albedo,
            "height": state.z,
            "normals": normals_from_height(state.z),
            "light": state.light,
            "shading": shading(state.z, state.light),
            "dbm_marginals": state.mus,
        }

    def relight(self, albedo: Array, height: Array, light: Array) -> Array:
        """Images of the given albedo and surface under new ``light`` ``(..., 3)``."""
        return render(albedo, height, light)
