"""Pyro (torch) frontend of ebm_ppl: distributions, MCMC kernels and trainers."""

from ebm_ppl.inference.samle import robbins_monro
from ebm_ppl.pyro.distributions import RBM
from ebm_ppl.pyro.kernels import BlockGibbs

__all__ = ["RBM", "BlockGibbs", "robbins_monro"]
from ebm_ppl.pyro.samle import SAMLE  # noqa: E402

__all__ += ["SAMLE"]
