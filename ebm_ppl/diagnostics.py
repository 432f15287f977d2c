"""MCMC diagnostics for energy-based models, on the ArviZ 1.0 API.

:func:`to_arviz` turns a finished ``pyro.infer.MCMC`` or ``numpyro.infer.MCMC`` run (or a dict
of ``(chains, draws, ...)`` arrays) into an ArviZ ``DataTree``. For the energy sites of the
model (an RBM's visible layer has hundreds of binary coordinates, whose one-by-one R-hat says
little) it adds per-draw scalar summaries to the ``posterior`` group:

* ``free_energy_<site>``: ``F(v)`` (eq. 5) summed over the site's batch elements;
* ``mean_activation_<site>``: the mean of the site's units;
* ``mean_activation_<site>_hidden``: the same for the hidden layer, when it was recorded
  (``report_hidden=True``).

:func:`summary`, :func:`rhat`, :func:`ess` and :func:`plot_trace` default to these scalars.
:func:`plot_samples` draws a grid of images (e.g. samples of a trained RBM).

Only the new ArviZ modules are used: ``arviz_base``, ``arviz_stats`` and ``arviz_plots``
(``arviz-*`` 0.8 on Python 3.11; ``arviz>=1.0`` ships the same modules).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

__all__ = ["to_arviz", "summary", "rhat", "ess", "plot_trace", "plot_samples", "energy_var_names"]

#: Prefixes of the scalar per-draw summaries that :func:`to_arviz` adds.
SUMMARY_PREFIXES = ("free_energy_", "mean_activation_")
HIDDEN_SUFFIX = "_hidden"
SUMMARY_COLUMNS = ["mean", "sd", "ess_bulk", "ess_tail", "r_hat"]

# bound on (draws in a chunk) x (site size) x (hidden units) when evaluating free energies
_CHUNK_ELEMENTS = 1 << 22


# --------------------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------------------


def to_arviz(
    source: Any,
    *,
    energy_sites: Mapping[str, Any] | None = None,
    thin: int = 1,
) -> xr.DataTree:
    """Convert MCMC draws into an ArviZ ``DataTree`` with energy summaries.

    :param source: one of

        * a ``pyro.infer.MCMC`` that has run (its kernel is ``mcmc.kernel``);
        * a ``numpyro.infer.MCMC`` that has run (its kernel is ``mcmc.sampler``); the extra
          field ``free_energy`` (``run(..., extra_fields=("free_energy",))`` with our
          ``BlockGibbs``) goes to the ``sample_stats`` group;
        * a dict ``{name: array}`` of torch / JAX / numpy arrays of shape
          ``(chains, draws, ...)``.
    :param energy_sites: ``{site: distribution}`` of our energy distributions (e.g.
        ``ebm_ppl.pyro.RBM``) whose samples get energy summaries. Defaults to the kernel's
        ``energy_sites`` when the kernel is our ``BlockGibbs``; needed for dict sources and
        other kernels (e.g. ``numpyro.infer.HMCGibbs``). Every name given must be in the
        samples.
    :param thin: keep every ``thin``-th draw (thin long Pyro chains before summarising).
    :returns: a ``DataTree`` with a ``posterior`` group holding every sampled variable as a
        numpy-backed variable of dims ``(chain, draw, <name>_dim_0, ...)``, plus for each
        energy site ``s`` present in the samples the ``(chain, draw)`` variables
        ``free_energy_<s>``, ``mean_activation_<s>`` and, if ``<s>_hidden`` was sampled,
        ``mean_activation_<s>_hidden``; and a ``sample_stats`` group with ``free_energy`` and
        ``accept_prob`` ``(chain, draw)`` when the NumPyro run recorded them (``extra_fields``).
    :raises TypeError: for an unsupported ``source``, non-array values or bad
        ``energy_sites`` entries.
    :raises ValueError: for an MCMC object that has not run, arrays that do not share
        ``(chains, draws)``, a bad ``thin`` or energy sites whose samples do not match.
    """
    # lazy: optional heavy dependency (arviz_base), loaded only when needed
    from arviz_base import from_dict

    if isinstance(thin, bool) or not isinstance(thin, int | np.integer) or thin < 1:
        raise ValueError(f"thin must be a positive int, got {thin!r}")
    thin = int(thin)
    samples, kernel_sites, stats = _read_source(source)
    samples = {name: value[:, ::thin] for name, value in samples.items()}
    stats = {name: value[:, ::thin] for name, value in stats.items()}

    if energy_sites is not None:
        sites = _check_energy_sites(energy_sites, samples)
    else:
        sites = {n: d for n, d in (kernel_sites or {}).items() if n in samples}

    posterior: dict[str, np.ndarray] = dict(samples)
    for name, dist in sites.items():
        values = samples[name]
        new = {
            f"free_energy_{name}": _site_free_energy(dist, values, name),
            f"mean_activation_{name}": _mean_activation(values),
        }
        hidden = name + HIDDEN_SUFFIX
        if hidden in samples:
            new[f"mean_activation_{hidden}"] = _mean_activation(samples[hidden])
        clash = sorted(set(new) & set(posterior))
        if clash:
            raise ValueError(
                f"source already has variables named {clash}, which to_arviz would add as "
                f"energy summaries of site {name!r}; rename them"
            )
        posterior.update(new)

    data = {"posterior": posterior}
    if stats:
        data["sample_stats"] = stats
    return from_dict(data)


def energy_var_names(data: xr.DataTree) -> list[str]:
    """The scalar energy summaries (``free_energy_*``, ``mean_activation_*``) in ``data``.

    :returns: the names of the posterior variables with those prefixes and dims exactly
        ``(chain, draw)``, in the order they are stored; an empty list if there are none.
    """
    post = _posterior(data)
    return [
        str(name)
        for name, var in post.data_vars.items()
        if str(name).startswith(SUMMARY_PREFIXES) and tuple(var.dims) == ("chain", "draw")
    ]


def _read_source(source: Any) -> tuple[dict[str, np.ndarray], dict | None, dict]:
    """``(samples, kernel energy sites or None, sample stats)`` of a source, as numpy."""
    if _isinstance(source, "pyro.infer.mcmc.api", "MCMC"):
        raw = source.get_samples(group_by_chain=True)
        if not raw:
            raise ValueError("source: the pyro.infer.MCMC has not run yet; call mcmc.run() first")
        samples = _check_samples(raw, "source")
        return samples, _pyro_energy_sites(source, raw), {}
    if _isinstance(source, "numpyro.infer.mcmc", "MCMC"):
        try:
            raw = source.get_samples(group_by_chain=True)
            extra = source.get_extra_fields(group_by_chain=True)
        except AssertionError:
            raise ValueError(
                "source: the numpyro.infer.MCMC has not run yet; call mcmc.run() first"
            ) from None
        if not isinstance(raw, Mapping):
            raise TypeError(
                "source: the numpyro.infer.MCMC samples must be a dict of sites, got "
                f"{type(raw).__name__} (a potential_fn run has no site names)"
            )
        samples = _check_samples(raw, "source")
        stats = {}
        recorded = {k: extra[k] for k in ("free_energy", "accept_prob") if k in extra}
        if recorded:  # BlockGibbs' energy trace; Exchange's (or NUTS') acceptance
            stats = _check_samples(recorded, "source")
            _check_same_shape(samples, stats, "source")
        sites = getattr(source.sampler, "energy_sites", None)
        return samples, (dict(sites) if sites else None), stats
    if isinstance(source, Mapping):
        return _check_samples(source, "source"), None, {}
    raise TypeError(
        "source must be a pyro.infer.MCMC, a numpyro.infer.MCMC or a dict of arrays of shape "
        f"(chains, draws, ...), got {type(source).__name__}"
    )


def _isinstance(obj: Any, module: str, name: str) -> bool:
    """``isinstance(obj, module.name)`` without importing ``module`` (nor its PPL)."""
    mod = sys.modules.get(module)
    cls = getattr(mod, name, None) if mod is not None else None
    return cls is not None and isinstance(obj, cls)


def _pyro_energy_sites(mcmc: Any, raw: Mapping[str, Any]) -> dict | None:
    kernel = mcmc.kernel
    if not hasattr(kernel, "energy_sites"):
        return None
    sites = dict(kernel.energy_sites)
    if sites or not callable(getattr(kernel, "model", None)):
        return sites or None
    # Chains drawn in parallel ran in worker processes, so this copy of the kernel was never
    # set up: trace the model at the first draw to recover the energy distributions.
    # lazy: keeps this module free of pyro, torch until that backend is used
    import pyro.poutine as poutine
    import torch

    first = {name: value[0, 0] for name, value in raw.items()}
    args = getattr(mcmc, "_args", None) or ()
    kwargs = getattr(mcmc, "_kwargs", None) or {}
    with torch.no_grad():
        tr = poutine.trace(poutine.condition(kernel.model, data=first)).get_trace(*args, **kwargs)
    return {
        name: site["fn"]
        for name, site in tr.nodes.items()
        if site["type"] == "sample"
        and name in raw
        and callable(getattr(site.get("fn"), "free_energy", None))
    } or None


def _to_numpy(x: Any, what: str) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except Exception as err:  # any failure means "not an array"
        raise TypeError(f"{what} must be an array, got {type(x).__name__}") from err
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise TypeError(f"{what} must be a numeric array, got dtype {arr.dtype}")
    return arr


def _check_samples(raw: Mapping[str, Any], arg: str) -> dict[str, np.ndarray]:
    if not isinstance(raw, Mapping):
        raise TypeError(f"{arg} must be a dict of arrays, got {type(raw).__name__}")
    if not raw:
        raise ValueError(f"{arg} has no variables")
    out: dict[str, np.ndarray] = {}
    lead = None
    for name, value in raw.items():
        if not isinstance(name, str):
            raise TypeError(f"{arg} keys must be variable names (str), got {name!r}")
        arr = _to_numpy(value, f"{arg}[{name!r}]")
        if arr.ndim < 2 or 0 in arr.shape[:2]:
            raise ValueError(
                f"{arg}[{name!r}] must have shape (chains, draws, ...) with at least one chain "
                f"and one draw, got {arr.shape}"
            )
        if lead is None:
            lead = (arr.shape[:2], name)
        elif arr.shape[:2] != lead[0]:
            raise ValueError(
                f"the arrays of {arg} must share (chains, draws): {lead[1]!r} has {lead[0]}, "
                f"{name!r} has {arr.shape[:2]}"
            )
        out[name] = arr
    return out


def _check_same_shape(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], arg: str):
    shape_a = next(iter(a.values())).shape[:2]
    for name, value in b.items():
        if value.shape[:2] != shape_a:
            raise ValueError(
                f"{arg}: {name!r} has (chains, draws) {value.shape[:2]}, the samples {shape_a}"
            )


def _check_energy_sites(energy_sites: Any, samples: Mapping[str, np.ndarray]) -> dict:
    if not isinstance(energy_sites, Mapping):
        raise TypeError(
            f"energy_sites must be a dict site name -> distribution, got "
            f"{type(energy_sites).__name__}"
        )
    for name, dist in energy_sites.items():
        if not callable(getattr(dist, "free_energy", None)) or not hasattr(dist, "event_shape"):
            raise TypeError(
                f"energy_sites[{name!r}] must be an energy distribution of ebm_ppl (with "
                f"free_energy() and event_shape), got {type(dist).__name__}"
            )
        if name not in samples:
            raise ValueError(
                f"energy_sites names {name!r}, which is not in the samples "
                f"(variables: {sorted(samples)})"
            )
    return dict(energy_sites)


def _mean_activation(values: np.ndarray) -> np.ndarray:
    """Mean over all coordinates of each draw: ``(chains, draws, ...) -> (chains, draws)``."""
    return values.reshape(values.shape[:2] + (-1,)).mean(-1, dtype=np.float64)


def _site_free_energy(dist: Any, values: np.ndarray, name: str) -> np.ndarray:
    """``dist.free_energy`` of every draw, summed over the batch: ``(chains, draws)``."""
    chains, draws = values.shape[:2]
    site_shape = tuple(values.shape[2:])
    event = tuple(int(d) for d in dist.event_shape)
    if len(site_shape) < len(event) or site_shape[len(site_shape) - len(event) :] != event:
        raise ValueError(
            f"the samples of energy site {name!r} have shape {site_shape} per draw, which does "
            f"not end with the distribution's event shape {event}"
        )
    n = chains * draws
    flat = values.reshape((n,) + site_shape)
    per_draw = max(1, math.prod(site_shape)) * max(1, int(getattr(dist, "n_hidden", 1)))
    chunk = max(1, _CHUNK_ELEMENTS // per_draw)
    evaluate = _free_energy_fn(dist, name)
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, chunk):
        block = flat[start : start + chunk]
        fe = evaluate(block)
        if fe.ndim < 1 or fe.shape[0] != block.shape[0]:
            raise ValueError(
                f"free energy of site {name!r} has shape {fe.shape} for draws of shape "
                f"{block.shape}; the distribution's batch shape does not match the samples"
            )
        out[start : start + len(block)] = fe.reshape(len(block), -1).sum(-1, dtype=np.float64)
    return out.reshape(chains, draws)


def _free_energy_fn(dist: Any, name: str):
    """``block (numpy) -> free energies (numpy)`` in the distribution's own backend."""
    like = getattr(dist, "weights", None)
    if isinstance(like, (list, tuple)):  # a DBM: one weight matrix per layer
        like = like[0] if like else None
    if like is None and getattr(dist, "params", None):
        like = dist.params[0]
    if _isinstance(like, "torch", "Tensor"):
        # lazy: keeps this module free of torch until that backend is used
        import torch

        def evaluate(block: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                x = torch.as_tensor(block, dtype=like.dtype, device=like.device)
                return dist.free_energy(x).detach().cpu().numpy()

        return evaluate
    if _isinstance(like, "jax", "Array"):
        # lazy: keeps this module free of jax until that backend is used
        import jax.numpy as jnp

        def evaluate(block: np.ndarray) -> np.ndarray:
            return np.asarray(dist.free_energy(jnp.asarray(block, dtype=like.dtype)))

        return evaluate
    raise TypeError(
        f"energy_sites[{name!r}]: cannot tell the backend of {type(dist).__name__}; its "
        "`weights` must be a torch.Tensor or a JAX array"
    )


# --------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------


def _as_datatree(data: Any) -> xr.DataTree:
    # lazy: optional heavy dependency (xarray), loaded only when needed
    import xarray as xr

    if isinstance(data, xr.DataTree):
        return data
    return to_arviz(data)


def _posterior(data: xr.DataTree) -> xr.Dataset:
    if "posterior" not in data.children:
        raise ValueError("data has no posterior group")
    return data["posterior"].to_dataset()


def _var_names(data: xr.DataTree, var_names: str | Sequence[str] | None) -> list[str]:
    post = _posterior(data)
    if var_names is None:
        return energy_var_names(data) or [str(n) for n in post.data_vars]
    names = [var_names] if isinstance(var_names, str) else list(var_names)
    missing = [n for n in names if n not in post.data_vars]
    if missing:
        raise ValueError(
            f"var_names {missing} are not in the posterior (variables: "
            f"{[str(n) for n in post.data_vars]})"
        )
    return names


def summary(data: Any, var_names: str | Sequence[str] | None = None) -> pd.DataFrame:
    """Posterior mean, sd and convergence diagnostics of some variables.

    :param data: a ``DataTree`` from :func:`to_arviz`, or anything :func:`to_arviz` accepts.
    :param var_names: variables to summarise; default: the scalar energy summaries when
        present (see :func:`energy_var_names`), otherwise every posterior variable.
    :returns: a ``pandas.DataFrame`` with one row per scalar coordinate (``"v[0, 3]"`` for
        array variables) and columns ``mean``, ``sd``, ``ess_bulk``, ``ess_tail``, ``r_hat``
        (unrounded; ``r_hat`` is NaN for a single chain).
    """
    # lazy: optional heavy dependency (arviz_stats), loaded only when needed
    import arviz_stats

    data = _as_datatree(data)
    names = _var_names(data, var_names)
    table = arviz_stats.summary(data, var_names=names, kind="all", round_to=None)
    return table[SUMMARY_COLUMNS]


def _diagnostic(fn_name: str, data: Any, var_names, **kwargs) -> dict[str, np.ndarray]:
    # lazy: optional heavy dependency (arviz_stats), loaded only when needed
    import arviz_stats

    data = _as_datatree(data)
    names = _var_names(data, var_names)
    result = getattr(arviz_stats, fn_name)(_posterior(data)[names], **kwargs)
    return {str(n): np.asarray(result[n].values) for n in names}


def rhat(data: Any, var_names: str | Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Rank-normalized split R-hat (``arviz_stats.rhat``) of some variables.

    :param data: a ``DataTree`` from :func:`to_arviz`, or anything :func:`to_arviz` accepts.
    :param var_names: as in :func:`summary`.
    :returns: ``{name: array}``, each of the variable's shape without ``(chain, draw)``
        (0-d for the scalar energy summaries).
    """
    return _diagnostic("rhat", data, var_names)


def ess(
    data: Any, var_names: str | Sequence[str] | None = None, method: str = "bulk"
) -> dict[str, np.ndarray]:
    """Effective sample size (``arviz_stats.ess``, ``method="bulk"`` or ``"tail"``, ...).

    :returns: ``{name: array}`` as in :func:`rhat`.
    """
    return _diagnostic("ess", data, var_names, method=method)


# --------------------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------------------


def _prefer_agg() -> None:
    """Select matplotlib's non-interactive Agg backend unless a backend was already chosen.

    A backend the user chose (``MPLBACKEND``, ``matplotlib.use``, a notebook's inline
    backend) is left alone: figures made here are saved and closed, never shown.
    """
    # lazy: optional heavy dependency (matplotlib), loaded only when needed
    import matplotlib

    get = getattr(matplotlib.rcParams, "_get_backend_or_none", None)
    if get is not None and get() is None:
        matplotlib.use("Agg")


def _png_path(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def plot_trace(
    data: Any,
    path: str | Path,
    var_names: str | Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Trace plot (marginal densities and draws per chain) saved as a PNG file.

    Uses ``arviz_plots.plot_trace_dist`` with the matplotlib backend; multidimensional
    variables are overlaid in one panel each. Chains are told apart by colour, with a
    legend when there are several.

    :param data: a ``DataTree`` from :func:`to_arviz`, or anything :func:`to_arviz` accepts.
    :param path: the PNG file to write (parent folders are created).
    :param var_names: as in :func:`summary` (default: the scalar energy summaries).
    :param title: a title over the figure (e.g. what the variables are and their units).
    :returns: ``path`` as a ``Path``.
    """
    data = _as_datatree(data)
    names = _var_names(data, var_names)
    path = _png_path(path)
    _prefer_agg()
    # lazy: optional heavy dependency (arviz_plots, matplotlib), loaded only when needed
    import arviz_plots
    import matplotlib.pyplot as plt

    with plt.ioff():
        pc = arviz_plots.plot_trace_dist(data, var_names=names, backend="matplotlib")
        if data.posterior.sizes.get("chain", 1) > 1:
            pc.add_legend("chain")
        figure = pc.viz["figure"].item()
        if title:  # above the panels and the chain legend
            figure.suptitle(title, fontsize=9, y=1.0 + 0.04 * (title.count("\n") + 1))
        try:
            figure.savefig(path, format="png", dpi=100, bbox_inches="tight")
        finally:
            plt.close(figure)
    return path


def plot_samples(
    images: Any,
    path: str | Path,
    shape: tuple[int, int] = (8, 8),
    ncols: int = 10,
    title: str | None = None,
) -> Path:
    """Save a grid of binary or grayscale images as a PNG file.

    :param images: torch / JAX / numpy array of shape ``(n, prod(shape))`` or ``(n, *shape)``,
        e.g. visible samples of an RBM trained on images. Values in ``[0, 1]`` are drawn
        black (0) to white (1); other ranges are scaled to their min and max.
    :param path: the PNG file to write (parent folders are created).
    :param shape: ``(height, width)`` of one image.
    :param ncols: images per row (fewer when ``n < ncols``).
    :param title: a line of text above the grid.
    :returns: ``path`` as a ``Path``.
    """
    # lazy: optional heavy dependency (matplotlib), loaded only when needed
    from matplotlib.figure import Figure

    if (
        not isinstance(shape, Sequence)
        or len(shape) != 2
        or not all(isinstance(s, int | np.integer) and s > 0 for s in shape)
    ):
        raise ValueError(f"shape must be (height, width) of positive ints, got {shape!r}")
    if isinstance(ncols, bool) or not isinstance(ncols, int | np.integer) or ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    height, width = int(shape[0]), int(shape[1])
    arr = _to_numpy(images, "images").astype(np.float64)
    if arr.ndim < 2 or arr.shape[0] == 0 or math.prod(arr.shape[1:]) != height * width:
        raise ValueError(
            f"images must have shape (n, {height * width}) or (n, {height}, {width}) with "
            f"n >= 1, got {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError("images contains NaN or infinite values")
    n = arr.shape[0]
    arr = arr.reshape(n, height, width)
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)

    ncols = min(int(ncols), n)
    nrows = -(-n // ncols)
    pad = 1
    grid = np.full(
        (nrows * (height + pad) + pad, ncols * (width + pad) + pad), 0.5, dtype=np.float64
    )
    for i in range(n):
        r, c = divmod(i, ncols)
        top, left = pad + r * (height + pad), pad + c * (width + pad)
        grid[top : top + height, left : left + width] = arr[i]

    path = _png_path(path)
    scale = max(4, 24 // max(height, width))  # screen pixels per image pixel
    dpi = 100
    w_in, h_in = grid.shape[1] * scale / dpi, grid.shape[0] * scale / dpi
    head = 0.35 if title else 0.0  # inches of room for the title
    figure = Figure(figsize=(max(w_in, 3.0 if title else 0.0), h_in + head), dpi=dpi)
    ax = figure.add_axes((0, 0, 1, h_in / (h_in + head)))
    ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    if title:
        figure.text(0.5, 1 - 0.05 / (h_in + head), title, ha="center", va="top", fontsize=9)
    figure.savefig(path, format="png", dpi=dpi)
    return path
