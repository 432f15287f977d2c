"""NumPyro (JAX) frontend of ebm_ppl: distributions, MCMC kernels, trainers and AIS."""

import jax

from ebm_ppl.inference import frontend_api
from ebm_ppl.inference.frontend_api import *  # noqa: F403 (the backend-neutral names)
from ebm_ppl.models.base import register_pytree
from ebm_ppl.models.categorical_rbm import CategoricalBase
from ebm_ppl.models.dbm import DBMPath
from ebm_ppl.models.replicated_softmax import MultinomialBase
from ebm_ppl.numpyro.ais import AIS, RAISE
from ebm_ppl.numpyro.chains import run_chains
from ebm_ppl.numpyro.dbm import DBM, DBMVisible, dbm_classifier_init, greedy_pretrain_dbm
from ebm_ppl.numpyro.dbn import (
    DBN,
    GreedyLayerData,
    classification_error,
    classifier_init,
    classifier_logits,
    dbn_guide,
    dbn_model,
    fine_tune,
    greedy_pretrain,
)
from ebm_ppl.numpyro.dependence import check_model, energy_dependencies
from ebm_ppl.numpyro.distributions import RBM, CategoricalRBM, GaussianRBM, ReplicatedSoftmax
from ebm_ppl.numpyro.exchange import Exchange, ExchangeState
from ebm_ppl.numpyro.hd import (
    fit_hd_cov_prior,
    fit_hd_normal_prior,
    fit_hd_prior,
    hd_normal_prior,
    hd_prior,
)
from ebm_ppl.numpyro.ising import Ising
from ebm_ppl.numpyro.kernels import BlockGibbs, BlockGibbsState
from ebm_ppl.numpyro.lambertian import DeepLambertian
from ebm_ppl.numpyro.mixture import (
    bernoulli_mixture,
    bernoulli_mixture_log_density,
    bernoulli_mixture_log_joint,
    fit_bernoulli_mixture,
)
from ebm_ppl.numpyro.multilinear import MeanFieldGuide
from ebm_ppl.numpyro.multimodal import (
    MultimodalDBM,
    MultimodalDBMVisible,
    multimodal_classifier_init,
)
from ebm_ppl.numpyro.robust import RobustBM, RobustBMVisible, RobustLikelihood
from ebm_ppl.numpyro.samle import SAMLE, SAMLEState
from ebm_ppl.numpyro.sharding import make_mesh

register_pytree(MultinomialBase, CategoricalBase)  # the AIS bases cross jit boundaries
try:  # the DBM's annealing path crosses them too
    jax.tree_util.register_pytree_node_class(DBMPath)
except ValueError:  # already registered
    pass

__all__ = [
    *frontend_api.__all__,
    "AIS",
    "RAISE",
    "BlockGibbs",
    "BlockGibbsState",
    "CategoricalRBM",
    "DBM",
    "DBMVisible",
    "DBN",
    "DeepLambertian",
    "Exchange",
    "ExchangeState",
    "GaussianRBM",
    "GreedyLayerData",
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
    "SAMLEState",
    "bernoulli_mixture",
    "bernoulli_mixture_log_density",
    "bernoulli_mixture_log_joint",
    "make_mesh",
    "run_chains",
    "check_model",
    "classification_error",
    "energy_dependencies",
    "classifier_init",
    "classifier_logits",
    "dbm_classifier_init",
    "multimodal_classifier_init",
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
