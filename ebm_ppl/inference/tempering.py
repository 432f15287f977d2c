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
``SAMLE(..., transition=...)`` and ``BlockGibbs(..., transition=...)``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ebm_ppl import ops
from ebm_ppl.models.family import path_log_f

Array = Any


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
    key: Any,
    target: Any,
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
    key: Any,
    target: Any,
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
    key: Any,
    target: Any,
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
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
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
        import jax.numpy as jnp

        return jnp.asarray(step0, dtype=jnp.int32)
    return int(step0)


def _random_bit(key: Any, like: Array) -> Any:
    """A fair random bit: a Python int for torch (it picks which pairs are computed), drawn on
    the CPU from torch's global generator or a CPU ``key`` so that reading it costs no
    device round-trip (a generator on an accelerator is drawn from there, and read)."""
    if ops.is_torch(like):
        import torch

        device = "cpu" if key is None else key.device
        bit = torch.rand((), generator=key, dtype=like.dtype, device=device) < 0.5
        return int(bit)  # device: a host draw, read for free
    return (ops.uniform(key, (), like) < 0.5).astype("int32")


def tempered_transition(
    key: Any, target: Any, base: Any, v: Array, betas: np.ndarray, rows: Any = None
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


def _cached(op: Any, make: Any, like: Array) -> Any:
    """``make(op.betas, like)``, kept on the operator for torch so that repeated runs (one per
    SAMLE update or MCMC step) do not copy the ladder to the device again; JAX arrays are
    made afresh (they may be staged inside ``jit``)."""
    if not ops.is_torch(like):
        return make(op.betas, like)
    cache = op.__dict__.setdefault("_on_device", {})
    key = (make.__name__, like.device, like.dtype)
    hit = cache.get(key)
    if hit is None or hit[0] is not op.betas:
        hit = cache[key] = (op.betas, make(op.betas, like))
    return hit[1]


# --------------------------------------------------------------------------------------
# operators for SAMLE and BlockGibbs
# --------------------------------------------------------------------------------------


class ParallelTempering:
    """Parallel tempering as a transition operator for ``SAMLE`` and ``BlockGibbs``.

    :param betas: the ladder, strictly increasing in ``[0, 1]`` and ending at 1 (the model),
        e.g. ``np.linspace(0.5, 1, 10)``.
    :param base: the ``beta = 0`` end of the path (default: the model's own, e.g. the uniform
        model for a binary RBM).

    A site's chain state is the whole ladder ``(L, chains..., D)``; the model's samples are
    its last replica. ``stats`` accumulates the swap statistics of eager (torch) runs;
    ``stats.acceptance`` is the acceptance rate per neighbour pair.
    """

    #: the axis of the chain state that indexes the chains (the ladder is axis 0)
    chain_axis = 1

    def __init__(self, betas: Any, base: Any = None) -> None:
        self.betas = check_ladder(betas)
        self.base = base
        self.stats: PTStats | None = None

    def __repr__(self) -> str:
        return f"ParallelTempering({len(self.betas)} temperatures from {self.betas[0]:g} to 1)"

    def describe(self) -> dict:
        """JSON-able settings (stored in checkpoints)."""
        return {"kind": "ParallelTempering", "betas": self.betas.tolist()}

    def init_state(self, key: Any, dist: Any, shape: tuple) -> Array:
        """Every replica drawn from the distribution's chain initialiser: ``(L,) + shape``."""
        return dist.init_chain(key, (len(self.betas),) + tuple(shape))

    def samples(self, state: Array) -> Array:
        """The replica at ``beta = 1``."""
        return state[-1]

    def run(self, key: Any, dist: Any, state: Array, num_steps: int):
        """Advance the ladder; returns ``(state, samples, hidden)`` (``hidden`` at beta = 1)."""
        base = dist.ais_base(self.base)
        placed = _cached(self, _placed, state)
        state, h, stats = pt_run(key, dist, base, state, self.betas, num_steps, placed=placed)
        if ops.is_concrete(stats.accepted):  # accumulate over eager runs (torch)
            if self.stats is not None:
                stats = PTStats(
                    self.stats.accepted + stats.accepted, self.stats.proposed + stats.proposed
                )
            self.stats = stats
        return state, state[-1], h[-1]

    def with_samples(self, state: Array, value: Array) -> Array:
        """The ladder with its ``beta = 1`` replica set to ``value``."""
        return ops.concat([state[:-1], value[None]], axis=0)


class TemperedTransitions:
    """Tempered transitions as a transition operator for ``SAMLE`` and ``BlockGibbs``: each
    step is one tempered transition through ``betas`` (increasing, ending at 1) followed by
    a plain block-Gibbs sweep. The chain state is the model's state itself."""

    #: the axis of the chain state that indexes the chains
    chain_axis = 0

    def __init__(self, betas: Any, base: Any = None) -> None:
        self.betas = check_ladder(betas)
        self.base = base
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

    def __repr__(self) -> str:
        return f"TemperedTransitions({len(self.betas)} temperatures from {self.betas[0]:g} to 1)"

    def describe(self) -> dict:
        """JSON-able settings (stored in checkpoints)."""
        return {"kind": "TemperedTransitions", "betas": self.betas.tolist()}

    def init_state(self, key: Any, dist: Any, shape: tuple) -> Array:
        """Chains from the distribution's initialiser, shape ``shape``."""
        return dist.init_chain(key, tuple(shape))

    def samples(self, state: Array) -> Array:
        """The chains themselves."""
        return state

    def run(self, key: Any, dist: Any, state: Array, num_steps: int):
        """``num_steps`` x (a tempered transition, then a sweep); ``(state, samples, hidden)``."""
        base = dist.ais_base(self.base)
        if not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")

        rows = _cached(self, _ladder_rows, state)

        def body(k, carry):
            k1, k2 = ops.split(k, 2)
            x, acc = tempered_transition(k1, dist, base, carry[0], self.betas, rows)
            x, h = dist.transition(k2, x, 1)
            return x, h, carry[2] + (acc * 1.0).mean()

        k0, k1 = ops.split(key, 2)
        first = body(k0, (state, None, ops.zeros((), state)))
        x, h, acc = ops.iterate(body, k1, first, num_steps - 1, state)
        if ops.is_concrete(acc):
            self.acceptance = ops.stop_gradient(acc) / num_steps
        return x, x, h

    def with_samples(self, state: Array, value: Array) -> Array:
        """The chains are the samples: ``value`` itself."""
        return value
