"""Deep belief networks as ordinary NumPyro programs (:mod:`ebm_ppl.models.dbn` holds the math)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from ebm_ppl.models.dbn import (
    GREEDY_MODES,
    DBNParams,
    check_below,
    check_dbn,
    check_greedy_args,
    check_labels,
    down_logits,
    feedforward_logits,
    log_z_of,
    propagate_up,
    tied_init,
    up_logits,
    variational_bound,
)
from ebm_ppl.numpyro.distributions import RBM

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
    sizes = check_dbn(weights, down_biases, up_biases)
    params = DBNParams(tuple(weights), tuple(down_biases), tuple(up_biases))
    top = len(weights) - 1

    def name(layer: int) -> str:
        return "v" if layer == 0 else f"h{layer}"

    def model(data=None, num_data: int | None = None):
        if data is None and num_data is None:
            raise ValueError("give the observed data, or num_data to draw that many samples")
        if data is not None and tuple(data.shape[-1:]) != (sizes[0],):
            raise ValueError(f"data must have shape (n, {sizes[0]}), got {tuple(data.shape)}")
        n = data.shape[0] if data is not None else num_data
        with numpyro.plate("data", n):
            rbm = RBM(
                params.weights[-1],
                params.down_biases[-1],
                params.up_biases[-1],
                num_gibbs_steps=num_gibbs_steps,
            )
            h = numpyro.sample(name(top), rbm, obs=data if top == 0 else None)
            for layer in range(top, 0, -1):
                logits = down_logits(params, layer, h)
                obs = data if layer == 1 else None
                h = numpyro.sample(
                    name(layer - 1), dist.Bernoulli(logits=logits).to_event(1), obs=obs
                )
        return h

    return model


def dbn_guide(
    weights: Sequence,
    down_biases: Sequence,
    up_biases: Sequence,
    factorial: bool = False,
) -> Callable:
    """The bottom-up recognition distribution as a guide for :func:`dbn_model`; the same
    sites and options as :func:`ebm_ppl.pyro.dbn_guide` (``Q`` of eq. 25 by default, the
    factorial ``Q~`` of eq. 26-28 with ``factorial=True``). With the PPL's ELBO,
    ``-loss / n - log Z_top`` is the bound of eq. 24."""
    check_dbn(weights, down_biases, up_biases)
    params = DBNParams(tuple(weights), tuple(down_biases), tuple(up_biases))

    def guide(data=None, num_data: int | None = None):
        if data is None:
            raise ValueError("the recognition guide needs the observed data")
        h = data
        with numpyro.plate("data", data.shape[0]):
            for layer in range(1, len(params.weights)):
                logits = up_logits(params, layer, h)
                s = numpyro.sample(f"h{layer}", dist.Bernoulli(logits=logits).to_event(1))
                h = jax.nn.sigmoid(logits) if factorial else s
        return h

    return guide


class DBN:
    """A deep belief network (section 3); the same API as :class:`ebm_ppl.pyro.DBN`, with an
    explicit ``rng_key`` wherever draws are made."""

    def __init__(
        self,
        weights: Sequence[jax.Array],
        down_biases: Sequence[jax.Array],
        up_biases: Sequence[jax.Array],
    ) -> None:
        as_jax = [tuple(jnp.asarray(t) for t in seq) for seq in (weights, down_biases, up_biases)]
        self.sizes: tuple[int, ...] = check_dbn(*as_jax)
        self.params = DBNParams(*as_jax)

    @classmethod
    def from_rbms(cls, rbms: Sequence[RBM]) -> DBN:
        """The DBN of a greedy stack of :class:`~ebm_ppl.numpyro.RBM` layers, bottom first."""
        rbms = list(rbms)
        if not rbms or not all(isinstance(r, RBM) for r in rbms):
            raise TypeError("rbms must be a non-empty sequence of ebm_ppl.numpyro.RBM layers")
        return cls(
            [r.weights for r in rbms], [r.visible_bias for r in rbms], [r.hidden_bias for r in rbms]
        )

    @property
    def top(self) -> RBM:
        """The top RBM over ``(h^(L-1), h^L)``."""
        p = self.params
        return RBM(p.weights[-1], p.down_biases[-1], p.up_biases[-1])

    def model(self, num_gibbs_steps: int = 100) -> Callable:
        """The generative program, :func:`dbn_model`."""
        return dbn_model(*self.params, num_gibbs_steps=num_gibbs_steps)

    def guide(self, factorial: bool = False) -> Callable:
        """The recognition guide ``Q`` (or ``Q~``), :func:`dbn_guide`."""
        return dbn_guide(*self.params, factorial=factorial)

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
        from ebm_ppl.inference.ais import summarize

        log_z, stderr = log_z_of(log_z_top)
        data = jnp.asarray(data)
        if data.ndim != 2 or data.shape[1] != self.sizes[0]:
            raise ValueError(f"data must have shape (n, {self.sizes[0]}), got {data.shape}")
        fn = jax.jit(lambda k, v: variational_bound(k, self.params, v, 0.0, num_samples))
        values = jnp.concatenate(
            [
                fn(jax.random.fold_in(rng_key, i), data[i : i + batch_size])
                for i in range(0, data.shape[0], batch_size)
            ]
        )
        return summarize(values, log_z, stderr)


class GreedyLayerData:
    """The training data of the next RBM in greedy layer-wise learning, ``epoch -> array``;
    the NumPyro twin of :class:`ebm_ppl.pyro.GreedyLayerData`. Pass it to
    :meth:`ebm_ppl.numpyro.SAMLE.run` as its data. The draws of epoch ``e`` use the key
    ``fold_in(PRNGKey(seed), e)``."""

    def __init__(
        self,
        below: Sequence[RBM],
        data,
        mode: str = "sample",
        seed: int = 0,
        batch_size: int = 10_000,
    ) -> None:
        self.below = check_below(below, RBM, "ebm_ppl.numpyro.RBM")
        if mode not in GREEDY_MODES:
            raise ValueError(f"mode must be one of {GREEDY_MODES}, got {mode!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.data, self.mode, self.seed, self.batch_size = data, mode, seed, batch_size
        weights = tuple(r.weights for r in self.below)
        biases = tuple(r.hidden_bias for r in self.below)
        self._pass = jax.jit(lambda k, v: propagate_up(k, weights, biases, v, mode))

    def __len__(self) -> int:
        return len(self.data)

    def __call__(self, epoch: int) -> jax.Array:
        """The data of epoch ``epoch``, float32 ``(n, n_top)``."""
        n_in = self.below[0].weights.shape[-2]
        x = self.data(epoch) if callable(self.data) else self.data
        x = jnp.asarray(x, dtype=jnp.float32)
        if x.ndim != 2 or x.shape[1] != n_in:
            raise ValueError(f"data must have shape (n, {n_in}), got {x.shape}")
        key = jax.random.fold_in(jax.random.PRNGKey(self.seed), epoch)
        parts = [
            self._pass(jax.random.fold_in(key, i), x[i : i + self.batch_size])
            for i in range(0, x.shape[0], self.batch_size)
        ]
        return jnp.concatenate(parts, axis=0)


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
    from ebm_ppl.inference.samle import data_size, epoch_data
    from ebm_ppl.numpyro.samle import SAMLE

    sizes, epochs = check_greedy_args(hidden_sizes, num_epochs, mode, init_scale, seed)
    data_size(data)
    rbms: list[RBM] = check_below(below, RBM, "RBM") if len(below) else []
    first = len(rbms) + 1
    for layer, n_hidden in enumerate(sizes, start=first):
        key_init, key_run = jax.random.split(jax.random.fold_in(rng_key, layer))
        layer_data = data if not rbms else GreedyLayerData(rbms, data, mode, seed + layer)
        x0 = jnp.asarray(epoch_data(layer_data, 0), dtype=jnp.float32)
        n_visible = x0.shape[-1]
        below = rbms[-1] if rbms else None
        if tie_weights and below is not None and n_hidden == below.weights.shape[0]:
            init = tied_init(below.weights, below.visible_bias, below.hidden_bias)
        else:
            mean = jnp.clip(x0.mean(0), 1e-3, 1 - 1e-3)
            init = (
                init_scale * jax.random.normal(key_init, (n_visible, n_hidden)),
                jnp.log(mean) - jnp.log1p(-mean),
                jnp.zeros(n_hidden),
            )

        def model(batch, init=init):
            w, b, c = (
                numpyro.param(n, t)
                for n, t in zip(("weights", "visible_bias", "hidden_bias"), init)
            )
            with numpyro.plate("data", batch.shape[0]):
                numpyro.sample("h", RBM(w, b, c), obs=batch)

        trainer = SAMLE(model, optim, **samle_kwargs)
        state = trainer.run(
            key_run,
            layer_data,
            num_epochs=epochs[layer - first],
            batch_size=batch_size,
            seed=seed + layer,
            progress_bar=progress_bar,
        )
        p = trainer.get_params(state)
        rbms.append(RBM(p["weights"], p["visible_bias"], p["hidden_bias"]))
    return rbms


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
    """``(n, num_classes)`` logits (:func:`~ebm_ppl.models.dbn.feedforward_logits`)."""
    return feedforward_logits(params["weights"], params["biases"], x)


def classification_error(params: dict, x: jax.Array, y: jax.Array) -> float:
    """The fraction of rows of ``x`` whose arg-max logit differs from the label ``y``."""
    fn = jax.jit(classifier_logits)
    pred = jnp.concatenate(
        [fn(params, x[i : i + 10_000]).argmax(-1) for i in range(0, x.shape[0], 10_000)]
    )
    import numpy as np

    return float(np.mean(np.asarray(pred) != np.asarray(y)))


def fine_tune(
    params: dict,
    x: jax.Array,
    y: jax.Array,
    optim=None,
    *,
    num_epochs: int = 10,
    batch_size: int = 100,
    seed: int = 0,
    x_test: jax.Array | None = None,
    y_test: jax.Array | None = None,
    progress_bar: bool | None = None,
) -> tuple[dict, list[dict]]:
    """Backpropagation fine-tuning of :func:`classifier_init` parameters on integer labels
    ``y``: cross-entropy, an optax ``optim`` (default ``optax.sgd(0.1, momentum=0.9)``), one
    ``lax.scan`` per epoch over shuffled minibatches (order from ``seed``, as in
    :func:`ebm_ppl.pyro.fine_tune`). Returns ``(params, history)`` with the same records."""
    import optax
    from tqdm.auto import tqdm

    from ebm_ppl.inference.samle import batch_indices

    x, y = jnp.asarray(x, dtype=jnp.float32), jnp.asarray(y, dtype=jnp.int32)
    check_labels(x, y, params["weights"][0].shape[0], "x", "y")
    if x_test is not None:
        check_labels(x_test, y_test, params["weights"][0].shape[0], "x_test", "y_test")
    optim = optax.sgd(0.1, momentum=0.9) if optim is None else optim
    opt_state = optim.init(params)

    def loss_fn(p, xb, yb):
        logits = classifier_logits(p, xb)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
        return loss, (logits.argmax(-1) != yb).sum()

    @jax.jit
    def epoch(p, s, idx):
        def body(carry, i):
            p, s = carry
            (loss, wrong), g = jax.value_and_grad(loss_fn, has_aux=True)(p, x[i], y[i])
            updates, s = optim.update(g, s, p)
            return (optax.apply_updates(p, updates), s), (loss * i.shape[0], wrong)

        (p, s), (losses, wrong) = jax.lax.scan(body, (p, s), idx)
        return p, s, losses.sum(), wrong.sum()

    history = []
    disable = None if progress_bar is None else not progress_bar
    n = x.shape[0]
    for e in tqdm(range(num_epochs), disable=disable, desc="fine-tune", unit="epoch"):
        full = batch_indices(n, batch_size, seed, e)
        params, opt_state, total, wrong = epoch(params, opt_state, jnp.asarray(full))
        seen = full.size
        rec = {"epoch": e + 1, "train_loss": float(total) / seen, "train_error": int(wrong) / seen}
        if x_test is not None:
            rec["test_error"] = classification_error(params, jnp.asarray(x_test), y_test)
        history.append(rec)
    return params, history
