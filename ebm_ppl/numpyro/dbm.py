"""Deep Boltzmann machines for NumPyro (:mod:`ebm_ppl.models.dbm` holds the math)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
from numpyro.distributions import constraints

from ebm_ppl.inference import frontend_classes as fc
from ebm_ppl.inference.samle import data_size, epoch_data
from ebm_ppl.models.dbm import (
    DBMMethods,
    DBMVisibleMethods,
    TiedCopiesMethods,
    check_num_classes,
    classifier_params,
    combine_pretrained,
    doubling,
)
from ebm_ppl.models.dbn import check_greedy_args, greedy_layer_init, greedy_layer_model
from ebm_ppl.models.family import NormalizedLogProb
from ebm_ppl.numpyro import ppl
from ebm_ppl.numpyro.dbn import GreedyLayerData
from ebm_ppl.numpyro.distributions import RBM, _as_jax, _Energy
from ebm_ppl.numpyro.samle import SAMLE

__all__ = ["DBM", "DBMVisible", "dbm_classifier_init", "greedy_pretrain_dbm"]


class DBM(fc.DBMConstructor, NormalizedLogProb, DBMMethods, _Energy):
    r"""Deep Boltzmann machine over the concatenated layers ``[v, h1, ..., hL]`` (eq. 29-34):
    the JAX twin of :class:`ebm_ppl.pyro.DBM`, a jit-safe pytree with a lazy ``expand`` and
    explicit keys.

    ``weights=[W1, ..., WL]`` (``W_l`` of shape ``(n_(l-1), n_l)``) and ``biases=[b0, ..., bL]``
    (``b_l`` ``(n_l,)``) give the event shape ``(sum_l n_l,)``; ``sigma`` (a float or
    ``(n_0,)``, fixed or a positive ``param``) makes ``v`` Gaussian, with the energy
    ``sum_i (v_i - b_0i)^2 / (2 sigma_i^2) - (v / sigma)^T W1 h1 - ...`` (as in eq. 11).
    ``log_prob`` is the unnormalized ``-E``; :meth:`log_partition` is exact for at most 20 odd
    units (else :func:`~ebm_ppl.numpyro.AIS` anneals the odd layers, the even ones summed
    out). ``sample(key)`` runs ``num_gibbs_steps`` block-Gibbs sweeps (odd layers, then even
    ones); :meth:`mean_field` solves eq. 39-41 per data point, :meth:`mean_field_bound` gives
    eq. 38 and :meth:`visible` is the site to train with :class:`~ebm_ppl.numpyro.SAMLE`.
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.boolean, 1)
    _as_array = staticmethod(_as_jax)
    _array_type = None
    pytree_data_fields = ("weights", "biases", "sigma")
    pytree_aux_fields = ("num_gibbs_steps", "_check_inputs", "normalized")


class DBMVisible(DBMVisibleMethods, _Energy):
    r"""A :class:`DBM` seen through its visible units, for stochastic approximation.

    ``log_prob(v)`` is the mean-field lower bound (eq. 38) on the unnormalized
    ``log p~(v)``, at the fixed point of at most ``num_iters`` damped sweeps (stopping once
    no marginal moves by more than ``tol``). Observed in a model,
    ``numpyro.sample("v", dbm.visible(), obs=batch)``, it makes :class:`~ebm_ppl.numpyro.SAMLE`
    run the DBM learning procedure of the review (section 4.2): positive phase at the
    mean-field marginals, negative phase from persistent chains over all layers.
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.boolean, 1)
    pytree_data_fields = ("dbm",)
    pytree_aux_fields = ("num_iters", "damping", "tol")


DBM._visible_cls, DBMVisible._dbm_cls = DBMVisible, DBM


class _TiedCopiesRBM(fc.TiedCopiesConstructor, TiedCopiesMethods, RBM):
    """The bottom pretraining RBM: tiled parameters, copies of the visible layer kept equal
    by the Gibbs transition (:class:`~ebm_ppl.models.dbm.TiedCopiesMethods`)."""

    pytree_aux_fields = RBM.pytree_aux_fields + ("copies",)


def greedy_pretrain_dbm(
    rng_key: jax.Array,
    data,
    hidden_sizes: Sequence[int],
    optim,
    *,
    num_epochs: int | Sequence[int] = 10,
    batch_size: int = 100,
    init_scale: float = 0.01,
    seed: int = 0,
    progress_bar: bool | None = None,
    checkpoint: str | Path | None = None,
    **samle_kwargs,
) -> DBM:
    """Greedy layer-wise pretraining of a DBM with the doubling trick of Salakhutdinov &
    Hinton (2009); the same arguments as :func:`ebm_ppl.pyro.greedy_pretrain_dbm`, with an
    explicit ``rng_key`` and ``optim`` an optax transformation.

    RBM ``l`` is trained by :class:`~ebm_ppl.numpyro.SAMLE` with the side that will be an
    inner DBM layer receiving doubled input (:func:`~ebm_ppl.models.dbm.doubling`: tied
    copies of the other side), on fresh samples of the layer below (with doubled input).
    With ``checkpoint`` (a directory) every layer's trainer is saved after each epoch as
    ``layer{l}.safetensors`` and a later call with the same arguments resumes from there.
    Returns the composed :class:`DBM` (:func:`~ebm_ppl.models.dbm.combine_pretrained`)."""

    sizes, epochs = check_greedy_args(hidden_sizes, num_epochs, "sample", init_scale, seed)
    data_size(data)
    trained: list[tuple] = []
    below: list[RBM] = []
    for layer, n_hidden in enumerate(sizes):
        copies = doubling(len(sizes), layer)
        key_init, key_run = jax.random.split(jax.random.fold_in(rng_key, layer))
        layer_data = data if not below else GreedyLayerData(below, data, "sample", seed + layer)
        x0 = jnp.asarray(epoch_data(layer_data, 0), dtype=jnp.float32)
        noise = jax.random.normal(key_init, (x0.shape[-1], n_hidden))
        init = greedy_layer_init([], n_hidden, x0, False, init_scale, noise)

        names = ("weights", "low_bias", "high_bias")
        model = greedy_layer_model(
            ppl, fc.layer_rbm(RBM, _TiedCopiesRBM, copies), init, names, "x", copies[0]
        )
        trainer = SAMLE(model, optim, **samle_kwargs)
        ckpt, init_state = None, None
        if checkpoint is not None:
            Path(checkpoint).mkdir(parents=True, exist_ok=True)
            ckpt = Path(checkpoint) / f"layer{layer}.safetensors"
            if ckpt.exists():
                init_state = trainer.load(ckpt, key_run, x0[:batch_size])
        state = trainer.run(
            key_run,
            layer_data,
            num_epochs=epochs[layer],
            batch_size=batch_size,
            seed=seed + layer,
            progress_bar=progress_bar,
            init_state=init_state,
            checkpoint=ckpt,
        )
        p = trainer.get_params(state)
        trained.append((p["weights"], p["low_bias"], p["high_bias"]))
        # the next layer's data: h ~ p(h | below) with the doubled input of an inner layer
        below.append(RBM(copies[0] * p["weights"], p["low_bias"], p["high_bias"]))
    params = combine_pretrained(trained)
    return DBM(list(params.weights), list(params.biases))


def dbm_classifier_init(dbm: DBM, num_classes: int, rng_key: jax.Array) -> dict:
    """Parameters of the augmented-input network of Figure 8 made from ``dbm`` (the JAX twin
    of :class:`ebm_ppl.pyro.DBMClassifier`): ``{"weights", "down", "biases"}`` for
    :func:`~ebm_ppl.numpyro.fine_tune`, :func:`~ebm_ppl.numpyro.classifier_logits` and
    :func:`~ebm_ppl.numpyro.classification_error`, whose inputs are ``dbm.augment(v)``."""

    if not isinstance(dbm, DBM):
        raise TypeError(f"dbm must be an ebm_ppl.numpyro.DBM, got {type(dbm).__name__}")
    check_num_classes(num_classes)
    out_w = 0.01 * jax.random.normal(rng_key, (dbm.sizes[-1], num_classes))
    return classifier_params(dbm._frozen(), out_w, num_classes)
