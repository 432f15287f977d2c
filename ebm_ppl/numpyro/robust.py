"""The robust Boltzmann machine for NumPyro (:mod:`ebm_ppl.models.robust` holds the math)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from numpyro.distributions import Distribution, constraints

from ebm_ppl.models import robust
from ebm_ppl.models.family import EnergyMethods
from ebm_ppl.models.robust import MeanField, Noise
from ebm_ppl.numpyro import ppl
from ebm_ppl.numpyro.distributions import RBM, GaussianRBM, _Energy, compiled_log_prob

__all__ = ["MeanField", "RobustBM", "RobustBMVisible", "RobustLikelihood"]


def _noise(noise_scale, outlier_loc, outlier_scale, like=None, outlier_weights=None) -> Noise:
    del like  # JAX places arrays itself
    w = None if outlier_weights is None else jnp.asarray(outlier_weights, jnp.float32)
    return Noise(
        *(jnp.asarray(a, jnp.float32) for a in (noise_scale, outlier_loc, outlier_scale)), w
    )


class RobustLikelihood(robust.RobustLikelihoodMethods, Distribution):
    r"""The RoBM observation model ``p(v | x, s)``: per pixel ``N(x_i, noise_scale_i^2)``
    where the mask ``s_i = 1`` and ``N(outlier_loc_i, outlier_scale_i^2)`` where ``s_i = 0``,
    or the Gaussian mixture ``sum_k w_k N(outlier_loc_ki, outlier_scale_ki^2)`` given
    ``outlier_weights`` ``w`` ``(K,)`` (:class:`~ebm_ppl.models.robust.Noise`) (``shown``
    holds the mask; normalized; event shape ``(D,)``). A jit-safe pytree."""

    arg_constraints = {
        "noise_scale": constraints.positive,
        "outlier_loc": constraints.real,
        "outlier_scale": constraints.positive,
    }
    support = constraints.real_vector
    pytree_data_fields = (
        "clean",
        "shown",
        "noise_scale",
        "outlier_loc",
        "outlier_scale",
        "outlier_weights",
    )

    def __init__(
        self,
        clean,
        mask,
        noise_scale,
        outlier_loc,
        outlier_scale,
        validate_args=None,
        *,
        outlier_weights=None,
    ) -> None:
        self.clean, self.shown = jnp.asarray(clean), jnp.asarray(mask)
        noise = _noise(noise_scale, outlier_loc, outlier_scale, None, outlier_weights)
        self.noise_scale, self.outlier_loc, self.outlier_scale, self.outlier_weights = noise
        batch, event = self._likelihood_shapes(noise)
        super().__init__(batch, event, validate_args=validate_args)

    @property
    def noise(self) -> Noise:
        return Noise(self.noise_scale, self.outlier_loc, self.outlier_scale, self.outlier_weights)

    def sample(self, key, sample_shape=()):
        shape = tuple(sample_shape) + tuple(self.batch_shape) + tuple(self.event_shape)
        x = jnp.broadcast_to(self.clean, shape)
        s = jnp.broadcast_to(self.shown, shape)
        return robust.sample_observation(key, x, s, self.noise)


@jax.tree_util.register_pytree_node_class
class RobustBM(robust.RobustBMMethods):
    r"""Robust Boltzmann machine, as :class:`ebm_ppl.pyro.RobustBM` with explicit keys
    (a pytree: it may cross ``jax.jit``).

    ``RobustBM(clean=GaussianRBM(...), mask=RBM(...), noise_scale=0.1, outlier_loc=0.0,
    outlier_scale=1.0, outlier_weights=None)`` (weights ``(K,)``: a Gaussian-mixture outlier
    density); :meth:`model` is the program (sites ``clean``, ``mask``,
    ``image``), which :class:`~ebm_ppl.numpyro.BlockGibbs` samples under
    ``numpyro.infer.MCMC``; :meth:`infer` runs the same block Gibbs compiled;
    :meth:`mean_field`, :meth:`bound`, :meth:`visible` as in Pyro.
    """

    ppl = ppl
    _clean_class = GaussianRBM
    _mask_class = RBM
    _likelihood_cls = RobustLikelihood
    _noise = staticmethod(_noise)

    def tree_flatten(self):
        return (self.clean, self.mask, self.noise), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        new = object.__new__(cls)
        new.clean, new.mask, new.noise = children[0], children[1], Noise(*children[2])
        return new

    def infer(self, rng_key, images, num_sweeps: int = 100, burn_in: int = 20) -> dict:
        """Block Gibbs given ``images`` ``(N, D)`` from ``rng_key`` (one compiled scan):
        ``burn_in`` sweeps, then averages over ``num_sweeps`` sweeps of ``E[x | h, s, v]``
        (``"clean_mean"``) and ``P(s = 1 | g, x, v)`` (``"mask_mean"``), and the last
        state."""
        images = jnp.asarray(images)
        self._check_sweeps(num_sweeps, burn_in)
        run = jax.jit(lambda r, k, v: r._gibbs(k, v, num_sweeps, burn_in))
        return run(self, rng_key, images)

    def visible(
        self,
        num_iters: int = 30,
        damping: float = 0.0,
        tol: float | None = 1e-5,
        collapsed: bool = False,
        init_mask: float | str = 0.0,
    ) -> RobustBMVisible:
        """The observed-image site for SA learning from occluded data (``collapsed`` and
        ``init_mask`` as in :meth:`mean_field`)."""
        return RobustBMVisible(self, num_iters, damping, tol, collapsed, init_mask)


@compiled_log_prob
class RobustBMVisible(robust.RobustVisibleMethods, EnergyMethods, _Energy):
    r"""A :class:`RobustBM` seen through its observed image, for
    :class:`~ebm_ppl.numpyro.SAMLE` (as :class:`ebm_ppl.pyro.RobustBMVisible`)."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    _robust_class = RobustBM
    pytree_data_fields = ("robust",)
    pytree_aux_fields = ("num_iters", "damping", "tol", "collapsed", "init_mask")
