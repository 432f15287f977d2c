"""Deep belief networks as ordinary Pyro programs (:mod:`ebm_ppl.models.dbn` holds the math)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from tqdm.auto import tqdm

from ebm_ppl.inference.ais import summarize
from ebm_ppl.inference.cg import minimize_minibatches
from ebm_ppl.inference.greedy import LayerTrainer, greedy_dbn_layers
from ebm_ppl.inference.samle import batch_indices, epoch_data
from ebm_ppl.models.dbn import (
    DBNBase,
    DBNParams,
    GreedyLayerDataBase,
    build_guide,
    build_model,
    check_fine_tune_args,
    check_labels,
    feedforward_logits,
    log_z_of,
    propagate_up,
)
from ebm_ppl.pyro import ppl
from ebm_ppl.pyro.device import randn_like
from ebm_ppl.pyro.distributions import RBM
from ebm_ppl.pyro.samle import SAMLE

__all__ = [
    "DBN",
    "DBNClassifier",
    "GreedyLayerData",
    "classification_error",
    "dbn_guide",
    "dbn_model",
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
    params = DBNParams(tuple(weights), tuple(down_biases), tuple(up_biases))
    return build_model(pyro, dist.Bernoulli, RBM, params, num_gibbs_steps)


def dbn_guide(
    weights: Sequence[torch.Tensor],
    down_biases: Sequence[torch.Tensor],
    up_biases: Sequence[torch.Tensor],
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
    params = DBNParams(tuple(weights), tuple(down_biases), tuple(up_biases))
    return build_guide(pyro, dist.Bernoulli, params, factorial)


class DBN(DBNBase):
    """A deep belief network (section 3): the parameters of a greedy stack of RBMs with the
    programs and estimators that use them.

    ``DBN(weights, down_biases, up_biases)`` (see :mod:`ebm_ppl.models.dbn` for the layout)
    or ``DBN.from_rbms([rbm1, rbm2, ...])`` (bottom first). ``.model(num_gibbs_steps)`` and
    ``.guide(factorial)`` are :func:`dbn_model` and :func:`dbn_guide`; ``.top`` is the top
    :class:`~ebm_ppl.pyro.RBM`.
    """

    _rbm_cls = RBM
    _frontend = "pyro"
    _model_fn = staticmethod(dbn_model)
    _guide_fn = staticmethod(dbn_guide)

    @staticmethod
    def _as_array(name: str, t) -> torch.Tensor:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a sequence of torch tensors, got {type(t).__name__}")
        return t.detach()

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
        with torch.no_grad():
            parts = self._bound_values(generator, data, num_samples, batch_size, lambda g, i: g)
        return summarize(torch.cat(parts), log_z, stderr)

    def classifier(self, num_classes: int, generator: torch.Generator | None = None):
        """A :class:`DBNClassifier` initialised from this DBN's recognition weights."""
        return DBNClassifier(self, num_classes, generator=generator)


class GreedyLayerData(GreedyLayerDataBase):
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

    _rbm_cls = RBM
    _frontend = "pyro"

    def __call__(self, epoch: int) -> torch.Tensor:
        """The data of epoch ``epoch``, ``(n, n_top)`` in the RBMs' dtype."""
        like = self.below[0].weights
        x = self._epoch_input(
            epoch, lambda a: torch.as_tensor(a, dtype=like.dtype, device=like.device)
        )
        gen = torch.Generator(device=like.device).manual_seed(_seed_of(self.seed, epoch))
        with torch.no_grad():
            return torch.cat(self._propagate(gen, x, lambda g, i: g))


def _seed_of(seed: int, epoch: int) -> int:

    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1)


class _LayerTrainer(LayerTrainer):
    """The Pyro steps of the greedy loops (:mod:`ebm_ppl.inference.greedy`): random starts
    drawn on the CPU from one generator seeded by ``seed`` (the same start on every device)
    and put where the data lives; parameters in the global param store, named
    ``"<model>.layer<l>.<name>"``; the layer trains where its data lives (numpy data: on
    torch's default device)."""

    ppl = ppl
    rbm_cls = RBM
    layer_data_cls = GreedyLayerData

    def __init__(self, optim, samle_kwargs: dict, seed: int) -> None:
        self.optim, self.samle_kwargs = optim, samle_kwargs
        self.gen = torch.Generator(device="cpu").manual_seed(seed)

    def first_batch(self, layer_data) -> torch.Tensor:
        return torch.as_tensor(  # device: the data's
            epoch_data(layer_data, 0), dtype=torch.get_default_dtype()
        )

    def noise(self, layer: int, x0: torch.Tensor, n_hidden: int) -> torch.Tensor:
        shape = (x0.shape[-1], n_hidden)
        return torch.randn(shape, generator=self.gen, dtype=x0.dtype, device="cpu").to(x0.device)

    def param_names(self, prefix: str, layer: int, names: Sequence[str]) -> list[str]:
        store = pyro.get_param_store()
        names = [f"{prefix}.layer{layer}.{n}" for n in names]
        for n in names:
            if n in store:
                del store[n]
        return names

    def fit(self, layer, model, layer_data, x0, names, run_kwargs, checkpoint):
        trainer = SAMLE(model, self.optim, **self.samle_kwargs)
        if checkpoint is not None and checkpoint.exists():
            trainer.load(checkpoint)
        trainer.run(layer_data, checkpoint=checkpoint, **run_kwargs)
        store = pyro.get_param_store()
        return tuple(store[n].detach().clone() for n in names)


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

    trainer = _LayerTrainer(optim, samle_kwargs, seed)
    return greedy_dbn_layers(
        trainer,
        data,
        hidden_sizes,
        num_epochs=num_epochs,
        batch_size=batch_size,
        mode=mode,
        tie_weights=tie_weights,
        init_scale=init_scale,
        seed=seed,
        progress_bar=progress_bar,
        below=below,
    )


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
        out_w = 0.01 * randn_like((dbn.sizes[-1], num_classes), generator, p.weights[0])
        self.weights = torch.nn.ParameterList(
            [torch.nn.Parameter(w.detach().clone()) for w in p.weights]
            + [torch.nn.Parameter(out_w)]
        )
        self.biases = torch.nn.ParameterList(
            [torch.nn.Parameter(c.detach().clone()) for c in p.up_biases]
            + [torch.nn.Parameter(p.weights[0].new_zeros(num_classes))]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return feedforward_logits(list(self.weights), list(self.biases), x)


def fine_tune(
    classifier: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    num_epochs: int = 10,
    batch_size: int | None = None,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    seed: int = 0,
    x_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    progress_bar: bool | None = None,
    optimizer: torch.optim.Optimizer | str | None = None,
    first_epoch: int = 0,
    cg_line_searches: int = 3,
) -> list[dict]:
    """Backpropagation fine-tuning of ``classifier`` (a :class:`DBNClassifier` or
    :class:`~ebm_ppl.pyro.DBMClassifier`, whose inputs are ``dbm.augment(x)``) on labels ``y``
    (``(n,)`` integers): the mean cross-entropy of shuffled minibatches (the order of epoch
    ``e`` from ``(seed, e)``; epochs are numbered from ``first_epoch``, so training in several
    calls sees the same orders as one call), minimized by

    * ``optimizer=None`` or ``"sgd"`` (default): SGD with momentum (``lr``, ``momentum``,
      ``weight_decay``), one update per minibatch of ``batch_size`` (default 100);
    * a ``torch.optim.Optimizer`` over ``classifier.parameters()`` (which keeps its state, e.g.
      momentum, across calls), one update per minibatch;
    * ``"cg"``: Polak–Ribière conjugate gradients (:mod:`ebm_ppl.inference.cg`), as in Hinton &
      Salakhutdinov (2006): ``cg_line_searches`` (default 3) Wolfe–Powell line searches on each
      minibatch of ``batch_size`` (default 1000) in turn, starting afresh along steepest
      descent on each. It trains the parameters with ``requires_grad`` (freeze a layer by
      turning it off); ``lr`` and ``momentum`` are not used.

    Returns one record per epoch: ``epoch``, ``train_loss`` (the mean over the epoch of each
    minibatch's loss before its update), ``train_error`` (likewise) and, with
    ``x_test``/``y_test``, ``test_error`` (fractions); with ``"cg"`` also ``cg_evals``
    (loss-and-gradient evaluations) and ``cg_failed`` (line searches that stopped without
    meeting the Wolfe–Powell conditions)."""

    use_cg = check_fine_tune_args(optimizer, "optimizer", cg_line_searches)
    if use_cg and weight_decay != 0:
        raise ValueError(
            f"weight_decay applies to the SGD optimizer only, got {weight_decay!r} with "
            "optimizer='cg'"
        )
    if batch_size is None:
        batch_size = 1000 if use_cg else 100
    n_in = getattr(classifier, "input_size", None) or classifier.weights[0].shape[0]
    check_labels(x, y, n_in, "x", "y")
    if x_test is not None:
        check_labels(x_test, y_test, n_in, "x_test", "y_test")
    y = torch.as_tensor(y, dtype=torch.long, device=x.device)
    if not use_cg:
        opt = (
            optimizer
            if optimizer is not None and not isinstance(optimizer, str)
            else torch.optim.SGD(
                classifier.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
            )
        )
    history = []
    disable = None if progress_bar is None else not progress_bar
    epochs = range(first_epoch, first_epoch + num_epochs)
    for epoch in tqdm(epochs, disable=disable, desc="fine-tune", unit="epoch"):
        order = batch_indices(x.shape[0], batch_size, seed, epoch)
        idx_all = torch.as_tensor(order, device=x.device)
        if use_cg:
            rec = _cg_epoch(classifier, x, y, idx_all, cg_line_searches)
            rec = {"epoch": epoch + 1, **rec}
        else:
            # summed on the device and read once per epoch (no wait for the device per update)
            total = wrong = x.new_zeros((), dtype=torch.float64)
            for idx in idx_all:
                logits = classifier(x[idx])
                loss = torch.nn.functional.cross_entropy(logits, y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total = total + loss.detach().double() * len(idx)
                wrong = wrong + (logits.argmax(-1) != y[idx]).sum()
            seen = idx_all.numel()
            rec = {
                "epoch": epoch + 1,
                "train_loss": float(total) / seen,
                "train_error": int(wrong) / seen,
            }
        if x_test is not None:
            rec["test_error"] = classification_error(classifier, x_test, y_test)
        history.append(rec)
    return history


def _cg_epoch(
    classifier: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batches: torch.Tensor,
    line_searches: int,
) -> dict:
    """One epoch of minibatch conjugate gradients (:func:`ebm_ppl.inference.cg.
    minimize_minibatches`) over the rows ``batches`` of ``x``: the trainable parameters as
    one float64 vector, loss and gradient by torch autograd; the result written back."""

    params = [p for p in classifier.parameters() if p.requires_grad]
    if not params:
        raise ValueError("classifier has no parameters with requires_grad to fine-tune")
    sizes = [p.numel() for p in params]

    def write(v: np.ndarray) -> None:
        with torch.no_grad():
            flat = torch.from_numpy(v)  # device: host view; copy_ moves each chunk
            for p, chunk in zip(params, flat.split(sizes)):
                p.copy_(chunk.view_as(p))  # casts to the parameter's dtype and device

    def evaluate(v: np.ndarray, b: int) -> tuple[float, np.ndarray, float]:
        write(v)
        idx = batches[b]
        logits = classifier(x[idx])
        loss = torch.nn.functional.cross_entropy(logits, y[idx])
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        g = torch.cat(
            [(torch.zeros_like(p) if d is None else d).reshape(-1) for p, d in zip(params, grads)]
        )
        wrong = (logits.argmax(-1) != y[idx]).sum()
        stats = torch.stack([loss.detach().double(), wrong.double()]).cpu()
        return float(stats[0]), g.double().cpu().numpy(), float(stats[1])

    x0 = torch.cat([p.detach().reshape(-1) for p in params]).double().cpu().numpy()
    pos, info = minimize_minibatches(
        evaluate, x0, batches.shape[0], max_line_searches=line_searches
    )
    write(pos)
    return {
        "train_loss": float(info.values.mean()),
        "train_error": float(info.aux.sum()) / batches.numel(),
        "cg_evals": info.num_evals,
        "cg_failed": info.num_failed,
    }


def classification_error(classifier: torch.nn.Module, x: torch.Tensor, y) -> float:
    """The fraction of rows of ``x`` whose arg-max logit differs from the label ``y``."""
    with torch.no_grad():
        pred = torch.cat(
            [classifier(x[i : i + 10_000]).argmax(-1) for i in range(0, len(x), 10_000)]
        )
    return float((pred != torch.as_tensor(y, dtype=torch.long, device=pred.device)).double().mean())
