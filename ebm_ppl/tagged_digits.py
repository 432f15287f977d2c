"""Deprecated: the constructed bimodal benchmark (MNIST digits with noisy word
tags) moved to :mod:`ebm_ppl.datasets.tagged_digits`.

Importing ``ebm_ppl.tagged_digits`` emits a :class:`DeprecationWarning` and gives the module
``ebm_ppl.datasets.tagged_digits`` itself, so every old name still works.
"""

from ebm_ppl._deprecated import alias_moved_module
from ebm_ppl.datasets import tagged_digits as _moved

alias_moved_module(__name__, _moved)
