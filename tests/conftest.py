"""Shared fixtures: a backend object so that shared-math tests run on torch and JAX alike."""

from __future__ import annotations

import os


def _share_cpus_between_xdist_workers() -> None:
    """Under pytest-xdist (``-n N``) give each worker its share of the CPUs. OpenMP / BLAS
    pools sized for the whole machine oversubscribe it when N workers run at once, and their
    spinning threads slow everything down (on 2 cores, a torch tempering test took 3 s with one
    thread and 49 s with the default pools next to one busy process; tutorial 07, 59 s vs
    275 s). Set before numpy / torch are imported; the notebook kernels inherit it. An explicit
    setting in the environment wins; without xdist nothing changes."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers < 1:
        return
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = str(max(1, (cpus or 1) // workers))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, threads)


_share_cpus_between_xdist_workers()


def _share_a_jax_compilation_cache() -> str | None:
    """One JAX compilation cache for the whole run, in a fresh temporary folder: xdist workers,
    notebook kernels and subprocesses inherit it from the controller's environment, and the
    many tests that build the same computation from new closures compile it once (the cache is
    keyed by the compiled program, not the Python function). Measured cold: 153 -> 110 s on a
    NumPyro-heavy subset, about 3% on the whole suite; nothing is kept between runs. An explicit
    ``JAX_COMPILATION_CACHE_DIR`` wins. Returns the folder this process created, if any."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    import tempfile

    path = tempfile.mkdtemp(prefix="ebm_ppl_test_jax_cache_")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = path
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    return path


_JAX_CACHE = _share_a_jax_compilation_cache()


def _compile_fast_run_slow() -> None:
    """Most of the suite's JAX time is XLA compiling small programs that then run for
    milliseconds, so the tests ask XLA for little optimization (``jax_disable_most_optimizations``,
    JAX's switch for when "the cost of optimization is greater than that of running a
    less-optimized program"): the same computations, compiled faster. Set in the environment, so
    xdist workers, notebook kernels and subprocesses inherit it; an explicit
    ``JAX_DISABLE_MOST_OPTIMIZATIONS`` wins (``=0`` restores the default)."""
    os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")


_compile_fast_run_slow()

import itertools  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402


class Backend:
    """Minimal per-backend helpers for tests (arrays, keys, the RBM class)."""

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "torch":
            import torch

            from ebm_ppl.pyro import RBM, GaussianRBM

            self.torch = torch
            self.RBM = RBM
            self.GaussianRBM = GaussianRBM
        else:
            import jax

            from ebm_ppl.numpyro import RBM, GaussianRBM

            self.jax = jax
            self.RBM = RBM
            self.GaussianRBM = GaussianRBM

    def __repr__(self) -> str:
        return self.name

    def array(self, x, dtype=np.float32):
        x = np.asarray(x, dtype=dtype)
        if self.name == "torch":
            return self.torch.as_tensor(x)
        import jax.numpy as jnp

        return jnp.asarray(x)

    def np(self, x) -> np.ndarray:
        from ebm_ppl.ops import to_numpy

        return to_numpy(x)

    def key(self, seed: int):
        if self.name == "torch":
            self.torch.manual_seed(seed)
            return None
        return self.jax.random.PRNGKey(seed)

    def out_of_support(self, match: str):
        """What ``log_prob`` of an out-of-support value does, per host contract: Pyro raises
        a ``ValueError``, NumPyro warns ("Out-of-support ...", a ``UserWarning``)."""
        if self.name == "torch":
            return pytest.raises(ValueError, match=match)
        return pytest.warns(UserWarning, match="Out-of-support.*" + match)


@pytest.fixture(params=["torch", "jax"])
def backend(request) -> Backend:
    return Backend(request.param)


def all_states(n: int) -> np.ndarray:
    """All 2**n binary vectors, lexicographic, float32 (n, ) rows."""
    return np.array(list(itertools.product([0, 1], repeat=n)), dtype=np.float32)


def random_params(rng: np.random.Generator, n_visible: int, n_hidden: int, scale: float = 1.0):
    w = (scale * rng.standard_normal((n_visible, n_hidden))).astype(np.float32)
    b = (0.5 * rng.standard_normal(n_visible)).astype(np.float32)
    c = (0.5 * rng.standard_normal(n_hidden)).astype(np.float32)
    return w, b, c


def exact_visible_probs(w, b, c) -> np.ndarray:
    """p(v) over all visible states by brute force over (v, h) in float64."""
    w, b, c = (np.asarray(a, np.float64) for a in (w, b, c))
    vs = all_states(w.shape[0]).astype(np.float64)
    hs = all_states(w.shape[1]).astype(np.float64)
    neg_e = vs @ w @ hs.T + (vs @ b)[:, None] + (hs @ c)[None, :]
    m = neg_e.max()
    joint = np.exp(neg_e - m)
    pv = joint.sum(1)
    return pv / pv.sum()


def chi2_pvalue(counts: np.ndarray, probs: np.ndarray) -> float:
    """Pearson chi-square goodness-of-fit p-value, pooling cells with expected count < 5."""
    from scipy import stats

    n = counts.sum()
    expected = probs * n
    order = np.argsort(expected)
    obs, exp = [], []
    acc_o = acc_e = 0.0
    for i in order:
        acc_o += counts[i]
        acc_e += expected[i]
        if acc_e >= 5:
            obs.append(acc_o)
            exp.append(acc_e)
            acc_o = acc_e = 0.0
    if acc_e > 0:
        obs[-1] += acc_o
        exp[-1] += acc_e
    obs, exp = np.array(obs), np.array(exp)
    stat = ((obs - exp) ** 2 / exp).sum()
    return float(stats.chi2.sf(stat, df=len(obs) - 1))


def state_index(v: np.ndarray) -> np.ndarray:
    """Row index of each binary vector in :func:`all_states` order."""
    n = v.shape[-1]
    return (v.astype(np.int64) * (1 << np.arange(n - 1, -1, -1))).sum(-1)


#: the folder with verified data copies (mnist/, binarized_mnist/, ...): the library's own
#: ``EBM_PPL_DATA`` when set (read once, before any test changes the environment), else the
#: team's ``../shared/data`` beside the repository; tests that need it skip without it
SHARED_DATA = Path(
    os.environ.get("EBM_PPL_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """:data:`SHARED_DATA`; the test skips when it holds no ``mnist/`` folder."""
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(
            f"verified data folder not found at {SHARED_DATA}: set EBM_PPL_DATA to a folder "
            "holding mnist/ (and the other data sets) to run this test"
        )
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _optimized_jax_for_long_loops(request):
    """Tests marked ``jax_optimized`` run long JAX loops (thousands of scan steps) rather than
    compiling many small programs: for them XLA's full optimization (fusion) is worth its compile
    time, so the suite-wide ``jax_disable_most_optimizations`` is lifted while they run (the switch
    is read when a program is compiled)."""
    if request.node.get_closest_marker("jax_optimized") is None:
        yield
        return
    import jax

    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture(autouse=True)
def _fresh_pyro_param_store():
    import pyro

    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


# ---- Gaussian-Bernoulli RBM oracles ----


def gparams(rng, d, f, scale=0.8):
    w = (scale * rng.standard_normal((d, f))).astype(np.float32)
    b = rng.standard_normal(d).astype(np.float32)
    c = (0.5 * rng.standard_normal(f)).astype(np.float32)
    s = rng.uniform(0.5, 1.5, d).astype(np.float32)
    return w, b, c, s


def hidden_states(f):
    """All 2**f hidden states, float64 rows."""
    return all_states(f).astype(np.float64)


def exact_mixture(w, b, c, s):
    """(p(h) over all h, E[v|h] per h) of the Gaussian RBM, float64."""
    w, b, c, s = (np.asarray(a, np.float64) for a in (w, b, c, s))
    hs = hidden_states(w.shape[1])
    t = hs @ w.T  # (S, D)
    log_ph = hs @ c + (b * t / s + t**2 / 2).sum(1)
    ph = np.exp(log_ph - log_ph.max())
    return ph / ph.sum(), b + s * t


def exact_log_z_gaussian(w, b, c, s):
    w, b, c, s = (np.asarray(a, np.float64) for a in (w, b, c, s))
    hs = hidden_states(w.shape[1])
    t = hs @ w.T
    terms = hs @ c + (b * t / s + t**2 / 2).sum(1) + np.log(np.sqrt(2 * np.pi) * s).sum()
    m = terms.max()
    return m + np.log(np.exp(terms - m).sum())


def pytest_unconfigure(config) -> None:
    if _JAX_CACHE:
        import shutil

        shutil.rmtree(_JAX_CACHE, ignore_errors=True)


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--smoke",
        action="store_true",
        help="run only the first test of each module that is not marked slow (the quick check "
        "CI runs on Python 3.12 and 3.13 beside the full suite on 3.11)",
    )


# the longest tests, started first so that no xdist worker is left alone with one at the end
_LONG_FIRST = ("tests/test_tutorials.py::test_notebook_runs",)


def pytest_collection_modifyitems(config, items) -> None:
    """``--smoke`` keeps the first test of each module that is not marked slow. Otherwise the
    tutorial executions (20-130 s each, the bulk of ``-m slow``) move to the front: collected
    last, they used to start last and leave one worker running alone at the end."""
    if not config.getoption("--smoke"):
        items.sort(key=lambda item: not item.nodeid.startswith(_LONG_FIRST))
        return
    seen: set = set()
    keep, drop = [], []
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        first = module not in seen and item.get_closest_marker("slow") is None
        (keep if first else drop).append(item)
        if first:
            seen.add(module)
    items[:] = keep
    config.hook.pytest_deselected(items=drop)
