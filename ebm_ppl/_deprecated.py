"""Old module paths kept as deprecated aliases of the modules that moved."""

from __future__ import annotations

import os
import sys
import warnings
from types import ModuleType


def _outside_import_machinery(filename: str) -> bool:
    return not (
        filename.startswith("<frozen importlib") or f"{os.sep}importlib{os.sep}" in filename
    )


def alias_moved_module(old: str, new: ModuleType) -> None:
    """Make the module named ``old`` the module ``new`` and warn that ``old`` moved.

    Called from the old module's body while it is imported: emits a
    :class:`DeprecationWarning` naming both paths (attributed to the code that imports
    ``old``, past the import machinery's frames) and puts ``new`` in ``sys.modules`` under
    ``old``, so ``import old``, ``from old import name`` (public and private names alike) and
    a monkeypatch through ``old`` all reach the one module object ``new``.
    """
    stacklevel, frame = 3, sys._getframe(2)  # 1: this function, 2: the old module's body
    while frame is not None and not _outside_import_machinery(frame.f_code.co_filename):
        frame, stacklevel = frame.f_back, stacklevel + 1
    warnings.warn(
        f"{old} is deprecated and will be removed; import {new.__name__} instead",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
    sys.modules[old] = new
