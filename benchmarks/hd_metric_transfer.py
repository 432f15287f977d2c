"""Does a super-category's within-category covariance fit a NEW category's scatter better than
the pooled covariance? A density diagnostic for the full-covariance HD prior (issue 25, branch
hd27), on the validation splits of ``caltech_hd.py --validate`` only.

For each validation seed: the features of ``caltech_hd.make_features`` learned on the fitted
known classes; k-means of those classes' means into ``--groups`` groups; each group's
covariance the inverse-Wishart posterior mean with weight ``--nu0`` around the pooled one
(:func:`ebm_ppl.models.hd_cov.niw_posterior_covariance` with hard assignments). Each
validation class's images, centred at their own mean, are scored (mean Gaussian log-likelihood
per image) under the pooled covariance, under the group nearest to the class mean, and under
the best group. One JSON line per split. Example::

    EBM_PPL_DATA=../shared/data python benchmarks/hd_metric_transfer.py \\
        --dbm benchmarks/runs/hd27_val/dbm_top100_pre100_sa200_seed2.safetensors --seed 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import caltech_hd as ch  # noqa: E402


def gauss_ll(scatter: np.ndarray, dof: float, cov: np.ndarray) -> float:
    """Mean log-likelihood per image of centred data with ``scatter`` (``dof`` images) under
    ``N(0, cov)``."""
    _, ld = np.linalg.slogdet(cov)
    f = cov.shape[0]
    return float(
        -0.5 * (np.trace(np.linalg.solve(cov, scatter)) + dof * (ld + f * np.log(2 * np.pi))) / dof
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dbm", required=True)
    ap.add_argument("--seed", type=int, default=2, help="the split (held-out classes untouched)")
    ap.add_argument("--validate", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--groups", type=int, default=10)
    ap.add_argument("--nu0", type=float, default=1000.0)
    args = ap.parse_args()

    from sklearn.cluster import KMeans

    from ebm_ppl.datasets import load_caltech101_silhouettes
    from ebm_ppl.io import load_model
    from ebm_ppl.models.hd_cov import category_scatter, pooled_covariance

    parts = [load_caltech101_silhouettes(s) for s in ("train", "valid", "test")]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    names = parts[0][2]
    sizes = np.bincount(y, minlength=101)
    rng = np.random.default_rng(args.seed)
    held = np.sort(rng.choice(np.flatnonzero(sizes >= 40), 10, replace=False))
    known = np.setdiff1d(np.arange(101), held)
    _, logits = ch.dbm_features(load_model(args.dbm, backend="jax"), x)
    for vseed in args.validate:
        fit, val = ch.validation_split(y, known, vseed, 10)
        feats, _ = ch.make_features(logits, x, y, fit, 10.0, 1, 50)
        is_fit = np.isin(y, fit)
        index = {c: i for i, c in enumerate(fit)}
        yk = np.array([index[c] for c in y[is_fit]])
        sc = category_scatter(feats[is_fit], yk, len(fit))
        n = np.bincount(yk).astype(float)
        pooled = pooled_covariance(sc, n)
        means = np.stack([feats[y == c].mean(0) for c in fit])
        lab = KMeans(args.groups, n_init=5, random_state=0).fit(means).labels_
        centres = np.stack([means[lab == k].mean(0) for k in range(args.groups)])
        covs = [
            (args.nu0 * pooled + sc[lab == k].sum(0)) / (args.nu0 + (n[lab == k] - 1).sum())
            for k in range(args.groups)
        ]
        per = {}
        for c in val:
            fc = feats[y == c]
            r = fc - fc.mean(0)
            s, dof = r.T @ r, len(fc) - 1.0
            near = int(np.argmin(((fc.mean(0)[None] - centres) ** 2).sum(1)))
            lls = [gauss_ll(s, dof, cv) for cv in covs]
            per[names[c]] = dict(
                pooled=round(gauss_ll(s, dof, pooled), 2),
                nearest=round(lls[near], 2),
                best=round(max(lls), 2),
            )
        mean = {
            k: round(float(np.mean([v[k] for v in per.values()])), 2) for k in per[names[val[0]]]
        }
        better = int(sum(v["nearest"] > v["pooled"] for v in per.values()))
        print(json.dumps(dict(validation=vseed, mean=mean, nearest_better=better, per_class=per)))


if __name__ == "__main__":
    main()
