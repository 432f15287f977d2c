"""The synthetic generators' old top-level paths still work, and warn that they moved."""

from __future__ import annotations

import importlib
import sys

import pytest

MOVED = {
    "ebm_ppl.tagged_digits": "ebm_ppl.datasets.tagged_digits",
    "ebm_ppl.shaded_digits": "ebm_ppl.datasets.shaded_digits",
    "ebm_ppl.occlusions": "ebm_ppl.datasets.occlusions",
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_warns_and_is_the_new_module(old, monkeypatch):
    """Importing the old path emits a DeprecationWarning naming the new path, and gives the
    new module itself: every public and private name, and a monkeypatch through either."""
    new = importlib.import_module(MOVED[old])
    monkeypatch.delitem(sys.modules, old, raising=False)  # import it afresh, so it warns
    with pytest.warns(DeprecationWarning, match=MOVED[old].replace(".", r"\.")):
        module = importlib.import_module(old)
    assert module is new
    names = [n for n in vars(new) if not n.startswith("__")]
    assert names and all(getattr(module, n) is getattr(new, n) for n in names)
    with pytest.warns(DeprecationWarning):
        namespace: dict = {}
        sys.modules.pop(old)
        exec(f"from {old} import *", namespace)
    assert all(namespace[n] is getattr(new, n) for n in getattr(new, "__all__", []))


def test_old_names_still_import(monkeypatch):
    """The names the old modules offered, imported the old way (each import afresh)."""
    for old in MOVED:
        monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning):
        from ebm_ppl.tagged_digits import VOCABULARY, make_tags  # noqa: F401
    with pytest.warns(DeprecationWarning):
        from ebm_ppl.occlusions import KINDS, occlude  # noqa: F401
    with pytest.warns(DeprecationWarning):
        from ebm_ppl.shaded_digits import make_identities, normals  # noqa: F401
