"""Many chains of one energy distribution advanced together, on one device or sharded."""

from __future__ import annotations

from functools import partial
from typing import Any

import jax

from ebm_ppl.inference.samle import chain_axis
from ebm_ppl.numpyro import sharding

__all__ = ["run_chains"]


@partial(jax.jit, static_argnames=("num_steps", "transition"))
def _advance(key, dist, state, num_steps, transition):
    if transition is None:
        x, _ = dist.transition(key, state, num_steps)
        return x, x
    state, _ = transition.step(key, dist, state, num_steps)
    return state, transition.samples(state)


def run_chains(
    rng_key: jax.Array,
    dist: Any,
    num_chains: int | None = None,
    num_steps: int = 1,
    *,
    transition: Any = None,
    state: Any = None,
    mesh: Any = None,
) -> tuple[Any, jax.Array]:
    """Advance ``num_chains`` chains of ``dist`` by ``num_steps`` transitions (jitted).

    :param dist: an energy distribution (e.g. :class:`~ebm_ppl.numpyro.RBM`, a DBM).
    :param transition: ``None`` (block-Gibbs sweeps) or a tempered operator:
        :class:`~ebm_ppl.numpyro.ParallelTempering` (the state is the ladder ``(L, n, ...)``,
        ``num_steps`` counts tempering steps) or :class:`~ebm_ppl.numpyro.TemperedTransitions`.
    :param state: a state returned by an earlier call, to continue from (then
        ``num_chains`` may be omitted); default: fresh chains from the distribution's
        initialiser, shape ``(num_chains,) + batch_shape + event_shape``.
    :param mesh: ``None`` or the devices to split the chains over (see
        :mod:`ebm_ppl.numpyro.sharding`); the distribution is replicated and every chain
        stays on its device, so the result equals the single-device one for the same key.
    :returns: ``(state, samples)``: the state to continue from and the chains' current
        values ``(num_chains,) + batch_shape + event_shape`` (for parallel tempering, the
        ``beta = 1`` replica).
    """
    if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    k_init, k_run = jax.random.split(rng_key)
    if state is None:
        if not isinstance(num_chains, int) or isinstance(num_chains, bool) or num_chains < 1:
            raise ValueError(f"num_chains must be a positive int, got {num_chains!r}")
        shape = (num_chains,) + tuple(dist.batch_shape) + tuple(dist.event_shape)
        if transition is None:
            state = dist.init_chain(k_init, shape)
        else:
            state = transition.init_state(k_init, dist, shape)
    if mesh is not None:
        mesh = sharding.make_mesh(mesh)
        axis = chain_axis(transition)
        state = sharding.shard_batch(state, mesh, axis, "the chains (num_chains)")
        dist = sharding.replicate(dist, mesh)
        k_run = sharding.replicate(k_run, mesh)
    out = _advance(k_run, dist, state, num_steps, transition)
    if mesh is not None and any(d.platform == "cpu" for d in mesh.devices.flat):
        jax.block_until_ready(out)  # see sharding.py: one sharded CPU program in flight
    return out
