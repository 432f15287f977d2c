"""Pyro effect handlers used inside the frontend."""

from __future__ import annotations

from collections.abc import Callable

from pyro.poutine.messenger import Messenger

from ebm_ppl.inference.dependence import energy_of

__all__ = ["QuickEnergyDraws", "quick_energy_draws"]


class QuickEnergyDraws(Messenger):
    """Give every latent energy site without a value a random state (``init_chain``:
    independent units, no Gibbs run) instead of calling its ``sample()``, which runs
    ``num_gibbs_steps`` block-Gibbs sweeps (100 by default).

    For traces that only read a model's structure (sites, shapes, distributions, the
    dependence checks): any value in the support serves there, and the Gibbs runs would be
    thrown away. Apply it to the model itself (``quick_energy_draws(model)``), inside
    ``poutine.block`` and ``poutine.condition``, so that conditioned sites keep their values.
    """

    def _pyro_sample(self, msg: dict) -> None:
        if msg["value"] is not None or msg["is_observed"]:
            return
        energy = energy_of(msg)
        if energy is not None:
            msg["value"] = energy.init_chain(None, tuple(msg["fn"].shape()))


def quick_energy_draws(model: Callable) -> Callable:
    """``model`` under :class:`QuickEnergyDraws`."""
    return QuickEnergyDraws()(model)
