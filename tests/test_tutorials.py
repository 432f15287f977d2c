"""Tutorial notebooks run top to bottom (at their small settings)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SHARED_DATA

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "tutorials").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
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
