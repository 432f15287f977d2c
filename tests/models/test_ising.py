"""Exact oracles for the 2-D lattice Ising model, on both backends.

The oracle enumerates all ``2**(H W)`` spin configurations (at most 4 x 4) and computes the
energy from an independent formulation (half the sum of each site times its rolled or
zero-padded neighbours), so that it shares no code with :mod:`ebm_ppl.models.ising`.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
from conftest import chi2_pvalue
from scipy.special import logsumexp

# ---- the oracle ------------------------------------------------------------------------


@functools.cache
def all_spins(h: int, w: int) -> np.ndarray:
    """All ``2**(h w)`` configurations ``(S, h, w)``, float64, in :func:`spin_index` order."""
    s = np.array(list(itertools.product([-1.0, 1.0], repeat=h * w))).reshape(-1, h, w)
    s.flags.writeable = False
    return s


def spin_index(s: np.ndarray) -> np.ndarray:
    """Row of each configuration ``(..., h, w)`` in :func:`all_spins`."""
    bits = (np.asarray(s).reshape(*np.shape(s)[:-2], -1) > 0).astype(np.int64)
    n = bits.shape[-1]
    return (bits << np.arange(n - 1, -1, -1)).sum(-1)


def neighbours(s: np.ndarray, periodic: bool) -> np.ndarray:
    if periodic:
        return sum(np.roll(s, k, axis=a) for k in (1, -1) for a in (-2, -1))
    p = np.pad(s, [(0, 0)] * (s.ndim - 2) + [(1, 1), (1, 1)])
    return p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]


def stats(s: np.ndarray, periodic: bool) -> tuple[np.ndarray, np.ndarray]:
    """(sum over bonds of s_i s_j, sum of spins): each bond is seen from both ends."""
    return 0.5 * (s * neighbours(s, periodic)).sum((-2, -1)), s.sum((-2, -1))


@functools.cache
def all_stats(shape: tuple, periodic: bool) -> tuple[np.ndarray, np.ndarray]:
    return stats(all_spins(*shape), periodic)


def exact(j: float, h: float, shape, periodic: bool = False):
    """(log Z, probabilities of all states, pair statistic, spin sum) in float64."""
    pair, mag = all_stats(tuple(shape), periodic)
    lw = j * pair + h * mag
    log_z = logsumexp(lw)
    return log_z, np.exp(lw - log_z), pair, mag


def fronts(name: str):
    if name == "torch":
        import ebm_ppl.pyro as front
    else:
        import ebm_ppl.numpyro as front
    return front


PARAMS = [(0.3, 0.1), (-0.7, 0.5), (1.1, -0.4)]


# ---- log Z, statistics, normalization -------------------------------------------------------


@pytest.mark.parametrize("shape,periodic", [((3, 3), False), ((4, 4), False), ((4, 4), True)])
def test_log_partition_matches_brute_force(backend, shape, periodic):
    ising = fronts(backend.name).Ising

    def log_z(j, h):
        return ising(j, h, shape=shape, periodic=periodic).log_partition()

    if backend.name == "jax":  # one compilation for all parameter values
        log_z = backend.jax.jit(log_z)
    for j, h in PARAMS:
        got = log_z(backend.array(j), backend.array(h))
        assert float(backend.np(got)) == pytest.approx(exact(j, h, shape, periodic)[0], rel=1e-5)
    # batched parameters: one log Z per batch member
    js, hs = np.array([0.3, -0.7, 1.1], np.float32), np.array([[0.1], [-0.4]], np.float32)
    d = ising(backend.array(js), backend.array(hs), shape=shape, periodic=periodic)
    want = [[exact(j, h, shape, periodic)[0] for j in js] for h in hs[:, 0]]
    np.testing.assert_allclose(backend.np(d.log_partition()), want, rtol=1e-5)


def test_periodic_side_two_counts_both_bonds(backend):
    # on a 2 x 4 torus each vertical pair is joined twice (by the bond and the wrap-around)
    d = fronts(backend.name).Ising(0.4, 0.2, shape=(2, 4), periodic=True)
    assert float(backend.np(d.log_partition())) == pytest.approx(
        exact(0.4, 0.2, (2, 4), True)[0], rel=1e-5
    )


@pytest.mark.parametrize("periodic", [False, True])
def test_sufficient_statistics_and_log_prob(backend, periodic):
    rng = np.random.default_rng(0)
    s = rng.choice([-1.0, 1.0], size=(7, 4, 4)).astype(np.float32)
    d = fronts(backend.name).Ising(0.3, -0.2, shape=(4, 4), periodic=periodic)
    pair, mag = stats(s.astype(np.float64), periodic)
    got_pair, got_mag = (backend.np(x) for x in d.sufficient_statistics(backend.array(s)))
    np.testing.assert_allclose(got_pair, pair)
    np.testing.assert_allclose(got_mag, mag)
    lp = backend.np(d.log_prob(backend.array(s)))
    np.testing.assert_allclose(lp, 0.3 * pair - 0.2 * mag, rtol=1e-5)
    np.testing.assert_allclose(backend.np(d.free_energy(backend.array(s))), -lp, rtol=1e-6)


def test_log_partition_gradient_is_mean_statistic_torch():
    import torch

    from ebm_ppl.pyro import Ising

    for shape, periodic in [((3, 3), False), ((4, 4), True)]:
        for j, h in PARAMS:
            jt = torch.tensor(j, requires_grad=True)
            ht = torch.tensor(h, requires_grad=True)
            Ising(jt, ht, shape=shape, periodic=periodic).log_partition().backward()
            _, p, pair, mag = exact(j, h, shape, periodic)
            assert float(jt.grad) == pytest.approx(p @ pair, rel=1e-4, abs=1e-4)
            assert float(ht.grad) == pytest.approx(p @ mag, rel=1e-4, abs=1e-4)


def test_log_partition_gradient_is_mean_statistic_jax():
    import jax

    from ebm_ppl.numpyro import Ising

    for shape, periodic in [((3, 3), False), ((4, 4), True)]:

        def log_z(j, h, shape=shape, periodic=periodic):
            return Ising(j, h, shape=shape, periodic=periodic).log_partition()

        grad = jax.jit(jax.grad(log_z, argnums=(0, 1)))
        for j, h in PARAMS:
            gj, gh = grad(np.float32(j), np.float32(h))
            _, p, pair, mag = exact(j, h, shape, periodic)
            assert float(gj) == pytest.approx(p @ pair, rel=1e-4, abs=1e-4)
            assert float(gh) == pytest.approx(p @ mag, rel=1e-4, abs=1e-4)


def test_normalized_log_prob_sums_to_one(backend):
    s = all_spins(3, 3).astype(np.float32)
    for j, h in PARAMS:
        d = fronts(backend.name).Ising(j, h, shape=(3, 3), normalized=True)
        lp = backend.np(d.log_prob(backend.array(s))).astype(np.float64)
        assert logsumexp(lp) == pytest.approx(0.0, abs=1e-5)
        np.testing.assert_allclose(np.exp(lp), exact(j, h, (3, 3))[1], rtol=1e-4, atol=1e-8)


def test_pyro_and_numpyro_agree():
    import jax.numpy as jnp
    import torch

    from ebm_ppl.numpyro import Ising as JIsing
    from ebm_ppl.pyro import Ising as TIsing

    rng = np.random.default_rng(1)
    j = rng.normal(size=(3,)).astype(np.float32)
    h = rng.normal(size=(2, 1)).astype(np.float32)
    s = rng.choice([-1.0, 1.0], size=(5, 1, 1, 4, 4)).astype(np.float32)
    for periodic in (False, True):
        t = TIsing(torch.as_tensor(j), torch.as_tensor(h), shape=(4, 4), periodic=periodic)
        x = JIsing(jnp.asarray(j), jnp.asarray(h), shape=(4, 4), periodic=periodic)
        lt, lx = t.log_prob(torch.as_tensor(s)).numpy(), np.asarray(x.log_prob(jnp.asarray(s)))
        assert lt.shape == lx.shape == (5, 2, 3)
        np.testing.assert_allclose(lt, lx, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            t.log_partition().numpy(), np.asarray(x.log_partition()), rtol=1e-5
        )


def test_random_coupling_gets_the_exact_score(backend):
    """With normalized=True a program whose J is random has the exact log joint: its
    gradient in J is log-prior' + T(x) - E_J[T] (a doubly-intractable model made exact)."""
    j0, h = 0.4, 0.1
    rng = np.random.default_rng(2)
    x = rng.choice([-1.0, 1.0], size=(3, 3)).astype(np.float32)
    _, p, pair, _ = exact(j0, h, (3, 3))
    want = -j0 + stats(x.astype(np.float64), False)[0] - p @ pair  # N(0, 1) prior on J
    if backend.name == "torch":
        import pyro
        import pyro.distributions as dist
        import torch
        from pyro import poutine

        from ebm_ppl.pyro import Ising

        def model():
            j = pyro.sample("J", dist.Normal(0.0, 1.0))
            pyro.sample("s", Ising(j, h, shape=(3, 3), normalized=True), obs=torch.as_tensor(x))

        jt = torch.tensor(j0, requires_grad=True)
        tr = poutine.trace(poutine.condition(model, data={"J": jt})).get_trace()
        tr.log_prob_sum().backward()
        got = float(jt.grad)
    else:
        import jax
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as dist
        from numpyro.infer.util import log_density

        from ebm_ppl.numpyro import Ising

        def model():
            j = numpyro.sample("J", dist.Normal(0.0, 1.0))
            numpyro.sample("s", Ising(j, h, shape=(3, 3), normalized=True), obs=jnp.asarray(x))

        score = jax.jit(jax.grad(lambda j: log_density(model, (), {}, {"J": j})[0]))
        got = float(score(np.float32(j0)))
    assert got == pytest.approx(want, rel=1e-4, abs=1e-4)


# ---- exact draws and the block-Gibbs transition ----------------------------------------------


def draws_match(backend, s, probs, what):
    counts = np.bincount(spin_index(backend.np(s)).reshape(-1), minlength=probs.size)
    p = chi2_pvalue(counts, probs)
    assert p > 1e-4, f"{what}: chi-square p = {p:.2g}"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_sample_matches_exact_probabilities(backend, seed):
    j, h = 0.4, 0.15
    d = fronts(backend.name).Ising(j, h, shape=(3, 3))
    s = d.exact_sample(backend.key(seed), (20000,))
    assert tuple(s.shape) == (20000, 3, 3)
    _, p, pair, _ = exact(j, h, (3, 3))
    draws_match(backend, s, p, "exact_sample")
    t = stats(backend.np(s).astype(np.float64), False)[0]
    se = np.sqrt(p @ pair**2 - (p @ pair) ** 2) / np.sqrt(t.size)
    assert abs(t.mean() - p @ pair) < 5 * se


def test_exact_sample_batched_and_periodic(backend):
    js = np.array([0.5, -0.5], np.float32)
    d = fronts(backend.name).Ising(backend.array(js), 0.2, shape=(2, 4), periodic=True)
    s = d.exact_sample(backend.key(3), (12000,))
    assert tuple(s.shape) == (12000, 2, 2, 4)
    for b, j in enumerate(js):
        draws_match(backend, s[:, b], exact(float(j), 0.2, (2, 4), True)[1], f"J={j}")


@pytest.mark.parametrize("shape,periodic,j", [((3, 3), False, 0.5), ((2, 4), True, 0.25)])
def test_transition_leaves_the_distribution_invariant(backend, shape, periodic, j):
    h = -0.2
    d = fronts(backend.name).Ising(j, h, shape=shape, periodic=periodic)
    p = exact(j, h, shape, periodic)[1]
    start = d.exact_sample(backend.key(4), (20000,))
    s, aux = d.transition(backend.key(5), start, 3)
    assert tuple(s.shape) == (20000,) + shape and tuple(aux.shape) == (20000, 0)  # no hidden
    draws_match(backend, s, p, "from exact draws")


def test_transition_converges_from_random_starts(backend):
    # uniform random starts, run long (this model mixes within a few sweeps)
    j, h = 0.5, -0.2
    d = fronts(backend.name).Ising(j, h, shape=(3, 3))
    s = d.transition(backend.key(6), d.init_chain(backend.key(7), (20000, 3, 3)), 40)[0]
    draws_match(backend, s, exact(j, h, (3, 3))[1], "from random starts")


def test_clamped_transition_samples_the_conditional(backend):
    j, h = 0.5, 0.1
    d = fronts(backend.name).Ising(j, h, shape=(3, 3))
    from ebm_ppl.models.rbm import Clamp

    mask = np.zeros((3, 3), bool)
    mask[0, 0] = mask[1, 1] = True
    vals = np.zeros((3, 3), np.float32)
    vals[0, 0], vals[1, 1] = 1.0, -1.0
    clamp = Clamp(backend.array(mask, dtype=bool), backend.array(vals))
    s = d.transition(backend.key(8), d.init_chain(backend.key(9), (20000, 3, 3)), 30, clamp)[0]
    s_np = backend.np(s)
    assert (s_np[:, 0, 0] == 1).all() and (s_np[:, 1, 1] == -1).all()
    _, p, _, _ = exact(j, h, (3, 3))
    states = all_spins(3, 3)
    keep = (states[:, 0, 0] == 1) & (states[:, 1, 1] == -1)
    cond = np.where(keep, p, 0.0)
    cond /= cond.sum()
    counts = np.bincount(spin_index(s_np), minlength=p.size)
    assert chi2_pvalue(counts[keep], cond[keep]) > 1e-4


def test_sample_and_expand(backend):
    front = fronts(backend.name)
    js = np.array([0.2, 0.6], np.float32)
    d = front.Ising(backend.array(js), 0.0, shape=(3, 3), num_gibbs_steps=5)
    e = d.expand((4, 2))
    assert tuple(e.batch_shape) == (4, 2) and tuple(e.unexpanded().batch_shape) == (2,)
    assert e.coupling is d.coupling  # lazy: nothing copied
    x = e.sample(backend.key(10), (3,)) if backend.name == "jax" else e.sample((3,))
    assert tuple(x.shape) == (3, 4, 2, 3, 3)
    assert set(np.unique(backend.np(x))) <= {-1.0, 1.0}
    assert tuple(e.log_prob(x).shape) == (3, 4, 2)
    assert tuple(e.log_partition().shape) == (4, 2)
    with pytest.raises(ValueError, match="expand"):
        d.expand((3,))


# ---- block Gibbs under the PPLs' MCMC ----------------------------------------------------------


def check_magnetisation(samples: np.ndarray):
    """The per-site mean spin of a chain against its exact value, with a batch-means
    standard error (20 batches)."""
    _, p, _, mag = exact(0.3, 0.1, (3, 3))
    m = samples.reshape(samples.shape[0], -1).mean(-1)
    batches = m[: len(m) // 20 * 20].reshape(20, -1).mean(1)
    se = batches.std(ddof=1) / np.sqrt(20)
    assert abs(m.mean() - (p @ mag) / 9) < 5 * se, (m.mean(), (p @ mag) / 9, se)


def test_pyro_block_gibbs_reproduces_magnetisation():
    import pyro
    from pyro.infer import MCMC

    from ebm_ppl.pyro import BlockGibbs, Ising

    def model():
        pyro.sample("s", Ising(0.3, 0.1, shape=(3, 3)))

    pyro.set_rng_seed(0)
    mcmc = MCMC(BlockGibbs(model), num_samples=2000, warmup_steps=50, disable_progbar=True)
    mcmc.run()
    s = mcmc.get_samples()["s"].numpy()
    assert s.shape == (2000, 3, 3) and set(np.unique(s)) <= {-1.0, 1.0}
    check_magnetisation(s)


def test_numpyro_block_gibbs_reproduces_magnetisation():
    import jax
    import numpyro
    from numpyro.infer import MCMC

    from ebm_ppl.numpyro import BlockGibbs, Ising

    def model():
        numpyro.sample("s", Ising(0.3, 0.1, shape=(3, 3)))

    mcmc = MCMC(BlockGibbs(model), num_warmup=50, num_samples=4000, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), extra_fields=("free_energy",))
    s = np.asarray(mcmc.get_samples()["s"])
    assert s.shape == (4000, 3, 3) and set(np.unique(s)) <= {-1.0, 1.0}
    fe = np.asarray(mcmc.get_extra_fields()["free_energy"])
    np.testing.assert_allclose(fe, -(0.3 * stats(s, False)[0] + 0.1 * s.sum((1, 2))), rtol=1e-5)
    check_magnetisation(s)


# ---- bad input and pytrees ---------------------------------------------------------------------


def test_bad_input(backend):
    ising = fronts(backend.name).Ising
    d = ising(0.3, 0.1, shape=(3, 3))
    with pytest.raises(ValueError, match=r"value must have shape \(\.\.\., 3, 3\)"):
        d.log_prob(backend.array(np.ones((2, 3, 4))))
    with backend.out_of_support(r"value must contain spins in \{-1, \+1\}"):
        d.log_prob(backend.array(np.zeros((3, 3))))
    with backend.out_of_support("value contains NaN"):
        d.log_prob(backend.array(np.full((3, 3), np.nan)))
    with pytest.raises(ValueError, match="value must contain spins"):
        d.sufficient_statistics(backend.array(np.full((3, 3), 0.5)))
    with pytest.raises(ValueError, match="periodic=True needs even H and W"):
        ising(0.3, shape=(3, 4), periodic=True)
    with pytest.raises(ValueError, match="coupling contains NaN or infinite"):
        ising(float("inf"), shape=(3, 3))
    with pytest.raises(ValueError, match="field contains NaN or infinite"):
        ising(0.3, backend.array([0.0, np.nan]), shape=(3, 3))
    with pytest.raises(TypeError, match="coupling must be"):
        ising("0.3", shape=(3, 3))
    with pytest.raises(TypeError, match="coupling must have a floating dtype"):
        ising(backend.array([1, 2], dtype=np.int32), shape=(3, 3))
    with pytest.raises(ValueError, match="shape"):
        ising(0.3)
    with pytest.raises(ValueError, match="coupling .* and field .* do not broadcast"):
        ising(backend.array([0.1, 0.2]), backend.array([0.1, 0.2, 0.3]), shape=(3, 3))
    with pytest.raises(ValueError, match="num_gibbs_steps"):
        ising(0.3, shape=(3, 3), num_gibbs_steps=0)
    with pytest.raises(ValueError, match="exchange algorithm"):
        ising(0.3, shape=(7, 6)).log_partition()
    with pytest.raises(ValueError, match="exchange algorithm"):
        ising(0.3, shape=(7, 6), normalized=True).log_prob(backend.array(np.ones((7, 6))))
    with pytest.raises(ValueError, match="block Gibbs"):
        ising(0.3, shape=(7, 6)).exact_sample(backend.key(0))
    with pytest.raises(ValueError, match="cannot fold an external factor"):
        d.transition(backend.key(0), backend.array(np.ones((3, 3))), 1, field=object())
    # validate_args=False skips the value checks but not the shape check
    loose = ising(0.3, 0.1, shape=(3, 3), validate_args=False)
    loose.log_prob(backend.array(np.zeros((3, 3))))
    with pytest.raises(ValueError, match="value must have shape"):
        loose.log_prob(backend.array(np.ones((3, 4))))


def test_support(backend):
    d = fronts(backend.name).Ising(0.3, shape=(2, 2))
    assert d.support.is_discrete and d.support.event_dim == 2
    ok = d.support.check if backend.name == "torch" else d.support
    assert bool(ok(backend.array(np.array([[1.0, -1.0], [-1.0, 1.0]]))))
    assert not bool(ok(backend.array(np.array([[1.0, 0.0], [-1.0, 1.0]]))))


def test_numpyro_pytree_round_trip_through_jit():
    import jax
    import jax.numpy as jnp

    from ebm_ppl.numpyro import Ising

    d = Ising(jnp.array([0.2, 0.5]), 0.1, shape=(2, 4), periodic=True, normalized=True)
    d = d.expand((3, 2))
    back = jax.jit(lambda dist: dist)(d)
    assert type(back) is Ising and tuple(back.batch_shape) == (3, 2)
    assert back.lattice_shape == (2, 4) and back.periodic and back.normalized
    x = d.init_chain(jax.random.PRNGKey(0), (3, 2, 2, 4))
    out = jax.jit(lambda dist, v: dist.log_prob(v))(d, x)
    np.testing.assert_allclose(np.asarray(out), np.asarray(d.log_prob(x)), rtol=1e-5)
    step = jax.jit(lambda dist, k, v: dist.transition(k, v, 2)[0])
    y = step(d, jax.random.PRNGKey(1), x)
    assert y.shape == x.shape and set(np.unique(np.asarray(y))) <= {-1.0, 1.0}
