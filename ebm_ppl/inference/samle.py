"""Stochastic-approximation maximum likelihood, written once for both backends.

For an energy model ``p(x) = exp(log p~(x)) / Z`` the log-likelihood gradient is the
positive phase minus the negative phase (eq. 9)::

    d/dθ mean_n log p(x_n) = mean_n d/dθ log p~(x_n) - E_model[d/dθ log p~(x)]

The trainers minimise the surrogate ``-(mean_n log p~(x_n) - mean_k log p~(x_k))`` where the
``x_k`` are model samples from Markov chains advanced by the energy distribution's own
transition operator with the parameters held fixed (no gradient flows through them). With
chains restarted at the data this is CD-k (eq. 10); with chains carried across updates it is
persistent CD / stochastic approximation (Younes 1989; Tieleman 2008).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from ebm_ppl import ops
from ebm_ppl.inference.gibbs import classify_sites
from ebm_ppl.inference.tempering import check_operator
from ebm_ppl.models.family import as_value, first_param
from ebm_ppl.models.protocols import CachesData, Contrasts, check_value


def robbins_monro(a: float, b: float) -> Callable[[Any], Any]:
    """Step-size schedule ``t -> a / (b + t)`` (Robbins and Monro 1951).

    The result is a plain callable of the step count, usable as an optax schedule and as the
    ``lr_lambda`` of ``torch.optim.lr_scheduler.LambdaLR`` / ``pyro.optim.LambdaLR`` (with a
    base learning rate of 1).
    """
    if not (a > 0 and b > 0):
        raise ValueError(f"robbins_monro needs a > 0 and b > 0, got a={a}, b={b}")

    def schedule(t):
        return a / (b + t)

    return schedule


class SAConfig(NamedTuple):
    """Settings shared by the Pyro and NumPyro trainers."""

    num_gibbs_steps: int = 1
    persistent: bool = True
    num_chains: int | None = None
    transition: Any = None

    def describe(self) -> dict:
        """JSON-able settings (for checkpoints)."""
        t = self.transition
        return self._replace(transition=None if t is None else t.describe())._asdict()


def chain_axis(transition: Any) -> int:
    """The axis of a chain state that indexes the chains: 0 for block Gibbs, the operator's
    ``chain_axis`` otherwise (1 for a parallel-tempering ladder ``(L, n, ...)``). Sharded and
    distributed runs split the chains along it."""
    return int(getattr(transition, "chain_axis", 0))


def check_config(
    num_gibbs_steps: int, persistent: bool, num_chains: int | None, transition: Any = None
) -> SAConfig:
    if not isinstance(num_gibbs_steps, int) or num_gibbs_steps < 1:
        raise ValueError(f"num_gibbs_steps must be a positive int, got {num_gibbs_steps!r}")
    if num_chains is not None and (not isinstance(num_chains, int) or num_chains < 1):
        raise ValueError(f"num_chains must be a positive int or None, got {num_chains!r}")
    if not persistent and num_chains is not None:
        raise ValueError(
            "num_chains applies to persistent chains only; CD-k (persistent=False) restarts "
            "one chain at each data point"
        )
    if transition is not None:
        check_operator(transition)
        if not persistent:
            raise ValueError(
                "transition operators drive persistent chains; CD-k (persistent=False) "
                "restarts plain Gibbs chains at the data"
            )
    return SAConfig(num_gibbs_steps, bool(persistent), num_chains, transition)


def observed_energy_sites(nodes: Mapping[str, Mapping]) -> list[str]:
    """Names of the observed energy sites of a trace; ``ValueError`` if there is none."""
    _, observed, _ = classify_sites(nodes)
    if not observed:
        raise ValueError(
            "the model has no observed energy site: SAMLE trains the parameters of energy "
            "distributions observed on data, e.g. pyro.sample('v', RBM(W, b, c), obs=data)"
        )
    return observed


def validate_observed(nodes: Mapping[str, Mapping]) -> None:
    """Check the data of every observed energy site (shape, support, finiteness)."""
    for name in observed_energy_sites(nodes):
        site = nodes[name]
        value = as_value(site["value"], first_param(site["fn"]))  # as the update casts it
        check_value(site["fn"], value, f"the data observed at site {name!r}")


def _numel(shape) -> int:
    return int(math.prod(tuple(shape)))


def init_chains(key: Any, nodes: Mapping[str, Mapping], config: SAConfig) -> dict[str, Any]:
    """Starting states of the persistent chains of every observed energy site.

    Each site gets ``num_chains`` chains (default: as many as data points in this batch) of
    the distribution with the parameters' own batch shape (not the plate's).
    """
    chains = {}
    names = observed_energy_sites(nodes)
    keys = ops.split(key, len(names))
    for k, name in zip(keys, names):
        site = nodes[name]
        fn = site["fn"]
        base = fn.unexpanded()
        n = config.num_chains
        if n is None:
            n = max(1, _numel(site["value"].shape[: site["value"].ndim - len(fn.event_shape)]))
        shape = (n,) + tuple(base.batch_shape) + tuple(fn.event_shape)
        if config.transition is None:
            chains[name] = base.init_chain(k, shape)
        else:
            chains[name] = config.transition.init_state(k, base, shape)
    return chains


def check_checkpoint(
    path: Any,
    shapes: Mapping[str, tuple],
    *,
    params: Mapping[str, tuple] | None = None,
    chains: Mapping[str, tuple] | None = None,
    chain_axis: int = 0,
    required: tuple[str, ...] = (),
) -> None:
    """Refuse a SA-MLE checkpoint that does not fit the trainer loading it.

    ``shapes`` are the checkpoint's entries (e.g. ``"param/W"``, ``"chains/v"``,
    ``"rng/torch"``) with their shapes. ``params`` (``{name: shape}``) are the
    model's parameters, looked up as ``"param/<name>"``; ``chains`` (``{site: shape}``) the
    persistent chains the trainer would start, looked up as ``"chains/<site>"`` and compared
    outside ``chain_axis`` (the number of chains may differ with the number of ranks);
    ``required`` names entries that must be present (the random-generator state). Raises a
    ``ValueError`` naming the entry, what the trainer expected and what to do, instead of
    letting the trainer re-initialise a parameter or restart its chains in silence.
    """
    names = set(shapes)
    for key in required:
        if key not in names:
            raise ValueError(
                f"{path} has no {key!r} entry (written by SAMLE.save): the file is truncated "
                "or was written by something else; save the trainer again"
            )
    for kind, expected, skip in (("param", params, None), ("chains", chains, chain_axis)):
        if expected is None:
            continue
        saved = sorted(n.split("/", 1)[1] for n in names if n.startswith(kind + "/"))
        for name, shape in expected.items():
            key = f"{kind}/{name}"
            what = "parameter" if kind == "param" else "persistent chains of site"
            if key not in names:
                fix = (
                    "it would be re-initialised and the optimizer state would not match; "
                    "load a checkpoint of this model"
                    if kind == "param"
                    else "the chains would restart from scratch; load a checkpoint written "
                    "with persistent chains, or train with persistent=False"
                )
                raise ValueError(
                    f"{path} holds no {what} {name!r} of this model (it holds "
                    f"{saved or 'none'}): {fix}"
                )
            got, want = tuple(shapes[key]), tuple(shape)
            if skip is not None and len(got) == len(want):
                axis = skip % len(want) if want else 0
                got_cmp = got[:axis] + got[axis + 1 :]
                want_cmp = want[:axis] + want[axis + 1 :]
            else:
                got_cmp, want_cmp = got, want
            if got_cmp != want_cmp:
                hint = " (transposed?)" if len(got) == 2 and got[::-1] == want else ""
                raise ValueError(
                    f"{what} {name!r}: this model has shape {want} but {path} holds shape "
                    f"{got}{hint}; load a checkpoint of a model with the same sizes"
                )


def sa_objective(
    key: Any,
    nodes: Mapping[str, Mapping],
    chains: Mapping[str, Any],
    config: SAConfig,
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Surrogate loss of one SA-MLE update, the advanced chains and statistics.

    ``nodes`` is a Pyro or NumPyro trace of the model run on a data batch with the current
    parameters. For every observed energy site the positive phase is its scaled
    unnormalized log-density at the data (plate subsampling scales are honoured) and the
    negative phase its mean log-density at the chains after ``num_gibbs_steps`` transitions.
    The loss is normalised per data point, so its gradient is ``-(E_data - E_model)``.
    Energy distributions with a ``contrast`` method (the RBM family) evaluate their part
    with fused analytic gradients; others through ``log_prob``.
    """
    names = observed_energy_sites(nodes)
    keys = ops.split(key, len(names))
    sizes = {}
    # the data in the parameters' dtype (bool, integer or float64 batches are cast)
    data = {n: as_value(nodes[n]["value"], first_param(nodes[n]["fn"])) for n in names}
    for name in names:
        site = nodes[name]
        fn, x = site["fn"], data[name]
        scale = site.get("scale")
        scale = 1.0 if scale is None else scale
        batch = ops.broadcast_shapes(tuple(x.shape[: x.ndim - len(fn.event_shape)]), fn.batch_shape)
        sizes[name] = (scale, _numel(batch) * scale)
    total_n = sum(n for _, n in sizes.values())
    loss = 0.0
    new_chains = {}
    for k, name in zip(keys, names):
        site = nodes[name]
        fn, x = site["fn"], data[name]
        scale, n = sizes[name]
        if config.persistent:
            base, cache = fn.unexpanded(), None
            if config.transition is None:
                x_model, _ = base.transition(k, chains[name], config.num_gibbs_steps)
                new_chains[name] = x_model
            else:  # e.g. parallel tempering: the chain state is the whole ladder
                state, _ = config.transition.step(k, base, chains[name], config.num_gibbs_steps)
                x_model = config.transition.samples(state)
                new_chains[name] = state
        else:  # CD-k: the chain starts at the data and reuses the data's hidden logits
            base = fn
            cache = fn.data_cache(x) if isinstance(fn, CachesData) else None
            kw = {} if cache is None else {"cache": cache}
            x_model, _ = base.transition(k, ops.stop_gradient(x), config.num_gibbs_steps, **kw)
        x_model = ops.stop_gradient(x_model)
        m = _numel(x_model.shape[: x_model.ndim - len(fn.event_shape)])
        w_data, w_model = scale / total_n, n / (total_n * m)
        if isinstance(fn, Contrasts):
            loss = loss + fn.contrast(x, x_model, w_data, w_model, cache)
        else:
            lp_d = fn.log_prob_unchecked(x).sum()
            lp_x = base.log_prob_unchecked(x_model).sum()
            loss = loss - (w_data * lp_d - w_model * lp_x)
    return loss, new_chains, {"loss": ops.stop_gradient(loss)}


def reconstruction_error(nodes: Mapping[str, Mapping]) -> Any:
    """Sum over observed energy sites of their mean reconstruction error on the data."""
    total = 0.0
    for name in observed_energy_sites(nodes):
        site = nodes[name]
        total = total + ops.stop_gradient(site["fn"].monitor(site["value"]))
    return total


# --------------------------------------------------------------------------------------
# minibatching shared by the trainers
# --------------------------------------------------------------------------------------


def epoch_data(data: Any, epoch: int) -> Any:
    """The data of one epoch: ``data(epoch)`` when ``data`` is callable (e.g. a
    :class:`~ebm_ppl.datasets.StochasticBinarization`, a fresh draw per epoch), else ``data``.
    """
    return data(epoch) if callable(data) else data


def data_size(data: Any) -> int:
    """Number of data points of an array, or of a per-epoch data callable."""
    n = len(data) if hasattr(data, "__len__") else None
    if n is None:
        raise TypeError("data must be an array of shape (n, ...) or a callable with __len__")
    if n == 0:
        raise ValueError("data is empty: SAMLE needs at least one data point")
    return int(n)


def batch_indices(n: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True):
    """Index arrays of the full minibatches of one epoch (a trailing partial batch is dropped
    so that every update sees ``batch_size`` points; with ``batch_size >= n`` one batch of all)."""

    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    batch_size = min(batch_size, n)
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    num = n // batch_size
    return order[: num * batch_size].reshape(num, batch_size)


def plan_run(
    done: int,
    n: int,
    batch_size: int,
    num_epochs: int,
    shuffle: bool,
    made_with: int | None = None,
) -> tuple[int, int]:
    """``(steps_per_epoch, first_epoch)`` of a ``SAMLE.run`` call, under its semantics:

    * ``num_epochs`` is the **total** number of epochs: a trainer that has made ``done``
      updates continues from epoch ``done // steps_per_epoch``, so that a resumed run ends
      where an uninterrupted one would. A call with nothing left to do warns.
    * An epoch is ``n // batch_size`` updates on full minibatches; the ``n % batch_size``
      examples left over are a different set each epoch with ``shuffle=True`` and always the
      same last ones without it (warned about, since they are then never used).
    * The update count means epochs only for one batch size: ``made_with``, the batch size
      of the trainer's earlier updates, must equal ``batch_size`` once updates were made.
    """
    if not isinstance(num_epochs, int) or isinstance(num_epochs, bool) or num_epochs < 0:
        raise ValueError(f"num_epochs must be an int >= 0 (the total), got {num_epochs!r}")
    steps_per_epoch = len(batch_indices(n, batch_size, 0, 0, shuffle=False))
    if done and made_with is not None and made_with != min(batch_size, n):
        raise ValueError(
            f"this trainer's {done} updates were made with batch_size={made_with}, which "
            f"sets its epoch count; got batch_size={batch_size}. Keep batch_size={made_with} "
            "to continue, or start a new trainer (its parameters can start from these)"
        )
    first_epoch = done // steps_per_epoch
    if first_epoch >= num_epochs:
        warnings.warn(
            f"nothing to train: num_epochs={num_epochs} is the total number of epochs and "
            f"this trainer has done {first_epoch}; pass num_epochs={first_epoch + 1} or more "
            "to train on",
            UserWarning,
            stacklevel=3,
        )
    left = n % min(batch_size, n)
    if left and not shuffle and first_epoch < num_epochs:
        warnings.warn(
            f"with shuffle=False the last {left} of the {n} examples are never used "
            f"(batch_size={batch_size} does not divide {n}); shuffle, or pick a batch size "
            "that divides the data",
            UserWarning,
            stacklevel=3,
        )
    return steps_per_epoch, first_epoch


#: a parameter larger than this in absolute value after an epoch is reported as diverging
DIVERGENCE_LIMIT = 1e4


def check_divergence(params: Mapping[str, Any], epoch: int) -> str | None:
    """Stop a run whose parameters stopped being finite; describe one that is blowing up.

    Called after every epoch with the model's parameters ``{name: array}``. Raises
    ``FloatingPointError`` naming the parameter when one holds NaN or infinity (before the
    epoch's checkpoint is written, so the last checkpoint holds the state before it).
    Returns a warning text when a parameter exceeds ``DIVERGENCE_LIMIT`` in absolute value
    (a learning rate far too large; binary-unit models have weights of order 1 to 10), else
    ``None``.
    """
    for name, p in params.items():
        if not ops.all_finite(p):
            raise FloatingPointError(
                f"training diverged in epoch {epoch}: parameter {name!r} is no longer finite. "
                "Lower the learning rate (the last checkpoint, if any, holds the state before "
                "this epoch)"
            )
    for name, p in params.items():
        size = float(abs(p).max()) if _numel(p.shape) else 0.0
        if size > DIVERGENCE_LIMIT:
            return (
                f"parameter {name!r} has grown to |x| = {size:.3g} by epoch {epoch}: training "
                "is probably diverging; lower the learning rate"
            )
    return None
