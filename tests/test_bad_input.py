"""Bad input meets a clear TypeError / ValueError naming the argument, alike in both backends
(issue 23's table; rows on checkpoints, run semantics, clamps and the CLI are tested next to
their features: tests/inference/test_samle.py, tests/inference/test_block_gibbs.py,
tests/test_cli.py, tests/test_io.py)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_params


def _other_float(backend):
    """A floating dtype other than float32 that the backend keeps (JAX without x64 mode
    turns float64 into float32, so float16 there)."""
    return np.float64 if backend.name == "torch" else np.float16


def _cases(backend):
    if backend.name == "torch":
        import ebm_ppl.pyro as fe
    else:
        import ebm_ppl.numpyro as fe
    w, b, c = random_params(np.random.default_rng(0), 5, 3)
    odd = _other_float(backend)
    sigma = np.ones(5)
    return {
        "RBM weights float64/float16, biases float32": (
            lambda: fe.RBM(backend.array(w, odd), backend.array(b), backend.array(c)),
            TypeError,
            r"share one dtype, got weights \w*float(64|16), visible_bias \w*float32",
        ),
        "GaussianRBM sigma of another dtype": (
            lambda: fe.GaussianRBM(
                backend.array(w), backend.array(b), backend.array(c), backend.array(sigma, odd)
            ),
            TypeError,
            "share one dtype",
        ),
        "DBM biases of another dtype": (
            lambda: fe.DBM(
                [backend.array(w), backend.array(w[:3, :2])],
                [backend.array(b), backend.array(c, odd), backend.array(np.zeros(2))],
            ),
            TypeError,
            r"share one dtype.*biases\[1\]",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "RBM weights float64/float16, biases float32",
        "GaussianRBM sigma of another dtype",
        "DBM biases of another dtype",
    ],
)
def test_mixed_parameter_dtypes_are_refused(backend, case):
    make, error, match = _cases(backend)[case]
    with pytest.raises(error, match=match):
        make()
