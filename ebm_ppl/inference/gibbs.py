"""Backend-neutral pieces of block-Gibbs sampling over the energy sites of a PPL program.

Pyro's and NumPyro's traces are both ordered mappings from site name to a site dict with
``type``, ``fn``, ``value`` and ``is_observed``; the helpers here read either. The kernels in
:mod:`ebm_ppl.pyro` and :mod:`ebm_ppl.numpyro` are thin adapters around them.

An *energy distribution* is any of our distributions with the methods ``init_chain(key,
shape)``, ``transition(key, value, num_steps, clamp) -> (value, aux)`` and ``log_prob``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ebm_ppl import ops
from ebm_ppl.models.rbm import Clamp

HIDDEN_SUFFIX = "_hidden"


def check_kernel_args(model: Any, num_sweeps: Any) -> None:
    """Argument checks shared by the Pyro and NumPyro ``BlockGibbs`` kernels."""
    if not callable(model):
        raise TypeError(f"model must be callable, got {type(model).__name__}")
    if not isinstance(num_sweeps, int) or num_sweeps < 1:
        raise ValueError(f"num_sweeps must be a positive int, got {num_sweeps!r}")


def is_energy_distribution(fn: Any) -> bool:
    """True for distributions that carry their own block-Gibbs transition."""
    return callable(getattr(fn, "transition", None)) and callable(getattr(fn, "init_chain", None))


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
    clamp: Mapping[str, Any] | None, values: Mapping[str, Any], latent: list[str]
) -> dict[str, Clamp]:
    """Turn ``{"site": (mask, values)}`` into checked :class:`Clamp` objects.

    ``mask`` (boolean) and ``values`` must broadcast to the site's value shape; the values
    where the mask is true must be valid states (0/1 for binary sites).
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
    return out


def apply_clamps(values: Mapping[str, Any], clamps: Mapping[str, Clamp]) -> dict[str, Any]:
    """Set the clamped coordinates of each site to their clamp values."""
    out = dict(values)
    for name, c in clamps.items():
        out[name] = ops.where(c.mask, c.values, out[name])
    return out


def block_gibbs_step(
    key: Any,
    dists: Mapping[str, Any],
    values: Mapping[str, Any],
    clamps: Mapping[str, Clamp],
    num_sweeps: int = 1,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Advance every energy site by ``num_sweeps`` of its own alternating-layer sweeps.

    Returns the new site values and each site's auxiliary (hidden) state.
    """
    keys = ops.split(key, max(1, len(dists)))
    new, aux = {}, {}
    for k, (name, fn) in zip(keys, dists.items()):
        new[name], aux[name] = fn.transition(k, values[name], num_sweeps, clamps.get(name))
    return new, aux


def tempered_block_step(
    key: Any,
    transition: Any,
    dists: Mapping[str, Any],
    values: Mapping[str, Any],
    states: Mapping[str, Any],
    num_steps: int = 1,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Advance every energy site by ``num_steps`` of a tempered ``transition`` operator
    (e.g. :class:`~ebm_ppl.inference.tempering.ParallelTempering`), whose per-site state
    (the ladder) is carried in ``states``; the current ``values`` replace the state's
    ``beta = 1`` member first. Returns ``(values, hidden, states)``."""
    keys = ops.split(key, max(1, len(dists)))
    new, aux, out = {}, {}, {}
    for k, (name, fn) in zip(keys, dists.items()):
        st = transition.with_samples(states[name], values[name])
        out[name], new[name], aux[name] = transition.run(k, fn, st, num_steps)
    return new, aux, out


def check_transition(transition: Any, clamp: Any) -> None:
    """Kernel-argument checks for a tempered transition operator."""
    if transition is None:
        return
    needed = ("init_state", "run", "with_samples")
    if not all(callable(getattr(transition, m, None)) for m in needed):
        raise TypeError(
            "transition must be None (block Gibbs) or a tempered operator such as "
            f"ParallelTempering(betas) or TemperedTransitions(betas), got {transition!r}"
        )
    if clamp:
        raise ValueError(
            "clamp cannot be combined with a tempered transition (the hot replicas would "
            "not be clamped); use plain block Gibbs for inpainting"
        )


def check_no_other_factors(
    residual_log_density: Callable[[dict[str, Any]], float],
    draws: list[dict[str, Any]],
    names: list[str],
    atol: float = 1e-4,
) -> None:
    """Refuse models where something besides the energy site itself depends on its value.

    ``residual_log_density(values)`` must return the model's log joint minus the energy
    sites' own log-densities; it is evaluated at a few random states and must not change
    (block Gibbs uses the energy distributions' own conditionals, which would then be wrong).
    """
    ref = float(residual_log_density(draws[0]))
    for d in draws[1:]:
        r = float(residual_log_density(d))
        if abs(r - ref) > atol * max(1.0, abs(ref)):
            raise ValueError(
                f"other factors of the model depend on the values of the energy site(s) {names}; "
                "BlockGibbs samples them from their own block conditionals, which would ignore "
                "those factors. Observe the site, or move the dependence into the energy "
                "distribution's parameters."
            )
