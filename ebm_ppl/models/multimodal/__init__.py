"""Multimodal deep Boltzmann machine math (Salakhutdinov 2015, section 5), for torch and JAX.

An image pathway (Gaussian or binary visible units ``v^m`` and binary layers
``h^(1m), ..., h^(dm)``) and a text pathway (a replicated-softmax visible layer of word counts
``v^t`` with ``M = sum_k v^t_k`` words and binary layers ``h^(1t), ..., h^(dt)``) are joined by
a shared binary layer ``h^(J)`` (Figure 12c). Read from the image end to the text end the
model is a chain of layers

    ``x_0 = v^m, x_1 = h^(1m), ..., x_J = h^(J), ..., x_(L-1) = h^(1t), x_L = v^t``

(``J = dm + 1``, ``L = dm + dt + 2``) with weights ``W_l`` ``(n_l, n_(l+1))`` between
neighbours, and the energy of eq. 42 (with biases):

    ``E(x) = sum_i (v^m_i - b_0i)^2 / (2 sigma_i^2) - (v^m / sigma)^T W_0 x_1
             - sum_(0<l<L-1) x_l^T W_l x_(l+1) - x_(L-1)^T W_(L-1) v^t
             - sum_(0<l<L, l != L-1) b_l^T x_l - M b_(L-1)^T h^(1t) - b_L^T v^t``.

The first text hidden layer's bias is scaled by the document length ``M``, exactly as in the
replicated softmax model (eq. 17), so that a pretrained :class:`ReplicatedSoftmax` slots in
unchanged; binary image units (``sigma=None``) have the term ``-b_0^T v^m`` instead.
``log_prob`` of a full state adds ``log(M! / prod_k v^t_k!)``, making it a density over
count vectors; ``Z(M)`` depends on ``M`` (the model is a family of DBMs that share
parameters, one per document length).

Conditionals (eq. 31-34 on the chain): a hidden layer is
``Bernoulli(g(s_l b_l + x~_(l-1) W_(l-1) + W_l x_(l+1)))`` (``x~_0 = v^m / sigma``,
``s_(L-1) = M``, else ``1``); ``v^m | h^(1m)`` is ``N(b_0 + sigma W_0 h^(1m), sigma^2)``;
``v^t | h^(1t)`` is ``Multinomial(M, softmax(b_L + h^(1t) W_(L-1)))`` (eq. 19). The layers of
odd and even index are independent given each other: block Gibbs alternates the two groups.
Exact ``log Z(M)`` (small models, ``L`` even so both visible ends are even layers):
enumerate the odd layers, integrate ``v^m`` (Gaussian), sum the even hidden layers out with
softplus and the words with ``M logsumexp``.

Mean field (eq. 39-41) with either modality missing: the observed modalities are held fixed;
a hidden layer's marginal is ``g(logits)``, a missing image's Gaussian factor has the mean
``b_0 + sigma W_0 mu_1``, and missing text the expected counts ``M softmax(logits)``.

The package holds that by concern, and each submodule imports only the ones named before it:
:mod:`~ebm_ppl.models.multimodal.energy` (the parameters in chain form, the energy, the
conditionals, exact ``log Z(M)`` and block Gibbs), :mod:`~ebm_ppl.models.multimodal.pathways`
(the parameters in pathway form and their composition from greedily pretrained RBMs),
:mod:`~ebm_ppl.models.multimodal.mean_field` (mean field with missing modalities) and
:mod:`~ebm_ppl.models.multimodal.classifier` (the fine-tuning network of Figure 8 carried
over to the two pathways) and :mod:`~ebm_ppl.models.multimodal.distributions` (what both
frontends' distributions share).
This module re-exports all their names: ``from ebm_ppl.models.multimodal import X`` works as
it did when the package was one module.
"""

from __future__ import annotations

# the submodules first, under private names: several share a name with a function
# (``energy``, ``mean_field``) that the star imports below bind in this namespace
from ebm_ppl.models.multimodal import classifier as _classifier
from ebm_ppl.models.multimodal import distributions as _distributions
from ebm_ppl.models.multimodal import energy as _energy
from ebm_ppl.models.multimodal import mean_field as _mean_field
from ebm_ppl.models.multimodal import pathways as _pathways
from ebm_ppl.models.multimodal.classifier import *  # noqa: F403
from ebm_ppl.models.multimodal.distributions import *  # noqa: F403
from ebm_ppl.models.multimodal.energy import *  # noqa: F403
from ebm_ppl.models.multimodal.mean_field import *  # noqa: F403
from ebm_ppl.models.multimodal.pathways import *  # noqa: F403
from ebm_ppl.models.variational import bernoulli_entropy as _entropy
from ebm_ppl.models.variational import check_mean_field_args, max_abs_diff

__all__ = [
    "_entropy",
    "check_mean_field_args",
    "max_abs_diff",
    *_classifier.__all__,
    *_distributions.__all__,
    *_energy.__all__,
    *_mean_field.__all__,
    *_pathways.__all__,
]

del _classifier, _distributions, _energy, _mean_field, _pathways
