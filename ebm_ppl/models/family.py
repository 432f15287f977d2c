"""What every RBM-family distribution shares, written once for torch and JAX.

The RBM family (Salakhutdinov 2015, section 2) pairs a layer of binary hidden units ``h``
with visible units of some exponential-family type. Every member has an energy of the form

    ``E(v, h) = -V(v) - h . u(v)``,    ``u(v) = a + (input of v to the hidden layer)``

where ``V`` collects the terms that do not involve ``h`` and ``u`` is affine in the visible
sufficient statistics. Summing the hidden units out gives the free energy

    ``F(v) = -V(v) - sum_j softplus(u_j(v))``                                  (eq. 5, 12, 17)

so ``p(h_j = 1 | v) = g(u_j(v))`` always, and only the visible conditional differs between
members (Bernoulli, Gaussian, multinomial, categorical). :class:`EnergyMethods` holds the
shape plumbing of our distributions (lazy ``expand``), and :class:`HarmoniumMethods` the
math common to the family: unnormalized ``log_prob``, exact ``log Z`` by enumerating the
hidden layer, block-Gibbs transitions, and the annealing path used by AIS and parallel
tempering. A member supplies four hooks (``_hidden_input``, ``_visible_term``,
``_log_visible_sum``, ``_sample_visible``) plus its input checks.

The annealing path from a tractable ``base`` over ``v`` (independent of ``h``) to the model is

    ``log f_beta(v) = (1 - beta) log base(v) + beta V(v) + sum_j softplus(beta u_j(v))``

i.e. ``base(v)^(1 - beta) * sum_h exp(-beta E(v, h))``, whose ``beta = 0`` end has
``Z_0 = Z_base 2^F`` (Salakhutdinov & Murray 2008). ``beta`` is a float or an array that
broadcasts against the state's batch shape ``v.shape[:-1]`` (one temperature per replica).
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import numpy as np

from ebm_ppl import ops
from ebm_ppl.ops import Array

#: Largest hidden layer that :meth:`HarmoniumMethods.log_partition` enumerates.
MAX_ENUMERATE_UNITS = 20


def temperature(beta: Any) -> Any:
    """``beta`` ready to multiply a ``(..., units)`` array: arrays get a trailing axis."""
    if ops.is_torch(beta) or ops.is_jax(beta):
        return beta[..., None]
    return beta


class EnergyMethods:
    """Shape plumbing shared by our energy distributions.

    A subclass lists its parameters in ``_event_dims`` (name -> number of trailing event
    dimensions of that parameter); leading dimensions are batch dimensions. The
    distribution's ``batch_shape`` may be larger than the parameters' after a lazy
    ``expand``; results are broadcast to it.
    """

    _event_dims: dict[str, int] = {}
    #: ``"binary"`` / ``"gaussian"`` when ``transition`` accepts a ``field`` (an external
    #: factor on the visible units, see :class:`ebm_ppl.models.fields.Field`), else None.
    field_kind: str | None = None

    def _check_field(self, field: Any) -> None:
        if field is not None and self.field_kind is None:
            raise ValueError(
                f"{type(self).__name__} cannot fold an external factor (an observation that "
                "depends on its value) into its block conditionals; only RBM, GaussianRBM and "
                "DBM sites can. Observe the site, or restructure the program."
            )

    @property
    def params(self) -> tuple:
        """The parameters, in ``_event_dims`` order and the shapes the user gave."""
        return tuple(getattr(self, n) for n in self._event_dims)

    def _with_batch_shape(self, batch_shape: tuple):
        new = copy.copy(self)
        new._batch_shape = type(self._batch_shape)(batch_shape)
        return new

    def _expanded(self, batch_shape: tuple):
        """Native ``expand``: a copy with a larger batch shape; parameters are not copied."""
        batch_shape = tuple(batch_shape)
        try:
            ok = ops.broadcast_shapes(batch_shape, tuple(self.batch_shape)) == batch_shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(  # NumPyro's wording first, then ours
                f"Cannot broadcast distribution of shape {tuple(self.batch_shape)} to shape "
                f"{batch_shape}: expand needs a batch shape that the distribution's own batch "
                "shape broadcasts to"
            )
        return self._with_batch_shape(batch_shape)

    def unexpanded(self):
        """The same distribution with the parameters' own batch shape (undoing ``expand``)."""
        shapes = [
            tuple(getattr(self, n).shape[: getattr(self, n).ndim - k])
            for n, k in self._event_dims.items()
        ]
        return self._with_batch_shape(ops.broadcast_shapes(*shapes))

    def _out(self, x: Array, value: Array) -> Array:
        shape = ops.broadcast_shapes(tuple(value.shape[:-1]), tuple(self.batch_shape))
        return ops.broadcast_to(x, shape)


def first_param(fn: Any) -> Array | None:
    """The first parameter array of an energy distribution (lists of layers looked into)."""
    stack = list(getattr(fn, "params", ()))
    while stack:
        p = stack.pop(0)
        if isinstance(p, (list, tuple)):
            stack[:0] = list(p)
        elif ops.is_torch(p) or ops.is_jax(p):
            return p
    return None


def as_value(value: Any, like: Array | None) -> Any:
    """``value`` in the backend and dtype of the parameter ``like``: the documented
    conversion of values (data, states) for ``log_prob`` and training. NumPy arrays become
    arrays of ``like``'s backend (torch: on its device); arrays of another dtype (bool,
    integers, float64 next to float32 parameters) are cast to ``like``'s dtype, which is
    exact for 0/1 units, category indices and counts. An array of the other backend is left
    as it is (the value check then names it)."""
    if like is None:
        return value
    if ops.is_torch(like):
        if isinstance(value, np.ndarray):
            # lazy: keeps this module free of torch until that backend is used
            import torch

            return torch.as_tensor(value, dtype=like.dtype, device=like.device)
        if ops.is_torch(value) and value.dtype != like.dtype:
            return value.to(like.dtype)
        return value

    if isinstance(value, np.ndarray) and not ops.is_jax(value):
        # lazy: keeps this module free of jax until that backend is used
        import jax.numpy as jnp

        return jnp.asarray(value, dtype=like.dtype)
    if ops.is_jax(value) and value.dtype != like.dtype:
        return value.astype(like.dtype)
    return value


class NormalizedLogProb:
    """The ``normalized`` option of an energy distribution (put first in a frontend's bases).

    By default ``log_prob`` is the **unnormalized** log-density ``log p~(x) = -E(x)`` (or
    ``-F(x)``): the right quantity for SA-MLE, for block Gibbs on the site's own variables and
    for parameters that are ``param``s, and wrong inside a PPL as soon as the parameters
    ``theta`` depend on a random variable, because the joint then misses ``-log Z(theta)``.
    With ``normalized=True``, ``log_prob(x) = log p~(x) - log Z(theta)`` with ``log Z`` computed
    exactly by :meth:`log_partition` (enumeration, differentiable in ``theta`` under torch
    autograd and JAX), so NUTS, HMC, ``HMCGibbs`` and SVI over ``theta`` are exact. Only models
    small enough to enumerate qualify (the bounds of :meth:`log_partition`); larger ones raise
    a ``ValueError`` at the first ``log_prob`` that points to the exchange algorithm.
    """

    normalized: bool = False

    def _set_normalized(self, normalized: Any) -> None:
        if not isinstance(normalized, bool):
            raise TypeError(f"normalized must be a bool, got {type(normalized).__name__}")
        self.normalized = normalized

    def log_prob(self, value: Array) -> Array:
        value = as_value(value, first_param(self))  # numpy, bool, int, float64 values
        try:
            lp = super().log_prob(value)
        except OutOfSupport as err:
            # a frontend's _out_of_support: "raise" (Pyro, default) or "warn" (NumPyro)
            if getattr(self, "_out_of_support", "raise") != "warn":
                raise
            warnings.warn(
                "Out-of-support values provided to log prob method. The value argument should "
                f"be within the support: {err}",
                UserWarning,
                stacklevel=2,
            )
            lp = self.log_prob_unchecked(value)
        if not self.normalized:
            return lp
        complete = getattr(self, "_check_complete", None)
        if complete is not None:
            complete(value, "value (normalized=True)")
        return lp - self._exact_log_partition()

    def _exact_log_partition(self) -> Array:
        try:
            return self.log_partition()
        except ValueError as e:
            raise ValueError(
                f"{type(self).__name__}(normalized=True) needs the exact log Z: {e} For "
                "parameters that depend on random variables in a model too large to enumerate, "
                "use the exchange algorithm (ebm_ppl.pyro.Exchange / ebm_ppl.numpyro.Exchange "
                "with aux_sweeps=K)."
            ) from None


def draw_states(key: Any, states: Array, log_w: Array, shape: tuple) -> Array:
    """Exact draws from an enumerated distribution: rows of ``states`` ``(S, k)`` with
    probabilities ``softmax(log_w)`` (``log_w`` ``(..., S)`` broadcasting to ``shape``),
    one per element of ``shape`` (Gumbel-max); shape ``shape + (k,)``. Memory
    ``prod(shape) x S``."""
    idx = ops.categorical(key, ops.broadcast_to(log_w, tuple(shape) + (states.shape[0],)))
    return take_rows(states, idx)


def take_rows(table: Array, index: Array) -> Array:
    """``table[index]`` for a float array of row indices (as :func:`ops.categorical` gives),
    shape ``index.shape + table.shape[1:]``."""
    if ops.is_torch(table):
        return table[index.long()]
    return table[index.astype("int32")]


def path_log_f(terms: tuple[Array, Array, Array], beta: Any) -> Array:
    """``log f_beta(v) = (1 - beta) log base(v) + beta V(v) + sum_j softplus(beta u_j(v))``
    from :meth:`HarmoniumMethods.path_terms`; ``beta`` broadcasts against ``v.shape[:-1]``."""
    base_lp, vis, u = terms
    return (1.0 - beta) * base_lp + beta * vis + ops.softplus(temperature(beta) * u).sum(-1)


def check_backend(backend: str, named: dict[str, Any]) -> None:
    """``TypeError`` unless every value is an array of ``backend`` ("torch" or "jax")."""
    for name, x in named.items():
        if ops.is_torch(x) != (backend == "torch") or not (ops.is_torch(x) or ops.is_jax(x)):
            kind = "a torch.Tensor" if backend == "torch" else "a JAX array"
            raise TypeError(f"{name} must be {kind}, got {type(x).__name__}")


def check_values(x: Array, size: int, name: str) -> bool:
    """Common checks of a value ``(..., size)``: an array (``TypeError`` otherwise), last
    dimension ``size`` and not empty (``ValueError``). Returns whether its entries can be
    inspected (concrete, not traced), for the member's own checks of the support."""
    if not (ops.is_torch(x) or ops.is_jax(x)):
        raise TypeError(f"{name} must be a torch.Tensor or a JAX array, got {type(x).__name__}")
    if x.ndim < 1 or x.shape[-1] != size:
        raise ValueError(f"{name} must have shape (..., {size}), got {tuple(x.shape)}")
    if not ops.is_concrete(x):
        return False
    if math.prod(x.shape) == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    return True


def check_binary(x: Array, size: int, name: str = "value") -> None:
    """Check that ``x`` has last dimension ``size`` and (if concrete) only 0/1 entries."""
    if check_values(x, size, name) and not ops.is_binary(x):
        if not ops.all_finite(x):  # NaN and inf fail is_binary too; say which it was
            raise OutOfSupport(f"{name} contains NaN or infinite values")
        raise OutOfSupport(
            f"{name} must be binary (0/1) for a binary RBM; binarize the data first "
            "(ebm_ppl.datasets.binarize)"
        )


class OutOfSupport(ValueError):
    """A value outside a distribution's support (not binary, not a spin, not a count, NaN):
    a ``ValueError``. Pyro's ``log_prob`` and all training raise it; NumPyro's ``log_prob``
    turns it into the host's "Out-of-support" ``UserWarning`` (masked or padded data rely on
    that) and returns the unchecked log-density."""


def shapes_of(arg_shapes: dict[str, Any], event_dims: dict[str, int], event_shape: tuple):
    """``(batch_shape, event_shape)`` of a distribution whose parameters have ``arg_shapes``
    (``{name: shape}``, absent optional ones skipped), each with ``event_dims[name]`` trailing
    event dimensions: what the hosts' ``infer_shapes`` returns."""

    batch = [
        tuple(arg_shapes[n])[: len(tuple(arg_shapes[n])) - k]
        for n, k in event_dims.items()
        if arg_shapes.get(n) is not None
    ]
    return tuple(np.broadcast_shapes(*batch)), tuple(int(s) for s in event_shape)


def broadcast_batch_shapes(named: dict[str, Array], event_dims: tuple[int, ...]) -> tuple:
    """The batch shape of the parameters ``{name: array}``, each with the matching number of
    trailing event dimensions in ``event_dims``, their batch shapes broadcast together;
    ``ValueError`` naming each batch shape where they do not broadcast."""
    shapes = {n: tuple(x.shape[: x.ndim - k]) for (n, x), k in zip(named.items(), event_dims)}
    try:
        return ops.broadcast_shapes(*shapes.values())
    except ValueError:
        listed = [f"{n} {shape}" for n, shape in shapes.items()]
        raise ValueError(
            f"the batch shapes of {', '.join(listed[:-1])} and {listed[-1]} do not broadcast"
        ) from None


def checks_enabled(validate_args: bool | None, like: Any) -> bool:
    """Whether a distribution checks the values of its parameters and inputs (finite,
    positive, in the support): ``validate_args`` when given; else torch's global setting for
    torch arrays (``pyro.validation_enabled(False)`` switches it off), and on for JAX arrays
    (NumPyro's global default is off, so switching it off cannot be told from the default:
    pass ``validate_args=False`` there). Shapes, dtypes and backends are always checked."""
    if validate_args is not None:
        return bool(validate_args)
    if ops.is_torch(like):
        # lazy: keeps this module free of torch until that backend is used
        import torch

        return bool(torch.distributions.Distribution._validate_args)
    return True


def check_finite_float(named: dict[str, Any], values: bool = True) -> None:
    """``TypeError`` for non-floating arrays, ``ValueError`` for NaN/inf (concrete arrays,
    when ``values``)."""
    for name, x in named.items():
        floating = x.is_floating_point() if ops.is_torch(x) else _jax_floating(x)
        if not floating:
            raise TypeError(f"{name} must have a floating dtype, got {x.dtype}")
        if values and ops.is_concrete(x) and not ops.all_finite(x):
            raise ValueError(f"{name} contains NaN or infinite values")


def _jax_floating(x: Array) -> bool:
    # lazy: keeps this module free of jax until that backend is used
    import jax.numpy as jnp

    return bool(jnp.issubdtype(x.dtype, jnp.floating))


def check_num_gibbs_steps(num_gibbs_steps: Any) -> None:
    if not isinstance(num_gibbs_steps, int) or num_gibbs_steps < 1:
        raise ValueError(f"num_gibbs_steps must be a positive int, got {num_gibbs_steps!r}")


class BlockGibbsMethods(EnergyMethods):
    """The transition operator of a model sampled by block Gibbs, as ``BlockGibbs``, SA-MLE
    and the PPL frontends call it: :meth:`transition` checks the arguments every such model
    shares, then runs the model's own sweeps, the hook
    ``_gibbs(key, value, num_steps, clamp, cache, field)`` (parameters gradient-stopped
    there), whose docstring says which blocks it alternates and what ``hidden`` is."""

    def transition(
        self,
        key: Any,
        value: Array,
        num_steps: int = 1,
        clamp: Any = None,
        cache: Array | None = None,
        field: Any = None,
    ) -> tuple[Array, Array | None]:
        """``num_steps`` block-Gibbs sweeps from ``value`` with the parameters held constant
        (no gradient flows into them); returns ``(value, hidden)``. ``clamp`` (a
        :class:`~ebm_ppl.models.rbm.Clamp`) holds part of the visible units fixed
        (conditional sampling); ``cache`` is :meth:`data_cache` of ``value`` where the model
        has one (else ignored); ``field`` (a :class:`~ebm_ppl.models.fields.Field`) multiplies
        an external factor into the visible conditional, for models with a ``field_kind``.
        In JAX the sweeps are one ``lax.scan``."""
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        self._check_field(field)
        return self._gibbs(key, value, num_steps, clamp, cache, field)

    def _gibbs(self, key, value, num_steps, clamp, cache, field):
        """The model's ``num_steps >= 1`` sweeps, with ``field`` checked against
        ``field_kind``: ``(value, hidden)``. Each model implements it."""
        raise NotImplementedError(f"{type(self).__name__} implements no block-Gibbs sweeps")


class HarmoniumMethods(BlockGibbsMethods):
    """Distribution methods of an RBM-family member with binary hidden units.

    Hooks a member implements (``p`` is the parameter tuple, possibly gradient-stopped):

    * ``_hidden_input(p, v)``: ``u(v)``, the hidden logits, shape ``(..., F)``;
    * ``_visible_term(p, v)``: ``V(v)``, shape ``(...)``;
    * ``_log_visible_sum(p, h)``: ``log sum_v exp(-E(v, h))`` (a sum or an integral) for a
      batch of hidden states ``h`` of shape ``(S, F)``, shape ``(..., S)``;
    * ``_sample_visible(key, p, h, beta, base, like=None)``: a draw from the visible
      conditional of ``base(v)^(1 - beta) exp(-beta E(v, h))`` (``base=None``, ``beta=1``:
      the model's own conditional), shape of the batch of ``h`` plus the event shape;
      ``like`` is the previous visible state where known (the replicated softmax keeps its
      document lengths);
    * ``_visible_mean(p, h, like=None)``: ``E[v | h]`` (for the reconstruction monitor);
    * ``_check_support(value, name)`` (the visible values' support, used by the shared
      ``_check_value`` when value checks are on), ``init_chain(key, shape)`` and
      ``ais_base(base)``.

    A member's constructor stores its parameters with :meth:`_store_params`.
    """

    num_gibbs_steps: int

    def _store_params(
        self, backend: str, params: dict[str, Array], num_gibbs_steps: Any, validate_args: Any
    ) -> bool:
        """The constructors' common part: every array of ``params`` (name -> array) is of
        ``backend`` and stored under its name, ``num_gibbs_steps`` is a positive int; returns
        whether value checks are on (:func:`checks_enabled`; the first array decides the
        host). The member then checks shapes and values with its own ``check_params``."""
        check_backend(backend, params)
        check_num_gibbs_steps(num_gibbs_steps)
        on = checks_enabled(validate_args, next(iter(params.values())))
        for name, value in params.items():
            setattr(self, name, value)
        self.num_gibbs_steps = num_gibbs_steps
        self._check_inputs = on
        return on

    @property
    def n_visible(self) -> int:
        return int(self.params[0].shape[-2])

    @property
    def n_hidden(self) -> int:
        return int(self.params[0].shape[-1])

    def _check_value(self, value: Array, name: str = "value") -> None:
        """``value`` ``(..., n_visible)`` in the visible support (``_check_support``) when
        value checks are on; only its event size when they are off."""
        if getattr(self, "_check_inputs", True):
            self._check_support(value, name)
        elif value.shape[-1] != self.n_visible:
            raise ValueError(f"{name} must have shape (..., {self.n_visible})")

    # ---- densities --------------------------------------------------------------------

    def log_prob(self, value: Array) -> Array:
        """Unnormalized log-density ``-F(v)`` (hidden units summed out; add
        ``-log_partition()`` to normalize), shape ``broadcast(value.shape[:-1], batch_shape)``.
        """
        self._check_value(value)
        return self.log_prob_unchecked(value)

    def log_prob_unchecked(self, value: Array) -> Array:
        """:meth:`log_prob` without input checks (for hot loops on validated data)."""
        p = self.params
        lp = self._visible_term(p, value) + ops.softplus(self._hidden_input(p, value)).sum(-1)
        return self._out(lp, value)

    def free_energy(self, value: Array) -> Array:
        """``F(v)``, shape ``broadcast(value.shape[:-1], batch_shape)``."""
        return -self.log_prob(value)

    def hidden_logits(self, value: Array) -> Array:
        """Logits of ``p(h | v)``, shape ``(..., n_hidden)``."""
        self._check_value(value)
        return self._hidden_input(self.params, value)

    def hidden_probs(self, value: Array) -> Array:
        """``p(h_j = 1 | v)``."""
        return ops.sigmoid(self.hidden_logits(value))

    def energy(self, value: Array, hidden: Array) -> Array:
        """Joint energy ``E(v, h) = -V(v) - h . u(v)``."""
        self._check_value(value)
        check_binary(hidden, self.n_hidden, "hidden")
        p = self.params
        e = -(self._visible_term(p, value) + (hidden * self._hidden_input(p, value)).sum(-1))
        shape = ops.broadcast_shapes(
            tuple(value.shape[:-1]), tuple(hidden.shape[:-1]), tuple(self.batch_shape)
        )
        return ops.broadcast_to(e, shape)

    def log_partition(self, max_units: int = MAX_ENUMERATE_UNITS) -> Array:
        """Exact ``log Z``, shape ``batch_shape``: a log-sum-exp over the ``2^F`` hidden
        states (in chunks) of the visible layer's sum or integral given ``h``.

        Raises ``ValueError`` (pointing to AIS) when ``F > max_units``.
        """
        f = self.n_hidden
        if f > max_units:
            raise ValueError(
                f"log_partition enumerates the hidden layer, which has {f} units here; at most "
                f"{max_units} are feasible. Estimate log Z with annealed importance sampling "
                "(AIS) instead."
            )
        p = self.params
        like = p[0]
        batch = tuple(self.unexpanded().batch_shape)
        width = max(1, math.prod(batch)) * max(int(like.shape[-2]), 1)
        chunk = max(1, min(2**f, (1 << 23) // width))
        parts = []
        for start in range(0, 2**f, chunk):
            states = ops.binary_states(f, like, start, min(2**f, start + chunk))
            parts.append(ops.logsumexp(self._log_visible_sum(p, states), axis=-1)[..., None])
        log_z = ops.logsumexp(ops.concat(parts, axis=-1), axis=-1)
        return ops.broadcast_to(log_z, tuple(self.batch_shape))

    # ---- sampling ---------------------------------------------------------------------

    def exact_sample(self, key: Any, sample_shape: tuple = ()) -> Array:
        """Exact independent draws, shape ``sample_shape + batch_shape + event_shape``.

        The hidden layer is enumerated: ``h`` is drawn from its marginal
        ``p(h) ∝ exp(log sum_v exp(-E(v, h)))`` (Gumbel-max over the ``2^F`` states), then
        ``v ~ p(v | h)`` exactly. Memory is ``draws x 2^F``; ``ValueError`` for
        ``F > 20`` (use block Gibbs there). ``key`` is a JAX key, or ``None``/a
        ``torch.Generator`` in torch. No gradient flows into the parameters.
        """
        f = self.n_hidden
        if f > MAX_ENUMERATE_UNITS:
            raise ValueError(
                f"exact_sample enumerates the hidden layer, which has {f} units here; at most "
                f"{MAX_ENUMERATE_UNITS} are feasible. Draw approximately with transition "
                "(block Gibbs) instead."
            )
        p = self._frozen()
        states = ops.binary_states(f, p[0])  # (S, F)
        log_w = self._log_visible_sum(p, states)  # (..., S)
        shape = tuple(sample_shape) + tuple(self.batch_shape)
        k_h, k_v = ops.split(key, 2)
        h = draw_states(k_h, states, log_w, shape)
        return self._sample_visible(k_v, p, h, 1.0, None)

    def _frozen(self) -> tuple:
        return tuple(ops.stop_gradient(x) for x in self.params)

    def _sweep(
        self, key: Any, p: tuple, v: Array, beta: Any, base: Any, clamp: Any = None, field=None
    ):
        """``h ~ p_beta(h | v)``, then ``v ~ p_beta(v | h)`` on the annealing path (times the
        external ``field``, if any)."""
        k_h, k_v = ops.split(key, 2)
        h = ops.bernoulli(k_h, ops.sigmoid(temperature(beta) * self._hidden_input(p, v)))
        if field is None:
            v = self._sample_visible(k_v, p, h, beta, base, like=v)
        else:
            v = self._sample_visible(k_v, p, h, beta, base, like=v, field=field)
        if clamp is not None:
            v = ops.where(clamp.mask, clamp.values, v)
        return v, h

    def _gibbs(self, key, value, num_steps, clamp, cache, field):
        """The sweeps of :meth:`transition`: ``h | v`` then ``v | h`` (``field`` multiplied
        into ``p(v | h)``); ``cache`` is ignored; returns ``(value, hidden)``."""
        p = self._frozen()
        k0, k1 = ops.split(key, 2)
        first = self._sweep(k0, p, value, 1.0, None, clamp, field)
        return ops.iterate(
            lambda k, c: self._sweep(k, p, c[0], 1.0, None, clamp, field),
            k1,
            first,
            num_steps - 1,
            value,
        )

    def _sample(self, key: Any, sample_shape: tuple) -> Array:
        shape = tuple(sample_shape) + tuple(self.batch_shape) + tuple(self.event_shape)
        k0, k1 = ops.split(key, 2)
        v = self.init_chain(k0, shape)
        return self.transition(k1, v, self.num_gibbs_steps)[0]

    def monitor(self, value: Array) -> Array:
        """Mean over the batch of ``||v - E[v | h = E[h | v]]||^2`` (a training monitor)."""
        p = self.params
        h = ops.sigmoid(self._hidden_input(p, value))
        return (
            ((value - self._visible_mean(p, h, like=value)) ** 2)
            .reshape(value.shape[0], -1)
            .sum(-1)
            .mean()
        )

    # ---- the annealing path (AIS, parallel tempering) ----------------------------------

    def ais_log_z0(self, base: Any) -> Array:
        """``log Z`` of the path's ``beta = 0`` end: ``log Z_base + F log 2``."""
        self._check_ais_base(base)
        return base.log_partition() + self.n_hidden * math.log(2.0)

    def raise_base(self, base: Any) -> Any:
        """The path RAISE anneals along: the AIS path (it carries ``v``)."""
        return self.ais_base(base)

    def raise_start(self, key: Any, v: Array, base: Any) -> tuple[Array, Array]:
        """RAISE's first state for data ``v``: ``v`` itself (the path's state is ``v``;
        nothing is proposed, ``log q = 0``). Returns ``(v, zeros)``."""
        self._check_value(v, "data")
        return v, ops.zeros(tuple(v.shape[:-1]), v)

    def ais_log_f(self, v: Array, beta: Any, base: Any) -> Array:
        """``log f_beta(v)`` on the path from ``base`` (see the module docstring)."""
        p = self.params
        b = temperature(beta)
        return (
            (1.0 - beta) * base.log_prob(v)
            + beta * self._visible_term(p, v)
            + ops.softplus(b * self._hidden_input(p, v)).sum(-1)
        )

    def path_terms(self, v: Array, base: Any) -> tuple[Array, Array, Array]:
        """``(log base(v), V(v), u(v))``: everything :func:`path_log_f` needs to evaluate
        ``log f_beta(v)`` at any ``beta`` without another matrix product."""
        p = self._frozen()
        return base.log_prob(v), self._visible_term(p, v), self._hidden_input(p, v)

    def path_sweep(self, key: Any, u: Array, beta: Any, base: Any) -> tuple[Array, Array]:
        """A sweep at ``beta`` from a state whose hidden input ``u(v)`` is known:
        ``h ~ g(beta u)``, then ``v ~ p_beta(v | h)``. Returns ``(v, h)``."""
        k_h, k_v = ops.split(key, 2)
        h = ops.bernoulli(k_h, ops.sigmoid(temperature(beta) * u))
        return self._sample_visible(k_v, self._frozen(), h, beta, base), h

    def tempered_transition(self, key: Any, v: Array, beta: Any, base: Any) -> Array:
        """One block-Gibbs sweep leaving ``f_beta`` invariant (``beta`` per replica)."""
        return self._sweep(key, self._frozen(), v, beta, base)[0]

    def ais_step(self, key: Any, v: Array, beta_prev: Any, beta: Any, base: Any):
        """One AIS step: ``log f_beta(v) - log f_beta_prev(v)`` and a sweep at ``beta``; the
        hidden input ``u(v)`` is computed once and serves both. Returns ``(v_new, delta)``."""
        p = self._frozen()
        u = self._hidden_input(p, v)
        delta = (beta - beta_prev) * (self._visible_term(p, v) - base.log_prob(v)) + (
            ops.softplus(beta * u) - ops.softplus(beta_prev * u)
        ).sum(-1)
        k_h, k_v = ops.split(key, 2)
        h = ops.bernoulli(k_h, ops.sigmoid(beta * u))
        return self._sample_visible(k_v, p, h, beta, base, like=v), delta
