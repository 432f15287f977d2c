"""Deep belief networks as ordinary NumPyro programs (:mod:`ebm_ppl.models.dbn` holds the math)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.flatten_util import ravel_pytree
from tqdm.auto import tqdm

from ebm_ppl.inference.ais import summarize
from ebm_ppl.inference.cg import minimize_minibatches
from ebm_ppl.inference.greedy import LayerTrainer, greedy_dbn_layers
from ebm_ppl.inference.samle import batch_indices, epoch_data
from ebm_ppl.models.dbm import augmented_input_size, augmented_logits
from ebm_ppl.models.dbn import (
    DBNBase,
    DBNParams,
    GreedyLayerDataBase,
    build_guide,
    build_model,
    check_fine_tune_args,
    check_labels,
    feedforward_logits,
    log_z_of,
    propagate_up,
    variational_bound,
)
from ebm_ppl.models.multimodal.classifier import (
    multimodal_augmented_input_size,
    multimodal_augmented_logits,
)
from ebm_ppl.numpyro import ppl
from ebm_ppl.numpyro.distributions import RBM
from ebm_ppl.numpyro.samle import SAMLE

__all__ = [
    "DBN",
    "GreedyLayerData",
    "classification_error",
    "classifier_init",
    "classifier_logits",
    "dbn_guide",
    "dbn_model",
    "fine_tune",
    "greedy_pretrain",
]


def dbn_model(
    weights: Sequence[jax.Array],
    down_biases: Sequence[jax.Array],
    up_biases: Sequence[jax.Array],
    num_gibbs_steps: int = 100,
) -> Callable:
    """A NumPyro model of the DBN (eq. 20-22): ``model(data=None, num_data=None)``; the same
    sites as :func:`ebm_ppl.pyro.dbn_model` (``"h{L-1}"`` from the top RBM, then
    ``Bernoulli(logits=...)`` sites down to ``"v"``)."""
    params = DBNParams(tuple(weights), tuple(down_biases), tuple(up_biases))
    return build_model(numpyro, dist.Bernoulli, RBM, params, num_gibbs_steps)


def dbn_guide(
    weights: Sequence[jax.Array],
    down_biases: Sequence[jax.Array],
    up_biases: Sequence[jax.Array],
    factorial: bool = False,
) -> Callable:
    """The bottom-up recognition distribution as a guide for :func:`dbn_model`; the same
    sites and options as :func:`ebm_ppl.pyro.dbn_guide` (``Q`` of eq. 25 by default, the
    factorial ``Q~`` of eq. 26-28 with ``factorial=True``). With the PPL's ELBO,
    ``-loss / n - log Z_top`` is the bound of eq. 24."""
    params = DBNParams(tuple(weights), tuple(down_biases), tuple(up_biases))
    return build_guide(numpyro, dist.Bernoulli, params, factorial)


class DBN(DBNBase):
    """A deep belief network (section 3); the same API as :class:`ebm_ppl.pyro.DBN`, with an
    explicit ``rng_key`` wherever draws are made."""

    _rbm_cls = RBM
    _frontend = "numpyro"
    _model_fn = staticmethod(dbn_model)
    _guide_fn = staticmethod(dbn_guide)

    @staticmethod
    def _as_array(name: str, t) -> jax.Array:
        try:
            return jnp.asarray(t)
        except TypeError:
            raise TypeError(
                f"{name} must be a sequence of arrays, got {type(t).__name__}"
            ) from None

    def recognize(
        self, data: jax.Array, factorial: bool = False, rng_key: jax.Array | None = None
    ) -> jax.Array:
        """``q(h^L = 1 | v)`` of the deterministic pass when ``factorial`` (no key needed),
        else one draw of ``h^L`` from ``Q`` (``rng_key`` required); shape ``(n, n_L)``."""
        if not factorial and rng_key is None:
            raise ValueError("rng_key is required to sample the stochastic pass Q")
        mode = "mean" if factorial else "sample"
        return propagate_up(rng_key, self.params.weights, self.params.up_biases, data, mode)

    def bound(
        self,
        data: jax.Array,
        log_z_top,
        rng_key: jax.Array,
        num_samples: int = 1,
        batch_size: int = 10_000,
    ):
        """The variational lower bound of eq. 24 on the average ``log P(v)`` of ``data``; see
        :meth:`ebm_ppl.pyro.DBN.bound`."""

        log_z, stderr = log_z_of(log_z_top)
        fn = jax.jit(lambda k, v: variational_bound(k, self.params, v, 0.0, num_samples))
        data = jnp.asarray(data)
        if data.ndim != 2 or data.shape[1] != self.sizes[0]:
            raise ValueError(f"data must have shape (n, {self.sizes[0]}), got {data.shape}")
        parts = [
            fn(jax.random.fold_in(rng_key, i), data[i : i + batch_size])
            for i in range(0, data.shape[0], batch_size)
        ]
        return summarize(jnp.concatenate(parts), log_z, stderr)


class GreedyLayerData(GreedyLayerDataBase):
    """The training data of the next RBM in greedy layer-wise learning, ``epoch -> array``;
    the NumPyro twin of :class:`ebm_ppl.pyro.GreedyLayerData`. Pass it to
    :meth:`ebm_ppl.numpyro.SAMLE.run` as its data. The draws of epoch ``e`` use the key
    ``fold_in(PRNGKey(seed), e)``."""

    _rbm_cls = RBM
    _frontend = "numpyro"

    def __init__(self, below, data, mode: str = "sample", seed: int = 0, batch_size: int = 10_000):
        super().__init__(below, data, mode, seed, batch_size)
        ws = tuple(r.weights for r in self.below)
        cs = tuple(r.hidden_bias for r in self.below)
        self._pass = jax.jit(lambda k, v: propagate_up(k, ws, cs, v, mode))

    def __call__(self, epoch: int) -> jax.Array:
        """The data of epoch ``epoch``, float32 ``(n, n_top)``."""
        x = self._epoch_input(epoch, lambda a: jnp.asarray(a, dtype=jnp.float32))
        key = jax.random.fold_in(jax.random.PRNGKey(self.seed), epoch)
        return jnp.concatenate(self._propagate(key, x, jax.random.fold_in, self._pass))


class _LayerTrainer(LayerTrainer):
    """The NumPyro steps of the greedy loops (:mod:`ebm_ppl.inference.greedy`): layer ``l``'s
    random start and its trainer's key are the two halves of ``fold_in(rng_key, l)``; the
    parameters come back from the trainer's state."""

    ppl = ppl
    rbm_cls = RBM
    layer_data_cls = GreedyLayerData

    def __init__(self, rng_key: jax.Array, optim, samle_kwargs: dict) -> None:
        self.rng_key, self.optim, self.samle_kwargs = rng_key, optim, samle_kwargs

    def _keys(self, layer: int) -> jax.Array:
        return jax.random.split(jax.random.fold_in(self.rng_key, layer))

    def first_batch(self, layer_data) -> jax.Array:
        return jnp.asarray(epoch_data(layer_data, 0), dtype=jnp.float32)

    def noise(self, layer: int, x0: jax.Array, n_hidden: int) -> jax.Array:
        return jax.random.normal(self._keys(layer)[0], (x0.shape[-1], n_hidden))

    def param_names(self, prefix: str, layer: int, names: Sequence[str]) -> Sequence[str]:
        return names

    def fit(self, layer, model, layer_data, x0, names, run_kwargs, checkpoint):
        key_run = self._keys(layer)[1]
        trainer = SAMLE(model, self.optim, **self.samle_kwargs)
        init_state = None
        if checkpoint is not None and checkpoint.exists():
            init_state = trainer.load(checkpoint, key_run, x0[: run_kwargs["batch_size"]])
        state = trainer.run(
            key_run, layer_data, init_state=init_state, checkpoint=checkpoint, **run_kwargs
        )
        p = trainer.get_params(state)
        return tuple(p[n] for n in names)


def greedy_pretrain(
    rng_key: jax.Array,
    data,
    hidden_sizes: Sequence[int],
    optim,
    *,
    num_epochs: int | Sequence[int] = 10,
    batch_size: int = 100,
    mode: str = "sample",
    tie_weights: bool = True,
    init_scale: float = 0.01,
    seed: int = 0,
    progress_bar: bool | None = None,
    below: Sequence[RBM] = (),
    **samle_kwargs,
) -> list[RBM]:
    """Greedy layer-wise learning of a DBN (Algorithms 1 and 2) with
    :class:`~ebm_ppl.numpyro.SAMLE`; the same arguments and initialisation as
    :func:`ebm_ppl.pyro.greedy_pretrain`, with ``optim`` an optax transformation (or a NumPyro
    optimizer) and an explicit ``rng_key``. Returns the layers as
    :class:`~ebm_ppl.numpyro.RBM` (bottom first)."""

    return greedy_dbn_layers(
        _LayerTrainer(rng_key, optim, samle_kwargs),
        data,
        hidden_sizes,
        num_epochs=num_epochs,
        batch_size=batch_size,
        mode=mode,
        tie_weights=tie_weights,
        init_scale=init_scale,
        seed=seed,
        progress_bar=progress_bar,
        below=below,
    )


def classifier_init(dbn: DBN, num_classes: int, rng_key: jax.Array) -> dict:
    """Parameters of the feed-forward classifier made from ``dbn`` (the JAX twin of
    :class:`ebm_ppl.pyro.DBNClassifier`): ``{"weights": [...], "biases": [...]}``, hidden
    layers from the DBN's recognition weights, output layer ``N(0, 0.01^2)``."""
    if not isinstance(dbn, DBN):
        raise TypeError(f"dbn must be an ebm_ppl.numpyro.DBN, got {type(dbn).__name__}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    out_w = 0.01 * jax.random.normal(rng_key, (dbn.sizes[-1], num_classes))
    return {
        "weights": list(dbn.params.weights) + [out_w],
        "biases": list(dbn.params.up_biases) + [jnp.zeros(num_classes)],
    }


def classifier_logits(params: dict, x: jax.Array) -> jax.Array:
    """``(n, num_classes)`` logits: :func:`~ebm_ppl.models.dbn.feedforward_logits` for
    :func:`classifier_init` parameters, :func:`~ebm_ppl.models.dbm.augmented_logits` (Figure 8)
    for :func:`~ebm_ppl.numpyro.dbm_classifier_init` parameters (then ``x`` is
    ``dbm.augment(v)``), :func:`~ebm_ppl.models.multimodal.multimodal_augmented_logits` for
    :func:`~ebm_ppl.numpyro.multimodal_classifier_init` parameters (then ``x`` is
    ``dbm.augment(image, text)``)."""
    if "text_down" in params:
        return multimodal_augmented_logits(
            params["weights"], params["image_down"], params["text_down"], params["biases"], x
        )
    if "down" in params:
        return augmented_logits(params["weights"], params["down"], params["biases"], x)
    return feedforward_logits(params["weights"], params["biases"], x)


def _input_size(params: dict) -> int:
    if "text_down" in params:
        return multimodal_augmented_input_size(
            params["weights"], params["image_down"], params["text_down"]
        )
    if "down" in params:
        return augmented_input_size(params["weights"], params["down"])
    return int(params["weights"][0].shape[0])


def classification_error(params: dict, x: jax.Array, y: jax.Array) -> float:
    """The fraction of rows of ``x`` whose arg-max logit differs from the label ``y``."""
    fn = jax.jit(classifier_logits)
    pred = jnp.concatenate(
        [fn(params, x[i : i + 10_000]).argmax(-1) for i in range(0, x.shape[0], 10_000)]
    )

    return float(np.mean(np.asarray(pred) != np.asarray(y)))


def fine_tune(
    params: dict,
    x: jax.Array,
    y: jax.Array,
    optim=None,
    *,
    num_epochs: int = 10,
    batch_size: int | None = None,
    seed: int = 0,
    x_test: jax.Array | None = None,
    y_test: jax.Array | None = None,
    progress_bar: bool | None = None,
    cg_line_searches: int = 3,
) -> tuple[dict, list[dict]]:
    """Backpropagation fine-tuning of :func:`classifier_init` (DBN) or
    :func:`~ebm_ppl.numpyro.dbm_classifier_init` (DBM, inputs ``dbm.augment(v)``) parameters
    on integer labels ``y``: the mean cross-entropy of shuffled minibatches (order from
    ``seed``, as in :func:`ebm_ppl.pyro.fine_tune`), minimized by

    * an optax ``optim`` (default, ``None`` or ``"sgd"``: ``optax.sgd(0.1, momentum=0.9)``),
      one update per minibatch of ``batch_size`` (default 100), one ``lax.scan`` per epoch;
    * ``optim="cg"``: Polak–Ribière conjugate gradients (:mod:`ebm_ppl.inference.cg`), as in
      Hinton & Salakhutdinov (2006): ``cg_line_searches`` (default 3) Wolfe–Powell line
      searches on each minibatch of ``batch_size`` (default 1000) in turn, starting afresh
      along steepest descent on each; loss and gradient by a jitted ``jax.value_and_grad``
      of the raveled parameters.

    Returns ``(params, history)`` with the same records as :func:`ebm_ppl.pyro.fine_tune`."""
    # lazy: keeps this module free of optax until that backend is used
    import optax

    use_cg = check_fine_tune_args(optim, "optim", cg_line_searches)
    if batch_size is None:
        batch_size = 1000 if use_cg else 100
    x, y = jnp.asarray(x, dtype=jnp.float32), jnp.asarray(y, dtype=jnp.int32)
    n_in = _input_size(params)
    check_labels(x, y, n_in, "x", "y")
    if x_test is not None:
        check_labels(x_test, y_test, n_in, "x_test", "y_test")

    def loss_fn(p, xb, yb):
        logits = classifier_logits(p, xb)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
        return loss, (logits.argmax(-1) != yb).sum()

    if use_cg:
        run_epoch = _cg_epochs(params, loss_fn, x, y, cg_line_searches)
    else:
        optim = optax.sgd(0.1, momentum=0.9) if optim is None or isinstance(optim, str) else optim
        opt_state = optim.init(params)

        @jax.jit
        def epoch(p, s, idx):
            def body(carry, i):
                p, s = carry
                (loss, wrong), g = jax.value_and_grad(loss_fn, has_aux=True)(p, x[i], y[i])
                updates, s = optim.update(g, s, p)
                return (optax.apply_updates(p, updates), s), (loss * i.shape[0], wrong)

            (p, s), (losses, wrong) = jax.lax.scan(body, (p, s), idx)
            return p, s, losses.sum(), wrong.sum()

        def run_epoch(p, full):
            nonlocal opt_state
            p, opt_state, total, wrong = epoch(p, opt_state, jnp.asarray(full))
            seen = full.size
            return p, {"train_loss": float(total) / seen, "train_error": int(wrong) / seen}

    history = []
    disable = None if progress_bar is None else not progress_bar
    n = x.shape[0]
    for e in tqdm(range(num_epochs), disable=disable, desc="fine-tune", unit="epoch"):
        full = batch_indices(n, batch_size, seed, e)
        params, stats = run_epoch(params, full)
        rec = {"epoch": e + 1, **stats}
        if x_test is not None:
            rec["test_error"] = classification_error(params, jnp.asarray(x_test), y_test)
        history.append(rec)
    return params, history


def _cg_epochs(
    params: dict, loss_fn: Callable, x: jax.Array, y: jax.Array, line_searches: int
) -> Callable:
    """``run_epoch(params, batches) -> (params, stats)``: one epoch of minibatch conjugate
    gradients (:func:`ebm_ppl.inference.cg.minimize_minibatches`) over the rows ``batches`` of
    ``x``, the parameters raveled to one float64 vector, loss and gradient by a jitted
    ``jax.value_and_grad``."""

    flat, unravel = ravel_pytree(params)
    dtype = np.dtype(flat.dtype)

    @jax.jit
    def value_and_grad(v, x, y, idx):  # the data as arguments, not as baked-in constants
        (loss, wrong), g = jax.value_and_grad(
            lambda v: loss_fn(unravel(v), x[idx], y[idx]), has_aux=True
        )(v)
        return loss, g, wrong

    def run_epoch(p: dict, batches: np.ndarray) -> tuple[dict, dict]:
        dev_batches = jnp.asarray(batches)

        def evaluate(v: np.ndarray, b: int) -> tuple[float, np.ndarray, float]:
            loss, g, wrong = value_and_grad(jnp.asarray(v.astype(dtype)), x, y, dev_batches[b])
            return float(loss), np.asarray(g, dtype=np.float64), float(wrong)

        x0 = np.asarray(ravel_pytree(p)[0], dtype=np.float64)
        pos, info = minimize_minibatches(
            evaluate, x0, batches.shape[0], max_line_searches=line_searches
        )
        stats = {
            "train_loss": float(info.values.mean()),
            "train_error": float(info.aux.sum()) / batches.size,
            "cg_evals": info.num_evals,
            "cg_failed": info.num_failed,
        }
        return unravel(jnp.asarray(pos.astype(dtype))), stats

    return run_epoch
