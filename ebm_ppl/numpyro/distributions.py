"""Energy-based distributions for NumPyro (JAX)."""

from __future__ import annotations

import copy
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Distribution, constraints

from ebm_ppl import ops
from ebm_ppl.inference import frontend_classes as fc
from ebm_ppl.models import specs
from ebm_ppl.models.categorical_rbm import CategoricalRBMMethods
from ebm_ppl.models.family import NormalizedLogProb
from ebm_ppl.models.gaussian_rbm import GaussianRBMMethods
from ebm_ppl.models.rbm import RBMMethods
from ebm_ppl.models.replicated_softmax import ReplicatedSoftmaxMethods

__all__ = ["CategoricalRBM", "GaussianRBM", "RBM", "ReplicatedSoftmax"]


def _constraint(kind: str, event_dim: int):
    """NumPyro's constraint for a parameter of a :mod:`~ebm_ppl.models.specs` table, with its
    event dimensions (a weight matrix per batch element is ``independent(real, 2)``)."""
    if kind == "real" and event_dim == 1:
        return constraints.real_vector
    return constraints.independent(getattr(constraints, kind), event_dim)


def compiled_log_prob(cls: type) -> type:
    """Class decorator for a NumPyro energy distribution (a pytree) whose ``log_prob`` runs an
    iterative inference, such as a mean-field fixed point: its ``log_prob_unchecked`` becomes
    one compiled program per shape and settings. Called outside ``jit`` it would otherwise
    dispatch every operation of every sweep on its own; inside ``jit`` nothing changes."""
    impl = cls.log_prob_unchecked
    compiled = jax.jit(impl)

    @functools.wraps(impl)  # the uncompiled method stays reachable as ``__wrapped__``
    def log_prob_unchecked(self, value):
        return compiled(self, value)

    cls.log_prob_unchecked = log_prob_unchecked
    return cls


class _Energy(Distribution):
    """What our NumPyro energy distributions share: native lazy ``expand`` and Gibbs ``sample``
    (an explicit key; ``numpyro.handlers.seed`` supplies it inside models)."""

    has_enumerate_support = False
    #: the support of a value of real vectors (e.g. Gaussian visible units), for the
    #: constructors written once
    _real_support = constraints.real_vector
    #: Gibbs draws are not reparametrizable. NumPyro derives ``has_rsample`` from
    #: ``reparametrized_params == arg_constraints``, which is true for the DBMs' empty dicts
    has_rsample = False
    reparametrized_params: list = []
    #: NumPyro's contract: log_prob of out-of-support values warns (masked or padded data
    #: rely on it) and returns the unchecked value; training data are still refused
    _out_of_support = "warn"

    def _finish_init(self, batch_shape, event_shape, validate_args) -> None:
        Distribution.__init__(self, tuple(batch_shape), tuple(event_shape), validate_args=False)
        if validate_args is not None:
            self._validate_args = validate_args

    def _construct(self, arrays, num_gibbs_steps, validate_args, normalized, options=()) -> None:
        """The constructor body (:func:`ebm_ppl.models.specs.construct`): numpy arrays become
        JAX arrays."""
        specs.construct(
            self, "jax", _as_jax, arrays, num_gibbs_steps, validate_args, normalized, options
        )

    def expand(self, batch_shape):
        return self._expanded(batch_shape)

    def sample(self, key, sample_shape=()) -> jax.Array:
        """Approximate draw: ``num_gibbs_steps`` block-Gibbs sweeps from ``key``."""
        if key is None:
            raise ValueError(
                f"{type(self).__name__}.sample needs a JAX PRNG key (use numpyro.handlers.seed)"
            )
        return _compiled_sample(_static_word_bound(self), key, tuple(sample_shape))


def _static_word_bound(dist: _Energy) -> _Energy:
    """``dist``, or a copy whose ``max_words`` is its longest concrete ``total_count`` (also
    inside a ``dbm`` it wraps), so the compiled draw counts words one by one rather than
    splitting them by binomial draws (exact both ways; the binomial split is many times larger
    to compile). Nothing changes for models without document lengths or with traced ones."""
    inner = getattr(dist, "dbm", None)
    if isinstance(inner, _Energy):
        bounded = _static_word_bound(inner)
        if bounded is inner:
            return dist
        new = copy.copy(dist)
        new.dbm = bounded
        return new
    total = getattr(dist, "total_count", None)
    if getattr(dist, "max_words", 0) is not None or total is None or not ops.is_concrete(total):
        return dist
    new = copy.copy(dist)
    new.max_words = max(1, math.ceil(float(np.max(np.asarray(total)))))
    return new


@jax.jit(static_argnums=2)
def _compiled_sample(dist: _Energy, key: jax.Array, sample_shape: tuple) -> jax.Array:
    """``dist._sample(key, sample_shape)`` compiled once per distribution structure and shape.

    The distribution crosses ``jit`` as a pytree (its parameters are traced leaves, its static
    settings part of the cache key), so repeated draws reuse one executable instead of
    compiling every ``lax.scan`` of the chain again at each call (tens of small compilations).
    Inside a traced program (NumPyro's MCMC, ``Predictive`` under ``jit``) it is inlined.
    """
    return dist._sample(key, sample_shape)


@fc.doc_head(fc.RBM_DOC)
class RBM(fc.RBMConstructor, NormalizedLogProb, RBMMethods, _Energy):
    r"""``sample(key)`` is approximate: it runs
    ``num_gibbs_steps`` block-Gibbs sweeps (one ``lax.scan``) from independent
    ``Bernoulli(sigmoid(b))`` draws.

    The class is a jit-safe pytree (parameters are leaves; ``num_gibbs_steps`` is static).
    ``expand`` is native and lazy: parameters keep their shapes and broadcast when
    evaluated. Concrete inputs are checked (binary, finite, shapes) unless
    ``validate_args=False``; traced inputs cannot be inspected and are not.
    """

    arg_constraints = specs.arg_constraints(specs.RBM_PARAMS, _constraint)
    support = constraints.independent(constraints.boolean, 1)
    pytree_data_fields = ("weights", "visible_bias", "hidden_bias")
    pytree_aux_fields = ("num_gibbs_steps", "_check_inputs", "normalized")


@fc.doc_head(fc.GAUSSIAN_RBM_DOC)
class GaussianRBM(fc.GaussianRBMConstructor, NormalizedLogProb, GaussianRBMMethods, _Energy):
    r"""``sigma`` (common practice, with standardized data) or learn it with
    ``numpyro.param("sigma", ..., constraint=constraints.positive)`` (optimized on the log
    scale).

    ``log_prob(v)`` is the **unnormalized** ``-F(v)`` (hidden units summed out);
    ``log_partition()`` is exact for at most 20 hidden units. ``sample(key)`` runs
    ``num_gibbs_steps`` block-Gibbs sweeps (one ``lax.scan``) from ``N(b, sigma^2)``. A
    jit-safe pytree with a native, lazy ``expand``.
    """

    arg_constraints = specs.arg_constraints(specs.GAUSSIAN_RBM_PARAMS, _constraint)
    support = constraints.real_vector
    pytree_data_fields = ("weights", "visible_bias", "hidden_bias", "sigma")
    pytree_aux_fields = ("num_gibbs_steps", "_check_inputs", "normalized")


class ReplicatedSoftmax(
    fc.ReplicatedSoftmaxConstructor, NormalizedLogProb, ReplicatedSoftmaxMethods, _Energy
):
    r"""Replicated softmax model over word-count vectors (eq. 15-19).

    ``ReplicatedSoftmax(weights, word_bias, hidden_bias, total_count=None)`` with ``weights``
    ``(..., K, F)``, ``word_bias`` ``(..., K)``, ``hidden_bias`` ``(..., F)``; ``total_count``
    is the document length ``M`` (a number or an array broadcasting with the batch shape),
    needed for ``log_partition``, ``sample`` and AIS.

    ``log_prob(v)`` is the **unnormalized** log-probability of the count vector ``v`` with the
    hidden units summed out (including ``log(M!/prod v_k!)``); ``log_partition()`` is the
    exact ``log Z(M)`` for at most 20 hidden units. A jit-safe pytree; inside ``jit`` the
    multinomial draws need static shapes: with ``max_words`` (a bound on the document lengths,
    checked on concrete data) words are drawn one by one, otherwise by binomial splitting of
    the dictionary, which is exact but several times slower.
    """

    arg_constraints = specs.arg_constraints(specs.REPLICATED_SOFTMAX_PARAMS, _constraint)
    support = constraints.independent(constraints.nonnegative_integer, 1)
    pytree_data_fields = ("weights", "word_bias", "hidden_bias", "total_count")
    pytree_aux_fields = ("num_gibbs_steps", "_check_inputs", "max_words", "normalized")


class CategoricalRBM(NormalizedLogProb, CategoricalRBMMethods, _Energy):
    r"""RBM with ``K``-valued categorical (softmax) visible units, e.g. ratings: the JAX twin
    of :class:`ebm_ppl.pyro.CategoricalRBM` (a jit-safe pytree, explicit keys).

    ``weights`` ``(..., D, K, F)``, ``visible_bias`` ``(..., D, K)``, ``hidden_bias``
    ``(..., F)``; a value holds category indices ``(..., D)``, with ``-1`` for a missing entry
    (absent from the energy and left missing by block Gibbs, as in the collaborative-filtering
    RBM of Salakhutdinov, Mnih & Hinton 2007). ``log_prob(v)`` is the unnormalized ``-F(v)``;
    ``log_partition()`` is exact (every entry present) for at most 20 hidden units, and
    ``visible_probs(h)`` is ``p(v_d = k | h)`` ``(..., D, K)``.
    """

    arg_constraints = specs.arg_constraints(specs.CATEGORICAL_RBM_PARAMS, _constraint)
    support = constraints.independent(constraints.integer_greater_than(-2), 1)
    pytree_data_fields = ("weights", "visible_bias", "hidden_bias")
    pytree_aux_fields = ("num_gibbs_steps", "_check_inputs", "normalized")
    #: the constructor of :class:`RBM` (the same three parameters)
    __init__ = RBM.__init__


def _as_jax(x):
    """numpy arrays are welcome in JAX; anything else is left for the type check."""
    if isinstance(x, np.ndarray):
        return jnp.asarray(x)
    return x
