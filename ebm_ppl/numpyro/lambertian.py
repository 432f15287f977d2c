"""The deep Lambertian model for NumPyro (:mod:`ebm_ppl.models.lambertian` holds the math)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from ebm_ppl.models.lambertian import (
    DeepLambertianMethods,
    LambertianPriors,
    continuous_log_joint,
    init_map_state,
    map_update,
)
from ebm_ppl.numpyro.dbm import DBM

__all__ = ["DeepLambertian"]


class DeepLambertian(DeepLambertianMethods):
    r"""Deep Lambertian model (Tang, Salakhutdinov & Hinton 2012): image = albedo x
    max(0, normals . light) + noise, the albedo from a Gaussian DBM prior, the surface from
    a smooth height-field prior, the light from a Gaussian (see
    :mod:`ebm_ppl.models.lambertian`).

    ``DeepLambertian(albedo_dbm, shape=(H, W), offset=0.5, scale=0.2, height_scale=3.0,
    smoothness=2.0, light_loc=(0, 0, 1), light_scale=0.5, noise=0.05)``.

    - :meth:`model` is the program (sites ``albedo``, ``height``, ``light``, ``image``).
      Full posterior inference: ``numpyro.infer.HMCGibbs(NUTS(model),
      gibbs_fn=BlockGibbs(model).gibbs_fn(images), gibbs_sites=["albedo"])`` (block Gibbs
      for the DBM layers and albedo with the observation folded in exactly, NUTS for the
      height field and light).
    - :meth:`infer_map` infers many images at once by coordinate ascent (mean field for the
      DBM, the exact conditional mean of the albedo, Adam on surface and light; one
      compiled scan); :meth:`relight` renders the result under new lights.
    """

    def __init__(
        self,
        albedo_dbm: DBM,
        shape: tuple,
        offset: float = 0.5,
        scale: float = 0.2,
        height_scale: float = 3.0,
        smoothness: float = 2.0,
        light_loc=(0.0, 0.0, 1.0),
        light_scale: float = 0.5,
        noise: float = 0.05,
    ) -> None:
        priors = LambertianPriors(
            float(offset),
            float(scale),
            float(height_scale),
            float(smoothness),
            jnp.asarray(light_loc, jnp.float32),
            float(light_scale),
            float(noise),
            tuple(shape),
        )
        self._init_lambertian(albedo_dbm, DBM, priors)

    _plate = staticmethod(numpyro.plate)
    _factor = staticmethod(numpyro.factor)
    _normal = dist.Normal

    @staticmethod
    def _sample_site(name, fn, obs=None):
        return numpyro.sample(name, fn, obs=obs)

    def infer_map(self, images, num_steps: int = 300, lr: float = 0.05, mf_iters: int = 3):
        """Coordinate ascent for ``images`` ``(N, H*W)``: returns ``albedo``, ``height``,
        ``normals``, ``light``, ``shading`` and the DBM's marginals."""
        images = jnp.asarray(images, jnp.float32)
        self._check_images(images)
        self._check_map_args(num_steps, lr)
        priors, dbm = self.priors, self.dbm

        def objective(image, v, z, light):
            return continuous_log_joint(image, v, z, light, priors).sum()

        grad_fn = jax.grad(objective, argnums=(2, 3))

        @jax.jit
        def run(images):
            state = init_map_state(dbm, images, priors)

            def body(st, _):
                return map_update(dbm, images, st, priors, grad_fn, lr, mf_iters), None

            return jax.lax.scan(body, state, None, length=num_steps)[0]

        return self._map_result(run(images))
