"""The replicated softmax model (Salakhutdinov 2015, section 2.3), for torch and JAX.

A document is a vector of word counts ``v`` over a dictionary of ``K`` words, with length
``M = sum_k v_k``. Parameters: ``weights`` ``W`` ``(..., K, F)``, ``word_bias`` ``b``
``(..., K)``, ``hidden_bias`` ``a`` ``(..., F)``.

* energy (eq. 17): ``E(V, h) = -sum_jk W_kj h_j v_k - sum_k b_k v_k - M sum_j a_j h_j``
  (the hidden biases are scaled by the document length)
* conditionals (eq. 18-19): ``p(h_j = 1 | V) = g(M a_j + sum_k v_k W_kj)``; given ``h`` the
  ``M`` words are independent draws from ``softmax(b + W h)``, so ``v | h`` is
  ``Multinomial(M, softmax(b + W h))``.

Eq. 16 assigns probabilities to the ordered word sequence ``V``. As a distribution over
*count vectors* (what a PPL site observes) the sequence probability is multiplied by the
number of orderings ``M! / prod_k v_k!``; ``log_prob`` includes that term, so that
``exp(log_prob(v) - log_partition())`` sums to one over the count vectors of length ``M``.
``Z(M)`` is the same either way, and per-word perplexity (which scores sequences, as LDA's
does) subtracts the term again: :func:`log_multinomial_coefficient`.

Exact ``log Z(M) = log sum_h exp(M a.h + M logsumexp_k(b_k + (W h)_k))`` for small hidden
layers.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from ebm_ppl import ops
from ebm_ppl.models.base import TractableBase
from ebm_ppl.models.family import (
    MAX_ENUMERATE_UNITS,
    HarmoniumMethods,
    OutOfSupport,
    check_backend,
    check_finite_float,
    check_values,
    shapes_of,
    temperature,
)
from ebm_ppl.models.rbm import check_binary, hidden_to_visible, visible_to_hidden
from ebm_ppl.models.rbm import check_params as check_rbm
from ebm_ppl.ops import Array


def log_multinomial_coefficient(v: Array) -> Array:
    """``log(M! / prod_k v_k!)`` of count vectors ``v`` ``(..., K)``, shape ``(...)``."""
    return ops.lgamma(v.sum(-1) + 1.0) - ops.lgamma(v + 1.0).sum(-1)


def check_counts(x: Array, size: int, name: str = "value", total: Any = None) -> None:
    """Check word-count vectors: last dimension ``size``, and (if concrete) finite,
    non-negative whole numbers (summing to ``total`` where given)."""
    if not check_values(x, size, name):
        return
    a = ops.to_numpy(x)

    if not np.isfinite(a).all():
        raise OutOfSupport(f"{name} contains NaN or infinite values")
    if (a < 0).any() or (a != np.round(a)).any():
        raise OutOfSupport(f"{name} must hold word counts: non-negative whole numbers")
    if total is not None and ops.is_concrete(total):
        m = np.broadcast_to(ops.to_numpy(total), a.shape[:-1]) if np.ndim(total) else total
        if not np.array_equal(a.sum(-1), np.asarray(m, dtype=a.dtype)):
            raise ValueError(
                f"{name}: the word counts must sum to total_count (the document length) "
                "the distribution was built with"
            )


class MultinomialBase(TractableBase):
    """Documents of ``total_count`` words drawn independently from ``softmax(logits)``: the
    tractable end of the AIS path for the replicated softmax (exact ``log Z``, exact draws).

    ``log_prob(v) = logits . v + log(M! / prod v_k!)`` (unnormalized),
    ``log_partition() = M logsumexp(logits)``.
    """

    def __init__(self, logits: Array, total_count: Any, check: bool = True) -> None:
        if not (ops.is_torch(logits) or ops.is_jax(logits)) or logits.ndim != 1:
            raise ValueError("logits must be a 1-D torch.Tensor or JAX array (one per word)")
        if check and ops.is_concrete(logits) and not ops.all_finite(logits):
            raise ValueError("logits contains NaN or infinite values")
        self.logits = logits
        self.total_count = total_count

    _fields = ("logits", "total_count")

    def log_prob(self, value: Array) -> Array:
        return (value * self.logits).sum(-1) + log_multinomial_coefficient(value)

    def log_partition(self) -> Array:
        return self.total_count * ops.logsumexp(self.logits, axis=-1)

    def sample(self, key: Any, shape: tuple) -> Array:
        probs = ops.broadcast_to(ops.softmax(self.logits), tuple(shape) + (self.n_visible,))
        n = ops.zeros(tuple(shape), self.logits) + self.total_count
        return ops.multinomial(key, n, probs)


def multinomial_base(data: Array, total_count: Any, pseudocount: float = 1.0) -> MultinomialBase:
    """A base fitted to documents ``data`` ``(N, K)``: logits = log of the smoothed word
    frequencies ``(sum_n v_nk + pseudocount) / (sum_nk v_nk + K pseudocount)``."""
    check_counts(data, int(data.shape[-1]), "data")
    if not pseudocount > 0:
        raise ValueError(f"pseudocount must be > 0, got {pseudocount}")
    freq = data.sum(0) + pseudocount
    return MultinomialBase(ops.log(freq / freq.sum()), total_count)


class ReplicatedSoftmaxMethods(HarmoniumMethods):
    """The replicated softmax model as distribution methods, shared by both frontends.

    ``total_count`` (the document length ``M``; a number or an array broadcasting with the
    batch shape) is needed for ``log_partition``, ``sample`` and AIS; ``log_prob``,
    conditionals and block-Gibbs transitions take ``M`` from the counts themselves.
    """

    weights: Array
    word_bias: Array
    hidden_bias: Array
    total_count: Any

    @classmethod
    def infer_shapes(cls, weights=(), word_bias=(), hidden_bias=(), total_count=None, **_) -> tuple:
        """``(batch_shape, event_shape)`` for parameters of these shapes, without arrays."""
        shapes = {
            "weights": weights,
            "word_bias": word_bias,
            "hidden_bias": hidden_bias,
            "total_count": total_count,
        }
        dims = {"weights": 2, "word_bias": 1, "hidden_bias": 1, "total_count": 0}
        return shapes_of(shapes, dims, tuple(weights)[-2:-1])

    @property
    def _event_dims(self) -> dict:
        dims = {"weights": 2, "word_bias": 1, "hidden_bias": 1}
        if self.total_count is not None:
            dims["total_count"] = 0
        return dims

    def _init_params(
        self, backend, weights, word_bias, hidden_bias, total_count, steps, validate, max_words=None
    ):

        if max_words is not None and (
            not isinstance(max_words, int) or isinstance(max_words, bool) or max_words < 1
        ):
            raise ValueError(f"max_words must be a positive int or None, got {max_words!r}")
        self.max_words = max_words

        params = {"weights": weights, "word_bias": word_bias, "hidden_bias": hidden_bias}
        on = self._store_params(backend, params, steps, validate)
        try:
            batch_shape, k, _ = check_rbm(weights, word_bias, hidden_bias, on)
        except ValueError as e:  # say word_bias, not visible_bias
            raise ValueError(str(e).replace("visible_bias", "word_bias")) from None
        if total_count is not None:
            if isinstance(total_count, (int, float)) and not isinstance(total_count, bool):
                total_count = ops.zeros((), weights) + float(total_count)
            check_backend(backend, {"total_count": total_count})
            check_finite_float({"total_count": total_count}, on)
            if on and ops.is_concrete(total_count):
                m = ops.to_numpy(total_count)
                if (m < 0).any() or (m != np.round(m)).any():
                    raise ValueError("total_count must hold non-negative whole numbers of words")
            try:
                batch_shape = ops.broadcast_shapes(batch_shape, tuple(total_count.shape))
            except ValueError:
                raise ValueError(
                    f"total_count of shape {tuple(total_count.shape)} does not broadcast with "
                    f"the parameters' batch shape {batch_shape}"
                ) from None
        self.total_count = total_count
        return batch_shape, (k,)

    @property
    def n_words(self) -> int:
        """Dictionary size ``K``."""
        return self.n_visible

    def _check_support(self, value: Array, name: str) -> None:
        check_counts(value, self.n_visible, name)
        if self.max_words is not None and ops.is_concrete(value):
            longest = float(ops.to_numpy(value.sum(-1)).max())
            if longest > self.max_words:
                raise ValueError(
                    f"{name} has a document of {longest:.0f} words, more than max_words="
                    f"{self.max_words} (the bound used to draw words inside jit)"
                )

    def _length(self, like: Array | None) -> Array:
        if like is not None:
            return like.sum(-1)
        if self.total_count is None:
            raise ValueError(
                "this needs the document length: build the distribution with total_count=M"
            )
        return self.total_count

    # hooks of HarmoniumMethods
    def _hidden_input(self, p, v):
        return visible_to_hidden(v, p[0]) + v.sum(-1)[..., None] * p[2]

    def _visible_term(self, p, v):
        return (v * p[1]).sum(-1) + log_multinomial_coefficient(v)

    def _log_visible_sum(self, p, h):
        m = self._length(None)
        logits = h @ ops.transpose(p[0]) + p[1][..., None, :]  # (..., S, K)
        m = ops.asarray_like(m, logits)[..., None]
        return m * ((h @ p[2][..., :, None])[..., 0] + ops.logsumexp(logits, axis=-1))

    def _visible_mean(self, p, h, like=None):
        probs = ops.softmax(hidden_to_visible(h, p[0]) + p[1])
        return self._length(like)[..., None] * probs

    def _sample_visible(self, key, p, h, beta, base, like=None):
        logits = hidden_to_visible(h, p[0]) + p[1]
        if base is not None:
            t = temperature(beta)
            logits = (1.0 - t) * base.logits + t * logits
        m = self._length(like) if like is not None else self._path_length(base)
        n = ops.zeros(tuple(logits.shape[:-1]), logits) + m
        return ops.multinomial(key, n, ops.softmax(logits), self._word_bound())

    def _word_bound(self) -> int | None:
        """The bound on the document lengths that the word sampler uses: ``max_words``, or
        the longest document of the chains in a torch :meth:`transition` (found once there,
        since reading it in every sweep would wait for the device)."""
        bound = getattr(self, "max_words", None)
        return getattr(self, "_chain_words", None) if bound is None else bound

    def _gibbs(self, key, value, num_steps, clamp, cache, field):
        """Block-Gibbs sweeps (see :meth:`HarmoniumMethods._gibbs`); every document keeps its
        length, so in torch the longest one is read once before the sweeps."""
        me = self
        if self._word_bound() is None and ops.is_torch(value):
            me = copy.copy(self)
            me._chain_words = ops.largest_count(ops.stop_gradient(value).sum(-1))
        return HarmoniumMethods._gibbs(me, key, value, num_steps, clamp, cache, field)

    def _path_length(self, base):
        if base is not None and getattr(base, "total_count", None) is not None:
            return base.total_count
        return self._length(None)

    def log_partition(self, max_units: int = MAX_ENUMERATE_UNITS) -> Array:
        """Exact ``log Z(M)`` for ``M = total_count`` (eq. 16), shape ``batch_shape``."""
        self._length(None)
        return super().log_partition(max_units)

    def with_total_count(self, total_count: Any):
        """The same model for documents of ``total_count`` words (a number or an array that
        broadcasts with the batch shape), e.g. to run AIS for one length:
        ``AIS(rsm.with_total_count(m))``."""

        if isinstance(total_count, (int, float)) and not isinstance(total_count, bool):
            m = ops.zeros((), self.weights) + float(total_count)
        else:
            m = ops.asarray_like(total_count, self.weights)
        if ops.is_concrete(m):
            a = ops.to_numpy(m)
            if (a < 0).any() or (a != a.round()).any():
                raise ValueError("total_count must hold non-negative whole numbers of words")
        new = copy.copy(self)
        new.total_count = m
        new._batch_shape = type(self._batch_shape)(
            ops.broadcast_shapes(tuple(self.batch_shape), tuple(m.shape))
        )
        return new

    def perplexity(self, docs: Array, log_z: Any) -> float:
        """Per-word perplexity ``exp(-sum_n log p(V_n) / sum_n M_n)`` of documents ``docs``
        ``(N, K)``, where ``p(V_n)`` is the probability of the word sequence (eq. 16; the
        count-vector ``log_prob`` minus ``log(M!/prod v_k!)``) and ``log_z`` maps each document
        length ``M`` to ``log Z(M)`` (exact or from AIS), e.g.
        ``{m: AIS(rsm.with_total_count(m)).log_z for m in lengths}``.
        """

        self._check_value(docs, "docs")
        lengths = np.asarray(ops.to_numpy(docs.sum(-1)), dtype=np.int64)
        missing = sorted(set(lengths.tolist()) - {int(k) for k in log_z})
        if missing:
            raise ValueError(f"log_z has no entry for the document lengths {missing[:10]}")
        lp = ops.to_numpy(self.log_prob(docs) - log_multinomial_coefficient(docs))
        lz = np.array([float(log_z[int(m)]) for m in lengths])
        return float(np.exp(-(lp.astype(np.float64) - lz).sum() / lengths.sum()))

    def energy(self, value: Array, hidden: Array) -> Array:
        """``E(V, h)`` of eq. 17 (the energy of the word sequence; without the
        ``log(M!/prod v_k!)`` orderings term that :meth:`log_prob` adds)."""

        self._check_value(value)
        check_binary(hidden, self.n_hidden, "hidden")
        p = self.params
        e = -((value * p[1]).sum(-1) + (hidden * self._hidden_input(p, value)).sum(-1))
        shape = ops.broadcast_shapes(
            tuple(value.shape[:-1]), tuple(hidden.shape[:-1]), tuple(self.batch_shape)
        )
        return ops.broadcast_to(e, shape)

    def word_probs(self, hidden: Array) -> Array:
        """``p(word = k | h) = softmax(b + W h)`` (eq. 19), shape ``(..., K)``."""

        check_binary(hidden, self.n_hidden, "hidden")
        return ops.softmax(hidden_to_visible(hidden, self.weights) + self.word_bias)

    def reconstruct(self, value: Array) -> Array:
        """One-step reconstruction (as in the review's Table 1): ``p(word | E[h | v])``."""
        return ops.softmax(
            hidden_to_visible(self.hidden_probs(value), self.weights) + self.word_bias
        )

    def init_chain(self, key: Any, shape: tuple) -> Array:
        """Documents of ``total_count`` words drawn from ``softmax(b)``, shape ``shape``."""
        m = self._length(None)
        probs = ops.broadcast_to(ops.softmax(ops.stop_gradient(self.word_bias)), tuple(shape))
        n = ops.zeros(tuple(shape[:-1]), probs) + ops.stop_gradient(m)
        return ops.multinomial(key, n, probs, getattr(self, "max_words", None))

    def ais_base(self, base: Any) -> MultinomialBase:
        """``None`` -> documents of ``total_count`` uniform words."""
        if base is None:
            zeros = ops.zeros((self.n_visible,), self.weights)
            return MultinomialBase(zeros, self._length(None), check=False)
        return base

    def _check_ais_base(self, base: Any) -> None:
        if self.weights.ndim != 2 or self.word_bias.ndim != 1 or self.hidden_bias.ndim != 1:
            raise ValueError("AIS needs a ReplicatedSoftmax without batch dimensions")
        if self.total_count is None or tuple(self.total_count.shape) != ():
            raise ValueError(
                "AIS estimates Z(M) for one document length: build the model with a scalar "
                "total_count=M"
            )
        if not isinstance(base, MultinomialBase) or base.n_visible != self.n_visible:
            raise ValueError(
                f"base must be a MultinomialBase over {self.n_visible} words "
                f"(e.g. multinomial_base(train_docs, M)), got {type(base).__name__}"
            )
