"""README and user-guide examples run as written; the package stays ruff-clean."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCKS = {
    f"{page.relative_to(ROOT)}[{i}]": block
    for page in PAGES
    if "_build" not in page.parts
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))
}


def test_readme_has_examples():
    assert sum(name.startswith("README.md") for name in BLOCKS) >= 2


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_readme_example_runs(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[name], f"{name} (python block)", "exec"), {})


def test_readme_commands_match_ci():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_cmd = [line for line in readme.splitlines() if "pytest" in line and "pip install" in line]
    assert test_cmd, "README must show the set-up + test command"
    # CI runs the same install + test steps (it makes its own fresh venv first)
    tail = test_cmd[0].split("&& ", 2)[-1]
    assert tail in ci


@pytest.mark.skipif(
    shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists(),
    reason="ruff not installed",
)
def test_ruff_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    for args in (["check", "."], ["format", "--check", "."]):
        r = subprocess.run([ruff, *args], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
