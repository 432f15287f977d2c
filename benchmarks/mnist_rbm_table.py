"""Score the MNIST RBMs in ``benchmarks/checkpoints/`` with AIS, as in Salakhutdinov & Murray.

    python benchmarks/mnist_rbm_table.py [--methods cd1,cd3,cd25,pcd] [--backends numpyro,pyro]

For every checkpoint ``rbm_<method>.safetensors`` and backend: forward AIS with 100 runs on
the 14,501-beta schedule from the base-rate model of the (stochastically binarized) training
images, reverse AIS from 100 block-Gibbs chains run for ``--reverse-sweeps`` sweeps from test
images, and the average test (10,000) and train (60,000) log-likelihoods. One JSON line per
(model, backend) on stdout (see ``ebm_ppl.cli.ais_evaluation``) and a Markdown table on
stderr. Published (Salakhutdinov & Murray 2008, 500 hidden units, average test
log-probability): CD-1 -125.53, CD-3 -105.50, CD-25 -86.34; mixture of 500 Bernoullis
-137.64.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PUBLISHED = {"cd1": -125.53, "cd3": -105.50, "cd25": -86.34, "pcd": None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default="cd1,cd3,cd25,pcd")
    p.add_argument("--backends", default="numpyro,pyro")
    p.add_argument("--checkpoints", default=str(Path(__file__).parent / "checkpoints"))
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--reverse-sweeps", type=int, default=10000)
    p.add_argument("--data-root", default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from ebm_ppl.cli import ais_evaluation

    rows = []
    for method in args.methods.split(","):
        path = Path(args.checkpoints) / f"rbm_{method}.safetensors"
        if not path.exists():
            print(f"# skipping {method}: {path} not found", file=sys.stderr)
            continue
        for backend in args.backends.split(","):
            r = ais_evaluation(
                path,
                data="mnist",
                backend=backend,
                runs=args.runs,
                betas="sm",
                reverse=True,
                reverse_sweeps=args.reverse_sweeps,
                seed=args.seed,
                data_root=args.data_root,
                progress=False,
            )
            r["method"] = method
            r["published_test_ll"] = PUBLISHED.get(method)
            print(json.dumps(r), flush=True)
            rows.append(r)
    print(
        "| model | backend | log Ẑ ± σ (forward) | reverse log Ẑ ± σ | test LL | train LL | "
        "published test LL | AIS s |",
        file=sys.stderr,
    )
    print("|---|---|---|---|---|---|---|---|", file=sys.stderr)
    for r in rows:
        pub = "–" if r["published_test_ll"] is None else f"{r['published_test_ll']:.2f}"
        print(
            f"| {r['method']} | {r['backend']} | {r['log_z']:.2f} ± {r['log_z_stderr']:.2f} | "
            f"{r['reverse_log_z']:.2f} ± {r['reverse_log_z_stderr']:.2f} | "
            f"{r['test_ll']:.2f} ± {r['test_ll_stderr']:.2f} | "
            f"{r['train_ll']:.2f} ± {r['train_ll_stderr']:.2f} | {pub} | {r['ais_s']:.1f} |",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
