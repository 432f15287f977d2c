"""Which part of the multimodal DBM's pretraining moves classification and which moves tag
generation: a 2 x 2 x 2 factorial over how each of the three parts is pretrained (issue 25's
"the classification / tag-precision trade-off explained by an experiment").

``mnist_multimodal.py`` composes its DBM from plain CD-1 RBMs with the interior weights halved
(``--pretrain cd``) or from Salakhutdinov & Hinton's DBM pretraining (``--pretrain doubling``:
doubled input to the layers that become inner DBM layers). The first classifies level with
late fusion and generates tags poorly; the second generates tags well and classifies below
late fusion. Here each part is switched on its own:

* **image pathway**: ``cd`` (a Gaussian RBM and an RBM on its codes, the second halved) or
  ``doubling`` (the Gaussian RBM sees its image twice, ``mnist_multimodal.free_energy``'s
  ``gauss2``; the RBM above it plain, halved);
* **text pathway**: ``cd`` (a replicated softmax and an RBM, the second halved) or
  ``doubling`` (the replicated softmax sees its words twice, ``rsm2``);
* **joint RBM** (on the two pathways' top codes): ``cd`` (plain CD-1, weights halved in the
  DBM) or ``doubling`` (two tied copies of its hidden layer, ``top2``, weights as learned).

The eight composed DBMs (before joint SA-MLE: the benchmarks show that SA-MLE moves neither
measure by much, see RESULTS) are measured on the validation split (the last 10,000 training
items) and on the test set: the linear classification accuracy of the mean-field code of every
hidden layer given image and tags (``mnist_multimodal.py``'s chosen representation), and the
precision@1/3/5 of tags generated from the image alone (mean field, with the number of words
filled in, 1, 3 or 6, chosen on validation). Peers in the same run: late fusion of the CD-1
pathways; nearest-neighbour tag transfer (the tags of the k = 10, 25 training items nearest to
the query image) by raw pixels, and by the cosine of the CD-1 image pathway's top code (the
unimodal representation of the benchmark's retrieval rows).

The pretrained layers come from ``mnist_multimodal.py``'s functions and caches: pass a run
folder of ``mnist_multimodal.py --pretrain doubling`` (it holds both stacks) per seed through
``--out-pattern``; the joint RBMs of the mixed cells are trained here and cached in
``<folder>/composition``. One JSON line per measurement on stdout, the table in ``--summary``::

    EBM_PPL_DATA=../shared/data python benchmarks/multimodal_composition.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mnist_multimodal as mmb  # noqa: E402  (the benchmark's recipe, reused)
import multimodal_tags as mtags  # noqa: E402  (kNN tag transfer, precision@k)

from ebm_ppl.datasets.tagged_digits import (  # noqa: E402
    load_tagged_mnist,
    relevant_words,
    standardize,
)

SG = jax.nn.sigmoid
PARTS = ("image", "text", "joint")
KINDS = ("cd", "doubling")


def emit(**kw):
    print(json.dumps(kw), flush=True)


def pathway_layers(xtr, ttr, rec, s, out, sizes):
    """The pretrained pathways of both recipes at seed ``s`` (``mnist_multimodal.py``'s caches
    in ``out``): ``{kind: (bottom, middle, top codes of the training data)}`` for the image and
    the text, and the two recipes' own joint RBMs. Bottom layers are dicts ``w, b, c``."""
    r1, r2, t1, t2, rj = mmb.pretrain_cd((xtr, ttr), sizes, rec, s, out)
    _, (g, r2d, t1d, t2d, jd) = mmb.pretrain_doubling(xtr, ttr, rec, s, out, sizes)
    x, t = jnp.asarray(xtr), jnp.asarray(ttr)
    m = t.sum(1, keepdims=True)
    image = {
        "cd": (
            {"w": r1.weights, "b": r1.visible_bias, "c": r1.hidden_bias},
            r2,
            np.asarray(mmb.up(r2, r1.hidden_probs(x))),
        ),
        "doubling": (g, r2d, np.asarray(mmb.up(r2d, SG(2 * x @ g["w"] + g["c"])))),
    }
    text = {
        "cd": (
            {"w": t1.weights, "b": t1.word_bias, "c": t1.hidden_bias},
            t2,
            np.asarray(mmb.up(t2, t1.hidden_probs(t))),
        ),
        "doubling": (t1d, t2d, np.asarray(mmb.up(t2d, SG(2 * t @ t1d["w"] + m * t1d["c"])))),
    }
    joints = {
        ("cd", "cd", "cd"): {"w": rj.weights, "b": rj.visible_bias, "c": rj.hidden_bias},
        ("doubling", "doubling", "doubling"): jd,
    }
    return image, text, joints


def joint_rbm(cell, image, text, joints, rec, s, out, nj):
    """The joint RBM of ``cell`` (image kind, text kind, joint kind) on the chosen pathways'
    top codes: the recipes' own where they exist, else trained (and cached) here with the
    recipes' settings (plain CD-1 on fresh draws, or ``top2``)."""
    if cell in joints:
        return joints[cell]
    ik, tk, jk = cell
    codes = np.concatenate([image[ik][2], text[tk][2]], 1)
    folder = out / "composition" / f"{ik}_{tk}"
    folder.mkdir(parents=True, exist_ok=True)
    if jk == "doubling":
        return mmb.train_modified(
            "top2", codes, nj, rec.pre_lr, s + 4, folder, True, rec.pre_epochs
        )
    r = mmb.pretrain("rbm", mmb.SampledHidden(codes, s + 4), nj, rec, s + 4, folder)
    return {"w": r.weights, "b": r.visible_bias, "c": r.hidden_bias}


def compose(cell, image, text, j):
    """The DBM's initial parameters of ``cell`` (``mnist_multimodal.compose_parts``): the
    joint weights halved for a plain joint RBM and as learned for a doubled one.
    ``(cd, cd, cd)`` is ``init_from_stack`` and ``(doubling,) * 3`` is
    ``pretrain_doubling``'s composition."""
    (b0, mid, _), (tb0, tmid, _) = image[cell[0]], text[cell[1]]
    return mmb.compose_parts(b0, mid, tb0, tmid, j, halve_joint=cell[2] == "cd")


def all_hidden(d, x, t, size=2000):
    """Mean-field marginals of every hidden layer given image and tags, concatenated."""
    mf = jax.jit(lambda a, b: d.mean_field(a, b, num_iters=50, tol=1e-4))
    outs = []
    for i in range(0, len(x), size):
        mus = mf(jnp.asarray(x[i : i + size]), jnp.asarray(t[i : i + size]))
        outs.append(np.concatenate([np.asarray(m) for m in mus[1:-1]], 1))
    return np.concatenate(outs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--out-pattern",
        default="benchmarks/runs/mm_dbl_s{seed}",
        help="each seed's folder of pretrained layers (created and filled if absent)",
    )
    ap.add_argument("--n-clf", type=int, default=20000, help="training codes for the classifier")
    ap.add_argument(
        "--sizes",
        type=int,
        nargs=5,
        default=[256, 256, 64, 64, 256],
        help="hidden layers: image 1, image 2, text 1, text 2, joint (mnist_multimodal.py's)",
    )
    ap.add_argument(
        "--cells",
        default="all",
        help="'all', or cells as image,text,joint kinds separated by ';' (e.g. "
        "'doubling,doubling,doubling;doubling,cd,doubling')",
    )
    ap.add_argument("--summary", default="benchmarks/checkpoints/multimodal_composition.json")
    args = ap.parse_args()
    from sklearn.linear_model import LogisticRegression

    rec = argparse.Namespace(
        pre_epochs=20, pre_lr=0.05, pre_lr_gauss=0.002, lr=0.0005, gibbs=5, mf_iters=10, epochs=5
    )
    t_all = time.time()
    sizes = tuple(args.sizes)
    cells = list(itertools.product(KINDS, KINDS, KINDS))
    if args.cells != "all":
        cells = [tuple(c.split(",")) for c in args.cells.split(";")]
        if any(len(c) != 3 or set(c) - set(KINDS) for c in cells):
            raise SystemExit(
                f"--cells: each cell is three of {KINDS} joined by ',', got {args.cells}"
            )
    tr_d, te_d = load_tagged_mnist("train", seed=0), load_tagged_mnist("test", seed=0)
    n_fit = 50000  # mnist_multimodal.py: --n-train 60000 less the --n-val 10000
    xtr, mean, std = standardize(tr_d["images"][:n_fit])
    splits = {
        "val": (
            standardize(tr_d["images"][n_fit:60000], mean, std)[0],
            tr_d["tags"][n_fit:60000].astype(np.float32),
            tr_d["labels"][n_fit:60000],
        ),
        "test": (
            standardize(te_d["images"], mean, std)[0],
            te_d["tags"].astype(np.float32),
            te_d["labels"],
        ),
    }
    ttr, ytr = tr_d["tags"][:n_fit].astype(np.float32), tr_d["labels"][:n_fit]
    rel = {k: relevant_words(v[2]) for k, v in splits.items()}
    raw = {"val": tr_d["images"][n_fit:60000], "test": te_d["images"]}
    n = args.n_clf

    # peers that do not depend on the model seed: kNN tag transfer by pixels
    raw_tr = tr_d["images"][:n_fit].astype(np.float32)
    peers = {}
    for split, q in raw.items():
        idx = mtags.knn_indices(q.astype(np.float32), raw_tr, 25)
        for k in (10, 25):
            p = mtags.precisions(mtags.transfer(ttr, idx, k), rel[split])
            peers[f"knn_pixels_k{k}_{split}"] = p
            emit(stage="peer", method=f"knn_pixels_k{k}", split=split, **p)

    rows = []
    total = jnp.asarray(ttr.sum(1))
    for s in args.seeds:
        out = Path(args.out_pattern.format(seed=s))
        out.mkdir(parents=True, exist_ok=True)
        image, text, joints = pathway_layers(xtr, ttr, rec, s, out, sizes)
        # late fusion of the CD-1 pathways (the benchmark's baseline)
        r1, r2, t1, t2, _ = mmb.pretrain_cd((xtr, ttr), sizes, rec, s, out)

        def late(x, t, r1=r1, r2=r2, t1=t1, t2=t2):
            a = mmb.up(r2, r1.hidden_probs(jnp.asarray(x)))
            b = mmb.up(t2, t1.hidden_probs(jnp.asarray(t)))
            return np.concatenate([np.asarray(a), np.asarray(b)], 1)

        clf = LogisticRegression(max_iter=2000, C=1.0).fit(late(xtr[:n], ttr[:n]), ytr[:n])
        lf = {k: float(clf.score(late(x, t), y)) for k, (x, t, y) in splits.items()}
        emit(stage="peer", method="late_fusion", seed=s, **lf)
        # unimodal retrieval by the image pathway's own code: kNN tag transfer by the cosine
        # of the CD-1 image pathway's top codes (centred at the training mean), the
        # representation of the benchmark's unimodal retrieval rows
        codes = {"train": late(xtr, ttr)[:, : r2.weights.shape[1]]}
        codes.update({k: late(x, t)[:, : r2.weights.shape[1]] for k, (x, t, _) in splits.items()})
        c = codes["train"].mean(0)
        unit = {k: (v - c) / np.linalg.norm(v - c, axis=1, keepdims=True) for k, v in codes.items()}
        for split in splits:
            idx = mtags.knn_indices(
                unit[split].astype(np.float32), unit["train"].astype(np.float32), 25
            )
            for k in (10, 25):
                p = mtags.precisions(mtags.transfer(ttr, idx, k), rel[split])
                peers.setdefault(f"knn_image_pathway_k{k}_{split}", []).append(p)
                emit(stage="peer", method=f"knn_image_pathway_k{k}", seed=s, split=split, **p)
        for cell in cells:
            t0 = time.time()
            d = mmb.build_mm(
                compose(
                    cell, image, text, joint_rbm(cell, image, text, joints, rec, s, out, sizes[4])
                ),
                total,
                10,
            )
            row = {"seed": s, **dict(zip(PARTS, cell)), "late_fusion": lf}
            clf = LogisticRegression(max_iter=2000, C=1.0).fit(
                all_hidden(d, xtr[:n], ttr[:n]), ytr[:n]
            )
            row["accuracy"] = {
                k: float(clf.score(all_hidden(d, x, t), y)) for k, (x, t, y) in splits.items()
            }
            best = None
            for fw in (1, 3, 6):
                mf = jax.jit(lambda im, d=d, fw=fw: d.mean_field(im, None, fw, num_iters=50))
                p = {
                    k: mtags.precisions(mf(jnp.asarray(x))[-1], rel[k])
                    for k, (x, _, _) in splits.items()
                }
                score = np.mean(list(p["val"].values()))
                if best is None or score > best[0]:
                    best = (score, fw, p)
            row["fill_words"], row["tags"] = best[1], best[2]
            row["seconds"] = round(time.time() - t0, 1)
            emit(stage="cell", **row)
            rows.append(row)

    # the table: means over seeds per cell
    table = []
    for cell in cells:
        rs = [r for r in rows if tuple(r[p] for p in PARTS) == cell]
        entry = dict(zip(PARTS, cell))
        for split in ("val", "test"):
            entry[f"accuracy_{split}"] = round(
                float(np.mean([r["accuracy"][split] for r in rs])), 4
            )
            entry[f"minus_late_fusion_{split}"] = round(
                float(np.mean([r["accuracy"][split] - r["late_fusion"][split] for r in rs])), 4
            )
            for k in (1, 3, 5):
                entry[f"tags_p@{k}_{split}"] = round(
                    float(np.mean([r["tags"][split][f"p@{k}"] for r in rs])), 4
                )
        entry["per_seed"] = rs
        table.append(entry)
        emit(stage="table", **{k: v for k, v in entry.items() if k != "per_seed"})
    if args.summary:
        Path(args.summary).write_text(
            json.dumps(
                {
                    "seeds": args.seeds,
                    "sizes": sizes,
                    "peers": peers,
                    "table": table,
                    "command": "EBM_PPL_DATA=../shared/data python "
                    + " ".join(["benchmarks/multimodal_composition.py", *sys.argv[1:]]),
                    "wall_s": round(time.time() - t_all, 1),
                },
                indent=1,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
