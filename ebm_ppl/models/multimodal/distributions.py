"""What the Pyro and NumPyro ``MultimodalDBM`` and ``MultimodalDBMVisible`` distributions
share, over the math of :mod:`~ebm_ppl.models.multimodal.energy` and
:mod:`~ebm_ppl.models.multimodal.mean_field`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ebm_ppl import ops
from ebm_ppl.models.dbm import DBMMethods
from ebm_ppl.models.dbm.distributions import LayerChainMethods
from ebm_ppl.models.dbm.energy import check_visible
from ebm_ppl.models.family import (
    check_finite_float,
    check_num_gibbs_steps,
    check_values,
    checks_enabled,
)
from ebm_ppl.models.multimodal.classifier import augmented_input
from ebm_ppl.models.multimodal.energy import (
    MultimodalParams,
    check_total_count,
    doc_length,
    energy,
    frozen,
    gibbs_sweep,
    layer_logits,
    log_partition,
    log_prob,
    sizes,
)
from ebm_ppl.models.multimodal.mean_field import (
    _visible_mean,
    mean_field,
    mean_field_bound,
    mean_field_contrast,
)
from ebm_ppl.models.multimodal.pathways import chain_from_pathways, pathways_from_chain
from ebm_ppl.models.rbm import Clamp, check_binary
from ebm_ppl.models.replicated_softmax import check_counts
from ebm_ppl.models.variational import VisibleSiteMethods
from ebm_ppl.ops import Array

#: the names that :mod:`ebm_ppl.models.multimodal` re-exports from here
__all__ = [
    "MultimodalDBMMethods",
    "MultimodalVisibleMethods",
    "_check_count_arg",
    "_stack",
    "check_image",
    "check_text",
]


def check_image(x: Array, gaussian: bool, size: int, name: str = "image") -> None:

    check_visible(x, gaussian, size, name)


def check_text(x: Array, size: int, name: str = "text") -> None:

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


#: the names of a multimodal DBM's parameters in pathway form, in the constructors' order
PATHWAY_ARGS = tuple(
    "image_weights image_biases text_weights text_biases joint_weights joint_bias".split()
)


class MultimodalDBMMethods(LayerChainMethods):
    """What the Pyro and NumPyro ``MultimodalDBM`` distributions share.

    The value is the concatenation of the chain's layers
    ``[v^m, h^(1m), ..., h^(J), ..., h^(1t), v^t]``; ``log_prob`` is the unnormalized
    ``-E(x) + log(M!/prod v^t_k!)``. A subclass calls :meth:`_init_multimodal` and
    ``_finish_init``; parameters have no batch dimensions (``expand`` is lazy)."""

    def _construct_multimodal(
        self,
        arrays: Sequence[Any],
        sigma: Any,
        total_count: Any,
        num_gibbs_steps: int,
        max_words: int | None,
        validate_args: bool | None,
    ) -> None:
        """The body of both frontends' ``MultimodalDBM`` constructors: ``arrays`` are the
        parameters in pathway form, in the order of :data:`PATHWAY_ARGS` (see
        :func:`chain_from_pathways`); every array in them, ``sigma`` and ``total_count`` is
        passed through the class's ``_as_array`` (the frontend's conversion of numpy arrays),
        then checked and stored (:meth:`_init_multimodal`)."""

        def each(x):
            return [each(y) for y in x] if isinstance(x, (list, tuple)) else self._as_array(x)

        pathways = {
            k: each(list(a) if k != "joint_bias" else a) for k, a in zip(PATHWAY_ARGS, arrays)
        }
        sizes = self._init_multimodal(
            pathways, each(sigma), each(total_count), num_gibbs_steps, max_words, validate_args
        )
        self._finish_init((), (sum(sizes),), validate_args)

    def unexpanded(self):
        return self._with_batch_shape(())

    def _init_multimodal(
        self,
        pathways: dict,
        sigma: Any,
        total_count: Any,
        num_gibbs_steps: int,
        max_words: int | None,
        validate_args: bool | None,
    ) -> tuple:

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

    _layer_logits = staticmethod(layer_logits)
    _freeze = staticmethod(frozen)

    @property
    def mm_params(self) -> MultimodalParams:
        return MultimodalParams(tuple(self.weights), tuple(self.biases), self.sigma, self.joint)

    _chain_params = mm_params

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

    def _check_value(self, value: Array, name: str = "value") -> None:

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

    # ---- sampling ---------------------------------------------------------------------

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

    def augment(self, image: Array, text: Array, **mean_field_kwargs) -> Array:
        """The input of the fine-tuning network
        (:func:`~ebm_ppl.models.multimodal.multimodal_augmented_logits`): ``[v^m / sigma,
        v^t, q_a, ..., q_b]`` ``(..., D + K + sum n_q)`` with the mean-field marginals given
        both modalities (no gradient; ``mean_field_kwargs`` as :meth:`mean_field`)."""
        mus = self.mean_field(image, text, **mean_field_kwargs)
        p = self._frozen()
        return ops.stop_gradient(augmented_input(p, image, text, mus))

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
        # lazy: keeps this module free of torch until that backend is used
        import torch

        return torch.stack(xs)
    # lazy: keeps this module free of jax until that backend is used
    import jax.numpy as jnp

    return jnp.stack(xs)


class MultimodalVisibleMethods(VisibleSiteMethods):
    """What the Pyro and NumPyro ``MultimodalDBMVisible`` share: the model seen through
    ``[v^m, v^t]`` ``(..., D + K)``. ``log_prob`` is the mean-field bound (eq. 38) on
    ``log p~``; ``contrast`` is the SA surrogate with a mean-field positive phase; the
    persistent chains are full states (lengths drawn from the model's ``total_count``)."""

    #: the frontend's MultimodalDBM class (set next to it)
    _dbm_cls: type

    def __init__(
        self, dbm: Any, num_iters: int = 10, damping: float = 0.0, tol: float | None = 1e-5
    ) -> None:
        self._init_site("dbm", dbm, self._dbm_cls, "a MultimodalDBM", num_iters, damping, tol)
        self._finish_init((), (dbm.n_image + dbm.n_words,), None)

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

    def log_prob_unchecked(self, value: Array) -> Array:
        mus = self.mean_field(value)
        mus = [mus[0]] + [ops.stop_gradient(m) for m in mus[1:-1]] + [mus[-1]]
        return self._out(mean_field_bound(self.dbm.mm_params, mus), value)

    def contrast(self, data: Array, samples: Array, w_data, w_model, cache=None) -> Array:
        mus = self.mean_field(data)
        return mean_field_contrast(
            self.dbm.mm_params, mus, self.dbm.split(samples), w_data, w_model
        )

    def monitor(self, value: Array) -> Array:
        """Mean over the batch of the squared error of the image's mean-field
        reconstruction ``E[v^m | mu_1]`` (a training monitor)."""
        p = self.dbm._frozen()
        mus = self.mean_field(value)
        recon = _visible_mean(p, [None, mus[1]] + [None] * (len(mus) - 2), 0)
        image, _ = self._split(value)
        return ((image - recon) ** 2).reshape(image.shape[0], -1).sum(-1).mean()
