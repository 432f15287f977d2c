"""Energy-based distributions for Pyro (torch)."""

from __future__ import annotations

import numpy as np
import torch
from pyro.distributions import TorchDistribution, constraints

from ebm_ppl.inference import frontend_classes as fc
from ebm_ppl.models import specs
from ebm_ppl.models.categorical_rbm import CategoricalRBMMethods
from ebm_ppl.models.family import NormalizedLogProb
from ebm_ppl.models.gaussian_rbm import GaussianRBMMethods
from ebm_ppl.models.rbm import RBMMethods
from ebm_ppl.models.replicated_softmax import ReplicatedSoftmaxMethods

__all__ = ["CategoricalRBM", "GaussianRBM", "RBM", "ReplicatedSoftmax"]


def _constraint(kind: str, event_dim: int):
    """Pyro's constraint for a parameter of a :mod:`~ebm_ppl.models.specs` table: bias vectors
    are ``real_vector``, everything else elementwise (``real``, ``positive``)."""
    if kind == "real" and event_dim == 1:
        return constraints.real_vector
    return getattr(constraints, kind)


class _Energy(TorchDistribution):
    """What our Pyro energy distributions share: native lazy ``expand`` and Gibbs ``sample``."""

    has_rsample = False
    has_enumerate_support = False
    #: the support of a value of real vectors (e.g. Gaussian visible units), for the
    #: constructors written once
    _real_support = constraints.real_vector

    def _finish_init(self, batch_shape, event_shape, validate_args) -> None:
        TorchDistribution.__init__(
            self, torch.Size(batch_shape), torch.Size(event_shape), validate_args=False
        )
        if validate_args is not None:
            self._validate_args = validate_args

    def _construct(self, arrays, num_gibbs_steps, validate_args, normalized, options=()) -> None:
        """The constructor body (:func:`ebm_ppl.models.specs.construct`): tensors as given."""
        specs.construct(
            self, "torch", _as_given, arrays, num_gibbs_steps, validate_args, normalized, options
        )

    def expand(self, batch_shape, _instance=None):
        return self._expanded(batch_shape)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        """Approximate draw: ``num_gibbs_steps`` block-Gibbs sweeps (torch's global RNG)."""
        with torch.no_grad():
            return self._sample(None, tuple(sample_shape))


@fc.doc_head(fc.RBM_DOC)
class RBM(fc.RBMConstructor, NormalizedLogProb, RBMMethods, _Energy):
    r"""``sample()`` is approximate: it runs
    ``num_gibbs_steps`` block-Gibbs sweeps from independent ``Bernoulli(sigmoid(b))`` draws
    using torch's global generator (seeded by ``pyro.set_rng_seed``), so ``Predictive``,
    ``trace`` and ``seed`` work on models that contain the site.

    ``expand`` is native and lazy: parameters keep the shape they were given and are
    broadcast when evaluated, so ``pyro.plate`` over data costs one matrix product.
    Inputs are checked (binary, finite, shapes) unless ``validate_args=False``.
    """

    arg_constraints = specs.arg_constraints(specs.RBM_PARAMS, _constraint)
    support = constraints.independent(constraints.boolean, 1)


@fc.doc_head(fc.GAUSSIAN_RBM_DOC)
class GaussianRBM(fc.GaussianRBMConstructor, NormalizedLogProb, GaussianRBMMethods, _Energy):
    r"""``sigma`` (common practice, with standardized data) or learn it with
    ``pyro.param("sigma", ..., constraint=constraints.positive)``, which Pyro optimizes on the
    log scale.

    ``log_prob(v)`` is the **unnormalized** ``-F(v)`` (hidden units summed out);
    ``log_partition()`` is exact for at most 20 hidden units (the integral over ``v`` is
    Gaussian). ``sample()`` runs ``num_gibbs_steps`` block-Gibbs sweeps from ``N(b, sigma^2)``
    (torch's global RNG). ``expand`` is native and lazy.
    """

    arg_constraints = specs.arg_constraints(specs.GAUSSIAN_RBM_PARAMS, _constraint)
    support = constraints.real_vector


class ReplicatedSoftmax(
    fc.ReplicatedSoftmaxConstructor, NormalizedLogProb, ReplicatedSoftmaxMethods, _Energy
):
    r"""Replicated softmax model over word-count vectors (eq. 15-19).

    ``ReplicatedSoftmax(weights, word_bias, hidden_bias, total_count=None)`` with ``weights``
    ``(..., K, F)``, ``word_bias`` ``(..., K)``, ``hidden_bias`` ``(..., F)``; ``total_count``
    is the document length ``M`` (a number or a tensor broadcasting with the batch shape, e.g.
    ``docs.sum(-1)`` under a plate), needed for ``log_partition``, ``sample`` and AIS.

    ``log_prob(v)`` is the **unnormalized** log-probability of the count vector ``v`` with the
    hidden units summed out: ``b.v + sum_j softplus(M a_j + v.W_:j) + log(M!/prod v_k!)``;
    ``log_partition()`` is the exact ``log Z(M)`` for at most 20 hidden units. Block Gibbs
    samples ``h`` (eq. 18) and then the ``M`` words from ``softmax(b + W h)`` (eq. 19),
    keeping every document's length. ``max_words`` (optional) bounds the document lengths so
    that words can be drawn one by one inside ``jit`` (much faster than the bound-free
    sampler there); data with longer documents is refused.
    """

    arg_constraints = specs.arg_constraints(specs.REPLICATED_SOFTMAX_PARAMS, _constraint)
    support = constraints.independent(constraints.nonnegative_integer, 1)


class CategoricalRBM(NormalizedLogProb, CategoricalRBMMethods, _Energy):
    r"""RBM with ``K``-valued categorical (softmax) visible units, e.g. ratings.

    ``CategoricalRBM(weights, visible_bias, hidden_bias)`` with ``weights`` ``(..., D, K, F)``,
    ``visible_bias`` ``(..., D, K)``, ``hidden_bias`` ``(..., F)``. Values are category
    indices ``(..., D)`` in ``0..K-1``; ``-1`` marks a missing entry, which is simply absent
    from the energy (the collaborative-filtering RBM: block Gibbs leaves missing entries
    missing, so CD-k on sparse ratings works as in Salakhutdinov, Mnih & Hinton 2007).

    ``log_prob(v)`` is the **unnormalized** ``-F(v)``; ``log_partition()`` is the exact
    ``log Z`` of the model with every entry present (at most 20 hidden units).
    ``visible_probs(h)`` gives ``p(v_d = k | h)``, shape ``(..., D, K)``.
    """

    arg_constraints = specs.arg_constraints(specs.CATEGORICAL_RBM_PARAMS, _constraint)
    support = constraints.independent(constraints.integer_interval(-1, 2**31 - 1), 1)
    #: the constructor of :class:`RBM` (the same three parameters)
    __init__ = RBM.__init__


def _as_given(x):
    """Pyro takes tensors as they are; anything else is left for the type check."""
    return x


def _as_tensor(x):
    """numpy arrays become tensors on torch's default device; anything else is left for the
    type check (the DBMs' constructors)."""
    return torch.as_tensor(x) if isinstance(x, np.ndarray) else x  # device: default
