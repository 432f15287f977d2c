"""Pyro (torch) frontend of ebm_ppl: distributions, MCMC kernels, trainers and AIS."""

from ebm_ppl.inference import frontend_api
from ebm_ppl.inference.frontend_api import *  # noqa: F403 (the backend-neutral names)
from ebm_ppl.pyro.ais import AIS, RAISE
from ebm_ppl.pyro.dbm import DBM, DBMClassifier, DBMVisible, greedy_pretrain_dbm
from ebm_ppl.pyro.dbn import (
    DBN,
    DBNClassifier,
    GreedyLayerData,
    classification_error,
    dbn_guide,
    dbn_model,
    fine_tune,
    greedy_pretrain,
)
from ebm_ppl.pyro.dependence import check_model, energy_dependencies
from ebm_ppl.pyro.distributed import init_distributed
from ebm_ppl.pyro.distributions import RBM, CategoricalRBM, GaussianRBM, ReplicatedSoftmax
from ebm_ppl.pyro.exchange import Exchange
from ebm_ppl.pyro.hd import (
    fit_hd_cov_prior,
    fit_hd_normal_prior,
    fit_hd_prior,
    hd_normal_prior,
    hd_prior,
)
from ebm_ppl.pyro.hmc_gibbs import HMCGibbs
from ebm_ppl.pyro.ising import Ising
from ebm_ppl.pyro.kernels import BlockGibbs
from ebm_ppl.pyro.lambertian import DeepLambertian
from ebm_ppl.pyro.mixture import (
    bernoulli_mixture,
    bernoulli_mixture_log_density,
    bernoulli_mixture_log_joint,
    fit_bernoulli_mixture,
)
from ebm_ppl.pyro.multilinear import MeanFieldGuide
from ebm_ppl.pyro.multimodal import MultimodalDBM, MultimodalDBMClassifier, MultimodalDBMVisible
from ebm_ppl.pyro.robust import RobustBM, RobustBMVisible, RobustLikelihood
from ebm_ppl.pyro.samle import SAMLE

__all__ = [
    *frontend_api.__all__,
    "init_distributed",
    "AIS",
    "RAISE",
    "BlockGibbs",
    "CategoricalRBM",
    "DBM",
    "DBMClassifier",
    "MultimodalDBMClassifier",
    "DBMVisible",
    "DBN",
    "DBNClassifier",
    "DeepLambertian",
    "Exchange",
    "GaussianRBM",
    "GreedyLayerData",
    "HMCGibbs",
    "Ising",
    "MeanFieldGuide",
    "MultimodalDBM",
    "MultimodalDBMVisible",
    "RBM",
    "RobustBM",
    "RobustBMVisible",
    "RobustLikelihood",
    "ReplicatedSoftmax",
    "SAMLE",
    "bernoulli_mixture",
    "bernoulli_mixture_log_density",
    "bernoulli_mixture_log_joint",
    "check_model",
    "classification_error",
    "energy_dependencies",
    "dbn_guide",
    "dbn_model",
    "fine_tune",
    "fit_bernoulli_mixture",
    "fit_hd_cov_prior",
    "fit_hd_normal_prior",
    "fit_hd_prior",
    "greedy_pretrain",
    "greedy_pretrain_dbm",
    "hd_normal_prior",
    "hd_prior",
]
