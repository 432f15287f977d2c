"""Checks of data-parallel Pyro SA-MLE and AIS, run by ``torchrun`` (see test_distributed.py).

Usage: ``torchrun --standalone --nproc-per-node 2 tests/pyro/distributed_worker.py OUT CK1``
where ``CK1`` is a checkpoint saved by a one-process run of :func:`make_model`'s trainer.
Every check asserts; rank 0 prints ``OK <check>`` after each. ``OUT`` receives the
two-rank checkpoint ``ck2.safetensors`` and each rank's chains at the time it was saved.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyro
import torch
from safetensors.torch import save_file

from ebm_ppl.io import load_checkpoint
from ebm_ppl.pyro import AIS, RBM, SAMLE, init_distributed, linear_schedule
from ebm_ppl.pyro.distributed import all_gather_cat, rank_seed

N_VIS, N_HID = 12, 6


def model(data):
    w = pyro.param("W", 0.3 * torch.randn(N_VIS, N_HID))
    b = pyro.param("b", torch.zeros(N_VIS))
    c = pyro.param("c", torch.zeros(N_HID))
    with pyro.plate("data", data.shape[0]):
        pyro.sample("v", RBM(w, b, c), obs=data)


def data_set(n: int = 80) -> torch.Tensor:
    rng = np.random.default_rng(0)
    p = np.linspace(0.1, 0.8, N_VIS)
    return torch.as_tensor((rng.random((n, N_VIS)) < p).astype(np.float32))


def make_trainer(distributed: bool, lr: float = 0.1, momentum: float = 0.5) -> SAMLE:
    optim = pyro.optim.SGD({"lr": lr, "momentum": momentum})
    return SAMLE(model, optim, num_chains=20, distributed=distributed)


def params() -> dict[str, torch.Tensor]:
    store = pyro.get_param_store()
    return {k: store[k].detach().clone() for k in ("W", "b", "c")}


def same_on_all_ranks(x: torch.Tensor) -> bool:
    rows = all_gather_cat(x.reshape(1, -1), dim=0)
    return bool((rows == rows[0]).all())


def check_gradient(rank: int, world: int) -> None:
    """One distributed update (SGD, lr 1) moves the parameters by minus the single-process
    gradient on the whole batch with all ranks' negative samples."""
    pyro.clear_param_store()
    pyro.set_rng_seed(1)
    x = data_set(40)
    model(x)  # the same initial parameters on every rank (same seed)
    before = params()
    trainer = make_trainer(True, lr=1.0, momentum=0.0)
    trainer.step(x.reshape(world, -1, N_VIS)[rank])
    after = params()
    chains = all_gather_cat(trainer.chains["v"], dim=0)  # the negative samples used
    assert chains.shape == (20, N_VIS)
    ref = {k: v.clone().requires_grad_() for k, v in before.items()}
    rbm = RBM(ref["W"], ref["b"], ref["c"])
    loss = -(rbm.log_prob_unchecked(x).mean() - rbm.log_prob_unchecked(chains).mean())
    loss.backward()
    for k in ref:
        step = before[k] - after[k]
        assert torch.allclose(step, ref[k].grad, atol=2e-6, rtol=1e-5), (k, step, ref[k].grad)
        assert same_on_all_ranks(after[k])


def check_run_and_resume(rank: int, world: int, out: Path) -> None:
    """Ranks stay in sync, draw different chains, and a checkpoint resumes exactly."""
    x = data_set()
    pyro.clear_param_store()
    pyro.set_rng_seed(2)
    a = make_trainer(True)
    a.run(x, num_epochs=1, batch_size=20, progress_bar=False)
    ck = out / "ck2.safetensors"
    a.save(ck)
    save_file({"v": a.chains["v"].contiguous()}, str(out / f"chains_rank{rank}.safetensors"))
    a.run(x, num_epochs=2, batch_size=20, progress_bar=False)
    full, full_chains = params(), a.chains["v"].clone()
    for v in full.values():
        assert same_on_all_ranks(v)
    assert not same_on_all_ranks(full_chains), "the ranks' chains should differ"

    pyro.clear_param_store()
    pyro.set_rng_seed(99)  # irrelevant: the checkpoint restores every rank's stream
    b = make_trainer(True).load(ck)
    b.run(x, num_epochs=2, batch_size=20, progress_bar=False)
    for k, v in params().items():
        assert torch.equal(v, full[k]), k
    assert torch.equal(b.chains["v"], full_chains)


def check_resume_from_one_process(rank: int, world: int, ck1: Path) -> None:
    """A checkpoint written by one process resumes on ``world`` ranks: each takes its
    contiguous share of the chains, and training goes on in sync."""
    tensors, _ = load_checkpoint(ck1, backend="torch")
    pyro.clear_param_store()
    c = make_trainer(True).load(ck1)
    share = tensors["chains/v"].chunk(world)[rank]
    assert torch.equal(c.chains["v"], share)
    assert torch.equal(pyro.get_param_store()["W"].detach(), tensors["param/W"])
    assert c.num_steps == 4  # one epoch of 80 points in batches of 20
    c.run(data_set(), num_epochs=2, batch_size=20, progress_bar=False)
    assert c.num_steps == 8
    for v in params().values():
        assert same_on_all_ranks(v)


def check_ais(rank: int, world: int) -> None:
    """AIS over the ranks: the gathered log-weights are each rank's own runs in rank order,
    every rank returns the same estimate, it is deterministic per seed, and it is right."""
    g = torch.Generator().manual_seed(5)
    w = 1.0 * torch.randn(N_VIS, N_HID, generator=g)
    b = 0.5 * torch.randn(N_VIS, generator=g)
    c = 0.5 * torch.randn(N_HID, generator=g)
    rbm = RBM(w, b, c)
    betas = linear_schedule(300)
    pyro.set_rng_seed(3)
    r1 = AIS(rbm, betas=betas, num_runs=200, distributed=True, progress_bar=False)
    pyro.set_rng_seed(3)
    r2 = AIS(rbm, betas=betas, num_runs=200, distributed=True, progress_bar=False)
    assert r1.log_weights.shape == (200,)
    assert np.array_equal(r1.log_weights, r2.log_weights)
    mine = AIS(
        rbm,
        betas=betas,
        num_runs=200 // world,
        generator=torch.Generator().manual_seed(rank_seed(3, rank)),
        progress_bar=False,
    )
    share = r1.log_weights.reshape(world, -1)[rank]
    assert np.allclose(share, mine.log_weights, rtol=0, atol=1e-9)
    assert same_on_all_ranks(torch.as_tensor(r1.log_weights))
    assert not np.array_equal(r1.log_weights[:100], r1.log_weights[100:])
    exact = float(rbm.log_partition())
    assert abs(r1.log_z - exact) < 5 * r1.log_z_stderr + 1e-3, (r1.log_z, exact, r1.log_z_stderr)


def main() -> None:
    out, ck1 = Path(sys.argv[1]), Path(sys.argv[2])
    rank, world = init_distributed("gloo")
    torch.set_num_threads(1)
    for name, fn in [
        ("gradient", lambda: check_gradient(rank, world)),
        ("run_and_resume", lambda: check_run_and_resume(rank, world, out)),
        ("resume_from_one_process", lambda: check_resume_from_one_process(rank, world, ck1)),
        ("ais", lambda: check_ais(rank, world)),
    ]:
        fn()
        if rank == 0:
            print(f"OK {name}", flush=True)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
