"""NumPyro effect handlers used inside the frontend."""

from __future__ import annotations

from collections.abc import Callable

import jax
from numpyro.primitives import Messenger

from ebm_ppl.inference.dependence import energy_of

__all__ = ["QuickEnergyDraws", "quick_energy_draws"]


class QuickEnergyDraws(Messenger):
    """Give every latent energy site without a value a random state (``init_chain``:
    independent units, no Gibbs run) instead of calling its ``sample()``, which runs
    ``num_gibbs_steps`` block-Gibbs sweeps (100 by default).

    For traces that only read a model's structure (sites, shapes, distributions, the
    dependence checks): any value in the support serves there, and the Gibbs runs would be
    thrown away. Apply it outside ``seed`` and ``condition``/``substitute`` (so that it sees
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
