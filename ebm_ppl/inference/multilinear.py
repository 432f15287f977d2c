"""Block Gibbs and mean field for binary sites of a multilinear log joint, by autodiff.

A user may write an energy model in plain PPL syntax, e.g. a DBM as Bernoulli sites
``v, h1, h2`` and ``factor("energy", -E(v, h1, h2))``. When the model's log joint
``log p(x)`` is *multilinear* (affine in every binary coordinate given the others, as
Bernoulli log-densities ``x l - softplus(l)`` and DBM/RBM energies are), then for a binary
coordinate ``x_i``

    ``log p(x_i = 1, rest) - log p(x_i = 0, rest) = d log p / d x_i``

at any value of ``x_i``: the exact conditional logit is a gradient, which autodiff gives for
all coordinates at once. A set of sites with no interactions between (or within) them is a
*block*: given everything else its coordinates are independent Bernoullis with those logits,
so block Gibbs samples a whole block at once (eq. 31-34 for a DBM, derived rather than
written out). The same gradients give the mean-field fixed point: for a factorial
``Q = prod Bernoulli(mu_i)`` of a multilinear log joint, ``E_Q[log p] = log p(mu)``, so
the ELBO ``log p(mu) + H(mu)`` is stationary where ``mu_i = g(d log p / d x_i at mu)``
(eq. 39-41).

Everything here is written for torch and JAX alike; a frontend supplies ``log_joint(values)``
and ``grad(values) -> {site: d log p / d site}`` for its PPL. Checks at set-up (on random
states): the log joint is multilinear (the gradient equals the finite difference for sampled
coordinates), no site interacts with itself, and blocks (found automatically by colouring
the interaction graph, or given by the user) have no interactions inside.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ebm_ppl import ops
from ebm_ppl.inference.gibbs import classify_sites
from ebm_ppl.models.variational import bernoulli_entropy, check_mean_field_args, max_abs_diff
from ebm_ppl.ops import Array

Values = Mapping[str, Array]


def is_binary_site(fn: Any) -> bool:
    """True for distributions whose support is ``{0, 1}`` per coordinate (Bernoulli sites,
    also wrapped by ``to_event`` / ``expand`` / ``mask``)."""
    support = getattr(fn, "support", None)
    while support is not None and hasattr(support, "base_constraint"):
        support = support.base_constraint
    return type(support).__name__ in ("_Boolean", "Boolean")


def binary_sites(nodes: Mapping[str, Mapping]) -> tuple[list[str], list[str], list[str]]:
    """A trace's latent sites as (binary non-energy sites, other non-energy sites, energy
    sites) (Pyro ``trace.nodes`` or a NumPyro trace)."""

    energy, _, other = classify_sites(nodes)
    names = [n for n in other if is_binary_site(nodes[n]["fn"])]
    return names, [n for n in other if n not in names], energy


def _random_states(key: Any, shapes: Mapping[str, tuple], like: Array) -> dict:
    keys = ops.split(key, max(1, len(shapes)))
    return {
        n: ops.bernoulli(k, 0.5 + ops.zeros(tuple(s), like))
        for k, (n, s) in zip(keys, shapes.items())
    }


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max()) if a.size else 0.0


def _scale(a: np.ndarray) -> float:
    return max(1.0, float(np.abs(a).max())) if a.size else 1.0


def check_multilinear(
    log_joint: Callable[[Values], Array],
    grad: Callable[[Values], dict],
    states: Sequence[Values],
    names: Sequence[str],
    coords_per_site: int = 3,
    seed: int = 0,
    rtol: float = 1e-3,
) -> None:
    """``ValueError`` unless, at each of ``states``, the gradient of the log joint with
    respect to a few random coordinates of every site equals the exact difference
    ``log p(x_i = 1, rest) - log p(x_i = 0, rest)``."""
    rng = np.random.default_rng(seed)
    for values in states:
        g = grad(values)
        for n in names:
            x = values[n]
            size = int(np.prod(x.shape))
            flat_g = ops.to_numpy(g[n]).reshape(-1)
            # the flipped states are built in NumPy: eager JAX would compile every elementwise
            # op once per shape, seconds for a small model
            flat_x = np.asarray(ops.to_numpy(x), dtype=np.float32).reshape(-1)
            for i in rng.choice(size, size=min(coords_per_site, size), replace=False):
                on, off = dict(values), dict(values)
                for target, bit in ((on, 1.0), (off, 0.0)):
                    flipped = flat_x.copy()
                    flipped[i] = bit
                    target[n] = ops.asarray_like(flipped.reshape(tuple(x.shape)), x)
                diff = float(ops.to_numpy(log_joint(on))) - float(ops.to_numpy(log_joint(off)))
                if not np.isfinite(flat_g[i]) or abs(diff - flat_g[i]) > rtol * max(1.0, abs(diff)):
                    raise ValueError(
                        f"the model's log joint is not multilinear in site {n!r}: at coordinate "
                        f"{int(i)} its gradient is {flat_g[i]:.6g} but log p(x=1) - log p(x=0) "
                        f"= {diff:.6g}. Conditionals by autodiff need a log joint that is "
                        "affine in every binary coordinate (Bernoulli sites and energies "
                        "like -E(v, h) = v W h + b v + c h; no x**2, exp(x), ...)."
                    )


def interactions(
    grad: Callable[[Values], dict],
    key: Any,
    shapes: Mapping[str, tuple],
    like: Array,
    trials: int = 3,
    atol: float = 1e-5,
    draw: Callable[[Any], dict] | None = None,
) -> set[tuple[str, str]]:
    """Pairs ``(a, b)`` of sites (``a == b`` for a site interacting with itself) such that
    the gradient with respect to ``a`` changes when ``b`` is redrawn at random, at any of
    ``trials`` random states (``draw(key) -> {site: 0/1 array}``, default the uniform
    random states of ``shapes``; a frontend may pass a compiled one)."""
    names = list(shapes)
    draw = draw or (lambda k: _random_states(k, shapes, like))
    found: set[tuple[str, str]] = set()
    for k in ops.split(key, trials):
        k_x, k_y = ops.split(k, 2)
        x = draw(k_x)
        y = draw(k_y)
        gx = {a: np.asarray(ops.to_numpy(v)) for a, v in grad(x).items()}
        for b in names:
            xb = dict(x)
            xb[b] = y[b]
            gb = {a: np.asarray(ops.to_numpy(v)) for a, v in grad(xb).items()}
            for a in names:
                if _max_diff(gx[a], gb[a]) > atol * _scale(gx[a]):
                    found.add((a, b) if names.index(a) <= names.index(b) else (b, a))
    return found


def make_blocks(
    names: Sequence[str], pairs: set[tuple[str, str]], hint: Sequence[Sequence[str]] | None = None
) -> tuple[tuple[str, ...], ...]:
    """Blocks of sites without interactions inside: the user's ``hint`` (checked), else a
    greedy colouring of the interaction graph in site order (a layered model such as a DBM
    gets its odd and even layers)."""
    for a, b in pairs:
        if a == b:
            raise ValueError(
                f"site {a!r} interacts with itself (its conditional logits depend on its own "
                "value), so it cannot be sampled as one block; split it into sites without "
                "interactions inside"
            )
    if hint is not None:
        if isinstance(hint, (str, bytes)) or not all(
            isinstance(b, (list, tuple)) and all(isinstance(n, str) for n in b) for b in hint
        ):
            raise TypeError('blocks must be a list of lists of site names, e.g. [["h1"], ["h2"]]')
        flat = [n for b in hint for n in b]
        if sorted(flat) != sorted(names):
            raise ValueError(
                f"blocks must list every latent binary site exactly once: the sites are "
                f"{sorted(names)}, blocks name {sorted(flat)}"
            )
        for block in hint:
            for a in block:
                for b in block:
                    if (a, b) in pairs:
                        raise ValueError(
                            f"blocks: sites {a!r} and {b!r} interact, so they cannot be "
                            "in the same block"
                        )
        return tuple(tuple(b) for b in hint)
    colour: dict[str, int] = {}
    for n in names:
        taken = {colour[m] for m in colour if (m, n) in pairs or (n, m) in pairs}
        colour[n] = next(c for c in range(len(names) + 1) if c not in taken)
    return tuple(tuple(n for n in names if colour[n] == c) for c in sorted(set(colour.values())))


def gibbs_sweep(
    key: Any,
    grad: Callable[[Values], dict],
    values: Values,
    blocks: Sequence[Sequence[str]],
    clamps: Mapping[str, Any] | None = None,
) -> dict:
    """One sweep over the blocks: each block drawn from its exact conditional, with logits
    the gradient of the log joint at the current values. ``clamps`` (``Clamp`` per site)
    hold coordinates fixed."""
    values = dict(values)
    keys = ops.split(key, max(1, len(blocks)))
    for k, block in zip(keys, blocks):
        g = grad(values)
        ks = ops.split(k, len(block))
        for kk, n in zip(ks, block):
            new = ops.bernoulli(kk, ops.sigmoid(ops.stop_gradient(g[n])))
            c = (clamps or {}).get(n)
            values[n] = new if c is None else ops.where(c.mask, c.values, new)
    return values


def mean_field(
    grad: Callable[[Values], dict],
    init: Values,
    blocks: Sequence[Sequence[str]],
    num_iters: int = 50,
    damping: float = 0.0,
    tol: float | None = 1e-6,
) -> dict:
    """The mean-field fixed point: sweeps of ``mu_B <- damping mu_B + (1 - damping)
    g(d log p / d x_B at mu)`` over the blocks, at most ``num_iters`` sweeps, stopping once
    no marginal moves by more than ``tol`` (torch: early exit; JAX: ``lax.while_loop``)."""
    names = [n for b in blocks for n in b]

    def sweep(mus):
        mus = dict(mus)
        for block in blocks:
            g = grad(mus)
            for n in block:
                new = ops.sigmoid(ops.stop_gradient(g[n]))
                mus[n] = new if damping == 0.0 else damping * mus[n] + (1.0 - damping) * new
        return mus

    def change(new, old):
        return max_abs_diff([new[n] for n in names], [old[n] for n in names])

    mus = dict(init)
    return dict(ops.fixed_point(sweep, mus, num_iters, tol, change, mus[names[0]]))


def entropy(mus: Values) -> Array:
    """Total entropy of independent Bernoullis with means ``mus``."""
    total = 0.0
    for m in mus.values():
        total = total + bernoulli_entropy(m.reshape(-1))
    return total


class MeanFieldGuideBase:
    """Argument checks and settings shared by the Pyro and NumPyro ``MeanFieldGuide``."""

    def __init__(
        self,
        model: Callable,
        num_iters: int = 50,
        damping: float = 0.0,
        tol: float | None = 1e-6,
        init: Callable | None = None,
        blocks: Sequence[Sequence[str]] | None = None,
    ) -> None:
        if not callable(model):
            raise TypeError(f"model must be callable, got {type(model).__name__}")
        check_mean_field_args(num_iters, damping, tol)
        if init is not None and not callable(init):
            raise TypeError("init must be None or a callable (*args, **kwargs) -> {site: mu}")
        self.model, self.num_iters, self.damping, self.tol = model, num_iters, damping, tol
        self.init, self.blocks = init, blocks

    @staticmethod
    def _binary_sites(nodes: Mapping[str, Mapping], frontend: str) -> list[str]:
        names, other, energy = binary_sites(nodes)
        if energy or other or not names:
            raise ValueError(
                "MeanFieldGuide needs a model whose latent sites are all Bernoulli sites "
                f"(found binary {names}, other {other}, energy {energy}); for an "
                f"ebm_ppl.{frontend}.DBM site use DBM.mean_field"
            )
        return names
