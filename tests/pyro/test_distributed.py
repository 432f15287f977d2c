"""Data-parallel Pyro SA-MLE and AIS over torch.distributed (gloo), with 2 local processes.

The checks themselves run in ``distributed_worker.py`` under ``torchrun``; this file starts
it, then checks here, in one process, that the two-rank checkpoint resumes on one.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
import torch
from safetensors.torch import load_file

from ebm_ppl.pyro import AIS, RBM, SAMLE

HERE = Path(__file__).parent
WORKER = HERE / "distributed_worker.py"
CHECKS = ["gradient", "run_and_resume", "resume_from_one_process", "ais"]

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="this torch build has no torch.distributed"
)


def _worker_module():
    spec = importlib.util.spec_from_file_location("distributed_worker", WORKER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Save a one-process checkpoint, run the worker on 2 gloo ranks; its output folder."""
    out = tmp_path_factory.mktemp("distributed")
    w = _worker_module()
    pyro.clear_param_store()
    pyro.set_rng_seed(7)
    one = w.make_trainer(False)
    one.run(w.data_set(), num_epochs=1, batch_size=20, progress_bar=False)
    one.save(out / "ck1.safetensors")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]
    cmd += ["2", str(WORKER), str(out), str(out / "ck1.safetensors")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    log = proc.stdout + proc.stderr
    return out, proc.returncode, log


@pytest.mark.parametrize("check", CHECKS)
def test_two_rank_check(two_ranks, check):
    _, rc, log = two_ranks
    if f"OK {check}" not in log:
        pytest.fail(
            f"distributed check {check!r} did not pass (torchrun exit {rc}):\n{log[-6000:]}"
        )


def test_two_rank_checkpoint_resumes_on_one_process(two_ranks):
    out, rc, log = two_ranks
    if "OK run_and_resume" not in log:
        pytest.skip("the two-rank run did not write its checkpoint")
    w = _worker_module()
    pyro.clear_param_store()
    t = w.make_trainer(False).load(out / "ck2.safetensors")
    parts = [load_file(str(out / f"chains_rank{r}.safetensors"))["v"] for r in range(2)]
    assert torch.equal(t.chains["v"], torch.cat(parts))  # all chains, in rank order
    assert t.num_steps == 4
    t.run(w.data_set(), num_epochs=2, batch_size=20, progress_bar=False)
    assert t.num_steps == 8 and t.chains["v"].shape == (20, w.N_VIS)


def test_distributed_needs_a_process_group():
    def model(data):
        w = pyro.param("W", torch.zeros(4, 2))
        with pyro.plate("data", data.shape[0]):
            pyro.sample("v", RBM(w, torch.zeros(4), torch.zeros(2)), obs=data)

    with pytest.raises(ValueError, match="process group"):
        SAMLE(model, pyro.optim.SGD({"lr": 0.1}), distributed=True)
    with pytest.raises(ValueError, match="process group"):
        AIS(RBM(torch.zeros(4, 2), torch.zeros(4), torch.zeros(2)), distributed=True)
