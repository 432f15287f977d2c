"""The 2-D lattice Ising model as a Pyro (torch) distribution."""

from __future__ import annotations

import torch
from pyro.distributions import constraints

from ebm_ppl.models.family import NormalizedLogProb
from ebm_ppl.models.ising import IsingMethods
from ebm_ppl.pyro.distributions import _Energy

__all__ = ["Ising", "spin"]


class _Spin(constraints.Constraint):
    """A spin: ``-1`` or ``+1``."""

    is_discrete = True
    event_dim = 0

    def check(self, value: torch.Tensor) -> torch.Tensor:
        return (value == 1) | (value == -1)

    def __repr__(self) -> str:
        return "Spin()"


#: The support of one lattice site, ``{-1, +1}``.
spin = _Spin()


class Ising(NormalizedLogProb, IsingMethods, _Energy):
    r"""2-D lattice Ising model over spins ``s in {-1, +1}^(H x W)``.

    ``Ising(coupling, field=0.0, shape=(H, W))`` has energy
    ``E(s) = -J sum_<ij> s_i s_j - h sum_i s_i`` over nearest-neighbour bonds, with free
    boundaries or, with ``periodic=True`` (even ``H`` and ``W``), on a torus. ``coupling``
    ``J`` and ``field`` ``h`` are floats or tensors of the batch shape (e.g. under a plate,
    or functions of random variables: they stay differentiable); the event shape is
    ``(H, W)``.

    ``log_prob(s)`` is the **unnormalized** ``-E(s)``; with ``normalized=True`` it subtracts
    the exact ``log_partition()`` (enumeration of one checkerboard colour, lattices up to
    6 x 6), which makes programs with random ``J`` or ``h`` exact. ``exact_sample`` draws
    exactly on such lattices. ``sample()`` is approximate: ``num_gibbs_steps`` checkerboard
    block-Gibbs sweeps from uniform spins using torch's global generator (seeded by
    ``pyro.set_rng_seed``); :class:`~ebm_ppl.pyro.BlockGibbs` samples latent Ising sites with
    the same sweeps. ``expand`` is native and lazy. Inputs are checked (shape, spins,
    finite) unless ``validate_args=False``.
    """

    arg_constraints = {"coupling": constraints.real, "field": constraints.real}
    support = constraints.independent(spin, 2)
    _backend = "torch"
