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

# the submodules first, under private names: several share a name with a function
# (``energy``, ``mean_field``) that the star imports below bind in this namespace
from ebm_ppl.models.dbm import annealing as _annealing
from ebm_ppl.models.dbm import classifier as _classifier
from ebm_ppl.models.dbm import distributions as _distributions
from ebm_ppl.models.dbm import energy as _energy
from ebm_ppl.models.dbm import mean_field as _mean_field
from ebm_ppl.models.dbm import pretraining as _pretraining
from ebm_ppl.models.dbm.annealing import *  # noqa: F403
from ebm_ppl.models.dbm.classifier import *  # noqa: F403
from ebm_ppl.models.dbm.distributions import *  # noqa: F403
from ebm_ppl.models.dbm.energy import *  # noqa: F403
from ebm_ppl.models.dbm.mean_field import *  # noqa: F403
from ebm_ppl.models.dbm.pretraining import *  # noqa: F403
from ebm_ppl.models.variational import (
    bernoulli_entropy,
    check_mean_field_args,
    max_abs_diff,
)

#: the former private name of :func:`~ebm_ppl.models.variational.bernoulli_entropy`
_entropy = bernoulli_entropy

__all__ = [
    "_entropy",
    "bernoulli_entropy",
    "check_mean_field_args",
    "max_abs_diff",
    *_annealing.__all__,
    *_classifier.__all__,
    *_distributions.__all__,
    *_energy.__all__,
    *_mean_field.__all__,
    *_pretraining.__all__,
]

del _annealing, _classifier, _distributions, _energy, _mean_field, _pretraining
