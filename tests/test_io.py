"""Tests for ebm_ppl.io: safetensors + JSON checkpoints and nested-state flattening."""

from __future__ import annotations

import collections
import json
import math
import os
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import safetensors
import safetensors.numpy
import torch

import ebm_ppl.io as eio
from ebm_ppl.io import flatten_state, load_checkpoint, save_checkpoint, unflatten_state

DTYPES = ["float32", "int64", "bool"]
SHAPES = [(), (3,), (2, 3)]


def _numpy_array(dtype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return np.asarray(rng.random(shape) < 0.5)
    if dtype.startswith("int"):
        return rng.integers(-1000, 1000, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _assert_same(a: Any, b: Any, where: str = "tree") -> None:
    """Recursive equality that also checks container, scalar and array types."""
    assert type(a) is type(b), f"{where}: {type(a)} vs {type(b)}"
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, (np.ndarray, np.generic, jax.Array)):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True), where
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, where


# ------------------------------------------------------------------------------------------
# arrays
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_numpy_round_trip(tmp_path: Path, dtype: str, shape: tuple[int, ...]) -> None:
    arr = _numpy_array(dtype, shape)
    path = save_checkpoint(tmp_path / "ck", {"a": arr})
    arrays, config = load_checkpoint(path)
    assert config == {}
    out = arrays["a"]
    assert isinstance(out, np.ndarray)
    assert out.dtype == arr.dtype and out.shape == shape
    np.testing.assert_array_equal(out, arr)
    out[...] = out  # loaded arrays are writable copies


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.bool])
@pytest.mark.parametrize("shape", SHAPES)
def test_torch_round_trip(tmp_path: Path, dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    t = torch.from_numpy(_numpy_array(str(dtype).removeprefix("torch."), shape))
    path = save_checkpoint(tmp_path / "ck.safetensors", {"t": t})
    arrays, _ = load_checkpoint(path, backend="torch")
    out = arrays["t"]
    assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.shape == shape
    assert torch.equal(out, t)


def test_torch_grad_noncontiguous_and_bfloat16(tmp_path: Path) -> None:
    w = torch.randn(3, 4, requires_grad=True)
    tensors = {
        "grad": w * 2,  # requires grad: detached on save
        "transposed": torch.arange(12.0).reshape(3, 4).t(),  # not contiguous
        "strided": torch.arange(10)[::3],
        "bf16": torch.tensor([1.5, -2.25, 3.0], dtype=torch.bfloat16),
    }
    save_checkpoint(tmp_path / "ck", tensors)
    arrays, _ = load_checkpoint(tmp_path / "ck", backend="torch")
    for name, t in tensors.items():
        assert torch.equal(arrays[name], t.detach()), name
        assert arrays[name].dtype == t.dtype, name
    assert not arrays["grad"].requires_grad


@pytest.mark.parametrize("dtype", ["float32", "int32", "bool"])
@pytest.mark.parametrize("shape", SHAPES)
def test_jax_round_trip(tmp_path: Path, dtype: str, shape: tuple[int, ...]) -> None:
    x = jnp.asarray(_numpy_array(dtype, shape))
    save_checkpoint(tmp_path / "ck", {"x": x})
    arrays, _ = load_checkpoint(tmp_path / "ck", backend="jax")
    out = arrays["x"]
    assert isinstance(out, jax.Array) and out.dtype == x.dtype and out.shape == shape
    assert bool(jnp.array_equal(out, x))


def test_mixed_backends_and_metadata(tmp_path: Path) -> None:
    tensors = {
        "np": np.arange(4, dtype=np.int64),
        "torch": torch.ones(2, 2),
        "jax": jnp.zeros((3,), dtype=jnp.float32),
        "scalar": np.float64(2.5),
    }
    path = save_checkpoint(tmp_path / "ck", tensors)
    with safetensors.safe_open(path, framework="np") as f:
        meta = f.metadata()
    assert meta["format"] == "ebm_ppl"
    assert meta["format_version"] == "1"
    assert meta["backend"] == "mixed"
    assert json.loads(meta["config"]) == {}
    for backend in ("numpy", "torch", "jax"):
        arrays, _ = load_checkpoint(path, backend=backend)
        assert set(arrays) == set(tensors)
        for name, value in tensors.items():
            np.testing.assert_array_equal(eio._to_numpy(arrays[name], name), np.asarray(value))

    save_checkpoint(tmp_path / "t", {"a": torch.zeros(1)})
    with safetensors.safe_open(tmp_path / "t.safetensors", framework="np") as f:
        assert f.metadata()["backend"] == "torch"


def test_suffix_handling(tmp_path: Path) -> None:
    assert save_checkpoint(tmp_path / "ck", {}) == tmp_path / "ck.safetensors"
    assert save_checkpoint(str(tmp_path / "m.v1"), {}) == tmp_path / "m.v1"
    assert load_checkpoint(tmp_path / "ck") == ({}, {})
    assert load_checkpoint(tmp_path / "m.v1") == ({}, {})


def test_bad_tensors_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="names must be non-empty"):
        save_checkpoint(tmp_path / "ck", {"": np.zeros(1)})
    with pytest.raises(TypeError, match="names must be strings"):
        save_checkpoint(tmp_path / "ck", {1: np.zeros(1)})
    with pytest.raises(TypeError, match=r"tensors\['x'\]"):
        save_checkpoint(tmp_path / "ck", {"x": [1.0, 2.0]})
    with pytest.raises(TypeError, match=r"tensors\['c'\].*dtype complex128"):
        save_checkpoint(tmp_path / "ck", {"c": np.zeros(2, dtype=np.complex128)})
    with pytest.raises(TypeError, match="tensors must be a mapping"):
        save_checkpoint(tmp_path / "ck", [np.zeros(1)])
    with pytest.raises(TypeError, match="path must be"):
        save_checkpoint(3, {})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_checkpoint(tmp_path / "no" / "such" / "ck", {})
    assert os.listdir(tmp_path) == []


def test_config_round_trip(tmp_path: Path) -> None:
    config = {
        "model": {"kind": "rbm", "n_visible": 784, "n_hidden": 64},
        "lr": 1e-3,
        "betas": (0.9, 0.999),
        "flags": [True, False, None],
        "name": "réseau ✓",
        "empty": {},
    }
    save_checkpoint(tmp_path / "ck", {"w": np.ones((2, 2))}, config)
    _, loaded = load_checkpoint(tmp_path / "ck")
    assert loaded == {**config, "betas": [0.9, 0.999]}  # tuples come back as lists


@pytest.mark.parametrize(
    "config, match",
    [
        ({"arr": np.zeros(2)}, r"config\['arr'\].*ndarray"),
        ({"nested": [1, {"obj": object()}]}, r"config\['nested'\]\[1\]\['obj'\]"),
        ({"x": float("nan")}, r"config\['x'\].*NaN"),
        ({1: "int key"}, r"config has key 1"),
    ],
)
def test_non_json_config(tmp_path: Path, config: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        save_checkpoint(tmp_path / "ck", {}, config)
    assert os.listdir(tmp_path) == []


def test_config_type_and_cycle(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="config must be a mapping"):
        save_checkpoint(tmp_path / "ck", {}, ["not", "a", "mapping"])
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match="config.*cycle"):
        save_checkpoint(tmp_path / "ck", {}, loop)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nothing.safetensors")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nothing")


def test_not_an_ebm_ppl_file(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.safetensors"
    safetensors.numpy.save_file({"w": np.zeros(3, dtype=np.float32)}, foreign)
    with pytest.raises(ValueError, match="not written by ebm_ppl"):
        load_checkpoint(foreign)
    safetensors.numpy.save_file({"w": np.zeros(3)}, foreign, metadata={"format": "pt"})
    with pytest.raises(ValueError, match="not written by ebm_ppl"):
        load_checkpoint(foreign)

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"this is not a safetensors file at all")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_checkpoint(garbage)

    newer = tmp_path / "newer.safetensors"
    safetensors.numpy.save_file(
        {}, newer, metadata={"format": "ebm_ppl", "format_version": "99", "config": "{}"}
    )
    with pytest.raises(ValueError, match="format version 99"):
        load_checkpoint(newer)

    with pytest.raises(ValueError, match="is a directory"):
        load_checkpoint(tmp_path)


def test_bad_backend(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "ck", {"a": np.zeros(1)})
    with pytest.raises(ValueError, match="backend"):
        load_checkpoint(tmp_path / "ck", backend="tensorflow")


def test_atomic_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_checkpoint(tmp_path / "ck", {"a": np.arange(3)}, {"step": 1})
    path = save_checkpoint(tmp_path / "ck", {"a": np.arange(5)}, {"step": 2})  # overwrite
    assert os.listdir(tmp_path) == ["ck.safetensors"]  # no temporary file left behind
    arrays, config = load_checkpoint(path)
    assert config == {"step": 2}
    np.testing.assert_array_equal(arrays["a"], np.arange(5))

    real_save_file = safetensors.numpy.save_file

    def interrupted_save(tensors: dict, filename: Any, metadata: Any = None) -> None:
        real_save_file(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as fh:  # half of the file made it to disk ...
            fh.truncate(os.path.getsize(filename) // 2)
        raise KeyboardInterrupt  # ... when the process was interrupted

    monkeypatch.setattr(safetensors.numpy, "save_file", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "ck", {"a": np.arange(100)}, {"step": 3})
    assert os.listdir(tmp_path) == ["ck.safetensors"]
    arrays, config = load_checkpoint(path)  # the previous checkpoint is untouched
    assert config == {"step": 2}
    np.testing.assert_array_equal(arrays["a"], np.arange(5))


def test_temp_files_of_killed_saves_are_removed(tmp_path: Path) -> None:
    """A process killed (SIGKILL) in the middle of a save leaves its temporary file; the next
    save of the same checkpoint removes it, while a live writer's file and other names' files
    stay."""
    import signal
    import subprocess
    import sys

    path = save_checkpoint(tmp_path / "ck", {"a": np.arange(3)}, {"step": 1})
    # a child that hangs inside save_file, after creating its temporary file
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, numpy as np, safetensors.numpy as st\n"
            "from ebm_ppl.io import save_checkpoint\n"
            "st.save_file = lambda *a, **k: (print('writing', flush=True), time.sleep(60))\n"
            "save_checkpoint(sys.argv[1], {'a': np.arange(3)})\n",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "writing"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    left = [p.name for p in tmp_path.glob(".ck.safetensors.*.tmp")]
    assert len(left) == 1 and f"-{child.pid}." in left[0]  # what a kill leaves behind
    mine = tmp_path / f".ck.safetensors.{eio._temp_tag()}.abc.tmp"  # a live writer's
    other = tmp_path / f".other.safetensors.{eio._temp_tag().rsplit('-', 1)[0]}-{child.pid}.a.tmp"
    mine.touch()
    other.touch()
    save_checkpoint(path, {"a": np.arange(4)}, {"step": 2})
    assert sorted(os.listdir(tmp_path)) == sorted(["ck.safetensors", mine.name, other.name])
    assert load_checkpoint(path)[1] == {"step": 2}


def test_module_source_has_no_unsafe_deserialisation() -> None:
    source = Path(eio.__file__).read_text()
    for banned in ("pickle", "torch.load", "np.load", "numpy.load", "allow_pickle", "marshal"):
        assert banned not in source, banned


def test_format_module_source_has_no_unsafe_deserialisation() -> None:
    """The same for the file format itself, which ``ebm_ppl.io`` re-exports."""
    import ebm_ppl.checkpoint

    source = Path(ebm_ppl.checkpoint.__file__).read_text()
    for banned in ("pickle", "torch.load", "np.load", "numpy.load", "allow_pickle", "marshal"):
        assert banned not in source, banned


# ------------------------------------------------------------------------------------------
# flatten_state / unflatten_state
# ------------------------------------------------------------------------------------------


class Pair(NamedTuple):
    first: Any
    second: Any


def _mixed_tree() -> dict:
    return {
        "state": {
            0: {"step": torch.tensor(3.0), "buf": torch.arange(4.0)},
            1: {"step": torch.tensor(3.0), "buf": None},
        },
        "groups": [
            {"lr": 0.1, "betas": (0.9, 0.999), "nesterov": False, "params": [0, 1], "f": None}
        ],
        "special": {"nan": float("nan"), "inf": float("inf"), "ninf": -math.inf, "big": 2**70},
        "np_scalar": np.float32(1.25),
        "text": "hello/world",
        "a/b": np.arange(3),  # "/" inside a key
        "clash": {0: np.zeros(1), "0": np.ones(1)},  # same tensor-name component
        "ordered": collections.OrderedDict([("z", 1), ("a", 2)]),
        "empty": [(), [], {}],
    }


def test_flatten_unflatten_mixed_tree(tmp_path: Path) -> None:
    tree = _mixed_tree()
    tensors, spec = flatten_state(tree, "opt")
    assert all(name.startswith("opt/") for name in tensors)
    assert "opt/state/0/buf" in tensors
    assert "opt/a%2Fb" in tensors
    json.dumps(spec, allow_nan=False)  # strict JSON

    # straight back, in memory
    _assert_same(unflatten_state(tensors, spec, "opt", backend="torch")["state"], tree["state"])

    # through a checkpoint file, with the spec inside the config
    save_checkpoint(tmp_path / "ck", tensors, {"opt": spec})
    arrays, config = load_checkpoint(tmp_path / "ck", backend="torch")
    back = unflatten_state(arrays, config["opt"], "opt", backend="torch")
    expected = dict(tree, np_scalar=torch.tensor(1.25), **{"a/b": torch.arange(3)})
    expected["clash"] = {0: torch.zeros(1, dtype=torch.float64), "0": torch.ones(1).double()}
    _assert_same(back, expected)

    back_np = unflatten_state(arrays, config["opt"], "opt")  # numpy backend
    assert type(back_np["np_scalar"]) is np.float32 and back_np["np_scalar"] == 1.25
    assert isinstance(back_np["state"][0]["step"], np.ndarray)
    assert back_np["state"][0]["step"].shape == ()


def test_flatten_leaf_is_array_and_namedtuple_without_template() -> None:
    tensors, spec = flatten_state(np.arange(3), "x")
    assert list(tensors) == ["x"]
    np.testing.assert_array_equal(unflatten_state(tensors, spec, "x"), np.arange(3))

    tensors, spec = flatten_state(Pair(np.zeros(2), [1, 2]), "p")
    back = unflatten_state(tensors, json.loads(json.dumps(spec)), "p")
    assert type(back).__name__ == "Pair" and back._fields == ("first", "second")
    assert back.second == [1, 2]
    # the same spec gives the same class each time, so JAX tree structures compare equal
    assert type(unflatten_state(tensors, spec, "p")) is type(back)


def test_flatten_errors() -> None:
    with pytest.raises(TypeError, match=r"tree\['a'\]\[1\] has type object"):
        flatten_state({"a": [1, object()]}, "s")
    with pytest.raises(TypeError, match="key True"):
        flatten_state({True: 1}, "s")
    with pytest.raises(TypeError, match=r"tree\['c'\].*complex128"):
        flatten_state({"c": np.zeros(1, dtype=np.complex128)}, "s")
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError, match="cycle"):
        flatten_state(loop, "s")
    with pytest.raises(ValueError, match="prefix"):
        flatten_state({}, "")
    with pytest.raises(TypeError, match="prefix"):
        flatten_state({}, None)


def test_unflatten_errors() -> None:
    tensors, spec = flatten_state({"w": np.zeros((2, 3), dtype=np.float32)}, "s")
    with pytest.raises(ValueError, match=r"missing array 's/w'"):
        unflatten_state({}, spec, "s")
    with pytest.raises(ValueError, match="spec says float32"):
        unflatten_state({"s/w": np.zeros(3)}, spec, "s")
    with pytest.raises(ValueError, match="not a state spec"):
        unflatten_state(tensors, {"tree": {}}, "s")
    with pytest.raises(ValueError, match="spec: tree"):
        unflatten_state(tensors, dict(spec, tree={"kind": "dict"}), "s")
    with pytest.raises(ValueError, match="backend"):
        unflatten_state(tensors, spec, "s", backend="cupy")
    with pytest.raises(TypeError, match="tensors"):
        unflatten_state([], spec, "s")


def _torch_problem() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    x = torch.randn(16, 3)
    y = torch.randn(16, 1)
    return model, x, y


def _torch_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x, y) -> None:
    opt.zero_grad()
    ((model(x) - y) ** 2).mean().backward()
    opt.step()


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
        lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.8, 0.99), weight_decay=1e-3),
    ],
    ids=["sgd-momentum", "adam"],
)
def test_torch_optimizer_resume_is_exact(tmp_path: Path, make_opt) -> None:
    model, x, y = _torch_problem()
    opt = make_opt(model.parameters())
    for _ in range(3):
        _torch_step(model, opt, x, y)

    opt_tensors, spec = flatten_state(opt.state_dict(), "optimizer")
    model_tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    save_checkpoint(tmp_path / "ck", {**model_tensors, **opt_tensors}, {"optimizer": spec})

    _torch_step(model, opt, x, y)  # the uninterrupted run goes on
    expected = [p.detach().clone() for p in model.parameters()]

    fresh, _, _ = _torch_problem()
    with torch.no_grad():  # make sure nothing of the fresh init survives the load
        for p in fresh.parameters():
            p.add_(1.0)
    fresh_opt = make_opt(fresh.parameters())
    arrays, config = load_checkpoint(tmp_path / "ck", backend="torch")
    fresh.load_state_dict({k.removeprefix("model/"): v for k, v in arrays.items() if "model/" in k})
    state = unflatten_state(arrays, config["optimizer"], "optimizer", backend="torch")
    assert all(isinstance(k, int) for k in state["state"])
    fresh_opt.load_state_dict(state)

    _torch_step(fresh, fresh_opt, x, y)
    for p, q in zip(fresh.parameters(), expected, strict=True):
        assert torch.equal(p.detach(), q)


def test_torch_optimizer_state_dict_round_trip_types() -> None:
    model, x, y = _torch_problem()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    _torch_step(model, opt, x, y)
    sd = opt.state_dict()
    tensors, spec = flatten_state(sd, "o")
    back = unflatten_state(tensors, json.loads(json.dumps(spec)), "o", backend="torch")
    _assert_same(back, sd)
    assert back["state"][0]["step"].shape == ()  # 0-d tensor stays a tensor


def _optax_problem():
    params = {"w": jnp.array([[0.5, -1.0], [2.0, 0.25]]), "b": jnp.array([0.1, -0.2])}
    x = jnp.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
    y = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])

    def loss(p):
        return jnp.mean((x @ p["w"] + p["b"] - y) ** 2)

    return params, jax.grad(loss)


def test_optax_adam_resume_is_exact(tmp_path: Path) -> None:
    params, grad = _optax_problem()
    opt = optax.adam(1e-2)
    state = opt.init(params)
    for _ in range(3):
        updates, state = opt.update(grad(params), state, params)
        params = optax.apply_updates(params, updates)

    opt_tensors, spec = flatten_state(state, "opt")
    p_tensors, p_spec = flatten_state(params, "params")
    save_checkpoint(tmp_path / "ck", {**opt_tensors, **p_tensors}, {"opt": spec, "p": p_spec})
    arrays, config = load_checkpoint(tmp_path / "ck", backend="jax")
    template = opt.init(params)
    restored = unflatten_state(arrays, config["opt"], "opt", backend="jax", template=template)
    restored_params = unflatten_state(arrays, config["p"], "params", backend="jax")

    assert jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(state)
    assert isinstance(restored[0], optax.ScaleByAdamState)
    assert isinstance(restored[1], optax.EmptyState)
    _assert_same(restored_params, params)

    ref_updates, ref_state = opt.update(grad(params), state, params)
    new_updates, new_state = opt.update(grad(restored_params), restored, restored_params)
    for a, b in zip(
        jax.tree_util.tree_leaves((ref_updates, ref_state)),
        jax.tree_util.tree_leaves((new_updates, new_state)),
        strict=True,
    ):
        assert a.dtype == b.dtype and bool(jnp.array_equal(a, b))

    # without a template: same field layout, plain namedtuple classes
    plain = unflatten_state(arrays, config["opt"], "opt", backend="jax")
    assert plain[0]._fields == ("count", "mu", "nu")


def test_template_mismatch() -> None:
    params, _ = _optax_problem()
    opt = optax.adam(1e-2)
    tensors, spec = flatten_state(opt.init(params), "opt")
    with pytest.raises(ValueError, match="leaves"):
        unflatten_state(tensors, spec, "opt", "jax", template=opt.init({"w": params["w"]}))
    bigger = {"w": params["w"], "b": jnp.zeros(5)}
    with pytest.raises(ValueError, match="shape"):
        unflatten_state(tensors, spec, "opt", "jax", template=opt.init(bigger))


@jax.tree_util.register_pytree_node_class
class Box:
    """A custom (non-NamedTuple) JAX pytree node."""

    def __init__(self, value: Any, label: str) -> None:
        self.value, self.label = value, label

    def tree_flatten(self):
        return (self.value,), self.label

    @classmethod
    def tree_unflatten(cls, label, children):
        return cls(children[0], label)


def test_custom_pytree_node_and_prng_key() -> None:
    tree = {
        "box": Box(jnp.arange(3.0), "x"),
        "key": jax.random.key(7),
        "raw": jax.random.PRNGKey(1),
    }
    tensors, spec = flatten_state(tree, "t")
    json.dumps(spec, allow_nan=False)
    with pytest.raises(ValueError, match="template"):
        unflatten_state(tensors, spec, "t", backend="jax")
    template = {
        "box": Box(jnp.zeros(3), "x"),
        "key": jax.random.key(0),
        "raw": jax.random.PRNGKey(0),
    }
    back = unflatten_state(tensors, spec, "t", backend="jax", template=template)
    assert isinstance(back["box"], Box) and back["box"].label == "x"
    assert bool(jnp.array_equal(back["box"].value, jnp.arange(3.0)))
    assert bool(jnp.array_equal(jax.random.key_data(back["key"]), jax.random.key_data(tree["key"])))
    assert bool(jnp.array_equal(back["raw"], tree["raw"]))
    # the restored key draws the same numbers
    assert bool(jnp.array_equal(jax.random.normal(back["key"]), jax.random.normal(tree["key"])))
