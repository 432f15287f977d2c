"""Discriminative fine-tuning of a multimodal DBM: the augmented-input network of Figure 8
(Salakhutdinov & Hinton 2009) carried over to the two-pathway chain, with a softmax layer on
the joint layer.

On the chain ``x_0 = v^m, ..., x_J = h^(J), ..., x_L = v^t`` the network computes, from the
input ``[v~, v^t, q_a, ..., q_b]`` (``v~ = v^m / sigma`` for Gaussian image units, the word
counts ``v^t``, and the mean-field marginals ``q_i`` of the hidden layers that the other
layers read from above, ``i`` in :func:`augmented_layers`):

* up the image pathway, ``h_i = g(h_(i-1) W_(i-1) + q_(i+1) D_i + b_i)`` for
  ``i = 1, ..., J-1`` (``h_0 = v~``; ``D_i`` starts at ``W_i^T``);
* up the text pathway, ``h_i = g(h_(i+1) W_i^T + q_(i-1) D_i + s_i b_i)`` for
  ``i = L-1, ..., J+1`` (``h_L = v^t``; ``s_(L-1) = M``, the document length, else ``1``;
  ``D_i`` starts at ``W_(i-1)``);
* the joint layer from both, ``h_J = g(h_(J-1) W_(J-1) + h_(J+1) W_J^T + b_J)``;
* logits ``h_J U + c`` (``readout="joint"``), or ``[h_(J-1), h_J, h_(J+1)] U + c``
  (``readout="tops"``: the top image layer, the joint layer and the top text layer; the
  readout follows from the number of rows of ``U``).

At that initialisation and with the ``q_i`` at the mean-field fixed point given both
modalities, every ``h_i`` equals the mean-field marginal ``q_i`` (each is then exactly one
mean-field update at the fixed point), so the network starts as the DBM's own inference and
fine-tuning moves it from there.
"""

from __future__ import annotations

from collections.abc import Sequence

from ebm_ppl import ops
from ebm_ppl.models.dbm.classifier import check_num_classes
from ebm_ppl.models.multimodal.energy import MultimodalParams
from ebm_ppl.models.rbm import hidden_to_visible, visible_to_hidden
from ebm_ppl.ops import Array

#: the names that :mod:`ebm_ppl.models.multimodal` re-exports from here
__all__ = [
    "augmented_input",
    "augmented_layers",
    "multimodal_augmented_input_size",
    "multimodal_augmented_logits",
    "multimodal_classifier_params",
    "readout_size",
]


def augmented_layers(joint: int, top: int) -> list:
    """The chain indices of the hidden layers whose mean-field marginals the network reads
    (``joint = J``, ``top = L``): ``i + 1`` for the image layers ``i = 1..J-1`` and ``i - 1``
    for the text layers ``i = J+1..L-1``, in increasing order."""
    return sorted({i + 1 for i in range(1, joint)} | {i - 1 for i in range(joint + 1, top)})


def _chain_shape(weights: Sequence[Array], image_down: Sequence, text_down: Sequence) -> tuple:
    joint = len(image_down) + 1
    top = joint + len(text_down) + 1
    if len(weights) != top + 1:
        raise ValueError(
            f"weights must hold the {top} chain weights and the output weights, got "
            f"{len(weights)} arrays"
        )
    return joint, top


def multimodal_augmented_input_size(
    weights: Sequence[Array], image_down: Sequence[Array], text_down: Sequence[Array]
) -> int:
    """Width of the input ``[v~, v^t, q_a, ..., q_b]`` of :func:`multimodal_augmented_logits`."""
    joint, top = _chain_shape(weights, image_down, text_down)
    n_hidden = sum(int(weights[i].shape[0]) for i in augmented_layers(joint, top))
    return int(weights[0].shape[0]) + int(weights[top - 1].shape[1]) + n_hidden


def multimodal_augmented_logits(
    weights: Sequence[Array],
    image_down: Sequence[Array],
    text_down: Sequence[Array],
    biases: Sequence[Array],
    x: Array,
) -> Array:
    """The network of the module docstring, ``x.shape[:-1] + (num_classes,)`` logits.

    ``weights`` are the chain weights ``[W_0, ..., W_(L-1)]`` then ``U`` ``(n_J, classes)``
    (or ``(n_(J-1) + n_J + n_(J+1), classes)``: the ``"tops"`` readout);
    ``image_down`` ``[D_1, ..., D_(J-1)]`` with ``D_i`` ``(n_(i+1), n_i)``; ``text_down``
    ``[D_(J+1), ..., D_(L-1)]`` with ``D_i`` ``(n_(i-1), n_i)``; ``biases``
    ``[b_1, ..., b_(L-1), c]``; ``x`` ``(..., n_0 + n_L + sum n_q)`` is
    ``[v~, v^t, q_a, ..., q_b]`` (:func:`augmented_layers` order)."""
    joint, top = _chain_shape(weights, image_down, text_down)
    n0, n_words = int(weights[0].shape[0]), int(weights[top - 1].shape[1])
    image, text = x[..., :n0], x[..., n0 : n0 + n_words]
    q, start = {}, n0 + n_words
    for i in augmented_layers(joint, top):
        n = int(weights[i].shape[0])
        q[i] = x[..., start : start + n]
        start += n
    h = image
    for i in range(1, joint):
        pre = visible_to_hidden(h, weights[i - 1]) + visible_to_hidden(q[i + 1], image_down[i - 1])
        h = ops.sigmoid(pre + biases[i - 1])
    h_image = h
    h, m = text, text.sum(-1)[..., None]
    for i in range(top - 1, joint, -1):
        pre = hidden_to_visible(h, weights[i]) + visible_to_hidden(
            q[i - 1], text_down[i - joint - 1]
        )
        scale = m if i == top - 1 else 1.0
        h = ops.sigmoid(pre + scale * biases[i - 1])
    h_joint = ops.sigmoid(
        visible_to_hidden(h_image, weights[joint - 1])
        + hidden_to_visible(h, weights[joint])
        + biases[joint - 1]
    )
    n_read = int(weights[top].shape[0])
    if n_read == int(h_joint.shape[-1]):
        read = h_joint
    elif (
        joint > 1
        and top - joint > 1
        and n_read == sum(int(h.shape[-1]) for h in (h_image, h_joint, h))
    ):
        read = ops.concat([h_image, h_joint, h], axis=-1)
    else:
        raise ValueError(
            f"the output weights have {n_read} rows: expected the joint layer's size or, with "
            "readout='tops', the sizes of the top image layer, the joint layer and the top "
            "text layer together"
        )
    return visible_to_hidden(read, weights[top]) + biases[top - 1]


def readout_size(params: MultimodalParams, readout: str = "joint") -> int:
    """The number of units the softmax layer reads: the joint layer's (``"joint"``) or the
    top image layer's, the joint layer's and the top text layer's together (``"tops"``)."""
    j, top = params.joint, len(params.weights)
    n = [int(b.shape[0]) for b in params.biases]
    if readout == "joint":
        return n[j]
    if readout == "tops":
        if j < 2 or top - j < 2:
            raise ValueError("readout='tops' needs a hidden layer on each pathway below the joint")
        return n[j - 1] + n[j] + n[j + 1]
    raise ValueError(f"readout must be 'joint' or 'tops', got {readout!r}")


def multimodal_classifier_params(
    params: MultimodalParams, out_weights: Array, num_classes: int
) -> dict:
    """Initial parameters of :func:`multimodal_augmented_logits` from a multimodal DBM:
    ``{"weights": [W_0, ..., W_(L-1), out_weights], "image_down": [W_1^T, ..., W_(J-1)^T],
    "text_down": [W_J, ..., W_(L-2)], "biases": [b_1, ..., b_(L-1), 0]}``; ``out_weights``
    ``(n_J, num_classes)``, or ``(readout_size(params, "tops"), num_classes)`` for the
    ``"tops"`` readout."""
    check_num_classes(num_classes)
    w, b, joint = params.weights, params.biases, params.joint
    top = len(w)
    sizes = {readout_size(params, "joint")}
    if joint > 1 and top - joint > 1:
        sizes.add(readout_size(params, "tops"))
    if (
        out_weights.ndim != 2
        or int(out_weights.shape[1]) != num_classes
        or int(out_weights.shape[0]) not in sizes
    ):
        raise ValueError(
            f"out_weights must have shape (n, {num_classes}) with n in {sorted(sizes)} (the "
            f"joint readout, or the tops readout), got {tuple(out_weights.shape)}"
        )
    return {
        "weights": list(w) + [out_weights],
        "image_down": [ops.transpose(w[i]) for i in range(1, joint)],
        "text_down": [w[i - 1] for i in range(joint + 1, top)],
        "biases": list(b[1:top]) + [ops.zeros((num_classes,), out_weights)],
    }


def augmented_input(params: MultimodalParams, image: Array, text: Array, mus: Sequence) -> Array:
    """``[v~, v^t, q_a, ..., q_b]`` from the mean-field marginals ``mus`` (all layers) given
    ``image`` and ``text``."""
    image = image / params.sigma if params.sigma is not None else image
    top = len(params.weights)
    qs = [mus[i] for i in augmented_layers(params.joint, top)]
    return ops.concat([image, text, *qs], axis=-1)
