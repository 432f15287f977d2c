"""Tutorial notebooks run top to bottom (at their small settings)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SHARED_DATA

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "tutorials").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
@pytest.mark.slow
def test_notebook_runs(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    needs = nb.metadata.get("ebm_ppl", {}).get("needs_data", [])
    if needs:
        # data sets come from the verified copies in ../shared/data (the kernel inherits the
        # environment); without them the notebook would download, which tests must not do
        root = SHARED_DATA
        missing = [d for d in needs if not (root / d).is_dir()]
        if missing:
            pytest.skip(f"{path.name} needs the data sets {missing}, absent from {root}")
        monkeypatch.setenv("EBM_PPL_DATA", str(root))
    monkeypatch.setenv("EBM_PPL_TUTORIAL_SIZE", "small")  # the kernel inherits it
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors


def _execute_module():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tutorials" / "execute.py"
    spec = importlib.util.spec_from_file_location("tutorials_execute", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_stored_outputs_are_fresh(path):
    """The committed notebook carries the outputs of a run of its current code: every code cell
    executed, no error, and the code hash recorded by ``tutorials/execute.py`` matches (a code
    change without re-execution fails here)."""
    import json

    nb = json.loads(path.read_text())
    fix = f"re-execute it: python tutorials/execute.py {path.name[:2]}"
    done = nb.get("metadata", {}).get("ebm_ppl", {}).get("executed")
    assert done, f"{path.name} has no stored run; {fix}"
    assert done["source_sha256"] == _execute_module().code_hash(nb), (
        f"{path.name}: its code changed since the stored run; {fix}"
    )
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in code), f"{path.name}: unexecuted cells; {fix}"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: a stored output is an error; {fix}"
    assert any(
        "image/png" in o.get("data", {}) for c in code for o in c.get("outputs", [])
    ) or not any("plot" in "".join(c["source"]) for c in code), f"{path.name}: no figure stored"
