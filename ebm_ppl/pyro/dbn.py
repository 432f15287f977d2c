"""Deep belief networks as ordinary Pyro programs (:mod:`ebm_ppl.models.dbn` holds the math)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyro
import pyro.distributions as dist
import torch

from ebm_ppl.models.dbn import (
    GREEDY_MODES,
    DBNParams,
    check_below,
    check_dbn,
    check_greedy_args,
    down_logits,
    feedforward_logits,
    log_z_of,
    propagate_up,
    tied_init,
    up_logits,
    variational_bound,
)
from ebm_ppl.pyro.distributions import RBM

__all__ = [
    "DBN",
    "DBNClassifier",
    "GreedyLayerData",
    "dbn_guide",
    "dbn_model",
    "classification_error",
    "fine_tune",
    "greedy_pretrain",
]


def dbn_model(
    weights: Sequence[torch.Tensor],
    down_biases: Sequence[torch.Tensor],
    up_biases: Sequence[torch.Tensor],
    num_gibbs_steps: int = 100,
) -> Callable:
    """A Pyro model of the DBN (eq. 20-22): ``model(data=None, num_data=None)``.

    Sites, top to bottom inside ``pyro.plate("data", n)``: ``"h{L-1}"`` from the top
    :class:`~ebm_ppl.pyro.RBM` (its hidden layer summed out; sampled by ``num_gibbs_steps``
    Gibbs sweeps when not observed), then ``Bernoulli(logits=h W^T + b)`` sites ``"h{l}"``
    down to the observed ``"v"``. ``Predictive(model, ...)(num_data=n)`` draws from the DBN
    (Figure 6a); ``trace``, ``condition`` and guides work as on any Pyro program.
    """
    sizes = check_dbn(weights, down_biases, up_biases)
    params = DBNParams(tuple(weights), tuple(down_biases), tuple(up_biases))
    top = len(weights) - 1

    def name(layer: int) -> str:
        return "v" if layer == 0 else f"h{layer}"

    def model(data: torch.Tensor | None = None, num_data: int | None = None):
        if data is None and num_data is None:
            raise ValueError("give the observed data, or num_data to draw that many samples")
        if data is not None and tuple(data.shape[-1:]) != (sizes[0],):
            raise ValueError(f"data must have shape (n, {sizes[0]}), got {tuple(data.shape)}")
        n = data.shape[0] if data is not None else num_data
        with pyro.plate("data", n):
            rbm = RBM(
                params.weights[-1],
                params.down_biases[-1],
                params.up_biases[-1],
                num_gibbs_steps=num_gibbs_steps,
            )
            h = pyro.sample(name(top), rbm, obs=data if top == 0 else None)
            for layer in range(top, 0, -1):
                logits = down_logits(params, layer, h)
                obs = data if layer == 1 else None
                h = pyro.sample(name(layer - 1), dist.Bernoulli(logits=logits).to_event(1), obs=obs)
        return h

    return model


def dbn_guide(
    weights: Sequence,
    down_biases: Sequence,
    up_biases: Sequence,
    factorial: bool = False,
) -> Callable:
    """The bottom-up recognition distribution as a guide for :func:`dbn_model`:
    ``guide(data)`` samples the latent sites ``"h1"``, ..., ``"h{L-1}"``.

    By default the stochastic pass ``Q(h^1 | v) ... Q(h^(L-1) | h^(L-2))`` (eq. 25): each
    layer is ``Bernoulli(logits=c + h W)`` of the sample below. With ``factorial=True`` the
    fully factorized ``Q~`` of eq. 26-28: every layer is drawn independently from the
    probabilities of one deterministic bottom-up pass. With the PPL's ELBO,
    ``-loss / n - log Z_top`` is the bound of eq. 24 (the top RBM's log-density is
    unnormalized)."""
    check_dbn(weights, down_biases, up_biases)
    params = DBNParams(tuple(weights), tuple(down_biases), tuple(up_biases))

    def guide(data=None, num_data: int | None = None):
        if data is None:
            raise ValueError("the recognition guide needs the observed data")
        h = data
        with pyro.plate("data", data.shape[0]):
            for layer in range(1, len(params.weights)):
                logits = up_logits(params, layer, h)
                s = pyro.sample(f"h{layer}", dist.Bernoulli(logits=logits).to_event(1))
                h = torch.sigmoid(logits) if factorial else s
        return h

    return guide


class DBN:
    """A deep belief network (section 3): the parameters of a greedy stack of RBMs with the
    programs and estimators that use them.

    ``DBN(weights, down_biases, up_biases)`` (see :mod:`ebm_ppl.models.dbn` for the layout)
    or ``DBN.from_rbms([rbm1, rbm2, ...])`` (bottom first: ``weights[l]``, ``down_biases[l]``
    and ``up_biases[l]`` are the ``l``-th RBM's weights, visible and hidden biases).
    """

    def __init__(
        self,
        weights: Sequence[torch.Tensor],
        down_biases: Sequence[torch.Tensor],
        up_biases: Sequence[torch.Tensor],
    ) -> None:
        for name, seq in (
            ("weights", weights),
            ("down_biases", down_biases),
            ("up_biases", up_biases),
        ):
            if not all(isinstance(t, torch.Tensor) for t in seq):
                raise TypeError(f"{name} must be a sequence of torch tensors")
        self.sizes: tuple[int, ...] = check_dbn(weights, down_biases, up_biases)
        self.params = DBNParams(
            *(tuple(t.detach() for t in seq) for seq in (weights, down_biases, up_biases))
        )

    @classmethod
    def from_rbms(cls, rbms: Sequence[RBM]) -> DBN:
        """The DBN of a greedy stack of :class:`~ebm_ppl.pyro.RBM` layers, bottom first."""
        rbms = list(rbms)
        if not rbms or not all(isinstance(r, RBM) for r in rbms):
            raise TypeError("rbms must be a non-empty sequence of ebm_ppl.pyro.RBM layers")
        return cls(
            [r.weights for r in rbms], [r.visible_bias for r in rbms], [r.hidden_bias for r in rbms]
        )

    @property
    def top(self) -> RBM:
        """The top RBM over ``(h^(L-1), h^L)``; its ``log Z`` (exact or by AIS) normalizes
        the DBN."""
        p = self.params
        return RBM(p.weights[-1], p.down_biases[-1], p.up_biases[-1])

    def model(self, num_gibbs_steps: int = 100) -> Callable:
        """The generative program, :func:`dbn_model`."""
        return dbn_model(*self.params, num_gibbs_steps=num_gibbs_steps)

    def guide(self, factorial: bool = False) -> Callable:
        """The recognition guide ``Q`` (or ``Q~``), :func:`dbn_guide`."""
        return dbn_guide(*self.params, factorial=factorial)

    def recognize(self, data: torch.Tensor, factorial: bool = False) -> torch.Tensor:
        """``q(h^L = 1 | v)`` of the deterministic pass (eq. 27-28) when ``factorial``, else
        one draw of ``h^L`` from the stochastic pass ``Q``; shape ``(n, n_L)``."""
        mode = "mean" if factorial else "sample"
        return propagate_up(None, self.params.weights, self.params.up_biases, data, mode)

    def bound(
        self,
        data: torch.Tensor,
        log_z_top,
        num_samples: int = 1,
        batch_size: int = 10_000,
        generator: torch.Generator | None = None,
    ):
        """The variational lower bound of eq. 24 on the average ``log P(v)`` of ``data``
        ``(n, n_0)``, estimated with ``num_samples`` draws from ``Q`` per data point;
        ``log_z_top`` is the top RBM's ``log Z``: a number (exact) or an AIS result, whose
        standard error is combined with the spread over data points. Returns a
        :class:`~ebm_ppl.inference.ais.LogLikelihood`."""
        log_z, stderr = log_z_of(log_z_top)
        if data.ndim != 2 or data.shape[1] != self.sizes[0]:
            raise ValueError(f"data must have shape (n, {self.sizes[0]}), got {tuple(data.shape)}")
        from ebm_ppl.inference.ais import summarize

        with torch.no_grad():
            values = torch.cat(
                [
                    variational_bound(
                        generator, self.params, data[i : i + batch_size], 0.0, num_samples
                    )
                    for i in range(0, data.shape[0], batch_size)
                ]
            )
        return summarize(values, log_z, stderr)

    def classifier(self, num_classes: int, generator: torch.Generator | None = None):
        """A :class:`DBNClassifier` initialised from this DBN's recognition weights."""
        return DBNClassifier(self, num_classes, generator=generator)


class GreedyLayerData:
    """The training data of the next RBM in greedy layer-wise learning, ``epoch -> tensor``.

    Pass an instance to :meth:`ebm_ppl.pyro.SAMLE.run` as its data: each epoch gets fresh
    draws of the top layer of a bottom-up pass through the RBMs in ``below`` (bottom first),
    by :func:`ebm_ppl.models.dbn.propagate_up`. ``mode="sample"`` is Algorithm 1 of the
    review (``h^l ~ Q(h^l | h^(l-1))`` layer by layer), ``"factorial"`` Algorithm 2 (draws
    from the factorial ``Q~`` of eq. 26-28), ``"mean"`` the probabilities themselves.

    Args:
        below: the trained :class:`~ebm_ppl.pyro.RBM` layers, bottom first.
        data: tensor ``(n, n_visible)`` or a callable ``epoch -> array`` with ``__len__``
            (e.g. :class:`~ebm_ppl.datasets.StochasticBinarization`).
        mode: ``"sample"``, ``"factorial"`` or ``"mean"``.
        seed: the draws of epoch ``e`` come from a generator seeded by ``(seed, e)``:
            reproducible and resumable.
        batch_size: rows propagated at a time (bounds the memory of the pass).
    """

    def __init__(
        self,
        below: Sequence[RBM],
        data,
        mode: str = "sample",
        seed: int = 0,
        batch_size: int = 10_000,
    ) -> None:
        self.below = check_below(below, RBM, "ebm_ppl.pyro.RBM")
        if mode not in GREEDY_MODES:
            raise ValueError(f"mode must be one of {GREEDY_MODES}, got {mode!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.data, self.mode, self.seed, self.batch_size = data, mode, seed, batch_size

    def __len__(self) -> int:
        return len(self.data)

    def __call__(self, epoch: int) -> torch.Tensor:
        """The data of epoch ``epoch``, ``(n, n_top)`` in the RBMs' dtype."""
        w0 = self.below[0].weights
        x = self.data(epoch) if callable(self.data) else self.data
        x = torch.as_tensor(x, dtype=w0.dtype)
        if x.ndim != 2 or x.shape[1] != w0.shape[-2]:
            raise ValueError(f"data must have shape (n, {w0.shape[-2]}), got {tuple(x.shape)}")
        gen = torch.Generator().manual_seed(_seed_of(self.seed, epoch))
        ws = [r.weights.detach() for r in self.below]
        cs = [r.hidden_bias.detach() for r in self.below]
        with torch.no_grad():
            return torch.cat(
                [
                    propagate_up(gen, ws, cs, x[i : i + self.batch_size], self.mode)
                    for i in range(0, x.shape[0], self.batch_size)
                ]
            )


def _seed_of(seed: int, epoch: int) -> int:
    import numpy as np

    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1)


def greedy_pretrain(
    data,
    hidden_sizes: Sequence[int],
    optim,
    *,
    num_epochs: int | Sequence[int] = 10,
    batch_size: int = 100,
    mode: str = "sample",
    tie_weights: bool = True,
    init_scale: float = 0.01,
    seed: int = 0,
    progress_bar: bool | None = None,
    below: Sequence[RBM] = (),
    **samle_kwargs,
) -> list[RBM]:
    """Greedy layer-wise learning of a DBN (section 3, Algorithms 1 and 2) with SA-MLE.

    Layer ``l`` is an RBM trained by :class:`~ebm_ppl.pyro.SAMLE` (``samle_kwargs`` such as
    ``num_gibbs_steps``, ``persistent``, ``num_chains``, ``lr_schedule`` are passed on) on
    ``data`` for the first layer and on :class:`GreedyLayerData` (fresh draws every epoch,
    ``mode="sample"``: Algorithm 1, ``"factorial"``: Algorithm 2) for the others. When
    ``tie_weights`` and the sizes allow (``n_(l+1) = n_(l-1)``) the new RBM starts from the
    transposed layer below (:func:`~ebm_ppl.models.dbn.tied_init`), where the bound of eq. 24
    is tight; otherwise from ``W ~ N(0, init_scale^2)``, visible biases at the log-odds of
    the layer data's means and zero hidden biases.

    Args:
        data: ``(n, n_0)`` binary tensor or a callable ``epoch -> array`` with ``__len__``.
        hidden_sizes: ``(n_1, ..., n_L)``.
        optim: a ``pyro.optim`` optimizer (shared by the layers; parameters are named
            ``"dbn.layer{l}.weights"`` etc. in the param store, replaced on every call).
        num_epochs: one count for all layers or one per layer.
        below: RBM layers already trained (bottom first): the new layers go on top of them,
            and the result includes them.

    Returns the trained layers as :class:`~ebm_ppl.pyro.RBM` (bottom first); make the DBN
    with :meth:`DBN.from_rbms`.
    """
    from ebm_ppl.inference.samle import data_size, epoch_data
    from ebm_ppl.pyro.samle import SAMLE

    sizes, epochs = check_greedy_args(hidden_sizes, num_epochs, mode, init_scale, seed)
    data_size(data)
    store = pyro.get_param_store()
    rbms: list[RBM] = check_below(below, RBM, "RBM") if len(below) else []
    first = len(rbms) + 1
    gen = torch.Generator().manual_seed(seed)
    for layer, n_hidden in enumerate(sizes, start=first):
        layer_data = data if not rbms else GreedyLayerData(rbms, data, mode, seed + layer)
        x0 = torch.as_tensor(epoch_data(layer_data, 0), dtype=torch.get_default_dtype())
        n_visible = x0.shape[-1]
        below = rbms[-1] if rbms else None
        if tie_weights and below is not None and n_hidden == below.weights.shape[0]:
            init = tied_init(below.weights, below.visible_bias, below.hidden_bias)
        else:
            mean = x0.mean(0).clamp(1e-3, 1 - 1e-3)
            init = (
                init_scale * torch.randn(n_visible, n_hidden, generator=gen, dtype=x0.dtype),
                torch.log(mean) - torch.log1p(-mean),
                torch.zeros(n_hidden, dtype=x0.dtype),
            )
        names = [f"dbn.layer{layer}.{n}" for n in ("weights", "visible_bias", "hidden_bias")]
        for n in names:
            if n in store:
                del store[n]

        def model(batch, init=init, names=names):
            w, b, c = (pyro.param(n, t.detach().clone()) for n, t in zip(names, init))
            with pyro.plate("data", batch.shape[0]):
                pyro.sample("h", RBM(w, b, c), obs=batch)

        trainer = SAMLE(model, optim, **samle_kwargs)
        trainer.run(
            layer_data,
            num_epochs=epochs[layer - first],
            batch_size=batch_size,
            seed=seed + layer,
            progress_bar=progress_bar,
        )
        rbms.append(RBM(*(store[n].detach().clone() for n in names)))
    return rbms


class DBNClassifier(torch.nn.Module):
    """The feed-forward classifier made from a DBN for discriminative fine-tuning:
    ``x -> g(x W^(1) + c^(1)) -> ... -> g(. W^(L) + c^(L)) -> logits``
    (:func:`~ebm_ppl.models.dbn.feedforward_logits`), the hidden layers initialised from the
    DBN's recognition weights and the output layer from ``N(0, 0.01^2)``, as in Hinton &
    Salakhutdinov (2006). ``forward(x)`` returns ``(n, num_classes)`` logits.
    """

    def __init__(self, dbn: DBN, num_classes: int, generator: torch.Generator | None = None):
        super().__init__()
        if not isinstance(dbn, DBN):
            raise TypeError(f"dbn must be an ebm_ppl.pyro.DBN, got {type(dbn).__name__}")
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        p = dbn.params
        dtype = p.weights[0].dtype
        out_w = 0.01 * torch.randn(dbn.sizes[-1], num_classes, generator=generator, dtype=dtype)
        self.weights = torch.nn.ParameterList(
            [torch.nn.Parameter(w.detach().clone()) for w in p.weights]
            + [torch.nn.Parameter(out_w)]
        )
        self.biases = torch.nn.ParameterList(
            [torch.nn.Parameter(c.detach().clone()) for c in p.up_biases]
            + [torch.nn.Parameter(torch.zeros(num_classes, dtype=dtype))]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return feedforward_logits(list(self.weights), list(self.biases), x)


def fine_tune(
    classifier: DBNClassifier,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    num_epochs: int = 10,
    batch_size: int = 100,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    seed: int = 0,
    x_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    progress_bar: bool | None = None,
) -> list[dict]:
    """Backpropagation fine-tuning of ``classifier`` on labels ``y`` (``(n,)`` integers):
    cross-entropy, SGD with momentum, shuffled minibatches (order from ``seed``). Returns one
    record per epoch: ``epoch``, ``train_loss`` (mean over the epoch), ``train_error`` and,
    with ``x_test``/``y_test``, ``test_error`` (fractions)."""
    from tqdm.auto import tqdm

    from ebm_ppl.inference.samle import batch_indices
    from ebm_ppl.models.dbn import check_labels

    check_labels(x, y, classifier.weights[0].shape[0], "x", "y")
    if x_test is not None:
        check_labels(x_test, y_test, classifier.weights[0].shape[0], "x_test", "y_test")
    y = torch.as_tensor(y, dtype=torch.long)
    opt = torch.optim.SGD(
        classifier.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    history = []
    disable = None if progress_bar is None else not progress_bar
    for epoch in tqdm(range(num_epochs), disable=disable, desc="fine-tune", unit="epoch"):
        idx_all = torch.as_tensor(batch_indices(x.shape[0], batch_size, seed, epoch))
        total, wrong = 0.0, 0
        for idx in idx_all:
            logits = classifier(x[idx])
            loss = torch.nn.functional.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            wrong += int((logits.argmax(-1) != y[idx]).sum())
        seen = idx_all.numel()
        rec = {"epoch": epoch + 1, "train_loss": total / seen, "train_error": wrong / seen}
        if x_test is not None:
            rec["test_error"] = classification_error(classifier, x_test, y_test)
        history.append(rec)
    return history


def classification_error(classifier: DBNClassifier, x: torch.Tensor, y) -> float:
    """The fraction of rows of ``x`` whose arg-max logit differs from the label ``y``."""
    with torch.no_grad():
        pred = torch.cat(
            [classifier(x[i : i + 10_000]).argmax(-1) for i in range(0, len(x), 10_000)]
        )
    return float((pred != torch.as_tensor(y, dtype=torch.long)).double().mean())
