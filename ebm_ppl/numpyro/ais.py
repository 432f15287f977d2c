"""Annealed importance sampling for NumPyro energy distributions (:mod:`ebm_ppl.inference.ais`)."""

from __future__ import annotations

from typing import Any

import jax

from ebm_ppl.inference.ais import AISResult, RAISEResult, run_ais, run_raise
from ebm_ppl.models.protocols import AnnealingPath, RaisePath
from ebm_ppl.numpyro import sharding
from ebm_ppl.numpyro.distributions import _Energy, _static_word_bound

__all__ = ["AIS", "RAISE"]


def AIS(  # noqa: N802 (the public name of the algorithm)
    target: AnnealingPath,
    base: Any = None,
    betas: Any = None,
    num_runs: int = 100,
    *,
    rng_key: jax.Array,
    reverse_samples: jax.Array | None = None,
    progress_bar: bool | None = None,
    mesh: Any = None,
    start_samples: jax.Array | None = None,
) -> AISResult:
    """Estimate ``log Z`` of ``target`` (e.g. :class:`~ebm_ppl.numpyro.RBM`) by annealed
    importance sampling; all runs advance together in chunks of ``lax.scan``.

    :param base: ``None`` (the uniform model), :func:`~ebm_ppl.numpyro.base_rate` of the
        training data (the base-rate model) or visible logits; for a DBM also a
        :class:`~ebm_ppl.numpyro.DBMBase` (e.g. ``dbm.matched_base(train)``, the better start
        for trained models) or a :class:`~ebm_ppl.numpyro.DBMPath` (``dbm.ais_path(...)``:
        which layers the state carries, or a path from another DBM).
    :param betas: increasing inverse temperatures from 0 to 1 (default: the 14,501-value
        :func:`~ebm_ppl.numpyro.salakhutdinov_murray_schedule`).
    :param rng_key: a JAX PRNG key (required: randomness is explicit in NumPyro).
    :param reverse_samples: ``(runs, D)`` samples of the target for reverse AIS (a bracket on
        ``log Z``; a ``RuntimeWarning`` says when the directions disagree).
    :param mesh: ``None`` (one device) or the devices to split the runs over (a
        ``jax.sharding.Mesh``, a device count or a list of devices; see
        :mod:`ebm_ppl.numpyro.sharding`). The target is replicated, each device anneals its
        share of the runs with no communication until the log-weights are gathered; the
        result equals the single-device one for the same key. ``num_runs`` (and the number
        of reverse samples) must be a multiple of the device count.
    :param start_samples: ``(num_runs, D)`` states at ``beta = 0`` for a path that starts at
        a model without exact samples (a :class:`~ebm_ppl.numpyro.DBMPath` from another DBM).
    """
    if rng_key is None:
        raise ValueError("AIS needs rng_key=jax.random.PRNGKey(...)")
    target = _word_bound(target)
    place = None
    if mesh is not None:
        mesh = sharding.make_mesh(mesh)
        target = sharding.replicate(target, mesh)
        if base is not None and not isinstance(base, (int, float)):
            base = sharding.replicate(base, mesh)

        def place(v):
            return sharding.shard_batch(v, mesh, 0, "the AIS runs (num_runs)")

    return run_ais(
        rng_key,
        target,
        base,
        betas,
        num_runs,
        reverse_samples,
        progress_bar,
        place=place,
        start_samples=start_samples,
    )


def RAISE(  # noqa: N802 (the public name of the algorithm)
    target: RaisePath,
    data: jax.Array,
    base: Any = None,
    betas: Any = None,
    num_samples: int = 1,
    *,
    rng_key: jax.Array,
    progress_bar: bool | None = None,
) -> RAISEResult:
    """RAISE (Burda, Grosse & Salakhutdinov 2015): a conservative estimate of ``log p(v)``
    for every row of ``data`` by reverse annealing from it to ``base``, with no estimate of
    ``log Z`` (see :func:`ebm_ppl.inference.ais.run_raise`). ``num_samples`` reverse runs
    per data point; all run together."""
    if rng_key is None:
        raise ValueError("RAISE needs rng_key=jax.random.PRNGKey(...)")
    return run_raise(rng_key, _word_bound(target), data, base, betas, num_samples, progress_bar)


def _word_bound(target: Any) -> Any:
    """A target with known document lengths draws its words one by one inside the compiled
    annealing loop (``max_words`` from the concrete ``total_count``) instead of by the binomial
    split a traced length needs: the same distribution, compiled and run several times faster."""
    return _static_word_bound(target) if isinstance(target, _Energy) else target
