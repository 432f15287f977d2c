"""Score saved models the way the review's MNIST tables do, with checks that catch a biased
``log Z``: what ``ebm-ppl evaluate`` runs.

For every model kind, ``log Z`` is estimated by **independent routes** (different paths,
bases and state spaces of AIS), reported side by side. Forward estimates are lower ends;
reverse estimates (optional: from long block-Gibbs chains started at test images, on every
route) are upper ends. A warning says when the tightest bracket (without reverse runs: the
forward estimates) spans more than ``tol`` nats. The likelihood uses the larger end of that
bracket (a larger ``log Z`` lowers the likelihood: the conservative choice). Optionally
RAISE on a subset of test images (a conservative estimate of ``log p(v)`` that needs no
``log Z``).

- **RBM** (binary): route ``v|base-rate`` anneals ``v`` (hidden units summed out) from the
  base-rate model; route ``h|matched`` anneals ``h`` (visible units summed out) from the
  factorial model matched to the data (the RBM as a one-layer DBM). Exact average
  log-likelihood given ``log Z``.
- **DBM** (any depth): routes ``odd|matched`` and ``even|matched`` anneal the odd or the even
  layers from the base matched to the model (average mean-field marginals of training
  images, :meth:`~ebm_ppl.models.dbm.DBMMethods.matched_base`); ``odd|uniform`` (the
  base-rate model on ``v``, uniform hidden units) on request. The eq. 38 mean-field bound.
- **DBN** (a stack of RBM checkpoints, bottom first): the top RBM's routes on Q-draws of the
  training images through the layers below; the bound of eq. 24.
- Other RBM-family models (Gaussian, replicated softmax, categorical): one route from the
  model's default base.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ebm_ppl import ops
from ebm_ppl.datasets import binarize, load_binarized_mnist, load_digits, load_mnist
from ebm_ppl.inference.ais import (
    compare_routes,
    linear_schedule,
    salakhutdinov_murray_schedule,
    summarize,
)
from ebm_ppl.io import load_model

__all__ = ["DATA_CHOICES", "ROUTES", "eval_data", "evaluate_model", "schedule_from"]

DATA_CHOICES = ("mnist", "binarized_mnist", "digits")
ROUTES = {
    "RBM": ("v|base-rate", "h|matched"),
    "DBM": ("odd|matched", "even|matched", "odd|uniform"),
}
DEFAULT_ROUTES = {"RBM": ("v|base-rate", "h|matched"), "DBM": ("odd|matched", "even|matched")}


def eval_data(name: str, seed: int, data_root: str | None) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` binary float32 arrays of a named data set: ``mnist`` (a fixed
    stochastic binarization, seeds ``seed`` / ``seed + 1``, as in Salakhutdinov & Murray),
    ``binarized_mnist`` (the fixed binarization) or ``digits`` (scikit-learn, offline)."""

    if name not in DATA_CHOICES:
        raise ValueError(f"data must be one of {DATA_CHOICES}, got {name!r}")
    if data_root is not None and not Path(data_root).is_dir():
        raise ValueError(f"data_root {data_root!r} is not a folder")
    if name == "mnist":
        root = Path(data_root) / "mnist" if data_root else None
        if root is not None and not root.is_dir():
            root = Path(data_root)
        train, _ = load_mnist("train", root=root)
        test, _ = load_mnist("test", root=root)
        return binarize(train, "sample", seed=seed), binarize(test, "sample", seed=seed + 1)
    if name == "binarized_mnist":
        root = Path(data_root) / "binarized_mnist" if data_root else None
        if root is not None and not root.is_dir():
            root = Path(data_root)
        return load_binarized_mnist("train", root=root), load_binarized_mnist("test", root=root)
    x_train, _ = load_digits("train", seed=seed)
    x_test, _ = load_digits("test", seed=seed)
    return binarize(x_train), binarize(x_test)


def dbm_schedule(num: int = 20_001) -> np.ndarray:
    """``num`` inverse temperatures shaped like Salakhutdinov & Hinton's (2009) DBM schedule:
    5% of the steps to 0.5, 20% to 0.9 and 75% to 1 (their 20,001 values: 1,000 / 4,000 /
    15,000)."""
    if not isinstance(num, int) or num < 21:
        raise ValueError(f"num must be an int >= 21, got {num!r}")
    k1, k2 = (num - 1) // 20, (num - 1) // 5
    return np.concatenate(
        [
            np.linspace(0.0, 0.5, k1, endpoint=False),
            np.linspace(0.5, 0.9, k2, endpoint=False),
            np.linspace(0.9, 1.0, num - k1 - k2),
        ]
    )


def schedule_from(spec: str, kind: str) -> np.ndarray:
    """A schedule from its name: ``auto`` (RBMs and DBNs: ``sm``; DBMs: ``dbm``), ``sm`` (the
    14,501 values of Salakhutdinov & Murray 2008), ``dbm[:N]`` (:func:`dbm_schedule`),
    ``linear:N``."""

    if not isinstance(spec, str):
        raise ValueError(f"betas must be a string, got {spec!r}")
    if spec == "auto":
        spec = "dbm:10001" if kind == "DBM" else "sm"
    try:
        if spec == "sm":
            return salakhutdinov_murray_schedule()
        if spec == "dbm":
            return dbm_schedule()
        if spec.startswith("dbm:"):
            return dbm_schedule(int(spec.split(":", 1)[1]))
        if spec.startswith("linear:"):
            return linear_schedule(int(spec.split(":", 1)[1]))
    except ValueError as e:
        raise ValueError(f"betas {spec!r}: {e}") from None
    raise ValueError(f"betas must be 'auto', 'sm', 'dbm', 'dbm:N' or 'linear:N', got {spec!r}")


class _Backend:
    """What differs between the frontends here: arrays, keys and the AIS keyword."""

    def __init__(self, name: str, seed: int, device: Any = None) -> None:
        if name not in ("numpyro", "pyro"):
            raise ValueError(f"backend must be 'numpyro' or 'pyro', got {name!r}")
        self.name, self.device = name, None
        if device is not None and name != "pyro":
            raise ValueError(
                f"device applies to the pyro backend only (JAX uses its default device), got "
                f"device={device!r} with backend={name!r}"
            )
        if name == "numpyro":
            # lazy: keeps this module free of jax until that backend is used
            import jax
            import jax.numpy as jnp

            # lazy: keeps this module free of jax, numpyro until that backend is used
            import ebm_ppl.numpyro as fe

            self.jax, self.array, self.fe = jax, jnp.asarray, fe
            self._key = jax.random.PRNGKey(seed)
        else:
            # lazy: keeps this module free of torch until that backend is used
            import torch

            # lazy: keeps this module free of pyro, torch until that backend is used
            import ebm_ppl.pyro as fe
            from ebm_ppl.pyro.device import as_device

            if device is not None:
                self.device = as_device(device)
            torch.manual_seed(seed)
            self.fe = fe
            self.array = lambda a: torch.as_tensor(a, device=self.device)

    def key(self) -> Any:
        if self.name == "pyro":
            return None
        self._key, sub = self.jax.random.split(self._key)
        return sub

    def kw(self) -> dict:
        return {"rng_key": self.key()} if self.name == "numpyro" else {}


def _load(checkpoints: list, backend: str, device: Any = None) -> tuple[str, Any]:

    be = "jax" if backend == "numpyro" else "torch"
    models = [load_model(p, backend=be, device=device) for p in checkpoints]
    if len(models) == 1:
        return type(models[0]).__name__, models[0]
    kinds = {type(m).__name__ for m in models}
    if kinds != {"RBM"}:
        raise ValueError(
            "several checkpoints make a DBN: each must hold a binary RBM (bottom layer first), "
            f"got {sorted(kinds)}"
        )
    return "DBN", models


def _chains(be: _Backend, model: Any, start: Any, sweeps: int) -> Any:
    x, _ = model.transition(be.key(), start, sweeps)
    return x


def _dbm_start(dbm: Any, v: Any, num_iters: int) -> Any:
    """Full DBM states from data: ``v`` with each hidden layer at its rounded mean-field
    marginal, to start block-Gibbs chains near the data."""
    mus = dbm.mean_field(v, num_iters=num_iters)
    return dbm.join([v] + [(m > 0.5) * 1.0 for m in mus[1:]])


def _route_record(res: Any, seconds: float) -> dict:
    out = {"log_z": res.log_z, "log_z_stderr": res.log_z_stderr, "ess": res.ess, "s": seconds}
    if res.reverse is not None:
        out["reverse_log_z"] = res.reverse.log_z
        out["reverse_log_z_stderr"] = res.reverse.log_z_stderr
    return out


def _rbm_routes(be, rbm, train_x, test_x, schedule, args, names) -> dict:
    """AIS routes to an RBM's log Z; ``{name: (AISResult, seconds)}``."""
    fe = be.fe
    out = {}
    chains = None
    if args["reverse"]:  # one set of long chains serves every route's reverse run
        t0 = time.perf_counter()
        chains = rbm.transition(be.key(), test_x[: args["runs"]], args["reverse_sweeps"])
        chain_s = time.perf_counter() - t0
    for name in names:
        t0 = time.perf_counter()
        if name == "v|base-rate":
            rev = None if chains is None else chains[0]
            res = fe.AIS(
                rbm,
                base=fe.base_rate(train_x),
                betas=schedule,
                num_runs=args["runs"],
                reverse_samples=rev,
                progress_bar=args["progress"],
                **be.kw(),
            )
        elif name == "h|matched":
            one = fe.DBM([rbm.weights], [rbm.visible_bias, rbm.hidden_bias])
            base = one.matched_base(train_x[: args["num_base"]], num_iters=1)
            rev = None if chains is None else one.join(list(chains))
            res = fe.AIS(
                one,
                base=one.ais_path(base, carry="odd"),
                betas=schedule,
                num_runs=args["runs"],
                reverse_samples=rev,
                progress_bar=args["progress"],
                **be.kw(),
            )
        else:
            raise ValueError(f"routes for an RBM are {ROUTES['RBM']}, got {name!r}")
        out[name] = (res, time.perf_counter() - t0 + (chain_s if chains is not None else 0.0))
        chain_s = 0.0
    return out


def _dbm_routes(be, dbm, train_x, test_x, schedule, args, names) -> dict:
    fe = be.fe
    out = {}
    base = None
    chains = None
    if args["reverse"]:  # one set of long chains serves every route's reverse run
        start_x = _dbm_start(dbm, test_x[: args["runs"]], args["mf_iters"])
        chains = _chains(be, dbm, start_x, args["reverse_sweeps"])
    for name in names:
        t0 = time.perf_counter()
        if name not in ROUTES["DBM"]:
            raise ValueError(f"routes for a DBM are {ROUTES['DBM']}, got {name!r}")
        carry, start = name.split("|")
        if start == "matched":
            if base is None:
                base = dbm.matched_base(train_x[: args["num_base"]], num_iters=args["mf_iters"])
            path = dbm.ais_path(base, carry=carry)
        else:
            path = dbm.ais_path(fe.base_rate(train_x), carry=carry)
        res = fe.AIS(
            dbm,
            base=path,
            betas=schedule,
            num_runs=args["runs"],
            reverse_samples=chains,
            progress_bar=args["progress"],
            **be.kw(),
        )
        out[name] = (res, time.perf_counter() - t0)
    return out


def _mean_field_bound(dbm: Any, x: Any, log_z: float, stderr: float, num_iters: int) -> Any:

    parts = [
        ops.to_numpy(dbm.mean_field_bound(x[s : s + 5000], 0.0, num_iters=num_iters))
        for s in range(0, int(x.shape[0]), 5000)
    ]
    return summarize(np.concatenate(parts), log_z, stderr)


def evaluate_model(
    checkpoints: Any,
    data: str = "mnist",
    backend: str = "numpyro",
    runs: int = 100,
    betas: str = "auto",
    routes: Any = "auto",
    reverse: bool = False,
    reverse_sweeps: int = 1000,
    raise_points: int = 0,
    raise_betas: str = "linear:1000",
    seed: int = 0,
    data_root: str | None = None,
    progress: bool | None = None,
    num_base: int = 10_000,
    mf_iters: int = 30,
    tol: float = 0.5,
    device: Any = None,
) -> dict:
    """Score a saved model (one checkpoint: an RBM-family model or a DBM; several: a DBN
    stack of RBMs, bottom first) on ``data``; returns a JSON-able dict.

    :param routes: ``"auto"`` (the kind's default independent routes, see the module
        docstring) or a comma-separated list of route names.
    :param reverse: also run reverse AIS on every route, from ``runs`` block-Gibbs chains
        started at test images and run ``reverse_sweeps`` sweeps (one set of chains). Each
        route's forward and reverse estimates then bracket ``log Z``; the routes agree when
        the tightest bracket (largest forward, smallest reverse) is at most ``tol`` wide.
    :param raise_points: run RAISE on the first that many test images (schedule
        ``raise_betas``, one run each) and report it beside the likelihood of the same images.
    :param num_base: training images used to fit the matched base; ``mf_iters``: mean-field
        sweeps (matched base, DBM bounds); ``tol``: nats by which routes may differ.
    :param device: pyro backend only: the torch device for the model and the data (e.g.
        ``"cuda"``); default the CPU.
    """

    if isinstance(checkpoints, (str, Path)):
        checkpoints = [checkpoints]
    checkpoints = [str(c) for c in checkpoints]
    if not checkpoints:
        raise ValueError("give at least one checkpoint")
    for name, value, low in (
        ("runs", runs, 1),
        ("reverse_sweeps", reverse_sweeps, 1),
        ("raise_points", raise_points, 0),
        ("num_base", num_base, 1),
        ("mf_iters", mf_iters, 1),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if data not in DATA_CHOICES:
        raise ValueError(f"data must be one of {DATA_CHOICES}, got {data!r}")
    be = _Backend(backend, seed, device)
    for c in checkpoints:
        if not Path(c).is_file():
            raise ValueError(f"checkpoint {c!r} does not exist")
    kind, model = _load(checkpoints, backend, be.device)
    family = "RBM" if kind == "DBN" else kind
    schedule = schedule_from(betas, family)
    r_schedule = schedule_from(raise_betas, family) if raise_points else None
    if routes == "auto":
        names = DEFAULT_ROUTES.get(family, ("default",))
    else:
        names = tuple(s.strip() for s in str(routes).split(",") if s.strip())
        allowed = ROUTES.get(family, ("default",))
        bad = [n for n in names if n not in allowed]
        if bad or not names:
            raise ValueError(f"routes for a {kind} are {allowed}, got {routes!r}")
    n_visible = model[0].n_visible if kind == "DBN" else model.n_visible
    train, test = eval_data(data, seed, data_root)
    if train.shape[1] != n_visible:
        raise ValueError(
            f"the model has {n_visible} visible units but data {data!r} has {train.shape[1]} pixels"
        )
    train_x, test_x = be.array(train), be.array(test)
    args = {
        "runs": runs,
        "reverse": reverse,
        "reverse_sweeps": reverse_sweeps,
        "progress": progress,
        "num_base": num_base,
        "mf_iters": mf_iters,
    }
    t_start = time.perf_counter()
    out: dict = {
        "checkpoint": checkpoints[0] if len(checkpoints) == 1 else checkpoints,
        "kind": kind,
        "backend": backend,
        "data": data,
        "runs": runs,
        "num_betas": len(schedule),
    }
    fe = be.fe
    if kind == "DBN":
        dbn = fe.DBN.from_rbms(model)
        out["shape"] = list(dbn.sizes)
        top_train = fe.GreedyLayerData(model[:-1], train, seed=seed)(0)
        top_test = fe.GreedyLayerData(model[:-1], test[:runs], seed=seed + 1)(0)
        results = _rbm_routes(be, dbn.top, top_train, top_test, schedule, args, names)
    elif kind == "DBM":
        out["shape"] = list(model.sizes)
        results = _dbm_routes(be, model, train_x, test_x, schedule, args, names)
    elif kind == "RBM":
        out["shape"] = [model.n_visible, model.n_hidden]
        results = _rbm_routes(be, model, train_x, test_x, schedule, args, names)
    else:
        out["shape"] = [model.n_visible, model.n_hidden]
        t0 = time.perf_counter()
        rev = _chains(be, model, test_x[:runs], reverse_sweeps) if reverse else None
        res = fe.AIS(
            model, None, schedule, runs, reverse_samples=rev, progress_bar=progress, **be.kw()
        )
        results = {"default": (res, time.perf_counter() - t0)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # reported below, not twice
        checked = compare_routes({k: r for k, (r, _) in results.items()}, tol=tol, warn=False)
    if not checked.agree:
        warnings.warn(
            f"independent routes to log Z disagree by {checked.spread:.2f} nats (> {tol}): "
            f"{checked}; the likelihood below uses the largest (conservative) estimate, but "
            "anneal longer (--betas) before quoting it",
            RuntimeWarning,
            stacklevel=2,
        )
    log_z, stderr = checked.log_z, checked.log_z_stderr
    out["routes"] = {k: _route_record(r, s) for k, (r, s) in results.items()}
    out["routes_agree"] = checked.agree
    out["routes_spread"] = checked.spread
    out["log_z_lower"], out["log_z_upper"] = checked.lower, checked.upper
    out["routes_tol"] = tol
    out["log_z_route"] = checked.best
    out["log_z"], out["log_z_stderr"] = log_z, stderr
    first = results[names[0]][0]
    out["ess"] = first.ess
    lo, hi = first.log_z_interval
    out["log_z_interval"] = [lo if math.isfinite(lo) else None, hi]
    out["reverse_log_z"] = None if first.reverse is None else first.reverse.log_z
    out["reverse_log_z_stderr"] = None if first.reverse is None else first.reverse.log_z_stderr
    out["reverse_sweeps"] = reverse_sweeps if reverse else None
    out["ais_s"] = sum(s for _, s in results.values())

    if kind == "DBM":
        out["likelihood"] = "mean-field lower bound (eq. 38)"
        te = _mean_field_bound(model, test_x, log_z, stderr, mf_iters)
        tr = _mean_field_bound(model, train_x, log_z, stderr, mf_iters)
    elif kind == "DBN":
        out["likelihood"] = "variational lower bound (eq. 24)"
        bound_kw = {"rng_key": be.key()} if backend == "numpyro" else {}
        te = dbn.bound(test_x, checked, **bound_kw)
        bound_kw = {"rng_key": be.key()} if backend == "numpyro" else {}
        tr = dbn.bound(train_x, checked, **bound_kw)
    else:
        out["likelihood"] = "log-likelihood (exact given log Z)"
        te = summarize(model.log_prob(test_x), log_z, stderr)
        tr = summarize(model.log_prob(train_x), log_z, stderr)
    out["test_ll"], out["test_ll_stderr"], out["num_test"] = te.mean, te.stderr, te.num_data
    out["train_ll"], out["train_ll_stderr"], out["num_train"] = tr.mean, tr.stderr, tr.num_data

    if raise_points:
        if kind == "DBN":
            raise ValueError("RAISE is for RBMs and DBMs (a DBN's likelihood is a bound of eq. 24)")
        pts = test_x[:raise_points]
        t0 = time.perf_counter()
        if kind == "DBM":
            base = model.matched_base(train_x[:num_base], num_iters=mf_iters)
            same = _mean_field_bound(model, pts, log_z, stderr, mf_iters)
        else:
            base = fe.base_rate(train_x) if kind == "RBM" else None
            same = summarize(model.log_prob(pts), log_z, stderr)
        rr = fe.RAISE(model, pts, base, r_schedule, progress_bar=progress, **be.kw())
        out["raise"] = {
            "num_points": raise_points,
            "num_betas": len(r_schedule),
            "mean": rr.summary.mean,
            "stderr": rr.summary.stderr,
            "ais_same_points": same.mean,
            "ais_same_points_stderr": same.stderr,
            "s": time.perf_counter() - t0,
        }
    out["total_s"] = time.perf_counter() - t_start
    return out
