"""Backend-neutral pieces of block-Gibbs sampling over the energy sites of a PPL program.

Pyro's and NumPyro's traces are both ordered mappings from site name to a site dict with
``type``, ``fn``, ``value`` and ``is_observed``; the helpers here read either. The kernels in
:mod:`ebm_ppl.pyro` and :mod:`ebm_ppl.numpyro` are thin adapters around them.

An *energy distribution* is any distribution with the methods ``init_chain(key, shape)``,
``transition(key, value, num_steps, clamp) -> (value, aux)`` and ``log_prob``: the
contract :class:`~ebm_ppl.models.protocols.EnergyDistribution`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ebm_ppl import ops
from ebm_ppl.inference.tempering import check_operator
from ebm_ppl.models.fields import Field, combine_gaussian, gaussian_field  # noqa: F401 - re-exported
from ebm_ppl.models.protocols import EnergyDistribution, TransitionOperator, check_value
from ebm_ppl.models.rbm import Clamp
from ebm_ppl.ops import Key

HIDDEN_SUFFIX = "_hidden"


def check_kernel_args(model: Any, num_sweeps: Any) -> None:
    """Argument checks shared by the Pyro and NumPyro ``BlockGibbs`` kernels."""
    if not callable(model):
        raise TypeError(f"model must be callable, got {type(model).__name__}")
    if not isinstance(num_sweeps, int) or num_sweeps < 1:
        raise ValueError(f"num_sweeps must be a positive int, got {num_sweeps!r}")


class BlockGibbsSettings(abc.ABC):
    """The settings and set-up state of both frontends' ``BlockGibbs`` kernels, checked and
    stored once; a frontend adds its own state in ``_init_frontend(model)``."""

    def __init__(
        self,
        model: Callable,
        clamp: Mapping[str, Any] | None = None,
        report_hidden: bool = False,
        num_sweeps: int = 1,
        transition: TransitionOperator | None = None,
        blocks: Any = None,
    ) -> None:
        check_kernel_args(model, num_sweeps)
        check_transition(transition, clamp)
        self.transition = transition
        self.blocks = blocks
        self.clamp = clamp
        self.report_hidden = bool(report_hidden)
        self.num_sweeps = num_sweeps
        self._multilinear: Any = None
        self._latent: list[str] = []
        self._dists: dict = {}
        self._fields: dict = {}
        self._clamps: dict = {}  # built once, at set-up
        self._init_frontend(model)

    @abc.abstractmethod
    def _init_frontend(self, model: Callable) -> None:
        """The frontend's own state (the model, caches); called last by ``__init__``."""


def is_energy_distribution(fn: Any) -> bool:
    """True for distributions that carry their own block-Gibbs transition
    (:class:`~ebm_ppl.models.protocols.EnergyDistribution`)."""
    return isinstance(fn, EnergyDistribution)


def classify_sites(nodes: Mapping[str, Mapping]) -> tuple[list[str], list[str], list[str]]:
    """Split a trace's sample sites into (latent energy, observed energy, other latent)."""
    latent, observed, other = [], [], []
    for name, site in nodes.items():
        if site.get("type") != "sample" or type(site["fn"]).__name__ == "_Subsample":
            continue  # Pyro records plates as "_Subsample" sample sites
        energy = is_energy_distribution(site["fn"])
        if site.get("is_observed"):
            if energy:
                observed.append(name)
        elif energy:
            latent.append(name)
        else:
            other.append(name)
    return latent, observed, other


def make_clamps(
    clamp: Mapping[str, Any] | None,
    values: Mapping[str, Any],
    latent: list[str],
    dists: Mapping[str, Any] | None = None,
) -> dict[str, Clamp]:
    """Turn ``{"site": (mask, values)}`` into checked :class:`Clamp` objects.

    ``mask`` (boolean) and ``values`` must broadcast to the site's value shape; the values
    where the mask is true must be valid states (0/1 for binary sites): with ``dists`` (the
    sites' energy distributions) they are checked by the site's own value check, where
    concrete (``ValueError`` naming ``clamp['site'] values``).
    """
    out = {}
    for name, spec in (clamp or {}).items():
        if name not in latent:
            raise ValueError(
                f"clamp names site {name!r}, which is not a latent energy site of the model "
                f"(latent energy sites: {latent})"
            )
        if not (isinstance(spec, (tuple, list)) and len(spec) == 2):
            raise TypeError(f"clamp[{name!r}] must be a (mask, values) pair")
        mask, vals = spec
        like = values[name]
        mask = ops.asarray_like(mask, like) != 0
        vals = ops.asarray_like(vals, like)
        shape = tuple(like.shape)
        for what, x in (("mask", mask), ("values", vals)):
            try:
                if ops.broadcast_shapes(tuple(x.shape), shape) != shape:
                    raise ValueError
            except ValueError:
                raise ValueError(
                    f"clamp[{name!r}] {what} of shape {tuple(x.shape)} does not broadcast to "
                    f"the site's shape {shape}"
                ) from None
        out[name] = Clamp(ops.broadcast_to(mask, shape), ops.broadcast_to(vals, shape))
        if dists and name in dists:  # the clamped entries inside a valid state of the site
            state = ops.where(out[name].mask, out[name].values, like)
            check_value(dists[name], state, f"clamp[{name!r}] values")
    return out


def apply_clamps(values: Mapping[str, Any], clamps: Mapping[str, Clamp]) -> dict[str, Any]:
    """Set the clamped coordinates of each site to their clamp values."""
    out = dict(values)
    for name, c in clamps.items():
        out[name] = ops.where(c.mask, c.values, out[name])
    return out


def check_field_form(
    residual: Callable[[dict[str, Any]], float],
    field_of: Callable[[dict[str, Any]], Field],
    values: Mapping[str, Any],
    name: str,
    gaussian: bool,
    coords: int = 3,
    seed: int = 0,
    rtol: float = 1e-3,
    n_visible: int | None = None,
) -> None:
    """``ValueError`` unless the model's residual log density (everything but the energy
    sites' own log-densities) equals its :class:`Field` in site ``name`` at a few random
    coordinates: affine in a binary coordinate, quadratic with a non-negative precision in a
    Gaussian one (checked at two step sizes). Otherwise the closed-form conditional that
    block Gibbs draws from would be wrong."""
    rng = np.random.default_rng(seed)
    f = field_of(dict(values))
    lin = ops.to_numpy(f.linear).reshape(-1)
    prec = None if f.precision is None else ops.to_numpy(f.precision).reshape(-1)
    x = values[name]
    flat_x = ops.to_numpy(x).reshape(-1)
    if prec is not None and (not np.all(np.isfinite(prec)) or prec.min() < -1e-5):
        raise ValueError(
            f"other factors of the model that depend on energy site {name!r} are not a Gaussian "
            "likelihood in it (their curvature is negative or not finite); block Gibbs needs "
            "an observation model that is quadratic in the site (e.g. Normal(site, scale))"
        )
    base = float(residual(dict(values)))
    size = flat_x.size
    last = int(x.shape[-1]) if x.ndim else 1
    cand = np.arange(size)
    if n_visible is not None:  # probe the visible units only (where a field acts)
        cand = cand[cand % last < n_visible]
    for i in rng.choice(cand, size=min(coords, cand.size), replace=False):
        steps = (0.5, 1.5) if gaussian else (1.0 - 2.0 * flat_x[i],)
        for t in steps:
            e = np.zeros(size, dtype=np.float32)
            e[i] = t
            moved = dict(values)
            moved[name] = x + ops.asarray_like(e.reshape(tuple(x.shape)), x)
            diff = float(residual(moved)) - base
            xi = flat_x[i]
            want = lin[i] * t if prec is None else (lin[i] - prec[i] * xi) * t - prec[i] * t**2 / 2
            # float32 sums of many terms: allow rounding at the scale of the whole residual
            tol = rtol * max(1.0, abs(diff)) + 1e-5 * abs(base)
            if not np.isfinite(diff) or abs(diff - want) > tol:
                kind = "quadratic" if gaussian else "affine"
                raise ValueError(
                    f"other factors of the model that depend on energy site {name!r} are not "
                    f"{kind} in it (coordinate {int(i)}: change {diff:.6g}, field predicts "
                    f"{want:.6g}); block Gibbs can only fold in observation models that keep "
                    "the site's conditional in closed form (Bernoulli units: any factor affine "
                    "in each unit; Gaussian units: a Gaussian likelihood). Observe the site or "
                    "sample the other sites with NUTS."
                )


def site_field(
    kind: str,
    grad: Callable[[dict[str, Any]], dict[str, Any]],
    values: Mapping[str, Any],
    name: str,
    n_visible: int | None = None,
) -> Field:
    """The :class:`Field` the rest of a program puts on energy site ``name``, from
    ``grad(values) -> {site: d residual / d site}``: the gradient itself for binary units
    (exact for a factor affine in each unit), two gradients for Gaussian units (exact for a
    diagonal quadratic)."""
    g0 = grad(dict(values))[name]
    if kind == "binary":
        return Field(g0, None)
    x = values[name]
    last = int(x.shape[-1])
    n = last if n_visible is None else n_visible
    units = ops.arange(last, x)  # made on x's device: no host data per sweep
    shift = ops.where(units < n, 1.0 + 0 * units, 0 * units)  # move the visible units only
    moved = dict(values)
    moved[name] = x + shift
    return gaussian_field(g0, grad(moved)[name], x)


def find_field_sites(
    residual: Callable[[dict[str, Any]], Any],
    grad: Callable[[dict[str, Any]], dict[str, Any]],
    dists: Mapping[str, Any],
    draws: list[dict[str, Any]],
) -> dict[str, tuple[str, int]]:
    """The energy sites that other factors of the program depend on, as ``{site: kind}``
    (``"binary"`` / ``"gaussian"``), checked: the site's distribution must accept a field,
    and the factors must be affine (binary) or diagonal-quadratic (Gaussian) in it, so that
    its conditional stays in closed form (:func:`check_field_form`). Returns ``{site:
    (kind, n_visible)}``."""
    out: dict[str, tuple[str, int]] = {}
    for name, fn in dists.items():
        # does the residual change when only this site moves? (gradients of a residual
        # that cancels exactly can still be float noise, so compare values)
        ref = float(residual(dict(draws[0])))
        depends = False
        for d in draws[1:]:
            moved = dict(draws[0])
            moved[name] = d[name]
            if abs(float(residual(moved)) - ref) > 1e-4 * max(1.0, abs(ref)):
                depends = True
        if not depends:  # a weak factor: its gradient is still well above rounding noise
            depends = any(
                float(ops.to_numpy(abs(grad(dict(d))[name])).max(initial=0.0)) > 1e-4 for d in draws
            )
        if not depends:
            continue
        kind = getattr(fn, "field_kind", None)
        if kind is None:
            raise ValueError(
                f"other factors of the model depend on the value of energy site {name!r}, "
                f"whose distribution {type(fn).__name__} cannot fold them into its block "
                "conditionals (RBM, GaussianRBM and DBM sites can). Observe the site, or move "
                "the dependence into the energy distribution's parameters."
            )
        n_vis = int(getattr(fn, "n_visible", draws[0][name].shape[-1]))
        for d in draws:
            f = site_field(kind, grad, d, name, n_vis)
            parts = [f.linear] + ([] if f.precision is None else [f.precision])
            if any(float(ops.to_numpy(abs(a[..., n_vis:])).max(initial=0.0)) > 0 for a in parts):
                raise ValueError(
                    f"other factors of the model depend on the hidden layers of energy site "
                    f"{name!r}; block Gibbs folds in factors on its visible units only"
                )
            check_field_form(
                residual,
                lambda v, k=kind, n=name, m=n_vis: site_field(k, grad, v, n, m),
                d,
                name,
                kind == "gaussian",
                n_visible=n_vis,
            )
        out[name] = (kind, n_vis)
    return out


def block_gibbs_step(
    key: Any,
    dists: Mapping[str, Any],
    values: Mapping[str, Any],
    clamps: Mapping[str, Clamp],
    num_sweeps: int = 1,
    field_of: Callable[[str, dict[str, Any]], Field | None] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Advance every energy site by ``num_sweeps`` of its own alternating-layer sweeps.

    With ``field_of(name, values)`` (the :class:`Field` that the rest of the program puts
    on site ``name`` at the current values, or ``None``), the sites take one sweep each in
    turn, ``num_sweeps`` times, each from its conditional given the others' current values
    (Gibbs over mixed sites). Returns the new site values and each site's auxiliary
    (hidden) state.
    """
    if field_of is None:
        keys = ops.split(key, max(1, len(dists)))
        new, aux = {}, {}
        for k, (name, fn) in zip(keys, dists.items()):
            new[name], aux[name] = fn.transition(k, values[name], num_sweeps, clamps.get(name))
        return new, aux
    new, aux = dict(values), {}
    for k_sweep in ops.split(key, num_sweeps):
        for k, (name, fn) in zip(ops.split(k_sweep, max(1, len(dists))), dists.items()):
            f = field_of(name, new)
            if f is None:
                new[name], aux[name] = fn.transition(k, new[name], 1, clamps.get(name))
            else:
                new[name], aux[name] = fn.transition(k, new[name], 1, clamps.get(name), field=f)
    return {n: new[n] for n in dists}, aux


def tempered_block_step(
    key: Key,
    transition: TransitionOperator,
    dists: Mapping[str, Any],
    values: Mapping[str, Any],
    states: Mapping[str, Any],
    num_steps: int = 1,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Advance every energy site by ``num_steps`` of a tempered ``transition`` operator
    (e.g. :class:`~ebm_ppl.inference.tempering.ParallelTempering`), whose per-site state
    (the ladder) is carried in ``states``; the current ``values`` replace the state's
    ``beta = 1`` member first. Pure: returns ``(values, hidden, states, infos)``, ``infos``
    the operator's ``info`` per site (e.g. :class:`~ebm_ppl.inference.tempering.PTInfo`)."""
    keys = ops.split(key, max(1, len(dists)))
    new, aux, out, infos = {}, {}, {}, {}
    for k, (name, fn) in zip(keys, dists.items()):
        st = transition.with_samples(states[name], values[name])
        out[name], infos[name] = transition.step(k, fn, st, num_steps)
        new[name], aux[name] = transition.samples(out[name]), infos[name].hidden
    return new, aux, out, infos


def check_transition(transition: Any, clamp: Any) -> None:
    """Kernel-argument checks for a tempered transition operator."""
    if transition is None:
        return
    check_operator(transition)
    if clamp:
        raise ValueError(
            "clamp cannot be combined with a tempered transition (the hot replicas would "
            "not be clamped); use plain block Gibbs for inpainting"
        )
