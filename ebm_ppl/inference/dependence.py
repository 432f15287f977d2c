"""Which energy sites of a program have parameters that depend on random variables.

An energy distribution's ``log_prob`` omits ``log Z(theta)``. When ``theta`` is a constant or
a ``param`` that is harmless; when ``theta`` depends on a latent sample site (a prior on the
weights, a latent temperature) the program's joint density is off by a ``theta``-dependent
term and any sampler or guide that uses it targets the wrong posterior (a doubly-intractable
model). The kernels, guides and trainers of both frontends call :func:`check_energy_dependence`
at set-up; the frontends find the dependencies with their PPL's provenance tracking
(``infer.inspect.get_dependencies``) together with a perturbation check (each latent site
changed in turn, a few times, while the energy sites' parameters are watched), which catches
what provenance loses (``float(z)``, ``.item()``, Python branches). Neither is a proof: a
parameter that depends on a latent site only in a region none of the changed values reach is
missed.

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


def unwrap(fn: Any) -> Any:
    """The distribution inside ``to_event`` / ``expand`` / ``mask`` wrappers (``base_dist``
    chains of ``Independent``, ``ExpandedDistribution``, ``MaskedDistribution``)."""
    for _ in range(16):
        if is_energy_distribution(fn):
            return fn
        inner = getattr(fn, "base_dist", None)
        if inner is None:
            return fn
        fn = inner
    return fn


def energy_of(site: Mapping) -> Any:
    """The energy distribution of a sample site (looking through wrappers), or None."""
    fn = unwrap(site["fn"])
    return fn if is_energy_distribution(fn) else None


def energy_sites(nodes: Mapping[str, Mapping]) -> list[str]:
    """Every energy site of a trace, observed or latent, wrapped (``to_event``, ``mask``)
    or not."""
    return [n for n, s in nodes.items() if _is_sample(s) and energy_of(s) is not None]


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

    for k, v in vars(unwrap(fn)).items():
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
    retrace: Callable[[str | None, int], Mapping[str, Mapping] | None],
    num_redraws: int = 3,
) -> dict[str, list[str]]:
    """``{energy site: [latent sites]}`` found by re-tracing the model with one latent site
    at a time changed and comparing the energy sites' parameters.

    ``retrace(name, k)`` returns a trace with every latent site held at its value in
    ``nodes`` except ``name``, which takes its ``k``-th alternative value (``k = 0``: the
    negated value where the support allows it, catching sign-dependent parameters; then
    fresh draws), or ``None`` when there is no such alternative; ``retrace(None, 0)``
    changes nothing. If that unchanged re-trace already moves the parameters, the model has
    randomness outside its sample sites and this check cannot tell anything: it returns
    ``{}`` (provenance tracking then decides alone).

    Catches dependence that provenance tracking loses (``float(z)``, ``.item()``, Python
    branches on values), but only where one of the ``num_redraws`` alternative values moves
    the parameters.
    """
    energy = energy_sites(nodes)
    ref = {n: parameter_leaves(nodes[n]["fn"]) for n in energy}
    if not all(ops.is_concrete(x) for leaves in ref.values() for x in leaves):
        return {}  # traced parameters (inside jit / pmap) cannot be compared
    same = retrace(None, 0)
    if same is None or any(
        n in same and _differ(ref[n], parameter_leaves(same[n]["fn"])) for n in energy
    ):
        return {}
    out: dict[str, list[str]] = {}
    for u in latent_sites(nodes):
        for k in range(num_redraws):
            tr = retrace(u, k)
            if tr is None:
                continue
            for n in energy:
                if n != u and n in tr and _differ(ref[n], parameter_leaves(tr[n]["fn"])):
                    if u not in out.setdefault(n, []):
                        out[n].append(u)
    return {n: sorted(v) for n, v in out.items()}


def union(*deps: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """Merge dependency maps."""
    out: dict[str, set] = {}
    for d in deps:
        for n, us in d.items():
            out.setdefault(n, set()).update(us)
    return {n: sorted(us) for n, us in out.items()}


def negated(fn: Any, value: Any) -> Any | None:
    """``-value`` if it differs from ``value`` and lies in ``fn``'s support, else None."""
    try:
        neg = -value
        support = fn.support
        ok = support.check(neg) if hasattr(support, "check") else support(neg)
        ok = bool(ops.to_numpy(ok).all()) if not isinstance(ok, bool) else ok
        if ok and not np.array_equal(ops.to_numpy(neg), ops.to_numpy(value)):
            return neg
    except Exception:  # noqa: BLE001 - a support that cannot be checked: skip this value
        pass
    return None


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
        if not (allow_normalized and getattr(energy_of(nodes[n]), "normalized", False))
    }
    if bad:
        raise ValueError(refusal_message(bad, where, frontend))


# --- the search written once for both frontends (issue 24) ----------------------------------


def find_dependencies(
    nodes: Mapping[str, Mapping],
    provenance: Callable[[], Mapping[str, Mapping]],
    trace_with: Callable[[dict], Mapping[str, Mapping]],
    fresh_value: Callable[[str, int], Any],
) -> dict[str, list[str]]:
    """``{energy site: [latent sites its parameters depend on]}`` of the model traced as
    ``nodes``: the union of provenance tracking (:func:`from_provenance` of ``provenance()``,
    the PPL's ``prior_dependencies``; skipped when it raises, as provenance cannot trace
    every program) and :func:`by_perturbation`, which re-traces with ``trace_with(values)``
    (every latent site held at its value in ``nodes`` but one, which takes its negation
    (:func:`negated`) and then ``fresh_value(name, k)``, ``k = 1, 2``: a fresh draw, or a
    random state of an energy site). A re-trace that raises counts as no alternative.
    ``{}`` when the model has no energy site."""
    if not energy_sites(nodes):
        return {}
    found: dict[str, list[str]] = {}
    try:
        found = from_provenance(nodes, provenance())
    except Exception:  # noqa: BLE001 - provenance cannot trace every program
        pass
    held = {n: nodes[n]["value"] for n in latent_sites(nodes)}

    def retrace(name: str | None, k: int) -> Mapping[str, Mapping] | None:
        values = dict(held)
        if name is not None:
            alt = negated(nodes[name]["fn"], held[name]) if k == 0 else fresh_value(name, k)
            if alt is None:
                return None
            values[name] = alt
        try:
            return trace_with(values)
        except Exception:  # noqa: BLE001 - a value the model cannot run with
            return None

    return union(found, by_perturbation(nodes, retrace))
