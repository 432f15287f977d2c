"""One small array-ops layer with the same names for torch and JAX.

Every function dispatches *per call* on the type of its array arguments (JAX tracers
included); there is no process-global backend. The math of the energy models in
:mod:`ebm_ppl.models` is written once against these names.

Randomness is always explicit. A *key* is a ``jax.random.PRNGKey`` for JAX arrays; for torch
it is ``None`` (torch's global generator, seeded by ``pyro.set_rng_seed``) or a
``torch.Generator``. :func:`split` returns fresh JAX keys and repeats a torch key (a torch
generator is stateful), so the same algorithm code serves both backends.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

if TYPE_CHECKING:  # for type checkers only: importing ops loads neither library
    import jax
    import torch

    #: an array of either backend (a JAX tracer is a ``jax.Array`` too)
    Array: TypeAlias = "torch.Tensor | jax.Array"
    #: randomness: a JAX PRNG key, a ``torch.Generator`` or ``None`` (torch's global one)
    Key: TypeAlias = "jax.Array | torch.Generator | None"
else:
    Array = Any
    Key = Any

__all__ = [
    "is_torch",
    "is_jax",
    "backend_name",
    "is_concrete",
    "on_host",
    "sigmoid",
    "softplus",
    "logsumexp",
    "transpose",
    "where",
    "stop_gradient",
    "uniform",
    "normal",
    "log",
    "lgamma",
    "softmax",
    "categorical",
    "one_hot",
    "gather0",
    "binomial",
    "multinomial",
    "bernoulli",
    "split",
    "binary_states",
    "broadcast_to",
    "broadcast_shapes",
    "asarray_like",
    "to_numpy",
    "fixed_point",
    "iterate",
    "all_finite",
    "is_binary",
    "concat",
    "zeros",
    "zeros_like",
    "arange",
    "largest_count",
    "addmm",
    "with_analytic_grad",
]


def is_torch(x: Any) -> bool:
    """True when ``x`` is a ``torch.Tensor`` (torch is only looked at if imported)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def is_jax(x: Any) -> bool:
    """True when ``x`` is a JAX array or tracer (JAX is only looked at if imported)."""
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(x, jax.Array)


def backend_name(*xs: Any) -> str:
    """``"torch"`` or ``"jax"`` from the first array argument that is one of them."""
    for x in xs:
        if is_torch(x):
            return "torch"
        if is_jax(x):
            return "jax"
    raise TypeError(
        "expected torch tensors or JAX arrays, got " + ", ".join(type(x).__name__ for x in xs)
    )


def _jnp():
    # lazy: keeps this module free of jax until that backend is used
    import jax.numpy as jnp

    return jnp


def is_concrete(x: Any) -> bool:
    """True when the values of ``x`` can be inspected now (not a JAX tracer)."""
    if is_jax(x):
        # lazy: keeps this module free of jax until that backend is used
        import jax

        return not isinstance(x, jax.core.Tracer)
    return True


def on_host(x: Any) -> bool:
    """True when reading the values of ``x`` costs no device round-trip: anything but a torch
    tensor in accelerator memory. Eager loops (torch) may inspect values on the host, e.g. to
    stop early; on an accelerator they must not, since every read waits for the device."""
    return not is_torch(x) or x.device.type == "cpu"


def sigmoid(x: Array) -> Array:
    """Logistic function ``g(x) = 1 / (1 + exp(-x))``."""
    if is_torch(x):
        return x.sigmoid()
    # lazy: keeps this module free of jax until that backend is used
    import jax

    return jax.nn.sigmoid(x)


def softplus(x: Array) -> Array:
    """``log(1 + exp(x))``, stable for large ``|x|``."""
    if is_torch(x):
        # lazy: keeps this module free of torch until that backend is used
        import torch.nn.functional as F

        return F.softplus(x)
    # lazy: keeps this module free of jax until that backend is used
    import jax

    return jax.nn.softplus(x)


def logsumexp(x: Array, axis: int = -1) -> Array:
    """Stable ``log(sum(exp(x), axis))``."""
    if is_torch(x):
        return x.logsumexp(dim=axis)
    # lazy: keeps this module free of jax until that backend is used
    import jax

    return jax.scipy.special.logsumexp(x, axis=axis)


def transpose(x: Array) -> Array:
    """Swap the last two axes."""
    if is_torch(x):
        return x.transpose(-1, -2)
    return _jnp().swapaxes(x, -1, -2)


def where(cond: Array, a: Array, b: Array) -> Array:
    """Elementwise ``cond ? a : b`` with broadcasting."""
    if is_torch(cond) or is_torch(a) or is_torch(b):
        # lazy: keeps this module free of torch until that backend is used
        import torch

        return torch.where(cond, a, b)
    return _jnp().where(cond, a, b)


def addmm(
    c: Array, a: Array, b: Array, beta: float = 1.0, alpha: float = 1.0, overwrite: bool = False
) -> Array:
    """``beta * c + alpha * (a @ b)`` (one fused BLAS call in torch). ``overwrite=True``
    (``c`` a temporary of the caller's) lets torch write the result into ``c`` instead of
    copying ``c`` into a new array first."""
    if is_torch(c):
        # lazy: keeps this module free of torch until that backend is used
        import torch

        if overwrite:
            return c.addmm_(a, b, beta=beta, alpha=alpha)
        return torch.addmm(c, a, b, beta=beta, alpha=alpha)
    return beta * c + alpha * (a @ b)


def with_analytic_grad(value_and_grads: Callable, diff: Sequence[Array], *const: Any) -> Array:
    """``value_and_grads(*diff, *const)[0]`` with gradients w.r.t. ``diff`` taken from its
    second output (a tuple of arrays shaped like ``diff``) instead of from autodiff.

    torch: a custom ``autograd.Function`` (the gradients are computed in the forward pass,
    reusing its intermediates, and scaled by the incoming gradient). JAX: the value is
    returned as computed, and autodiff differentiates it (XLA fuses the same work).
    """
    if is_torch(diff[0]):
        return _AnalyticGrad.apply(value_and_grads, len(diff), *diff, *const)
    return value_and_grads(*diff, *const, need_grads=False)[0]


def _make_analytic_grad():
    # lazy: keeps this module free of torch until that backend is used
    import torch

    class _Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, fn, n_diff, *args):
            with torch.no_grad():
                value, grads = fn(*args, need_grads=True)
            # intermediates of our own, not inputs or outputs: kept on ctx (torch's advice)
            # and handed over in backward without a reference left here, so that autograd
            # takes them as the parameters' .grad without copying 784x500 floats
            ctx.grads, ctx.fn, ctx.args = grads, fn, args
            ctx.versions = [a._version if isinstance(a, torch.Tensor) else None for a in args]
            ctx.n_const = len(args) - n_diff
            return value

        @staticmethod
        def backward(ctx, grad_out):
            grads, ctx.grads = ctx.grads, None
            if grads is None:  # a second backward through a retained graph: recompute
                now = [a._version if isinstance(a, torch.Tensor) else None for a in ctx.args]
                if now != ctx.versions:
                    raise RuntimeError(
                        "an input of this analytic gradient was modified in place since the "
                        "forward pass; recompute the loss before backpropagating again"
                    )
                with torch.no_grad():
                    _, grads = ctx.fn(*ctx.args, need_grads=True)
            # the usual ``loss.backward()`` seeds 1: skip the scaling pass (a CPU scalar is
            # read without a device sync; elsewhere the multiply stays)
            if not (grad_out.device.type == "cpu" and grad_out.numel() == 1 and grad_out == 1):
                grads = tuple(g * grad_out for g in grads)
            return (None, None, *grads) + (None,) * ctx.n_const

    return _Fn


class _LazyAnalyticGrad:
    _fn = None

    def apply(self, *args):
        if _LazyAnalyticGrad._fn is None:
            _LazyAnalyticGrad._fn = _make_analytic_grad()
        return _LazyAnalyticGrad._fn.apply(*args)


_AnalyticGrad = _LazyAnalyticGrad()


def stop_gradient(x: Array) -> Array:
    """Value of ``x`` with no gradient flowing back (``detach`` / ``lax.stop_gradient``)."""
    if is_torch(x):
        return x.detach()
    # lazy: keeps this module free of jax until that backend is used
    import jax

    return jax.lax.stop_gradient(x)


def uniform(key: Key, shape: Sequence[int], like: Array) -> Array:
    """Uniform(0, 1) draws of ``shape`` with the dtype (and device) of ``like``."""
    if is_torch(like):
        # lazy: keeps this module free of torch until that backend is used
        import torch

        return torch.rand(tuple(shape), generator=key, dtype=like.dtype, device=like.device)
    # lazy: keeps this module free of jax until that backend is used
    import jax

    return jax.random.uniform(key, tuple(shape), dtype=like.dtype)


def normal(key: Key, shape: Sequence[int], like: Array) -> Array:
    """Standard normal draws of ``shape`` with the dtype (and device) of ``like``."""
    if is_torch(like):
        # lazy: keeps this module free of torch until that backend is used
        import torch

        return torch.randn(tuple(shape), generator=key, dtype=like.dtype, device=like.device)
    # lazy: keeps this module free of jax until that backend is used
    import jax

    return jax.random.normal(key, tuple(shape), dtype=like.dtype)


def log(x: Array) -> Array:
    """Elementwise natural logarithm."""
    return x.log() if is_torch(x) else _jnp().log(x)


def softmax(x: Array, axis: int = -1) -> Array:
    """``exp(x - logsumexp(x))`` along ``axis``."""
    if is_torch(x):
        return x.softmax(axis)
    # lazy: keeps this module free of jax until that backend is used
    import jax

    return jax.nn.softmax(x, axis=axis)


def categorical(key: Key, logits: Array) -> Array:
    """Category indices (as floats, dtype of ``logits``) drawn from ``softmax(logits)`` along
    the last axis (Gumbel-max); shape ``logits.shape[:-1]``."""
    u = uniform(key, tuple(logits.shape), logits)
    tiny = 1e-20
    g = -log(-log(u * (1.0 - 2 * tiny) + tiny))
    if is_torch(logits):
        return (logits + g).argmax(-1).to(logits.dtype)
    return _jnp().argmax(logits + g, axis=-1).astype(logits.dtype)


def one_hot(index: Array, k: int, like: Array) -> Array:
    """``(index[..., None] == arange(k))`` in the dtype of ``like``; index -1 gives a zero row."""
    if is_torch(like):
        # lazy: keeps this module free of torch until that backend is used
        import torch

        ar = torch.arange(k, device=like.device)
        return (index[..., None] == ar).to(like.dtype)
    jnp = _jnp()
    return (index[..., None] == jnp.arange(k)).astype(like.dtype)


def gather0(a: Array, index: Array) -> Array:
    """``out[i, j..., k] = a[index[i, j...], j..., k]``: a per-element permutation along axis 0
    (``index`` has ``a``'s shape without the last axis; integer dtype)."""
    if is_torch(a):
        idx = index[..., None].expand(tuple(index.shape) + (a.shape[-1],))
        return a.gather(0, idx)
    jnp = _jnp()
    return jnp.take_along_axis(a, index[..., None], axis=0)


def lgamma(x: Array) -> Array:
    """Elementwise ``log Gamma(x)``."""
    if is_torch(x):
        return x.lgamma()
    # lazy: keeps this module free of jax until that backend is used
    import jax.scipy.special as jsp

    return jsp.gammaln(x)


def binomial(key: Key, n: Array, p: Array) -> Array:
    """``Binomial(n, p)`` draws (float counts) of the broadcast shape of ``n`` and ``p``."""
    if is_torch(p):
        # lazy: keeps this module free of torch until that backend is used
        import torch

        n, p = torch.broadcast_tensors(n, p)
        return torch.binomial(n.contiguous(), p.contiguous(), generator=key)
    # lazy: keeps this module free of jax until that backend is used
    import jax

    return jax.random.binomial(key, n, p).astype(p.dtype)


def multinomial(key: Key, n: Array, probs: Array, max_count: int | None = None) -> Array:
    """``Multinomial(n, probs)`` count vectors, shape ``probs.shape`` (``n``: ``probs.shape[:-1]``,
    whole numbers as floats).

    Exact in both ways it is computed: with a known bound on ``n`` (always in torch; in JAX
    when ``n`` is concrete or ``max_count`` is given) the words are drawn one by one by
    inverting the cumulative probabilities (``searchsorted``) and counted; otherwise (a traced
    ``n`` inside ``jit`` with no bound) the draws are split between the two halves of the
    categories by binomial draws, recursively (``ceil(log2 K)`` levels), which keeps shapes
    static.
    """
    if max_count is None and (is_torch(n) or is_concrete(n)):
        max_count = largest_count(n)  # reads n: loops should pass max_count
    if max_count is not None:
        return _multinomial_by_words(key, n, probs, max(1, int(max_count)))
    return _multinomial_by_halves(key, n, probs)


def _multinomial_by_words(key: Key, n: Array, probs: Array, max_count: int) -> Array:
    k = int(probs.shape[-1])
    batch = tuple(probs.shape[:-1])
    flat = probs.reshape((-1, k))
    rows = flat.shape[0]
    u = uniform(key, (rows, max_count), probs)
    nf = (n + zeros(batch, probs)).reshape((rows,))
    if is_torch(probs):
        # lazy: keeps this module free of torch until that backend is used
        import torch

        cdf = flat.cumsum(-1)
        cdf = cdf / cdf[:, -1:]
        idx = torch.searchsorted(cdf.contiguous(), (u * (1 - 1e-6)).contiguous()).clamp_(max=k - 1)
        keep = (torch.arange(max_count, device=probs.device)[None, :] < nf[:, None]).to(probs.dtype)
        out = torch.zeros_like(flat).scatter_add_(1, idx, keep)
        return out.reshape(tuple(probs.shape))
    # lazy: keeps this module free of jax until that backend is used
    import jax

    jnp = _jnp()
    cdf = jnp.cumsum(flat, -1)
    cdf = cdf / cdf[:, -1:]
    idx = jax.vmap(jnp.searchsorted)(cdf, u * (1 - 1e-6))
    idx = jnp.minimum(idx, k - 1)
    keep = (jnp.arange(max_count)[None, :] < nf[:, None]).astype(probs.dtype)
    out = jax.vmap(lambda i, w: jnp.zeros(k, probs.dtype).at[i].add(w))(idx, keep)
    return out.reshape(tuple(probs.shape))


def _multinomial_by_halves(key: Key, n: Array, probs: Array) -> Array:
    k = int(probs.shape[-1])
    depth = max(1, math.ceil(math.log2(k)))
    width = 2**depth
    batch = tuple(probs.shape[:-1])
    mass = concat([probs, zeros(batch + (width - k,), probs)], axis=-1) if width > k else probs
    counts = n[..., None] + zeros(batch + (1,), probs)
    keys = split(key, depth)
    for d in range(depth):
        m = 2**d
        halves = mass.reshape(batch + (m, 2, width // (2 * m))).sum(-1)
        total = halves.sum(-1)
        frac = halves[..., 0] / where(total > 0, total, total + 1.0)
        frac = where(frac > 1.0, frac * 0 + 1.0, where(frac < 0.0, frac * 0, frac))
        left = binomial(keys[d], counts, frac)
        both = concat([left[..., None], (counts - left)[..., None]], axis=-1)
        counts = both.reshape(batch + (2 * m,))
    return counts[..., :k]


def bernoulli(key: Key, probs: Array) -> Array:
    """Bernoulli draws with success probabilities ``probs``, as 0./1. of ``probs``' dtype.

    Compares uniforms with the probabilities, which is about twice as fast as
    ``torch.bernoulli`` on CPU (in torch in place, into the uniforms' own buffer).
    """
    u = uniform(key, tuple(probs.shape), probs)
    if is_torch(probs):
        return u.lt_(probs)  # in place on the fresh uniforms: no boolean temporary
    return (u < probs).astype(probs.dtype)


def split(key: Key, num: int = 2) -> list:
    """``num`` independent keys from ``key`` (a torch key is repeated: it is stateful)."""
    if key is None or is_torch_generator(key):
        return [key] * num
    # lazy: keeps this module free of jax until that backend is used
    import jax

    return list(jax.random.split(key, num))


def is_torch_generator(key: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(key, torch.Generator)


def binary_states(n: int, like: Array, start: int = 0, stop: int | None = None) -> Array:
    """Rows ``start..stop`` of the ``2**n`` binary vectors of length ``n`` (lexicographic).

    Returns shape ``(stop - start, n)`` with the dtype of ``like``; bit ``j`` of row ``k`` is
    ``(k >> (n - 1 - j)) & 1``.
    """
    stop = 2**n if stop is None else stop
    if is_torch(like):
        # lazy: keeps this module free of torch until that backend is used
        import torch

        idx = torch.arange(start, stop, device=like.device)
        shifts = torch.arange(n - 1, -1, -1, device=like.device)
        return ((idx[:, None] >> shifts) & 1).to(like.dtype)
    jnp = _jnp()
    idx = jnp.arange(start, stop, dtype=jnp.int32)
    shifts = jnp.arange(n - 1, -1, -1, dtype=jnp.int32)
    return ((idx[:, None] >> shifts) & 1).astype(like.dtype)


def broadcast_shapes(*shapes: Sequence[int]) -> tuple:
    """Numpy broadcasting of shapes; ``ValueError`` when they are incompatible."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(ndim):
        dims = {s[len(s) - ndim + i] for s in shapes if len(s) - ndim + i >= 0}
        dims.discard(1)
        if len(dims) > 1:
            raise ValueError(f"shapes {[tuple(s) for s in shapes]} cannot be broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def broadcast_to(x: Array, shape: Sequence[int]) -> Array:
    if is_torch(x):
        return x.expand(tuple(shape))
    return _jnp().broadcast_to(x, tuple(shape))


def asarray_like(x: Any, like: Array) -> Array:
    """``x`` as an array of ``like``'s backend and dtype."""
    if is_torch(like):
        # lazy: keeps this module free of torch until that backend is used
        import torch

        return torch.as_tensor(x, dtype=like.dtype, device=like.device)
    return _jnp().asarray(x, dtype=like.dtype)


def to_numpy(x: Array):
    """``x`` as numpy on the host (torch: detached and copied from its device; JAX: the
    global value of a sharded array, gathered from other processes when needed)."""

    if is_torch(x):
        return x.detach().cpu().numpy()
    if not getattr(x, "is_fully_addressable", True):
        # lazy: keeps this module free of jax until that backend is used
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def zeros(shape: Sequence[int], like: Array) -> Array:
    """Zeros of ``shape`` with the backend and dtype of ``like``."""
    if is_torch(like):
        # lazy: keeps this module free of torch until that backend is used
        import torch

        return torch.zeros(tuple(shape), dtype=like.dtype, device=like.device)
    return _jnp().zeros(tuple(shape), dtype=like.dtype)


def arange(n: int, like: Array) -> Array:
    """``0, 1, ..., n - 1`` with the dtype (and device) of ``like``, made there (no host data
    is copied, so it is cheap inside loops)."""
    if is_torch(like):
        # lazy: keeps this module free of torch until that backend is used
        import torch

        return torch.arange(n, dtype=like.dtype, device=like.device)
    return _jnp().arange(n, dtype=like.dtype)


def largest_count(n: Array) -> int:
    """The largest entry of ``n`` (whole numbers, e.g. document lengths) as a Python int, 0
    for an empty array. It reads ``n`` (a device round-trip for an accelerator tensor): call
    it once before a loop, not inside it."""
    if is_torch(n):
        return int(n.max()) if n.numel() else 0

    a = np.asarray(n)
    return int(a.max()) if a.size else 0


def zeros_like(x: Array) -> Array:
    if is_torch(x):
        # lazy: keeps this module free of torch until that backend is used
        import torch

        return torch.zeros_like(x)
    return _jnp().zeros_like(x)


def concat(xs: Sequence[Array], axis: int = 0) -> Array:
    if is_torch(xs[0]):
        # lazy: keeps this module free of torch until that backend is used
        import torch

        return torch.cat(list(xs), dim=axis)
    return _jnp().concatenate(list(xs), axis=axis)


def all_finite(x: Array) -> bool:
    """True when every entry of ``x`` is finite (concrete arrays only).

    Fast path: a sum is finite only if every entry is (NaN and inf propagate); only when the
    sum is not finite (an overflow of finite entries is possible) are the entries inspected.
    """
    if is_torch(x):
        # lazy: keeps this module free of torch until that backend is used
        import torch

        with torch.no_grad():
            if bool(torch.isfinite(x.sum())):
                return True
            return bool(torch.isfinite(x).all())

    a = np.asarray(x)  # numpy: never staged into a jit trace
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(a.sum()):
            return True
    return bool(np.isfinite(a).all())


def is_binary(x: Array) -> bool:
    """True when every entry of ``x`` is 0 or 1 (concrete arrays only)."""
    # x (1 - x) is exactly 0 for 0 and 1 and nonzero (or NaN/inf) for anything else; a sum of
    # absolute values has no cancellation. Twice as fast as comparing with 0 and 1.
    if is_torch(x):
        # lazy: keeps this module free of torch until that backend is used
        import torch

        with torch.no_grad():
            if x.ndim == 0:
                x = x.reshape(1)
            # in place and in chunks of rows: one temporary of at most ~4M entries, not up to
            # three of the whole array (a full epoch of data is checked at once)
            rows = max(1, (1 << 22) // max(1, math.prod(x.shape[1:])))
            for start in range(0, int(x.shape[0]), rows):
                part = x[start : start + rows]
                t = 1 - part
                if bool(t.mul_(part).abs_().sum() != 0):
                    return False
            return True

    a = np.asarray(x)  # numpy: comparisons make 1-byte temporaries, the fastest here
    return bool(((a == 0) | (a == 1)).all())


def fixed_point(
    sweep: Callable[[Any], Any],
    init: Any,
    num_iters: int,
    tol: float | None,
    change: Callable[[Any, Any], Any],
    like: Array,
) -> Any:
    """Iterate ``x <- sweep(x)`` at most ``num_iters`` times, stopping after the first sweep
    whose ``change(new, old)`` (a scalar) is below ``tol`` (``None``: never stop early).

    torch: a Python loop. On the CPU it exits early (reading ``change`` is free there); on
    an accelerator it never reads a value: once converged, the state is frozen on the device
    (``where``) for the remaining sweeps, which gives the same result as the early exit
    without a host round-trip per sweep. JAX (``like`` is a JAX array): one
    ``lax.while_loop``, so the state ``x`` must keep its pytree structure and dtypes."""
    if not is_jax(like):
        x = init
        if tol is None:
            for _ in range(num_iters):
                x = sweep(x)
            return x
        if on_host(like):
            for _ in range(num_iters):
                new = sweep(x)
                done = float(change(new, x)) < tol
                x = new
                if done:
                    break
            return x
        done = None
        for _ in range(num_iters):
            new = sweep(x)
            converged = change(new, x) < tol
            if done is None:
                x, done = new, converged
            else:
                x = _tree_where(done, x, new)
                done = done | converged
        return x
    # lazy: keeps this module free of jax until that backend is used
    import jax
    import jax.numpy as jnp

    stop = -1.0 if tol is None else tol

    def cond(c):
        it, _, delta = c
        return (it < num_iters) & (delta >= stop)

    def body(c):
        it, x, _ = c
        new = sweep(x)
        return it + 1, new, change(new, x)

    _, x, _ = jax.lax.while_loop(cond, body, (0, init, jnp.asarray(jnp.inf, like.dtype)))
    return x


def _tree_where(cond: Array, a: Any, b: Any) -> Any:
    """``where(cond, a, b)`` leaf by leaf over matching lists, tuples (named too), dicts."""
    if isinstance(a, dict):
        return type(a)((k, _tree_where(cond, a[k], b[k])) for k in a)
    if isinstance(a, (list, tuple)):
        parts = [_tree_where(cond, x, y) for x, y in zip(a, b)]
        return type(a)(*parts) if hasattr(a, "_fields") else type(a)(parts)
    if a is None or a is b:
        return a
    return where(cond, a, b)


def iterate(
    step: Callable[[Key, Any], Any],
    key: Key,
    carry: Any,
    num_steps: int,
    like: Array,
) -> Any:
    """Apply ``carry = step(key_t, carry)`` ``num_steps`` times and return the last carry.

    JAX (``like`` is a JAX array): one ``lax.scan`` with a fresh key per step, so the loop is
    compiled once; torch: a Python loop sharing the generator.
    """
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    if not is_jax(like):
        for _ in range(num_steps):
            carry = step(key, carry)
        return carry
    # lazy: keeps this module free of jax until that backend is used
    import jax

    if num_steps == 0:
        return carry
    keys = jax.random.split(key, num_steps)
    carry, _ = jax.lax.scan(lambda c, k: (step(k, c), None), carry, keys)
    return carry
