"""The set-up checks of our NumPyro kernels ask for concrete evaluation only under a trace."""

import contextlib

import jax
import jax.numpy as jnp

from ebm_ppl.numpyro.dependence import concrete_eval


def test_concrete_eval_is_entered_only_under_a_trace():
    # outside a trace it is a no-op: under jax.ensure_compile_time_eval every operation on
    # constants inside a jit would run (and compile) one by one
    assert isinstance(concrete_eval(), contextlib.nullcontext)
    seen = []

    def f(x):
        seen.append(isinstance(concrete_eval(), contextlib.nullcontext))
        with concrete_eval():
            concrete = jnp.ones(3).sum()  # a constant: concrete inside the trace
        seen.append(isinstance(concrete, jax.core.Tracer))
        return x + concrete

    assert float(jax.jit(f)(1.0)) == 4.0
    assert float(jax.pmap(f)(jnp.ones(1))[0]) == 4.0
    assert seen == [False, False, False, False]
