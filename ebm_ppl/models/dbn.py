"""Deep belief network math (Salakhutdinov 2015, section 3), written once for torch and JAX.

A DBN with layers ``v = h^0, h^1, ..., h^L`` has a top RBM over ``(h^(L-1), h^L)`` and
directed sigmoid belief layers below it (eq. 20-22):

    ``P(v, h^1, ..., h^L) = P(v | h^1) ... P(h^(L-2) | h^(L-1)) P(h^(L-1), h^L)``,
    ``P(h^(l-1)_i = 1 | h^l) = g(b^(l-1)_i + sum_j W^(l)_ij h^l_j)``.

Parameters are those of the stack of RBMs it is built from: ``weights[l]`` ``W^(l+1)`` of shape
``(n_l, n_(l+1))``, ``down_biases[l]`` (the generative biases ``b^(l)`` of layer ``l``,
shape ``(n_l,)``) and ``up_biases[l]`` (the recognition biases ``c^(l+1)`` of layer
``l + 1``). The top RBM uses ``weights[-1]``, visible bias ``down_biases[-1]`` (layer
``L-1``) and hidden bias ``up_biases[-1]`` (layer ``L``).

The approximate posterior is the bottom-up recognition pass (eq. 25-28):
``Q(h^l | h^(l-1)) = prod_j g(c^(l)_j + sum_i W^(l)_ij h^(l-1)_i)``, stochastic (``Q``) or
with mean-field activities in place of samples (``Q~``). The variational bound (eq. 24):

    ``log P(v) >= E_Q[log P(v, h^1..h^(L-1))] + H(Q)``,

where the joint has the top layer ``h^L`` summed out, i.e. uses the top RBM's normalized
marginal ``-F_top(h^(L-1)) - log Z_top``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from ebm_ppl import ops
from ebm_ppl.models.rbm import free_energy, hidden_to_visible, visible_to_hidden
from ebm_ppl.ops import Array


class DBNParams(NamedTuple):
    """``weights[l]`` ``(n_l, n_(l+1))``; ``down_biases[l]`` ``(n_l,)`` for ``l = 0..L-1``;
    ``up_biases[l]`` ``(n_(l+1),)`` for ``l = 0..L-1``."""

    weights: tuple
    down_biases: tuple
    up_biases: tuple


def check_dbn(weights: Sequence[Array], down_biases: Sequence[Array], up_biases: Sequence[Array]):
    """Validate the stack; returns the layer sizes ``(n_0, ..., n_L)``."""
    weights, down_biases, up_biases = tuple(weights), tuple(down_biases), tuple(up_biases)
    if len(weights) < 1:
        raise ValueError("a DBN needs at least one weight matrix (one RBM)")
    if not (len(down_biases) == len(up_biases) == len(weights)):
        raise ValueError(
            f"weights, down_biases and up_biases must have one entry per RBM of the stack; got "
            f"{len(weights)}, {len(down_biases)} and {len(up_biases)}"
        )
    sizes = [int(weights[0].shape[0])]
    for i, w in enumerate(weights):
        if w.ndim != 2 or int(w.shape[0]) != sizes[-1]:
            raise ValueError(
                f"weights[{i}] must have shape ({sizes[-1]}, n_{i + 1}), got {tuple(w.shape)}"
            )
        sizes.append(int(w.shape[1]))
        if tuple(down_biases[i].shape) != (sizes[i],):
            raise ValueError(
                f"down_biases[{i}] must have shape ({sizes[i]},), got {tuple(down_biases[i].shape)}"
            )
        if tuple(up_biases[i].shape) != (sizes[i + 1],):
            raise ValueError(
                f"up_biases[{i}] must have shape ({sizes[i + 1]},), got {tuple(up_biases[i].shape)}"
            )
    return tuple(sizes)


def down_logits(params: DBNParams, layer: int, h: Array) -> Array:
    """Logits of ``P(h^(layer-1) | h^layer)`` (eq. 21), for ``1 <= layer <= L-1``."""
    return hidden_to_visible(h, params.weights[layer - 1]) + params.down_biases[layer - 1]


def up_logits(params: DBNParams, layer: int, h_below: Array) -> Array:
    """Logits of ``Q(h^layer | h^(layer-1))`` (eq. 25-26), for ``1 <= layer <= L``."""
    return visible_to_hidden(h_below, params.weights[layer - 1]) + params.up_biases[layer - 1]


def _bernoulli_log_prob(logits: Array, x: Array) -> Array:
    """``sum_i log Bernoulli(x_i; g(logits_i))`` in log space, shape ``(...)``."""
    return (x * logits - ops.softplus(logits)).sum(-1)


def log_joint(params: DBNParams, v: Array, hidden: Sequence[Array], log_z_top: Any) -> Array:
    """``log P(v, h^1, ..., h^(L-1))`` with the top layer summed out (normalized, given the top
    RBM's ``log Z``); ``hidden = [h^1, ..., h^(L-1)]`` (empty for a one-RBM DBN)."""
    layers = [v] + list(hidden)
    n = len(params.weights)
    if len(layers) != n:
        raise ValueError(f"hidden must hold the {n - 1} layers h^1..h^{n - 1}, got {len(hidden)}")
    total = 0.0
    for layer in range(1, n):
        total = total + _bernoulli_log_prob(
            down_logits(params, layer, layers[layer]), layers[layer - 1]
        )
    top = layers[-1]
    f = free_energy(params.weights[-1], params.down_biases[-1], params.up_biases[-1], top)
    return total - f - log_z_top


def recognize(key: Any, params: DBNParams, v: Array, deterministic: bool = False) -> list:
    """The bottom-up pass: ``[h^1, ..., h^(L-1)]`` sampled from ``Q`` (or, with
    ``deterministic``, the mean-field activities of ``Q~``, eq. 27-28)."""
    out, h = [], v
    keys = ops.split(key, max(1, len(params.weights) - 1))
    for layer in range(1, len(params.weights)):
        p = ops.sigmoid(up_logits(params, layer, h))
        h = p if deterministic else ops.bernoulli(keys[layer - 1], p)
        out.append(h)
    return out


GREEDY_MODES = ("sample", "factorial", "mean")


def propagate_up(
    key: Any, weights: Sequence[Array], up_biases: Sequence[Array], v: Array, mode: str = "sample"
) -> Array:
    """The data for the next RBM of a greedy stack: the top layer of a bottom-up pass through
    the RBMs ``(weights[l], up_biases[l])`` already trained, shape ``v.shape[:-1] + (n_top,)``.

    ``mode="sample"``: every layer sampled given the sample below, ``h^l ~ Q(h^l | h^(l-1))``
    (Algorithm 1). ``mode="factorial"``: a deterministic pass of probabilities (eq. 27-28),
    then one Bernoulli draw from ``Q~(h^top | v)`` (Algorithm 2). ``mode="mean"``: the
    probabilities ``q(h^top = 1 | v)`` themselves (no draw).
    """
    if mode not in GREEDY_MODES:
        raise ValueError(f"mode must be one of {GREEDY_MODES}, got {mode!r}")
    if len(weights) != len(up_biases) or len(weights) < 1:
        raise ValueError("weights and up_biases must be non-empty and of equal length")
    keys = ops.split(key, len(weights))
    h = v
    for i, (w, c) in enumerate(zip(weights, up_biases)):
        p = ops.sigmoid(visible_to_hidden(h, w) + c)
        last = i == len(weights) - 1
        if mode == "sample" or (mode == "factorial" and last):
            h = ops.bernoulli(keys[i], p)
        else:
            h = p
    return h


def variational_bound(
    key: Any, params: DBNParams, v: Array, log_z_top: Any, num_samples: int = 1
) -> Array:
    """Unbiased Monte Carlo estimate of the bound of eq. 24 per data point, shape
    ``v.shape[:-1]``: ``mean_s [log P(v, h_s) - log Q(h_s | v)]`` with ``h_s ~ Q`` (the
    stochastic recognition pass), whose expectation is ``E_Q[log P(v, h)] + H(Q)``."""
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    keys = ops.split(key, num_samples)
    acc = 0.0
    for k in keys:
        hs = recognize(k, params, v)
        lq, below = 0.0, v
        for layer, h in enumerate(hs, start=1):
            lq = lq + _bernoulli_log_prob(up_logits(params, layer, below), h)
            below = h
        acc = acc + log_joint(params, v, hs, log_z_top) - lq
    return acc / num_samples


def tied_init(weights: Array, visible_bias: Array, hidden_bias: Array) -> tuple:
    """Parameters ``(W^T, c, b)`` of the next RBM that make the two-hidden-layer DBN equal to
    the RBM ``(W, b, c)`` below (section 3, Figure 4b): the greedy algorithm's starting point,
    at which the bound of eq. 24 is tight."""
    return ops.transpose(weights), hidden_bias, visible_bias


def feedforward_logits(weights: Sequence[Array], biases: Sequence[Array], x: Array) -> Array:
    """The discriminative network made from a DBN: ``x -> g(x W^(1) + c^(1)) -> ... ->``
    ``g(. W^(L) + c^(L))`` (the deterministic recognition pass of eq. 27-28), then the output
    layer ``h W^(L+1) + c^(L+1)`` (logits, no squashing). ``weights[l]`` is ``(n_l, n_(l+1))``;
    the last entry is the output layer. Shape ``x.shape[:-1] + (num_classes,)``."""
    h = x
    for w, c in zip(weights[:-1], biases[:-1]):
        h = ops.sigmoid(visible_to_hidden(h, w) + c)
    return visible_to_hidden(h, weights[-1]) + biases[-1]


def log_z_of(log_z_top: Any) -> tuple[float, float]:
    """``(log Z, stderr)`` from a number or an AIS result (``log_z``, ``log_z_stderr``)."""
    if hasattr(log_z_top, "log_z") and hasattr(log_z_top, "log_z_stderr"):
        return float(log_z_top.log_z), float(log_z_top.log_z_stderr)
    try:
        value = float(log_z_top)
    except (TypeError, ValueError):
        raise TypeError(
            "log_z_top must be a number (e.g. the top RBM's log_partition()) or an AIS result "
            f"with log_z and log_z_stderr, got {type(log_z_top).__name__}"
        ) from None
    return value, 0.0


def check_below(below: Any, cls: type, what: str) -> list:
    """The RBM layers under a greedy layer, bottom first, with matching sizes."""
    below = list(below) if isinstance(below, (list, tuple)) else [below]
    if not below or not all(isinstance(r, cls) for r in below):
        raise TypeError(f"below must be a non-empty sequence of {what} layers")
    for i in range(1, len(below)):
        if below[i].weights.shape[-2] != below[i - 1].weights.shape[-1]:
            raise ValueError(
                f"below[{i}] has {below[i].weights.shape[-2]} visible units but below"
                f"[{i - 1}] has {below[i - 1].weights.shape[-1]} hidden units"
            )
    return below


def check_greedy_args(hidden_sizes: Any, num_epochs: Any, mode: str, init_scale: Any, seed: Any):
    """Validate :func:`greedy_pretrain`'s arguments; returns ``(sizes, epochs per layer)``."""
    try:
        sizes = [int(n) for n in hidden_sizes]
    except TypeError:
        raise TypeError(f"hidden_sizes must be a sequence of ints, got {hidden_sizes!r}") from None
    if not sizes or any(n < 1 for n in sizes):
        raise ValueError(f"hidden_sizes must be a non-empty list of positive ints, got {sizes}")
    epochs = [num_epochs] * len(sizes) if isinstance(num_epochs, int) else list(num_epochs)
    if len(epochs) != len(sizes) or not all(isinstance(e, int) and e >= 0 for e in epochs):
        raise ValueError(
            f"num_epochs must be a non-negative int or one per layer ({len(sizes)}), "
            f"got {num_epochs!r}"
        )
    if mode not in GREEDY_MODES[:2]:
        raise ValueError(
            f"mode must be 'sample' (Algorithm 1) or 'factorial' (Algorithm 2), got {mode!r}"
        )
    if not isinstance(init_scale, (int, float)) or not init_scale > 0:
        raise ValueError(f"init_scale must be a positive number, got {init_scale!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return sizes, epochs


def check_labels(x: Any, y: Any, n_inputs: int, x_name: str, y_name: str) -> None:
    """Inputs ``(n, n_inputs)`` and integer labels ``(n,)`` for fine-tuning."""
    if y is None:
        raise ValueError(f"{y_name} is required with {x_name}")
    if x.ndim != 2 or x.shape[1] != n_inputs:
        raise ValueError(f"{x_name} must have shape (n, {n_inputs}), got {tuple(x.shape)}")
    if tuple(y.shape) != (x.shape[0],):
        raise ValueError(f"{y_name} must have shape ({x.shape[0]},), got {tuple(y.shape)}")


def check_fine_tune_args(optimizer: Any, name: str, cg_line_searches: Any) -> bool:
    """Check the optimizer choice of ``fine_tune`` (argument ``name``): a string must be
    ``"sgd"`` or ``"cg"``; ``cg_line_searches`` a positive int. True for conjugate gradients."""
    if isinstance(optimizer, str) and optimizer not in ("sgd", "cg"):
        raise ValueError(f"{name} must be 'sgd', 'cg' or an optimizer object, got {optimizer!r}")
    if (
        not isinstance(cg_line_searches, int)
        or isinstance(cg_line_searches, bool)
        or cg_line_searches < 1
    ):
        raise ValueError(f"cg_line_searches must be a positive int, got {cg_line_searches!r}")
    return isinstance(optimizer, str) and optimizer == "cg"


# ---- what both frontends share: the programs and the containers -----------------------------


def layer_name(layer: int) -> str:
    """Site name of layer ``layer`` in the DBN programs: ``"v"``, ``"h1"``, ``"h2"``, ..."""
    return "v" if layer == 0 else f"h{layer}"


def build_model(ppl: Any, bernoulli: type, rbm_cls: type, params: DBNParams, num_gibbs_steps: int):
    """The DBN program (eq. 20-22) for a PPL module ``ppl`` (``pyro`` or ``numpyro``) with its
    ``Bernoulli`` class and our ``RBM`` class: ``model(data=None, num_data=None)``."""
    sizes = check_dbn(*params)
    top = len(params.weights) - 1

    def model(data=None, num_data: int | None = None):
        if data is None and num_data is None:
            raise ValueError("give the observed data, or num_data to draw that many samples")
        if data is not None and tuple(data.shape[-1:]) != (sizes[0],):
            raise ValueError(f"data must have shape (n, {sizes[0]}), got {tuple(data.shape)}")
        n = data.shape[0] if data is not None else num_data
        with ppl.plate("data", n):
            rbm = rbm_cls(
                params.weights[-1],
                params.down_biases[-1],
                params.up_biases[-1],
                num_gibbs_steps=num_gibbs_steps,
            )
            h = ppl.sample(layer_name(top), rbm, obs=data if top == 0 else None)
            for layer in range(top, 0, -1):
                dist = bernoulli(logits=down_logits(params, layer, h)).to_event(1)
                h = ppl.sample(layer_name(layer - 1), dist, obs=data if layer == 1 else None)
        return h

    return model


def build_guide(ppl: Any, bernoulli: type, params: DBNParams, factorial: bool):
    """The recognition guide (``Q`` of eq. 25, or ``Q~`` of eq. 26-28 when ``factorial``) for
    :func:`build_model`'s program: samples ``"h1"``, ..., ``"h{L-1}"`` given ``data``."""
    check_dbn(*params)

    def guide(data=None, num_data: int | None = None):
        if data is None:
            raise ValueError("the recognition guide needs the observed data")
        h = data
        with ppl.plate("data", data.shape[0]):
            for layer in range(1, len(params.weights)):
                logits = up_logits(params, layer, h)
                s = ppl.sample(layer_name(layer), bernoulli(logits=logits).to_event(1))
                h = ops.sigmoid(logits) if factorial else s
        return h

    return guide


class DBNBase:
    """What :class:`ebm_ppl.pyro.DBN` and :class:`ebm_ppl.numpyro.DBN` share. A frontend sets
    ``_rbm_cls``, ``_model_fn``, ``_guide_fn`` and ``_as_array`` (a checked conversion)."""

    _rbm_cls: type
    _frontend: str
    _as_array: Any  # a frontend's checked conversion, ``(name, array) -> array``

    def __init__(self, weights: Sequence, down_biases: Sequence, up_biases: Sequence) -> None:
        parts = [
            tuple(self._as_array(name, t) for t in seq)
            for name, seq in (
                ("weights", weights),
                ("down_biases", down_biases),
                ("up_biases", up_biases),
            )
        ]
        self.sizes: tuple[int, ...] = check_dbn(*parts)
        self.params = DBNParams(*parts)

    @classmethod
    def from_rbms(cls, rbms: Sequence) -> DBNBase:
        """The DBN of a greedy stack of RBM layers, bottom first: ``weights[l]``,
        ``down_biases[l]`` and ``up_biases[l]`` are the ``l``-th RBM's weights, visible and
        hidden biases."""
        rbms = list(rbms)
        if not rbms or not all(isinstance(r, cls._rbm_cls) for r in rbms):
            raise TypeError(
                f"rbms must be a non-empty sequence of ebm_ppl.{cls._frontend}.RBM layers"
            )
        return cls(
            [r.weights for r in rbms], [r.visible_bias for r in rbms], [r.hidden_bias for r in rbms]
        )

    @property
    def top(self) -> Any:
        """The top RBM over ``(h^(L-1), h^L)``; its ``log Z`` (exact or by AIS) normalizes
        the DBN."""
        p = self.params
        return self._rbm_cls(p.weights[-1], p.down_biases[-1], p.up_biases[-1])

    def model(self, num_gibbs_steps: int = 100):
        """The generative program (eq. 20-22), ``model(data=None, num_data=None)``."""
        return type(self)._model_fn(*self.params, num_gibbs_steps=num_gibbs_steps)

    def guide(self, factorial: bool = False):
        """The recognition guide ``Q`` (or the factorial ``Q~``) for :meth:`model`."""
        return type(self)._guide_fn(*self.params, factorial=factorial)

    def _bound_values(self, key: Any, data: Any, num_samples: int, batch_size: int, fold) -> list:
        if data.ndim != 2 or data.shape[1] != self.sizes[0]:
            raise ValueError(f"data must have shape (n, {self.sizes[0]}), got {tuple(data.shape)}")
        return [
            variational_bound(fold(key, i), self.params, data[i : i + batch_size], 0.0, num_samples)
            for i in range(0, data.shape[0], batch_size)
        ]


class GreedyLayerDataBase:
    """What the frontends' ``GreedyLayerData`` share: checks, ``__len__`` and the chunked
    bottom-up pass; a frontend makes the per-epoch key and converts the data."""

    _rbm_cls: type
    _frontend: str

    def __init__(
        self,
        below: Sequence,
        data: Any,
        mode: str = "sample",
        seed: int = 0,
        batch_size: int = 10_000,
    ) -> None:
        self.below = check_below(below, self._rbm_cls, f"ebm_ppl.{self._frontend}.RBM")
        if mode not in GREEDY_MODES:
            raise ValueError(f"mode must be one of {GREEDY_MODES}, got {mode!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.data, self.mode, self.seed, self.batch_size = data, mode, seed, batch_size

    def __len__(self) -> int:
        return len(self.data)

    def _epoch_input(self, epoch: int, convert) -> Any:
        n_in = self.below[0].weights.shape[-2]
        x = convert(self.data(epoch) if callable(self.data) else self.data)
        if x.ndim != 2 or x.shape[1] != n_in:
            raise ValueError(f"data must have shape (n, {n_in}), got {tuple(x.shape)}")
        return x

    def _propagate(self, key: Any, x: Any, fold, run=None) -> list:
        ws = tuple(r.weights for r in self.below)
        cs = tuple(r.hidden_bias for r in self.below)
        run = run or (lambda k, v: propagate_up(k, ws, cs, v, self.mode))
        return [
            run(fold(key, i), x[i : i + self.batch_size])
            for i in range(0, x.shape[0], self.batch_size)
        ]


def greedy_layer_init(
    rbms: Sequence, n_hidden: int, x0: Array, tie_weights: bool, init_scale: float, noise: Array
) -> tuple:
    """Starting ``(W, b, c)`` of the next greedy layer on data ``x0`` ``(n, n_visible)``: the
    transposed layer below (:func:`tied_init`) when ``tie_weights`` and ``n_hidden`` equals
    its visible size; otherwise ``W = init_scale * noise`` (``noise`` standard normal of shape
    ``(n_visible, n_hidden)``), visible biases at the log-odds of the data means (clipped to
    ``[1e-3, 1 - 1e-3]``), zero hidden biases."""
    below = rbms[-1] if rbms else None
    if tie_weights and below is not None and n_hidden == below.weights.shape[0]:
        return tied_init(below.weights, below.visible_bias, below.hidden_bias)
    mean = x0.mean(0)
    mean = ops.where(
        mean < 1e-3, 1e-3 + 0 * mean, ops.where(mean > 1 - 1e-3, 1 - 1e-3 + 0 * mean, mean)
    )
    return init_scale * noise, ops.log(mean) - ops.log(1 - mean), ops.zeros((n_hidden,), x0)


def greedy_layer_model(
    ppl: Any,
    make_rbm: Any,
    init: Sequence[Array],
    names: Sequence[str],
    site: str = "h",
    copies: int = 1,
):
    """The SA-MLE program of one layer of greedy layer-wise learning (section 3, Algorithms 1
    and 2; the DBM's doubling trick of section 4.2), written once for both PPLs:
    ``model(batch)`` declares the parameters ``ppl.param(names[k], init[k])`` (the RBM's
    weights ``(n_low, n_high)``, lower bias ``(n_low,)`` and upper bias ``(n_high,)``) and,
    inside ``ppl.plate("data", n)``, observes the layer data ``batch`` ``(n, n_low)``, repeated
    ``copies`` times along its last axis (the doubled input of a DBM's bottom RBM), at the site
    ``site`` of the RBM ``make_rbm(weights, low_bias, high_bias)`` (its log-density ``-F``,
    eq. 5, is what SA-MLE raises)."""

    def model(batch: Array) -> None:
        w, lo, hi = (ppl.param(n, ppl.param_value(t)) for n, t in zip(names, init))
        x = ops.concat([batch] * copies, axis=-1) if copies > 1 else batch
        with ppl.plate("data", batch.shape[0]):
            ppl.sample(site, make_rbm(w, lo, hi), obs=x)

    return model
