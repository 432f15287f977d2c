"""Deep Boltzmann machines for NumPyro (:mod:`ebm_ppl.models.dbm` holds the math)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jax
from numpyro.distributions import constraints

from ebm_ppl.inference import frontend_classes as fc
from ebm_ppl.inference.greedy import greedy_dbm_layers
from ebm_ppl.models.dbm import (
    DBMMethods,
    DBMVisibleMethods,
    TiedCopiesMethods,
    check_num_classes,
    classifier_params,
)
from ebm_ppl.models.family import NormalizedLogProb
from ebm_ppl.numpyro.dbn import _LayerTrainer
from ebm_ppl.numpyro.distributions import RBM, _as_jax, _Energy, compiled_log_prob

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


@compiled_log_prob
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

    params = greedy_dbm_layers(
        _LayerTrainer(rng_key, optim, samle_kwargs),
        _TiedCopiesRBM,
        data,
        hidden_sizes,
        num_epochs=num_epochs,
        batch_size=batch_size,
        init_scale=init_scale,
        seed=seed,
        progress_bar=progress_bar,
        checkpoint=checkpoint,
    )
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
