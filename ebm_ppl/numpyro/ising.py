"""The 2-D lattice Ising model as a NumPyro (JAX) distribution."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints

from ebm_ppl.models.family import NormalizedLogProb
from ebm_ppl.models.ising import IsingMethods
from ebm_ppl.numpyro.distributions import _Energy

__all__ = ["Ising", "spin"]


class _Spin(constraints._SingletonConstraint):
    """A spin: ``-1`` or ``+1``."""

    is_discrete = True
    event_dim = 0

    def __call__(self, x):
        xp = jnp if isinstance(x, jax.Array) else np
        return xp.equal(x, 1) | xp.equal(x, -1)

    def feasible_like(self, prototype):
        return jnp.ones_like(prototype)

    def __repr__(self) -> str:
        return "Spin()"


#: The support of one lattice site, ``{-1, +1}``.
spin = _Spin()


class Ising(NormalizedLogProb, IsingMethods, _Energy):
    r"""2-D lattice Ising model over spins ``s in {-1, +1}^(H x W)``.

    ``Ising(coupling, field=0.0, shape=(H, W))`` has energy
    ``E(s) = -J sum_<ij> s_i s_j - h sum_i s_i`` over nearest-neighbour bonds, with free
    boundaries or, with ``periodic=True`` (even ``H`` and ``W``), on a torus. ``coupling``
    ``J`` and ``field`` ``h`` are floats or arrays of the batch shape (e.g. under a plate,
    or functions of random variables: they stay differentiable); the event shape is
    ``(H, W)``.

    ``log_prob(s)`` is the **unnormalized** ``-E(s)``; with ``normalized=True`` it subtracts
    the exact ``log_partition()`` (enumeration of one checkerboard colour, lattices up to
    6 x 6), which makes programs with random ``J`` or ``h`` exact (NUTS, ``HMCGibbs``).
    ``exact_sample(key)`` draws exactly on such lattices. ``sample(key)`` is approximate:
    ``num_gibbs_steps`` checkerboard block-Gibbs sweeps (one ``lax.scan``) from uniform
    spins; :class:`~ebm_ppl.numpyro.BlockGibbs` samples latent Ising sites with the same
    sweeps.

    The class is a jit-safe pytree (``coupling`` and ``field`` are leaves; the lattice shape,
    ``periodic``, ``num_gibbs_steps`` and ``normalized`` are static). ``expand`` is native and
    lazy. Concrete inputs are checked (shape, spins, finite) unless ``validate_args=False``;
    traced inputs cannot be inspected and only their shape is.
    """

    arg_constraints = {"coupling": constraints.real, "field": constraints.real}
    support = constraints.independent(spin, 2)
    pytree_data_fields = ("coupling", "field")
    pytree_aux_fields = (
        "lattice_shape",
        "periodic",
        "num_gibbs_steps",
        "_check_inputs",
        "normalized",
    )

    def __init__(
        self,
        coupling,
        field=0.0,
        shape: tuple[int, int] | None = None,
        periodic: bool = False,
        num_gibbs_steps: int = 100,
        normalized: bool = False,
        validate_args: bool | None = None,
    ) -> None:
        batch_shape, event_shape = self._init_params(
            "jax", coupling, field, shape, periodic, num_gibbs_steps, validate_args
        )
        self._finish_init(batch_shape, event_shape, validate_args)
        self._set_normalized(normalized)
