"""Deep Boltzmann machine math (Salakhutdinov 2015, section 4), written once for torch and JAX.

A DBM over layers ``x_0 = v, x_1 = h^1, ..., x_L = h^L`` (binary units) has the energy
(eq. 29, generalised to ``L`` layers)

    ``E(x) = -sum_l x_l^T W^(l+1) x_(l+1) - sum_l b_l^T x_l``,

with ``weights[l]`` ``W^(l+1)`` of shape ``(n_l, n_(l+1))`` and ``biases[l]`` ``b_l`` of shape
``(n_l,)``. There are no connections within a layer, so given its two neighbours a layer is
factorial (eq. 31-34): ``p(x_l = 1 | x_(l-1), x_(l+1)) = g(b_l + x_(l-1) W^(l) + W^(l+1) x_(l+1))``,
and the odd layers are independent given the even ones and vice versa: block Gibbs alternates
the two groups.

Exact ``log Z`` (small models): enumerate the states of the odd layers and sum every even layer
out analytically (each is factorial given the odd ones):
``log Z = logsumexp_odd [sum_odd b_l^T x_l + sum_even sum_j softplus(logits_l(odd)_j)]``.

Mean field (eq. 36-41): a factorial ``Q(h | v) = prod_l prod_j Bernoulli(mu_lj)`` with the
fixed point ``mu_l = g(b_l + mu_(l-1) W^(l) + W^(l+1) mu_(l+1))`` (``mu_0 = v``); because the
energy is multilinear, ``E_Q[-E] = -E(v, mu)`` and the bound of eq. 38 is
``log p(v) >= -E(v, mu) + H(mu) - log Z``.

Layers are passed as lists ``[x_0, ..., x_L]`` of arrays with shapes ``(..., n_l)``.

The package splits that by concern, each submodule importing only those above it in this list:

- :mod:`~ebm_ppl.models.dbm.energy`: parameters, energy, conditionals, exact ``log Z`` and
  exact draws, block Gibbs;
- :mod:`~ebm_ppl.models.dbm.mean_field`: the mean-field fixed point, its bound and the SA-MLE
  surrogate with a mean-field positive phase;
- :mod:`~ebm_ppl.models.dbm.pretraining`: greedy pretraining with the doubling trick;
- :mod:`~ebm_ppl.models.dbm.annealing`: AIS paths between two DBMs;
- :mod:`~ebm_ppl.models.dbm.classifier`: the augmented-input classifier of Figure 8;
- :mod:`~ebm_ppl.models.dbm.distributions`: what both frontends' distributions share.

Every name is re-exported here, so ``from ebm_ppl.models.dbm import X`` works as before.
"""

from __future__ import annotations

from ebm_ppl.models.dbm.annealing import (
    CARRY_CHOICES,
    DBMBase,
    DBMPath,
    _draw,
    _log_f_from_terms,
    _logits_or_bias,
    _unary,
    check_same_sizes,
    path_log_f,
    path_step,
    path_sweep,
    path_terms,
    split_carried,
    split_odd,
)
from ebm_ppl.models.dbm.classifier import (
    augmented_input_size,
    augmented_logits,
    check_num_classes,
    classifier_params,
)
from ebm_ppl.models.dbm.distributions import (
    DBMMethods,
    DBMVisibleMethods,
    _Unbatched,
    check_layer_lists,
)
from ebm_ppl.models.dbm.energy import (
    Array,
    DBMParams,
    _gaussian_log_norm,
    _odd_free_energy,
    _odd_states,
    _sample_layer,
    _sample_visible_field,
    _split_odd,
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
    odd_even_sweep,
    split_layers,
)
from ebm_ppl.models.dbm.mean_field import (
    _mean_field_sweep,
    bottom_up,
    contrast_statistics,
    data_input,
    mean_field,
    mean_field_bound,
    mean_field_contrast,
    mean_field_fixed_point,
)
from ebm_ppl.models.dbm.pretraining import (
    TiedCopiesMethods,
    combine_pretrained,
    doubling,
    tied_copies_chain,
    tile_rbm,
)
from ebm_ppl.models.variational import (
    bernoulli_entropy,
    check_mean_field_args,
    max_abs_diff,
)

#: the former private name of :func:`~ebm_ppl.models.variational.bernoulli_entropy`
_entropy = bernoulli_entropy

__all__ = [
    "Array",
    "CARRY_CHOICES",
    "DBMBase",
    "DBMMethods",
    "DBMParams",
    "DBMPath",
    "DBMVisibleMethods",
    "TiedCopiesMethods",
    "_Unbatched",
    "_draw",
    "_entropy",
    "_gaussian_log_norm",
    "_log_f_from_terms",
    "_logits_or_bias",
    "_mean_field_sweep",
    "_odd_free_energy",
    "_odd_states",
    "_sample_layer",
    "_sample_visible_field",
    "_split_odd",
    "_unary",
    "_vin",
    "augmented_input_size",
    "augmented_logits",
    "bernoulli_entropy",
    "bottom_up",
    "check_dbm",
    "check_layer_index",
    "check_layer_lists",
    "check_mean_field_args",
    "check_num_classes",
    "check_same_sizes",
    "check_visible",
    "classifier_params",
    "combine_pretrained",
    "contrast_statistics",
    "data_input",
    "doubling",
    "energy",
    "exact_sample",
    "frozen",
    "gibbs_sweep",
    "layer_logits",
    "log_partition",
    "max_abs_diff",
    "mean_field",
    "mean_field_bound",
    "mean_field_contrast",
    "mean_field_fixed_point",
    "odd_even_sweep",
    "path_log_f",
    "path_step",
    "path_sweep",
    "path_terms",
    "split_carried",
    "split_layers",
    "split_odd",
    "tied_copies_chain",
    "tile_rbm",
]
