"""Which energy sites of a program have parameters that depend on random variables.

An energy distribution's ``log_prob`` omits ``log Z(theta)``. When ``theta`` is a constant or
a ``param`` that is harmless; when ``theta`` depends on a latent sample site (a prior on the
weights, a latent temperature) the program's joint density is off by a ``theta``-dependent
term and any sampler or guide that uses it targets the wrong posterior (a doubly-intractable
model). The kernels, guides and trainers of both frontends call :func:`check_energy_dependence`
at set-up; the frontends find the dependencies with their PPL's provenance tracking
(``infer.inspect.get_dependencies``), or, where a model cannot be traced that way, by
perturbing each latent site and watching the energy sites' parameters.

Written once for Pyro's ``trace.nodes`` and NumPyro's traces (both map site names to site
dicts with ``type``, ``fn``, ``value``, ``is_observed``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from ebm_ppl import ops
from ebm_ppl.inference.gibbs import is_energy_distribution


def _is_sample(site: Mapping) -> bool:
    return site.get("type") == "sample" and type(site["fn"]).__name__ != "_Subsample"


def latent_sites(nodes: Mapping[str, Mapping]) -> list[str]:
    """The latent (unobserved) sample sites of a trace, plates excluded."""
    return [n for n, s in nodes.items() if _is_sample(s) and not s.get("is_observed")]


def energy_sites(nodes: Mapping[str, Mapping]) -> list[str]:
    """Every energy site of a trace, observed or latent."""
    return [n for n, s in nodes.items() if _is_sample(s) and is_energy_distribution(s["fn"])]


def from_provenance(
    nodes: Mapping[str, Mapping], prior_dependencies: Mapping[str, Iterable[str]]
) -> dict[str, list[str]]:
    """``{energy site: [latent sites its distribution depends on]}`` from the
    ``prior_dependencies`` of ``get_dependencies`` (a site's upstream sample sites)."""
    latent = set(latent_sites(nodes))
    out = {}
    for name in energy_sites(nodes):
        ups = sorted(u for u in prior_dependencies.get(name, ()) if u != name and u in latent)
        if ups:
            out[name] = ups
    return out


def parameter_leaves(fn: Any) -> list:
    """The arrays a distribution holds (its parameters), found in its attributes, tuples and
    nested distributions; used to compare two traces of one site."""
    out: list = []
    seen: set = set()

    def visit(x: Any, depth: int) -> None:
        if depth > 4 or id(x) in seen:
            return
        seen.add(id(x))
        if ops.is_torch(x) or ops.is_jax(x):
            out.append(x)
        elif isinstance(x, (tuple, list)):
            for y in x:
                visit(y, depth + 1)
        elif isinstance(x, dict):
            for y in x.values():
                visit(y, depth + 1)
        elif hasattr(x, "__dict__") and not isinstance(x, type) and depth < 4:
            for k, y in vars(x).items():
                if not k.startswith("__"):
                    visit(y, depth + 1)

    for k, v in vars(fn).items():
        if k not in ("_batch_shape", "_event_shape"):
            visit(v, 1)
    return out


def _differ(a: list, b: list) -> bool:
    if len(a) != len(b):
        return True
    for x, y in zip(a, b):
        if tuple(x.shape) != tuple(y.shape):
            return True
        xa, ya = ops.to_numpy(x), ops.to_numpy(y)
        if not np.array_equal(xa, ya, equal_nan=True):
            return True
    return False


def by_perturbation(
    nodes: Mapping[str, Mapping],
    retrace: Callable[[str], Mapping[str, Mapping]],
) -> dict[str, list[str]]:
    """``{energy site: [latent sites]}`` found by re-tracing the model with one latent site
    at a time redrawn (``retrace(name)`` returns such a trace with every other latent site
    held at its value in ``nodes``) and comparing the energy sites' parameters. The fallback
    for models that provenance tracking cannot run."""
    energy = energy_sites(nodes)
    ref = {n: parameter_leaves(nodes[n]["fn"]) for n in energy}
    out: dict[str, list[str]] = {}
    for u in latent_sites(nodes):
        tr = retrace(u)
        for n in energy:
            if n != u and n in tr and _differ(ref[n], parameter_leaves(tr[n]["fn"])):
                out.setdefault(n, []).append(u)
    return {n: sorted(v) for n, v in out.items()}


#: How SAMLE describes itself in the refusal (normalizing does not help there).
SAMLE_WHERE = (
    "SAMLE (it would draw the latent site from its prior at every update and fit the "
    "parameters to that, not maximize a likelihood)"
)


def refusal_message(deps: Mapping[str, list[str]], where: str, frontend: str) -> str:
    """The error text: the site, the latent sites it depends on, and the ways out."""
    parts = "; ".join(f"energy site {n!r} depends on latent site(s) {u}" for n, u in deps.items())
    return (
        f"{parts}. Its log_prob is unnormalized (it omits log Z(theta)), so {where} would "
        "target a wrong posterior. Ways out: (1) normalized=True on the energy distribution "
        "when log Z can be enumerated (small models): log_prob then includes -log Z(theta) and "
        "NUTS, HMCGibbs and SVI are exact; (2) the exchange algorithm for these parameters, "
        f"ebm_ppl.{frontend}.Exchange(model) under MCMC; (3) make the parameters pyro/numpyro "
        "params (learned by SAMLE) or observed values."
    )


def check_energy_dependence(
    nodes: Mapping[str, Mapping],
    deps: Mapping[str, list[str]],
    where: str,
    frontend: str,
    allow_normalized: bool = True,
) -> None:
    """``ValueError`` (see :func:`refusal_message`) for energy sites in ``deps`` unless they
    are ``normalized=True`` (exact) and ``allow_normalized``."""
    bad = {
        n: u
        for n, u in deps.items()
        if not (allow_normalized and getattr(nodes[n]["fn"], "normalized", False))
    }
    if bad:
        raise ValueError(refusal_message(bad, where, frontend))
