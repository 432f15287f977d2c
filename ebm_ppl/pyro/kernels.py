"""Block-Gibbs MCMC kernel for Pyro models with energy sites."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import pyro.poutine as poutine
import torch
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel

from ebm_ppl import ops
from ebm_ppl.inference.dependence import check_energy_dependence
from ebm_ppl.inference.gibbs import (
    HIDDEN_SUFFIX,
    BlockGibbsSettings,
    apply_clamps,
    block_gibbs_step,
    classify_sites,
    find_field_sites,
    make_clamps,
    site_field,
    tempered_block_step,
)
from ebm_ppl.inference.multilinear import binary_sites
from ebm_ppl.inference.tempering import combine_infos, tempering_diagnostics
from ebm_ppl.pyro.dependence import energy_dependencies
from ebm_ppl.pyro.handlers import quick_energy_draws
from ebm_ppl.pyro.multilinear import Multilinear

__all__ = ["BlockGibbs"]


def _like(x: Any, like: torch.Tensor) -> torch.Tensor:
    """A user's initial value on the device (and, for non-tensors, in the dtype) of the
    site's traced value."""
    if isinstance(x, torch.Tensor):
        return x.to(like.device)
    return torch.as_tensor(x, dtype=like.dtype, device=like.device)


class InitialParams:
    """``initial_params`` of a Pyro ``MCMCKernel``: ``None`` until set up, or the values a
    user (or ``pyro.infer.MCMC``) set, remembered as such (``_user_initial``)."""

    _initial_params: dict | None = None
    _user_initial: bool = False

    @property
    def initial_params(self) -> dict | None:
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params: dict) -> None:
        self._initial_params = dict(params)
        self._user_initial = True


def inner_block_gibbs(
    model: Callable,
    fixed: Callable[[], Mapping[str, torch.Tensor]],
    num_sweeps: int,
    given: Mapping[str, torch.Tensor],
    energy: list[str],
    warmup_steps: int,
    args: tuple,
    kwargs: dict,
) -> BlockGibbs:
    """A :class:`BlockGibbs` over the energy sites ``energy`` of ``model`` conditioned on
    ``fixed()`` (the current values of the other sites, read whenever the model runs), set
    up from the user's initial values ``given`` of those sites (for composite kernels:
    :class:`~ebm_ppl.pyro.HMCGibbs`, :class:`~ebm_ppl.pyro.Exchange`)."""

    def gibbs_model(*a, **k):
        return poutine.condition(model, data=fixed())(*a, **k)

    gibbs = BlockGibbs(gibbs_model, num_sweeps=num_sweeps)
    if any(n in given for n in energy):
        gibbs.initial_params = {n: given[n] for n in energy if n in given}
    gibbs.setup(warmup_steps, *args, **kwargs)
    return gibbs


class BlockGibbs(InitialParams, BlockGibbsSettings, MCMCKernel):
    """Block-Gibbs sampling of the latent energy sites of a Pyro model, for ``pyro.infer.MCMC``.

    Every latent site whose distribution is one of ours (e.g. :class:`~ebm_ppl.pyro.RBM`) is
    advanced by its exact block conditionals, alternating layers (for an RBM: ``h ~ p(h|v)``,
    then ``v ~ p(v|h)``, eq. 6-8). The hidden layers are auxiliary state, resampled from the
    visible state at every step; ``report_hidden=True`` also records them as
    ``"<site>_hidden"``.

    :param model: a Pyro model; its latent sample sites must all be energy sites (observed
        sites and ``pyro.param`` are fine). For continuous latent sites use
        :class:`~ebm_ppl.pyro.HMCGibbs` (NUTS on them) or :class:`~ebm_ppl.pyro.Exchange`
        (parameters of energy sites). An energy site whose parameters depend on another
        latent site is refused unless it is ``normalized=True`` (its ``log_prob`` omits
        ``log Z``).
    :param clamp: ``{"site": (mask, values)}`` holds the coordinates of a site where the
        boolean ``mask`` is true at ``values`` (inpainting); the chain then samples the
        exact conditional of the remaining coordinates. Expressed the same way in NumPyro.
    :param report_hidden: also return the hidden states as samples.
    :param num_sweeps: block-Gibbs sweeps per MCMC step (thinning inside the kernel); with
        ``transition``, operator steps per MCMC step.
    :param transition: ``None`` (block Gibbs) or a tempered operator,
        ``ParallelTempering(betas)`` (the kernel keeps the ladder of every site; swap
        acceptance rates in ``diagnostics()``) or ``TemperedTransitions(betas)``; not
        combinable with ``clamp``.
    :param blocks: for models written in plain PPL syntax (see below), the sites of each
        block, e.g. ``[["h1"], ["v", "h2"]]``; found automatically when ``None``.

    **Plain-PPL energies.** When the latent sites are Bernoulli sites instead (e.g. a DBM
    written as ``pyro.sample("h1", dist.Bernoulli(logits=...).to_event(1))`` per layer plus
    ``pyro.factor("energy", -E(v, h1, h2))``) and the log joint is multilinear, the exact
    block conditionals are derived by autodiff (:mod:`ebm_ppl.inference.multilinear`): the
    conditional logits of a block are the gradient of the log joint with respect to it.
    Set-up checks multilinearity and finds blocks without internal interactions (a DBM gets
    its odd and even layers); ``blocks`` names them instead (checked).

    The model is traced once in :meth:`setup`; its parameters are taken as constants for the
    run. Other factors of the model must not depend on the energy sites' values (checked at
    set-up on random states), since their conditionals would then differ from the energy
    distribution's own.
    """

    def _init_frontend(self, model: Callable) -> None:
        self._states: dict = {}
        self._tempering: Any = None  # running statistics of the tempered transition
        self.model = model
        self.transforms: dict = {}
        self._steps = 0
        self._last: dict | None = None
        self._shown: tuple | None = None  # (time, text) of the last mean activation logged

    # ---- set-up ---------------------------------------------------------------------------

    def retrace(self, values: Mapping[str, torch.Tensor]) -> None:
        """Re-read the energy distributions from the model run with ``values`` (e.g. the
        current values of continuous sites they depend on, in :class:`HMCGibbs`)."""
        tr = self._trace(values, self._args, self._kwargs)
        self._dists = {n: tr.nodes[n]["fn"] for n in self._latent}

    def _trace(self, values: Mapping[str, torch.Tensor] | None, args, kwargs):
        # the energy sites' values are overwritten from their own init_chain or given:
        # tracing needs no Gibbs run of theirs
        quick = quick_energy_draws(self.model)
        model = quick if values is None else poutine.condition(quick, data=values)
        with torch.no_grad():
            return poutine.trace(model).get_trace(*args, **kwargs)

    def setup(self, warmup_steps: int, *args, **kwargs) -> None:
        self._args, self._kwargs = args, kwargs
        tr = self._trace(None, args, kwargs)
        latent, _, other = classify_sites(tr.nodes)
        binary, rest, _ = binary_sites(tr.nodes)
        if binary and not latent and not rest:
            self._setup_multilinear(tr, binary, args, kwargs)
            return
        self._multilinear = None
        if other:
            raise ValueError(
                f"BlockGibbs samples energy sites only, but the model has other latent sites "
                f"{other}. Observe them, or use ebm_ppl.pyro.HMCGibbs(model) (NUTS on "
                "real-valued sites) or ebm_ppl.pyro.Exchange(model) (parameters of energy sites)."
            )
        if not latent:
            raise ValueError(
                "the model has no latent energy site to sample (every energy site is observed)"
            )
        deps = energy_dependencies(self.model, args, kwargs, tr.nodes)
        check_energy_dependence(tr.nodes, deps, "BlockGibbs", "pyro")
        self._latent = latent
        self._dists = {n: tr.nodes[n]["fn"] for n in latent}
        values = {n: tr.nodes[n]["value"] for n in latent}
        self._clamps = make_clamps(self.clamp, values, latent, self._dists)
        for n in latent:
            if n + HIDDEN_SUFFIX in tr.nodes:
                raise ValueError(f"site name {n + HIDDEN_SUFFIX!r} is reserved for hidden states")
        self._check_factors(args, kwargs)
        self._init_states()
        if self._user_initial:
            # the first state is one sweep from the user's values (so hidden states exist)
            given = {n: _like(self._initial_params[n], values[n]) for n in latent}
            with torch.no_grad():
                self._initial_params = self._step(apply_clamps(given, self._clamps))
        else:
            self._initial_params = self._initialize()
        self._steps = 0

    def _setup_multilinear(self, tr, names, args, kwargs) -> None:

        if self.transition is not None:
            raise ValueError("a tempered transition needs energy sites; these are Bernoulli sites")
        self._latent = names
        self._dists = {}
        self._multilinear = Multilinear(self.model, names, args, kwargs, self.blocks, tr)
        values = {n: tr.nodes[n]["value"] for n in names}
        self._clamps = make_clamps(self.clamp, values, names)
        if self._user_initial:
            given = {n: _like(self._initial_params[n], values[n]) for n in names}
            self._initial_params = self._step(apply_clamps(given, self._clamps))
        else:
            start = self._multilinear.random_state(None)
            self._initial_params = self._step(apply_clamps(start, self._clamps))
        self._steps = 0

    def _residual(self, values) -> torch.Tensor:
        """The model's log joint minus the energy sites' own log-densities at ``values``."""
        model = poutine.condition(self.model, data=values)
        tr = poutine.trace(model).get_trace(*self._args, **self._kwargs)
        # the energy sites' own terms are left out, not computed and subtracted: that is
        # cheaper and skips their input checks, which would read the values every sweep
        latent = set(self._latent)
        total = tr.log_prob_sum(site_filter=lambda name, site: name not in latent)
        if not isinstance(total, torch.Tensor):  # no other sample site
            total = torch.zeros((), device=values[self._latent[0]].device)
        return total

    def _residual_grad(self, values) -> dict:
        """``d residual / d site`` for every latent energy site."""
        with torch.enable_grad():
            leaves = {n: v.detach().clone().requires_grad_(True) for n, v in values.items()}
            total = self._residual(leaves)
            wrt = [leaves[n] for n in self._latent]
            if total.requires_grad:
                grads = torch.autograd.grad(total, wrt, allow_unused=True)
            else:
                grads = [None] * len(wrt)
        return {
            n: torch.zeros_like(leaves[n]) if g is None else g.detach()
            for n, g in zip(self._latent, grads)
        }

    def _check_factors(self, args, kwargs) -> None:
        draws = []
        for _ in range(3):
            draws.append(
                {n: fn.init_chain(None, tuple(fn.shape())) for n, fn in self._dists.items()}
            )
        with torch.no_grad():
            self._fields = find_field_sites(
                lambda v: self._residual(v), self._residual_grad, self._dists, draws
            )
        if self._fields and self.transition is not None:
            raise ValueError(
                f"other factors of the model depend on energy sites {sorted(self._fields)}; "
                "a tempered transition cannot include them. Use plain block Gibbs."
            )

    def _field_of(self, name: str, values) -> Any:
        spec = self._fields.get(name)
        if spec is None:
            return None
        return site_field(spec[0], self._residual_grad, values, name, spec[1])

    def _initialize(self) -> dict:
        with torch.no_grad():
            values = {n: fn.init_chain(None, tuple(fn.shape())) for n, fn in self._dists.items()}
            values = apply_clamps(values, self._clamps)
            return self._step(values)

    def _init_states(self) -> None:
        t = self.transition
        if t is not None:
            self._states = {
                n: t.init_state(None, fn, tuple(fn.shape())) for n, fn in self._dists.items()
            }

    def _step(self, values: Mapping[str, torch.Tensor]) -> dict:
        if self._multilinear is not None:
            return self._multilinear.sweeps(None, values, self._clamps, self.num_sweeps)
        if self.transition is not None:
            new, aux, self._states, infos = tempered_block_step(
                None, self.transition, self._dists, values, self._states, self.num_sweeps
            )
            for info in infos.values():  # running statistics, for diagnostics()
                self._tempering = combine_infos(self._tempering, info)
        else:
            field_of = self._field_of if self._fields else None
            new, aux = block_gibbs_step(
                None, self._dists, values, self._clamps, self.num_sweeps, field_of
            )
        out = dict(new)
        if self.report_hidden:
            for n, h in aux.items():
                out[n + HIDDEN_SUFFIX] = h
        return out

    # ---- MCMCKernel interface -------------------------------------------------------------

    @property
    def save_params(self) -> list[str]:
        names = list(self._latent)
        if self.report_hidden:
            names += [n + HIDDEN_SUFFIX for n in self._latent]
        return sorted(names)

    def sample(self, params: dict) -> dict:
        with torch.no_grad():
            values = apply_clamps({n: params[n] for n in self._latent}, self._clamps)
            out = self._step(values)
        self._steps += 1
        self._last = out
        return out

    def logging(self) -> OrderedDict:
        """What ``pyro.infer.MCMC`` logs after every step: the mean activation of the latent
        sites when they live on the CPU, recomputed at most every 0.1 s (a progress bar
        refreshes no faster; MCMC asks at every sweep, shown or not). On an accelerator
        nothing is shown, since reading the value would make every step wait for the device."""
        if not self._last or not ops.on_host(self._last[self._latent[0]]):
            return OrderedDict()
        now = time.monotonic()
        if self._shown is None or now - self._shown[0] >= 0.1:
            act = torch.stack([self._last[n].float().mean() for n in self._latent]).mean()
            self._shown = (now, f"{float(act):.3f}")
        return OrderedDict([("mean_act", self._shown[1])])

    def diagnostics(self) -> dict:
        out = {"sweeps": self._steps * self.num_sweeps}
        out.update(tempering_diagnostics(self._tempering))
        return out

    def cleanup(self) -> None:
        if not self._user_initial:
            self._initial_params = None
        self._user_initial = False
        self._last = self._shown = None

    # ---- helpers for diagnostics ----------------------------------------------------------

    @property
    def energy_sites(self) -> dict:
        """The energy distributions of the latent sites, as traced at set-up."""
        return dict(self._dists)

    @property
    def gibbs_blocks(self) -> tuple:
        """The blocks sampled in turn (plain-PPL models), set at set-up."""
        return () if self._multilinear is None else self._multilinear.blocks

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_last"] = None
        state["_states"] = {}
        return state
