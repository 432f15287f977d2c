"""Deep belief networks as ordinary NumPyro programs (:mod:`ebm_ppl.models.dbn` holds the math)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import numpyro
import numpyro.distributions as dist

from ebm_ppl.models.dbn import DBNParams, check_dbn, down_logits, up_logits
from ebm_ppl.numpyro.distributions import RBM

__all__ = ["dbn_guide", "dbn_model"]


def dbn_model(
    weights: Sequence[jax.Array],
    down_biases: Sequence[jax.Array],
    up_biases: Sequence[jax.Array],
    num_gibbs_steps: int = 100,
) -> Callable:
    """A NumPyro model of the DBN (eq. 20-22): ``model(data=None, num_data=None)``; the same
    sites as :func:`ebm_ppl.pyro.dbn_model` (``"h{L-1}"`` from the top RBM, then
    ``Bernoulli(logits=...)`` sites down to ``"v"``)."""
    sizes = check_dbn(weights, down_biases, up_biases)
    params = DBNParams(tuple(weights), tuple(down_biases), tuple(up_biases))
    top = len(weights) - 1

    def name(layer: int) -> str:
        return "v" if layer == 0 else f"h{layer}"

    def model(data=None, num_data: int | None = None):
        if data is None and num_data is None:
            raise ValueError("give the observed data, or num_data to draw that many samples")
        if data is not None and tuple(data.shape[-1:]) != (sizes[0],):
            raise ValueError(f"data must have shape (n, {sizes[0]}), got {tuple(data.shape)}")
        n = data.shape[0] if data is not None else num_data
        with numpyro.plate("data", n):
            rbm = RBM(
                params.weights[-1],
                params.down_biases[-1],
                params.up_biases[-1],
                num_gibbs_steps=num_gibbs_steps,
            )
            h = numpyro.sample(name(top), rbm, obs=data if top == 0 else None)
            for layer in range(top, 0, -1):
                logits = down_logits(params, layer, h)
                obs = data if layer == 1 else None
                h = numpyro.sample(
                    name(layer - 1), dist.Bernoulli(logits=logits).to_event(1), obs=obs
                )
        return h

    return model


def dbn_guide(
    weights: Sequence,
    down_biases: Sequence,
    up_biases: Sequence,
) -> Callable:
    """The bottom-up recognition distribution ``Q(h^1 | v) ... Q(h^(L-1) | h^(L-2))``
    (eq. 25-26) as a guide for :func:`dbn_model`: ``guide(data)`` samples the latent sites
    ``"h1"``, ..., ``"h{L-1}"`` from ``Bernoulli(logits=c + h W)``. With the PPL's ELBO,
    ``-loss / n - log Z_top`` is the bound of eq. 24 (the top RBM's log-density is
    unnormalized)."""
    check_dbn(weights, down_biases, up_biases)
    params = DBNParams(tuple(weights), tuple(down_biases), tuple(up_biases))

    def guide(data=None, num_data: int | None = None):
        if data is None:
            raise ValueError("the recognition guide needs the observed data")
        h = data
        with numpyro.plate("data", data.shape[0]):
            for layer in range(1, len(params.weights)):
                logits = up_logits(params, layer, h)
                h = numpyro.sample(f"h{layer}", dist.Bernoulli(logits=logits).to_event(1))
        return h

    return guide
