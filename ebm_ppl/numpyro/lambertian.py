"""The deep Lambertian model for NumPyro (:mod:`ebm_ppl.models.lambertian` holds the math, the
program and the coordinate ascent, written once for both PPLs)."""

from __future__ import annotations

from ebm_ppl.models.lambertian import DeepLambertianMethods
from ebm_ppl.numpyro import ppl
from ebm_ppl.numpyro.dbm import DBM

__all__ = ["DeepLambertian"]


class DeepLambertian(DeepLambertianMethods):
    r"""The deep Lambertian model of :class:`ebm_ppl.pyro.DeepLambertian` in NumPyro:
    image = albedo x max(0, normals . light) + noise, with a Gaussian-DBM albedo prior, a
    smooth (or learned Gaussian: ``height_prior=``) height field and a Gaussian light (see
    :mod:`ebm_ppl.models.lambertian`); the same constructor
    ``DeepLambertian(albedo_dbm, shape=(H, W), ...)``.

    - :meth:`model` is the program (sites ``albedo``, ``height``, ``light``, ``image``).
      Full posterior inference: ``numpyro.infer.HMCGibbs(NUTS(model),
      gibbs_fn=BlockGibbs(model).gibbs_fn(images), gibbs_sites=["albedo"])`` (block Gibbs
      for the DBM layers and albedo with the observation folded in exactly, NUTS for the
      height field and light).
    - :meth:`infer_map` runs the coordinate ascent for many images as one compiled
      ``lax.scan`` (gradients by ``jax.grad``); :meth:`relight` renders the result under new
      lights.
    """

    ppl = ppl
    _dbm_class = DBM
