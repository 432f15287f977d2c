"""Saving and loading trained models (safetensors + JSON; nothing in a file is ever run as code).

:func:`save_model` writes one of our energy distributions with its class name and settings;
:func:`load_model` rebuilds it in either frontend, so this module sits above both. The file
format itself (:func:`save_checkpoint`, :func:`load_checkpoint`, :func:`flatten_state`,
:func:`unflatten_state`) lives in :mod:`ebm_ppl.checkpoint` and is re-exported here, where it
has always been importable from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ebm_ppl import ops

from .checkpoint import (  # noqa: F401 - re-exported; the private helpers for old imports
    BACKENDS,
    FORMAT_NAME,
    FORMAT_VERSION,
    SUFFIX,
    _temp_tag,
    _to_numpy,
    flatten_state,
    load_checkpoint,
    save_checkpoint,
    unflatten_state,
)

__all__ = ["load_model", "save_model"]

# --------------------------------------------------------------------------------------
# trained models
# --------------------------------------------------------------------------------------

_MODEL_PARAMS = {
    "RBM": ("weights", "visible_bias", "hidden_bias"),
    "GaussianRBM": ("weights", "visible_bias", "hidden_bias", "sigma"),
    "ReplicatedSoftmax": ("weights", "word_bias", "hidden_bias"),
    "CategoricalRBM": ("weights", "visible_bias", "hidden_bias"),
    "DBM": ("weights", "biases", "sigma"),  # lists: weights/0, ...; sigma absent if None
    "MultimodalDBM": (
        "image_weights",
        "image_biases",
        "text_weights",
        "text_biases",
        "joint_weights",
        "joint_bias",
        "sigma",
        "total_count",
    ),
}


def save_model(path: str | os.PathLike, model: Any, **extra_config: Any) -> Path:
    """Save one of our energy distributions (e.g. a trained ``RBM``) as safetensors + JSON.

    The file holds the parameters by name and a config with the class name and its settings,
    so :func:`load_model` can rebuild it in either backend. ``extra_config`` (JSON-able) is
    stored alongside, e.g. training settings.
    """
    kind = type(model).__name__
    if kind not in _MODEL_PARAMS:
        raise TypeError(f"model must be one of {sorted(_MODEL_PARAMS)}, got {kind}")
    tensors = {}
    for name in _MODEL_PARAMS[kind]:
        value = getattr(model, name)
        if value is None:
            continue
        if isinstance(value, (tuple, list)):
            tensors.update({f"{name}/{i}": x for i, x in enumerate(value)})
        elif isinstance(value, (int, float)):  # e.g. a MultimodalDBM's total_count
            tensors[name] = ops.asarray_like(float(value), model.biases[0])
        else:
            tensors[name] = value
    config = {
        "kind": "ebm_ppl.model",
        "model": kind,
        "num_gibbs_steps": int(model.num_gibbs_steps),
        "extra": dict(extra_config),
    }
    return save_checkpoint(path, tensors, config)


def load_model(path: str | os.PathLike, backend: str = "torch", device: Any = None) -> Any:
    """Rebuild a model saved by :func:`save_model` as a Pyro (``backend="torch"``) or
    NumPyro (``backend="jax"``) distribution (safetensors + JSON only, no code is loaded).
    ``device`` (torch only) is where its parameters go (default: the CPU)."""
    if backend not in ("torch", "jax"):
        raise ValueError(f"backend must be 'torch' or 'jax', got {backend!r}")
    tensors, config = load_checkpoint(path, backend=backend, device=device)
    if config.get("kind") != "ebm_ppl.model" or config.get("model") not in _MODEL_PARAMS:
        raise ValueError(f"{path} does not hold a model saved by ebm_ppl.io.save_model")
    if backend == "torch":
        # lazy: keeps this module free of pyro, torch until that backend is used
        from ebm_ppl import pyro as frontend
    else:
        # lazy: keeps this module free of jax, numpyro until that backend is used
        from ebm_ppl import numpyro as frontend
    cls = getattr(frontend, config["model"])
    names = _MODEL_PARAMS[config["model"]]
    args = []
    for n in names:
        if n in tensors:
            args.append(tensors[n])
        else:  # a list of arrays, or an optional array that was None
            count = sum(1 for k in tensors if k.startswith(f"{n}/"))
            args.append([tensors[f"{n}/{i}"] for i in range(count)] if count else None)
    return cls(*args, num_gibbs_steps=config["num_gibbs_steps"])
