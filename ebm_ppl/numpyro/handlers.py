"""NumPyro effect handlers used inside the frontend."""

from __future__ import annotations

from collections.abc import Callable

import jax
from numpyro.primitives import Messenger

from ebm_ppl.inference.dependence import energy_of

__all__ = ["QuickEnergyDraws", "quick_energy_draws"]


class QuickEnergyDraws(Messenger):
    """NumPyro's :class:`ebm_ppl.pyro.handlers.QuickEnergyDraws`: latent energy sites without
    a value get an ``init_chain`` state (no Gibbs run) in traces that only read a model's
    structure. Apply it outside ``seed`` and ``condition``/``substitute`` (so that it sees
    their keys and values) and inside ``trace``; the key is the site's own ``rng_key``.
    """

    def process_message(self, msg: dict) -> None:
        if msg["type"] != "sample" or msg["value"] is not None or msg["is_observed"]:
            return
        energy = energy_of(msg)
        if energy is not None:
            key = msg["kwargs"].get("rng_key")
            key = jax.random.PRNGKey(0) if key is None else key
            shape = msg["fn"].shape(tuple(msg["kwargs"].get("sample_shape", ())))
            msg["value"] = energy.init_chain(key, tuple(shape))


def quick_energy_draws(model: Callable) -> Callable:
    """``model`` under :class:`QuickEnergyDraws`."""
    return QuickEnergyDraws(model)
