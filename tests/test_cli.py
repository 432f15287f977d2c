"""The demo command runs end to end (tiny settings) and the model checkpoint round-trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ebm_ppl.cli import main
from ebm_ppl.io import load_model, save_model


def test_demo_both_backends(tmp_path, capsys):
    import warnings

    argv = ["demo", "--epochs", "3", "--hidden", "6", "--draws", "20", "--out", str(tmp_path)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main(argv)
    assert rc == 0
    assert not [w for w in caught if "available_cpu" in str(w.message)]  # Pyro's chain note
    out = capsys.readouterr().out
    assert "independent pixels" in out and "RBM (pyro)" in out and "RBM (numpyro)" in out
    assert "demo_results.json" in out
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
    assert "--hidden" in capsys.readouterr().err


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


@pytest.mark.parametrize("backend", ["numpyro", "pyro"])
def test_evaluate_command_matches_exact(tmp_path, capsys, backend):
    import torch

    from ebm_ppl.cli import _eval_data
    from ebm_ppl.pyro import RBM

    g = torch.Generator().manual_seed(0)
    rbm = RBM(0.3 * torch.randn(64, 10, generator=g), -0.5 * torch.ones(64), torch.zeros(10))
    path = save_model(tmp_path / "m", rbm)
    rc = main(
        [
            "evaluate",
            str(path),
            "--data",
            "digits",
            "--betas",
            "linear:800",
            "--reverse",
            "--backend",
            backend,
            "--json",
            "--no-progress",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    res = json.loads(out.strip().splitlines()[-1])
    exact_log_z = float(rbm.log_partition())
    assert abs(res["log_z"] - exact_log_z) <= 3 * res["log_z_stderr"] + 1e-3
    assert abs(res["reverse_log_z"] - exact_log_z) <= 3 * res["reverse_log_z_stderr"] + 1e-3
    _, test = _eval_data("digits", 0, None)
    exact_ll = float((rbm.log_prob(torch.as_tensor(test)) - exact_log_z).mean())
    assert res["test_ll"] == pytest.approx(exact_ll, abs=3 * res["log_z_stderr"] + 1e-3)
    assert "average test log-likelihood" in out


def test_evaluate_command_rejects_mismatched_data(tmp_path, capsys):
    import torch

    from ebm_ppl.pyro import RBM

    path = save_model(tmp_path / "m", RBM(torch.zeros(5, 2), torch.zeros(5), torch.zeros(2)))
    assert main(["evaluate", str(path), "--data", "digits", "--no-progress"]) == 2
    assert "visible units" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, says",
    [
        (["evaluate", "{tmp}/missing.safetensors", "--data", "digits"], "does not exist"),
        (["evaluate", "{ckpt}", "--data", "mnist", "--data-root", "{tmp}/nope"], "not a folder"),
        (["evaluate", "{ckpt}", "--betas", "bogus", "--data-root", "{tmp}"], "betas must be"),
        (["evaluate", "{ckpt}", "--data", "mnist", "--data-root", "{tmp}"], "could not download"),
        (["demo", "--out", "{ckpt}/inside-a-file"], "inside-a-file"),
        (["demo", "--hidden", "30", "--out", "{tmp}"], "--hidden"),
    ],
)
def test_cli_user_errors_are_one_line(tmp_path, capsys, monkeypatch, argv, says):
    """A user error prints one 'error:' line on stderr and returns 2, never a traceback;
    bad --betas is refused before any data is looked for, and a data set that is neither
    on disk nor downloadable (offline) is a user error too."""
    import torch

    import ebm_ppl.datasets.mnist as mnist
    from ebm_ppl.pyro import RBM

    # nothing reachable: the download fails at once instead of reaching the network
    monkeypatch.setattr(mnist, "MNIST_MIRRORS", ("http://127.0.0.1:9/",))
    ckpt = save_model(tmp_path / "m", RBM(torch.zeros(784, 2), torch.zeros(784), torch.zeros(2)))
    argv = [a.format(tmp=tmp_path, ckpt=ckpt) for a in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0]
    assert "Traceback" not in captured.err + captured.out


def test_help_documents_every_option(capsys):
    """Every option of every command has a help text and shows its default; no
    reStructuredText markup leaks into --help."""
    from ebm_ppl.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():
        for action in command._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.option_strings or action.dest}: no help"
        text = command.format_help()
        assert "``" not in text, name
        assert "(default:" in text, name
    assert "``" not in parser.format_help()
