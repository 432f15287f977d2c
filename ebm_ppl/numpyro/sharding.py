"""Sharding over JAX devices: chains, AIS runs and minibatches split, parameters replicated.

Every heavy algorithm of the NumPyro frontend (:class:`~ebm_ppl.numpyro.SAMLE`,
:func:`~ebm_ppl.numpyro.AIS`, the chain runners) takes ``mesh=``: a
``jax.sharding.Mesh``, a device count (the first ``n`` of ``jax.devices()``) or a sequence
of devices. The batch axis of chains, runs and data (the leading axis; axis 1 of a
parallel-tempering ladder ``(L, n, ...)``) is split over *all* the mesh's axes with
``NamedSharding(mesh, PartitionSpec(mesh.axis_names))``; parameters, optimizer state and
keys are replicated. The algorithms are the single-device programs, jitted on sharded
inputs: XLA's SPMD partitioner keeps each device's chains local and inserts the all-reduce
of the gradient means. JAX's random bits are partitionable (``jax_threefry_partitionable``,
on by default), so a sharded run draws the same numbers as the unsharded one for the same
key and the results agree up to the order of the float reductions.

The same code runs on simulated CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=4``), several GPUs, and several hosts:
after ``jax.distributed.initialize()`` a mesh over ``jax.devices()`` spans every process;
each process then passes the same full data (it is sharded on the way in), and checkpoints
gather the shards to process 0, which writes the file.

Simulated CPU devices: keep one sharded program in flight. XLA's CPU collectives wait for
every device's part of a program on a shared thread pool, and with several programs
dispatched asynchronously on fewer cores than devices the rendezvous can time out and abort
the process. ``SAMLE.update`` and ``run_chains`` therefore wait for their result on CPU
meshes (``SAMLE.run`` compiles a whole epoch into one program); do the same
(``jax.block_until_ready``) in hand-written loops of sharded calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = [
    "make_mesh",
    "batch_sharding",
    "replicated",
    "shard_batch",
    "replicate",
    "constrain_batch",
    "num_shards",
    "to_host",
]


def make_mesh(devices: Mesh | int | Sequence[Any] | None = None) -> Mesh:
    """A one-axis mesh ``("batch",)`` over ``devices``, or ``devices`` itself if it is a mesh.

    :param devices: ``None`` (all of ``jax.devices()``), a count ``n`` (the first ``n``
        devices), a sequence of ``jax.Device`` or a ``jax.sharding.Mesh`` (used as given;
        batch axes are split over all of its axes).
    """
    if isinstance(devices, Mesh):
        return devices
    available = jax.devices()
    if devices is None:
        devs = available
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        n = int(devices)
        if not 1 <= n <= len(available):
            raise ValueError(
                f"mesh={n} devices requested but {len(available)} are available "
                f"({available[0].platform}); on a CPU simulate more with "
                "XLA_FLAGS=--xla_force_host_platform_device_count=N set before importing jax"
            )
        devs = available[:n]
    elif (
        isinstance(devices, Sequence)
        and devices
        and all(isinstance(d, jax.Device) for d in devices)
    ):
        devs = list(devices)
    else:
        raise TypeError(
            "mesh must be None, a device count, a sequence of jax devices or a "
            f"jax.sharding.Mesh, got {devices!r}"
        )
    return Mesh(np.asarray(devs), ("batch",))


def num_shards(mesh: Mesh) -> int:
    """Number of pieces a batch axis is split into (the product of the mesh's axis sizes)."""
    return int(np.prod([mesh.shape[a] for a in mesh.axis_names]))


def batch_sharding(mesh: Mesh, ndim: int, axis: int = 0) -> NamedSharding:
    """Sharding of an ``ndim``-array whose axis ``axis`` is split over the whole mesh."""
    spec = [None] * ndim
    spec[axis] = tuple(mesh.axis_names)
    return NamedSharding(mesh, PartitionSpec(*spec))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding of an array held whole by every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def _check_divisible(x: Any, mesh: Mesh, axis: int, what: str) -> None:
    n = num_shards(mesh)
    if x.ndim <= axis or x.shape[axis] % n:
        size = x.shape[axis] if x.ndim > axis else "no such axis"
        raise ValueError(
            f"{what} must split evenly over the mesh's {n} devices: axis {axis} has size "
            f"{size} (shape {tuple(x.shape)}); choose a multiple of {n}"
        )


def shard_batch(tree: Any, mesh: Mesh, axis: int = 0, what: str = "the batch") -> Any:
    """Place every array leaf of ``tree`` on ``mesh`` with axis ``axis`` split over it.

    Scalars (e.g. counters) are replicated. ``ValueError`` when a batch axis does not split
    evenly over the devices.
    """

    def put(x):
        x = jax.numpy.asarray(x) if not isinstance(x, jax.Array) else x
        if x.ndim == 0:
            return jax.device_put(x, replicated(mesh))
        _check_divisible(x, mesh, axis, what)
        return jax.device_put(x, batch_sharding(mesh, x.ndim, axis))

    return jax.tree_util.tree_map(put, tree)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every array leaf of ``tree`` (e.g. parameters, optimizer state, a key, or a
    NumPyro distribution, which is a pytree) whole on every device of ``mesh``."""
    return jax.tree_util.tree_map(lambda x: jax.device_put(x, replicated(mesh)), tree)


def constrain_batch(tree: Any, mesh: Mesh, axis: int = 0, what: str = "the batch") -> Any:
    """Inside ``jit``: ask XLA to keep axis ``axis`` of every non-scalar leaf split over
    ``mesh`` (``jax.lax.with_sharding_constraint``); checks even splits at trace time."""

    def constrain(x):
        if x.ndim == 0:
            return jax.lax.with_sharding_constraint(x, replicated(mesh))
        _check_divisible(x, mesh, axis, what)
        return jax.lax.with_sharding_constraint(x, batch_sharding(mesh, x.ndim, axis))

    return jax.tree_util.tree_map(constrain, tree)


def constrain_replicated(tree: Any, mesh: Mesh) -> Any:
    """Inside ``jit``: keep every leaf of ``tree`` replicated over ``mesh``."""
    return jax.tree_util.tree_map(
        lambda x: jax.lax.with_sharding_constraint(x, replicated(mesh)), tree
    )


def to_host(x: Any) -> np.ndarray:
    """The global value of ``x`` as numpy, gathering shards held by other processes."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
