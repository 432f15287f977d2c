"""Tempered transition operators: parallel tempering and tempered transitions, both backends.

Both move along the annealing path of the RBM family (see :mod:`ebm_ppl.models.family`),

    ``f_beta(v) = base(v)^(1 - beta) sum_h exp(-beta E(v, h))``,

whose ``beta = 1`` end is the model and whose ``beta = 0`` end is a tractable base (the
uniform model by default), so hot replicas mix freely between the model's modes.

* **Parallel tempering** (replica exchange; Swendsen & Wang 1986, Geyer 1991; used for RBM
  learning by Desjardins et al. 2010): one chain per inverse temperature of a ladder
  ``0 <= beta_1 < ... < beta_L = 1``. Each step proposes swaps between neighbours -- the even
  pairs on even steps, the odd pairs on odd steps -- accepted with probability
  ``min(1, f_l(x_{l+1}) f_{l+1}(x_l) / (f_l(x_l) f_{l+1}(x_{l+1})))``, then advances every
  replica by one block-Gibbs sweep at its own temperature. The swap needs ``log f`` of each
  replica at its neighbours' temperatures, which costs no matrix product: the hidden input
  ``u(v)`` computed for the swap also serves the sweep, so a step over ``L`` temperatures
  costs about as much as ``L`` plain sweeps.
* **Tempered transitions** (Neal 1996; for RBM learning: Salakhutdinov 2010): from the
  current state, sweep up the ladder to the hottest temperature and back down, then accept
  the end point with probability ``min(1, prod_i f_i(x_{i-1}) / f_{i-1}(x_{i-1}) *
  prod_i f_{i-1}(y_{i-1}) / f_i(y_{i-1}))`` (``x`` going up, ``y`` coming down; see
  :func:`tempered_transition`).

The states are arrays of one backend; loops are ``lax.scan`` in JAX and Python in torch.
:class:`ParallelTempering` and :class:`TemperedTransitions` package the operators for
``SAMLE(..., transition=...)`` and ``BlockGibbs(..., transition=...)``
(:class:`~ebm_ppl.models.protocols.TransitionOperator`; the model side is
:class:`~ebm_ppl.models.protocols.TemperingPath`). In the shape of BlackJAX's algorithms
they are pure: ``op.step(key, dist, state, num_steps)`` returns ``(state, info)`` with the
step's statistics in ``info`` (:class:`PTInfo`, :class:`TTInfo`) and changes nothing, so the
same state and key give the same result; callers that want running statistics add the
infos up (:func:`combine_infos`).
"""

from __future__ import annotations

import abc
import math
import warnings
from typing import Any, NamedTuple

import numpy as np

from ebm_ppl import ops
from ebm_ppl.models.family import path_log_f
from ebm_ppl.models.protocols import TemperingPath, TransitionOperator, missing_members
from ebm_ppl.ops import Array, Key


def check_ladder(betas: Any, name: str = "betas") -> np.ndarray:
    """A ladder of inverse temperatures: 1-D, strictly increasing, in ``[0, 1]``, ending at 1,
    at least two values. Returns it as float64 numpy."""
    try:
        b = np.asarray(ops.to_numpy(betas) if not isinstance(betas, (list, tuple)) else betas)
        b = b.astype(np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a 1-D array of inverse temperatures") from None
    if b.ndim != 1 or b.size < 2:
        raise ValueError(f"{name} must be a 1-D array of at least 2 inverse temperatures")
    if not np.isfinite(b).all() or b[0] < 0 or b[-1] != 1.0:
        raise ValueError(f"{name} must lie in [0, 1] and end at 1 (the model), got {b}")
    if not (np.diff(b) > 0).all():
        raise ValueError(f"{name} must be strictly increasing")
    return b


def _placed(betas: np.ndarray, like: Array) -> Array:
    """The ladder as a 1-D array of ``like``'s backend, dtype and device (one host-to-device
    copy: loops make it once and pass it on as ``placed``)."""
    return ops.asarray_like(betas.astype(np.float32), like)


def _shaped(betas: np.ndarray, like: Array, ndim: int, placed: Array | None = None) -> Array:
    """The ladder as an array of ``like``'s backend, shape ``(L,) + (1,) * (ndim - 2)``
    (``placed``: the ladder already made by :func:`_placed`)."""
    b = _placed(betas, like) if placed is None else placed
    return b.reshape((len(betas),) + (1,) * (ndim - 2))


def pt_swap(
    key: Key,
    target: TemperingPath,
    base: Any,
    ladder: Array,
    betas: np.ndarray,
    parity: Any,
    swap_states: bool = True,
    placed: Array | None = None,
) -> tuple[Array, Array, Array]:
    """The replica-exchange move on ``ladder`` ``(L, ..., D)`` (replica ``l`` at
    ``betas[l]``): swaps of the pairs ``(l, l + 1)`` with ``l % 2 == parity``.

    Returns ``(ladder, u, accepted)``: the swapped states, their hidden inputs ``u(v)`` (for
    the sweep that follows) and ``accepted`` ``(L - 1, ...)`` (false for pairs not proposed).
    With ``swap_states=False`` only ``u`` is permuted (the returned ladder is ``None``): a
    sweep needs nothing else, which saves permuting the states. ``placed`` is the ladder as
    an array on the states' device (:func:`_placed`), made once by loops.
    """
    b = _shaped(betas, ladder, ladder.ndim, placed)
    terms = target.path_terms(ladder, base)
    proposed = ops.arange(len(betas) - 1, ladder) % 2
    proposed = proposed.reshape(b[1:].shape) == parity
    if isinstance(parity, int) and ops.is_torch(ladder):  # eager: the proposed pairs only
        lo, hi = slice(parity, len(betas) - 1, 2), slice(parity + 1, len(betas), 2)
        t_lo, t_hi = tuple(t[lo] for t in terms), tuple(t[hi] for t in terms)
        part = (
            path_log_f(t_lo, b[hi])
            + path_log_f(t_hi, b[lo])
            - path_log_f(t_lo, b[lo])
            - path_log_f(t_hi, b[hi])
        )
        log_a = ops.zeros((len(betas) - 1,) + tuple(part.shape[1:]), part) - math.inf
        log_a[lo] = part
    else:
        own = path_log_f(terms, b)
        lower = tuple(t[:-1] for t in terms)
        upper = tuple(t[1:] for t in terms)
        # x_l at beta_{l+1} plus x_{l+1} at beta_l, minus both at their own temperatures
        log_a = path_log_f(lower, b[1:]) + path_log_f(upper, b[:-1]) - own[:-1] - own[1:]
    u = ops.uniform(key, tuple(log_a.shape), log_a)
    accepted = (ops.log(u) < log_a) & proposed
    # replica l takes the state of l + 1 (or l - 1) where that pair's swap was accepted
    acc = accepted * 1
    zero = ops.zeros_like(acc[:1])
    levels = ops.arange(len(betas), acc).reshape(b.shape)
    index = levels + ops.concat([acc, zero], axis=0) - ops.concat([zero, acc], axis=0)
    index = ops.broadcast_to(index, tuple(ladder.shape[:-1]))
    if ops.is_torch(index):
        index = index.long()
    else:
        index = index.astype("int32")
    swapped = ops.gather0(ladder, index) if swap_states else None
    return swapped, ops.gather0(terms[2], index), accepted


def pt_step(
    key: Key,
    target: TemperingPath,
    base: Any,
    ladder: Array,
    betas: np.ndarray,
    parity: Any,
    placed: Array | None = None,
) -> tuple[Array, Array, Array]:
    """One parallel-tempering step: :func:`pt_swap`, then one block-Gibbs sweep per replica
    at its own temperature (reusing the hidden inputs of the swap). Returns
    ``(ladder, hidden, accepted)``."""
    k_swap, k_sweep = ops.split(key, 2)
    placed = _placed(betas, ladder) if placed is None else placed
    b = _shaped(betas, ladder, ladder.ndim, placed)
    _, u, accepted = pt_swap(
        k_swap, target, base, ladder, betas, parity, swap_states=False, placed=placed
    )
    ladder, h = target.path_sweep(k_sweep, u, b, base)
    return ladder, h, accepted


class PTStats(NamedTuple):
    """Swap statistics of a parallel-tempering run: per neighbour pair ``(L - 1,)``."""

    accepted: Array
    proposed: Array

    @property
    def acceptance(self) -> np.ndarray:
        a, p = ops.to_numpy(self.accepted), ops.to_numpy(self.proposed)
        return np.where(p > 0, a / np.maximum(p, 1), np.nan)


def pt_run(
    key: Key,
    target: TemperingPath,
    base: Any,
    ladder: Array,
    betas: np.ndarray,
    num_steps: int,
    step0: int | None = None,
    placed: Array | None = None,
) -> tuple[Array, Array, PTStats]:
    """``num_steps`` parallel-tempering steps; the swap parity alternates from ``step0``
    (default: a random start, so that single-step runs propose every pair equally often).
    ``placed``: the ladder on the states' device (:func:`_placed`), if already made.

    Returns the ladder, the hidden states of the last sweep and the swap statistics summed
    over steps and chains."""
    _check_num_steps(num_steps)
    zeros = ops.zeros((len(betas) - 1,), ladder)
    n_chains = max(1, int(np.prod(ladder.shape[1:-1])))
    placed = _placed(betas, ladder) if placed is None else placed  # not once per step
    pair_parity = ops.arange(len(betas) - 1, ladder) % 2

    def body(k, carry):
        x, _, acc, prop, t = carry
        x, h, a = pt_step(k, target, base, x, betas, t % 2, placed)
        a = a.reshape(a.shape[0], -1)
        par = pair_parity == t % 2
        prop = prop + ops.where(par, zeros + n_chains, zeros)
        return x, h, acc + (a * 1.0).sum(-1), prop, t + 1

    k0, k1, k2 = ops.split(key, 3)
    if step0 is None:
        step0 = _random_bit(k2, ladder)
    first = body(k0, (ladder, None, zeros, zeros, _counter(step0, ladder)))
    x, h, acc, prop, _ = ops.iterate(body, k1, first, num_steps - 1, ladder)
    return x, h, PTStats(acc, prop)


def _counter(step0: Any, like: Array) -> Any:
    if ops.is_jax(like):
        # lazy: keeps this module free of jax until that backend is used
        import jax.numpy as jnp

        return jnp.asarray(step0, dtype=jnp.int32)
    return int(step0)


def _random_bit(key: Any, like: Array) -> Any:
    """A fair random bit: a Python int for torch (it picks which pairs are computed), drawn on
    the CPU from torch's global generator or a CPU ``key`` so that reading it costs no
    device round-trip (a generator on an accelerator is drawn from there, and read)."""
    if ops.is_torch(like):
        # lazy: keeps this module free of torch until that backend is used
        import torch

        device = "cpu" if key is None else key.device
        bit = torch.rand((), generator=key, dtype=like.dtype, device=device) < 0.5
        return int(bit)  # device: a host draw, read for free
    return (ops.uniform(key, (), like) < 0.5).astype("int32")


def tempered_transition(
    key: Key, target: TemperingPath, base: Any, v: Array, betas: np.ndarray, rows: Any = None
) -> tuple[Array, Array]:
    """One tempered transition (Neal 1996) of the chains ``v`` ``(..., D)`` at ``beta = 1``
    through the ladder ``betas`` (increasing, ending at 1) and back.

    With ``1 = b_0 > b_1 > ... > b_n`` the up pass draws ``x_i ~ T_i(x_{i-1})`` and the
    down pass ``y_{i-1} ~ T_i(y_i)`` from ``y_n = x_n`` (``T_i`` a block-Gibbs sweep at
    ``b_i``, reversible on ``v``); ``y_0`` is accepted with probability
    ``min(1, prod_{i=1..n} f_i(x_{i-1}) / f_{i-1}(x_{i-1}) * f_{i-1}(y_{i-1}) / f_i(y_{i-1}))``.
    Returns ``(v_new, accepted)`` with ``accepted`` of shape ``v.shape[:-1]``. ``rows`` is
    :func:`_ladder_rows` of ``betas`` (made once by loops: a host-to-device copy)."""
    n = len(betas) - 1
    up_rows, down_rows = _ladder_rows(betas, v) if rows is None else rows

    def up(k, carry):
        x, log_w, i = carry
        terms = target.path_terms(x, base)
        log_w = log_w + path_log_f(terms, up_rows[i][1]) - path_log_f(terms, up_rows[i][0])
        return target.path_sweep(k, terms[2], up_rows[i][1], base)[0], log_w, i + 1

    def back(k, carry):
        _, u, log_w, i = carry
        x, _ = target.path_sweep(k, u, down_rows[i][1], base)
        terms = target.path_terms(x, base)
        log_w = log_w + path_log_f(terms, down_rows[i][0]) - path_log_f(terms, down_rows[i][1])
        return x, terms[2], log_w, i + 1

    k_up, k_down, k_acc = ops.split(key, 3)
    log_w0 = ops.zeros(tuple(v.shape[:-1]), v)
    x, log_w, _ = ops.iterate(up, k_up, (v, log_w0, _counter(0, v)), n, v)
    u = target.path_terms(x, base)[2]
    x, _, log_w, _ = ops.iterate(back, k_down, (x, u, log_w, _counter(0, v)), n, v)
    acc_u = ops.uniform(k_acc, tuple(log_w.shape), log_w)
    accepted = ops.log(acc_u) < log_w
    return ops.where(accepted[..., None], x, v), accepted


def _ladder_rows(betas: np.ndarray, like: Array) -> tuple[Array, Array]:
    """The ``(b_{i-1}, b_i)`` pairs of :func:`tempered_transition`, going up and coming down,
    as arrays of ``like``'s backend, dtype and device."""
    down = betas[::-1].astype(np.float32)  # 1 = b_0 > b_1 > ... > b_n
    pairs = np.stack([down[:-1], down[1:]], 1)
    return ops.asarray_like(pairs, like), ops.asarray_like(pairs[::-1].copy(), like)


#: ladders already copied to a device, by (what, ladder, device, dtype); torch only
_ON_DEVICE: dict = {}


def _on_device(make: Any, betas: np.ndarray, like: Array) -> Any:
    """``make(betas, like)``, memoised for torch so that repeated runs (one per SAMLE update
    or MCMC step) do not copy the ladder to the device again; JAX arrays are made afresh
    (they may be staged inside ``jit``). The memo is keyed by the ladder's values, so an
    operator carries no cache of its own."""
    if not ops.is_torch(like):
        return make(betas, like)
    key = (make.__name__, betas.tobytes(), str(like.device), like.dtype)
    hit = _ON_DEVICE.get(key)
    if hit is None:
        if len(_ON_DEVICE) >= 64:  # a handful of ladders per process; never grows unbounded
            _ON_DEVICE.clear()
        hit = _ON_DEVICE[key] = make(betas, like)
    return hit


# --------------------------------------------------------------------------------------
# operators for SAMLE and BlockGibbs
# --------------------------------------------------------------------------------------


class PTInfo(NamedTuple):
    """What a :meth:`ParallelTempering.step` did.

    - **hidden**: the hidden states at ``beta = 1`` after the last sweep, ``chains + (F,)``;
    - **accepted** / **proposed**: swaps accepted / proposed per neighbour pair ``(L - 1,)``,
      summed over the steps and chains.
    """

    hidden: Array
    accepted: Array
    proposed: Array

    @property
    def stats(self) -> PTStats:
        """The swap statistics as :class:`PTStats`."""
        return PTStats(self.accepted, self.proposed)

    @property
    def acceptance(self) -> np.ndarray:
        """Swap acceptance rate per neighbour pair ``(L - 1,)`` (NaN where none proposed)."""
        return self.stats.acceptance


class TTInfo(NamedTuple):
    """What a :meth:`TemperedTransitions.step` did.

    - **hidden**: the hidden states after the last sweep, ``chains + (F,)``;
    - **acceptance**: the fraction of tempered transitions accepted, averaged over the
      chains and the steps, a scalar array.
    """

    hidden: Array
    acceptance: Array


def combine_infos(total: Any, info: Any) -> Any:
    """Running statistics of an operator: ``total`` (``None`` at first) updated by ``info``.

    Swap counts of parallel tempering (:class:`PTInfo`) add up, as :class:`PTStats`; the
    acceptance of tempered transitions (:class:`TTInfo`) is the latest one (an array, not
    read back from the device here). Other infos replace ``total``."""
    if isinstance(info, PTInfo):
        if isinstance(total, PTStats):
            return PTStats(total.accepted + info.accepted, total.proposed + info.proposed)
        return info.stats
    if isinstance(info, TTInfo):
        return info.acceptance
    return info


def check_operator(transition: Any) -> None:
    """``TypeError`` unless ``transition`` is a
    :class:`~ebm_ppl.models.protocols.TransitionOperator` (naming the missing members)."""
    missing = missing_members(transition, TransitionOperator)
    if missing:
        raise TypeError(
            "transition must be None (block Gibbs) or a transition operator such as "
            f"ParallelTempering(betas) or TemperedTransitions(betas), got {transition!r} "
            f"(TransitionOperator members missing: {', '.join(missing)})"
        )


def tempering_diagnostics(total: Any) -> dict:
    """The kernels' diagnostics of running statistics from :func:`combine_infos`:
    ``{"swap_acceptance": [rate per neighbour pair]}`` (parallel tempering) or
    ``{"acceptance": rate}`` (tempered transitions), rounded to 3 digits; ``{}`` for none."""
    if total is None:
        return {}
    if isinstance(total, PTStats):
        return {"swap_acceptance": [round(float(a), 3) for a in total.acceptance]}
    return {"acceptance": round(float(ops.to_numpy(total)), 3)}


def _check_num_steps(num_steps: Any) -> None:
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")


class _Operator(abc.ABC):
    """Shared parts of the tempered operators: the ladder, the base, and the deprecated
    stateful :meth:`run`."""

    #: the axis of the chain state that indexes the chains
    chain_axis = 0

    def __init__(self, betas: Any, base: Any = None) -> None:
        self.betas = check_ladder(betas)
        self.base = base

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.betas)} temperatures from {self.betas[0]:g} to 1)"

    def describe(self) -> dict:
        """JSON-able settings (stored in checkpoints)."""
        return {"kind": type(self).__name__, "betas": self.betas.tolist()}

    @abc.abstractmethod
    def step(self, key: Key, dist: TemperingPath, state: Array, num_steps: int):
        """``(state, info)`` after ``num_steps`` steps from ``state`` (pure)."""

    @abc.abstractmethod
    def samples(self, state: Array) -> Array:
        """The chains at ``beta = 1`` of a chain state."""

    def run(self, key: Key, dist: TemperingPath, state: Array, num_steps: int):
        """Deprecated: :meth:`step`, returning ``(state, samples, hidden)`` and recording the
        info of eager (concrete) runs on the operator (``stats`` / ``acceptance``). Use
        ``state, info = op.step(...)``; ``op.samples(state)`` and ``info.hidden``."""
        warnings.warn(
            f"{type(self).__name__}.run is deprecated: use `state, info = op.step(key, dist, "
            "state, num_steps)` (pure; the statistics are in info), op.samples(state) and "
            "info.hidden",
            DeprecationWarning,
            stacklevel=2,
        )
        state, info = self.step(key, dist, state, num_steps)
        self._record(info)
        return state, self.samples(state), info.hidden

    @abc.abstractmethod
    def _record(self, info: Any) -> None:
        """Keep ``info``'s statistics on the operator (the deprecated :meth:`run` only)."""


class ParallelTempering(_Operator):
    """Parallel tempering as a transition operator for ``SAMLE`` and ``BlockGibbs``.

    :param betas: the ladder, strictly increasing in ``[0, 1]`` and ending at 1 (the model),
        e.g. ``np.linspace(0.5, 1, 10)``.
    :param base: the ``beta = 0`` end of the path (default: the model's own, e.g. the uniform
        model for a binary RBM).

    A site's chain state is the whole ladder ``(L, chains..., D)``; the model's samples are
    its last replica. :meth:`step` returns the swap statistics in a :class:`PTInfo`
    (``info.acceptance``: the acceptance rate per neighbour pair). ``stats`` holds those of
    the deprecated :meth:`run` only, summed over its eager (torch) runs.
    """

    chain_axis = 1

    def __init__(self, betas: Any, base: Any = None) -> None:
        super().__init__(betas, base)
        self.stats: PTStats | None = None

    def init_state(self, key: Key, dist: TemperingPath, shape: tuple) -> Array:
        """Every replica drawn from the distribution's chain initialiser: ``(L,) + shape``."""
        return dist.init_chain(key, (len(self.betas),) + tuple(shape))

    def samples(self, state: Array) -> Array:
        """The replica at ``beta = 1``."""
        return state[-1]

    def step(
        self, key: Key, dist: TemperingPath, state: Array, num_steps: int
    ) -> tuple[Array, PTInfo]:
        """Advance the ladder ``state`` ``(L, chains..., D)`` by ``num_steps`` parallel-
        tempering steps (:func:`pt_run`); returns ``(state, PTInfo)``."""
        base = dist.ais_base(self.base)
        placed = _on_device(_placed, self.betas, state)
        state, h, stats = pt_run(key, dist, base, state, self.betas, num_steps, placed=placed)
        return state, PTInfo(h[-1], stats.accepted, stats.proposed)

    def _record(self, info: PTInfo) -> None:
        if ops.is_concrete(info.accepted):  # accumulate over eager runs
            self.stats = combine_infos(self.stats, info)

    def with_samples(self, state: Array, value: Array) -> Array:
        """The ladder with its ``beta = 1`` replica set to ``value``."""
        return ops.concat([state[:-1], value[None]], axis=0)


class TemperedTransitions(_Operator):
    """Tempered transitions as a transition operator for ``SAMLE`` and ``BlockGibbs``: each
    step is one tempered transition through ``betas`` (increasing, ending at 1) followed by
    a plain block-Gibbs sweep. The chain state is the model's state itself. :meth:`step`
    returns the acceptance rate in a :class:`TTInfo`; ``acceptance`` is that of the last
    eager call of the deprecated :meth:`run` only."""

    chain_axis = 0

    def __init__(self, betas: Any, base: Any = None) -> None:
        super().__init__(betas, base)
        self._acceptance: Any = None

    @property
    def acceptance(self) -> float | None:
        """The acceptance rate of the last eager (torch) :meth:`run`, or ``None``; kept as an
        array until asked for, so that a run does not wait for the device."""
        a = self._acceptance
        return a if a is None or isinstance(a, float) else float(ops.to_numpy(a))

    @acceptance.setter
    def acceptance(self, value: Any) -> None:
        self._acceptance = value

    def init_state(self, key: Key, dist: TemperingPath, shape: tuple) -> Array:
        """Chains from the distribution's initialiser, shape ``shape``."""
        return dist.init_chain(key, tuple(shape))

    def samples(self, state: Array) -> Array:
        """The chains themselves."""
        return state

    def step(
        self, key: Key, dist: TemperingPath, state: Array, num_steps: int
    ) -> tuple[Array, TTInfo]:
        """``num_steps`` x (a tempered transition, then a sweep) of the chains ``state``
        ``(chains..., D)``; returns ``(state, TTInfo)``."""
        base = dist.ais_base(self.base)
        _check_num_steps(num_steps)
        rows = _on_device(_ladder_rows, self.betas, state)

        def body(k, carry):
            k1, k2 = ops.split(k, 2)
            x, acc = tempered_transition(k1, dist, base, carry[0], self.betas, rows)
            x, h = dist.transition(k2, x, 1)
            return x, h, carry[2] + (acc * 1.0).mean()

        k0, k1 = ops.split(key, 2)
        first = body(k0, (state, None, ops.zeros((), state)))
        x, h, acc = ops.iterate(body, k1, first, num_steps - 1, state)
        return x, TTInfo(h, ops.stop_gradient(acc) / num_steps)

    def _record(self, info: TTInfo) -> None:
        if ops.is_concrete(info.acceptance):
            self.acceptance = info.acceptance

    def with_samples(self, state: Array, value: Array) -> Array:
        """The chains are the samples: ``value`` itself."""
        return value
