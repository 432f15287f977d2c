"""The NumPyro sites whose ``log_prob`` runs a mean-field fixed point compile it as one program
(:func:`ebm_ppl.numpyro.distributions.compiled_log_prob`): same values and gradients as the
method run op by op, batch shapes and ``expand`` kept."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebm_ppl.numpyro as enp


def _sites(seed):
    r = np.random.default_rng(seed)

    def a(*shape, scale=1.0):
        return jnp.asarray(scale * r.normal(size=shape), jnp.float32)

    dbm = enp.DBM([a(6, 4), a(4, 3)], [a(6), a(4), a(3)]).visible()
    mm = enp.MultimodalDBM(
        image_weights=[a(4, 3)],
        image_biases=[a(4), a(3)],
        text_weights=[a(5, 2)],
        text_biases=[a(5), a(2)],
        joint_weights=[a(3, 2, scale=0.5), a(2, 2, scale=0.5)],
        joint_bias=a(2),
        sigma=1.0,
        total_count=3,
    ).visible()
    clean = enp.GaussianRBM(a(4, 2), a(4), a(2), 1.0)
    mask = enp.RBM(a(4, 2), a(4) + 1.0, a(2))
    robust = enp.RobustBM(clean, mask, noise_scale=0.3).visible()
    words = np.zeros((3, 5), np.float32)
    words[np.arange(3), r.integers(0, 5, 3)] += 2.0
    words[np.arange(3), r.integers(0, 5, 3)] += 1.0
    values = {
        "DBMVisible": jnp.asarray(r.random((3, 6)) < 0.5, jnp.float32),
        "MultimodalDBMVisible": jnp.concatenate([a(3, 4), jnp.asarray(words)], -1),
        "RobustBMVisible": a(3, 4),
    }
    return {"DBMVisible": dbm, "MultimodalDBMVisible": mm, "RobustBMVisible": robust}, values


NAMES = ["DBMVisible", "MultimodalDBMVisible", "RobustBMVisible"]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", NAMES)
def test_compiled_log_prob_equals_the_method_run_op_by_op(name, seed):
    sites, values = _sites(seed)
    d, v = sites[name], values[name]
    eager = type(d).log_prob_unchecked.__wrapped__
    np.testing.assert_allclose(d.log_prob(v), eager(d, v), rtol=1e-5, atol=1e-5)
    # gradients with respect to the parameters (the distribution is a pytree)
    # (allow_int: the multimodal site's document length is an integer leaf)
    g_compiled = jax.grad(lambda q: q.log_prob(v).sum(), allow_int=True)(d)
    g_eager = jax.grad(lambda q: eager(q, v).sum(), allow_int=True)(d)
    leaves = zip(jax.tree_util.tree_leaves(g_compiled), jax.tree_util.tree_leaves(g_eager))
    floats = [(x, y) for x, y in leaves if jnp.issubdtype(x.dtype, jnp.floating)]
    assert floats
    for x, y in floats:
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    # batch shapes: an expanded site and a value with more leading dimensions
    e = d.expand((2, 3))
    assert e.log_prob(jnp.broadcast_to(v, (2, 3, v.shape[-1]))).shape == (2, 3)
    np.testing.assert_allclose(
        e.log_prob(jnp.broadcast_to(v, (2, 3, v.shape[-1])))[1], d.log_prob(v), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_is_one_compiled_call(name):
    sites, values = _sites(0)
    d, v = sites[name], values[name]
    eqns = jax.make_jaxpr(d.log_prob)(v).jaxpr.eqns
    assert [e.primitive.name for e in eqns] in (["pjit"], ["jit"])
    # run op by op, the same bound is many operations (the fixed-point loop among them)
    eager = type(d).log_prob_unchecked.__wrapped__
    assert len(jax.make_jaxpr(lambda x: eager(d, x))(v).jaxpr.eqns) > 1
