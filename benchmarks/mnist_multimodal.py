"""A multimodal DBM on MNIST with constructed tags (NumPyro): pretraining, joint SA-MLE, and
the evaluation of the review's section 5 (classification, tag generation, retrieval).

The data: MNIST digits as standardized intensities (a Gaussian pathway with sigma = 1) and a
bag of tags from the documented tagging process of :mod:`ebm_ppl.datasets.tagged_digits`
(constructed, not real tagging). The last ``--n-val`` (10,000) of the ``--n-train`` training
items are a validation split that no stage trains on. Stages, each checkpointed under ``--out``
so a rerun resumes:

1. pretraining, CD-1 with ``SAMLE(persistent=False)``: a GaussianRBM on the images, an RBM on
   its hidden probabilities; a ReplicatedSoftmax on the tags, an RBM on its hidden
   probabilities; an RBM on the two top layers (the joint layer);
2. the multimodal DBM from those weights (interior weights halved, since every interior layer
   of the DBM has two neighbours), trained jointly by SA-MLE (mean-field positive phase,
   100 persistent chains whose document lengths are drawn from the training lengths), at most
   ``--epochs`` (5) epochs, every epoch's parameters kept;
3. early stopping: for each kept epoch (0 = the composed pretrained model) a logistic
   regression on three jointly inferred representations, scored on the validation split (and
   on the test set, reported only), with the tag precision and the R² of the joint layer from
   one modality (the trade-off experiment); the best (epoch, representation) on validation is
   the model evaluated next (``mmdbm_<seed>_chosen.safetensors``, ``chosen.json``);
4. evaluation on the test set: linear classifiers (scikit-learn logistic regression) on each
   representation, with and without the text; precision@k of generated tags against the
   tagging process; mean average precision of image retrieval from one-word queries and from
   multimodal queries (every test image + its tags queries the other test items, ranked by
   the cosine of their representations: joint vs image-only vs text-only codes); a
   Figure-13-style listing of the top words every 50 Gibbs sweeps; a Pyro check that the
   trained model gives the same representations in both backends.

One JSON line per measurement on stdout. Example::

    EBM_PPL_DATA=../shared/data python benchmarks/mnist_multimodal.py \\
        --out benchmarks/runs/mm5 --epochs 5

``benchmarks/finetune_multimodal.py`` then fine-tunes the chosen model and its peers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax

import ebm_ppl.numpyro as enp
from ebm_ppl.datasets.tagged_digits import (
    VOCABULARY,
    average_precision,
    cosine_retrieval_map,
    load_tagged_mnist,
    precision_at_k,
    relevant_words,
    standardize,
    synonym_words,
)
from ebm_ppl.io import load_model, save_model
from ebm_ppl.models.multimodal import combine_pretrained_pathways

RECORDS: list = []  # every measurement of this run, for the summary


def emit(**kw):
    RECORDS.append(kw)
    print(json.dumps(kw), flush=True)


def summary(records: list, args_line: str) -> dict:
    """The headline numbers of a run (its JSON lines ``records``) for
    ``benchmarks/paper_table.py``: the accuracy of the jointly inferred representation chosen
    on the validation split (SA epoch and representation), the baselines, the snapshots along
    training and the retrieval MAPs. Also usable on a saved log:
    ``summary([json.loads(line) for line in open(log)], ...)``."""
    acc = {r["representation"]: r["test_accuracy"] for r in records if r["stage"] == "classify"}
    trade = [r for r in records if r["stage"] == "tradeoff"]
    choice = next(r for r in records if r["stage"] == "choice")
    names = {
        "joint": "joint layer",
        "h2m_joint_h2t": "[h2m, joint, h2t]",
        "all_hidden": "every hidden layer",
    }
    return {
        "ours": round(100 * choice["test_accuracy"], 2),
        "stderr": None,
        "metric": (
            "MNIST test accuracy, % (10,000 test digits with constructed tags; logistic "
            "regression on 20,000 training codes): the multimodal DBM's mean-field "
            f"representation ({names[choice['representation']]}) given image and tags, after "
            f"{choice['epoch']} epochs of joint SA-MLE (epoch and representation chosen on a "
            "10,000-item validation split of the training set)"
        ),
        "baselines": {name: round(100 * acc[name], 2) for name in acc},
        "choice": {k: v for k, v in choice.items() if k != "stage"},
        "tradeoff": [{k: v for k, v in r.items() if k != "stage"} for r in trade],
        "tag_precision_at_1": next(
            r["precision_model"] for r in records if r["stage"] == "tag_generation" and r["k"] == 1
        ),
        "retrieval_map": {
            k: r[k]
            for r in records
            if r["stage"] == "retrieval"
            for k in ("map_joint_cosine", "map_word_probability", "map_random")
        },
        "retrieval_multimodal_map": {
            r["representation"]: r["map"] for r in records if r["stage"] == "retrieval_multimodal"
        },
        "command": "EBM_PPL_DATA=../shared/data python benchmarks/mnist_multimodal.py " + args_line,
    }


class SampledHidden:
    """Greedy-layer data: fresh Bernoulli draws of fixed hidden probabilities each epoch."""

    def __init__(self, probs, seed):
        self.probs, self.seed = jnp.asarray(probs), seed

    def __len__(self):
        return int(self.probs.shape[0])

    def __call__(self, epoch):
        key = jax.random.fold_in(jax.random.PRNGKey(self.seed), epoch)
        return jax.random.bernoulli(key, self.probs).astype(jnp.float32)


def pretrain(kind, data, n_hidden, args, seed, out):
    """CD-1 for one layer; returns the trained distribution (cached in ``out``)."""
    path = out / f"pre_{seed}_{kind}_{n_hidden}.safetensors"
    if path.exists():
        return load_model(path, backend="jax")
    x0 = data(0) if callable(data) else data
    n_vis = int(x0.shape[1])
    rng = np.random.default_rng(seed)
    w0 = jnp.asarray(0.01 * rng.standard_normal((n_vis, n_hidden)), jnp.float32)

    def build(w, b, c):
        if kind == "gaussian":
            return enp.GaussianRBM(w, b, c, 1.0)
        if kind == "rsm":
            return enp.ReplicatedSoftmax(w, b, c, max_words=8)
        return enp.RBM(w, b, c)

    def model(batch):
        w = numpyro.param("W", w0)
        b = numpyro.param("b", jnp.zeros(n_vis))
        c = numpyro.param("c", jnp.zeros(n_hidden))
        with numpyro.plate("data", batch.shape[0]):
            numpyro.sample("v", build(w, b, c), obs=batch)

    lr = args.pre_lr_gauss if kind == "gaussian" else args.pre_lr
    steps = args.pre_epochs * (len(data) // 100)
    opt = optax.chain(
        optax.add_decayed_weights(2e-4),
        optax.sgd(optax.linear_schedule(lr, lr * 0.1, steps), momentum=0.9),
    )
    tr = enp.SAMLE(model, opt, num_gibbs_steps=1, persistent=False)
    t0 = time.time()
    st = tr.run(jax.random.PRNGKey(seed), data, num_epochs=args.pre_epochs, batch_size=100)
    p = tr.get_params(st)
    d = build(p["W"], p["b"], p["c"])
    save_model(path, d, seconds=time.time() - t0)
    emit(
        stage="pretrain",
        layer=kind,
        n_hidden=n_hidden,
        epochs=args.pre_epochs,
        recon=tr.history[-1]["recon_error"],
        seconds=round(time.time() - t0, 1),
    )
    return d


def chance_map(labels: np.ndarray) -> float:
    """The expected MAP of a random ranking, approximated by the fraction of relevant items
    in each query's database (``(n_c - 1) / (N - 1)``), averaged over the queries."""
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    return float(np.mean((counts[labels] - 1) / (len(labels) - 1)))


def up(rbm, probs):
    """``p(h = 1 | v)`` of a binary RBM at real-valued inputs (mean-field propagation)."""
    return jax.nn.sigmoid(jnp.asarray(probs) @ rbm.weights + rbm.hidden_bias)


def build_mm(prm, total_count, mf_iters):
    return enp.MultimodalDBM(
        image_weights=[prm["iw0"], prm["iw1"]],
        image_biases=[prm["ib0"], prm["ib1"], prm["ib2"]],
        text_weights=[prm["tw0"], prm["tw1"]],
        text_biases=[prm["tb0"], prm["tb1"], prm["tb2"]],
        joint_weights=[prm["jw0"], prm["jw1"]],
        joint_bias=prm["jb"],
        sigma=1.0,
        total_count=total_count,
        max_words=8,
    )


def pretrain_cd(data, sizes, args, s, out):
    """Stage 1: greedy CD-1 pretraining of the five RBMs (``pretrain``, cached in ``out``):
    a Gaussian RBM on the images ``data[0]`` and an RBM on its hidden probabilities, a
    replicated softmax on the tags ``data[1]`` and an RBM on its hidden probabilities, and
    the joint RBM on the two top layers. ``sizes``: (image 1, image 2, text 1, text 2,
    joint). Returns ``(r1, r2, t1, t2, rj)``."""
    xtr, ttr = data
    f1, f2, g1, g2, nj = sizes
    r1 = pretrain("gaussian", jnp.asarray(xtr), f1, args, s, out)
    p1 = np.asarray(r1.hidden_probs(jnp.asarray(xtr)))
    r2 = pretrain("rbm", SampledHidden(p1, s + 1), f2, args, s + 1, out)
    q2 = np.asarray(up(r2, p1))
    t1 = pretrain("rsm", jnp.asarray(ttr), g1, args, s + 2, out)
    u1 = np.asarray(t1.hidden_probs(jnp.asarray(ttr)))
    t2 = pretrain("rbm", SampledHidden(u1, s + 3), g2, args, s + 3, out)
    u2 = np.asarray(up(t2, u1))
    rj = pretrain("rbm", SampledHidden(np.concatenate([q2, u2], 1), s + 4), nj, args, s + 4, out)
    return r1, r2, t1, t2, rj


def init_from_stack(r1, r2, t1, t2, rj):
    """The multimodal DBM's initial parameters (``build_mm``'s names) from the CD-1 stack:
    :func:`combine_pretrained_pathways` (interior weights halved)."""
    pw = combine_pretrained_pathways(
        [(r.weights, r.visible_bias, r.hidden_bias) for r in (r1, r2)],
        [(t1.weights, t1.word_bias, t1.hidden_bias), (t2.weights, t2.visible_bias, t2.hidden_bias)],
        (rj.weights, rj.visible_bias, rj.hidden_bias),
    )
    names = {"iw": ("image_weights", 2), "ib": ("image_biases", 3), "tw": ("text_weights", 2)}
    names.update({"tb": ("text_biases", 3), "jw": ("joint_weights", 2)})
    init = {f"{k}{i}": pw[a][i] for k, (a, n) in names.items() for i in range(n)}
    init["jb"] = pw["joint_bias"]
    return {k: jnp.asarray(v) for k, v in init.items()}


def sa_trainer(init, total, args, per_epoch):
    """The joint SA-MLE of the multimodal DBM from parameters ``init``: a mean-field positive
    phase (``args.mf_iters``), 100 persistent chains with ``args.gibbs`` sweeps, SGD with
    weight decay 2e-4 on the weights, lr ``args.lr`` decayed linearly to 0 over ``args.epochs``
    epochs of ``per_epoch`` steps, momentum 0.5 for 5 epochs and 0.9 after."""

    def model(batch):
        prm = {k: numpyro.param(k, v) for k, v in init.items()}
        with numpyro.plate("data", batch.shape[0]):
            d = build_mm(prm, total, args.mf_iters).visible(num_iters=args.mf_iters)
            numpyro.sample("x", d, obs=batch)

    momentum = optax.join_schedules(
        [optax.constant_schedule(0.5), optax.constant_schedule(0.9)], [5 * per_epoch]
    )
    opt = optax.chain(
        optax.add_decayed_weights(2e-4, mask=lambda p: {k: "w" in k for k in p}),
        optax.inject_hyperparams(optax.sgd)(
            optax.linear_schedule(args.lr, 0.0, args.epochs * per_epoch), momentum=momentum
        ),
    )
    return enp.SAMLE(model, opt, num_gibbs_steps=args.gibbs, num_chains=100)


def free_energy(kind, p, v):
    """Free energy (per row of ``v``) of the modified pretraining RBMs of Salakhutdinov &
    Hinton's DBM pretraining: ``gauss2`` / ``rsm2`` see their visible layer twice (two tied,
    always equal copies: ``p(h | v) = g(2 v W + c)``; sigma 1 for the Gaussian, hidden bias
    scaled by the document length once for the replicated softmax); ``top2`` has two
    independent copies of its hidden layer (``p(v | h, h') = g(W (h + h') + b)``)."""
    w, b, c = p["w"], p["b"], p["c"]
    if kind == "gauss2":
        return ((v - b) ** 2).sum(-1) - jax.nn.softplus(2 * v @ w + c).sum(-1)
    if kind == "rsm2":
        m = v.sum(-1, keepdims=True)
        return -2 * (v @ b) - jax.nn.softplus(2 * v @ w + m * c).sum(-1)
    return -(v @ b) - 2 * jax.nn.softplus(v @ w + c).sum(-1)


def negative(kind, p, v, key):
    """One CD sweep of the modified RBM from ``v`` (the tied copies kept equal)."""
    w, b, c = p["w"], p["b"], p["c"]
    k1, k2 = jax.random.split(key)
    if kind == "gauss2":
        h = jax.random.bernoulli(k1, jax.nn.sigmoid(2 * v @ w + c)).astype(v.dtype)
        return b + h @ w.T + jax.random.normal(k2, v.shape)
    if kind == "rsm2":
        m = v.sum(-1, keepdims=True)
        h = jax.random.bernoulli(k1, jax.nn.sigmoid(2 * v @ w + m * c)).astype(v.dtype)
        draws = jax.random.categorical(k2, (b + h @ w.T)[:, None, :], shape=(len(v), 8))
        keep = (jnp.arange(8)[None, :] < m).astype(v.dtype)
        return (jax.nn.one_hot(draws, v.shape[1]) * keep[..., None]).sum(1)
    h = jax.random.bernoulli(k1, jax.nn.sigmoid(v @ w + c), (2, len(v), w.shape[1])).astype(v.dtype)
    return jax.random.bernoulli(k2, jax.nn.sigmoid(h.sum(0) @ w.T + b)).astype(v.dtype)


def train_modified(kind, data, n_hidden, lr, seed, out, sampled=False, epochs=20):
    """CD-1 of a modified RBM (:func:`free_energy`), with ``mnist_multimodal.py``'s pretraining
    settings (minibatch 100, momentum 0.9, lr decayed linearly to a tenth, weight decay
    2e-4); ``sampled``: fresh Bernoulli draws of ``data`` (probabilities) every epoch. Cached
    in ``out``."""
    from safetensors.numpy import load_file, save_file

    path = out / f"pre2_{seed}_{kind}_{n_hidden}.safetensors"
    if path.exists():
        return {k: jnp.asarray(v) for k, v in load_file(path).items()}
    t0 = time.time()
    n, d = data.shape
    rng = np.random.default_rng(seed)
    w0 = 0.01 * rng.standard_normal((d, n_hidden))
    p = {"w": jnp.asarray(w0, jnp.float32), "b": jnp.zeros(d), "c": jnp.zeros(n_hidden)}
    opt = optax.chain(
        optax.add_decayed_weights(2e-4, mask={"w": True, "b": False, "c": False}),
        optax.sgd(optax.linear_schedule(lr, lr * 0.1, epochs * (n // 100)), momentum=0.9),
    )
    st = opt.init(p)

    @jax.jit
    def step(p, st, v, key):
        vn = jax.lax.stop_gradient(negative(kind, p, v, key))
        g = jax.grad(lambda q: free_energy(kind, q, v).mean() - free_energy(kind, q, vn).mean())(p)
        u, st = opt.update(g, st, p)
        return optax.apply_updates(p, u), st

    key, dj = jax.random.PRNGKey(seed), jnp.asarray(data)
    for _ in range(epochs):
        key, kp, kb = jax.random.split(key, 3)
        src = jax.random.bernoulli(kb, dj).astype(jnp.float32) if sampled else dj
        perm = jax.random.permutation(kp, n)
        for i in range(n // 100):
            key, k = jax.random.split(key)
            p, st = step(p, st, src[perm[i * 100 : (i + 1) * 100]], k)
    save_file({k: np.asarray(v) for k, v in p.items()}, str(path))
    emit(
        stage="pretrain_modified", kind=kind, n_hidden=n_hidden, seconds=round(time.time() - t0, 1)
    )
    return p


def pretrain_doubling(xtr, ttr, rec, s, out, sizes=(256, 256, 64, 64, 256)):
    """Salakhutdinov & Hinton's DBM pretraining for the multimodal DBM: the two bottom RBMs
    (Gaussian, replicated softmax) with doubled bottom-up input, the joint RBM with doubled
    top-down input, the middle RBMs plain (CD-1, ``mnist_multimodal.py``'s) and halved; the
    bottom and joint weights enter the DBM as learned, inner biases are the mean of their two
    RBMs' (the first text layer keeps the replicated softmax's). ``sizes``: the hidden layers
    (image 1, image 2, text 1, text 2, joint). Returns the DBM's initial parameters and the
    pretrained layers ``(g, r2, t1, t2, j)`` (the modified ones as dicts ``w``, ``b``, ``c``)."""
    f1, f2, g1, g2, nj = sizes
    out = out / "doubling"  # its own cache: the middle RBMs see other data than the CD stack's
    out.mkdir(parents=True, exist_ok=True)
    g = train_modified("gauss2", xtr, f1, rec.pre_lr_gauss, s, out, epochs=rec.pre_epochs)
    p1 = np.asarray(jax.nn.sigmoid(2 * jnp.asarray(xtr) @ g["w"] + g["c"]))
    r2 = pretrain("rbm", SampledHidden(p1, s + 1), f2, rec, s + 1, out)
    q2 = np.asarray(up(r2, p1))
    t1 = train_modified("rsm2", ttr, g1, rec.pre_lr, s + 2, out, epochs=rec.pre_epochs)
    m = ttr.sum(1, keepdims=True)
    u1 = np.asarray(jax.nn.sigmoid(2 * jnp.asarray(ttr) @ t1["w"] + m * t1["c"]))
    t2 = pretrain("rbm", SampledHidden(u1, s + 3), g2, rec, s + 3, out)
    u2 = np.asarray(up(t2, u1))
    j = train_modified(
        "top2", np.concatenate([q2, u2], 1), nj, rec.pre_lr, s + 4, out, True, rec.pre_epochs
    )
    init = compose_parts(g, r2, t1, t2, j, halve_joint=False)
    return init, (g, r2, t1, t2, j)


def compose_parts(img_bottom, img_mid, txt_bottom, txt_mid, joint, halve_joint):
    """The multimodal DBM's initial parameters (``build_mm``'s names) from pretrained parts:
    the bottom RBMs as dicts ``w, b, c`` (weights as learned), the middle RBMs (halved), and
    the joint RBM as a dict ``w, b, c`` over ``[top image layer, top text layer]`` (weights
    halved when ``halve_joint``, for a plain CD-1 joint RBM; as learned for one pretrained
    with a doubled hidden layer). An inner layer's bias is the mean of its two RBMs'; the
    ``M``-scaled first text layer keeps the replicated softmax's."""
    ni = int(img_mid.weights.shape[1])
    half = 0.5 if halve_joint else 1.0
    init = {
        "iw0": img_bottom["w"],
        "iw1": 0.5 * img_mid.weights,
        "ib0": img_bottom["b"],
        "ib1": 0.5 * (img_bottom["c"] + img_mid.visible_bias),
        "ib2": 0.5 * (img_mid.hidden_bias + joint["b"][:ni]),
        "tw0": txt_bottom["w"],
        "tw1": 0.5 * txt_mid.weights,
        "tb0": txt_bottom["b"],
        "tb1": txt_bottom["c"],
        "tb2": 0.5 * (txt_mid.hidden_bias + joint["b"][ni:]),
        "jw0": half * joint["w"][:ni],
        "jw1": half * joint["w"][ni:],
        "jb": joint["c"],
    }
    return {k: jnp.asarray(v) for k, v in init.items()}


def pretrain_joint_doubling(stack, data, rec, s, out, n_joint=256):
    """The CD-1 pathways of ``stack`` (``pretrain_cd``'s ``(r1, r2, t1, t2, rj)``; ``rj``
    unused) with the joint RBM pretrained for its place in the DBM instead: two copies of its
    hidden layer (``top2``, trained on fresh draws of the pathways' top codes of ``data`` =
    ``(images, tags)``, cached in ``out/composition/cd_cd`` as ``multimodal_composition.py``
    names it) and its weights kept. Returns the DBM's initial parameters."""
    r1, r2, t1, t2, _ = stack
    xtr, ttr = (jnp.asarray(a) for a in data)
    codes = np.concatenate(
        [np.asarray(up(r2, r1.hidden_probs(xtr))), np.asarray(up(t2, t1.hidden_probs(ttr)))], 1
    )
    folder = out / "composition" / "cd_cd"
    folder.mkdir(parents=True, exist_ok=True)
    j = train_modified("top2", codes, n_joint, rec.pre_lr, s + 4, folder, True, rec.pre_epochs)

    def bottom(r, b):
        return {"w": r.weights, "b": b, "c": r.hidden_bias}

    return compose_parts(
        bottom(r1, r1.visible_bias), r2, bottom(t1, t1.word_bias), t2, j, halve_joint=False
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/runs/multimodal")
    ap.add_argument(
        "--data-root",
        default=None,
        help="folder holding the MNIST .gz files (default: $EBM_PPL_DATA, then the cache)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--data-seed",
        type=int,
        default=0,
        help="seed of the constructed tags (the dataset); --seed varies the model only",
    )
    ap.add_argument("--image-sizes", type=int, nargs=2, default=[256, 256])
    ap.add_argument("--text-sizes", type=int, nargs=2, default=[64, 64])
    ap.add_argument("--joint", type=int, default=256)
    ap.add_argument("--pre-epochs", type=int, default=20)
    ap.add_argument("--pre-lr", type=float, default=0.05)
    ap.add_argument("--pre-lr-gauss", type=float, default=0.002)
    ap.add_argument(
        "--epochs",
        type=int,
        default=5,
        help="SA-MLE epochs at most; the snapshot used is chosen on the validation split",
    )
    ap.add_argument("--lr", type=float, default=0.0005)
    ap.add_argument("--mf-iters", type=int, default=10)
    ap.add_argument("--gibbs", type=int, default=5)
    ap.add_argument("--n-train", type=int, default=60000)
    ap.add_argument("--n-eval", type=int, default=10000)
    ap.add_argument(
        "--n-val",
        type=int,
        default=10000,
        help="the last N of the --n-train training items: a validation split, used by no "
        "training stage; the SA epoch and the representation are chosen on it",
    )
    ap.add_argument("--fill-words", type=int, default=3)
    ap.add_argument(
        "--pretrain",
        choices=("cd", "doubling", "joint-doubling"),
        default="cd",
        help="how the DBM is initialised: cd, plain CD-1 RBMs with the interior weights "
        "halved (combine_pretrained_pathways); doubling, Salakhutdinov & Hinton's DBM "
        "pretraining (pretrain_doubling); joint-doubling, the CD-1 pathways with a joint RBM "
        "pretrained with a doubled hidden layer, weights kept (pretrain_joint_doubling; "
        "multimodal_composition.py's best cell for both measures). The CD-1 pathways are "
        "the baselines every time",
    )
    ap.add_argument(
        "--summary",
        default="benchmarks/checkpoints/multimodal.json",
        help="where the headline numbers go (read by benchmarks/paper_table.py build)",
    )
    ap.add_argument(
        "--snapshots",
        default="all",
        help="SA epochs (0: the composed pretrained model) whose parameters are kept and "
        "evaluated (validation and test) next to the last epoch; 'all': every epoch",
    )
    args = ap.parse_args()
    if args.snapshots == "all":
        snapshots = list(range(args.epochs + 1))
    else:
        snapshots = sorted({int(e) for e in args.snapshots.split(",") if e.strip()})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.time()

    tr_d = load_tagged_mnist("train", seed=args.data_seed, root=args.data_root)
    te_d = load_tagged_mnist("test", seed=args.data_seed, root=args.data_root)
    n_fit = args.n_train - args.n_val
    if not 0 < args.n_val < args.n_train:
        raise SystemExit(f"--n-val must be in (0, --n-train), got {args.n_val}")
    xtr, mean, std = standardize(tr_d["images"][:n_fit])
    xva, _, _ = standardize(tr_d["images"][n_fit : args.n_train], mean, std)
    xte, _, _ = standardize(te_d["images"][: args.n_eval], mean, std)
    ttr, tva = tr_d["tags"][:n_fit], tr_d["tags"][n_fit : args.n_train]
    tte = te_d["tags"][: args.n_eval]
    ytr, yva = tr_d["labels"][:n_fit], tr_d["labels"][n_fit : args.n_train]
    yte = te_d["labels"][: args.n_eval]
    lengths = ttr.sum(1)
    emit(
        stage="data",
        n_train=len(xtr),
        n_val=len(xva),
        n_test=len(xte),
        vocabulary=len(VOCABULARY),
        untagged_train=float((lengths == 0).mean()),
        mean_tags=float(lengths.mean()),
        max_tags=int(lengths.max()),
    )

    # ---- 1. pretraining --------------------------------------------------------------------
    s = args.seed
    f1, f2 = args.image_sizes
    g1, g2 = args.text_sizes
    r1, r2, t1, t2, rj = pretrain_cd((xtr, ttr), (f1, f2, g1, g2, args.joint), args, s, out)
    init = init_from_stack(r1, r2, t1, t2, rj)
    if args.pretrain == "doubling":  # the DBM starts from S&H's pretraining; the CD-1
        # pathways above remain the unimodal and late-fusion baselines
        sizes = (f1, f2, g1, g2, args.joint)
        init, _ = pretrain_doubling(xtr, ttr.astype(np.float32), args, s, out, sizes)
    elif args.pretrain == "joint-doubling":
        stack = (r1, r2, t1, t2, rj)
        init = pretrain_joint_doubling(stack, (xtr, ttr), args, s, out, args.joint)

    # ---- 2. joint SA-MLE -------------------------------------------------------------------
    total = jnp.asarray(lengths)

    per_epoch = len(xtr) // 100
    trainer = sa_trainer(init, total, args, per_epoch)
    data = jnp.asarray(np.concatenate([xtr, ttr], 1))
    ck = out / f"joint_{s}.safetensors"
    key = jax.random.PRNGKey(s + 10)
    state = trainer.load(ck, key, data[:100]) if ck.exists() else None
    probe = (jnp.asarray(xte[:500]), jnp.asarray(tte[:500]))
    done = 0 if state is None else int(state.optim_state[0]) // per_epoch
    if done == 0 and 0 in snapshots:
        save_model(out / f"mmdbm_{s}_epoch0.safetensors", build_mm(init, total, args.mf_iters))
    for epoch in range(done, args.epochs):
        t0 = time.time()
        state = trainer.run(
            key,
            data,
            num_epochs=epoch + 1,
            batch_size=100,
            init_state=state,
            seed=s,
            progress_bar=False,
        )
        trainer.save(ck, state)
        if epoch + 1 in snapshots:
            save_model(
                out / f"mmdbm_{s}_epoch{epoch + 1}.safetensors",
                build_mm(trainer.get_params(state), total, args.mf_iters),
                epochs=epoch + 1,
            )
        # a health check: how much each upper layer's marginals vary across test images
        mus = build_mm(trainer.get_params(state), total, args.mf_iters).mean_field(*probe)
        emit(
            stage="joint",
            epoch=epoch + 1,
            recon=trainer.history[-1]["recon_error"],
            spread={i: round(float(np.asarray(m).std(0).mean()), 4) for i, m in enumerate(mus)},
            epoch_s=round(time.time() - t0, 1),
        )
    prm = trainer.get_params(state)
    last = build_mm(prm, total, args.mf_iters)
    save_model(out / f"mmdbm_{s}.safetensors", last, epochs=args.epochs)

    # ---- 3. evaluation ---------------------------------------------------------------------
    from sklearn.linear_model import LogisticRegression

    mf = jax.jit(lambda d, im, tx: d.representation(im, tx, num_iters=50, tol=1e-4))
    mf_img = jax.jit(lambda d, im: d.mean_field(im, None, args.fill_words, num_iters=50, tol=1e-4))
    mf_txt = jax.jit(lambda d, tx: d.mean_field(None, tx, num_iters=50, tol=1e-4))
    mf_all = jax.jit(lambda d, im, tx: d.mean_field(im, tx, num_iters=50, tol=1e-4))

    def batched(fn, *xs, size=1000):
        outs = [fn(*(jnp.asarray(x[i : i + size]) for x in xs)) for i in range(0, len(xs[0]), size)]
        if isinstance(outs[0], list):
            return [np.concatenate([np.asarray(o[k]) for o in outs]) for k in range(len(outs[0]))]
        return np.concatenate([np.asarray(o) for o in outs])

    def layers_of(d, im, tx):
        return batched(lambda a, b: mf_all(d, a, b), im, tx)

    n_clf = min(len(xtr), 20000)
    rel = relevant_words(yte)

    def pathway(rbm_lo, rbm_hi, x):
        return np.asarray(up(rbm_hi, rbm_lo.hidden_probs(jnp.asarray(x))))

    h2m = {n: pathway(r1, r2, x) for n, x in (("tr", xtr[:n_clf]), ("va", xva), ("te", xte))}
    h2t = {n: pathway(t1, t2, x) for n, x in (("tr", ttr[:n_clf]), ("va", tva), ("te", tte))}
    late = {n: np.concatenate([h2m[n], h2t[n]], 1) for n in h2m}
    clf = LogisticRegression(max_iter=2000, C=1.0).fit(late["tr"], ytr[:n_clf])
    late_val = float(clf.score(late["va"], yva))
    emit(stage="validation", representation="late fusion: pretrained h2m + h2t", accuracy=late_val)

    # the snapshots along joint SA-MLE: classification (validation and test) of three jointly
    # inferred representations, tags from images, and how much of the joint layer's response
    # to image + tags each modality explains alone (the trade-off experiment). The SA epoch
    # and the representation are chosen on the validation split, never on the test set.
    choice = None
    for e in sorted(set(snapshots) | {args.epochs}):
        path = out / f"mmdbm_{s}_epoch{e}.safetensors"
        if e != args.epochs and not path.exists():
            continue
        d = last if e == args.epochs else load_model(path, backend="jax")
        j = d.joint
        rep_slices = {
            "joint": slice(j, j + 1),
            "h2m_joint_h2t": slice(j - 1, j + 2),
            "all_hidden": slice(1, len(d.sizes) - 1),
        }
        tr_l, te_l = layers_of(d, xtr[:n_clf], ttr[:n_clf]), layers_of(d, xte, tte)
        va_l = layers_of(d, xva, tva)
        row = {"stage": "tradeoff", "epoch": e}
        for name in ("joint", "h2m_joint_h2t", "all_hidden"):
            sl = rep_slices[name]
            a, v, b = (np.concatenate(ls[sl], 1) for ls in (tr_l, va_l, te_l))
            clf = LogisticRegression(max_iter=2000, C=1.0).fit(a, ytr[:n_clf])
            row[f"val_accuracy_{name}"] = float(clf.score(v, yva))
            row[f"accuracy_{name}"] = float(clf.score(b, yte))
            if choice is None or row[f"val_accuracy_{name}"] > choice["val_accuracy"]:
                choice = {
                    "epoch": e,
                    "representation": name,
                    "val_accuracy": row[f"val_accuracy_{name}"],
                    "test_accuracy": row[f"accuracy_{name}"],
                }
        im_only = batched(lambda a, d=d: mf_img(d, a), xte)
        tx_only = batched(lambda b, d=d: mf_txt(d, b), tte)
        for k in (1, 3):
            row[f"tag_precision_at_{k}"] = precision_at_k(im_only[-1], rel, k)
        # how much of the joint layer's response to image + text each modality explains
        row["joint_r2_from_image_only"] = float(
            1 - ((te_l[j] - im_only[j]) ** 2).sum() / ((te_l[j] - te_l[j].mean(0)) ** 2).sum()
        )
        row["joint_r2_from_text_only"] = float(
            1 - ((te_l[j] - tx_only[j]) ** 2).sum() / ((te_l[j] - te_l[j].mean(0)) ** 2).sum()
        )
        emit(**row)
    emit(stage="choice", late_fusion_val_accuracy=late_val, **choice)
    ce = choice["epoch"]
    mm = (
        last
        if ce == args.epochs
        else load_model(out / f"mmdbm_{s}_epoch{ce}.safetensors", backend="jax")
    )
    save_model(out / f"mmdbm_{s}_chosen.safetensors", mm, epochs=ce)
    (out / "chosen.json").write_text(json.dumps(choice) + "\n")

    # the chosen model: the classification table
    mus_tr = batched(lambda a: mf_img(mm, a), xtr[:n_clf])
    mus_te = batched(lambda a: mf_img(mm, a), xte)
    both_tr = layers_of(mm, xtr[:n_clf], ttr[:n_clf])
    both_te = layers_of(mm, xte, tte)
    j = mm.joint
    reps = {
        "raw pixels": (xtr[:n_clf], xte),
        "raw tags": (ttr[:n_clf], tte),
        "image pathway (pretrained h2m)": (h2m["tr"], h2m["te"]),
        "text pathway (pretrained h2t)": (h2t["tr"], h2t["te"]),
        "late fusion: raw pixels + raw tags": (
            np.concatenate([xtr[:n_clf], ttr[:n_clf]], 1),
            np.concatenate([xte, tte], 1),
        ),
        "late fusion: pretrained h2m + h2t (inferred separately)": (late["tr"], late["te"]),
        "multimodal joint, image + text": (both_tr[j], both_te[j]),
        "multimodal [h2m, joint, h2t], image + text": (
            np.concatenate(both_tr[j - 1 : j + 2], 1),
            np.concatenate(both_te[j - 1 : j + 2], 1),
        ),
        "multimodal every hidden layer, image + text": (
            np.concatenate(both_tr[1:-1], 1),
            np.concatenate(both_te[1:-1], 1),
        ),
        "multimodal [h2m, joint, h2t], image only (text inferred)": (
            np.concatenate([mus_tr[j - 1], mus_tr[j], mus_tr[j + 1]], 1),
            np.concatenate([mus_te[j - 1], mus_te[j], mus_te[j + 1]], 1),
        ),
        "multimodal joint, image only (text inferred)": (mus_tr[j], mus_te[j]),
        "late fusion: every pretrained layer (h1m, h2m, h2t, h1t)": (
            np.concatenate(
                [np.asarray(r1.hidden_probs(jnp.asarray(xtr[:n_clf]))), late["tr"]]
                + [np.asarray(t1.hidden_probs(jnp.asarray(ttr[:n_clf])))],
                1,
            ),
            np.concatenate(
                [np.asarray(r1.hidden_probs(jnp.asarray(xte))), late["te"]]
                + [np.asarray(t1.hidden_probs(jnp.asarray(tte)))],
                1,
            ),
        ),
    }
    for name, (a, b) in reps.items():
        t0 = time.time()
        clf = LogisticRegression(max_iter=2000, C=1.0).fit(a, ytr[:n_clf])
        emit(
            stage="classify",
            representation=name,
            n_train=n_clf,
            epoch=ce,
            test_accuracy=float(clf.score(b, yte)),
            seconds=round(time.time() - t0, 1),
        )

    # tag generation: word probabilities of the mean-field text given the image only
    mus = mus_te
    word_scores = mus[-1]
    prior = np.tile(ttr.mean(0), (len(yte), 1))  # peer: the most frequent tags overall
    for k in (1, 3, 5):
        emit(
            stage="tag_generation",
            k=k,
            precision_model=precision_at_k(word_scores, rel, k),
            precision_frequent_tags=precision_at_k(prior, rel, k),
        )

    # retrieval: one-word queries (each digit's synonyms) vs the image-only representations
    # cosine similarity of the joint marginals, centred at the database mean (otherwise the
    # units that are on for every input dominate)
    db = mus[mm.joint]
    centre = db.mean(0)
    db_n = (db - centre) / np.linalg.norm(db - centre, axis=1, keepdims=True)
    aps, aps_word = [], []
    for d in range(10):
        for w in synonym_words(d):
            q = np.zeros((1, len(VOCABULARY)), np.float32)
            q[0, w] = 1.0
            qm = mf_txt(mm, jnp.asarray(q))[mm.joint]
            qv = np.asarray(qm)[0] - centre
            aps.append(average_precision(db_n @ (qv / np.linalg.norm(qv)), yte == d))
            aps_word.append(average_precision(word_scores[:, w], yte == d))
    emit(
        stage="retrieval",
        queries=len(aps),
        map_joint_cosine=float(np.mean(aps)),
        map_word_probability=float(np.mean(aps_word)),
        map_random=0.1,
    )

    # multimodal queries (Srivastava & Salakhutdinov 2012): every test item (image + its tags)
    # queries the other test items; ranked by the cosine between representations (centred at
    # the test set's mean); relevant = the same digit. The joint representations are inferred
    # from image + tags; the unimodal ones from one modality's pathway alone.
    retrieval_reps = {
        "multimodal joint": both_te[j],
        "multimodal [h2m, joint, h2t]": np.concatenate(both_te[j - 1 : j + 2], 1),
        "multimodal every hidden layer": np.concatenate(both_te[1:-1], 1),
        "image pathway (pretrained h2m)": h2m["te"],
        "text pathway (pretrained h2t)": h2t["te"],
        "late fusion: pretrained h2m + h2t": late["te"],
        "raw pixels": xte,
        "raw tags": tte,
    }
    for name, rep in retrieval_reps.items():
        t0 = time.time()
        emit(
            stage="retrieval_multimodal",
            representation=name,
            queries=len(yte),
            map=cosine_retrieval_map(rep, yte),
            seconds=round(time.time() - t0, 1),
        )
    emit(stage="retrieval_multimodal", representation="random", map=float(chance_map(yte)))

    # Figure 13: the top words every 50 sweeps for a few test images
    res = mm.fill_in(
        jax.random.PRNGKey(s + 20),
        image=jnp.asarray(xte[:4]),
        total_count=args.fill_words,
        num_steps=250,
        every=50,
    )
    wp = np.asarray(res["word_probs"])  # (5, 4, K)
    for i in range(4):
        emit(
            stage="figure13",
            label=int(yte[i]),
            top_words=[
                [VOCABULARY[j] for j in np.argsort(-wp[r, i])[:5]] for r in range(wp.shape[0])
            ],
        )

    # both backends give the same representation of the trained model
    import torch

    pm = load_model(out / f"mmdbm_{s}_chosen.safetensors", backend="torch")
    a = np.asarray(mf(mm, jnp.asarray(xte[:200]), jnp.asarray(tte[:200])))
    b = pm.representation(
        torch.as_tensor(xte[:200]), torch.as_tensor(tte[:200]), num_iters=50, tol=1e-4
    ).numpy()
    emit(stage="backends", max_abs_diff_joint=float(np.abs(a - b).max()))
    emit(stage="total", seconds=round(time.time() - t_all, 1))
    if args.summary:
        import shlex
        import sys

        rec = summary(RECORDS, shlex.join(sys.argv[1:]))
        rec["wall_s"] = round(time.time() - t_all, 1)
        Path(args.summary).write_text(json.dumps(rec, indent=1) + "\n")


if __name__ == "__main__":
    main()
