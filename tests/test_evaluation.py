"""`ebm-ppl evaluate` / :func:`ebm_ppl.evaluation.evaluate_model` for every model kind, on
small models trained-free but with exact answers: each route's log Z within its error bars
of exact log Z, the likelihoods equal to the exact ones given log Z, the two backends
agreeing, and bad input refused before any data are read."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ebm_ppl.cli import main
from ebm_ppl.evaluation import dbm_schedule, eval_data, evaluate_model, schedule_from
from ebm_ppl.io import save_model


def _torch_dbm(sizes, seed, scale=0.3):
    import torch

    from ebm_ppl.pyro import DBM

    g = torch.Generator().manual_seed(seed)
    ws = [scale * torch.randn(a, b, generator=g) for a, b in zip(sizes, sizes[1:])]
    bs = [-0.3 * torch.ones(n) for n in sizes]
    return DBM(ws, bs)


def _torch_rbm(nv, nh, seed, scale=0.3):
    import torch

    from ebm_ppl.pyro import RBM

    g = torch.Generator().manual_seed(seed)
    return RBM(scale * torch.randn(nv, nh, generator=g), -0.4 * torch.ones(nv), torch.zeros(nh))


@pytest.mark.parametrize("backend", ["numpyro", "pyro"])
def test_dbm_routes_and_bound_match_exact(tmp_path, backend):
    import torch

    dbm = _torch_dbm((64, 10, 6), 0)
    path = save_model(tmp_path / "dbm", dbm)
    r = evaluate_model(
        path, data="digits", backend=backend, betas="dbm:401", progress=False, num_base=500
    )
    exact = float(dbm.log_partition())
    assert set(r["routes"]) == {"odd|matched", "even|matched"}
    for x in r["routes"].values():
        assert abs(x["log_z"] - exact) < 4 * x["log_z_stderr"] + 1e-3
    assert r["routes_agree"] and r["kind"] == "DBM" and r["shape"] == [64, 10, 6]
    _, test = eval_data("digits", 0, None)
    bound = dbm.mean_field_bound(torch.as_tensor(test), 0.0, num_iters=30).double().mean()
    assert r["test_ll"] == pytest.approx(float(bound) - r["log_z"], abs=1e-3)
    exact_lp = float((dbm.visible().log_prob(torch.as_tensor(test)) - exact).mean())
    assert r["test_ll"] <= exact_lp + 3 * r["log_z_stderr"]  # eq. 38 is a lower bound


def test_rbm_routes_cli_and_dbn_stack(tmp_path, capsys):
    import torch

    rbm = _torch_rbm(64, 12, 1)
    p1 = save_model(tmp_path / "r1", rbm)
    rc = main(
        [
            "evaluate",
            str(p1),
            "--data",
            "digits",
            "--betas",
            "linear:600",
            "--reverse",
            "--num-base",
            "500",
            "--backend",
            "pyro",
            "--raise",
            "30",
            "--raise-betas",
            "linear:300",
            "--json",
            "--no-progress",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    r = json.loads(out.strip().splitlines()[-1])
    exact = float(rbm.log_partition())
    assert set(r["routes"]) == {"v|base-rate", "h|matched"}
    for x in r["routes"].values():
        assert abs(x["log_z"] - exact) < 4 * x["log_z_stderr"] + 1e-3
    assert abs(r["reverse_log_z"] - exact) < 4 * r["reverse_log_z_stderr"] + 1e-3
    assert "routes agree" in out and "h|matched" in out
    x = r["raise"]  # RAISE on 30 points: below their exact log p, and not far below
    _, test = eval_data("digits", 0, None)
    exact_30 = float((rbm.log_prob(torch.as_tensor(test[:30])) - exact).mean())
    assert exact_30 - 1.0 < x["mean"] < exact_30 + 4 * x["stderr"]
    # a DBN: the second RBM (12-5) on top of the first
    top = _torch_rbm(12, 5, 2, scale=1.0)
    p2 = save_model(tmp_path / "r2", top)
    r = evaluate_model(
        [p1, p2], data="digits", backend="numpyro", betas="linear:400", progress=False, num_base=500
    )
    exact_top = float(top.log_partition())
    assert r["kind"] == "DBN" and r["shape"] == [64, 12, 5]
    for x in r["routes"].values():
        assert abs(x["log_z"] - exact_top) < 4 * x["log_z_stderr"] + 1e-3
    assert r["likelihood"].startswith("variational lower bound")
    assert np.isfinite(r["test_ll"]) and r["test_ll"] < 0


def test_routes_that_disagree_warn(tmp_path):
    """A strongly multimodal DBM on a short schedule: the uniform-hidden route falls
    behind the matched ones and the evaluator says so."""
    dbm = _torch_dbm((64, 10, 6), 3, scale=2.5)
    path = save_model(tmp_path / "dbm", dbm)
    with pytest.warns(RuntimeWarning, match="routes to log Z disagree"):
        r = evaluate_model(
            path,
            data="digits",
            betas="linear:30",
            routes="odd|uniform,even|matched",
            backend="pyro",
            tol=0.01,
            progress=False,
            num_base=200,
        )
    assert not r["routes_agree"] and r["log_z"] == max(x["log_z"] for x in r["routes"].values())


def test_bad_input_is_refused_early(tmp_path, capsys):
    p = save_model(tmp_path / "r", _torch_rbm(64, 4, 0))
    with pytest.raises(ValueError, match="routes for a RBM"):
        evaluate_model(p, data="digits", routes="odd|matched")
    with pytest.raises(ValueError, match="betas"):
        evaluate_model(p, data="digits", betas="linear:1")
    with pytest.raises(ValueError, match="runs must be"):
        evaluate_model(p, data="digits", runs=0)
    with pytest.raises(ValueError, match="does not exist"):
        evaluate_model(tmp_path / "missing.safetensors", data="digits")
    with pytest.raises(ValueError, match="DBN"):
        evaluate_model([p, save_model(tmp_path / "d", _torch_dbm((4, 3, 2), 0))], data="digits")
    with pytest.raises(ValueError, match="is not a folder"):
        evaluate_model(p, data="mnist", data_root=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="pyro backend only"):
        evaluate_model(p, data="digits", device="cpu")
    with pytest.raises(ValueError, match="device must be a torch device"):
        evaluate_model(p, data="digits", backend="pyro", device="gpu0")
    assert main(["evaluate", str(tmp_path / "missing"), "--data", "digits"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert len(dbm_schedule(101)) == 101 and dbm_schedule(101)[-1] == 1.0
    assert len(schedule_from("auto", "DBM")) == 10001


def test_pyro_device_puts_model_and_data_there(tmp_path):
    """``device=`` (``--device``) loads the model and the data onto that torch device; on the
    CPU the estimate is the one without it, draw for draw."""
    p = save_model(tmp_path / "r", _torch_rbm(64, 4, 0))
    kw = dict(data="digits", backend="pyro", betas="linear:101", progress=False, num_base=200)
    r0 = evaluate_model(p, runs=20, **kw)
    r1 = evaluate_model(p, runs=20, device="cpu", **kw)
    assert r1["log_z"] == r0["log_z"] and r1["test_ll"] == r0["test_ll"]
