"""What the two frontends' twin classes share beyond the math of :mod:`ebm_ppl.models`: their
constructors, written once over :data:`ebm_ppl.ops.Array` (a ``torch.Tensor`` for
:mod:`ebm_ppl.pyro`, a ``jax.Array`` for :mod:`ebm_ppl.numpyro`), and the parts of their
docstrings that name no PPL.

A constructor mixin stands first among a frontend class's bases, so that its ``__init__`` is the
class's; the body it runs (``_construct``, ``_construct_dbm``, ``_construct_multimodal``) comes
from the frontend's distribution base and the model's methods. A docstring part is joined with
the frontend's own sentences by :func:`doc_head` (or ``str.format``, for ``EXCHANGE_DOC``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ebm_ppl.models.dbm import tile_rbm
from ebm_ppl.ops import Array

__all__ = [
    "DBMConstructor",
    "EXCHANGE_DOC",
    "GAUSSIAN_RBM_DOC",
    "GaussianRBMConstructor",
    "MULTIMODAL_DBM_DOC",
    "MultimodalDBMConstructor",
    "RBMConstructor",
    "RBM_DOC",
    "ReplicatedSoftmaxConstructor",
    "TiedCopiesConstructor",
    "doc_head",
    "layer_rbm",
]


# ---- constructors ----------------------------------------------------------------------------


class RBMConstructor:
    """``RBM(weights, visible_bias, hidden_bias, ...)`` (also :class:`CategoricalRBM`'s)."""

    def __init__(
        self,
        weights: Array,
        visible_bias: Array,
        hidden_bias: Array,
        num_gibbs_steps: int = 100,
        validate_args: bool | None = None,
        normalized: bool = False,
    ) -> None:
        self._construct(
            (weights, visible_bias, hidden_bias), num_gibbs_steps, validate_args, normalized
        )


class GaussianRBMConstructor:
    """``GaussianRBM(weights, visible_bias, hidden_bias, sigma=1.0, ...)``."""

    def __init__(
        self,
        weights: Array,
        visible_bias: Array,
        hidden_bias: Array,
        sigma: Array | float = 1.0,
        num_gibbs_steps: int = 100,
        validate_args: bool | None = None,
        normalized: bool = False,
    ) -> None:
        self._construct(
            (weights, visible_bias, hidden_bias, sigma), num_gibbs_steps, validate_args, normalized
        )


class ReplicatedSoftmaxConstructor:
    """``ReplicatedSoftmax(weights, word_bias, hidden_bias, total_count=None, ...)``."""

    def __init__(
        self,
        weights: Array,
        word_bias: Array,
        hidden_bias: Array,
        total_count: Array | float | None = None,
        num_gibbs_steps: int = 100,
        validate_args: bool | None = None,
        normalized: bool = False,
        max_words: int | None = None,
    ) -> None:
        arrays = (weights, word_bias, hidden_bias, total_count)
        self._construct(arrays, num_gibbs_steps, validate_args, normalized, (max_words,))


class DBMConstructor:
    """``DBM(weights=[W1, ..., WL], biases=[b0, ..., bL], sigma=None, ...)``."""

    def __init__(
        self,
        weights: Sequence[Array],
        biases: Sequence[Array],
        sigma: Array | float | None = None,
        num_gibbs_steps: int = 100,
        validate_args: bool | None = None,
        normalized: bool = False,
    ) -> None:
        self._construct_dbm(weights, biases, sigma, num_gibbs_steps, validate_args, normalized)


class MultimodalDBMConstructor:
    """``MultimodalDBM(image_weights, image_biases, text_weights, text_biases, joint_weights,
    joint_bias, sigma=None, total_count=None, ...)``."""

    def __init__(
        self,
        image_weights: Sequence[Array],
        image_biases: Sequence[Array],
        text_weights: Sequence[Array],
        text_biases: Sequence[Array],
        joint_weights: Sequence[Array],
        joint_bias: Array,
        sigma: Array | float | None = None,
        total_count: Array | int | None = None,
        num_gibbs_steps: int = 100,
        max_words: int | None = None,
        validate_args: bool | None = None,
    ) -> None:
        self._construct_multimodal(
            (image_weights, image_biases, text_weights, text_biases, joint_weights, joint_bias),
            sigma,
            total_count,
            num_gibbs_steps,
            max_words,
            validate_args,
        )


class TiedCopiesConstructor:
    """The constructor of the bottom DBM-pretraining RBM (a frontend's ``RBM`` with
    :class:`~ebm_ppl.models.dbm.TiedCopiesMethods`): tiled parameters, unvalidated, and the
    number of tied copies of the visible layer."""

    def __init__(
        self, weights: Array, visible_bias: Array, hidden_bias: Array, copies: int
    ) -> None:
        super().__init__(weights, visible_bias, hidden_bias, validate_args=False)
        self.copies = int(copies)


def layer_rbm(rbm_cls: type, tied_cls: type, copies: tuple[int, int]) -> Callable:
    """``make_rbm(weights, low_bias, high_bias)`` of a greedy DBM layer's RBM
    (:func:`~ebm_ppl.models.dbm.tile_rbm` with ``copies``): a frontend's ``tied_cls`` (tied,
    always-equal visible copies) when doubled, else its ``rbm_cls``."""

    def make_rbm(w, lo, hi):
        tiled = tile_rbm(w, lo, hi, copies)
        return tied_cls(*tiled, copies[0]) if copies[0] > 1 else rbm_cls(*tiled)

    return make_rbm


# ---- the docstrings' shared parts --------------------------------------------------------------


def doc_head(head: str) -> Callable[[type], type]:
    """A class decorator: the class's docstring becomes ``head`` (a shared part below) followed
    by the class's own docstring, which goes on where ``head`` stops."""

    def decorate(cls: type) -> type:
        cls.__doc__ = head + (cls.__doc__ or "")
        return cls

    return decorate


#: the head of both ``RBM`` docstrings; the frontend goes on with how ``sample`` draws
RBM_DOC = r"""Binary restricted Boltzmann machine over the visible units (eq. 1-8).

    ``RBM(weights, visible_bias, hidden_bias)`` with ``weights`` of shape
    ``(..., n_visible, n_hidden)``, ``visible_bias`` ``(..., n_visible)`` and ``hidden_bias``
    ``(..., n_hidden)``; leading dimensions form the batch shape, the event shape is
    ``(n_visible,)``.

    ``log_prob(v)`` is the **unnormalized** log-density ``-F(v)`` (eq. 5), with the hidden
    units summed out analytically; ``log_partition()`` gives the exact ``log Z`` for models
    whose smaller layer has at most 20 units. """

#: the head of both ``GaussianRBM`` docstrings; the frontend goes on with how to learn ``sigma``
GAUSSIAN_RBM_DOC = r"""Gaussian-Bernoulli RBM over real-valued visible units (eq. 11-14).

    ``GaussianRBM(weights, visible_bias, hidden_bias, sigma=1.0)`` with ``weights``
    ``(..., D, F)``, ``visible_bias`` ``(..., D)``, ``hidden_bias`` ``(..., F)`` and ``sigma``
    (the visible standard deviations) a float or an array ``(..., D)`` / ``(..., 1)``. Fix
    """

#: the head of both ``MultimodalDBM`` docstrings; the frontend goes on with the text pathway
MULTIMODAL_DBM_DOC = (
    "Multimodal DBM over an image and a bag of words (section 5, eq. 42, Figure 12c).\n"
    r"""
    ``MultimodalDBM(image_weights=[W1m, W2m], image_biases=[b_v, b_1m, b_2m],
    text_weights=[W1t, W2t], text_biases=[b_w, b_1t, b_2t], joint_weights=[W3m, W3t],
    joint_bias=b_3, sigma=1.0)``: a Gaussian (``sigma`` given) or binary image pathway and a
    """
)

#: both ``Exchange`` docstrings, with the frontend's slots: ``{mcmc}`` (its MCMC runner),
#: ``{gibbs}`` (the end of the sentence on latent energy sites, citing its ``BlockGibbs``),
#: ``{host}`` (the PPL's name), ``{aux_sweeps}`` (the rest of that parameter after "model
#: must be enumerable") and ``{notes}`` (the closing paragraph, after a blank line)
EXCHANGE_DOC = """The exchange algorithm (Murray, Ghahramani & MacKay 2006) for the parameters of
    energy sites, under ``{mcmc}``.

    For a program such as ``theta ~ prior; x ~ RBM(W(theta), b, c)`` (observed or latent
    ``x``) the posterior of ``theta`` involves the intractable ``Z(theta)``. Each step
    proposes ``theta'`` by a Gaussian random walk on the unconstrained scale, draws
    auxiliary data from every energy site at ``theta'``, and accepts with a ratio in which
    the normalizers cancel (:mod:`ebm_ppl.inference.exchange`). Latent energy sites are
    advanced first by ``gibbs_sweeps`` exact block-Gibbs sweeps given ``theta``{gibbs}

    :param model: a {host} model whose latent sites are continuous parameters (any support
        with a bijection to the reals) and, optionally, energy sites; at least one energy
        site's parameters must depend on the continuous sites.
    :param step_size: initial random-walk step. Warmup adapts it towards
        ``target_accept_prob`` (Robbins-Monro) and, in windows (ending at 15, 30 and 60 % of
        the warmup, as in Stan), sets per-coordinate proposal scales to the standard
        deviations of the window's draws, so the transient from the starting point does not
        shape the final proposal. Both are fixed after warmup.
    :param aux_sweeps: ``None`` (default): exact auxiliary draws (``exact_sample``; the
        model must be enumerable{aux_sweeps}
    :param gibbs_sweeps: block-Gibbs sweeps of the latent energy sites per step.
    :param target_accept_prob: the acceptance rate the warmup aims at.
{notes}
    """
