"""The demo command runs end to end (tiny settings) and the model checkpoint round-trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ebm_ppl.cli import main
from ebm_ppl.io import load_model, save_model


def test_demo_both_backends(tmp_path, capsys):
    rc = main(["demo", "--epochs", "3", "--hidden", "6", "--draws", "20", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "independent pixels" in out and "RBM (pyro)" in out and "RBM (numpyro)" in out
    res = json.loads((tmp_path / "demo_results.json").read_text())
    for r in res["results"]:
        assert np.isfinite(r["train_ll"]) and np.isfinite(r["test_ll"])
        for key in ("samples_png", "trace_png", "checkpoint"):
            assert (tmp_path / r[key].split("/")[-1]).stat().st_size > 0
    # the checkpoint loads in either backend and gives the same log-likelihoods
    pyro_rbm = load_model(tmp_path / "rbm_pyro.safetensors", backend="torch")
    jax_rbm = load_model(tmp_path / "rbm_pyro.safetensors", backend="jax")
    assert float(pyro_rbm.log_partition()) == pytest.approx(
        float(jax_rbm.log_partition()), rel=1e-5
    )


def test_demo_rejects_large_hidden(tmp_path, capsys):
    assert main(["demo", "--hidden", "30", "--out", str(tmp_path)]) == 2
    assert "--hidden" in capsys.readouterr().out


def test_save_load_model_round_trip(backend, tmp_path):
    rng = np.random.default_rng(0)
    d = backend.RBM(
        backend.array(rng.standard_normal((5, 3))),
        backend.array(rng.standard_normal(5)),
        backend.array(rng.standard_normal(3)),
        num_gibbs_steps=7,
    )
    path = save_model(tmp_path / "m", d, note="x")
    for target in ("torch", "jax"):
        d2 = load_model(path, backend=target)
        assert d2.num_gibbs_steps == 7
        np.testing.assert_allclose(backend.np(d.weights), np.asarray(d2.weights))
    with pytest.raises(ValueError, match="backend"):
        load_model(path, backend="numpy")
    with pytest.raises(TypeError, match="model"):
        save_model(tmp_path / "bad", object())
