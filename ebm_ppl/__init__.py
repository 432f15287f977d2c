"""ebm_ppl: undirected energy-based models as first-class citizens of Pyro and NumPyro.

Import the frontend for your PPL: ``ebm_ppl.pyro`` (torch) or ``ebm_ppl.numpyro`` (JAX).
"""

__version__ = "0.1.0"
