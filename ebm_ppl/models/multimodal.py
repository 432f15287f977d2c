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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from ebm_ppl import ops
from ebm_ppl.models.dbm import _entropy, check_mean_field_args, max_abs_diff
from ebm_ppl.models.family import check_values
from ebm_ppl.models.rbm import MAX_ENUMERATE_UNITS, hidden_to_visible, visible_to_hidden
from ebm_ppl.models.replicated_softmax import log_multinomial_coefficient

Array = Any


class MultimodalParams(NamedTuple):
    """The chain form: ``weights[l]`` ``(n_l, n_(l+1))``, ``biases[l]`` ``(n_l,)`` for layers
    ``x_0 = v^m, ..., x_L = v^t``; ``sigma`` ``None`` (binary image units) or the image
    units' standard deviations ``(n_0,)``; ``joint`` the index ``J`` of the shared layer."""

    weights: tuple
    biases: tuple
    sigma: Any
    joint: int


def frozen(params: MultimodalParams) -> MultimodalParams:
    """The parameters without gradient."""
    sg = ops.stop_gradient
    sigma = None if params.sigma is None else sg(params.sigma)
    return MultimodalParams(
        tuple(sg(w) for w in params.weights),
        tuple(sg(b) for b in params.biases),
        sigma,
        params.joint,
    )


def chain_from_pathways(
    image_weights: Sequence[Array],
    image_biases: Sequence[Array],
    text_weights: Sequence[Array],
    text_biases: Sequence[Array],
    joint_weights: Sequence[Array],
    joint_bias: Array,
) -> tuple[tuple, tuple, int]:
    """``(weights, biases, J)`` of the chain from the pathway form.

    ``image_weights = [W^(1m) (D, F1m), W^(2m) (F1m, F2m), ...]`` and
    ``image_biases = [b_v (D,), b_1m, b_2m, ...]``; ``text_weights = [W^(1t) (K, F1t), ...]``
    (word x hidden, as in :class:`ReplicatedSoftmax`) and ``text_biases = [b_w (K,), b_1t, ...]``;
    ``joint_weights = [W^(Jm) (F_top_m, F_J), W^(Jt) (F_top_t, F_J)]`` and ``joint_bias``
    ``(F_J,)``. ``ValueError`` (naming the argument) for wrong counts or shapes."""
    iw, ib, tw, tb = (list(x) for x in (image_weights, image_biases, text_weights, text_biases))
    jw = list(joint_weights)
    for name, ws, bs in (("image", iw, ib), ("text", tw, tb)):
        if len(ws) < 1:
            raise ValueError(f"{name}_weights must hold at least one weight matrix")
        if len(bs) != len(ws) + 1:
            raise ValueError(
                f"{name}_biases must have one entry per layer of the {name} pathway "
                f"({len(ws) + 1} for {len(ws)} weight matrices), got {len(bs)}"
            )
    if len(jw) != 2:
        raise ValueError(
            f"joint_weights must be [W_image_to_joint, W_text_to_joint], got {len(jw)} matrices"
        )
    if (len(iw) + len(tw)) % 2:
        raise ValueError(
            "the two pathways must have depths of the same parity (e.g. 2 and 2) so that both "
            f"visible layers sit on the same side of the bipartite chain; got {len(iw)} and "
            f"{len(tw)}"
        )
    arrays = {f"image_weights[{i}]": w for i, w in enumerate(iw)}
    arrays.update({f"image_biases[{i}]": b for i, b in enumerate(ib)})
    arrays.update({f"text_weights[{i}]": w for i, w in enumerate(tw)})
    arrays.update({f"text_biases[{i}]": b for i, b in enumerate(tb)})
    arrays.update({"joint_weights[0]": jw[0], "joint_weights[1]": jw[1], "joint_bias": joint_bias})
    for name, x in arrays.items():
        if not (ops.is_torch(x) or ops.is_jax(x)):
            raise TypeError(f"{name} must be a torch.Tensor or a JAX array, got {type(x).__name__}")
    if len({ops.backend_name(x) for x in arrays.values()}) > 1:
        raise TypeError("the parameters must all be torch tensors or all JAX arrays")
    for name, ws, bs in (("image", iw, ib), ("text", tw, tb)):
        for i, w in enumerate(ws):
            want = int(bs[i].shape[0]) if bs[i].ndim == 1 else -1
            if w.ndim != 2 or int(w.shape[0]) != want:
                raise ValueError(
                    f"{name}_weights[{i}] must have shape ({want}, n), got {tuple(w.shape)}"
                )
            if bs[i + 1].ndim != 1 or int(bs[i + 1].shape[0]) != int(w.shape[1]):
                raise ValueError(
                    f"{name}_biases[{i + 1}] must have shape ({int(w.shape[1])},), got "
                    f"{tuple(bs[i + 1].shape)}"
                )
    if joint_bias.ndim != 1:
        raise ValueError(f"joint_bias must be a vector, got shape {tuple(joint_bias.shape)}")
    nj = int(joint_bias.shape[0])
    for k, (name, bs) in enumerate((("image", ib), ("text", tb))):
        want = (int(bs[-1].shape[0]), nj)
        if tuple(jw[k].shape) != want:
            raise ValueError(
                f"joint_weights[{k}] must have shape {want} (top {name} layer x joint layer), "
                f"got {tuple(jw[k].shape)}"
            )
    weights = tuple(iw) + (jw[0], ops.transpose(jw[1])) + tuple(ops.transpose(w) for w in tw[::-1])
    biases = tuple(ib) + (joint_bias,) + tuple(tb[::-1])
    return weights, biases, len(iw) + 1


def pathways_from_chain(params: MultimodalParams) -> dict:
    """The inverse of :func:`chain_from_pathways`: a dict with keys ``image_weights``,
    ``image_biases``, ``text_weights``, ``text_biases``, ``joint_weights``, ``joint_bias``."""
    j, w, b = params.joint, params.weights, params.biases
    return {
        "image_weights": list(w[: j - 1]),
        "image_biases": list(b[:j]),
        "joint_weights": [w[j - 1], ops.transpose(w[j])],
        "joint_bias": b[j],
        "text_weights": [ops.transpose(x) for x in w[j + 1 :][::-1]],
        "text_biases": list(b[j + 1 :][::-1]),
    }


def sizes(params: MultimodalParams) -> tuple:
    return tuple(int(b.shape[0]) for b in params.biases)


def _input(params: MultimodalParams, layers: Sequence[Array], i: int) -> Array:
    """Layer ``i`` as seen by its weights: ``v^m / sigma`` for Gaussian image units."""
    x = layers[i]
    return x / params.sigma if i == 0 and params.sigma is not None else x


def doc_length(layers: Sequence[Array]) -> Array:
    """``M``: the number of words of the text layer, shape ``(...)``."""
    return layers[-1].sum(-1)


def layer_logits(
    params: MultimodalParams, layers: Sequence[Array], i: int, total_count: Any = None
) -> Array:
    """Logits of layer ``i`` given its neighbours, ``(..., n_i)``: Bernoulli logits for binary
    layers, the conditional mean ``b_0 + sigma W_0 h^(1m)`` for Gaussian image units, the
    softmax logits ``b_L + h^(1t) W_(L-1)`` of each word for the text layer. The
    ``M``-scaled bias of layer ``L-1`` takes ``M`` from ``total_count`` or else from the text
    layer."""
    top = len(params.weights)
    out = params.biases[i]
    if i == top - 1:
        m = doc_length(layers) if total_count is None else total_count
        out = ops.asarray_like(m, out)[..., None] * out
    if i > 0:
        out = out + visible_to_hidden(_input(params, layers, i - 1), params.weights[i - 1])
    if i < top:
        up = hidden_to_visible(layers[i + 1], params.weights[i])
        out = out + (params.sigma * up if i == 0 and params.sigma is not None else up)
    return out


def energy(params: MultimodalParams, layers: Sequence[Array]) -> Array:
    """``E(x)`` of eq. 42 (with biases; see the module docstring), shape ``(...)``."""
    top = len(params.weights)
    total = 0.0
    for i, w in enumerate(params.weights):
        total = total - (visible_to_hidden(_input(params, layers, i), w) * layers[i + 1]).sum(-1)
    for i, b in enumerate(params.biases):
        if i == 0 and params.sigma is not None:
            total = total + (((layers[0] - b) / params.sigma) ** 2).sum(-1) / 2
        elif i == top - 1:
            total = total - doc_length(layers) * (layers[i] * b).sum(-1)
        else:
            total = total - (layers[i] * b).sum(-1)
    return total


def log_prob(params: MultimodalParams, layers: Sequence[Array]) -> Array:
    """Unnormalized ``log p~(x) = -E(x) + log(M! / prod_k v^t_k!)`` (a density over count
    vectors, as :class:`ReplicatedSoftmax`'s), shape ``(...)``."""
    return -energy(params, layers) + log_multinomial_coefficient(layers[-1])


def _gaussian_log_norm(params: MultimodalParams) -> Array:
    sigma = ops.broadcast_to(params.sigma, tuple(params.biases[0].shape))
    return (ops.log(sigma) + 0.5 * math.log(2 * math.pi)).sum()


def _odd_free_energy(params: MultimodalParams, layers: Sequence[Array], total_count: Any):
    """``-log`` of ``exp(-E)`` summed over every even layer (the visible ends included), as a
    function of the odd layers, for documents of ``total_count`` words, shape ``(...)``."""
    top = len(params.weights)
    total = 0.0
    for i, b in enumerate(params.biases):
        if i % 2:
            scale = total_count if i == top - 1 else 1.0
            total = total - scale * (layers[i] * b).sum(-1)
        elif i == 0 and params.sigma is not None:  # the Gaussian integral over v^m
            u = hidden_to_visible(layers[1], params.weights[0])
            total = total - (
                (b * u / params.sigma + u * u / 2).sum(-1) + _gaussian_log_norm(params)
            )
        elif i == top:  # M words, each summed over the dictionary
            logits = b + visible_to_hidden(layers[top - 1], params.weights[top - 1])
            total = total - total_count * ops.logsumexp(logits, axis=-1)
        else:
            total = total - ops.softplus(layer_logits(params, layers, i)).sum(-1)
    return total


def log_partition(params: MultimodalParams, total_count: Any) -> Array:
    """Exact ``log Z(M)`` for documents of ``M = total_count`` words (a number), by
    enumerating the odd layers (``ValueError`` pointing to a smaller model above
    :data:`~ebm_ppl.models.rbm.MAX_ENUMERATE_UNITS` odd units)."""
    n = sizes(params)
    n_odd = sum(n[1::2])
    if n_odd > MAX_ENUMERATE_UNITS:
        raise ValueError(
            f"exact log Z enumerates the odd layers: {n_odd} units (2**{n_odd} states) is more "
            f"than {MAX_ENUMERATE_UNITS}"
        )
    check_total_count(total_count, scalar=True)
    states = ops.binary_states(n_odd, params.biases[0])
    layers: list = [None] * len(n)
    start = 0
    for i in range(1, len(n), 2):
        layers[i] = states[:, start : start + n[i]]
        start += n[i]
    return ops.logsumexp(-_odd_free_energy(params, layers, float(total_count)), axis=0)


def check_total_count(total_count: Any, scalar: bool = False, name: str = "total_count") -> None:
    """``ValueError`` unless ``total_count`` holds non-negative whole numbers (one number when
    ``scalar``)."""
    import numpy as np

    if isinstance(total_count, bool) or total_count is None:
        raise ValueError(
            f"{name} must be a non-negative whole number of words, got {total_count!r}"
        )
    if ops.is_torch(total_count) or ops.is_jax(total_count):
        if not ops.is_concrete(total_count):
            return
        a = np.asarray(ops.to_numpy(total_count))
    else:
        try:
            a = np.asarray(total_count, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number of words, got {total_count!r}") from None
    if scalar and a.ndim != 0:
        raise ValueError(f"{name} must be one number (Z depends on M), got shape {a.shape}")
    if not np.isfinite(a).all() or (a < 0).any() or (a != np.round(a)).any():
        raise ValueError(f"{name} must hold non-negative whole numbers of words")


# --------------------------------------------------------------------------------------
# block Gibbs
# --------------------------------------------------------------------------------------


def _sample_even(key: Any, params: MultimodalParams, layers: list, i: int, max_words) -> Array:
    logits = layer_logits(params, layers, i)
    if i == 0 and params.sigma is not None:
        return logits + params.sigma * ops.normal(key, tuple(logits.shape), logits)
    if i == len(params.weights):
        return ops.multinomial(key, doc_length(layers), ops.softmax(logits), max_words)
    return ops.bernoulli(key, ops.sigmoid(logits))


def gibbs_sweep(
    key: Any,
    params: MultimodalParams,
    layers: Sequence[Array],
    sample_image: bool = True,
    sample_text: bool = True,
    max_words: int | None = None,
) -> list:
    """One block-Gibbs sweep: the odd layers given the even ones, then the even layers given
    the new odd ones; the image (text) layer is redrawn only if ``sample_image``
    (``sample_text``). The text keeps its length ``M``. Returns the new list of layers."""
    layers = list(layers)
    top = len(params.weights)
    k_odd, k_even = ops.split(key, 2)
    keys = ops.split(k_odd, len(layers))
    for i in range(1, len(layers), 2):
        layers[i] = ops.bernoulli(keys[i], ops.sigmoid(layer_logits(params, layers, i)))
    keys = ops.split(k_even, len(layers))
    for i in range(0, len(layers), 2):
        if (i == 0 and not sample_image) or (i == top and not sample_text):
            continue
        layers[i] = _sample_even(keys[i], params, layers, i, max_words)
    return layers


# --------------------------------------------------------------------------------------
# mean field with missing modalities
# --------------------------------------------------------------------------------------


def _visible_mean(params: MultimodalParams, layers: Sequence[Array], i: int) -> Array:
    logits = layer_logits(params, layers, i)
    if i == 0:
        return logits if params.sigma is not None else ops.sigmoid(logits)
    return doc_length(layers)[..., None] * ops.softmax(logits)


def mean_field_init(
    params: MultimodalParams, image: Array | None, text: Array | None, total_count: Any = None
) -> list:
    """The start of mean field: observed ends as given, a missing image at its bias mean, a
    missing text at ``M softmax(b_L)``; then one pass up each observed pathway in which every
    layer below the joint one gets twice its input from below (standing in for the input
    from above, as :func:`ebm_ppl.models.dbm.bottom_up`), the joint layer from both sides,
    and the hidden layers of a missing pathway top-down from the joint layer."""
    top, j = len(params.weights), params.joint
    like = image if image is not None else text
    lead = tuple(like.shape[:-1])
    b = params.biases
    mus: list = [None] * (top + 1)
    if image is None:
        first = ops.broadcast_to(b[0], lead + (int(b[0].shape[0]),))
        mus[0] = first if params.sigma is not None else ops.sigmoid(first)
    else:
        mus[0] = image
    if text is None:
        m = ops.asarray_like(total_count, b[-1]) + ops.zeros(lead, b[-1])
        mus[top] = m[..., None] * ops.softmax(
            ops.broadcast_to(b[-1], lead + (int(b[-1].shape[0]),))
        )
    else:
        mus[top] = text
    m = doc_length(mus)

    def up(i, below, w):  # doubled input from one side
        scale = m[..., None] if i == top - 1 else 1.0
        return ops.sigmoid(2.0 * visible_to_hidden(below, w) + scale * b[i])

    if image is not None:
        for i in range(1, j):
            mus[i] = up(i, _input(params, mus, i - 1), params.weights[i - 1])
    if text is not None:
        for i in range(top - 1, j, -1):
            mus[i] = up(i, mus[i + 1], ops.transpose(params.weights[i]))
    inp = b[j] + 0.0 * ops.zeros(lead + (int(b[j].shape[0]),), b[j])
    if image is not None:
        inp = inp + visible_to_hidden(mus[j - 1], params.weights[j - 1])
    if text is not None:
        inp = inp + hidden_to_visible(mus[j + 1], params.weights[j])
    mus[j] = ops.sigmoid(inp)
    if image is None:
        for i in range(j - 1, 0, -1):
            mus[i] = ops.sigmoid(b[i] + hidden_to_visible(mus[i + 1], params.weights[i]))
    if text is None:
        for i in range(j + 1, top):
            scale = m[..., None] if i == top - 1 else 1.0
            mus[i] = ops.sigmoid(
                scale * b[i] + visible_to_hidden(mus[i - 1], params.weights[i - 1])
            )
    return mus


def mean_field(
    params: MultimodalParams,
    image: Array | None,
    text: Array | None,
    total_count: Any = None,
    num_iters: int = 30,
    damping: float = 0.0,
    tol: float | None = 1e-5,
) -> list:
    """Mean-field marginals ``[mu_0, ..., mu_L]`` (eq. 39-41) given the observed modalities
    (``image`` ``(..., D)`` and/or ``text`` ``(..., K)``; ``None`` marks a missing one, whose
    document length ``total_count`` must then be given for missing text). Observed layers
    stay fixed; at most ``num_iters`` in-order sweeps over the others, stopping once no
    marginal moves by more than ``tol`` (one ``lax.while_loop`` in JAX)."""
    check_mean_field_args(num_iters, damping, tol)
    if image is None and text is None:
        raise ValueError("mean field needs at least one observed modality (image or text)")
    if text is None:
        check_total_count(total_count)
    top = len(params.weights)
    free = [i for i in range(top + 1) if 0 < i < top or (i == 0 and image is None)]
    if text is None:
        free.append(top)

    def sweep(mus):
        new = list(mus)
        for i in free:
            if i in (0, top):
                new[i] = _visible_mean(params, new, i)
                continue
            mu = ops.sigmoid(layer_logits(params, new, i))
            new[i] = mu if damping == 0.0 else damping * new[i] + (1.0 - damping) * mu
        return new

    init = mean_field_init(params, image, text, total_count)
    like = init[1]
    return list(ops.fixed_point(sweep, init, num_iters, tol, max_abs_diff, like))


def mean_field_bound(params: MultimodalParams, mus: Sequence[Array], log_z: Any = 0.0) -> Array:
    """Eq. 38 for both modalities observed: ``log p(v^m, v^t) >= -E(v, mu) + sum_l H(mu_l)
    + log(M!/prod v^t_k!) - log Z(M)``, shape ``(...)``."""
    out = log_prob(params, mus)
    for mu in mus[1:-1]:
        out = out + _entropy(mu)
    return out - log_z


def mean_field_contrast(
    params: MultimodalParams, mus: Sequence[Array], samples: Sequence[Array], w_data, w_model
) -> Array:
    """The SA-MLE surrogate ``w_data sum_n E(mu_n) - w_model sum_k E(x_k)`` (constants
    ``mus`` and ``samples``; ``E`` is linear in every parameter, so its gradient is the
    data-dependent statistics under ``Q`` minus the model's under the persistent chains)."""
    mus = [ops.stop_gradient(m) for m in mus]
    samples = [ops.stop_gradient(x) for x in samples]
    return w_data * energy(params, mus).sum() - w_model * energy(params, samples).sum()


# --------------------------------------------------------------------------------------
# the distributions (both frontends subclass these)
# --------------------------------------------------------------------------------------


def check_image(x: Array, gaussian: bool, size: int, name: str = "image") -> None:
    from ebm_ppl.models.dbm import check_visible

    check_visible(x, gaussian, size, name)


def check_text(x: Array, size: int, name: str = "text") -> None:
    from ebm_ppl.models.replicated_softmax import check_counts

    check_counts(x, size, name)


def _check_count_arg(total_count: Any, like: Array) -> Any:
    """``total_count`` as given (a number) or as an array in the backend of ``like``."""
    if total_count is None or isinstance(total_count, (int, float)):
        if total_count is not None:
            check_total_count(total_count)
        return total_count
    m = ops.asarray_like(total_count, like)
    check_total_count(m)
    return m


class MultimodalDBMMethods:
    """What the Pyro and NumPyro ``MultimodalDBM`` distributions share.

    The value is the concatenation of the chain's layers
    ``[v^m, h^(1m), ..., h^(J), ..., h^(1t), v^t]``; ``log_prob`` is the unnormalized
    ``-E(x) + log(M!/prod v^t_k!)``. A subclass calls :meth:`_init_multimodal` and
    ``_finish_init``; parameters have no batch dimensions (``expand`` is lazy)."""

    def _init_multimodal(
        self,
        pathways: dict,
        sigma: Any,
        total_count: Any,
        num_gibbs_steps: int,
        max_words: int | None,
        validate_args: bool | None,
    ) -> tuple:
        from ebm_ppl.models.dbm import DBMMethods
        from ebm_ppl.models.family import (
            check_finite_float,
            check_num_gibbs_steps,
            checks_enabled,
        )

        weights, biases, joint = chain_from_pathways(**pathways)
        check_num_gibbs_steps(num_gibbs_steps)
        on = checks_enabled(validate_args, weights[0])
        check_finite_float({f"weights[{i}]": w for i, w in enumerate(weights)}, on)
        check_finite_float({f"biases[{i}]": b for i, b in enumerate(biases)}, on)
        if max_words is not None and (
            not isinstance(max_words, int) or isinstance(max_words, bool) or max_words < 1
        ):
            raise ValueError(f"max_words must be a positive int or None, got {max_words!r}")
        # sigma is checked (and a float turned into an array) as for a Gaussian DBM
        probe = DBMMethods.__new__(DBMMethods)
        probe._init_dbm(weights[:1], biases[:2], 1, validate_args, sigma)
        self.sigma = probe.sigma
        if total_count is not None:
            if not isinstance(total_count, (int, float)):
                total_count = ops.asarray_like(total_count, biases[0])
                if total_count.ndim > 1:
                    raise ValueError(
                        "total_count must be a number or a 1-D array of document lengths "
                        f"(the persistent chains draw theirs from it), got shape "
                        f"{tuple(total_count.shape)}"
                    )
            check_total_count(total_count)
        self.weights, self.biases, self.joint = weights, biases, joint
        self.total_count = total_count
        self.num_gibbs_steps, self.max_words = num_gibbs_steps, max_words
        self._check_inputs = on
        return tuple(int(b.shape[0]) for b in biases)

    # ---- structure --------------------------------------------------------------------

    @property
    def mm_params(self) -> MultimodalParams:
        return MultimodalParams(tuple(self.weights), tuple(self.biases), self.sigma, self.joint)

    @property
    def sizes(self) -> tuple:
        """Layer sizes of the chain ``(D, F1m, ..., F_J, ..., F1t, K)``."""
        return sizes(self.mm_params)

    @property
    def n_image(self) -> int:
        return self.sizes[0]

    @property
    def n_words(self) -> int:
        """Dictionary size ``K``."""
        return self.sizes[-1]

    @property
    def gaussian(self) -> bool:
        """Whether the image units are Gaussian (``sigma`` given)."""
        return self.sigma is not None

    def pathways(self) -> dict:
        """The parameters in pathway form (the constructor's keyword arguments)."""
        return pathways_from_chain(self.mm_params)

    image_weights = property(lambda self: self.pathways()["image_weights"])
    image_biases = property(lambda self: self.pathways()["image_biases"])
    text_weights = property(lambda self: self.pathways()["text_weights"])
    text_biases = property(lambda self: self.pathways()["text_biases"])
    joint_weights = property(lambda self: self.pathways()["joint_weights"])
    joint_bias = property(lambda self: self.pathways()["joint_bias"])

    def _default_count(self, total_count: Any) -> Any:
        """``total_count``, or else the model's own when it is a single number."""
        if total_count is not None:
            return total_count
        m = self.total_count
        if m is None or isinstance(m, (int, float)) or m.ndim == 0:
            return m
        return None

    def split(self, value: Array) -> list:
        """The chain's layers ``[v^m, h^(1m), ..., h^(1t), v^t]`` of a value."""
        out, start = [], 0
        for n in self.sizes:
            out.append(value[..., start : start + n])
            start += n
        return out

    def join(self, layers: Sequence[Array]) -> Array:
        return ops.concat(list(layers), axis=-1)

    def _check_value(self, value: Array, name: str = "value") -> None:
        from ebm_ppl.models.rbm import check_binary

        total = sum(self.sizes)
        if not check_values(value, total, name) or not getattr(self, "_check_inputs", True):
            return
        layers = self.split(value)
        check_image(layers[0], self.gaussian, self.n_image, name + " (image layer)")
        for i, x in enumerate(layers[1:-1], start=1):
            check_binary(x, self.sizes[i], f"{name} (hidden layer {i})")
        check_text(layers[-1], self.n_words, name + " (text layer)")

    # ---- densities --------------------------------------------------------------------

    def energy(self, value: Array) -> Array:
        """``E(x)`` of eq. 42, shape ``value.shape[:-1]`` (broadcast to the batch shape)."""
        self._check_value(value)
        return self._out(energy(self.mm_params, self.split(value)), value)

    def log_prob(self, value: Array) -> Array:
        """Unnormalized ``-E(x) + log(M!/prod v^t_k!)`` (subtract ``log_partition(M)``)."""
        self._check_value(value)
        return self.log_prob_unchecked(value)

    def log_prob_unchecked(self, value: Array) -> Array:
        return self._out(log_prob(self.mm_params, self.split(value)), value)

    def free_energy(self, value: Array) -> Array:
        """``-log_prob`` of the full state (nothing is summed out): the per-draw trace of
        ``BlockGibbs`` runs."""
        return -self.log_prob(value)

    def log_partition(self, total_count: Any = None) -> Array:
        """Exact ``log Z(M)`` for documents of ``M`` words (default: the scalar
        ``total_count`` the distribution was built with); the odd layers are enumerated
        (at most 20 units)."""
        m = self.total_count if total_count is None else total_count
        if m is None:
            raise ValueError("log_partition needs the document length: pass total_count=M")
        if not isinstance(m, (int, float)):
            m = float(ops.to_numpy(m)) if ops.to_numpy(m).ndim == 0 else m
        return log_partition(self.mm_params, m)

    def conditional_logits(self, value: Array, layer: int) -> Array:
        """Logits of layer ``layer`` given its neighbours (see :func:`layer_logits`)."""
        if not isinstance(layer, int) or not 0 <= layer < len(self.sizes):
            raise ValueError(f"layer must be an int in [0, {len(self.sizes) - 1}], got {layer!r}")
        self._check_value(value)
        return layer_logits(self.mm_params, self.split(value), layer)

    # ---- sampling ---------------------------------------------------------------------

    def _frozen(self) -> MultimodalParams:
        return frozen(self.mm_params)

    def _chain_lengths(self, key: Any, lead: tuple, total_count: Any, like: Array) -> Array:
        m = self.total_count if total_count is None else _check_count_arg(total_count, like)
        if m is None:
            raise ValueError(
                "drawing text needs document lengths: build the distribution with "
                "total_count=M (a number, or a 1-D array of lengths to draw from, e.g. the "
                "training documents' lengths) or pass total_count"
            )
        if isinstance(m, (int, float)) or m.ndim == 0:
            return ops.zeros(lead, like) + ops.asarray_like(m, like)
        n = int(m.shape[0])
        idx = ops.categorical(key, ops.zeros(lead + (n,), like))
        lengths = ops.stop_gradient(ops.asarray_like(m, like))
        return lengths[idx.long()] if ops.is_torch(idx) else lengths[idx.astype("int32")]

    def init_chain(self, key: Any, shape: tuple, total_count: Any = None) -> Array:
        """Chains ``shape[:-1] + (sum of sizes,)``: image ``N(b_0, sigma^2)`` (binary:
        ``Bernoulli(g(b_0))``), hidden units ``Bernoulli(g(b_l))``, and documents of ``M``
        words drawn from ``softmax(b_L)``, with ``M`` from ``total_count`` (drawn uniformly
        from it when it is an array of lengths)."""
        p = self._frozen()
        lead = tuple(shape[:-1])
        keys = ops.split(key, len(p.biases) + 1)
        layers = []
        for i, (k, b) in enumerate(zip(keys, p.biases)):
            full = ops.broadcast_to(b, lead + (int(b.shape[0]),))
            if i == 0 and p.sigma is not None:
                layers.append(full + p.sigma * ops.normal(k, tuple(full.shape), full))
            elif i < len(p.biases) - 1:
                layers.append(ops.bernoulli(k, ops.sigmoid(full)))
            else:
                m = self._chain_lengths(keys[-1], lead, total_count, b)
                layers.append(ops.multinomial(k, m, ops.softmax(full), self.max_words))
        return self.join(layers)

    def _clamp_parts(self, clamp: Any, value: Array) -> tuple:
        """``(image mask, image values, text held (...,), text values)`` of a ``Clamp``
        over the full state (only the visible layers may be clamped; the text of a chain is
        clamped whole or not at all, since its words are drawn jointly)."""
        total = sum(self.sizes)
        mask = clamp.mask
        if int(mask.shape[-1]) != total:
            raise ValueError(
                f"a MultimodalDBM clamp covers the full state: its mask must end in ({total},), "
                f"got shape {tuple(mask.shape)}"
            )
        shape = tuple(value.shape)
        mask = ops.broadcast_to(mask, shape)
        vals = ops.broadcast_to(ops.asarray_like(clamp.values, value), shape)
        mlayers, vlayers = self.split(mask), self.split(vals)
        if ops.is_concrete(mask):
            import numpy as np

            hid = [np.asarray(ops.to_numpy(x)) for x in mlayers[1:-1]]
            if any(h.any() for h in hid):
                raise ValueError("a MultimodalDBM clamp may hold only the image and text layers")
            t = np.asarray(ops.to_numpy(mlayers[-1]))
            if not (t.all(-1) == t.any(-1)).all():
                raise ValueError(
                    "a MultimodalDBM clamp holds a chain's text whole or not at all (its M "
                    "words are drawn jointly); make the text part of each mask all true or "
                    "all false"
                )
        held = mlayers[-1].any(-1)
        return mlayers[0], vlayers[0], held, vlayers[-1]

    def transition(
        self, key: Any, value: Array, num_steps: int = 1, clamp: Any = None, cache: Any = None
    ) -> tuple[Array, None]:
        """``num_steps`` block-Gibbs sweeps at fixed parameters; returns ``(value, None)``.
        ``clamp`` (a :class:`~ebm_ppl.models.rbm.Clamp` over the full state, true only on
        visible units) holds observed pixels and/or a chain's whole text fixed: sampling the
        missing modality given the observed one."""
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        p = self._frozen()
        parts = None if clamp is None else self._clamp_parts(clamp, value)

        def hold(layers):
            if parts is not None:
                im, iv, th, tv = parts
                layers[0] = ops.where(im, iv, layers[0])
                layers[-1] = ops.where(th[..., None], tv, layers[-1])
            return layers

        value = self.join(hold(self.split(value)))
        bound = self.max_words
        if bound is None and ops.is_torch(value):  # the texts keep their lengths: read once
            bound = ops.largest_count(doc_length(self.split(ops.stop_gradient(value))))

        def sweep(k, x):
            return self.join(hold(gibbs_sweep(k, p, self.split(x), max_words=bound)))

        return ops.iterate(sweep, key, value, num_steps, value), None

    def _sample(self, key: Any, sample_shape: tuple) -> Array:
        shape = tuple(sample_shape) + tuple(self.batch_shape) + (sum(self.sizes),)
        k0, k1 = ops.split(key, 2)
        return self.transition(k1, self.init_chain(k0, shape), self.num_gibbs_steps)[0]

    def fill_in(
        self,
        key: Any,
        image: Array | None = None,
        text: Array | None = None,
        total_count: Any = None,
        num_steps: int = 100,
        every: int | None = None,
    ) -> dict:
        """Generate the missing modality by Gibbs sampling with the observed one clamped
        (section 5): ``image`` ``(..., D)`` and/or ``text`` ``(..., K)``; missing text needs
        ``total_count`` (the number of words to draw). Hidden layers start at random.

        Returns a dict: ``state`` (the final full states), and every ``every`` sweeps
        (default: once, at the end) ``word_probs`` ``(R, ..., K)``, the distribution
        ``softmax(b_L + h^(1t) W)`` from which the next words would be drawn (eq. 19; the
        words of Figure 13 are its top entries), and ``image_mean`` ``(R, ..., D)``, the mean
        of the image given ``h^(1m)``."""
        if image is None and text is None:
            raise ValueError("fill_in needs at least one observed modality (image or text)")
        every = num_steps if every is None else every
        for name, x in (("num_steps", num_steps), ("every", every)):
            if not isinstance(x, int) or isinstance(x, bool) or x < 1:
                raise ValueError(f"{name} must be a positive int, got {x!r}")
        like = image if image is not None else text
        if image is not None:
            check_image(image, self.gaussian, self.n_image)
        if text is not None:
            check_text(text, self.n_words)
        lead = tuple(like.shape[:-1])
        k0, key = ops.split(key, 2)
        shape = lead + (sum(self.sizes),)
        m = None if text is not None else self._default_count(total_count)
        if text is None and m is None:
            raise ValueError("fill_in needs total_count (the number of words to draw)")
        x = self.init_chain(k0, shape, text.sum(-1) if m is None else m)
        layers = self.split(x)
        masks = [ops.zeros(tuple(z.shape), z) != 0 for z in layers]
        if image is not None:
            layers[0], masks[0] = image + 0 * layers[0], masks[0] == masks[0]
        if text is not None:
            layers[-1], masks[-1] = text + 0 * layers[-1], masks[-1] == masks[-1]
        from ebm_ppl.models.rbm import Clamp

        clamp = Clamp(self.join(masks), self.join(layers))
        x = self.join(layers)
        p = self._frozen()
        probs, means = [], []
        done = 0
        while done < num_steps:
            n = min(every, num_steps - done)
            key, k = ops.split(key, 2)
            x, _ = self.transition(k, x, n, clamp)
            done += n
            ls = self.split(x)
            probs.append(ops.softmax(layer_logits(p, ls, len(ls) - 1)))
            mean = layer_logits(p, ls, 0)
            means.append(mean if p.sigma is not None else ops.sigmoid(mean))
        return {"state": x, "word_probs": _stack(probs), "image_mean": _stack(means)}

    # ---- mean field -------------------------------------------------------------------

    def mean_field(
        self,
        image: Array | None = None,
        text: Array | None = None,
        total_count: Any = None,
        num_iters: int = 30,
        damping: float = 0.0,
        tol: float | None = 1e-5,
    ) -> list:
        """Mean-field marginals of every layer given the observed modalities
        (:func:`mean_field`); a missing text needs ``total_count``."""
        if getattr(self, "_check_inputs", True):
            if image is not None:
                check_image(image, self.gaussian, self.n_image)
            if text is not None:
                check_text(text, self.n_words)
        like = image if image is not None else text
        m = self._default_count(total_count) if text is None else None
        m = None if m is None else _check_count_arg(m, like)
        return mean_field(self._frozen(), image, text, m, num_iters, damping, tol)

    def representation(
        self,
        image: Array | None = None,
        text: Array | None = None,
        total_count: Any = None,
        with_pathway_tops: bool = False,
        **mean_field_kwargs,
    ) -> Array:
        """The fused representation: the mean-field marginals of the joint layer
        ``(..., F_J)`` given whatever modalities are observed (a missing text is inferred,
        with ``total_count`` words); with ``with_pathway_tops`` the marginals of the top image
        layer, the joint layer and the top text layer, concatenated (all inferred together)."""
        mus = self.mean_field(image, text, total_count, **mean_field_kwargs)
        j = self.joint
        if with_pathway_tops:
            return ops.concat([mus[j - 1], mus[j], mus[j + 1]], axis=-1)
        return mus[j]

    def mean_field_bound(
        self, image: Array, text: Array, log_z: Any = 0.0, **mean_field_kwargs
    ) -> Array:
        """Eq. 38 on ``log p(v^m, v^t)`` (on ``log p~`` with ``log_z=0``), ``(...)``."""
        mus = self.mean_field(image, text, **mean_field_kwargs)
        return mean_field_bound(self.mm_params, mus, log_z)

    def visible(self, num_iters: int = 10, damping: float = 0.0, tol: float | None = 1e-5):
        """This model seen through ``[v^m, v^t]`` (a ``MultimodalDBMVisible`` of the same
        PPL), to observe on data and train with ``SAMLE``."""
        return self._visible_cls(self, num_iters, damping, tol)


def _stack(xs: list) -> Array:
    if ops.is_torch(xs[0]):
        import torch

        return torch.stack(xs)
    import jax.numpy as jnp

    return jnp.stack(xs)


class MultimodalVisibleMethods:
    """What the Pyro and NumPyro ``MultimodalDBMVisible`` share: the model seen through
    ``[v^m, v^t]`` ``(..., D + K)``. ``log_prob`` is the mean-field bound (eq. 38) on
    ``log p~``; ``contrast`` is the SA surrogate with a mean-field positive phase; the
    persistent chains are full states (lengths drawn from the model's ``total_count``)."""

    def _init_visible(self, dbm: Any, dbm_cls: type, num_iters, damping, tol) -> None:
        if not isinstance(dbm, dbm_cls):
            raise TypeError(f"dbm must be a MultimodalDBM, got {type(dbm).__name__}")
        check_mean_field_args(num_iters, damping, tol)
        self.dbm, self.num_iters, self.damping, self.tol = dbm, num_iters, damping, tol
        self._finish_init((), (dbm.n_image + dbm.n_words,), None)

    def unexpanded(self):
        return self._with_batch_shape(())

    def _split(self, value: Array) -> tuple:
        d = self.dbm.n_image
        return value[..., :d], value[..., d:]

    def _check_value(self, value: Array, name: str = "value") -> None:
        n = self.dbm.n_image + self.dbm.n_words
        if not check_values(value, n, name) or not getattr(self.dbm, "_check_inputs", True):
            return
        image, text = self._split(value)
        check_image(image, self.dbm.gaussian, self.dbm.n_image, name + " (image part)")
        check_text(text, self.dbm.n_words, name + " (text part)")

    def _sample(self, key: Any, sample_shape: tuple) -> Array:
        full = self.dbm._sample(key, tuple(sample_shape) + tuple(self.batch_shape))
        layers = self.dbm.split(full)
        return ops.concat([layers[0], layers[-1]], axis=-1)

    def mean_field(self, value: Array) -> list:
        image, text = self._split(value)
        p = self.dbm._frozen()
        return mean_field(p, image, text, None, self.num_iters, self.damping, self.tol)

    def log_prob(self, value: Array) -> Array:
        """Mean-field lower bound on ``log p~(v^m, v^t)`` (eq. 38 without ``log Z``)."""
        self._check_value(value)
        return self.log_prob_unchecked(value)

    def log_prob_unchecked(self, value: Array) -> Array:
        mus = self.mean_field(value)
        mus = [mus[0]] + [ops.stop_gradient(m) for m in mus[1:-1]] + [mus[-1]]
        return self._out(mean_field_bound(self.dbm.mm_params, mus), value)

    def contrast(self, data: Array, samples: Array, w_data, w_model, cache=None) -> Array:
        mus = self.mean_field(data)
        return mean_field_contrast(
            self.dbm.mm_params, mus, self.dbm.split(samples), w_data, w_model
        )

    def init_chain(self, key: Any, shape: tuple) -> Array:
        return self.dbm.init_chain(key, tuple(shape[:-1]) + (sum(self.dbm.sizes),))

    def transition(self, key: Any, value: Array, num_steps: int = 1, cache: Any = None):
        return self.dbm.transition(key, value, num_steps)

    def monitor(self, value: Array) -> Array:
        """Mean over the batch of the squared error of the image's mean-field
        reconstruction ``E[v^m | mu_1]`` (a training monitor)."""
        p = self.dbm._frozen()
        mus = self.mean_field(value)
        recon = _visible_mean(p, [None, mus[1]] + [None] * (len(mus) - 2), 0)
        image, _ = self._split(value)
        return ((image - recon) ** 2).reshape(image.shape[0], -1).sum(-1).mean()


def combine_pretrained_pathways(
    image_rbms: Sequence[tuple[Array, Array, Array]],
    text_rbms: Sequence[tuple[Array, Array, Array]],
    joint_rbm: tuple[Array, Array, Array],
) -> dict:
    """Initial multimodal-DBM parameters (the constructor's keyword arguments) from greedily
    pretrained RBMs, each given as ``(W, b_low, b_high)`` bottom first: the image pathway's
    (a Gaussian RBM, then binary RBMs), the text pathway's (a replicated softmax, then binary
    RBMs), and the joint RBM whose visible layer is ``[top image layer, top text layer]``.

    Every interior layer of the DBM receives input from two neighbours where its RBMs saw
    one, so the weights above the first layer of each pathway, and the joint weights, are
    halved; an inner layer's bias is the mean of its two RBMs' biases (as
    :func:`ebm_ppl.models.dbm.combine_pretrained`), except the ``M``-scaled first text
    layer, which keeps the replicated softmax's."""
    if len(image_rbms) < 1 or len(text_rbms) < 1:
        raise ValueError("each pathway needs at least one pretrained RBM")
    n_img = int(image_rbms[-1][0].shape[1])
    jw, jlow, jhigh = joint_rbm
    if int(jw.shape[0]) != n_img + int(text_rbms[-1][0].shape[1]):
        raise ValueError(
            "the joint RBM's visible layer must be [top image layer, top text layer] of size "
            f"{n_img + int(text_rbms[-1][0].shape[1])}, got {int(jw.shape[0])}"
        )

    def pathway(rbms, top_bias, m_scaled_first):
        weights = [rbms[0][0]] + [0.5 * r[0] for r in rbms[1:]]
        biases = [rbms[0][1]]
        for i in range(len(rbms)):
            above = rbms[i + 1][1] if i + 1 < len(rbms) else top_bias
            if i == 0 and m_scaled_first:
                biases.append(rbms[0][2])
            else:
                biases.append(0.5 * (rbms[i][2] + above))
        return weights, biases

    iw, ib = pathway(list(image_rbms), jlow[:n_img], False)
    tw, tb = pathway(list(text_rbms), jlow[n_img:], True)
    return {
        "image_weights": iw,
        "image_biases": ib,
        "text_weights": tw,
        "text_biases": tb,
        "joint_weights": [0.5 * jw[:n_img], 0.5 * jw[n_img:]],
        "joint_bias": jhigh,
    }
