"""The deep Lambertian model for Pyro (:mod:`ebm_ppl.models.lambertian` holds the math, the
program and the coordinate ascent, written once for both PPLs)."""

from __future__ import annotations

from ebm_ppl.models.lambertian import DeepLambertianMethods
from ebm_ppl.pyro import ppl
from ebm_ppl.pyro.dbm import DBM

__all__ = ["DeepLambertian"]


class DeepLambertian(DeepLambertianMethods):
    r"""Deep Lambertian model (Tang, Salakhutdinov & Hinton 2012): image = albedo x
    max(0, normals . light) + noise, the albedo from a Gaussian DBM prior, the surface from
    a smooth height-field prior or a learned Gaussian one, the light from a Gaussian (see
    :mod:`ebm_ppl.models.lambertian`).

    ``DeepLambertian(albedo_dbm, shape=(H, W), offset=0.5, scale=0.2, height_scale=3.0,
    smoothness=2.0, light_loc=(0, 0, 1), light_scale=0.5, noise=0.05, height_prior=None)``;
    the light's prior mean lives on the albedo DBM's device. ``height_prior``: a
    :class:`~ebm_ppl.models.lambertian.HeightPrior` (from
    :func:`~ebm_ppl.models.lambertian.fit_height_prior`, e.g. of
    :func:`~ebm_ppl.models.lambertian.photometric_stereo` surfaces) replacing the per-pixel
    ``N(0, height_scale^2)`` term.

    - :meth:`model` is the program (sites ``albedo``, ``height``, ``light``, ``image``).
      Full posterior inference: :class:`~ebm_ppl.pyro.HMCGibbs` (block Gibbs for the DBM
      layers and albedo with the observation folded in exactly, NUTS for the height field
      and light) under ``pyro.infer.MCMC``.
    - :meth:`infer_map` infers many images at once by coordinate ascent (mean field for the
      DBM, the exact conditional mean of the albedo, Adam on surface and light, gradients by
      ``torch.autograd``); :meth:`relight` renders the result under new lights.
    """

    ppl = ppl
    _dbm_class = DBM
