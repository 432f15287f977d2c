"""Torch devices as the Pyro frontend's ``device=`` arguments take them; draws placed on them."""

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


def randn_like(shape: tuple, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """``N(0, 1)`` draws in the dtype and on the device of ``like``, from ``generator`` on
    its own device (a CPU generator gives the same draws for every device) or torch's
    global generator for ``like``'s device."""
    device = like.device if generator is None else generator.device
    out = torch.randn(shape, generator=generator, dtype=like.dtype, device=device)
    return out.to(like.device)
