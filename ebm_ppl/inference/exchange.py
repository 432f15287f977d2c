"""The exchange algorithm (Murray, Ghahramani & MacKay 2006), written once for torch and JAX.

Target: ``pi(theta | x) ∝ p(theta) f(x; theta) / Z(theta)`` where ``f`` is an energy site's
unnormalized density and ``Z(theta)`` is intractable (a doubly-intractable posterior). One
step proposes ``theta' ~ q(. | theta)`` (a symmetric random walk on the unconstrained scale),
draws auxiliary data ``w ~ f(.; theta') / Z(theta')``, and accepts with

    ``log a = [log p(theta') + log f(x; theta')] - [log p(theta) + log f(x; theta)]
              + log f(w; theta) - log f(w; theta')``                         (MGM 2006, eq. 8)

in which both normalizers cancel. With several energy sites the auxiliary terms add. The
chain is exact when ``w`` is an exact draw (``exact_sample`` of an enumerable model). With
``aux_sweeps=K`` the auxiliary data come from ``K`` block-Gibbs sweeps started at ``x``
instead: the "double Metropolis-Hastings" sampler of Liang (2010), which is approximate,
with a bias that vanishes as ``K`` grows.

The frontends (:class:`ebm_ppl.pyro.Exchange`, :class:`ebm_ppl.numpyro.Exchange`) trace the
program; this module holds the pieces that do not depend on the PPL.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ebm_ppl import ops
from ebm_ppl.inference.dependence import energy_of
from ebm_ppl.inference.gibbs import check_kernel_args, classify_sites, is_energy_distribution
from ebm_ppl.models.family import NormalizedLogProb

#: Warmup draws before the proposal takes its per-coordinate scales from them.
MIN_ADAPT_DRAWS = 20


class ExchangeSettings(abc.ABC):
    """The settings of both frontends' ``Exchange`` kernels, checked and stored once; a
    frontend adds its own state in ``_init_frontend(model)``."""

    def __init__(
        self,
        model: Callable,
        step_size: float = 0.1,
        aux_sweeps: int | None = None,
        gibbs_sweeps: int = 1,
        target_accept_prob: float = 0.3,
    ) -> None:

        check_kernel_args(model, gibbs_sweeps)
        check_exchange_args(step_size, aux_sweeps, gibbs_sweeps, target_accept_prob)
        self.step_size = float(step_size)
        self.aux_sweeps = aux_sweeps
        self.gibbs_sweeps = gibbs_sweeps
        self.target_accept_prob = float(target_accept_prob)
        self._init_frontend(model)

    @abc.abstractmethod
    def _init_frontend(self, model: Callable) -> None:
        """The frontend's own state (the model, adaptation counters); called last."""


def check_exchange_args(
    step_size: Any, aux_sweeps: Any, gibbs_sweeps: Any, target_accept_prob: Any
) -> None:
    """Argument checks shared by both frontends' ``Exchange`` kernels."""
    if not (isinstance(step_size, (int, float)) and not isinstance(step_size, bool)):
        raise TypeError(f"step_size must be a float, got {type(step_size).__name__}")
    if not (math.isfinite(step_size) and step_size > 0):
        raise ValueError(f"step_size must be a finite number > 0, got {step_size}")
    if aux_sweeps is not None and (
        not isinstance(aux_sweeps, int) or isinstance(aux_sweeps, bool) or aux_sweeps < 1
    ):
        raise ValueError(
            f"aux_sweeps must be None (exact draws) or an int >= 1, got {aux_sweeps!r}"
        )
    if not isinstance(gibbs_sweeps, int) or isinstance(gibbs_sweeps, bool) or gibbs_sweeps < 1:
        raise ValueError(f"gibbs_sweeps must be an int >= 1, got {gibbs_sweeps!r}")
    if not (isinstance(target_accept_prob, (int, float)) and 0 < target_accept_prob < 1):
        raise ValueError(f"target_accept_prob must be in (0, 1), got {target_accept_prob!r}")


def event_sample_shape(fn: Any, value: Any) -> tuple:
    """The leading dimensions of ``value`` beyond ``fn``'s batch and event shapes (rows that
    ``fn.log_prob(value)`` broadcasts over)."""
    extra = value.ndim - len(fn.batch_shape) - len(fn.event_shape)
    return tuple(value.shape[: max(0, extra)])


def plan_sites(
    nodes: Any, deps: dict, aux_sweeps: int | None
) -> tuple[list[str], list[str], list[str]]:
    """Split a traced program for the exchange kernels: ``(theta, energy_latent,
    exchange)`` = the continuous latent sites the random walk proposes, the latent energy
    sites that block Gibbs advances, and the energy sites whose normalizers the exchange
    ratio cancels (those whose parameters depend on ``theta``; ``deps`` as found by
    ``energy_dependencies``). ``ValueError`` for programs the kernel cannot serve."""

    energy_latent, _, other = classify_sites(nodes)
    if not deps:
        raise ValueError(
            "no energy site of the model has parameters that depend on a latent site; "
            "the exchange algorithm is not needed (use NUTS, or BlockGibbs / HMCGibbs)"
        )
    bad = sorted({u for us in deps.values() for u in us if u not in other})
    if bad:
        raise ValueError(
            f"energy sites {sorted(deps)} depend on the latent energy sites {bad}; the "
            "exchange algorithm updates continuous parameters only"
        )
    for n in other:
        if nodes[n]["fn"].support.is_discrete:
            raise ValueError(
                f"latent site {n!r} is discrete; Exchange proposes continuous parameters "
                "by a random walk (marginalize or observe the discrete site)"
            )
    exchange = sorted(deps)
    for n in exchange:
        check_exchange_site(n, nodes[n], aux_sweeps)
    return list(other), list(energy_latent), exchange


def check_exchange_site(name: str, site: Any, aux_sweeps: int | None) -> None:
    """``ValueError`` unless the exchange step can cancel the normalizer of this site: an
    unwrapped energy distribution whose ``log_prob`` is the exact unnormalized density and
    whose transitions act on its own value (the family with the ``normalized`` option), not
    scaled (``scale`` handlers, subsampled plates: ``Z(theta)^s`` does not cancel) and not
    masked; with ``aux_sweeps=None`` it must also draw exactly, and the value must be one
    such draws can produce (no missing entries)."""

    fn = site["fn"]
    if not is_energy_distribution(fn):
        raise ValueError(
            f"energy site {name!r} is wrapped in {type(fn).__name__} (to_event, expand or mask); "
            "the exchange algorithm needs the energy distribution itself at the site: put it "
            "under a plate (its expand is native) and do not mask it"
        )
    if not isinstance(fn, NormalizedLogProb):
        raise ValueError(
            f"energy site {name!r} is a {type(fn).__name__}, whose log_prob is not the exact "
            "unnormalized density of its value (a bound, or a view of a larger state); the "
            "exchange algorithm cannot cancel its normalizer. Observe the full model's state, "
            "e.g. a DBM site, instead."
        )
    scale = site.get("scale")
    if scale is not None and not _all_one(scale):
        raise ValueError(
            f"energy site {name!r} is scaled (a scale handler or a subsampled plate); "
            "Z(theta)**scale does not cancel in the exchange ratio. Observe all the data "
            "without scaling."
        )
    mask = site.get("mask")
    if mask is not None and mask is not True:
        if mask is False or not bool(np.all(ops.to_numpy(mask))):
            raise ValueError(
                f"energy site {name!r} is masked; the exchange algorithm needs every row of "
                "the site (select the observed rows instead of masking them)"
            )
    if aux_sweeps is None:
        check_exact(name, energy_of(site))
        complete = getattr(fn, "_check_complete", None)
        if complete is not None:
            complete(site["value"], f"the value of site {name!r} (exact exchange draws)")


def _all_one(x: Any) -> bool:
    if isinstance(x, (int, float)):
        return x == 1
    return bool(np.all(ops.to_numpy(x) == 1))


def check_exact(name: str, fn: Any) -> None:
    """``ValueError`` unless ``fn`` can draw exactly (``exact_sample`` and a small model)."""
    if not callable(getattr(fn, "exact_sample", None)):
        raise ValueError(
            f"energy site {name!r} ({type(fn).__name__}) has no exact sampler; pass "
            "aux_sweeps=K to draw the auxiliary data with K block-Gibbs sweeps (double "
            "Metropolis-Hastings, approximate)"
        )


def auxiliary_draw(key: Any, fn: Any, value: Any, aux_sweeps: int | None) -> Any:
    """Auxiliary data ``w`` of ``value``'s shape from the energy distribution ``fn`` (at the
    proposed parameters): exact draws when ``aux_sweeps`` is ``None``, else ``aux_sweeps``
    block-Gibbs sweeps started at ``value`` (double MH). No gradient."""
    if aux_sweeps is None:
        try:
            return fn.exact_sample(key, event_sample_shape(fn, value))
        except ValueError as e:
            raise ValueError(
                f"{e} The exchange algorithm needs exact auxiliary draws here; pass "
                "aux_sweeps=K for approximate draws by K block-Gibbs sweeps (double MH)."
            ) from None
    return fn.transition(key, ops.stop_gradient(value), aux_sweeps)[0]


def auxiliary_log_ratio(fn_current: Any, fn_proposed: Any, w: Any) -> Any:
    """``log f(w; theta) - log f(w; theta')``, summed over the draws (a scalar)."""
    return (fn_current.log_prob(w) - fn_proposed.log_prob(w)).sum()


def adapt_log_step(log_step: Any, accept_prob: Any, t: Any, target: float) -> Any:
    """Robbins-Monro adaptation of the log step size towards ``target`` acceptance:
    ``log s += (a - target) / (t + 1)^0.6`` (used during warmup only; ``t`` counts from the
    start of the current warmup window)."""
    return log_step + (accept_prob - target) / (t + 1.0) ** 0.6


#: Where the warmup windows end, as fractions of the warmup. At the end of each window the
#: proposal's per-coordinate scales are set to the standard deviations of that window's
#: draws and the step size restarts; the last stretch adapts the step size only (as Stan's
#: windowed adaptation). Draws from the transient of the first window thus never set the
#: final scales.
WINDOW_ENDS = (0.15, 0.3, 0.6)


def warmup_windows(num_warmup: int) -> tuple[int, ...]:
    """The iterations (counted from 0) after which a warmup window closes."""
    ends = sorted({int(num_warmup * f) for f in WINDOW_ENDS})
    return tuple(e for e in ends if e >= MIN_ADAPT_DRAWS)


def restart_step(dim: int) -> float:
    """The step size a window starts with: ``2.38 / sqrt(d)``, the optimal random-walk scale
    for a ``d``-dimensional Gaussian target in units of its standard deviations."""
    return 2.38 / math.sqrt(max(dim, 1))


def welford(n: Any, mean: Any, m2: Any, x: Any) -> tuple[Any, Any, Any]:
    """One Welford update of a running mean and sum of squared deviations by ``x``."""
    n1 = n + 1
    d = x - mean
    mean = mean + d / n1
    return n1, mean, m2 + d * (x - mean)


def proposal_scale(n: Any, m2: Any) -> Any:
    """Per-coordinate proposal scales from the warmup draws: their standard deviations once
    :data:`MIN_ADAPT_DRAWS` were seen (floored at ``1e-6``), ones before. Multiplied by the
    adapted step size, this is a random walk shaped like the posterior's marginals."""
    var = m2 / ops.where(n > 1, n - 1.0, 1.0 + 0.0 * n)
    sd = ops.where(var > 1e-12, var, 1e-12 + 0.0 * var) ** 0.5
    return ops.where(n >= MIN_ADAPT_DRAWS, sd, 1.0 + 0.0 * sd)
