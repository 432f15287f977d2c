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
    r"""2-D lattice Ising model over spins ``s in {-1, +1}^(H x W)``, as
    :class:`ebm_ppl.pyro.Ising` (the same constructor ``Ising(coupling, field=0.0, shape=(H,
    W), periodic=False, num_gibbs_steps=100, normalized=False)``, energy
    ``E(s) = -J sum_<ij> s_i s_j - h sum_i s_i``, unnormalized or exactly normalized
    ``log_prob``) with explicit keys: ``exact_sample(key)`` draws exactly on small lattices
    (NUTS and ``HMCGibbs`` are exact there with ``normalized=True``); ``sample(key)`` runs
    ``num_gibbs_steps`` checkerboard block-Gibbs sweeps (one ``lax.scan``) from uniform
    spins, the sweeps :class:`~ebm_ppl.numpyro.BlockGibbs` uses for latent Ising sites.

    The class is a jit-safe pytree (``coupling`` and ``field`` are leaves; the lattice shape,
    ``periodic``, ``num_gibbs_steps`` and ``normalized`` are static). ``expand`` is native and
    lazy. Concrete inputs are checked (shape, spins, finite) unless ``validate_args=False``;
    traced inputs cannot be inspected and only their shape is.
    """

    arg_constraints = {"coupling": constraints.real, "field": constraints.real}
    support = constraints.independent(spin, 2)
    _backend = "jax"
    pytree_data_fields = ("coupling", "field")
    pytree_aux_fields = (
        "lattice_shape",
        "periodic",
        "num_gibbs_steps",
        "_check_inputs",
        "normalized",
    )
