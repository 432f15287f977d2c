"""Pyro (torch) frontend of ebm_ppl: distributions, MCMC kernels, trainers and AIS."""

from ebm_ppl.inference.ais import (
    AISResult,
    LogLikelihood,
    RAISEResult,
    Routes,
    compare_routes,
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
from ebm_ppl.models.categorical_rbm import CategoricalBase
from ebm_ppl.models.dbm import DBMBase, DBMPath
from ebm_ppl.models.mixture import (
    BernoulliMixtureFit,
    bernoulli_mixture_init,
    bernoulli_mixture_log_likelihood,
)
from ebm_ppl.models.replicated_softmax import (
    MultinomialBase,
    log_multinomial_coefficient,
    multinomial_base,
)
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
from ebm_ppl.pyro.hd import fit_hd_prior, hd_prior
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
from ebm_ppl.pyro.multimodal import MultimodalDBM, MultimodalDBMVisible
from ebm_ppl.pyro.robust import RobustBM, RobustBMVisible, RobustLikelihood
from ebm_ppl.pyro.samle import SAMLE

__all__ = [
    "init_distributed",
    "AIS",
    "AISResult",
    "DBMBase",
    "DBMPath",
    "RAISE",
    "RAISEResult",
    "Routes",
    "compare_routes",
    "BernoulliBase",
    "BernoulliMixtureFit",
    "BlockGibbs",
    "CategoricalBase",
    "CategoricalRBM",
    "DBM",
    "DBMClassifier",
    "DBMVisible",
    "DBN",
    "DBNClassifier",
    "DeepLambertian",
    "Exchange",
    "GaussianBase",
    "GaussianRBM",
    "GreedyLayerData",
    "HMCGibbs",
    "Ising",
    "LogLikelihood",
    "MeanFieldGuide",
    "MultimodalDBM",
    "MultimodalDBMVisible",
    "MultinomialBase",
    "ParallelTempering",
    "RBM",
    "RobustBM",
    "RobustBMVisible",
    "RobustLikelihood",
    "ReplicatedSoftmax",
    "SAMLE",
    "TemperedTransitions",
    "base_rate",
    "bernoulli_mixture",
    "bernoulli_mixture_init",
    "bernoulli_mixture_log_density",
    "bernoulli_mixture_log_joint",
    "bernoulli_mixture_log_likelihood",
    "check_model",
    "classification_error",
    "energy_dependencies",
    "dbn_guide",
    "dbn_model",
    "evaluate",
    "fine_tune",
    "gaussian_base",
    "fit_bernoulli_mixture",
    "fit_hd_prior",
    "geometric_schedule",
    "greedy_pretrain",
    "greedy_pretrain_dbm",
    "hd_prior",
    "linear_schedule",
    "log_multinomial_coefficient",
    "multinomial_base",
    "robbins_monro",
    "salakhutdinov_murray_schedule",
    "uniform_base",
]
