"""Autodiff block conditionals and mean field for NumPyro models with binary sites
(:mod:`ebm_ppl.inference.multilinear` holds the algorithms)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.infer.util import log_density

from ebm_ppl.inference import multilinear as ml
from ebm_ppl.inference.dependence import check_energy_dependence
from ebm_ppl.numpyro.dependence import energy_dependencies

__all__ = ["MeanFieldGuide"]


def _concrete(tree) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(tree))


class Multilinear:
    """A NumPyro model's log joint as a function of its latent binary sites, its gradient
    (``jax.grad``), and its Gibbs blocks (found and checked on concrete arguments)."""

    def __init__(self, model, names, shapes, args, kwargs, blocks=None, key=None) -> None:
        self.model, self.names, self.shapes = model, list(names), dict(shapes)
        self.like = jnp.zeros((), jnp.float32)
        key = jax.random.PRNGKey(0) if key is None else key
        k1, k2, k3 = jax.random.split(key, 3)
        lj, grad = (jax.jit(f) for f in self.fns(args, kwargs))  # the checks call them often
        draw = jax.jit(self.random_state)  # eager, every op would compile once per shape
        states = [draw(k) for k in (k1, k2)]
        ml.check_multilinear(lj, grad, states, self.names)
        pairs = ml.interactions(grad, k3, self.shapes, self.like, draw=draw)
        self.blocks = ml.make_blocks(self.names, pairs, blocks)

    def fns(self, args, kwargs) -> tuple[Callable, Callable]:
        """``(log_joint, grad)`` of the model run on ``args``."""
        model = handlers.seed(self.model, 0)

        def log_joint(values):
            # mean field evaluates the log joint at marginals in (0, 1): no support checks
            with numpyro.validation_enabled(False):
                return log_density(model, args, kwargs, dict(values))[0]

        def grad(values):
            return jax.grad(log_joint)({n: jnp.asarray(values[n], jnp.float32) for n in self.names})

        return log_joint, grad

    def random_state(self, key) -> dict:
        return ml._random_states(key, self.shapes, self.like)


class MeanFieldGuide(ml.MeanFieldGuideBase):
    """A factorized Bernoulli guide for the latent binary sites of a NumPyro model whose log
    joint is multilinear, solved per call by the mean-field fixed point (eq. 39-41, one
    ``lax.while_loop``); the same API as :class:`ebm_ppl.pyro.MeanFieldGuide`.

    ``guide(*args, **kwargs)`` samples every latent site from ``Bernoulli(mu)``, so it works
    with ``Trace_ELBO``, ``Predictive`` and ``handlers``; :meth:`mean_field` returns the
    marginals and :meth:`bound` the analytic ELBO ``log p(x_obs, mu) + H(mu) - log_z``.
    The model is checked (multilinear, blocks) on the first call with concrete arguments;
    under ``jit`` before that, pass ``blocks``.
    """

    def __init__(self, model: Callable, *args, **kwargs) -> None:
        super().__init__(model, *args, **kwargs)
        self._m: Multilinear | None = None
        self._jitted = None

    def _setup(self, args, kwargs) -> Multilinear:
        if self._m is not None:
            return self._m
        tr = handlers.trace(handlers.seed(self.model, 0)).get_trace(*args, **kwargs)
        names = self._binary_sites(tr, "numpyro")
        if not getattr(self, "_dependence_checked", False):
            deps = energy_dependencies(self.model, args, kwargs)
            check_energy_dependence(tr, deps, "MeanFieldGuide", "numpyro")
            self._dependence_checked = True
        if not _concrete((args, kwargs)):
            if self.blocks is None:
                raise ValueError(
                    "MeanFieldGuide is first called under jit: call it (or mean_field) once "
                    "on concrete arguments, or pass blocks=[[...], ...]"
                )
            m = Multilinear.__new__(Multilinear)
            m.model, m.names = self.model, names
            m.shapes = {n: tuple(tr[n]["value"].shape) for n in names}
            m.like, m.blocks = jnp.zeros((), jnp.float32), ml.make_blocks(names, set(), self.blocks)
            return m
        shapes = {n: tuple(tr[n]["value"].shape) for n in names}
        self._m = Multilinear(self.model, names, shapes, args, kwargs, self.blocks)
        return self._m

    def mean_field(self, *args, **kwargs) -> dict:
        """The mean-field marginals ``{site: mu}`` for the model run on ``args`` (compiled
        once per argument structure)."""
        m = self._setup(args, kwargs)
        if _concrete((args, kwargs)) and self._m is not None:
            if self._jitted is None:
                self._jitted = jax.jit(lambda a, k: self._mean_field(self._m, a, k))
            return self._jitted(args, kwargs)
        return self._mean_field(m, args, kwargs)

    def _mean_field(self, m: Multilinear, args, kwargs) -> dict:
        _, grad = m.fns(args, kwargs)
        if self.init is None:
            start = {n: jnp.full(m.shapes[n], 0.5, jnp.float32) for n in m.names}
        else:
            start = {n: jnp.asarray(v, jnp.float32) for n, v in self.init(*args, **kwargs).items()}
        return ml.mean_field(grad, start, m.blocks, self.num_iters, self.damping, self.tol)

    def bound(self, *args, log_z: Any = 0.0, **kwargs) -> jax.Array:
        """``log p(x_obs, mu) + H(mu) - log_z``: the ELBO at the mean-field fixed point."""
        m = self._setup(args, kwargs)
        log_joint, _ = m.fns(args, kwargs)
        mus = self.mean_field(*args, **kwargs)
        return log_joint(mus) + ml.entropy(mus) - log_z

    def __call__(self, *args, **kwargs) -> dict:
        mus = self.mean_field(*args, **kwargs)
        return {
            n: numpyro.sample(n, dist.Bernoulli(probs=mu).to_event(mu.ndim))
            for n, mu in mus.items()
        }
