"""The NumPyro RBM behaves as a native NumPyro distribution (pytree, plates, handlers)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro import handlers
from numpyro.infer import Predictive

from ebm_ppl.numpyro import RBM


def params(nv=6, nh=3, seed=0):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    return (
        jax.random.normal(k1, (nv, nh)),
        0.3 * jax.random.normal(k2, (nv,)),
        0.3 * jax.random.normal(k3, (nh,)),
    )


def model(data=None, n=5):
    W = numpyro.param("W", params()[0])
    b = numpyro.param("b", jnp.zeros(6))
    c = numpyro.param("c", jnp.zeros(3))
    with numpyro.plate("data", n if data is None else data.shape[0]):
        return numpyro.sample("v", RBM(W, b, c, num_gibbs_steps=20), obs=data)


def test_jit_pytree_round_trip():
    d = RBM(*params(), num_gibbs_steps=7)
    leaves, treedef = jax.tree_util.tree_flatten(d)
    assert len(leaves) == 3
    d2 = jax.tree_util.tree_unflatten(treedef, leaves)
    assert d2.num_gibbs_steps == 7 and d2.batch_shape == d.batch_shape
    v = jnp.asarray((np.arange(12).reshape(2, 6) % 2).astype(np.float32))
    out = jax.jit(lambda dist, x: dist.log_prob(x))(d, v)
    np.testing.assert_allclose(out, d.log_prob(v), rtol=1e-6)
    same = jax.jit(lambda dist: dist)(d)
    assert isinstance(same, RBM)
    np.testing.assert_allclose(same.weights, d.weights)
    assert float(jax.jit(lambda dist: dist.log_partition())(d)) == pytest.approx(
        float(d.log_partition()), rel=1e-6
    )


def test_native_expand_under_plate():
    data = jnp.ones((5, 6))
    tr = handlers.trace(handlers.seed(model, 0)).get_trace(data)
    fn = tr["v"]["fn"]
    assert type(fn) is RBM and fn.batch_shape == (5,)
    assert fn.weights.shape == (6, 3)
    assert fn.log_prob(data).shape == (5,)
    e = RBM(*params()).expand((2, 5))
    assert e.batch_shape == (2, 5) and e.log_prob(data).shape == (2, 5)


def test_condition_seed_predictive():
    x1 = handlers.seed(model, 0)()
    x2 = handlers.seed(model, 0)()
    assert jnp.array_equal(x1, x2) and x1.shape == (5, 6)
    data = jnp.ones((5, 6))
    tr = handlers.trace(handlers.seed(handlers.condition(model, data={"v": data}), 0)).get_trace()
    assert tr["v"]["is_observed"]
    pred = Predictive(model, num_samples=4)(jax.random.PRNGKey(1))
    assert pred["v"].shape == (4, 5, 6)
    x = RBM(*params(), num_gibbs_steps=3).expand((2,)).sample(jax.random.PRNGKey(2), (7,))
    assert x.shape == (7, 2, 6)


def test_sample_needs_key():
    with pytest.raises(ValueError, match="key"):
        RBM(*params()).sample(None)


@pytest.mark.parametrize("name", ["RBM", "GaussianRBM", "CategoricalRBM", "ReplicatedSoftmax"])
def test_vmapped_instances_promote_their_batch_shape(name):
    """arg_constraints give each parameter its event dimensions (weights are matrices), so
    NumPyro's promote_batch_shape reads the batch shape of a vmapped instance."""
    from numpyro.distributions.batch_util import promote_batch_shape

    import ebm_ppl.numpyro as fe

    rng = np.random.default_rng(0)
    d, k, f = 5, 3, 2
    w = jnp.asarray(rng.normal(size=(4, d, k, f) if name == "CategoricalRBM" else (4, d, f)))

    def make(w):
        if name == "RBM":
            return fe.RBM(w, jnp.zeros(d), jnp.zeros(f))
        if name == "GaussianRBM":
            return fe.GaussianRBM(w, jnp.zeros(d), jnp.zeros(f), jnp.ones(d))
        if name == "CategoricalRBM":
            return fe.CategoricalRBM(w, jnp.zeros((d, k)), jnp.zeros(f))
        return fe.ReplicatedSoftmax(w, jnp.zeros(d), jnp.zeros(f), total_count=jnp.asarray(6.0))

    batched = promote_batch_shape(jax.vmap(make)(w.astype(jnp.float32)))
    assert batched.batch_shape == (4,)


def test_out_of_support_values_warn_and_padding_masks_out():
    """NumPyro's contract for out-of-support values: log_prob warns ("Out-of-support", a
    UserWarning), it does not raise; under handlers.mask, padded rows are replaced by a
    feasible value and drop out of the log density."""
    from numpyro.infer.util import log_density

    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.normal(size=(4, 2)), jnp.float32)
    d = RBM(w, jnp.zeros(4), jnp.zeros(2))
    real = jnp.asarray([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]])
    padded = jnp.concatenate([real, jnp.full((1, 4), -1.0)])  # a padding row, not binary
    keep = jnp.asarray([True, True, False])

    def model(x):
        with numpyro.plate("rows", 3), handlers.mask(mask=keep):
            numpyro.sample("v", d, obs=x)

    lp, _ = log_density(model, (padded,), {}, {})
    np.testing.assert_allclose(float(lp), float(d.log_prob(real).sum()), rtol=1e-6)
    with pytest.warns(UserWarning, match="Out-of-support"):
        direct = d.log_prob(padded)
    assert direct.shape == (3,)


def test_repeated_draws_reuse_one_compiled_chain():
    """``sample`` compiles the whole chain once per structure and shape: a second draw, from new
    parameters of the same shapes, compiles nothing (it used to compile every ``lax.scan`` of
    the chain again at each call). The word sampler gets its static bound from a concrete
    ``total_count`` and the draws keep every document's length."""
    from ebm_ppl.numpyro import ReplicatedSoftmax
    from ebm_ppl.numpyro.distributions import _compiled_sample

    r = np.random.default_rng(0)

    def rsm():
        w, b, c = r.normal(size=(5, 3)), r.normal(size=5), r.normal(size=3)
        return ReplicatedSoftmax(*map(jnp.asarray, (w, b, c)), total_count=6.0, num_gibbs_steps=3)

    x = rsm().sample(jax.random.PRNGKey(0), (4,))
    before = _compiled_sample._cache_size()
    y = rsm().sample(jax.random.PRNGKey(1), (4,))
    assert _compiled_sample._cache_size() == before
    np.testing.assert_array_equal(np.asarray(x.sum(-1)), 6.0)
    np.testing.assert_array_equal(np.asarray(y.sum(-1)), 6.0)
    assert not np.array_equal(np.asarray(x), np.asarray(y))


def test_ais_anneals_known_document_lengths_word_by_word():
    """``AIS`` and ``RAISE`` hand a replicated softmax with concrete document lengths to the
    compiled annealing loop with its word bound (``max_words`` = the longest document), so its
    words are drawn one by one rather than by the binomial split a traced length needs; the
    caller's distribution is not changed, and other targets pass through as they are."""
    from ebm_ppl.numpyro import RBM, ReplicatedSoftmax
    from ebm_ppl.numpyro.ais import _word_bound

    r = np.random.default_rng(0)
    w, b, c = (jnp.asarray(r.normal(size=s)) for s in ((5, 3), 5, 3))
    d = ReplicatedSoftmax(w, b, c, total_count=jnp.asarray([4.0, 7.0]))
    bounded = _word_bound(d)
    assert bounded.max_words == 7 and d.max_words is None
    assert _word_bound(bounded) is bounded
    rbm = RBM(w, b, c)
    assert _word_bound(rbm) is rbm
