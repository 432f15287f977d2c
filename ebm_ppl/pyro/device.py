"""Torch devices as the Pyro frontend's ``device=`` arguments take them."""

from __future__ import annotations

from typing import Any

import torch


def as_device(device: Any, name: str = "device") -> torch.device:
    """``device`` as a :class:`torch.device` (from a string such as ``"cuda:0"``, an index
    or a device); a ``ValueError`` naming the argument ``name`` when it is none of these."""
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"{name} must be a torch device such as 'cpu' or 'cuda', got {device!r}"
        ) from None
