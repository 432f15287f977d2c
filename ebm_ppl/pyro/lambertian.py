"""The deep Lambertian model for Pyro (:mod:`ebm_ppl.models.lambertian` holds the math)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from ebm_ppl.models.lambertian import (
    DeepLambertianMethods,
    LambertianPriors,
    continuous_log_joint,
    init_map_state,
    map_update,
)
from ebm_ppl.pyro.dbm import DBM

__all__ = ["DeepLambertian"]


def _device_of(dbm) -> torch.device | None:
    """Where the albedo DBM's parameters live (``None`` if it is not a DBM: refused later)."""
    biases = getattr(dbm, "biases", None)
    return biases[0].device if biases else None


class DeepLambertian(DeepLambertianMethods):
    r"""Deep Lambertian model (Tang, Salakhutdinov & Hinton 2012): image = albedo x
    max(0, normals . light) + noise, the albedo from a Gaussian DBM prior, the surface from
    a smooth height-field prior, the light from a Gaussian (see
    :mod:`ebm_ppl.models.lambertian`).

    ``DeepLambertian(albedo_dbm, shape=(H, W), offset=0.5, scale=0.2, height_scale=3.0,
    smoothness=2.0, light_loc=(0, 0, 1), light_scale=0.5, noise=0.05)``.

    - :meth:`model` is the program (sites ``albedo``, ``height``, ``light``, ``image``).
      Full posterior inference: :class:`~ebm_ppl.pyro.HMCGibbs` (block Gibbs for the DBM
      layers and albedo with the observation folded in exactly, NUTS for the height field
      and light) under ``pyro.infer.MCMC``.
    - :meth:`infer_map` infers many images at once by coordinate ascent (mean field for the
      DBM, the exact conditional mean of the albedo, Adam on surface and light);
      :meth:`relight` renders the result under new lights.
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
            torch.as_tensor(light_loc, dtype=torch.float32, device=_device_of(albedo_dbm)),
            float(light_scale),
            float(noise),
            tuple(shape),
        )
        self._init_lambertian(albedo_dbm, DBM, priors)

    _plate = staticmethod(pyro.plate)
    _factor = staticmethod(pyro.factor)
    _normal = dist.Normal

    @staticmethod
    def _sample_site(name, fn, obs=None):
        return pyro.sample(name, fn, obs=obs)

    def infer_map(self, images, num_steps: int = 300, lr: float = 0.05, mf_iters: int = 3):
        """Coordinate ascent for ``images`` ``(N, H*W)``: returns ``albedo``, ``height``,
        ``normals``, ``light``, ``shading`` and the DBM's marginals."""
        images = torch.as_tensor(images, dtype=torch.float32, device=_device_of(self.dbm))
        self._check_images(images)
        self._check_map_args(num_steps, lr)
        priors, dbm = self.priors, self.dbm

        def grad_fn(image, v, z, light):
            with torch.enable_grad():
                z = z.detach().requires_grad_(True)
                light = light.detach().requires_grad_(True)
                total = continuous_log_joint(image, v, z, light, priors).sum()
                return torch.autograd.grad(total, [z, light])

        with torch.no_grad():
            state = init_map_state(dbm, images, priors)
            for _ in range(num_steps):
                state = map_update(dbm, images, state, priors, grad_fn, lr, mf_iters)
            return self._map_result(state)
