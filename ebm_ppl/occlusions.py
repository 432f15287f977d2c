"""Deprecated: the synthetic structured occlusions moved to :mod:`ebm_ppl.datasets.occlusions`.

Importing ``ebm_ppl.occlusions`` emits a :class:`DeprecationWarning` and gives the module
``ebm_ppl.datasets.occlusions`` itself, so every old name still works.
"""

from ebm_ppl._deprecated import alias_moved_module
from ebm_ppl.datasets import occlusions as _moved

alias_moved_module(__name__, _moved)
