"""Mixture of Bernoullis as a Pyro program (:mod:`ebm_ppl.models.mixture` holds the math).

The model is an ordinary Pyro program, :func:`bernoulli_mixture`: two ``pyro.param`` sites
and, per data point, a discrete assignment ``z`` marked for parallel enumeration. Pyro sums
``z`` out itself: ``TraceEnum_ELBO`` gives the exact marginal likelihood
(:func:`bernoulli_mixture_log_density`) and an enumerated trace gives the log joint of every
assignment (:func:`bernoulli_mixture_log_joint`), whose softmax is EM's E-step.
:func:`fit_bernoulli_mixture` runs EM with the closed-form M-step; its default E-step is the
same sum computed as one matrix product per minibatch (``estep="closed_form"``), which the
tests check against the program's (``estep="program"``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO

from ebm_ppl.models import mixture
from ebm_ppl.models.mixture import BernoulliMixtureFit, check_params
from ebm_ppl.pyro import ppl

__all__ = [
    "bernoulli_mixture",
    "bernoulli_mixture_log_density",
    "bernoulli_mixture_log_joint",
    "fit_bernoulli_mixture",
]


def _as_param(x: Any, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(x, dtype=like.dtype, device=like.device)


def bernoulli_mixture(data: torch.Tensor, num_components: int) -> None:
    """A mixture of ``num_components`` product-Bernoulli distributions over the rows of
    ``data`` ``(N, D)`` (0/1 floats), as a Pyro program:

    * ``pi = pyro.param("pi", ..., constraint=simplex)``, ``(K,)``, initially uniform;
    * ``mu = pyro.param("mu", ..., constraint=unit_interval)``, ``(K, D)``, initially
      uniform on ``(0.25, 0.75)`` (torch's global generator);
    * in ``pyro.plate("data", N)``: ``z ~ Categorical(pi)`` with
      ``infer={"enumerate": "parallel"}`` and ``x ~ Bernoulli(mu[z]).to_event(1)``,
      observed at ``data``.

    Run it under ``TraceEnum_ELBO(max_plate_nesting=1)`` (or ``poutine.enum``) to sum ``z``
    out; under ``poutine.substitute(..., data={"pi": pi, "mu": mu})`` to fix the parameters.
    """
    mixture.bernoulli_mixture_program(ppl, data, num_components)


def _fixed(pi: torch.Tensor, mu: torch.Tensor) -> Callable:
    return poutine.substitute(bernoulli_mixture, data={"pi": pi, "mu": mu})


def _checked(data: Any, pi: Any, mu: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = mixture.as_float_data(ppl, data)
    pi, mu = _as_param(pi, x), _as_param(mu, x)
    check_params(pi, mu, int(x.shape[1]))
    return x, pi, mu


def bernoulli_mixture_log_joint(data: Any, pi: Any, mu: Any) -> torch.Tensor:
    """``log p(x_n, z_n = k)`` ``(N, K)`` read off a trace of :func:`bernoulli_mixture` with
    its parameters fixed at ``(pi, mu)`` and ``z`` enumerated in parallel (``poutine.enum``):
    the sum of every sample site's log-probability. Its ``logsumexp`` over ``k`` is the exact
    log-likelihood of each row, its softmax the posterior of ``z`` (EM's responsibilities).
    Builds an ``(K, N, D)`` tensor: pass modest minibatches."""
    x, pi, mu = _checked(data, pi, mu)
    model = poutine.enum(_fixed(pi, mu), first_available_dim=-2)
    tr = poutine.trace(model).get_trace(x, int(pi.shape[0]))
    tr.compute_log_prob()
    total = sum(site["log_prob"] for site in tr.nodes.values() if site["type"] == "sample")
    return total.transpose(0, 1)


def bernoulli_mixture_log_density(data: Any, pi: Any, mu: Any) -> torch.Tensor:
    """Exact ``log p(data) = sum_n log p(x_n)`` (a scalar tensor) of :func:`bernoulli_mixture`
    at ``(pi, mu)``, as Pyro computes it: minus ``TraceEnum_ELBO``'s loss with an empty guide
    (``z`` enumerated out of the model; nothing else is latent, so the ELBO is exact).
    Differentiable in ``pi`` and ``mu`` when they require gradients."""
    x, pi, mu = _checked(data, pi, mu)
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    args = (_fixed(pi, mu), _empty_guide, x, int(pi.shape[0]))
    if pi.requires_grad or mu.requires_grad:
        return -elbo.differentiable_loss(*args)
    return -torch.as_tensor(elbo.loss(*args), dtype=x.dtype, device=x.device)


def _empty_guide(*args: Any, **kwargs: Any) -> None:
    pass


def fit_bernoulli_mixture(data: Any, num_components: int, **kwargs: Any) -> BernoulliMixtureFit:
    """Fit :func:`bernoulli_mixture` to ``data`` ``(N, D)`` (0/1; numpy or a tensor, whose
    device is kept) by EM (:func:`ebm_ppl.models.mixture.fit_mixture`, under
    ``torch.no_grad``): keyword arguments ``init=None``, ``seed=0``, ``num_iters=100``,
    ``tol=1e-5``, ``batch_size=1000``, ``smoothing=0.01``, ``estep="closed_form"`` (or
    ``"program"``: responsibilities from :func:`bernoulli_mixture_log_joint`, the enumerated
    program; ``O(K B D)`` memory) and ``callback=None``, as there. The default ``init`` is
    :func:`~ebm_ppl.models.mixture.bernoulli_mixture_init` with ``seed`` (numpy, so the
    NumPyro frontend starts from the same point). Returns a
    :class:`~ebm_ppl.models.mixture.BernoulliMixtureFit` with torch tensors.
    """
    with torch.no_grad():
        return mixture.fit_mixture(
            data,
            num_components,
            ppl=ppl,
            estep_program=mixture.program_estep(bernoulli_mixture_log_joint),
            **kwargs,
        )
