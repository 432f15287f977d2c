"""The pathway form of a multimodal DBM's parameters (an image pathway, a text pathway and
the joint layer, Figure 12c) and its chain form, both ways, and the parameters composed from
greedily pretrained RBMs."""

from __future__ import annotations

from collections.abc import Sequence

from ebm_ppl import ops
from ebm_ppl.models.multimodal.energy import MultimodalParams
from ebm_ppl.ops import Array

#: the names that :mod:`ebm_ppl.models.multimodal` re-exports from here
__all__ = [
    "chain_from_pathways",
    "combine_pretrained_pathways",
    "pathways_from_chain",
]


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
