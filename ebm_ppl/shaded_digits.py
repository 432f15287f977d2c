"""Deprecated: the synthetic benchmark of the deep Lambertian model (shaded
digits) moved to :mod:`ebm_ppl.datasets.shaded_digits`.

Importing ``ebm_ppl.shaded_digits`` emits a :class:`DeprecationWarning` and gives the module
``ebm_ppl.datasets.shaded_digits`` itself, so every old name still works.
"""

from ebm_ppl._deprecated import alias_moved_module
from ebm_ppl.datasets import shaded_digits as _moved

alias_moved_module(__name__, _moved)
