"""The torch algorithms stay on the device of their inputs, without a GPU to test on.

What goes wrong on CUDA is (1) a tensor made by a factory (``torch.zeros``,
``torch.as_tensor(numpy)``, ...) without ``device=``, which lands on the CPU and then meets
CUDA tensors, and (2) a host round-trip in an inner loop (``.item()``, ``float(t)``,
``bool(t)``, ``.numpy()``, ``.cpu()``, or a host-to-device copy), which makes every sweep
wait for the device. Both are visible on the CPU, through a ``TorchFunctionMode``
(:class:`DeviceAudit`): every torch function and tensor method call made while an algorithm
runs passes through it, and it records, with the line of ``ebm_ppl`` that made it,

* ``created``: factory calls without a device (``as_tensor`` / ``tensor`` of a tensor keep
  that tensor's device and do not count);
* ``reads``: calls that copy values to the host;
* ``uploads``: factory calls that copy host data (numpy, lists, Python numbers) to a device.

Calls made by torch, Pyro or the tests themselves are not ebm_ppl's and are not recorded.
The tests require no ``created`` calls at all, and reads and uploads that do not grow with
the number of sweeps / steps / iterations (set-up and input checks read values once; a loop
must not). ``ops.on_host`` is patched to say "accelerator", so that code which may read
values on the CPU (an early exit, a progress display) takes its accelerator path.

Approaches that do not work with torch 2.13, for the record: running on the ``meta`` device
(inputs on meta, or ``set_default_device("meta")`` for the algorithm) cannot read values,
which input checks, the trainers' statistics and AIS's estimate must do; ``torch.binomial``
has no meta kernel; and meta does not reliably refuse CPU operands (``cpu_vector @
meta_matrix`` returns a CPU tensor, ``cpu_scalar + meta`` a meta one, and a CPU generator
is accepted for meta draws). ``DeviceContext`` changes where *every* device-less factory
puts its tensor, Pyro's and torch's own included, so failures would not point at our code.
A static check (:func:`test_no_device_less_factories_in_the_source`) complements the run
time one for code paths no test here exercises.
"""

from __future__ import annotations

import ast
import collections
import inspect
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors

import ebm_ppl
from ebm_ppl import ops

PACKAGE = Path(ebm_ppl.__file__).resolve().parent
TORCH_DIR = Path(torch.__file__).resolve().parent

#: torch factories (``torch.zeros``, ``torch.rand``, ``torch.as_tensor``, ...)
FACTORIES = frozenset(_device_constructors())
#: factories that take data: given a tensor they keep its device
FROM_DATA = frozenset({torch.tensor, torch.as_tensor, torch.asarray})
#: calls that copy values to the host
READS = {
    torch.Tensor.item: "item",
    torch.Tensor.tolist: "tolist",
    torch.Tensor.numpy: "numpy",
    torch.Tensor.cpu: "cpu",
    torch.Tensor.__float__: "float",
    torch.Tensor.__int__: "int",
    torch.Tensor.__bool__: "bool",
    torch.Tensor.__index__: "index",
    torch.Tensor.__complex__: "complex",
    torch.Tensor.__array__: "__array__",
    torch.Tensor.__format__: "format",
    torch.Tensor.__repr__: "repr",
}
#: a comment on the line that makes a deliberate host tensor / host read
HOST_MARK = "# device:"


def _ebm_ppl_line() -> str | None:
    """``file:line`` of the ebm_ppl code that made the current torch call, or ``None`` when
    the first caller outside torch is not ebm_ppl (Pyro, the tests)."""
    frame = sys._getframe(2)  # the caller of DeviceAudit.__torch_function__
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if path.is_relative_to(TORCH_DIR):
            frame = frame.f_back
            continue
        if path.is_relative_to(PACKAGE):
            return f"{path.relative_to(PACKAGE.parent)}:{frame.f_lineno}"
        return None
    return None


def _marked(where: str) -> bool:
    """Whether the source line ``where`` says that it makes host data on purpose."""
    file, line = where.rsplit(":", 1)
    text = (PACKAGE.parent / file).read_text().splitlines()[int(line) - 1]
    return HOST_MARK in text


def _to_cpu(args, kwargs) -> bool:
    target = kwargs.get("device", args[1] if len(args) > 1 else None)
    if isinstance(target, (str, torch.device)):
        return torch.device(target).type == "cpu"
    return False


class DeviceAudit(TorchFunctionMode):
    """Records device-less factory calls, host reads and host-to-device copies made by
    ebm_ppl (see the module docstring); use as a context manager."""

    def __init__(self) -> None:
        super().__init__()
        self.created: list[str] = []
        self.reads: list[str] = []
        self.uploads: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        record = None
        if func in FACTORIES:
            host_data = func in FROM_DATA and not isinstance(
                args[0] if args else None, torch.Tensor
            )
            if func in FROM_DATA and not host_data:
                pass  # keeps the tensor's own device
            elif kwargs.get("device") is None:
                record = self.created, f"torch.{func.__name__}"
            elif host_data:
                record = self.uploads, f"torch.{func.__name__}"
        elif func in READS:
            record = self.reads, READS[func]
        elif func is torch.Tensor.to and _to_cpu(args, kwargs):
            record = self.reads, "to(cpu)"
        if record is not None:
            where = _ebm_ppl_line()
            if where is not None and not _marked(where):
                record[0].append(f"{record[1]} at {where}")
        return func(*args, **kwargs)

    def counts(self) -> dict:
        return {
            "created": collections.Counter(self.created),
            "reads": collections.Counter(self.reads),
            "uploads": collections.Counter(self.uploads),
        }


def audit(run, small: int = 2, large: int = 5) -> DeviceAudit:
    """Run ``run(n)`` for a small and a large ``n`` (sweeps, steps, iterations) under a
    :class:`DeviceAudit`: no device-less factory calls, and the same host reads and uploads
    for both (nothing per step). Returns the audit of the large run."""
    with DeviceAudit() as few:
        run(small)
    with DeviceAudit() as many:
        run(large)
    made = collections.Counter(few.created + many.created)
    assert not made, "tensors made on the CPU by default (no device=):\n" + "\n".join(
        f"{n}x {w}" for w, n in made.items()
    )
    for kind in ("reads", "uploads"):
        grow = many.counts()[kind] - few.counts()[kind]
        assert not grow, f"{kind} per step ({small} -> {large} steps):\n" + "\n".join(
            f"{n} more: {w}" for w, n in grow.items()
        )
    return many


@pytest.fixture(autouse=True)
def accelerator(monkeypatch):
    """Make ebm_ppl take its accelerator code paths (the tensors stay on the CPU)."""
    monkeypatch.setattr(ops, "on_host", lambda x: False, raising=False)
    import pyro

    pyro.set_rng_seed(0)
    pyro.clear_param_store()


def _params(nv=6, nh=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = 0.5 * torch.randn(nv, nh, generator=g)
    return w, 0.1 * torch.randn(nv, generator=g), 0.1 * torch.randn(nh, generator=g)


def _rbm():
    from ebm_ppl.pyro import RBM

    return RBM(*_params())


def _gaussian_rbm():
    from ebm_ppl.pyro import GaussianRBM

    return GaussianRBM(*_params(), sigma=torch.full((6,), 0.8))


def _dbm(sigma=None):
    from ebm_ppl.pyro import DBM

    w1, b0, b1 = _params(6, 4, 1)
    w2, _, b2 = _params(4, 3, 2)
    return DBM([w1, w2], [b0, b1, b2], sigma=sigma)


MODELS = {"RBM": _rbm, "GaussianRBM": _gaussian_rbm, "DBM": _dbm}


# --------------------------------------------------------------------------------------
# the detector itself
# --------------------------------------------------------------------------------------


def _as_ebm_ppl_code(src: str):
    """A function compiled as if it were a line of ebm_ppl (so the audit attributes it)."""
    ns: dict = {"torch": torch, "np": np}
    exec(compile(src, str(PACKAGE / "ops" / "__init__.py"), "exec"), ns)
    return ns["f"]


def test_audit_catches_device_less_factories_reads_and_uploads():
    leaky = _as_ebm_ppl_code(
        "def f(x, n):\n"
        "    for _ in range(n):\n"
        "        x = x + torch.zeros(x.shape)\n"  # device-less
        "        float(x.sum())\n"  # a read per step
        "        x = x + torch.as_tensor(np.ones(3), device=x.device)\n"  # an upload per step
        "    return x\n"
    )
    clean = _as_ebm_ppl_code(
        "def f(x, n):\n"
        "    for _ in range(n):\n"
        "        x = x + torch.zeros(x.shape, device=x.device) + torch.as_tensor(x)\n"
        "    return float(x.sum())\n"
    )
    x = torch.ones(3)
    with DeviceAudit() as a:
        leaky(x, 2)
    assert [c.split(" at ")[0] for c in a.created] == ["torch.zeros"] * 2
    assert [r.split(" at ")[0] for r in a.reads] == ["float"] * 2
    assert [u.split(" at ")[0] for u in a.uploads] == ["torch.as_tensor"] * 2
    with pytest.raises(AssertionError, match="made on the CPU by default"):
        audit(lambda n: leaky(x, n))
    audit(lambda n: clean(x, n))
    with DeviceAudit() as b:  # calls from outside ebm_ppl are not ours
        torch.zeros(3)
        float(x.sum())
    assert b.created == b.reads == []


# --------------------------------------------------------------------------------------
# block-Gibbs transitions and sampling
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
def test_transition_and_sample_stay_on_device(name):
    d = MODELS[name]()
    v = d.sample((3,))
    a = audit(lambda n: d.transition(None, v, n))
    assert a.reads == a.uploads == []  # a transition reads nothing at all
    d.num_gibbs_steps = 2
    a = audit(lambda n: d.expand((n,)).sample((2,)))
    assert a.reads == a.uploads == []


def test_gaussian_dbm_and_clamped_transitions_stay_on_device():
    from ebm_ppl.models.rbm import Clamp

    d = _dbm(sigma=0.5)
    v = d.sample((3,))
    audit(lambda n: d.transition(None, v, n))
    r = _rbm()
    x = r.sample((3,))
    clamp = Clamp(torch.arange(6) < 3, torch.ones(6))
    audit(lambda n: r.transition(None, x, n, clamp=clamp))


def test_replicated_softmax_reads_its_document_lengths_once():
    from ebm_ppl.pyro import ReplicatedSoftmax

    w, b, c = _params(5, 3)
    d = ReplicatedSoftmax(w, b, c, total_count=torch.tensor(7.0))
    v = d.sample((4,))
    a = audit(lambda n: d.transition(None, v, n))
    assert len(a.reads) == 1  # the longest document, before the sweeps


# --------------------------------------------------------------------------------------
# DBM mean field
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("tol", [None, 1e-6])
def test_dbm_mean_field_stays_on_device(tol):
    from ebm_ppl.models.dbm import mean_field_fixed_point

    d = _dbm()
    v = d.sample((5,))[..., :6]
    audit(lambda n: d.mean_field(v, num_iters=n, tol=tol))  # reads: the input check
    a = audit(lambda n: mean_field_fixed_point(d._frozen(), v, n, 0.5, tol))
    assert a.reads == a.uploads == []  # the iterations read nothing at all
    audit(lambda n: d.visible(num_iters=n, tol=tol).log_prob(v))


def test_mean_field_freezes_on_an_accelerator_as_it_stops_on_the_cpu(monkeypatch):
    """The accelerator path (no reads: converged marginals frozen on the device) gives
    exactly what the early exit gives on the CPU."""
    d = _dbm()
    v = d.sample((5,))[..., :6]
    frozen = d.mean_field(v, num_iters=40, tol=1e-4)
    monkeypatch.setattr(ops, "on_host", lambda x: True)
    stopped = d.mean_field(v, num_iters=40, tol=1e-4)
    full = d.mean_field(v, num_iters=40, tol=None)
    for a, b in zip(frozen, stopped):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert any(not torch.equal(a, b) for a, b in zip(stopped[1:], full[1:]))


# --------------------------------------------------------------------------------------
# SAMLE, AIS, BlockGibbs
# --------------------------------------------------------------------------------------


def _rbm_model(data):
    import pyro

    from ebm_ppl.pyro import RBM

    w0, b0, c0 = _params()
    w = pyro.param("w", w0)
    b = pyro.param("b", b0)
    c = pyro.param("c", c0)
    with pyro.plate("data", data.shape[0]):
        pyro.sample("v", RBM(w, b, c), obs=data)


@pytest.mark.parametrize("persistent", [True, False])
def test_samle_step_stays_on_device(persistent):
    import pyro

    from ebm_ppl.pyro import SAMLE

    data = _rbm().sample((8,))

    def run(n):
        pyro.clear_param_store()
        trainer = SAMLE(_rbm_model, pyro.optim.SGD({"lr": 0.01}), n, persistent=persistent)
        for _ in range(2):
            trainer.step(data)

    audit(run)


def test_samle_step_on_a_dbm_stays_on_device():
    import pyro

    from ebm_ppl.pyro import DBM, SAMLE

    w1, b0, b1 = _params(6, 4, 1)
    w2, _, b2 = _params(4, 3, 2)

    def model(data, num_iters):
        ws = [pyro.param("w1", w1), pyro.param("w2", w2)]
        bs = [pyro.param(f"b{i}", b) for i, b in enumerate((b0, b1, b2))]
        with pyro.plate("data", data.shape[0]):
            pyro.sample("v", DBM(ws, bs).visible(num_iters, tol=1e-6), obs=data)

    data = _dbm().sample((8,))[..., :6]

    def run(n):  # n: Gibbs steps and mean-field sweeps
        pyro.clear_param_store()
        trainer = SAMLE(model, pyro.optim.SGD({"lr": 0.01}), n)
        trainer.step(data, n)

    audit(run)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_ais_steps_stay_on_device(name):
    d = MODELS[name]()
    base = d.ais_base(None)
    v0 = base.sample(None, (4,))

    def run(n):
        v, total = v0, 0.0
        for k in range(n):
            v, delta = d.ais_step(None, v, k / n, (k + 1) / n, base)
            total = total + delta
        return total

    a = audit(run)
    assert a.reads == a.uploads == []


@pytest.mark.parametrize("name", sorted(MODELS))
def test_ais_stays_on_device(name):
    from ebm_ppl.pyro import AIS, linear_schedule

    d = MODELS[name]()
    # AIS reads its log-weights once per chunk of the schedule (100 chunks at most)
    audit(lambda n: AIS(d, betas=linear_schedule(100 * n), num_runs=4, progress_bar=False))


def _mcmc(model, n, **kw):
    from pyro.infer import MCMC

    from ebm_ppl.pyro import BlockGibbs

    mcmc = MCMC(BlockGibbs(model, **kw), num_samples=n, warmup_steps=1, disable_progbar=True)
    mcmc.run()
    return mcmc


def test_block_gibbs_under_mcmc_stays_on_device():
    import pyro

    r = _rbm()

    def model():
        with pyro.plate("chains", 3):
            pyro.sample("v", r)

    a = audit(lambda n: _mcmc(model, n, num_sweeps=2, report_hidden=True))
    assert a.uploads == []
    d = _dbm()

    def dbm_model():
        pyro.sample("x", d.expand((2,)))

    audit(lambda n: _mcmc(dbm_model, n))


@pytest.mark.parametrize("kind", ["ParallelTempering", "TemperedTransitions"])
def test_tempered_block_gibbs_stays_on_device(kind):
    import pyro

    import ebm_ppl.pyro as frontend

    r = _rbm()

    def model():
        with pyro.plate("chains", 2):
            pyro.sample("v", r)

    transition = getattr(frontend, kind)(np.linspace(0.5, 1.0, 4))
    audit(lambda n: _mcmc(model, n, transition=transition))


def test_block_gibbs_with_an_observation_stays_on_device():
    """A Gaussian observation of a Gaussian-RBM site: its field is recomputed every sweep."""
    import pyro
    import pyro.distributions as dist

    r = _gaussian_rbm()
    y = torch.linspace(0.0, 1.0, 6)

    def model():
        v = pyro.sample("v", r)
        pyro.sample("y", dist.Normal(v, 0.5).to_event(1), obs=y)

    audit(lambda n: _mcmc(model, n))


# --------------------------------------------------------------------------------------
# the source: every torch factory names a device
# --------------------------------------------------------------------------------------

#: torch calls that must say where their tensor goes
STATIC_FACTORIES = {f.__name__ for f in FACTORIES} | {"Generator", "from_numpy"}
#: known device-less calls in files owned elsewhere right now (path, function, call); a
#: fix there makes an entry stale, which this test tolerates
KNOWN = {
    ("ebm_ppl/pyro/samle.py", "run", "torch.as_tensor"),
    ("ebm_ppl/pyro/samle.py", "_as_tensor", "torch.as_tensor"),
    ("ebm_ppl/pyro/ais.py", "gather", "torch.as_tensor"),
    ("ebm_ppl/pyro/ais.py", "gather", ".numpy()"),
}


def _device_less_calls(path: Path, rel: str | None = None) -> set[tuple[str, str, str]]:
    """``(file, function, call)`` of the torch factories without ``device=`` in ``path``."""
    src = path.read_text()
    lines = src.splitlines()
    rel = str(path.relative_to(PACKAGE.parent)) if rel is None else rel
    found = set()

    def marked(node) -> bool:
        return any(HOST_MARK in lines[i - 1] for i in range(node.lineno, node.end_lineno + 1))

    def visit(node, func_name):
        for child in ast.iter_child_nodes(node):
            name = func_name
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = child.name
            if isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute):
                f = child.func
                torch_call = isinstance(f.value, ast.Name) and f.value.id == "torch"
                if torch_call and f.attr in STATIC_FACTORIES and not marked(child):
                    has_device = any(k.arg == "device" for k in child.keywords)
                    if f.attr == "from_numpy" or not has_device:
                        found.add((rel, func_name, f"torch.{f.attr}"))
                # .numpy() straight on a tensor that may live on an accelerator
                if f.attr == "numpy" and not child.args and not marked(child):
                    v = f.value
                    on_cpu = isinstance(v, ast.Call) and getattr(v.func, "attr", "") == "cpu"
                    if not on_cpu:
                        found.add((rel, func_name, ".numpy()"))
            visit(child, name)

    visit(ast.parse(src), "<module>")
    return found


def test_no_device_less_factories_in_the_source():
    """Every ``torch`` factory in the torch code paths names a device (or carries a
    ``# device: <why>`` comment), and ``.numpy()`` comes after ``.cpu()``."""
    files = [
        p
        for p in sorted(PACKAGE.rglob("*.py"))
        if "numpyro" not in p.parts and p.name != "cli.py"  # JAX; a CPU demo
    ]
    found = set().union(*(_device_less_calls(p) for p in files))
    new = sorted(found - KNOWN)
    assert not new, "torch factories without device=:\n" + "\n".join(map(str, new))


def test_source_check_sees_a_device_less_call(tmp_path):
    f = tmp_path / "x.py"
    f.write_text(
        inspect.cleandoc(
            """
            import torch
            def g(x):
                a = torch.zeros(3, device=x.device)
                b = torch.zeros(3)
                c = torch.as_tensor([1.0])  # device: default, on purpose
                return x.numpy(), x.cpu().numpy()
            """
        )
    )
    found = _device_less_calls(f, "ebm_ppl/x.py")
    assert found == {("ebm_ppl/x.py", "g", "torch.zeros"), ("ebm_ppl/x.py", "g", ".numpy()")}
