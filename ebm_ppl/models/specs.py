"""Declarative parameter specs of the energy distributions, and the constructor body written
once for both frontends.

A distribution's parameters are listed once, as :class:`ParamSpec` rows (name, kind of value,
event dimensions); each frontend turns a table into its ``arg_constraints`` with its own
constraint module (:func:`arg_constraints`), and its constructors run :func:`construct`: the
arrays converted by the frontend (e.g. numpy arrays to JAX), checked by the family's
``_init_params``, then the distribution's shapes and normalisation set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

__all__ = [
    "CATEGORICAL_RBM_PARAMS",
    "GAUSSIAN_RBM_PARAMS",
    "RBM_PARAMS",
    "REPLICATED_SOFTMAX_PARAMS",
    "ParamSpec",
    "arg_constraints",
    "construct",
]


class ParamSpec(NamedTuple):
    """One parameter of a distribution: its ``name`` (the constructor's argument and the
    attribute), its ``kind`` (``"real"`` or ``"positive"``) and its number of event
    dimensions ``event_dim`` (a weight matrix ``(..., D, F)`` has 2, a bias vector 1)."""

    name: str
    kind: str
    event_dim: int


#: the binary RBM of eq. 1-8: ``W`` ``(..., D, F)``, ``b`` ``(..., D)``, ``a`` ``(..., F)``
RBM_PARAMS = (
    ParamSpec("weights", "real", 2),
    ParamSpec("visible_bias", "real", 1),
    ParamSpec("hidden_bias", "real", 1),
)
#: the Gaussian-Bernoulli RBM of eq. 11-14: the RBM's and the visible deviations ``sigma``
GAUSSIAN_RBM_PARAMS = RBM_PARAMS + (ParamSpec("sigma", "positive", 1),)
#: the replicated softmax model of eq. 15-19: ``W`` ``(..., K, F)``, word and hidden biases
REPLICATED_SOFTMAX_PARAMS = (
    ParamSpec("weights", "real", 2),
    ParamSpec("word_bias", "real", 1),
    ParamSpec("hidden_bias", "real", 1),
)
#: the categorical RBM: ``W`` ``(..., D, K, F)``, ``b`` ``(..., D, K)``, ``a`` ``(..., F)``
CATEGORICAL_RBM_PARAMS = (
    ParamSpec("weights", "real", 3),
    ParamSpec("visible_bias", "real", 2),
    ParamSpec("hidden_bias", "real", 1),
)


def arg_constraints(specs: Sequence[ParamSpec], constraint: Callable[[str, int], Any]) -> dict:
    """``{name: constraint(kind, event_dim)}``: a frontend's ``arg_constraints`` from a table,
    ``constraint`` mapping a kind and its event dimensions to that PPL's constraint."""
    return {s.name: constraint(s.kind, s.event_dim) for s in specs}


def construct(
    dist: Any,
    backend: str,
    convert: Callable[[Any], Any],
    arrays: Sequence[Any],
    num_gibbs_steps: int,
    validate_args: bool | None,
    normalized: bool,
    options: Sequence[Any] = (),
) -> None:
    """The body of an energy distribution's constructor: ``arrays`` (the parameters in the
    order of the family's ``_init_params``) each passed through ``convert``, checked and
    stored by ``dist._init_params(backend, *arrays, num_gibbs_steps, validate_args,
    *options)``, which returns the batch and event shapes; then the frontend's
    ``_finish_init`` and the ``normalized`` flag."""
    batch_shape, event_shape = dist._init_params(
        backend, *(convert(a) for a in arrays), num_gibbs_steps, validate_args, *options
    )
    dist._finish_init(batch_shape, event_shape, validate_args)
    dist._set_normalized(normalized)
