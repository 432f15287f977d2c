"""The backend-neutral names that both frontends, :mod:`ebm_ppl.pyro` and
:mod:`ebm_ppl.numpyro`, export: AIS results and schedules, tempering operators, the SA step
size rule, the AIS base distributions and the mixture-of-Bernoullis helpers. Written once
here; each frontend's ``__init__`` re-exports ``__all__`` next to its own classes."""

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

__all__ = [
    "AISResult",
    "BernoulliBase",
    "BernoulliMixtureFit",
    "CategoricalBase",
    "DBMBase",
    "DBMPath",
    "GaussianBase",
    "LogLikelihood",
    "MultinomialBase",
    "ParallelTempering",
    "RAISEResult",
    "Routes",
    "TemperedTransitions",
    "base_rate",
    "bernoulli_mixture_init",
    "bernoulli_mixture_log_likelihood",
    "compare_routes",
    "evaluate",
    "gaussian_base",
    "geometric_schedule",
    "linear_schedule",
    "log_multinomial_coefficient",
    "multinomial_base",
    "robbins_monro",
    "salakhutdinov_murray_schedule",
    "uniform_base",
]
