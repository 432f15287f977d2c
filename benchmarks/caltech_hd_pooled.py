"""Paired one-shot comparisons pooled over several runs of ``caltech_hd.py`` (issue 25).

Reads the JSON lines of each run's log (one held-out split each; every run must use the same
``--trials``) and prints, for 1 and 3 examples, each split's accuracies and paired tests and
then the pooled comparisons of the HD prior with the flat prior and the nearest-neighbour
baselines: the paired t-test over all per-trial differences, the test stratified by split
(mean of the split means, its standard error from the splits' own), and the exact sign test.
The pre-registered confirmatory analysis of benchmarks/RESULTS.md (HD section, session 13)::

    python benchmarks/caltech_hd_pooled.py benchmarks/runs/hd28/seed{0,1,2,3,4}/run.log
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy import stats


def load(path: str) -> tuple[dict, list]:
    """``(per_trial, paired)``: per-trial accuracies by ``(method, shots)`` and the paired rows."""
    rows = [json.loads(line) for line in open(path) if line.startswith("{")]
    test = [r for r in rows if r.get("tag", "test") == "test"]
    acc = {
        (r["method"], r["shots"]): np.array(r["per_trial"])
        for r in test
        if r["stage"] == "one_shot"
    }
    return acc, [r for r in test if r["stage"] == "paired"]


def pooled(diffs: list[np.ndarray]) -> dict:
    """Paired t over all differences, the split-stratified z test and the sign test."""
    d = np.concatenate(diffs)
    means = np.array([x.mean() for x in diffs])
    ses = np.array([x.std(ddof=1) / np.sqrt(len(x)) for x in diffs])
    z = means.mean() / (np.sqrt((ses**2).sum()) / len(diffs))
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    return dict(
        n=len(d),
        diff=100 * d.mean(),
        sd=100 * d.std(ddof=1),
        p_t=stats.ttest_1samp(d, 0.0).pvalue,
        z=z,
        p_z=2 * stats.norm.sf(abs(z)),
        wins=wins,
        losses=losses,
        p_sign=stats.binomtest(wins, wins + losses).pvalue if wins + losses else 1.0,
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("logs", nargs="+", help="caltech_hd.py output (JSON lines), one per split")
    args = ap.parse_args(argv)
    runs = [load(p) for p in args.logs]
    methods = ("hd", "flat", "nn_pixels", "nn_dbm_features")
    for shots in (1, 3):
        print(f"=== {shots} example(s)")
        for path, (acc, paired) in zip(args.logs, runs, strict=True):
            print(
                f"  {path}: " + " ".join(f"{m} {100 * acc[m, shots].mean():5.1f}" for m in methods)
            )
            for r in paired:
                if r["shots"] == shots and r["a"] == "hd" and r["b"] in methods:
                    print(
                        f"     hd - {r['b']:16s} {r['metric']:9s} {100 * r['mean_diff']:+6.2f} ± "
                        f"{100 * r['sd_diff']:5.2f} t p={r['p_t']:.2g} {r['wins']}/{r['losses']} "
                        f"sign p={r['p_sign']:.2g}"
                    )
        for other in methods[1:]:
            s = pooled([acc["hd", shots] - acc[other, shots] for acc, _ in runs])
            print(
                f"  pooled hd - {other:16s} n={s['n']} {s['diff']:+6.2f} ± {s['sd']:5.2f} "
                f"t p={s['p_t']:.2g} | stratified z={s['z']:.2f} p={s['p_z']:.2g} | "
                f"sign {s['wins']}/{s['losses']} p={s['p_sign']:.2g}"
            )


if __name__ == "__main__":
    main()
