"""AIS paths between two DBMs (section 4.1, eq. 36-37 of the review): one parity of layers
carried as the AIS state, the other summed out at every temperature."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from ebm_ppl import ops
from ebm_ppl.models.dbm.energy import DBMParams, _gaussian_log_norm, frozen, layer_logits
from ebm_ppl.ops import Array

#: the names that :mod:`ebm_ppl.models.dbm` re-exports from here
__all__ = [
    "CARRY_CHOICES",
    "DBMBase",
    "DBMPath",
    "_draw",
    "_log_f_from_terms",
    "_logits_or_bias",
    "_unary",
    "check_same_sizes",
    "path_log_f",
    "path_step",
    "path_sweep",
    "path_terms",
    "split_carried",
    "split_odd",
]


CARRY_CHOICES = ("odd", "even")


class DBMBase(NamedTuple):
    """A factorial DBM: independent Bernoulli units in every layer with ``logits[l]``
    ``(n_l,)`` (for Gaussian visible units, ``sigma`` given, ``logits[0]`` is the mean of
    ``N(logits[0], sigma^2)`` on ``v``). The usual ``beta = 0`` end of a DBM's annealing path:
    exact samples, exact ``log Z``. A JAX pytree. See :meth:`DBMMethods.matched_base` for the
    base matched to a model and its data."""

    logits: tuple
    sigma: Any = None

    def log_partition(self) -> Array:
        """The base's exact ``log Z`` over all layers: ``sum_l sum_j softplus(logits_lj)``
        (Gaussian ``v``: ``sum_i log(sqrt(2 pi) sigma_i)`` for layer 0)."""
        total = 0.0
        for i, a in enumerate(self.logits):
            if i == 0 and self.sigma is not None:
                sigma = ops.broadcast_to(self.sigma, tuple(a.shape))
                total = total + (ops.log(sigma) + 0.5 * math.log(2 * math.pi)).sum()
            else:
                total = total + ops.softplus(a).sum()
        return total

    def sample(self, key: Any, shape: tuple, carry: str = "odd") -> Array:
        """Exact draws of the ``carry`` layers (``"odd"``: ``h1, h3, ...``; ``"even"``:
        ``v, h2, ...``), concatenated, shape ``shape + (sum of their sizes,)``."""
        first = 1 if carry == "odd" else 0
        keys = ops.split(key, len(self.logits))
        out = []
        for i in range(first, len(self.logits), 2):
            a = self.logits[i]
            if i == 0 and self.sigma is not None:
                z = ops.normal(keys[i], tuple(shape) + (int(a.shape[0]),), a)
                out.append(a + ops.broadcast_to(self.sigma, tuple(a.shape)) * z)
            else:
                probs = ops.broadcast_to(ops.sigmoid(a), tuple(shape) + (int(a.shape[0]),))
                out.append(ops.bernoulli(keys[i], probs))
        return ops.concat(out, axis=-1)

    def as_params(self) -> DBMParams:
        """The base as a DBM without weights (``weights`` entries ``None``)."""
        return DBMParams((None,) * (len(self.logits) - 1), tuple(self.logits), self.sigma)


class DBMPath:
    """The annealing path from a ``start`` DBM to a target DBM of the same layer sizes, with
    the ``carry`` layers (``"odd"`` or ``"even"``) as the AIS state and the other parity
    summed out analytically at every temperature.

    The geometric path ``p_beta ∝ exp(-(1 - beta) E_start - beta E_target)`` over all layers
    is itself a DBM: the one with parameters ``(1 - beta) theta_start + beta theta_target``
    (energies are linear in the parameters; for Gaussian ``v`` with a shared ``sigma`` up to
    the ``x``-free term ``beta (1 - beta) sum_i ((b_start,i - b_i) / sigma_i)^2 / 2``). So
    ``log f_beta`` is minus that DBM's free energy of the carried layers, and one block-Gibbs
    sweep of it (summed-out layers, then carried ones) leaves ``f_beta`` invariant. Both
    directions of the sweep are exact conditionals of the collapsed chain, so it is
    reversible, as reverse AIS and RAISE need.

    - ``start``: a :class:`DBMBase` (factorial: exact samples and exact ``log Z``; the usual
      start) or :class:`DBMParams` of another DBM (e.g. an earlier checkpoint, or the target
      with its top weights switched off), whose ``log Z`` must then be given as
      ``log_z_start`` (``log_z_start_stderr`` its standard error, added to the result's) and
      whose samples must be given to AIS (``start_samples``, e.g. long Gibbs chains).
    - A JAX pytree (``carry`` and the standard error are static).
    """

    def __init__(
        self,
        start: Any,
        carry: str = "odd",
        log_z_start: Any = None,
        log_z_start_stderr: float = 0.0,
    ) -> None:
        if carry not in CARRY_CHOICES:
            raise ValueError(f"carry must be 'odd' or 'even', got {carry!r}")
        if isinstance(start, DBMBase):
            if log_z_start is not None:
                raise ValueError("log_z_start is exact for a DBMBase start: do not give it")
            self.factorial = True
            log_z_start = start.log_partition()
            start = start.as_params()
        elif isinstance(start, DBMParams):
            if log_z_start is None:
                raise ValueError(
                    "a path from another DBM needs log_z_start (its log Z, e.g. from an "
                    "earlier AIS: pass result.log_z and log_z_start_stderr=result.log_z_stderr)"
                )
            self.factorial = False
        else:
            raise TypeError(
                f"start must be a DBMBase or the DBMParams of a DBM, got {type(start).__name__}"
            )
        if not (isinstance(log_z_start_stderr, (int, float)) and log_z_start_stderr >= 0):
            raise ValueError(f"log_z_start_stderr must be a float >= 0, got {log_z_start_stderr!r}")
        self.start, self.carry, self.log_z_start = start, carry, log_z_start
        self.log_z_start_stderr = float(log_z_start_stderr)

    @property
    def carried(self) -> range:
        return range(1 if self.carry == "odd" else 0, len(self.start.biases), 2)

    def sample(self, key: Any, shape: tuple) -> Array:
        """Exact draws of the carried layers at ``beta = 0`` (factorial starts only)."""
        if not self.factorial:
            raise ValueError(
                "AIS from another DBM cannot draw exact samples of it: give start_samples "
                "(states of the start model, e.g. from long Gibbs chains)"
            )
        base = DBMBase(self.start.biases, self.start.sigma)
        return base.sample(key, shape, self.carry)

    def tree_flatten(self):
        return (self.start, self.log_z_start), (self.carry, self.factorial, self.log_z_start_stderr)

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = cls.__new__(cls)
        obj.start, obj.log_z_start = children
        obj.carry, obj.factorial, obj.log_z_start_stderr = aux
        return obj


def split_odd(params: DBMParams, x_odd: Array) -> list:
    """The layer list with the odd layers taken from ``x_odd`` ``(..., sum_odd n_l)`` and
    ``None`` for the even ones."""
    return split_carried(params, x_odd, "odd")


def split_carried(params: DBMParams, x: Array, carry: str) -> list:
    """The layer list with the ``carry`` layers taken from ``x`` (concatenated) and ``None``
    for the others."""
    layers: list = [None] * len(params.biases)
    start = 0
    for i in range(1 if carry == "odd" else 0, len(layers), 2):
        n = int(params.biases[i].shape[0])
        layers[i] = x[..., start : start + n]
        start += n
    return layers


def _logits_or_bias(params: DBMParams, layers: Sequence[Array], i: int) -> Array:
    """``layer_logits`` for a DBM whose weights may be ``None`` (a factorial start)."""
    if params.weights[0] is None:
        return params.biases[i]
    return layer_logits(params, layers, i)


def _unary(params: DBMParams, x: Array, i: int) -> Array:
    """The carried layer ``i``'s own term of ``-E``: ``x . b_i``, or for Gaussian ``v``
    ``-sum_j (v_j - b_0j)^2 / (2 sigma_j^2)``. Shape ``x.shape[:-1]``."""
    if i == 0 and params.sigma is not None:
        return -(((x - params.biases[0]) / params.sigma) ** 2).sum(-1) / 2
    return (x * params.biases[i]).sum(-1)


def path_terms(params: DBMParams, path: DBMPath, x: Array) -> tuple[list, list]:
    """Everything ``log f_beta(x)`` needs at any ``beta`` without another matrix product:
    per layer, the pair ``(start, target)`` of the carried layer's unary term, or of the
    summed-out layer's logits (its conditional mean for Gaussian ``v``). Returns
    ``(layers, pairs)``."""
    layers = split_carried(params, x, path.carry)
    pairs = []
    for i in range(len(layers)):
        if layers[i] is not None:
            pairs.append((_unary(path.start, layers[i], i), _unary(params, layers[i], i)))
        else:
            pairs.append((_logits_or_bias(path.start, layers, i), layer_logits(params, layers, i)))
    return layers, pairs


def _log_f_from_terms(params: DBMParams, path: DBMPath, layers: list, pairs: list, beta: Any):
    total = 0.0
    for i, (s, t) in enumerate(pairs):
        if layers[i] is not None:
            total = total + (1.0 - beta) * s + beta * t
        elif i == 0 and params.sigma is not None:
            # log of the Gaussian integral of exp(-E_beta) over v: with m the interpolated
            # conditional mean, (m^2 - ((1 - beta) a^2 + beta b^2)) / (2 sigma^2) + log norm
            m = (1.0 - beta) * s + beta * t
            a, b = path.start.biases[0], params.biases[0]
            sq = (m * m - ((1.0 - beta) * a * a + beta * b * b)) / params.sigma**2
            total = total + sq.sum(-1) / 2 + _gaussian_log_norm(params)
        else:
            total = total + ops.softplus((1.0 - beta) * s + beta * t).sum(-1)
    return total


def path_log_f(params: DBMParams, path: DBMPath, x: Array, beta: Any) -> Array:
    """``log f_beta(x)`` of the carried layers ``x`` (concatenated) on ``path``, shape
    ``x.shape[:-1]``: ``-F`` of the interpolated DBM (see :class:`DBMPath`); at ``beta = 1``
    the target's ``-F`` of those layers, at ``beta = 0`` the start's."""
    params = frozen(params)
    layers, pairs = path_terms(params, path, x)
    return _log_f_from_terms(params, path, layers, pairs, beta)


def _draw(key: Any, params: DBMParams, mean_or_logits: Array, i: int) -> Array:
    if i == 0 and params.sigma is not None:
        return mean_or_logits + params.sigma * ops.normal(
            key, tuple(mean_or_logits.shape), mean_or_logits
        )
    return ops.bernoulli(key, ops.sigmoid(mean_or_logits))


def path_sweep(key: Any, params: DBMParams, path: DBMPath, layers: list, pairs: list, beta: Any):
    """One block-Gibbs sweep of the interpolated DBM at ``beta`` from the carried
    ``layers`` whose summed-out logits are in ``pairs``: the summed-out layers, then the
    carried ones. Returns the new carried layers, concatenated."""
    layers = list(layers)
    carried = [i for i in range(len(layers)) if layers[i] is not None]
    k_out, k_in = ops.split(key, 2)
    keys = ops.split(k_out, len(layers))
    for i in range(len(layers)):
        if layers[i] is None:
            s, t = pairs[i]
            layers[i] = _draw(keys[i], params, (1.0 - beta) * s + beta * t, i)
    keys = ops.split(k_in, len(layers))
    out = []
    for i in carried:
        u = (1.0 - beta) * _logits_or_bias(path.start, layers, i) + beta * layer_logits(
            params, layers, i
        )
        out.append(_draw(keys[i], params, u, i))
    return ops.concat(out, axis=-1)


def path_step(key: Any, params: DBMParams, path: DBMPath, x: Array, beta_prev: Any, beta: Any):
    """One AIS step on ``path``: the log-weight increment ``log f_beta(x) - log
    f_beta_prev(x)`` and one sweep at ``beta`` (the summed-out layers' logits are computed
    once and serve both). Returns ``(x_new, delta)``."""
    params = frozen(params)
    layers, pairs = path_terms(params, path, x)
    delta = _log_f_from_terms(params, path, layers, pairs, beta) - _log_f_from_terms(
        params, path, layers, pairs, beta_prev
    )
    return path_sweep(key, params, path, layers, pairs, beta), delta


def check_same_sizes(params: DBMParams, other: DBMParams, name: str) -> None:
    """``ValueError`` unless ``other`` has the layer sizes (and visible kind) of ``params``."""
    sizes = [int(b.shape[0]) for b in params.biases]
    got = [int(b.shape[0]) for b in other.biases]
    if got != sizes:
        raise ValueError(f"{name} must have the layer sizes {sizes}, got {got}")
    if (params.sigma is None) != (other.sigma is None):
        raise ValueError(f"{name} must have the same kind of visible units (binary or Gaussian)")
