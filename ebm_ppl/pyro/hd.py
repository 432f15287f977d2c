"""The hierarchical-deep prior as a Pyro program (:mod:`ebm_ppl.models.hd` holds the math)."""

from __future__ import annotations

from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import MCMC, NUTS
from pyro.infer.autoguide.initialization import init_to_uniform, init_to_value

from ebm_ppl.models.hd import (
    HDPosterior,
    category_log_likelihood,
    check_hd_args,
    check_init,
    kmeans_init,
    marginal_log_likelihood,
    stick_breaking_log_weights,
)

__all__ = ["fit_hd_prior", "hd_prior"]


def hd_prior(
    ones: torch.Tensor,
    counts: torch.Tensor,
    num_super: int = 10,
    alpha: float = 5.0,
    a: float = 2.0,
    gamma: float = 1.0,
    assignments: torch.Tensor | None = None,
) -> None:
    """The HD prior over the categories' top-level DBM features, an ordinary Pyro program;
    the same sites and arguments as :func:`ebm_ppl.numpyro.hd_prior` (``v``, ``m``,
    ``theta``; super-category assignments summed out in a ``factor``, or an observed
    ``Categorical`` site ``s`` when ``assignments`` is given)."""
    check_hd_args(num_super, alpha, a, gamma)
    ones = torch.as_tensor(ones)  # device: data (a tensor keeps its own)
    counts = torch.as_tensor(counts, device=ones.device)
    c, f = ones.shape
    one = ones.new_ones(())
    if num_super > 1:
        v = pyro.sample("v", dist.Beta(one, gamma * one).expand([num_super - 1]).to_event(1))
        log_w = stick_breaking_log_weights(v)
    else:
        log_w = ones.new_zeros(1)
    m = pyro.sample("m", dist.Beta(one, one).expand([f]).to_event(1))
    theta = pyro.sample("theta", dist.Beta(a * m, a * (1.0 - m)).expand([num_super, f]).to_event(2))
    ll = category_log_likelihood(ones, counts, theta, alpha)
    if assignments is None:
        pyro.factor("z", marginal_log_likelihood(log_w, ll))
        return
    s = torch.as_tensor(assignments, device=ones.device).long()
    with pyro.plate("categories", c):
        pyro.sample("s", dist.Categorical(logits=log_w), obs=s)
    pyro.factor("z", ll.gather(1, s[:, None]).sum())


def fit_hd_prior(
    ones: Any,
    counts: Any,
    num_super: int = 10,
    alpha: float = 5.0,
    a: float = 2.0,
    gamma: float = 1.0,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 1,
    max_tree_depth: int = 10,
    init: str = "kmeans",
    progress_bar: bool = False,
) -> HDPosterior:
    """NUTS (``pyro.infer.MCMC``) over the continuous sites of :func:`hd_prior` with the
    assignments enumerated out; returns an :class:`~ebm_ppl.models.hd.HDPosterior`. Seed
    with ``pyro.set_rng_seed``."""
    check_init(init)
    ones = torch.as_tensor(ones, dtype=torch.float32)  # device: data (a tensor keeps its own)
    counts = torch.as_tensor(counts, dtype=torch.float32, device=ones.device)
    strategy = init_to_uniform
    if init == "kmeans":
        values = kmeans_init(ones, counts, num_super)
        if num_super == 1:
            values.pop("v")
        strategy = init_to_value(
            values={k: torch.as_tensor(v, device=ones.device) for k, v in values.items()}
        )
    mcmc = MCMC(
        NUTS(hd_prior, max_tree_depth=max_tree_depth, init_strategy=strategy),
        num_samples=num_samples,
        warmup_steps=num_warmup,
        num_chains=num_chains,
        disable_progbar=not progress_bar,
    )
    mcmc.run(ones, counts, num_super, alpha, a, gamma)
    return HDPosterior(mcmc.get_samples(), ones, counts, alpha)
