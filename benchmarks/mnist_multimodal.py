"""A multimodal DBM on MNIST with constructed tags (NumPyro): pretraining, joint SA-MLE, and
the evaluation of the review's section 5 (classification, tag generation, retrieval).

The data: MNIST digits as standardized intensities (a Gaussian pathway with sigma = 1) and a
bag of tags from the documented tagging process of :mod:`ebm_ppl.datasets.tagged_digits`
(constructed, not real tagging). Stages, each checkpointed under ``--out`` so a rerun resumes:

1. pretraining, CD-1 with ``SAMLE(persistent=False)``: a GaussianRBM on the images, an RBM on
   its hidden probabilities; a ReplicatedSoftmax on the tags, an RBM on its hidden
   probabilities; an RBM on the two top layers (the joint layer);
2. the multimodal DBM from those weights (interior weights halved, since every interior layer
   of the DBM has two neighbours), trained jointly by SA-MLE (mean-field positive phase,
   100 persistent chains whose document lengths are drawn from the training lengths);
3. evaluation on the test set: linear classifiers (scikit-learn logistic regression) on each
   representation, with and without the text; precision@k of generated tags against the
   tagging process; mean average precision of image retrieval from one-word queries; a
   Figure-13-style listing of the top words every 50 Gibbs sweeps; a Pyro check that the
   trained model gives the same representations in both backends.

One JSON line per measurement on stdout. Example::

    EBM_PPL_DATA=../shared/data python benchmarks/mnist_multimodal.py \\
        --out benchmarks/runs/mm --epochs 30
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
    ``benchmarks/paper_table.py``: the jointly inferred representation's accuracy, the
    baselines and the trade-off rows. Also usable on a saved log:
    ``summary([json.loads(line) for line in open(log)], ...)``."""
    acc = {r["representation"]: r["test_accuracy"] for r in records if r["stage"] == "classify"}
    trade = [r for r in records if r["stage"] == "tradeoff"]
    last = trade[-1]
    best_joint = max(trade, key=lambda r: r["accuracy_h2m_joint_h2t"])
    return {
        "ours": round(100 * acc["multimodal [h2m, joint, h2t], image + text"], 2),
        "stderr": None,
        "metric": (
            "MNIST test accuracy, % (10,000 test digits with constructed tags; logistic "
            "regression on 20,000 training codes): the multimodal DBM's [h2m, joint, h2t] "
            "mean-field representation given image and tags, after joint SA-MLE"
        ),
        "baselines": {
            name: round(100 * acc[name], 2)
            for name in acc
            if not name.startswith("multimodal [h2m, joint, h2t], image + text")
        },
        "tradeoff": [{k: v for k, v in r.items() if k != "stage"} for r in trade],
        "best_snapshot": {
            "epoch": best_joint["epoch"],
            "accuracy_h2m_joint_h2t": round(100 * best_joint["accuracy_h2m_joint_h2t"], 2),
        },
        "tag_precision_at_1": last["tag_precision_at_1"],
        "retrieval_map": {
            k: r[k]
            for r in records
            if r["stage"] == "retrieval"
            for k in ("map_joint_cosine", "map_word_probability", "map_random")
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/runs/multimodal")
    ap.add_argument(
        "--data-root",
        default=None,
        help="folder holding the MNIST .gz files (default: $EBM_PPL_DATA, then the cache)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-sizes", type=int, nargs=2, default=[256, 256])
    ap.add_argument("--text-sizes", type=int, nargs=2, default=[64, 64])
    ap.add_argument("--joint", type=int, default=256)
    ap.add_argument("--pre-epochs", type=int, default=20)
    ap.add_argument("--pre-lr", type=float, default=0.05)
    ap.add_argument("--pre-lr-gauss", type=float, default=0.002)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=0.0005)
    ap.add_argument("--mf-iters", type=int, default=10)
    ap.add_argument("--gibbs", type=int, default=5)
    ap.add_argument("--n-train", type=int, default=60000)
    ap.add_argument("--n-eval", type=int, default=10000)
    ap.add_argument("--fill-words", type=int, default=3)
    ap.add_argument(
        "--summary",
        default="benchmarks/checkpoints/multimodal.json",
        help="where the headline numbers go (read by benchmarks/paper_table.py build)",
    )
    ap.add_argument(
        "--snapshots",
        default="0,1,3,10",
        help="SA epochs (0: the composed pretrained model) whose parameters are kept and "
        "evaluated in the trade-off experiment, next to the last epoch",
    )
    args = ap.parse_args()
    snapshots = sorted({int(e) for e in args.snapshots.split(",") if e.strip()})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.time()

    tr_d = load_tagged_mnist("train", seed=args.seed, root=args.data_root)
    te_d = load_tagged_mnist("test", seed=args.seed, root=args.data_root)
    xtr, mean, std = standardize(tr_d["images"][: args.n_train])
    xte, _, _ = standardize(te_d["images"][: args.n_eval], mean, std)
    ttr, tte = tr_d["tags"][: args.n_train], te_d["tags"][: args.n_eval]
    ytr, yte = tr_d["labels"][: args.n_train], te_d["labels"][: args.n_eval]
    lengths = ttr.sum(1)
    emit(
        stage="data",
        n_train=len(xtr),
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
    r1 = pretrain("gaussian", jnp.asarray(xtr), f1, args, s, out)
    p1 = np.asarray(r1.hidden_probs(jnp.asarray(xtr)))
    r2 = pretrain("rbm", SampledHidden(p1, s + 1), f2, args, s + 1, out)
    q2 = np.asarray(up(r2, p1))
    t1 = pretrain("rsm", jnp.asarray(ttr), g1, args, s + 2, out)
    u1 = np.asarray(t1.hidden_probs(jnp.asarray(ttr)))
    t2 = pretrain("rbm", SampledHidden(u1, s + 3), g2, args, s + 3, out)
    u2 = np.asarray(up(t2, u1))
    rj = pretrain(
        "rbm", SampledHidden(np.concatenate([q2, u2], 1), s + 4), args.joint, args, s + 4, out
    )

    pw = combine_pretrained_pathways(
        [(r.weights, r.visible_bias, r.hidden_bias) for r in (r1, r2)],
        [
            (r.weights, r.word_bias if hasattr(r, "word_bias") else r.visible_bias, r.hidden_bias)
            for r in (t1, t2)
        ],
        (rj.weights, rj.visible_bias, rj.hidden_bias),
    )
    init = {
        "iw0": pw["image_weights"][0],
        "iw1": pw["image_weights"][1],
        "ib0": pw["image_biases"][0],
        "ib1": pw["image_biases"][1],
        "ib2": pw["image_biases"][2],
        "tw0": pw["text_weights"][0],
        "tw1": pw["text_weights"][1],
        "tb0": pw["text_biases"][0],
        "tb1": pw["text_biases"][1],
        "tb2": pw["text_biases"][2],
        "jw0": pw["joint_weights"][0],
        "jw1": pw["joint_weights"][1],
        "jb": pw["joint_bias"],
    }
    init = {k: jnp.asarray(v) for k, v in init.items()}

    # ---- 2. joint SA-MLE -------------------------------------------------------------------
    total = jnp.asarray(lengths)

    def model(batch):
        prm = {k: numpyro.param(k, v) for k, v in init.items()}
        with numpyro.plate("data", batch.shape[0]):
            numpyro.sample(
                "x", build_mm(prm, total, args.mf_iters).visible(num_iters=args.mf_iters), obs=batch
            )

    per_epoch = len(xtr) // 100
    opt = optax.chain(
        optax.add_decayed_weights(2e-4, mask=lambda p: {k: "w" in k for k in p}),
        optax.inject_hyperparams(optax.sgd)(
            optax.linear_schedule(args.lr, 0.0, args.epochs * per_epoch),
            momentum=optax.join_schedules(
                [optax.constant_schedule(0.5), optax.constant_schedule(0.9)], [5 * per_epoch]
            ),
        ),
    )
    trainer = enp.SAMLE(model, opt, num_gibbs_steps=args.gibbs, num_chains=100)
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
    mm = build_mm(prm, total, args.mf_iters)
    save_model(out / f"mmdbm_{s}.safetensors", mm, epochs=args.epochs)

    # ---- 3. evaluation ---------------------------------------------------------------------
    from sklearn.linear_model import LogisticRegression

    mf = jax.jit(lambda d, im, tx: d.representation(im, tx, num_iters=50, tol=1e-4))
    mf_img = jax.jit(lambda d, im: d.mean_field(im, None, args.fill_words, num_iters=50, tol=1e-4))
    mf_txt = jax.jit(lambda d, tx: d.mean_field(None, tx, num_iters=50, tol=1e-4))

    def batched(fn, *xs, size=1000):
        outs = [fn(*(jnp.asarray(x[i : i + size]) for x in xs)) for i in range(0, len(xs[0]), size)]
        if isinstance(outs[0], list):
            return [np.concatenate([np.asarray(o[k]) for o in outs]) for k in range(len(outs[0]))]
        return np.concatenate([np.asarray(o) for o in outs])

    n_clf = min(len(xtr), 20000)
    mf_top = jax.jit(
        lambda d, im, tx: d.representation(im, tx, with_pathway_tops=True, num_iters=50, tol=1e-4)
    )
    mus_tr = batched(lambda a: mf_img(mm, a), xtr[:n_clf])
    mus_te = batched(lambda a: mf_img(mm, a), xte)
    reps = {
        "raw pixels": (xtr[:n_clf], xte),
        "raw tags": (ttr[:n_clf], tte),
        "image pathway (pretrained h2m)": (
            np.asarray(up(r2, r1.hidden_probs(jnp.asarray(xtr[:n_clf])))),
            np.asarray(up(r2, r1.hidden_probs(jnp.asarray(xte)))),
        ),
        "text pathway (pretrained h2t)": (
            np.asarray(up(t2, t1.hidden_probs(jnp.asarray(ttr[:n_clf])))),
            np.asarray(up(t2, t1.hidden_probs(jnp.asarray(tte)))),
        ),
        "late fusion: raw pixels + raw tags": (
            np.concatenate([xtr[:n_clf], ttr[:n_clf]], 1),
            np.concatenate([xte, tte], 1),
        ),
        "late fusion: pretrained h2m + h2t (inferred separately)": (
            np.concatenate(
                [
                    np.asarray(up(r2, r1.hidden_probs(jnp.asarray(xtr[:n_clf])))),
                    np.asarray(up(t2, t1.hidden_probs(jnp.asarray(ttr[:n_clf])))),
                ],
                1,
            ),
            np.concatenate(
                [
                    np.asarray(up(r2, r1.hidden_probs(jnp.asarray(xte)))),
                    np.asarray(up(t2, t1.hidden_probs(jnp.asarray(tte)))),
                ],
                1,
            ),
        ),
        "multimodal joint, image + text": (
            batched(lambda a, b: mf(mm, a, b), xtr[:n_clf], ttr[:n_clf]),
            batched(lambda a, b: mf(mm, a, b), xte, tte),
        ),
        "multimodal [h2m, joint, h2t], image + text": (
            batched(lambda a, b: mf_top(mm, a, b), xtr[:n_clf], ttr[:n_clf]),
            batched(lambda a, b: mf_top(mm, a, b), xte, tte),
        ),
        "multimodal [h2m, joint, h2t], image only (text inferred)": (
            np.concatenate([mus_tr[mm.joint - 1], mus_tr[mm.joint], mus_tr[mm.joint + 1]], 1),
            np.concatenate([mus_te[mm.joint - 1], mus_te[mm.joint], mus_te[mm.joint + 1]], 1),
        ),
        "multimodal joint, image only (text inferred)": (
            mus_tr[mm.joint],
            mus_te[mm.joint],
        ),
    }
    for name, (a, b) in reps.items():
        t0 = time.time()
        clf = LogisticRegression(max_iter=2000, C=1.0).fit(a, ytr[:n_clf])
        emit(
            stage="classify",
            representation=name,
            n_train=n_clf,
            test_accuracy=float(clf.score(b, yte)),
            seconds=round(time.time() - t0, 1),
        )

    # tag generation: word probabilities of the mean-field text given the image only
    mus = mus_te
    word_scores = mus[-1]
    rel = relevant_words(yte)
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

    # the trade-off experiment: the same evaluations along joint training (snapshots), to
    # see what SA-MLE does to the classification of each representation and to the tags
    def layers_of(d, im, tx):
        return batched(lambda a, b: mf_all(d, a, b), im, tx)

    mf_all = jax.jit(lambda d, im, tx: d.mean_field(im, tx, num_iters=50, tol=1e-4))
    late_all = (
        np.concatenate(
            [
                np.asarray(r1.hidden_probs(jnp.asarray(xtr[:n_clf]))),
                reps["late fusion: pretrained h2m + h2t (inferred separately)"][0],
                np.asarray(t1.hidden_probs(jnp.asarray(ttr[:n_clf]))),
            ],
            1,
        ),
        np.concatenate(
            [
                np.asarray(r1.hidden_probs(jnp.asarray(xte))),
                reps["late fusion: pretrained h2m + h2t (inferred separately)"][1],
                np.asarray(t1.hidden_probs(jnp.asarray(tte))),
            ],
            1,
        ),
    )
    clf = LogisticRegression(max_iter=2000, C=1.0).fit(late_all[0], ytr[:n_clf])
    emit(
        stage="classify",
        representation="late fusion: every pretrained layer (h1m, h2m, h2t, h1t)",
        n_train=n_clf,
        test_accuracy=float(clf.score(late_all[1], yte)),
    )
    for e in snapshots + [args.epochs]:
        path = out / f"mmdbm_{s}_epoch{e}.safetensors" if e != args.epochs else None
        if path is not None and not path.exists():
            continue
        d = mm if path is None else load_model(path, backend="jax")
        j = d.joint
        tr_l, te_l = layers_of(d, xtr[:n_clf], ttr[:n_clf]), layers_of(d, xte, tte)
        row = {"stage": "tradeoff", "epoch": e}
        for name, sl in (
            ("joint", slice(j, j + 1)),
            ("h2m_joint_h2t", slice(j - 1, j + 2)),
            ("all_hidden", slice(1, len(tr_l) - 1)),
        ):
            a, b = np.concatenate(tr_l[sl], 1), np.concatenate(te_l[sl], 1)
            clf = LogisticRegression(max_iter=2000, C=1.0).fit(a, ytr[:n_clf])
            row[f"accuracy_{name}"] = float(clf.score(b, yte))
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

    pm = load_model(out / f"mmdbm_{s}.safetensors", backend="torch")
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
