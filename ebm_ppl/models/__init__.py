"""Backend-neutral math of the energy models (written once against :mod:`ebm_ppl.ops`)."""
