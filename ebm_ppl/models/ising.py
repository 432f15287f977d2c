"""The 2-D lattice Ising model, written once for torch and JAX.

Spins ``s_i in {-1, +1}`` sit on an ``H x W`` lattice (the event shape ``(H, W)``) with energy

    ``E(s) = -J sum_<ij> s_i s_j - h sum_i s_i``

where ``<ij>`` runs over the nearest-neighbour bonds: free boundaries by default, or a torus
(``periodic=True``, which needs even ``H`` and ``W`` so that the lattice stays bipartite; a
periodic side of length 2 has two bonds between the same pair of sites, both counted, as a
neighbour sum by rolling the array gives). ``J`` (``coupling``) and ``h`` (``field``) are
scalars or arrays of the batch shape.

The lattice is bipartite: colour site ``(i, j)`` black when ``i + j`` is even and white
otherwise, and every bond joins a black site to a white one. Hence

* the spins of one colour are independent given the other colour, with
  ``p(s_i = +1 | rest) = sigmoid(2 (J sum_nbr s_j + h))`` (checkerboard block Gibbs);
* ``log Z`` is a log-sum-exp over the configurations ``e`` of the smaller colour of
  ``h sum(e) + sum_o log(2 cosh(J (A e)_o + h))`` (the other colour summed out
  analytically; ``A`` the black-white adjacency), exact for up to 20 enumerated sites
  (lattices up to 6 x 6), and the same weights give exact independent draws.

:class:`IsingMethods` gives the Pyro and NumPyro classes the same methods on top of these
functions; nothing here knows about either PPL.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import numpy as np

from ebm_ppl import ops
from ebm_ppl.models.family import (
    BlockGibbsMethods,
    OutOfSupport,
    check_backend,
    check_finite_float,
    check_num_gibbs_steps,
    checks_enabled,
    draw_states,
)
from ebm_ppl.ops import Array

#: Largest number of sites of one colour that :func:`log_partition` and :func:`exact_sample`
#: enumerate (``2**20`` configurations): lattices up to 6 x 6, free or periodic.
MAX_ENUMERATE_SITES = 20


# --------------------------------------------------------------------------------------
# the lattice
# --------------------------------------------------------------------------------------


class LatticeGraph(NamedTuple):
    """The bipartite structure of an ``H x W`` lattice (numpy, built once per shape).

    ``enum`` / ``other``: flat site indices of the enumerated (smaller) colour and of the
    other colour; ``adjacency[o, e]``: the number of bonds between ``other[o]`` and
    ``enum[e]``; ``place_enum`` ``(k, H W)`` and ``place_other`` ``(m, H W)``: 0/1 matrices
    that put each colour's spins at their lattice positions (``e @ place_enum``)."""

    enum: np.ndarray
    other: np.ndarray
    adjacency: np.ndarray
    place_enum: np.ndarray
    place_other: np.ndarray


@functools.lru_cache(maxsize=64)
def lattice_graph(height: int, width: int, periodic: bool) -> LatticeGraph:
    """:class:`LatticeGraph` of the lattice (cached)."""
    n = height * width
    idx = np.arange(n).reshape(height, width)
    ii, jj = np.divmod(idx, width)
    black = idx[(ii + jj) % 2 == 0]
    white = idx[(ii + jj) % 2 == 1]
    enum, other = (white, black) if len(white) <= len(black) else (black, white)
    adj_full = np.zeros((n, n), dtype=np.int64)
    for a, b in _bonds(height, width, periodic):
        adj_full[a, b] += 1
        adj_full[b, a] += 1
    place_enum = np.zeros((len(enum), n))
    place_enum[np.arange(len(enum)), enum] = 1.0
    place_other = np.zeros((len(other), n))
    place_other[np.arange(len(other)), other] = 1.0
    adjacency = adj_full[np.ix_(other, enum)].astype(np.float64)
    return LatticeGraph(enum, other, adjacency, place_enum, place_other)


def _bonds(height: int, width: int, periodic: bool) -> list[tuple[int, int]]:
    """The nearest-neighbour bonds as pairs of flat indices (with multiplicity)."""
    out = []
    for i in range(height):
        for j in range(width):
            a = i * width + j
            if j + 1 < width:
                out.append((a, i * width + j + 1))
            elif periodic:
                out.append((a, i * width))
            if i + 1 < height:
                out.append((a, (i + 1) * width + j))
            elif periodic:
                out.append((a, j))
    return out


def colour_mask(shape: tuple[int, int], like: Array) -> tuple[Array, Array]:
    """Boolean ``(H, W)`` masks of the black (``i + j`` even) and white sites, made on
    ``like``'s device (no host copy)."""
    h, w = shape
    parity = (ops.arange(h, like)[:, None] + ops.arange(w, like)[None, :]) % 2
    return parity == 0, parity != 0


# --------------------------------------------------------------------------------------
# the math
# --------------------------------------------------------------------------------------


def _roll(x: Array, shift: int, axis: int) -> Array:
    """``x`` rolled by ``+-1`` along ``axis`` (``-2`` or ``-1``) by slicing (both backends)."""
    if axis == -2:
        if shift == 1:
            return ops.concat([x[..., -1:, :], x[..., :-1, :]], axis=-2)
        return ops.concat([x[..., 1:, :], x[..., :1, :]], axis=-2)
    if shift == 1:
        return ops.concat([x[..., -1:], x[..., :-1]], axis=-1)
    return ops.concat([x[..., 1:], x[..., :1]], axis=-1)


def _shift(x: Array, shift: int, axis: int) -> Array:
    """``x`` shifted by ``+-1`` along ``axis`` with zeros coming in (free boundaries)."""
    if axis == -2:
        pad = ops.zeros(tuple(x.shape[:-2]) + (1, x.shape[-1]), x)
        if shift == 1:
            return ops.concat([pad, x[..., :-1, :]], axis=-2)
        return ops.concat([x[..., 1:, :], pad], axis=-2)
    pad = ops.zeros(tuple(x.shape[:-1]) + (1,), x)
    if shift == 1:
        return ops.concat([pad, x[..., :-1]], axis=-1)
    return ops.concat([x[..., 1:], pad], axis=-1)


def neighbour_sum(s: Array, periodic: bool = False) -> Array:
    """``sum_{j nbr i} s_j`` for every site ``i`` of ``s`` ``(..., H, W)`` (same shape)."""
    move = _roll if periodic else _shift
    return move(s, 1, -2) + move(s, -1, -2) + move(s, 1, -1) + move(s, -1, -1)


def pair_sum(s: Array, periodic: bool = False) -> Array:
    """``sum_<ij> s_i s_j`` over the bonds, shape ``s.shape[:-2]``."""
    out = (s[..., :, :-1] * s[..., :, 1:]).sum(-1).sum(-1)
    out = out + (s[..., :-1, :] * s[..., 1:, :]).sum(-1).sum(-1)
    if periodic:
        out = out + (s[..., :, -1] * s[..., :, 0]).sum(-1)
        out = out + (s[..., -1, :] * s[..., 0, :]).sum(-1)
    return out


def spin_sum(s: Array) -> Array:
    """``sum_i s_i``, shape ``s.shape[:-2]``."""
    return s.sum(-1).sum(-1)


def neg_energy(coupling: Array, field: Array, s: Array, periodic: bool = False) -> Array:
    """``-E(s) = J sum_<ij> s_i s_j + h sum_i s_i``, shape
    ``broadcast(s.shape[:-2], J.shape, h.shape)``."""
    return coupling * pair_sum(s, periodic) + field * spin_sum(s)


def log_2cosh(x: Array) -> Array:
    """``log(2 cosh x) = logaddexp(x, -x) = softplus(2 x) - x``, stable for large ``|x|``."""
    return ops.softplus(2.0 * x) - x


def _check_enumerable(shape: tuple[int, int], periodic: bool, max_sites: int, what: str):
    """The :class:`LatticeGraph`, or ``ValueError`` when the smaller colour (``floor(H W /
    2)`` sites) is too large to enumerate (checked before anything is built)."""
    k = (int(shape[0]) * int(shape[1])) // 2
    if k > max_sites:
        alternative = (
            "Estimate log Z with annealed importance sampling (AIS), or use the exchange "
            "algorithm (ebm_ppl.pyro.Exchange / ebm_ppl.numpyro.Exchange with aux_sweeps=K) "
            "where the parameters are random."
            if what == "log_partition"
            else "Draw approximately with transition (checkerboard block Gibbs) instead."
        )
        raise ValueError(
            f"{what} enumerates the spins of one checkerboard colour, which has {k} sites on "
            f"this {shape[0]}x{shape[1]} lattice; at most {max_sites} are feasible (lattices "
            f"up to 6x6). {alternative}"
        )
    return lattice_graph(int(shape[0]), int(shape[1]), bool(periodic))


def _enum_log_weights(coupling: Array, field: Array, states: Array, adjacency_t: Array) -> Array:
    """Log marginal weights ``h sum(e) + sum_o log 2cosh(J (A e)_o + h)`` of the enumerated
    colour's configurations ``states`` ``(S, k)``, shape ``broadcast(J, h) + (S,)``."""
    nb = states @ adjacency_t  # (S, m)
    local = coupling[..., None, None] * nb + field[..., None, None]  # (..., S, m)
    return log_2cosh(local).sum(-1) + field[..., None] * states.sum(-1)


def _spin_states(k: int, like: Array, start: int = 0, stop: int | None = None) -> Array:
    return 2.0 * ops.binary_states(k, like, start, stop) - 1.0


def log_partition(
    coupling: Array,
    field: Array,
    shape: tuple[int, int],
    periodic: bool = False,
    max_sites: int = MAX_ENUMERATE_SITES,
    chunk_elements: int = 1 << 23,
) -> Array:
    """Exact ``log Z``, shape ``broadcast(J.shape, h.shape)``: a log-sum-exp over the ``2**k``
    configurations of the smaller checkerboard colour (``k <= max_sites``) of their marginal
    log weights, the other colour summed out analytically; accumulated over chunks so memory
    stays bounded. Differentiable in ``J`` and ``h`` (torch autograd, JAX). ``ValueError``
    (pointing to AIS / the exchange algorithm) for larger lattices."""
    g = _check_enumerable(shape, periodic, max_sites, "log_partition")
    k, m = len(g.enum), len(g.other)
    batch = ops.broadcast_shapes(tuple(coupling.shape), tuple(field.shape))
    adjacency_t = ops.asarray_like(g.adjacency.T, coupling)  # (k, m)
    width = max(1, math.prod(batch)) * max(1, m)
    chunk = max(1, min(2**k, chunk_elements // width))
    parts = []
    for start in range(0, 2**k, chunk):
        states = _spin_states(k, coupling, start, min(2**k, start + chunk))
        terms = _enum_log_weights(coupling, field, states, adjacency_t)
        parts.append(ops.logsumexp(terms, axis=-1)[..., None])
    log_z = ops.logsumexp(ops.concat(parts, axis=-1), axis=-1)
    return ops.broadcast_to(log_z, batch)


def exact_sample(
    key: Any,
    coupling: Array,
    field: Array,
    shape: tuple[int, int],
    periodic: bool,
    out_shape: tuple,
    max_sites: int = MAX_ENUMERATE_SITES,
) -> Array:
    """Exact independent draws of shape ``out_shape + (H, W)`` (``out_shape`` ends with a
    shape that ``J`` and ``h`` broadcast to): the smaller colour's configuration from its
    marginal (Gumbel-max over its ``2**k`` configurations, memory ``draws x 2**k``), then
    the other colour from its exact conditional given it."""
    g = _check_enumerable(shape, periodic, max_sites, "exact_sample")
    k = len(g.enum)
    height, width = shape
    out_shape = tuple(out_shape)
    adjacency_t = ops.asarray_like(g.adjacency.T, coupling)
    states = _spin_states(k, coupling)  # (S, k)
    log_w = _enum_log_weights(coupling, field, states, adjacency_t)  # (..., S)
    k_enum, k_other = ops.split(key, 2)
    e = draw_states(k_enum, states, log_w, out_shape)  # out_shape + (k,)
    local = coupling[..., None] * (e @ adjacency_t) + field[..., None]  # out_shape + (m,)
    o = 2.0 * ops.bernoulli(k_other, ops.sigmoid(2.0 * local)) - 1.0
    flat = e @ ops.asarray_like(g.place_enum, coupling) + o @ ops.asarray_like(
        g.place_other, coupling
    )
    return flat.reshape(out_shape + (height, width))


def half_sweep(
    key: Any,
    coupling: Array,
    field: Array,
    s: Array,
    mask: Array,
    periodic: bool = False,
    clamp: Any = None,
) -> Array:
    """Redraw the sites where ``mask`` is true (one checkerboard colour) from their exact
    conditional ``p(s_i = +1 | rest) = sigmoid(2 (J sum_nbr s_j + h))``; ``J`` and ``h``
    broadcast against ``s.shape[:-2]``. ``clamp`` (a :class:`~ebm_ppl.models.rbm.Clamp`)
    then resets the held sites."""
    local = coupling[..., None, None] * neighbour_sum(s, periodic) + field[..., None, None]
    new = 2.0 * ops.bernoulli(key, ops.sigmoid(2.0 * local)) - 1.0
    s = ops.where(mask, new, s)
    if clamp is not None:
        s = ops.where(clamp.mask, clamp.values, s)
    return s


def gibbs_chain(
    key: Any,
    coupling: Array,
    field: Array,
    s: Array,
    num_steps: int,
    periodic: bool = False,
    clamp: Any = None,
) -> Array:
    """``num_steps >= 1`` checkerboard sweeps (black sites given white, then white given
    black) from ``s`` ``(..., H, W)``; one ``lax.scan`` in JAX, a Python loop in torch."""
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    s = ops.asarray_like(s, coupling)  # a float state of the parameters' dtype (scan carry)
    if clamp is not None:
        clamp = type(clamp)(clamp.mask, ops.asarray_like(clamp.values, s))
    black, white = colour_mask(tuple(s.shape[-2:]), coupling)

    def sweep(k, x):
        k_b, k_w = ops.split(k, 2)
        x = half_sweep(k_b, coupling, field, x, black, periodic, clamp)
        return half_sweep(k_w, coupling, field, x, white, periodic, clamp)

    return ops.iterate(sweep, key, s, num_steps, like=s)


# --------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------


def check_lattice_shape(shape: Any, periodic: Any) -> tuple[int, int]:
    """``(H, W)`` as ints; ``TypeError``/``ValueError`` naming ``shape`` / ``periodic``."""
    if not isinstance(periodic, bool):
        raise TypeError(f"periodic must be a bool, got {type(periodic).__name__}")
    if shape is None:
        raise ValueError("shape=(H, W), the lattice shape, is required")
    if not isinstance(shape, (tuple, list)) or len(shape) != 2:
        raise ValueError(f"shape must be a pair (H, W) of positive ints, got {shape!r}")
    if not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in shape):
        raise TypeError(f"shape must be a pair (H, W) of positive ints, got {shape!r}")
    height, width = int(shape[0]), int(shape[1])
    if height < 1 or width < 1:
        raise ValueError(f"shape must be a pair (H, W) of positive ints, got {shape!r}")
    if periodic and (height % 2 or width % 2):
        raise ValueError(
            f"periodic=True needs even H and W (the checkerboard colouring that the block "
            f"sampler and the exact log Z rely on must stay bipartite on the torus), got "
            f"shape {(height, width)}; use even sides or periodic=False"
        )
    return height, width


def as_parameter(x: Any, name: str, backend: str, like: Array = None) -> Array:
    """A parameter as an array of ``backend``: numbers and numpy arrays are converted (to
    ``like``'s dtype and device when given, else the default float dtype); arrays of the
    other backend and other types raise ``TypeError`` naming the argument."""
    if isinstance(x, bool) or isinstance(x, np.bool_):
        raise TypeError(f"{name} must be a float or a floating array, got a bool")
    if isinstance(x, (int, float, np.integer, np.floating, np.ndarray)):
        arr = np.asarray(x)
        if arr.dtype == np.bool_:
            raise TypeError(f"{name} must be a float or a floating array, got a bool array")
        if backend == "torch":
            # lazy: keeps this module free of torch until that backend is used
            import torch

            if like is not None and ops.is_torch(like):
                return torch.as_tensor(arr, dtype=like.dtype, device=like.device)
            return torch.as_tensor(
                arr, dtype=torch.get_default_dtype(), device=torch.get_default_device()
            )
        # lazy: keeps this module free of jax until that backend is used
        import jax.numpy as jnp

        if like is not None and ops.is_jax(like):
            return jnp.asarray(arr, dtype=like.dtype)
        return jnp.asarray(arr, dtype=jnp.result_type(float))
    return x


def is_spin(x: Array) -> bool:
    """True when every entry of the concrete array ``x`` is ``-1`` or ``+1``."""
    if ops.is_torch(x):
        # lazy: keeps this module free of torch until that backend is used
        import torch

        with torch.no_grad():
            return bool(((x == 1) | (x == -1)).all())
    a = np.asarray(x)  # numpy: never staged into a jit trace
    return bool(((a == 1) | (a == -1)).all())


def check_spins(x: Any, shape: tuple[int, int], name: str = "value", values: bool = True) -> None:
    """``TypeError`` for non-arrays; ``ValueError`` naming ``name`` for a shape other than
    ``(..., H, W)``, an empty array and (``values``, concrete arrays) entries outside
    ``{-1, +1}`` or non-finite entries."""
    if not (ops.is_torch(x) or ops.is_jax(x)):
        raise TypeError(f"{name} must be a torch.Tensor or a JAX array, got {type(x).__name__}")
    if x.ndim < 2 or tuple(x.shape[-2:]) != tuple(shape):
        raise ValueError(
            f"{name} must have shape (..., {shape[0]}, {shape[1]}) (a lattice of spins), got "
            f"{tuple(x.shape)}"
        )
    if not values or not ops.is_concrete(x):
        return
    if math.prod(x.shape) == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    if not is_spin(x):
        floating = x.is_floating_point() if ops.is_torch(x) else np.asarray(x).dtype.kind == "f"
        if floating and not ops.all_finite(x):
            raise OutOfSupport(f"{name} contains NaN or infinite values")
        raise OutOfSupport(
            f"{name} must contain spins in {{-1, +1}} for an Ising model (map 0/1 data "
            "with 2 x - 1)"
        )


# --------------------------------------------------------------------------------------
# distribution methods
# --------------------------------------------------------------------------------------


class IsingMethods(BlockGibbsMethods):
    """The Ising math as distribution methods, shared by the Pyro and NumPyro classes.

    The constructor is written once: a subclass names its backend ``_backend`` (``"torch"``
    or ``"jax"``) and mixes in ``NormalizedLogProb`` (``_set_normalized``); :meth:`_init_params`
    stores ``coupling`` ``J``, ``field`` ``h``
    (scalar arrays or arrays of the batch shape, kept in the shapes given; after a lazy
    ``expand`` results are broadcast to the larger batch shape), ``lattice_shape``,
    ``periodic`` and ``num_gibbs_steps``.
    """

    _event_dims = {"coupling": 0, "field": 0}
    field_kind = None  # no external factor can be folded into the conditionals

    coupling: Array
    field: Array
    lattice_shape: tuple[int, int]
    periodic: bool
    num_gibbs_steps: int
    _backend: str  # "torch" or "jax": the subclass's array backend

    def __init__(
        self,
        coupling: Array | float,
        field: Array | float = 0.0,
        shape: tuple[int, int] | None = None,
        periodic: bool = False,
        num_gibbs_steps: int = 100,
        normalized: bool = False,
        validate_args: bool | None = None,
    ) -> None:
        batch_shape, event_shape = self._init_params(
            self._backend, coupling, field, shape, periodic, num_gibbs_steps, validate_args
        )
        self._finish_init(batch_shape, event_shape, validate_args)
        self._set_normalized(normalized)

    def _init_params(
        self,
        backend: str,
        coupling: Any,
        field: Any,
        shape: Any,
        periodic: Any,
        num_gibbs_steps: Any,
        validate_args: bool | None,
    ) -> tuple[tuple, tuple]:
        """Check, convert and store the parameters; return ``(batch_shape, event_shape)``."""
        lattice = check_lattice_shape(shape, periodic)
        coupling = as_parameter(coupling, "coupling", backend)
        field = as_parameter(field, "field", backend, like=coupling)
        check_backend(backend, {"coupling": coupling, "field": field})
        on = checks_enabled(validate_args, coupling)
        check_finite_float({"coupling": coupling, "field": field}, on)
        check_num_gibbs_steps(num_gibbs_steps)
        try:
            batch_shape = ops.broadcast_shapes(tuple(coupling.shape), tuple(field.shape))
        except ValueError:
            raise ValueError(
                f"the shapes of coupling {tuple(coupling.shape)} and field "
                f"{tuple(field.shape)} do not broadcast"
            ) from None
        self.coupling, self.field = coupling, field
        self.lattice_shape = lattice
        self.periodic = periodic
        self.num_gibbs_steps = num_gibbs_steps
        self._check_inputs = on
        return batch_shape, lattice

    @property
    def n_sites(self) -> int:
        return self.lattice_shape[0] * self.lattice_shape[1]

    def _frozen(self) -> tuple:
        return tuple(ops.stop_gradient(x) for x in self.params)

    def _check_value(self, value: Array, name: str = "value") -> None:
        check_spins(value, self.lattice_shape, name, getattr(self, "_check_inputs", True))

    def _out(self, x: Array, value: Array) -> Array:
        shape = ops.broadcast_shapes(tuple(value.shape[:-2]), tuple(self.batch_shape))
        return ops.broadcast_to(x, shape)

    # ---- densities ----------------------------------------------------------------------

    def log_prob(self, value: Array) -> Array:
        """The **unnormalized** log-density ``-E(s) = J sum_<ij> s_i s_j + h sum_i s_i``
        (``log Z`` omitted; ``normalized=True`` subtracts :meth:`log_partition`), shape
        ``broadcast(value.shape[:-2], batch_shape)``. ``ValueError`` for values of the wrong
        shape and (concrete arrays) entries outside ``{-1, +1}``."""
        self._check_value(value)
        return self.log_prob_unchecked(value)

    def log_prob_unchecked(self, value: Array) -> Array:
        """The unnormalized :meth:`log_prob` without input checks (hot loops, SA-MLE)."""
        return self._out(neg_energy(self.coupling, self.field, value, self.periodic), value)

    def free_energy(self, value: Array) -> Array:
        """``E(s)`` (the per-draw energy trace of block Gibbs): minus the unnormalized
        log-density, shape ``broadcast(value.shape[:-2], batch_shape)``."""
        self._check_value(value)
        return -self.log_prob_unchecked(value)

    energy = free_energy

    def sufficient_statistics(self, value: Array) -> tuple[Array, Array]:
        """``(sum_<ij> s_i s_j, sum_i s_i)``, each of shape ``value.shape[:-2]``; ``log_prob``
        is ``J`` times the first plus ``h`` times the second."""
        self._check_value(value)
        return pair_sum(value, self.periodic), spin_sum(value)

    def log_partition(self, max_sites: int = MAX_ENUMERATE_SITES) -> Array:
        """Exact ``log Z``, shape ``batch_shape``, by enumerating the smaller checkerboard
        colour (at most ``max_sites`` sites: lattices up to 6 x 6) and summing the other out
        analytically; differentiable in ``J`` and ``h``. ``ValueError`` for larger lattices
        (use AIS, or the exchange algorithm for random parameters)."""
        log_z = log_partition(
            self.coupling, self.field, self.lattice_shape, self.periodic, max_sites
        )
        return ops.broadcast_to(log_z, tuple(self.batch_shape))

    # ---- sampling -----------------------------------------------------------------------

    def exact_sample(self, key: Any, sample_shape: tuple = ()) -> Array:
        """Exact independent draws, shape ``sample_shape + batch_shape + (H, W)``: one
        colour's configuration from its marginal (Gumbel-max over its ``2**k``
        configurations; memory ``draws x 2**k``), then the other colour exactly given it.
        ``ValueError`` above 20 sites per colour. ``key`` is a JAX key, or ``None``/a
        ``torch.Generator`` in torch. No gradient flows into the parameters."""
        coupling, field = self._frozen()
        shape = tuple(sample_shape) + tuple(self.batch_shape)
        return exact_sample(key, coupling, field, self.lattice_shape, self.periodic, shape)

    def init_chain(self, key: Any, shape: tuple) -> Array:
        """Chains of the full shape ``(..., H, W)``: independent uniform ``+-1`` spins."""
        shape = tuple(shape)
        if len(shape) < 2 or shape[-2:] != tuple(self.lattice_shape):
            raise ValueError(
                f"shape must end with the lattice shape {tuple(self.lattice_shape)}, got {shape}"
            )
        like = ops.stop_gradient(self.coupling)
        return 2.0 * ops.bernoulli(key, ops.zeros(shape, like) + 0.5) - 1.0

    def _gibbs(self, key, value, num_steps, clamp, cache, field):
        """The sweeps of :meth:`transition`: checkerboard block Gibbs on ``value``
        ``(..., H, W)`` (all black sites given the white ones, then white given black).
        ``clamp`` (a :class:`~ebm_ppl.models.rbm.Clamp`) holds sites fixed (reset after every
        half-sweep); ``cache`` is ignored; an external ``field`` is not supported. Returns
        ``(value, hidden)`` where ``hidden`` is an empty array of shape
        ``value.shape[:-2] + (0,)``: the model has no hidden units (an array rather than
        ``None``, so that ``BlockGibbs(report_hidden=True)`` can record it)."""
        if value.ndim < 2 or tuple(value.shape[-2:]) != tuple(self.lattice_shape):
            raise ValueError(
                f"value must have shape (..., {self.lattice_shape[0]}, "
                f"{self.lattice_shape[1]}), got {tuple(value.shape)}"
            )
        coupling, h = self._frozen()
        out = gibbs_chain(key, coupling, h, value, num_steps, self.periodic, clamp)
        return out, ops.zeros(tuple(out.shape[:-2]) + (0,), out)

    def _sample(self, key: Any, sample_shape: tuple) -> Array:
        shape = tuple(sample_shape) + tuple(self.batch_shape) + tuple(self.event_shape)
        k0, k1 = ops.split(key, 2)
        s = self.init_chain(k0, shape)
        return self.transition(k1, s, self.num_gibbs_steps)[0]
