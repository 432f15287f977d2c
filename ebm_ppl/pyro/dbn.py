"""Deep belief networks as ordinary Pyro programs (:mod:`ebm_ppl.models.dbn` holds the math)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyro
import pyro.distributions as dist
import torch

from ebm_ppl.models.dbn import DBNParams, check_dbn, down_logits, up_logits
from ebm_ppl.pyro.distributions import RBM

__all__ = ["dbn_guide", "dbn_model"]


def dbn_model(
    weights: Sequence[torch.Tensor],
    down_biases: Sequence[torch.Tensor],
    up_biases: Sequence[torch.Tensor],
    num_gibbs_steps: int = 100,
) -> Callable:
    """A Pyro model of the DBN (eq. 20-22): ``model(data=None, num_data=None)``.

    Sites, top to bottom inside ``pyro.plate("data", n)``: ``"h{L-1}"`` from the top
    :class:`~ebm_ppl.pyro.RBM` (its hidden layer summed out; sampled by ``num_gibbs_steps``
    Gibbs sweeps when not observed), then ``Bernoulli(logits=h W^T + b)`` sites ``"h{l}"``
    down to the observed ``"v"``. ``Predictive(model, ...)(num_data=n)`` draws from the DBN
    (Figure 6a); ``trace``, ``condition`` and guides work as on any Pyro program.
    """
    sizes = check_dbn(weights, down_biases, up_biases)
    params = DBNParams(tuple(weights), tuple(down_biases), tuple(up_biases))
    top = len(weights) - 1

    def name(layer: int) -> str:
        return "v" if layer == 0 else f"h{layer}"

    def model(data: torch.Tensor | None = None, num_data: int | None = None):
        if data is None and num_data is None:
            raise ValueError("give the observed data, or num_data to draw that many samples")
        if data is not None and tuple(data.shape[-1:]) != (sizes[0],):
            raise ValueError(f"data must have shape (n, {sizes[0]}), got {tuple(data.shape)}")
        n = data.shape[0] if data is not None else num_data
        with pyro.plate("data", n):
            rbm = RBM(
                params.weights[-1],
                params.down_biases[-1],
                params.up_biases[-1],
                num_gibbs_steps=num_gibbs_steps,
            )
            h = pyro.sample(name(top), rbm, obs=data if top == 0 else None)
            for layer in range(top, 0, -1):
                logits = down_logits(params, layer, h)
                obs = data if layer == 1 else None
                h = pyro.sample(name(layer - 1), dist.Bernoulli(logits=logits).to_event(1), obs=obs)
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
        with pyro.plate("data", data.shape[0]):
            for layer in range(1, len(params.weights)):
                logits = up_logits(params, layer, h)
                h = pyro.sample(f"h{layer}", dist.Bernoulli(logits=logits).to_event(1))
        return h

    return guide
