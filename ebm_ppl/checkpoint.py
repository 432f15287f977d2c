"""The checkpoint format: arrays in a safetensors file, settings as JSON in its header.

This module is the format only (it knows no model and no frontend, so the trainers of both
frontends build on it); :mod:`ebm_ppl.io` adds saving and loading whole models on top.

A checkpoint written by :func:`save_checkpoint` is one ``.safetensors`` file. The arrays are
stored through ``safetensors.numpy`` whatever framework they came from (torch, JAX or numpy);
the ``config`` mapping is stored as a JSON string in the file's text metadata, beside
``"format": "ebm_ppl"``, ``"format_version"`` and ``"backend"``. Nothing in the file is ever
turned back into arbitrary Python objects, so loading a checkpoint cannot run code: only
arrays, JSON values and the container types that :func:`unflatten_state` rebuilds come back.

Training state that is not a flat ``name -> array`` mapping (a torch optimizer's
``state_dict()``, an optax optimizer state) goes through :func:`flatten_state`, which splits it
into arrays plus a JSON-able *spec* of the structure and of the non-array leaves, and
:func:`unflatten_state`, its inverse::

    tensors, spec = flatten_state(opt.state_dict(), "optimizer")
    save_checkpoint("run/step_100", {**model_params, **tensors}, {"optimizer": spec})

    arrays, config = load_checkpoint("run/step_100", backend="torch")
    opt.load_state_dict(unflatten_state(arrays, config["optimizer"], "optimizer", "torch"))

Arrays always come back on the CPU (torch) or the default device (JAX). With JAX's 64-bit mode
off, ``int64``/``float64`` arrays loaded with ``backend="jax"`` become 32-bit, as with any
``jnp.asarray``.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import glob
import json
import math
import os
import secrets
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.numpy as _st_numpy

from ebm_ppl.ops import Array

from .ops import is_jax, is_torch

__all__ = [
    "BACKENDS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "SUFFIX",
    "flatten_state",
    "load_checkpoint",
    "save_checkpoint",
    "unflatten_state",
]

FORMAT_NAME = "ebm_ppl"
"""Value of the ``"format"`` metadata entry of every checkpoint this module writes."""

FORMAT_VERSION = "1"
"""Checkpoint layout version written into the ``"format_version"`` metadata entry."""

SUFFIX = ".safetensors"
"""File suffix added to checkpoint paths that have none."""

BACKENDS = ("numpy", "torch", "jax")
"""Array frameworks that :func:`load_checkpoint` and :func:`unflatten_state` can return."""

_STATE_FORMAT = "ebm_ppl.state"
_STATE_VERSION = 1

# numpy dtype names that survive a safetensors write + read through ``safetensors.numpy``.
_SUPPORTED_DTYPES = frozenset(
    {
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "bfloat16",
        "float32",
        "float64",
        "complex64",
    }
)


# --------------------------------------------------------------------------------------------
# arrays
# --------------------------------------------------------------------------------------------


def _array_backend(x: Any) -> str | None:
    """``"torch"``, ``"jax"`` or ``"numpy"`` for a supported array, ``None`` otherwise."""
    if is_torch(x):
        return "torch"
    if is_jax(x):
        return "jax"
    if isinstance(x, (np.ndarray, np.generic)):
        return "numpy"
    return None


def _is_prng_key(x: Any) -> bool:
    """True for a JAX typed PRNG key array (``jax.random.key``), which has no numpy dtype."""
    if not is_jax(x):
        return False
    # lazy: keeps this module free of jax until that backend is used
    import jax

    return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _torch_to_numpy(t: Any, where: str) -> np.ndarray:
    # lazy: keeps this module free of torch until that backend is used
    import torch

    if t.layout != torch.strided:
        raise TypeError(f"{where} is a {t.layout} torch tensor; only dense tensors can be saved")
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.resolve_conj().resolve_neg().contiguous()
    if t.dtype == torch.bfloat16:
        try:
            # lazy: optional dependency; its absence is reported where it is used
            import ml_dtypes
        except ImportError as err:  # pragma: no cover - ml_dtypes ships with JAX
            raise TypeError(
                f"{where} is a bfloat16 torch tensor; saving it needs the ml_dtypes package"
            ) from err
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)  # device: moved above
    try:
        return t.numpy()  # device: moved to the CPU above
    except (TypeError, RuntimeError) as err:
        raise TypeError(f"{where} has torch dtype {t.dtype}, which cannot be saved") from err


def _to_numpy(x: Any, where: str) -> np.ndarray:
    """``x`` (torch / JAX / numpy array) as a C-contiguous numpy array of a storable dtype.

    ``where`` names the offending argument in error messages.
    """
    backend = _array_backend(x)
    if backend == "torch":
        arr = _torch_to_numpy(x, where)
    elif backend == "jax":
        # lazy: keeps this module free of jax until that backend is used
        import jax

        if isinstance(x, jax.core.Tracer):
            raise TypeError(f"{where} is a traced JAX value (inside jit/grad/vmap), not an array")
        if _is_prng_key(x):
            raise TypeError(
                f"{where} is a JAX PRNG key array; save jax.random.key_data(key) instead "
                "(flatten_state does this for you)"
            )
        arr = np.asarray(jax.device_get(x))
    elif backend == "numpy":
        arr = np.asarray(x)
    else:
        raise TypeError(
            f"{where} must be a torch tensor, JAX array or numpy array, got {type(x).__name__}"
        )
    if arr.dtype.name not in _SUPPORTED_DTYPES:
        raise TypeError(
            f"{where} has dtype {arr.dtype}, which cannot be stored; supported dtypes: "
            + ", ".join(sorted(_SUPPORTED_DTYPES))
        )
    # safetensors.numpy reads the raw buffer, so the array must be C-contiguous (and
    # np.ascontiguousarray would turn 0-d arrays into 1-d ones).
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def _from_numpy(arr: np.ndarray, backend: str, copy: bool = True) -> Array:
    """``arr`` as an array of ``backend``; a copy unless ``copy=False`` (``arr`` then must be
    a writable array that nothing else uses, e.g. one just read from a file)."""
    if copy:
        arr = np.array(arr, copy=True)
    if backend == "numpy":
        return arr
    if backend == "torch":
        # lazy: keeps this module free of torch until that backend is used
        import torch

        if arr.dtype.name == "bfloat16":
            return torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)  # device: cpu
        return torch.from_numpy(arr)  # device: cpu (load_checkpoint moves it if asked)
    # lazy: keeps this module free of jax until that backend is used
    import jax.numpy as jnp

    return jnp.asarray(arr)


def _check_backend(backend: Any) -> str:
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


# --------------------------------------------------------------------------------------------
# JSON config
# --------------------------------------------------------------------------------------------


def _check_json(value: Any, where: str, active: set[int]) -> None:
    """Raise ``ValueError`` naming ``where`` unless ``value`` is strict JSON data."""
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value!r}; JSON has no NaN or infinity")
        return
    if isinstance(value, (Mapping, list, tuple)):
        if id(value) in active:
            raise ValueError(f"{where} contains itself (a reference cycle)")
        active.add(id(value))
        if isinstance(value, Mapping):
            for k, v in value.items():
                if not isinstance(k, str):
                    # the brief of this API: a config that is not JSON data is a ValueError
                    raise ValueError(
                        f"{where} has key {k!r} of type {type(k).__name__}; JSON object keys "
                        "must be strings"
                    )
                _check_json(v, f"{where}[{k!r}]", active)
        else:
            for i, v in enumerate(value):
                _check_json(v, f"{where}[{i}]", active)
        active.discard(id(value))
        return
    raise ValueError(f"{where} has type {type(value).__name__}, which is not JSON-serialisable")


def _encode_config(config: Mapping[str, Any] | None) -> str:
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping or None, got {type(config).__name__}")
    _check_json(config, "config", set())
    return json.dumps(dict(config), allow_nan=False, ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


def _as_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    p = Path(path)
    if str(path) == "" or p.name == "":
        raise ValueError(f"path must name a file, got {str(path)!r}")
    return p


def _with_suffix(p: Path) -> Path:
    return p if p.suffix else p.with_name(p.name + SUFFIX)


def _fsync_dir(directory: Path) -> None:
    """Best-effort flush of a directory entry (POSIX); silently skipped where unsupported."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _temp_tag() -> str:
    """``host-pid`` of this process, as temporary files name their writer."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _new_temp_file(directory: Path, name: str) -> Path:
    """Create an empty, uniquely named hidden file ``.<name>.<host>-<pid>.<hex>.tmp`` in
    ``directory`` (mode honours the umask)."""
    for _ in range(100):
        candidate = directory / f".{name}.{_temp_tag()}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return candidate
    raise FileExistsError(f"could not create a temporary file next to {directory / name}")


def _remove_stale_temp_files(directory: Path, name: str) -> None:
    """Delete the temporary files of earlier saves of ``name`` whose writer, a process on
    this host, no longer runs (killed in the middle of a save). Files of live processes,
    of other hosts and of other names are left alone."""
    host = socket.gethostname()
    for p in directory.glob(f".{glob.escape(name)}.*.tmp"):
        tag = p.name[len(name) + 2 :].rsplit(".", 2)[0]  # "<host>-<pid>"
        writer_host, _, pid = tag.rpartition("-")
        if writer_host != host or not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:  # the writer is gone: its file can never be completed
            with contextlib.suppress(OSError):
                p.unlink()
        except (PermissionError, OverflowError):  # alive (another user's) or not a pid
            continue


def _atomic_save(arrays: dict[str, np.ndarray], target: Path, metadata: dict[str, str]) -> None:
    directory = target.parent
    if not directory.is_dir():
        raise FileNotFoundError(f"path {str(target)!r}: folder {str(directory)!r} does not exist")
    if target.is_dir():
        raise ValueError(f"path {str(target)!r} is a directory")
    tmp = _new_temp_file(directory, target.name)
    try:
        _st_numpy.save_file(arrays, tmp, metadata=metadata)
        with open(tmp, "r+b") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)
    _remove_stale_temp_files(directory, target.name)


def save_checkpoint(
    path: str | os.PathLike,
    tensors: Mapping[str, Array],
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``tensors`` and ``config`` to one safetensors checkpoint file, atomically.

    Args:
        path: file to write; ``".safetensors"`` is appended when the name has no suffix. Its
            folder must exist. An existing file is replaced.
        tensors: ``name -> array`` with non-empty string names. Arrays may be torch tensors
            (detached, copied to the CPU, made contiguous), JAX arrays or numpy arrays; all
            are stored as numpy arrays. Dtypes: bool, (u)int8-64, float16/bfloat16/32/64,
            complex64.
        config: JSON data (a mapping with string keys, nested lists/dicts of str, int,
            finite float, bool, None); stored in the file's metadata under ``"config"``.
            Tuples come back as lists.

    Returns:
        The path actually written (with the suffix).

    The file is first written to a hidden temporary file in the same folder, flushed to disk,
    then renamed over ``path``, so an interrupted save leaves either the old checkpoint or
    the new one, never a partial file (and no temporary file).

    Raises:
        TypeError: ``path``/``tensors``/``config`` of the wrong type, a name that is not a
            string, or an array of an unsupported type or dtype.
        ValueError: an empty or reserved name, or ``config`` that is not JSON data.
        FileNotFoundError: the folder of ``path`` does not exist.
    """
    target = _with_suffix(_as_path(path))
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors must be a mapping of name -> array, got {type(tensors).__name__}")
    arrays: dict[str, np.ndarray] = {}
    backends: set[str] = set()
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise TypeError(
                f"tensors: names must be strings, got {name!r} of type {type(name).__name__}"
            )
        if not name:
            raise ValueError("tensors: names must be non-empty strings, got ''")
        if name == "__metadata__":
            raise ValueError("tensors: the name '__metadata__' is reserved by safetensors")
        arrays[name] = _to_numpy(value, f"tensors[{name!r}]")
        backends.add(_array_backend(value))  # type: ignore[arg-type]
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "backend": backends.pop() if len(backends) == 1 else ("mixed" if backends else "numpy"),
        "config": _encode_config(config),
    }
    _atomic_save(arrays, target, metadata)
    return target


def load_checkpoint(
    path: str | os.PathLike, backend: str = "numpy", device: Any = None
) -> tuple[dict[str, Array], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: the checkpoint file; when it does not exist and has no suffix, the same name
            with ``".safetensors"`` is tried (mirroring :func:`save_checkpoint`).
        backend: ``"numpy"``, ``"torch"`` (CPU tensors) or ``"jax"``: the type of the
            returned arrays.
        device: torch only: put the tensors there (e.g. ``"cuda"``) instead of the CPU.

    Returns:
        ``(tensors, config)``: fresh arrays by name, and the JSON config (a dict).

    Raises:
        FileNotFoundError: no such file.
        ValueError: ``backend`` unknown, the file is not a safetensors file, was not written by
            ebm_ppl (no ``"format": "ebm_ppl"`` metadata), comes from a newer format version,
            or has a corrupt config.
    """
    backend = _check_backend(backend)
    if device is not None and backend != "torch":
        raise ValueError(f"device applies to backend='torch' only, got backend={backend!r}")
    given = _as_path(path)
    file = given
    if not file.exists() and not file.suffix:
        file = _with_suffix(file)
    if not file.exists():
        raise FileNotFoundError(f"path {str(given)!r}: no such checkpoint file")
    if file.is_dir():
        raise ValueError(f"path {str(file)!r} is a directory, not a checkpoint file")
    try:
        with safetensors.safe_open(file, framework="np") as f:
            metadata = f.metadata() or {}
            _check_metadata(metadata, file)
            raw = {name: f.get_tensor(name) for name in f.keys()}
    except safetensors.SafetensorError as err:
        raise ValueError(f"path {str(file)!r} is not a readable safetensors file: {err}") from err
    try:
        config = json.loads(metadata.get("config", "{}"))
    except json.JSONDecodeError as err:
        raise ValueError(f"path {str(file)!r}: the stored config is not valid JSON") from err
    if not isinstance(config, dict):
        # a corrupt file is a bad value of ``path``, not a wrong argument type
        raise ValueError(f"path {str(file)!r}: the stored config is not a JSON object")
    # safetensors hands out private, writable buffers: no need to copy them again
    tensors = {name: _from_numpy(arr, backend, copy=False) for name, arr in raw.items()}
    if device is not None:
        tensors = {name: t.to(device) for name, t in tensors.items()}
    return tensors, config


def _check_metadata(metadata: Mapping[str, str], file: Path) -> None:
    if metadata.get("format") != FORMAT_NAME:
        raise ValueError(
            f"path {str(file)!r} is a safetensors file but was not written by ebm_ppl "
            f"(metadata 'format' is {metadata.get('format')!r}, expected {FORMAT_NAME!r})"
        )
    version = metadata.get("format_version", "")
    if not version.isdigit():
        raise ValueError(f"path {str(file)!r}: bad 'format_version' metadata {version!r}")
    if int(version) > int(FORMAT_VERSION):
        raise ValueError(
            f"path {str(file)!r} has checkpoint format version {version}; this ebm_ppl reads "
            f"versions up to {FORMAT_VERSION}: upgrade ebm_ppl"
        )


# --------------------------------------------------------------------------------------------
# nested state <-> flat arrays + JSON spec
# --------------------------------------------------------------------------------------------


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and isinstance(getattr(type(x), "_fields", None), tuple)


def _escape(component: str) -> str:
    return component.replace("%", "%25").replace("/", "%2F")


def _jax_children(x: Any) -> list | None:
    """Direct children of ``x`` when it is a registered JAX pytree node, else ``None``."""
    if "jax" not in sys.modules or _array_backend(x) is not None:
        return None
    # lazy: keeps this module free of jax until that backend is used
    import jax

    children, _ = jax.tree_util.tree_flatten(x, is_leaf=lambda node: node is not x)
    if len(children) == 1 and children[0] is x:
        return None
    return children


class _Flattener:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.tensors: dict[str, Array] = {}
        self.active: set[int] = set()

    def _key(self, rel: str) -> tuple[str, str]:
        full = f"{self.prefix}/{rel}" if rel else self.prefix
        unique, n = full, 0
        while unique in self.tensors:  # e.g. dict keys 0 and "0" map to the same name
            n += 1
            unique = f"{full}~{n}"
        return unique, unique[len(self.prefix) + 1 :]

    def leaf_array(self, x: Any, rel: str, where: str) -> dict:
        node: dict[str, Any] = {"kind": "array"}
        if _is_prng_key(x):
            # lazy: keeps this module free of jax until that backend is used
            import jax

            node["prng_impl"] = str(jax.random.key_impl(x))
            x = jax.random.key_data(x)
        elif isinstance(x, np.generic):
            node["numpy_scalar"] = True
            x = np.asarray(x)
        arr = _to_numpy(x, where)  # one device-to-host copy; validates type and dtype now
        full, node["key"] = self._key(rel)
        node["dtype"] = arr.dtype.name
        node["shape"] = list(arr.shape)
        self.tensors[full] = arr
        return node

    def __call__(self, x: Any, rel: str, where: str) -> dict:
        if _array_backend(x) is not None:  # first: np.float64 is also a float
            return self.leaf_array(x, rel, where)
        if x is None:
            return {"kind": "none"}
        if isinstance(x, bool):
            return {"kind": "bool", "value": x}
        if isinstance(x, int):
            return {"kind": "int", "value": int(x)}
        if isinstance(x, float):
            value: float | str = float(x) if math.isfinite(x) else repr(float(x))
            return {"kind": "float", "value": value}
        if isinstance(x, str):
            return {"kind": "str", "value": str(x)}

        def child(c: Any, component: str, label: str) -> dict:
            sub = f"{rel}/{component}" if rel else component
            return self(c, sub, f"{where}{label}")

        if id(x) in self.active:
            raise ValueError(f"{where} contains itself (a reference cycle)")
        self.active.add(id(x))
        try:
            if isinstance(x, Mapping):
                items = []
                for k, v in x.items():
                    if isinstance(k, bool) or not isinstance(k, (str, int)):
                        raise TypeError(
                            f"{where} has key {k!r} of type {type(k).__name__}; only str and "
                            "int keys are supported"
                        )
                    k = str(k) if isinstance(k, str) else int(k)
                    items.append([k, child(v, _escape(str(k)), f"[{k!r}]")])
                kind = "ordered_dict" if isinstance(x, collections.OrderedDict) else "dict"
                return {"kind": kind, "items": items}
            if _is_namedtuple(x):
                fields = list(type(x)._fields)
                values = [child(v, _escape(f), f".{f}") for f, v in zip(fields, x, strict=True)]
                return {
                    "kind": "namedtuple",
                    "name": type(x).__name__,
                    "fields": fields,
                    "items": values,
                }
            if isinstance(x, (list, tuple)):
                values = [child(v, str(i), f"[{i}]") for i, v in enumerate(x)]
                return {"kind": "list" if isinstance(x, list) else "tuple", "items": values}
            children = _jax_children(x)
            if children is not None:
                values = [child(v, str(i), f"<{i}>") for i, v in enumerate(children)]
                return {"kind": "pytree", "name": type(x).__name__, "items": values}
        finally:
            self.active.discard(id(x))
        raise TypeError(
            f"{where} has type {type(x).__name__}; supported: dict, list, tuple, NamedTuple, "
            "JAX pytree nodes, torch/JAX/numpy arrays, None, bool, int, float, str"
        )


def _check_prefix(prefix: Any) -> str:
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
    if not prefix:
        raise ValueError("prefix must be a non-empty string")
    return prefix


def flatten_state(tree: Any, prefix: str) -> tuple[dict[str, Array], dict[str, Any]]:
    """Split a nested training state into named arrays and a JSON-able structure spec.

    Args:
        tree: nested dicts (str or int keys), lists, tuples, NamedTuples (e.g. optax states),
            other registered JAX pytree nodes, arrays (torch / JAX / numpy, including JAX
            PRNG key arrays) and Python ``None``/``bool``/``int``/``float``/``str`` leaves.
            A torch optimizer's ``state_dict()`` and optax states are both of this kind.
        prefix: non-empty namespace for the array names, e.g. ``"optimizer"``.

    Returns:
        ``(tensors, spec)``: numpy arrays keyed ``"prefix/path/to/leaf"`` (``"/"`` and ``"%"``
        inside keys are percent-escaped), ready for :func:`save_checkpoint`; they may share
        memory with CPU tensors of ``tree``, so save them before the state changes again.
        And ``spec``, a dict of plain JSON data (no NaN/infinity) describing the structure and
        holding every non-array leaf, ready to go into the checkpoint's ``config``.

    Raises:
        TypeError: ``prefix`` is not a str, or ``tree`` holds an unsupported leaf or key type
            (the message names the path inside ``tree``).
        ValueError: ``prefix`` is empty or ``tree`` contains a reference cycle.
    """
    prefix = _check_prefix(prefix)
    flattener = _Flattener(prefix)
    node = flattener(tree, "", "tree")
    spec = {"format": _STATE_FORMAT, "version": _STATE_VERSION, "tree": node}
    return flattener.tensors, spec


def _malformed(where: str, what: str) -> ValueError:
    """The error for a spec that was not made by :func:`flatten_state` (or was corrupted).

    Always a ``ValueError``, even for wrongly typed parts: the spec is data read back from a
    file, so any defect in it is a bad value of the ``spec`` argument.
    """
    return ValueError(f"spec: {where} {what}")


@functools.cache
def _namedtuple_class(name: str, fields: tuple[str, ...]) -> type:
    if not name.isidentifier():
        name = "State"
    return collections.namedtuple(name, fields, rename=True)


class _Builder:
    def __init__(
        self, tensors: Mapping[str, Array], prefix: str, backend: str, placeholders: bool
    ) -> None:
        self.tensors = tensors
        self.prefix = prefix
        self.backend = backend
        self.placeholders = placeholders

    def array(self, node: Mapping[str, Any], where: str) -> Array:
        rel = node.get("key")
        if not isinstance(rel, str):
            raise _malformed(where, "has no valid 'key'")
        full = f"{self.prefix}/{rel}" if rel else self.prefix
        if full not in self.tensors:
            raise ValueError(f"tensors: missing array {full!r} (needed by spec at {where})")
        arr = _to_numpy(self.tensors[full], f"tensors[{full!r}]")
        if arr.dtype.name != node.get("dtype") or list(arr.shape) != node.get("shape"):
            raise ValueError(
                f"tensors[{full!r}] has dtype {arr.dtype.name} and shape {list(arr.shape)}, "
                f"but spec says {node.get('dtype')} and {node.get('shape')}"
            )
        impl = node.get("prng_impl")
        if impl is not None and self.backend == "jax":
            # lazy: keeps this module free of jax until that backend is used
            import jax

            return jax.random.wrap_key_data(_from_numpy(arr, "jax"), impl=impl)
        if node.get("numpy_scalar") and self.backend == "numpy":
            return arr[()].copy()
        return _from_numpy(arr, self.backend)

    def __call__(self, node: Any, where: str) -> Any:
        if not isinstance(node, Mapping) or not isinstance(node.get("kind"), str):
            raise _malformed(where, "is not a node (a dict with a 'kind')")
        kind = node["kind"]
        if kind == "none":
            return None
        if kind in ("bool", "int", "str"):
            value = node.get("value")
            expected = {"bool": bool, "int": int, "str": str}[kind]
            if type(value) is not expected:
                raise _malformed(where, f"should hold a {kind}, got {value!r}")
            return value
        if kind == "float":
            value = node.get("value")
            if value in ("nan", "inf", "-inf"):
                return float(value)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _malformed(where, f"should hold a float, got {value!r}")
            return float(value)
        if kind == "array":
            return self.array(node, where)
        items = node.get("items")
        if not isinstance(items, list):
            raise _malformed(where, f"({kind}) has no 'items' list")
        if kind in ("dict", "ordered_dict"):
            out = {} if kind == "dict" else collections.OrderedDict()
            for item in items:
                if not (isinstance(item, list) and len(item) == 2):
                    raise _malformed(where, f"has a malformed dict item {item!r}")
                k, v = item
                if isinstance(k, bool) or not isinstance(k, (str, int)):
                    raise _malformed(where, f"has a key of type {type(k).__name__}")
                out[k] = self(v, f"{where}[{k!r}]")
            return out
        if kind in ("list", "tuple"):
            values = [self(v, f"{where}[{i}]") for i, v in enumerate(items)]
            return values if kind == "list" else tuple(values)
        if kind == "namedtuple":
            fields = node.get("fields")
            name = node.get("name")
            if (
                not isinstance(fields, list)
                or not all(isinstance(f, str) for f in fields)
                or len(fields) != len(items)
                or not isinstance(name, str)
            ):
                raise _malformed(where, "is a malformed namedtuple node")
            values = [self(v, f"{where}.{f}") for f, v in zip(fields, items, strict=True)]
            return _namedtuple_class(name, tuple(fields))(*values)
        if kind == "pytree":
            if not self.placeholders:
                raise ValueError(
                    f"spec: {where} is a custom JAX pytree node ({node.get('name')!r}); pass "
                    "template= (a freshly initialised state of the same structure) to rebuild it"
                )
            return tuple(self(v, f"{where}<{i}>") for i, v in enumerate(items))
        raise _malformed(where, f"has unknown kind {kind!r}")


def _dtype_name(x: Any) -> str:
    return str(x.dtype).removeprefix("torch.")


def _fit_template(tree: Any, template: Any) -> Any:
    """Rebuild ``tree``'s leaves with ``template``'s JAX tree structure, checking they match."""
    try:
        # lazy: optional dependency; its absence is reported where it is used
        import jax
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("unflatten_state(template=...) needs JAX installed") from err
    paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = jax.tree_util.tree_leaves(tree)
    if len(leaves) != len(paths_and_leaves):
        raise ValueError(
            f"template has {len(paths_and_leaves)} leaves but the saved state has {len(leaves)}"
        )
    for (path, t), leaf in zip(paths_and_leaves, leaves, strict=True):
        where = f"template{jax.tree_util.keystr(path)}"
        t_shape = getattr(t, "shape", None)
        if t_shape is None:
            if getattr(leaf, "shape", None) is not None:
                raise ValueError(f"{where} is a {type(t).__name__} but the saved leaf is an array")
            continue
        shape = getattr(leaf, "shape", None)
        if shape is None:
            raise ValueError(
                f"{where} is an array of shape {tuple(t_shape)} but the saved leaf is "
                f"{type(leaf).__name__}"
            )
        if tuple(shape) != tuple(t_shape):
            raise ValueError(
                f"{where} has shape {tuple(t_shape)} but the saved leaf has shape {tuple(shape)}"
            )
        if _dtype_name(leaf) != _dtype_name(t):
            raise ValueError(
                f"{where} has dtype {_dtype_name(t)} but the saved leaf has {_dtype_name(leaf)}"
            )
    return jax.tree_util.tree_unflatten(treedef, leaves)


def unflatten_state(
    tensors: Mapping[str, Array],
    spec: Mapping[str, Any],
    prefix: str,
    backend: str = "numpy",
    template: Any = None,
) -> Any:
    """Rebuild a state split by :func:`flatten_state` (the inverse of it).

    Args:
        tensors: arrays by name, e.g. from :func:`load_checkpoint` (any framework; extra
            names are ignored).
        spec: the spec returned by :func:`flatten_state` (after a JSON round trip is fine).
        prefix: the namespace the arrays were flattened under (may differ from the original
            one if the arrays were renamed consistently).
        backend: ``"numpy"``, ``"torch"`` or ``"jax"``: the type of the rebuilt arrays (fresh
            copies; torch tensors on the CPU).
        template: optional JAX pytree of the same structure, e.g. ``optimizer.init(params)``.
            When given, the leaves are put back into ``template``'s tree structure with
            ``jax.tree_util.tree_unflatten``, so NamedTuple classes such as optax's
            ``ScaleByAdamState`` and custom pytree nodes are restored exactly; the number,
            shapes and dtypes of the leaves must match the template's.

    Returns:
        The rebuilt state. Without ``template``, dicts (int keys stay ints), lists, tuples,
        scalars and 0-d arrays come back as they were, so a torch optimizer ``state_dict``
        round-trips for ``load_state_dict``; NamedTuples come back as structurally equal
        ``collections.namedtuple`` classes with the same name and fields.

    Raises:
        TypeError: ``prefix`` not a str, or a tensor of an unsupported type.
        ValueError: unknown ``backend``, a malformed ``spec``, arrays missing from
            ``tensors`` or not matching the spec, a custom pytree node without
            ``template``, or a ``template`` that does not match.
    """
    backend = _check_backend(backend)
    prefix = _check_prefix(prefix)
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors must be a mapping of name -> array, got {type(tensors).__name__}")
    if not isinstance(spec, Mapping) or spec.get("format") != _STATE_FORMAT:
        raise ValueError("spec is not a state spec made by ebm_ppl.io.flatten_state")
    if spec.get("version") != _STATE_VERSION:
        raise ValueError(f"spec has unsupported version {spec.get('version')!r}")
    tree = _Builder(tensors, prefix, backend, template is not None)(spec.get("tree"), "tree")
    if template is None:
        return tree
    return _fit_template(tree, template)
