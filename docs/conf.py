"""Sphinx configuration: the user guide (Markdown, MyST), the API reference (autodoc) and the
tutorials, rendered with their stored outputs (myst-nb; never executed here).

Build (warnings are errors): ``sphinx-build -W --keep-going -b html docs docs/_build/html``
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import ebm_ppl  # noqa: E402

project = "ebm_ppl"
author = "the ebm_ppl developers"
release = version = ebm_ppl.__version__

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # the notebooks carry their outputs (tutorials/execute.py)
nb_merge_streams = True
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # signatures stay short; the docstrings say the shapes and types
autodoc_default_options = {"members": True, "undoc-members": False}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
html_theme = "furo"
html_title = f"ebm_ppl {release}"
suppress_warnings = ["myst.header"]


def _copy_tutorials(app) -> None:
    """The notebooks live in ``tutorials/`` at the top of the repository (where users look for
    them); Sphinx reads them from ``docs/tutorials/`` (generated, ignored by git), and the
    benchmark figures they embed from ``docs/benchmarks/figures/`` (generated, ignored)."""
    dest = HERE / "tutorials"
    dest.mkdir(exist_ok=True)
    for nb in sorted((ROOT / "tutorials").glob("*.ipynb")):
        target = dest / nb.name
        if not target.exists() or target.read_bytes() != nb.read_bytes():
            shutil.copyfile(nb, target)
    for png in (ROOT / "tutorials").glob("*.png"):
        shutil.copyfile(png, dest / png.name)
    # the notebooks embed the benchmark figures as ``../benchmarks/figures/X.png``: the same
    # relative link resolves from docs/tutorials/ once they are copied here (generated, ignored)
    figures = HERE / "benchmarks" / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    for png in (ROOT / "benchmarks" / "figures").glob("*.png"):
        shutil.copyfile(png, figures / png.name)


FRONTENDS = {
    "pyro": "The Pyro (torch) frontend: distributions that subclass ``TorchDistribution``, kernels "
    "for ``pyro.infer.MCMC``, the SA-MLE trainer, AIS, deep models and handlers. Randomness "
    "comes from torch's global generator (``pyro.set_rng_seed``) unless a function takes "
    "``generator=``.",
    "numpyro": "The NumPyro (JAX) frontend: jit-safe pytree distributions, kernels for "
    "``numpyro.infer.MCMC`` (NamedTuple states carrying ``rng_key``), the SA-MLE trainer, AIS, "
    "deep models and handlers. Randomness is always an explicit key.",
}


def _write_api_pages(app) -> None:
    """One page per frontend, one entry per name of its ``__all__`` (so that the pages follow
    the public API as it changes), and one page for the objects both frontends export (the
    backend-neutral ones: schedules, result types, tempering operators, bases); generated into
    ``docs/api/`` (ignored by git)."""
    import importlib
    import inspect

    def kind(obj) -> str:
        return "class" if inspect.isclass(obj) else "function" if callable(obj) else "data"

    def write(page: Path, lines: list[str]) -> None:
        text = "\n".join(lines) + "\n"
        if not page.exists() or page.read_text() != text:
            page.write_text(text)

    out = HERE / "api"
    out.mkdir(exist_ok=True)
    modules = {name: importlib.import_module(f"ebm_ppl.{name}") for name in FRONTENDS}
    exports = {name: {a: getattr(m, a) for a in m.__all__} for name, m in modules.items()}
    shared = sorted(
        (a for a, obj in exports["pyro"].items() if exports["numpyro"].get(a) is obj),
        key=str.lower,
    )
    for name, blurb in FRONTENDS.items():
        lines = [f"# ``ebm_ppl.{name}``", "", "```{eval-rst}", f".. module:: ebm_ppl.{name}", ""]
        lines += [blurb, "", "Also exported, the same objects in both frontends: "]
        lines[-1] += ", ".join(f":py:obj:`{a} <ebm_ppl.pyro.{a}>`" for a in shared) + "."
        lines.append("")
        for attr in sorted(set(exports[name]) - set(shared), key=str.lower):
            lines += [f".. auto{kind(exports[name][attr])}:: ebm_ppl.{name}.{attr}", ""]
        lines.append("```")
        write(out / f"{name}.md", lines)
    lines = ["# Shared by both frontends", "", "```{eval-rst}"]
    lines += [
        "These objects are exported by ``ebm_ppl.pyro`` and ``ebm_ppl.numpyro`` alike (one "
        "implementation of the math; they work on torch tensors and JAX arrays). They are "
        "listed under their ``ebm_ppl.pyro`` names; ``ebm_ppl.numpyro.<name>`` is the same "
        "object.",
        "",
    ]
    for attr in shared:
        obj = exports["pyro"][attr]
        lines += [f".. auto{kind(obj)}:: ebm_ppl.pyro.{attr}", ""]
    lines.append("```")
    write(out / "shared.md", lines)


def setup(app) -> None:
    app.connect("builder-inited", _copy_tutorials)
    app.connect("builder-inited", _write_api_pages)
