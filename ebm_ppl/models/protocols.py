"""The contracts between the models and the inference algorithms, as ``typing.Protocol``\\ s.

The algorithms of :mod:`ebm_ppl.inference` are written against these structural types, never
against a concrete model class; a model (ours or a user's) takes part in an algorithm by
providing the members of its protocol. All protocols are ``runtime_checkable``:
``isinstance(x, P)`` tests that the members exist, and :func:`require` turns a failed test
into a ``TypeError`` that names the missing members.

* :class:`EnergyDistribution` -- what block Gibbs (``BlockGibbs``), SA-MLE (``SAMLE``) and
  chain runners need of an energy site: an unnormalized ``log_prob``, a chain initialiser and
  a block-Gibbs ``transition``.
  :class:`Contrasts` and :class:`CachesData` are its optional SA-MLE extras.
* :class:`AnnealingPath` -- what AIS (``run_ais``) needs of a target: the geometric path
  ``f_beta`` from a base (``beta = 0``) to the model (``beta = 1``), its ``log Z_0``, its
  log-density and a transition leaving each ``f_beta`` invariant.
* :class:`RaisePath` -- the extra members RAISE needs (a path that carries the data).
* :class:`CarriesAISState` -- a path whose state is not the model's sample (a DBM anneals
  over alternate layers and maps full states to the carried ones).
* :class:`TemperingPath` -- what parallel tempering and tempered transitions need: the
  path's terms ``(log base(v), V(v), u(v))`` and a sweep from a known hidden input.
* :class:`TransitionOperator` -- what ``SAMLE`` and ``BlockGibbs`` need of a tempered
  operator (:mod:`ebm_ppl.inference.tempering`): pure ``init_state`` / ``step`` /
  ``with_samples`` / ``samples`` in the shape of BlackJAX's algorithms,
  ``step(key, dist, state, num_steps) -> (state, info)``.
* :class:`ChecksValues` and :func:`check_value` -- the value check every distribution
  carries (``_check_value``, private to the distribution classes): the one declared place
  where the other layers call it.

Arrays are :data:`ebm_ppl.ops.Array` (a ``torch.Tensor`` or a ``jax.Array``); keys are
:data:`ebm_ppl.ops.Key`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ebm_ppl.ops import Array, Key

__all__ = [
    "EnergyDistribution",
    "Contrasts",
    "CachesData",
    "AnnealingPath",
    "RaisePath",
    "CarriesAISState",
    "TemperingPath",
    "TransitionOperator",
    "ChecksValues",
    "missing_members",
    "require",
    "check_value",
]


@runtime_checkable
class EnergyDistribution(Protocol):
    """An energy site's distribution as block Gibbs and SA-MLE use it."""

    def log_prob(self, value: Array) -> Array:
        """Unnormalized log-density ``-F(v)`` (or ``-E``), shape ``value.shape[:-1]``."""
        ...

    def init_chain(self, key: Key, shape: tuple) -> Array:
        """Starting states of chains, shape ``shape`` (batch + event shape)."""
        ...

    def transition(
        self, key: Key, value: Array, num_steps: int = 1, clamp: Any = None
    ) -> tuple[Array, Array]:
        """``num_steps`` exact block-Gibbs sweeps from ``value``: ``(value, hidden)``."""
        ...


@runtime_checkable
class Contrasts(Protocol):
    """An energy distribution with its own SA-MLE surrogate (e.g. a DBM's mean-field positive
    phase, or an RBM's that reuses the data's hidden logits)."""

    def contrast(
        self, data: Array, samples: Array, w_data: float, w_model: float, cache: Any = None
    ) -> Array:
        """``-(w_data sum log p~(data) - w_model sum log p~(samples))`` or its mean-field
        counterpart, a scalar whose gradient is the SA-MLE update."""
        ...


@runtime_checkable
class CachesData(Protocol):
    """An energy distribution that can precompute what a chain started at the data needs."""

    def data_cache(self, value: Array) -> Array:
        """A gradient-free cache of ``value`` (e.g. its hidden logits) for ``transition``
        and ``contrast``."""
        ...


@runtime_checkable
class AnnealingPath(Protocol):
    """A target of AIS: the path ``f_beta`` from a base (``beta = 0``) to the model."""

    def log_prob(self, value: Array) -> Array:
        """Unnormalized log-density of the model (``beta = 1``)."""
        ...

    def ais_base(self, base: Any) -> Any:
        """The path's base: the model's default for ``None``, else ``base`` checked."""
        ...

    def ais_log_z0(self, base: Any) -> Array:
        """``log Z`` of the ``beta = 0`` end, a scalar."""
        ...

    def ais_log_f(self, x: Array, beta: Any, base: Any) -> Array:
        """``log f_beta(x)``, shape ``x.shape[:-1]``."""
        ...

    def ais_step(
        self, key: Key, x: Array, beta_prev: Any, beta: Any, base: Any
    ) -> tuple[Array, Array]:
        """``(x_new, log f_beta(x) - log f_beta_prev(x))``: the weight increment of each
        run, then a transition leaving ``f_beta`` invariant."""
        ...


@runtime_checkable
class RaisePath(AnnealingPath, Protocol):
    """An AIS path that RAISE can run backwards from data."""

    def raise_base(self, base: Any) -> Any:
        """The path RAISE anneals along (it carries the visible units)."""
        ...

    def raise_start(self, key: Key, v: Array, base: Any) -> tuple[Array, Array]:
        """``(x, log q(x | v))``: the path state started at data ``v`` and its log-density."""
        ...


@runtime_checkable
class CarriesAISState(Protocol):
    """A path whose state differs from the model's samples (e.g. a DBM's carried layers)."""

    def ais_state(self, value: Array, base: Any = None) -> Array:
        """Full model states ``(runs, D)`` as the path's state, checked."""
        ...


@runtime_checkable
class TemperingPath(Protocol):
    """What parallel tempering and tempered transitions need of a model (the RBM family).

    With ``terms = path_terms(v, base) = (log base(v), V(v), u(v))``,
    ``log f_beta(v) = (1 - beta) log base(v) + beta V(v) + sum_j softplus(beta u_j(v))``
    (:func:`ebm_ppl.models.family.path_log_f`).
    """

    def ais_base(self, base: Any) -> Any:
        """The path's base (the ``beta = 0`` end)."""
        ...

    def init_chain(self, key: Key, shape: tuple) -> Array:
        """Starting states of chains, shape ``shape``."""
        ...

    def transition(
        self, key: Key, value: Array, num_steps: int = 1, clamp: Any = None
    ) -> tuple[Array, Array]:
        """Block-Gibbs sweeps at ``beta = 1``: ``(value, hidden)``."""
        ...

    def path_terms(self, v: Array, base: Any) -> tuple[Array, Array, Array]:
        """``(log base(v), V(v), u(v))``, shapes ``(...)``, ``(...)``, ``(..., F)``."""
        ...

    def path_sweep(self, key: Key, u: Array, beta: Any, base: Any) -> tuple[Array, Array]:
        """A sweep at ``beta`` from hidden input ``u``: ``h ~ p_beta(h | v)``, then
        ``v ~ p_beta(v | h)``; returns ``(v, h)``."""
        ...


@runtime_checkable
class TransitionOperator(Protocol):
    """A transition operator for persistent chains (``SAMLE``, ``BlockGibbs``).

    Pure: ``step`` returns a new state and an ``info`` NamedTuple (the operator's
    statistics, e.g. swap acceptances) and changes nothing else, so the same state and key
    give the same result. ``chain_axis`` is the axis of a state that indexes the chains.
    """

    chain_axis: int

    def describe(self) -> dict:
        """JSON-able settings (stored in checkpoints)."""
        ...

    def init_state(self, key: Key, dist: Any, shape: tuple) -> Array:
        """A fresh operator state for chains of ``dist`` of shape ``shape``."""
        ...

    def samples(self, state: Array) -> Array:
        """The chains' current samples of the model (``beta = 1``)."""
        ...

    def with_samples(self, state: Array, value: Array) -> Array:
        """``state`` with its model samples replaced by ``value``."""
        ...

    def step(self, key: Key, dist: Any, state: Array, num_steps: int) -> tuple[Array, Any]:
        """``num_steps`` operator steps: ``(state, info)``; ``info.hidden`` holds the hidden
        states at ``beta = 1`` after the last step."""
        ...


@runtime_checkable
class ChecksValues(Protocol):
    """A distribution that validates values (shape, support) before using them."""

    def _check_value(self, value: Array, name: str = "value") -> None:
        """``ValueError`` naming ``name`` unless ``value`` is a valid (batch of) state(s)."""
        ...


def missing_members(obj: Any, protocol: type) -> list[str]:
    """The members of ``protocol`` that ``obj`` lacks (methods: absent or not callable;
    data members: absent), in declaration order."""
    out = []
    for name, wanted in _members(protocol):
        member = getattr(obj, name, _MISSING)
        if member is _MISSING or (callable(wanted) and not callable(member)):
            out.append(name)
    return out


def require(obj: Any, protocol: type, role: str) -> None:
    """``TypeError`` unless ``obj`` provides every member of ``protocol``; the message names
    the role (e.g. ``"run_ais's target"``), the protocol and the missing members."""
    missing = missing_members(obj, protocol)
    if missing:
        raise TypeError(
            f"{role} must implement {protocol.__name__} ({protocol.__module__}); "
            f"{type(obj).__name__} lacks {', '.join(missing)}"
        )


def check_value(dist: Any, value: Array, name: str = "value") -> None:
    """Run ``dist``'s own value check (``ValueError`` naming ``name`` for an invalid
    value); nothing for a distribution without one."""
    if isinstance(dist, ChecksValues):
        dist._check_value(value, name)


_MISSING = object()


def _members(protocol: type) -> list[tuple[str, Any]]:
    """``(name, declared value)`` of a protocol's members, base protocols first."""
    out: dict[str, Any] = {}
    for c in reversed(protocol.__mro__):
        if c is object or not getattr(c, "_is_protocol", False) or c.__name__ == "Protocol":
            continue
        for name in getattr(c, "__annotations__", {}):
            out.setdefault(name, None)
        for name, value in vars(c).items():
            if (
                not name.startswith("__")
                and not name.startswith("_abc")
                and name
                not in (
                    "_is_protocol",
                    "_is_runtime_protocol",
                )
            ):
                out[name] = value
    return list(out.items())
