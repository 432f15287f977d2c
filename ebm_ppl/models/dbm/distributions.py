"""What the Pyro and NumPyro ``DBM`` and ``DBMVisible`` distributions share, over the math
of :mod:`~ebm_ppl.models.dbm.energy`, :mod:`~ebm_ppl.models.dbm.mean_field` and
:mod:`~ebm_ppl.models.dbm.annealing`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ebm_ppl import ops
from ebm_ppl.models.base import BernoulliBase
from ebm_ppl.models.dbm.annealing import (
    DBMBase,
    DBMPath,
    check_same_sizes,
    path_log_f,
    path_step,
)
from ebm_ppl.models.dbm.energy import (
    DBMParams,
    _sample_layer,
    _vin,
    check_dbm,
    check_layer_index,
    check_visible,
    energy,
    exact_sample,
    frozen,
    gibbs_sweep,
    layer_logits,
    log_partition,
    split_layers,
)
from ebm_ppl.models.dbm.mean_field import (
    mean_field_bound,
    mean_field_contrast,
    mean_field_fixed_point,
)
from ebm_ppl.models.family import (
    BlockGibbsMethods,
    EnergyMethods,
    check_finite_float,
    check_num_gibbs_steps,
    check_values,
    checks_enabled,
)
from ebm_ppl.models.rbm import check_binary
from ebm_ppl.models.variational import VisibleSiteMethods, check_mean_field_args
from ebm_ppl.ops import Array

#: the names that :mod:`ebm_ppl.models.dbm` re-exports from here
__all__ = [
    "DBMMethods",
    "DBMVisibleMethods",
    "_Unbatched",
    "check_layer_lists",
]


class _Unbatched(EnergyMethods):
    """Lazy ``expand`` for distributions whose parameters have no batch dimensions."""

    def unexpanded(self):
        return self._with_batch_shape(())


def check_layer_lists(weights: Any, biases: Any, array_type: type | None = None) -> None:
    """``TypeError`` unless ``weights`` and ``biases`` are lists (or tuples) of arrays."""
    for name, x, example in (
        ("weights", weights, "[W1, ..., WL]"),
        ("biases", biases, "[b0, ..., bL]"),
    ):
        if (
            isinstance(x, (str, bytes))
            or not isinstance(x, Sequence)
            or (array_type is not None and isinstance(x, array_type))
        ):
            raise TypeError(f"{name} must be a list of arrays {example}, got {type(x).__name__}")


class LayerChainMethods:
    """What the DBM and the multimodal DBM share as chains of layers whose value is the
    concatenation of the layers: a subclass has ``sizes``, ``_check_value`` and its
    parameters as ``_chain_params``, and names its math module's ``layer_logits`` and
    ``frozen`` as ``_layer_logits`` and ``_freeze``."""

    _layer_logits: Any
    _freeze: Any

    def split(self, value: Array) -> list:
        """The layers of a value ``(..., sum of sizes)``, in chain order (DBM:
        ``[v, h1, ..., hL]``; multimodal DBM: ``[v^m, h^(1m), ..., h^(1t), v^t]``)."""
        return split_layers(value, self.sizes)

    def join(self, layers: Sequence[Array]) -> Array:
        """The value ``(..., sum of sizes)`` of the layers, in chain order."""
        return ops.concat(list(layers), axis=-1)

    @property
    def gaussian(self) -> bool:
        """Whether the first layer's units (DBM: visible, multimodal DBM: image) are
        Gaussian (``sigma`` given)."""
        return getattr(self, "sigma", None) is not None

    def conditional_logits(self, value: Array, layer: int) -> Array:
        """Logits of ``p(x_layer = 1 | the other layers)``, ``(..., n_layer)``: the layer
        given its neighbours (eq. 31-34; see the math module's ``layer_logits``)."""
        check_layer_index(layer, len(self.sizes))
        self._check_value(value)
        return self._layer_logits(self._chain_params, self.split(value), layer)

    def _frozen(self) -> Any:
        return self._freeze(self._chain_params)


class DBMMethods(BlockGibbsMethods, LayerChainMethods, _Unbatched):
    """What the Pyro and NumPyro ``DBM`` distributions share.

    The value is the concatenation ``[v, h1, ..., hL]`` ``(..., sum_l n_l)``; ``log_prob``
    is ``-E`` (eq. 29, unnormalized). A subclass stores ``weights`` and ``biases`` (tuples,
    no batch dimensions), ``num_gibbs_steps`` and ``_check_inputs``."""

    @classmethod
    def infer_shapes(cls, weights=(), biases=(), sigma=None, **_) -> tuple:
        """``(batch_shape, event_shape)`` for layers of these shapes, without arrays (the hosts'
        ``infer_shapes``): ``weights`` and ``biases`` are lists of shapes, ``[(n0, n1), ...]``
        and ``[(n0,), (n1,), ...]``. A DBM's parameters have no batch dimensions, so the batch
        shape is ``()`` (``expand`` adds one); the event shape is ``(sum_l n_l,)``."""
        weights, biases = [tuple(w) for w in weights], [tuple(b) for b in biases]
        sizes = [b[-1] if len(b) == 1 else None for b in biases]
        if (
            len(biases) != len(weights) + 1
            or None in sizes
            or any(w != (sizes[i], sizes[i + 1]) for i, w in enumerate(weights))
        ):
            raise ValueError(
                "DBM.infer_shapes: expected weights [(n0, n1), (n1, n2), ...] and biases "
                f"[(n0,), (n1,), ...] (no batch dimensions), got {weights} and {biases}"
            )
        return (), (sum(sizes),)

    weights: tuple
    biases: tuple
    num_gibbs_steps: int

    def _construct_dbm(
        self,
        weights: Any,
        biases: Any,
        sigma: Any,
        num_gibbs_steps: int,
        validate_args: bool | None,
        normalized: bool,
    ) -> None:
        """The body of both frontends' ``DBM`` constructors: ``weights`` and ``biases`` checked
        to be lists (not one array of the class's ``_array_type``), every array (``sigma`` too,
        unless a number) passed through the class's ``_as_array`` (the frontend's conversion
        of numpy arrays), then checked and stored (:meth:`_init_dbm`); Gaussian visible units
        get the support ``_real_support`` (the frontend's real vectors)."""
        convert = self._as_array
        check_layer_lists(weights, biases, self._array_type)
        weights = tuple(convert(w) for w in weights)
        biases = tuple(convert(b) for b in biases)
        sigma = sigma if sigma is None or isinstance(sigma, (int, float)) else convert(sigma)
        sizes = self._init_dbm(weights, biases, num_gibbs_steps, validate_args, sigma)
        if self.gaussian:
            self.support = self._real_support
        self._finish_init((), (sum(sizes),), validate_args)
        self._set_normalized(normalized)

    def _init_dbm(self, weights, biases, num_gibbs_steps, validate_args, sigma=None) -> tuple:
        weights, biases = tuple(weights), tuple(biases)
        sizes = check_dbm(weights, biases)

        check_num_gibbs_steps(num_gibbs_steps)
        on = checks_enabled(validate_args, weights[0])
        named = {f"weights[{i}]": w for i, w in enumerate(weights)}
        named.update({f"biases[{i}]": b for i, b in enumerate(biases)})
        check_finite_float(named, on)
        if sigma is not None:
            if isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
                sigma = ops.asarray_like(float(sigma) + 0 * biases[0], biases[0])
            if not (ops.is_torch(sigma) or ops.is_jax(sigma)):
                raise TypeError(
                    f"sigma must be None, a float or an array, got {type(sigma).__name__}"
                )
            try:
                ok = ops.broadcast_shapes(tuple(sigma.shape), (sizes[0],)) == (sizes[0],)
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(
                    f"sigma must broadcast to the visible layer ({sizes[0]},), got "
                    f"{tuple(sigma.shape)}"
                )
            check_finite_float({"sigma": sigma}, on)
            if on and ops.is_concrete(sigma) and not bool(ops.to_numpy(sigma).min() > 0):
                raise ValueError("sigma must be positive")
        self.sigma = sigma
        self.weights, self.biases = weights, biases
        self.num_gibbs_steps = num_gibbs_steps
        self._check_inputs = on
        return sizes

    # ---- structure --------------------------------------------------------------------

    _layer_logits = staticmethod(layer_logits)
    _freeze = staticmethod(frozen)

    @property
    def dbm_params(self) -> DBMParams:
        return DBMParams(tuple(self.weights), tuple(self.biases), self.sigma)

    _chain_params = dbm_params

    @property
    def sizes(self) -> tuple:
        """Layer sizes ``(n_0, ..., n_L)``."""
        return tuple(int(b.shape[0]) for b in self.biases)

    @property
    def n_visible(self) -> int:
        return self.sizes[0]

    @property
    def num_layers(self) -> int:
        """Number of hidden layers ``L``."""
        return len(self.weights)

    def _check_value(self, value: Array, name: str = "value") -> None:

        total = sum(self.sizes)
        if (
            not getattr(self, "_check_inputs", True)
            or (ops.is_torch(value) or ops.is_jax(value))
            and not ops.is_concrete(value)
        ):
            if value.shape[-1] != total:
                raise ValueError(f"{name} must have shape (..., {total}), got {tuple(value.shape)}")
            return
        if not self.gaussian:
            check_binary(value, total, name)
            return
        check_values(value, total, name)
        check_visible(value[..., : self.n_visible], True, self.n_visible, name)
        check_binary(value[..., self.n_visible :], total - self.n_visible, name)

    # ---- densities --------------------------------------------------------------------

    def energy(self, value: Array) -> Array:
        """``E(v, h1, ..., hL)`` (eq. 29), shape ``value.shape[:-1]`` (broadcast to the
        batch shape)."""
        self._check_value(value)
        return self._out(energy(self.dbm_params, self.split(value)), value)

    def log_prob(self, value: Array) -> Array:
        """Unnormalized ``-E(x)`` of the concatenated layers (add ``-log_partition()``)."""
        return -self.energy(value)

    def log_prob_unchecked(self, value: Array) -> Array:
        return self._out(-energy(self.dbm_params, self.split(value)), value)

    def free_energy(self, value: Array) -> Array:
        """``-log_prob``: the energy ``E(x)`` of the full state (the value holds every layer,
        so nothing is summed out); the per-draw trace of ``BlockGibbs`` runs."""
        return self.energy(value)

    def log_partition(self) -> Array:
        """Exact ``log Z``: the odd layers enumerated, the even ones summed out analytically
        (``ValueError`` above 20 odd units: use :func:`AIS`)."""
        return log_partition(self.dbm_params)

    def exact_sample(self, key: Any, sample_shape: tuple = ()) -> Array:
        """Exact draws ``sample_shape + batch_shape + (sum_l n_l,)`` (see
        :func:`exact_sample`: the odd layers enumerated, at most 20 units)."""
        shape = tuple(sample_shape) + tuple(self.batch_shape)
        return self.join(exact_sample(key, frozen(self.dbm_params), shape))

    # ---- sampling ---------------------------------------------------------------------

    def init_chain(self, key: Any, shape: tuple) -> Array:
        """Chains ``shape[:-1] + (sum_l n_l,)`` from independent ``Bernoulli(g(b_l))`` units
        (Gaussian ``v``: ``N(b_0, sigma^2)``)."""
        keys = ops.split(key, len(self.biases))
        lead = tuple(shape[:-1])
        p = self._frozen()
        layers = [
            _sample_layer(k, p, ops.broadcast_to(b, lead + (int(b.shape[0]),)), i)
            for i, (k, b) in enumerate(zip(keys, p.biases))
        ]
        return self.join(layers)

    @property
    def field_kind(self) -> str:
        """The kind of external factor ``transition(field=)`` takes on ``v``."""
        return "gaussian" if self.gaussian else "binary"

    def _gibbs(self, key, value, num_steps, clamp, cache, field):
        """The sweeps of :meth:`transition`: odd layers, then even layers; returns
        ``(value, None)``. ``clamp`` (a :class:`~ebm_ppl.models.rbm.Clamp` over the visible
        units) holds part of ``v`` fixed: conditional sampling. ``field`` (a
        :class:`~ebm_ppl.models.fields.Field` of the value's full shape, zero outside ``v``)
        multiplies an external factor into ``p(v | h1)``; ``cache`` is ignored."""
        if field is not None:
            d = self.n_visible
            field = type(field)(
                field.linear[..., :d], None if field.precision is None else field.precision[..., :d]
            )
        if clamp is not None and int(clamp.mask.shape[-1]) != self.n_visible:
            raise ValueError(
                f"a DBM clamp holds visible units: its mask must end in ({self.n_visible},), "
                f"got shape {tuple(clamp.mask.shape)}"
            )
        p = self._frozen()

        def sweep(k, x):
            layers = gibbs_sweep(k, p, self.split(x), field=field)
            if clamp is not None:
                layers[0] = ops.where(clamp.mask, clamp.values, layers[0])
            return self.join(layers)

        if clamp is not None:
            value = self.join(
                [ops.where(clamp.mask, clamp.values, self.split(value)[0])] + self.split(value)[1:]
            )
        return ops.iterate(sweep, key, value, num_steps, value), None

    def _sample(self, key: Any, sample_shape: tuple) -> Array:
        shape = tuple(sample_shape) + tuple(self.batch_shape) + (sum(self.sizes),)
        k0, k1 = ops.split(key, 2)
        return self.transition(k1, self.init_chain(k0, shape), self.num_gibbs_steps)[0]

    def monitor(self, value: Array) -> Array:
        """Mean squared difference between ``v`` and its mean-field reconstruction."""
        return self.visible().monitor(self.split(value)[0])

    def visible(self, num_iters: int = 30, damping: float = 0.0, tol: float | None = 1e-5):
        """This DBM seen through ``v`` (a ``DBMVisible`` of the same PPL), to observe on data
        and train with ``SAMLE``: mean-field positive phase with at most ``num_iters``
        sweeps, ``damping`` and tolerance ``tol``."""
        return self._visible_cls(self, num_iters, damping, tol)

    # ---- mean field -------------------------------------------------------------------

    def mean_field(
        self, v: Array, num_iters: int = 30, damping: float = 0.0, tol: float | None = None
    ) -> list:
        """Mean-field marginals ``[v, mu_1, ..., mu_L]`` for data ``v`` ``(..., n_0)``
        (eq. 39-41), started from the doubled-weight bottom-up pass; see
        :func:`mean_field_fixed_point`."""
        check_mean_field_args(num_iters, damping, tol)
        if getattr(self, "_check_inputs", True):
            check_visible(v, self.gaussian, self.n_visible, "v")
        return mean_field_fixed_point(self._frozen(), v, num_iters, damping, tol)

    def augment(self, v: Array, **mean_field_kwargs) -> Array:
        """The input of the fine-tuning network of Figure 8: ``[v, q_2, ..., q_L]`` with the
        mean-field marginals of layers ``2..L`` (``(..., n_0 + n_2 + ... + n_L)``)."""
        mus = self.mean_field(v, **mean_field_kwargs)
        first = _vin(self._frozen(), v)  # v / sigma for Gaussian units
        return ops.concat([first] + [ops.stop_gradient(m) for m in mus[2:]], axis=-1)

    def mean_field_bound(self, v: Array, log_z: Any = 0.0, **mean_field_kwargs) -> Array:
        """The lower bound of eq. 38 on ``log p(v)`` (on ``log p~(v)`` with ``log_z=0``),
        shape ``v.shape[:-1]``, at the mean-field fixed point."""
        mus = self.mean_field(v, **mean_field_kwargs)
        return mean_field_bound(self.dbm_params, mus, log_z)

    # ---- AIS (the state is one parity of layers; the other is summed out) --------------

    def ais_base(self, base: Any) -> DBMPath:
        """The annealing path for AIS, as a :class:`DBMPath`. ``base`` is a
        :class:`DBMPath` (checked), or the start of a path over the odd layers: ``None``
        (uniform units), an array of visible logits or a ``BernoulliBase`` (e.g.
        ``base_rate(train_data)``: that on ``v``, uniform hidden layers), or a
        :class:`DBMBase` (e.g. :meth:`matched_base`, the better choice for trained models).
        Gaussian visible units: the base on ``v`` is ``N(m, sigma^2)`` with ``m`` the given
        array (``None``: ``b_0``; e.g. the training data's mean)."""

        if isinstance(base, DBMPath):
            check_same_sizes(self.dbm_params, base.start, "the path's start")
            return base
        if isinstance(base, DBMBase):
            logits = tuple(base.logits)
        else:
            if base is None:
                first = ops.zeros((self.n_visible,), self.biases[0])
                if self.gaussian:
                    first = ops.stop_gradient(self.biases[0])
            elif isinstance(base, BernoulliBase):
                first = base.logits
            elif ops.is_torch(base) or ops.is_jax(base):
                first = base
            else:
                raise TypeError(
                    "base must be None (uniform), visible logits, a BernoulliBase (e.g. "
                    "base_rate(train_data)), a DBMBase (e.g. dbm.matched_base(train_data)) or "
                    f"a DBMPath, got {type(base).__name__}"
                )
            logits = (first,) + tuple(ops.zeros((n,), self.biases[0]) for n in self.sizes[1:])
        if tuple(int(a.shape[-1]) for a in logits) != self.sizes or any(
            a.ndim != 1 for a in logits
        ):
            raise ValueError(
                f"base logits must have one vector per layer of sizes {self.sizes}, got "
                f"{[tuple(a.shape) for a in logits]}"
            )
        sigma = None if not self.gaussian else ops.stop_gradient(self.sigma)
        return DBMPath(DBMBase(logits, sigma), "odd")

    def ais_path(
        self,
        start: Any = None,
        carry: str = "odd",
        log_z_start: Any = None,
    ) -> DBMPath:
        """A :class:`DBMPath` to this DBM carrying the ``carry`` layers: from a factorial
        ``start`` (anything :meth:`ais_base` takes; default uniform) or from another DBM of
        the same sizes (a DBM distribution or its :class:`DBMParams`) whose ``log Z`` is
        ``log_z_start`` (a float or an ``AISResult``, whose standard error is carried
        along)."""
        if isinstance(start, DBMMethods) or isinstance(start, DBMParams):
            params = start.dbm_params if isinstance(start, DBMMethods) else start
            check_same_sizes(self.dbm_params, params, "start")
            if self.gaussian and ops.is_concrete(params.sigma) and ops.is_concrete(self.sigma):
                gap = ops.to_numpy(ops.broadcast_to(params.sigma - self.sigma, (self.n_visible,)))
                if abs(gap).max() > 1e-6:
                    raise ValueError(
                        "start must have the same visible standard deviations sigma as this "
                        "DBM (the path interpolates the other parameters only)"
                    )
            stderr = float(getattr(log_z_start, "log_z_stderr", 0.0))
            log_z = getattr(log_z_start, "log_z", log_z_start)
            return DBMPath(frozen(params), carry, log_z, stderr)
        if log_z_start is not None:
            raise ValueError("log_z_start is only for a path from another DBM")
        factorial = self.ais_base(start)
        return DBMPath(DBMBase(factorial.start.biases, factorial.start.sigma), carry)

    def matched_base(
        self,
        data: Array,
        num_iters: int = 30,
        pseudocount: float = 1.0,
        batch_size: int = 1000,
    ) -> DBMBase:
        """The factorial base matched to this DBM and its training ``data`` ``(N, n_0)``:
        visible logits from the smoothed pixel means (the base-rate model; Gaussian ``v``:
        the data's mean) and, for every hidden layer, the logits of the average mean-field
        marginal over the data, ``(sum_n mu_ln + c) / (N + 2c)`` with ``c = pseudocount``.
        Annealing from it starts near the model's occupied region: with uniform hidden
        units AIS on trained DBMs gave small error bars and estimates several nats low."""
        check_visible(data, self.gaussian, self.n_visible, "data")
        if data.ndim != 2 or data.shape[0] == 0:
            raise ValueError(
                f"data must have shape (n_data, {self.n_visible}), got {tuple(data.shape)}"
            )
        if not pseudocount > 0:
            raise ValueError(f"pseudocount must be > 0, got {pseudocount}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        n = int(data.shape[0])
        sums = [0.0] * (self.num_layers + 1)
        for s in range(0, n, batch_size):
            mus = self.mean_field(data[s : s + batch_size], num_iters=num_iters)
            sums = [acc + ops.stop_gradient(m).sum(0) for acc, m in zip(sums, mus)]
        logits = []
        for i, total in enumerate(sums):
            if i == 0 and self.gaussian:
                logits.append(total / n)
                continue
            p = (total + pseudocount) / (n + 2.0 * pseudocount)
            logits.append(ops.log(p) - ops.log(1.0 - p))
        return DBMBase(tuple(logits), None if not self.gaussian else ops.stop_gradient(self.sigma))

    def ais_log_z0(self, base: DBMPath) -> Array:
        return base.log_z_start

    def ais_log_f(self, x: Array, beta: Any, base: DBMPath) -> Array:
        return path_log_f(self.dbm_params, base, x, beta)

    def ais_step(self, key: Any, x: Array, beta_prev: Any, beta: Any, base: DBMPath):
        return path_step(key, self.dbm_params, base, x, beta_prev, beta)

    def ais_state(self, value: Array, base: DBMPath | None = None) -> Array:
        """The AIS state (the carried layers of ``base``, default the odd ones,
        concatenated) of full DBM states, e.g. reverse-AIS starting points from long Gibbs
        chains."""
        self._check_value(value, "reverse_samples")
        layers = self.split(value)
        first = 0 if base is not None and base.carry == "even" else 1
        return ops.concat(layers[first::2], axis=-1)

    def raise_base(self, base: Any) -> DBMPath:
        """The path RAISE anneals along: it must carry ``v``, so a factorial start (anything
        :meth:`ais_base` takes) gives the path carrying the even layers; a
        :class:`DBMPath` must already carry them."""
        if isinstance(base, DBMPath):
            if base.carry != "even":
                raise ValueError(
                    "RAISE on a DBM needs a path that carries v: use "
                    "dbm.ais_path(start, carry='even')"
                )
            return self.ais_base(base)
        return self.ais_path(base, carry="even")

    def raise_start(self, key: Any, v: Array, base: DBMPath, num_iters: int = 50):
        """RAISE's first state for data ``v`` ``(n, n_0)``: the even layers (``v`` and
        ``h2, h4, ...``, the path must carry ``"even"``) with the hidden ones drawn from the
        mean-field posterior ``q`` (independent Bernoullis with the logits of the fixed
        point); returns ``(state, log q(hidden))``."""
        check_visible(v, self.gaussian, self.n_visible, "data")
        params = self._frozen()
        mus = self.mean_field(v, num_iters=num_iters)
        keys = ops.split(key, len(mus))
        out, log_q = [v], ops.zeros(tuple(v.shape[:-1]), v)
        for i in range(2, len(mus), 2):
            logits = layer_logits(params, [ops.stop_gradient(m) for m in mus], i)
            h = ops.bernoulli(keys[i], ops.sigmoid(logits))
            log_q = log_q + (h * logits - ops.softplus(logits)).sum(-1)
            out.append(h)
        return ops.concat(out, axis=-1), log_q


class DBMVisibleMethods(VisibleSiteMethods, _Unbatched):
    """What the Pyro and NumPyro ``DBMVisible`` distributions share: a DBM seen through its
    visible units, for SA-MLE (``sample("v", dbm.visible(), obs=data)``).

    ``log_prob(v)`` is the mean-field lower bound of eq. 38 on the unnormalized
    ``log p~(v)`` (exact marginalisation over the hidden layers is intractable). The
    persistent chains are full DBM states ``(..., sum_l n_l)``. ``contrast`` is the SA
    surrogate with the mean-field positive phase (:func:`mean_field_contrast`).
    A subclass stores ``dbm`` (a DBM distribution), ``num_iters``, ``damping`` and ``tol``."""

    dbm: Any
    num_iters: int
    damping: float
    tol: float | None

    #: the frontend's DBM class (set next to it)
    _dbm_cls: type

    def __init__(
        self, dbm: Any, num_iters: int = 30, damping: float = 0.0, tol: float | None = 1e-5
    ) -> None:
        self._init_visible(dbm, self._dbm_cls, num_iters, damping, tol)

    def _init_visible(self, dbm: Any, dbm_cls: type, num_iters, damping, tol) -> None:
        """The body of both frontends' ``DBMVisible`` constructors; a DBM with Gaussian visible
        units gives the support ``_real_support`` (the frontend's real vectors)."""
        kind = f"an {dbm_cls.__module__.rsplit('.', 1)[0]}.DBM"
        self._init_site("dbm", dbm, dbm_cls, kind, num_iters, damping, tol)
        self._finish_init((), (dbm.n_visible,), None)
        if dbm.gaussian:
            self.support = self._real_support

    def _sample(self, key: Any, sample_shape: tuple) -> Array:
        full = self.dbm._sample(key, tuple(sample_shape) + tuple(self.batch_shape))
        return full[..., : self.n_visible]

    @property
    def n_visible(self) -> int:
        return self.dbm.n_visible

    def _check_value(self, value: Array, name: str = "value") -> None:
        if getattr(self.dbm, "_check_inputs", True):
            check_visible(value, self.dbm.gaussian, self.n_visible, name)
        elif value.shape[-1] != self.n_visible:
            raise ValueError(f"{name} must have shape (..., {self.n_visible})")

    def mean_field(self, v: Array) -> list:
        return mean_field_fixed_point(self.dbm._frozen(), v, self.num_iters, self.damping, self.tol)

    def log_prob_unchecked(self, value: Array) -> Array:
        mus = self.mean_field(value)
        mus = [value] + [ops.stop_gradient(m) for m in mus[1:]]
        return self._out(mean_field_bound(self.dbm.dbm_params, mus), value)

    def contrast(self, data: Array, samples: Array, w_data, w_model, cache=None) -> Array:
        """The SA-MLE surrogate: positive phase at the data's mean-field marginals, negative
        phase at the persistent chains ``samples`` (full DBM states)."""
        mus = self.mean_field(data)
        return mean_field_contrast(
            self.dbm.dbm_params, mus, self.dbm.split(samples), w_data, w_model
        )

    def monitor(self, value: Array) -> Array:
        """Mean over the batch of ``||v - g(b_0 + W^(1) mu_1)||^2`` with ``mu_1`` the mean-field
        marginal of the first hidden layer (a training monitor)."""
        p = self.dbm._frozen()
        mus = mean_field_fixed_point(p, value, self.num_iters, self.damping, self.tol)
        recon = layer_logits(p, [None, mus[1]], 0)
        recon = recon if p.sigma is not None else ops.sigmoid(recon)
        return ((value - recon) ** 2).reshape(value.shape[0], -1).sum(-1).mean()
