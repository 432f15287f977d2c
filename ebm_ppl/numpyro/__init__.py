"""NumPyro (JAX) frontend of ebm_ppl: distributions, MCMC kernels and trainers."""

from ebm_ppl.inference.samle import robbins_monro
from ebm_ppl.numpyro.distributions import RBM
from ebm_ppl.numpyro.kernels import BlockGibbs, BlockGibbsState

__all__ = ["RBM", "BlockGibbs", "BlockGibbsState", "robbins_monro"]
from ebm_ppl.numpyro.samle import SAMLE, SAMLEState  # noqa: E402

__all__ += ["SAMLE", "SAMLEState"]
