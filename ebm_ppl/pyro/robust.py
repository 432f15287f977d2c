"""The robust Boltzmann machine for Pyro (:mod:`ebm_ppl.models.robust` holds the math)."""

from __future__ import annotations

import torch
from pyro.distributions import TorchDistribution, constraints

from ebm_ppl.models import robust
from ebm_ppl.models.family import EnergyMethods
from ebm_ppl.models.robust import MeanField, Noise
from ebm_ppl.pyro import ppl
from ebm_ppl.pyro.distributions import RBM, GaussianRBM, _Energy

__all__ = ["MeanField", "RobustBM", "RobustBMVisible", "RobustLikelihood"]


def _noise(
    noise_scale, outlier_loc, outlier_scale, like: torch.Tensor | None = None, outlier_weights=None
) -> Noise:
    if like is None:  # not an RBM: refused by the checks
        like = torch.zeros(())  # device: default

    def cast(a):
        return torch.as_tensor(a, dtype=like.dtype, device=like.device)

    w = None if outlier_weights is None else cast(outlier_weights)
    return Noise(*(cast(a) for a in (noise_scale, outlier_loc, outlier_scale)), w)


class RobustLikelihood(robust.RobustLikelihoodMethods, TorchDistribution):
    r"""The RoBM observation model ``p(v | x, s)``: per pixel ``N(x_i, noise_scale_i^2)``
    where the mask ``s_i = 1`` and ``N(outlier_loc_i, outlier_scale_i^2)`` where ``s_i = 0``,
    or the Gaussian mixture ``sum_k w_k N(outlier_loc_ki, outlier_scale_ki^2)`` given
    ``outlier_weights`` ``w`` ``(K,)`` (:class:`~ebm_ppl.models.robust.Noise`) (``shown``
    holds the mask; normalized; event shape ``(D,)``, batch shape that of the
    ``clean``/``mask`` arrays)."""

    arg_constraints = {
        "noise_scale": constraints.positive,
        "outlier_loc": constraints.real,
        "outlier_scale": constraints.positive,
    }
    support = constraints.real_vector
    has_rsample = False

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
        self.clean = torch.as_tensor(clean)  # device: data (a tensor keeps its own)
        self.shown = torch.as_tensor(mask, device=self.clean.device)
        self.noise = _noise(noise_scale, outlier_loc, outlier_scale, self.clean, outlier_weights)
        self.noise_scale, self.outlier_loc, self.outlier_scale, self.outlier_weights = self.noise
        batch, event = self._likelihood_shapes(self.noise)
        super().__init__(torch.Size(batch), torch.Size(event), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape) + self.event_shape
        n = self.noise
        return RobustLikelihood(
            self.clean.expand(shape), self.shown.expand(shape), *n[:3], outlier_weights=n.weights
        )

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape + self.event_shape
        with torch.no_grad():
            return robust.sample_observation(
                None, self.clean.expand(shape), self.shown.expand(shape), self.noise
            )


class RobustBM(robust.RobustBMMethods):
    r"""Robust Boltzmann machine (Tang, Salakhutdinov & Hinton 2012): a clean image from a
    Gaussian RBM, a structured occlusion mask from a binary RBM, and the observed image
    equal to the clean one (plus ``N(0, noise_scale^2)``) where the mask is on and drawn
    from ``N(outlier_loc, outlier_scale^2)`` where it is off.

    ``RobustBM(clean=GaussianRBM(...), mask=RBM(...), noise_scale=0.1, outlier_loc=0.0,
    outlier_scale=1.0, outlier_weights=None)`` (noise parameters: numbers or ``(D,)``
    tensors; ``outlier_weights`` ``(K,)`` makes the outlier density a Gaussian mixture with
    ``outlier_loc``/``outlier_scale`` of shape ``(K,)`` or ``(K, D)``,
    :class:`~ebm_ppl.models.robust.Noise`).

    - :meth:`model` is the generative program (sites ``clean``, ``mask``, ``image`` in a
      plate ``images``): ``Predictive`` generates occluded images, ``condition`` /
      ``obs=`` observes them, and :class:`~ebm_ppl.pyro.BlockGibbs` samples the latent
      sites of ``model(images)`` with exact conditionals (the observation is folded into
      each RBM's conditional, :class:`~ebm_ppl.models.fields.Field`).
    - :meth:`infer` runs the same block Gibbs directly (faster: no tracing) and returns
      posterior means of the clean image and mask; :meth:`mean_field` is variational
      inference; :meth:`bound` the variational bound on ``log p(v)``.
    - :meth:`visible` is the site to observe on occluded data and train both RBMs with
      :class:`~ebm_ppl.pyro.SAMLE` (mean-field positive phase, persistent prior chains).
    """

    ppl = ppl
    _clean_class = GaussianRBM
    _mask_class = RBM
    _likelihood_cls = RobustLikelihood
    _noise = staticmethod(_noise)

    def infer(self, images: torch.Tensor, num_sweeps: int = 100, burn_in: int = 20) -> dict:
        """Block Gibbs given ``images`` ``(N, D)`` (torch's global RNG): ``burn_in`` sweeps,
        then the averages over ``num_sweeps`` sweeps of ``E[x | h, s, v]``
        (``"clean_mean"``) and ``P(s = 1 | g, x, v)`` (``"mask_mean"``), and the last state
        (``"clean"``, ``"mask"``)."""
        with torch.no_grad():
            like = self.clean.weights
            images = torch.as_tensor(images, device=like.device)
            return self._gibbs(None, images, num_sweeps, burn_in)

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


class RobustBMVisible(robust.RobustVisibleMethods, EnergyMethods, _Energy):
    r"""A :class:`RobustBM` seen through its observed image, for stochastic approximation:
    ``pyro.sample("v", robm.visible(), obs=batch)`` in a model whose RBM parameters are
    ``pyro.param`` makes :class:`~ebm_ppl.pyro.SAMLE` learn the clean-image and mask RBMs
    from occluded images (positive phase at the mean-field posterior, negative phase from
    persistent chains of each RBM; the noise model is held fixed). ``log_prob`` is the
    mean-field bound on ``log p~(v)``; ``sample()`` generates observed images."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    _robust_class = RobustBM
