"""Energy-based distributions for NumPyro (JAX)."""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
from numpyro.distributions import Distribution, constraints

from ebm_ppl import ops
from ebm_ppl.models.rbm import RBMMethods, check_params

__all__ = ["RBM"]


class RBM(RBMMethods, Distribution):
    r"""Binary restricted Boltzmann machine over the visible units (eq. 1-8).

    ``RBM(weights, visible_bias, hidden_bias)`` with ``weights`` of shape
    ``(..., n_visible, n_hidden)``, ``visible_bias`` ``(..., n_visible)`` and ``hidden_bias``
    ``(..., n_hidden)``; leading dimensions form the batch shape, the event shape is
    ``(n_visible,)``.

    ``log_prob(v)`` is the **unnormalized** log-density ``-F(v)`` (eq. 5), with the hidden
    units summed out analytically; ``log_partition()`` gives the exact ``log Z`` for models
    whose smaller layer has at most 20 units. ``sample(key)`` is approximate: it runs
    ``num_gibbs_steps`` block-Gibbs sweeps (one ``lax.scan``) from independent
    ``Bernoulli(sigmoid(b))`` draws.

    The class is a jit-safe pytree (parameters are leaves; ``num_gibbs_steps`` is static).
    ``expand`` is native and lazy: parameters keep their shapes and broadcast when
    evaluated. Concrete inputs are checked (binary, finite, shapes) unless
    ``validate_args=False``; traced inputs cannot be inspected and are not.
    """

    arg_constraints = {
        "weights": constraints.real,
        "visible_bias": constraints.real_vector,
        "hidden_bias": constraints.real_vector,
    }
    support = constraints.independent(constraints.boolean, 1)
    has_enumerate_support = False
    reparametrized_params: list = []
    pytree_data_fields = ("weights", "visible_bias", "hidden_bias")
    pytree_aux_fields = ("num_gibbs_steps", "_check_inputs")

    def __init__(
        self,
        weights,
        visible_bias,
        hidden_bias,
        num_gibbs_steps: int = 100,
        validate_args: bool | None = None,
    ) -> None:
        for name, x in (
            ("weights", weights),
            ("visible_bias", visible_bias),
            ("hidden_bias", hidden_bias),
        ):
            if not isinstance(x, (jax.Array,)):
                if hasattr(x, "__array__") and not ops.is_torch(x):
                    continue
                raise TypeError(f"{name} must be a JAX array, got {type(x).__name__}")
        weights, visible_bias, hidden_bias = (
            jnp.asarray(weights),
            jnp.asarray(visible_bias),
            jnp.asarray(hidden_bias),
        )
        if not isinstance(num_gibbs_steps, int) or num_gibbs_steps < 1:
            raise ValueError(f"num_gibbs_steps must be a positive int, got {num_gibbs_steps!r}")
        batch_shape, n_visible, _ = check_params(weights, visible_bias, hidden_bias)
        self.weights, self.visible_bias, self.hidden_bias = weights, visible_bias, hidden_bias
        self.num_gibbs_steps = num_gibbs_steps
        self._check_inputs = validate_args is not False
        super().__init__(tuple(batch_shape), (n_visible,), validate_args=False)
        if validate_args is not None:
            self._validate_args = validate_args

    def _with_batch_shape(self, batch_shape) -> RBM:
        new = copy.copy(self)
        new._batch_shape = tuple(batch_shape)
        return new

    def expand(self, batch_shape) -> RBM:
        return self._expanded(batch_shape)

    def sample(self, key, sample_shape=()) -> jax.Array:
        """Approximate draw: ``num_gibbs_steps`` block-Gibbs sweeps from ``key``."""
        if key is None:
            raise ValueError("RBM.sample needs a JAX PRNG key (use numpyro.handlers.seed)")
        return self._sample(key, tuple(sample_shape))
