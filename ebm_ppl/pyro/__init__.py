"""Pyro (torch) frontend of ebm_ppl: distributions, MCMC kernels, trainers and AIS."""

from ebm_ppl.inference.ais import (
    AISResult,
    LogLikelihood,
    evaluate,
    geometric_schedule,
    linear_schedule,
    salakhutdinov_murray_schedule,
)
from ebm_ppl.inference.samle import robbins_monro
from ebm_ppl.inference.tempering import ParallelTempering, TemperedTransitions
from ebm_ppl.models.base import (
    BernoulliBase,
    GaussianBase,
    base_rate,
    gaussian_base,
    uniform_base,
)
from ebm_ppl.pyro.ais import AIS
from ebm_ppl.pyro.distributions import RBM, GaussianRBM
from ebm_ppl.pyro.kernels import BlockGibbs
from ebm_ppl.pyro.samle import SAMLE

__all__ = [
    "AIS",
    "AISResult",
    "BernoulliBase",
    "BlockGibbs",
    "GaussianBase",
    "GaussianRBM",
    "LogLikelihood",
    "ParallelTempering",
    "RBM",
    "SAMLE",
    "TemperedTransitions",
    "base_rate",
    "evaluate",
    "gaussian_base",
    "geometric_schedule",
    "linear_schedule",
    "robbins_monro",
    "salakhutdinov_murray_schedule",
    "uniform_base",
]
