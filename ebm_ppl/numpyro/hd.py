"""The hierarchical-deep prior as a NumPyro program (:mod:`ebm_ppl.models.hd` holds the math)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS, init_to_uniform, init_to_value

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
    ones: jax.Array,
    counts: jax.Array,
    num_super: int = 10,
    alpha: float = 5.0,
    a: float = 2.0,
    gamma: float = 1.0,
    assignments: jax.Array | None = None,
) -> None:
    """The HD prior over the categories' top-level DBM features (see
    :mod:`ebm_ppl.models.hd`), an ordinary NumPyro program: sites ``v`` (stick-breaking
    fractions of ``num_super`` super-categories), ``m`` (global feature means), ``theta``
    (each super-category's feature distribution). Each category's feature probabilities are
    integrated out; its super-category ``s`` is summed out in a ``factor`` (exact
    enumeration), unless ``assignments`` ``(C,)`` fixes it (then ``s`` is an observed
    ``Categorical`` site). ``ones`` ``(C, F)`` / ``counts`` ``(C,)``: per-category feature
    counts (:func:`~ebm_ppl.models.hd.category_counts`)."""
    check_hd_args(num_super, alpha, a, gamma)
    ones, counts = jnp.asarray(ones), jnp.asarray(counts)
    c, f = ones.shape
    if num_super > 1:
        v = numpyro.sample("v", dist.Beta(1.0, gamma).expand([num_super - 1]).to_event(1))
        log_w = stick_breaking_log_weights(v)
    else:
        log_w = jnp.zeros(1)
    m = numpyro.sample("m", dist.Beta(1.0, 1.0).expand([f]).to_event(1))
    theta = numpyro.sample(
        "theta", dist.Beta(a * m, a * (1.0 - m)).expand([num_super, f]).to_event(2)
    )
    ll = category_log_likelihood(ones, counts, theta, alpha)
    if assignments is None:
        numpyro.factor("z", marginal_log_likelihood(log_w, ll))
        return
    s = jnp.asarray(assignments)
    with numpyro.plate("categories", c):
        numpyro.sample("s", dist.Categorical(logits=log_w), obs=s)
    numpyro.factor("z", jnp.take_along_axis(ll, s[:, None], axis=1).sum())


def fit_hd_prior(
    rng_key: jax.Array,
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
    """NUTS over the continuous sites of :func:`hd_prior` (assignments enumerated out);
    returns an :class:`~ebm_ppl.models.hd.HDPosterior` (exact assignment posteriors per
    sample, clustering, one-shot predictive)."""
    check_init(init)
    ones, counts = jnp.asarray(ones, jnp.float32), jnp.asarray(counts, jnp.float32)
    strategy = init_to_uniform
    if init == "kmeans":
        values = kmeans_init(ones, counts, num_super)
        if num_super == 1:
            values.pop("v")
        strategy = init_to_value(values={k: jnp.asarray(v) for k, v in values.items()})
    mcmc = MCMC(
        NUTS(hd_prior, max_tree_depth=max_tree_depth, init_strategy=strategy),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        progress_bar=progress_bar,
    )
    mcmc.run(rng_key, ones, counts, num_super, alpha, a, gamma)
    return HDPosterior(mcmc.get_samples(), ones, counts, alpha)
