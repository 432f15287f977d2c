"""Hierarchical-deep (HD) prior math (Salakhutdinov, Tenenbaum & Torralba 2013), for torch
and JAX: a nonparametric hierarchy over the top-level features of a DBM.

Each image ``n`` of category ``c`` is represented by binary top-level DBM features
``z_n in {0, 1}^F``. The hierarchy, from the top:

* a global feature mean ``m in (0, 1)^F``, ``m_f ~ Beta(1, 1)``;
* super-categories ``k = 1..K`` (a truncated stick-breaking Dirichlet process, the
  two-level nested CRP's truncated equivalent): weights ``w = stick(v)``,
  ``v_k ~ Beta(1, gamma)`` (eq. of Sethuraman 1994); the concentration ``gamma`` is either
  fixed or (``gamma=None``) learned inside the program, ``gamma ~ Gamma(1, 1)``; each
  super-category shares a distribution over features, ``theta_kf ~ Beta(a m_f, a (1 - m_f))``;
* each category ``c`` belongs to one super-category ``s_c ~ Categorical(w)`` and has its own
  feature probabilities drawn around its super-category's,
  ``phi_cf ~ Beta(alpha theta_(s_c) f, alpha (1 - theta_(s_c) f))``;
* ``z_nf ~ Bernoulli(phi_(c_n) f)``.

``phi`` is integrated out exactly (Beta-Bernoulli conjugacy), so a category enters only
through its counts: ``n_c`` images, ``k_cf`` of them with feature ``f`` on, and

    ``log p(z_c | theta_k) = sum_f [log B(alpha theta_kf + k_cf, alpha (1 - theta_kf) + n_c - k_cf)
                                    - log B(alpha theta_kf, alpha (1 - theta_kf))]``

(:func:`category_log_likelihood`). A new category seen through a few examples is assigned to a
super-category with probability ``∝ w_k p(examples | theta_k)`` and predicts a test image
``x`` by ``p(x_f = 1) = (alpha theta_kf + k_f) / (alpha + n)`` (:func:`predictive_log_prob`):
the one-shot rule, where the super-category supplies the prior that one example cannot.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ebm_ppl import ops
from ebm_ppl.ops import Array


def log_beta_fn(a: Array, b: Array) -> Array:
    """``log B(a, b) = lgamma(a) + lgamma(b) - lgamma(a + b)``, elementwise."""
    return ops.lgamma(a) + ops.lgamma(b) - ops.lgamma(a + b)


def stick_breaking_log_weights(v: Array) -> Array:
    """``log w`` ``(..., K)`` of the stick-breaking weights of fractions ``v`` ``(..., K-1)``:
    ``w_k = v_k prod_(j<k) (1 - v_j)`` and ``w_K = prod_j (1 - v_j)`` (they sum to one)."""
    log_v = ops.log(v)
    log_rest = ops.log(1.0 - v)
    zero = ops.zeros(tuple(v.shape[:-1]) + (1,), v)
    before = ops.concat([zero, _cumsum(log_rest)], axis=-1)  # sum_(j<k) log(1 - v_j)
    return ops.concat([log_v, zero], axis=-1) + before


def _cumsum(x: Array) -> Array:
    return x.cumsum(-1) if ops.is_torch(x) else ops._jnp().cumsum(x, axis=-1)


def _host(x: Any, dtype: Any = None) -> np.ndarray:
    """``x`` (numpy, torch, JAX or a sequence) as a numpy array on the host, of ``dtype``
    (``None``: its own)."""
    return np.asarray(ops.to_numpy(x), dtype)


def category_counts(features: Array, labels: Array, num_categories: int) -> tuple:
    """``(ones, counts)``: ``ones[c, f]`` the number of images of category ``c`` with feature
    ``f`` on, ``counts[c]`` the number of images of ``c``; ``features`` ``(N, F)`` binary
    (numpy, torch or JAX), ``labels`` ``(N,)`` integers in ``[0, num_categories)``. Returns
    numpy float32 arrays."""
    z, y = _host(features), _host(labels)
    if z.ndim != 2:
        raise ValueError(f"features must have shape (N, F), got {z.shape}")
    if y.shape != (z.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be {z.shape[0]} integers, got shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= num_categories):
        raise ValueError(f"labels must lie in [0, {num_categories})")
    if not np.isin(z, (0, 1)).all():
        raise ValueError("features must be binary (0/1); threshold the DBM's marginals first")
    ones = np.zeros((num_categories, z.shape[1]), np.float32)
    np.add.at(ones, y, z.astype(np.float32))
    counts = np.bincount(y, minlength=num_categories).astype(np.float32)
    return ones, counts


def category_log_likelihood(ones: Array, counts: Array, theta: Array, alpha: Any) -> Array:
    """``log p(z_c | theta_k)`` ``(..., C, K)`` with ``phi_c`` integrated out (module
    docstring): ``ones`` ``(C, F)``, ``counts`` ``(C,)``, ``theta`` ``(..., K, F)``."""
    a = alpha * theta[..., None, :, :]  # (..., 1, K, F)
    b = alpha * (1.0 - theta[..., None, :, :])
    k = ones[:, None, :]  # (C, 1, F)
    n = counts[:, None, None]
    return (log_beta_fn(a + k, b + n - k) - log_beta_fn(a, b)).sum(-1)


def assignment_log_probs(log_w: Array, loglik: Array) -> Array:
    """``log p(s_c = k | theta, w, data)`` ``(..., C, K)`` from the log weights ``(..., K)``
    and :func:`category_log_likelihood` ``(..., C, K)`` (exact enumeration of ``s_c``)."""
    joint = log_w[..., None, :] + loglik
    return joint - ops.logsumexp(joint, axis=-1)[..., None]


def marginal_log_likelihood(log_w: Array, loglik: Array) -> Array:
    """``sum_c log sum_k w_k p(z_c | theta_k)``, shape ``(...)``: the categories' data with
    their super-category assignments summed out."""
    return ops.logsumexp(log_w[..., None, :] + loglik, axis=-1).sum(-1)


def predictive_log_prob(
    x: Array, ones: Array, counts: Array, theta: Array, log_w: Array, alpha: Any
) -> Array:
    """``log p(x_n | examples of new category q)`` ``(..., N, Q)`` for test images ``x``
    ``(N, F)`` and new categories with example counts ``ones`` ``(Q, F)``, ``counts``
    ``(Q,)``: the super-category of each new category summed out with its posterior
    ``∝ w_k p(examples | theta_k)``; given it, ``p(x_f = 1) = (alpha theta_kf + k_qf) /
    (alpha + n_q)``. ``theta`` ``(..., K, F)``, ``log_w`` ``(..., K)``."""
    post = assignment_log_probs(log_w, category_log_likelihood(ones, counts, theta, alpha))
    p = (alpha * theta[..., None, :, :] + ones[:, None, :]) / (alpha + counts[:, None, None])
    # (..., Q, K, F) -> log p(x | q, k) (..., N, Q, K)
    xs = x[:, None, None, :]
    lp = xs * ops.log(p[..., None, :, :, :]) + (1.0 - xs) * ops.log(1.0 - p[..., None, :, :, :])
    lp = lp.sum(-1)
    return ops.logsumexp(lp + post[..., None, :, :], axis=-1)


def check_hd_args(num_super: Any, alpha: Any, a: Any, gamma: Any) -> None:
    """``ValueError`` unless ``num_super`` is a positive int and ``alpha``, ``a`` and ``gamma``
    are positive numbers (``gamma`` may also be ``None``: learned, see :func:`stick_sites`)."""
    if not isinstance(num_super, int) or isinstance(num_super, bool) or num_super < 1:
        raise ValueError(
            f"num_super must be a positive int (the truncation level), got {num_super!r}"
        )
    for name, x in (("alpha", alpha), ("a", a), ("gamma", gamma)):
        if name == "gamma" and x is None:
            continue
        if not isinstance(x, (int, float)) or isinstance(x, bool) or not x > 0:
            raise ValueError(
                f"{name} must be a positive number"
                + (" or None (learned)" if name == "gamma" else "")
                + f", got {x!r}"
            )


def stick_sites(ppl: Any, num_super: int, gamma: float | None, like: Array) -> Array:
    """The stick-breaking sites of both HD programs; returns the log weights ``log w``
    ``(K,)`` of the ``K = num_super`` super-categories. ``K > 1``: site ``v`` ``(K-1,)``,
    ``v_k ~ Beta(1, gamma)``; with ``gamma=None`` the concentration is learned, a scalar site
    ``gamma ~ Gamma(1, 1)`` (shape 1, rate 1: the usual vague choice for a Dirichlet-process
    mixture's concentration, Escobar & West 1995; prior mean 1, today's fixed default), sampled
    before ``v``. ``K = 1``: no sites (one super-category has weight 1, no sticks, and no
    ``gamma`` site either). ``like``: an array of the backend, dtype and device to use."""
    if num_super == 1:
        return ops.zeros((1,), like=like)
    one = ops.zeros((), like=like) + 1.0
    d = ppl.dist
    conc = ppl.sample("gamma", d.Gamma(one, one)) if gamma is None else gamma * one
    v = ppl.sample("v", d.Beta(one, conc).expand([num_super - 1]).to_event(1))
    return stick_breaking_log_weights(v)


def gamma_start(v: Any) -> np.float32:
    """A start for the learned ``gamma`` consistent with stick fractions ``v`` ``(K-1,)``: the
    mean of its conditional posterior given ``v``, ``Gamma(K, 1 - sum_k log(1 - v_k))`` (the
    ``Gamma(1, 1)`` prior times ``prod_k gamma (1 - v_k)^(gamma - 1)``)."""
    v = _host(v, np.float64)
    return np.float32(len(v) + 1.0) / np.float32(1.0 - np.log1p(-v).sum())


def check_init(init: Any) -> None:
    if init not in ("kmeans", "prior"):
        raise ValueError(f"init must be 'kmeans' or 'prior', got {init!r}")


def coassignment(assign_probs: Array) -> Array:
    """Posterior probability that two categories share a super-category, ``(C, C)``, from
    per-sample assignment probabilities ``(S, C, K)`` (invariant to label switching)."""
    r = _host(assign_probs, np.float64)
    return np.einsum("sck,sdk->cd", r, r) / r.shape[0]


def point_clustering(assign_probs: Array) -> Any:
    """A single clustering of the categories: among the per-sample most probable
    assignments, the one closest (squared error) to the posterior co-assignment matrix
    (Dahl 2006's least-squares clustering). Returns int labels ``(C,)``."""
    r = _host(assign_probs, np.float64)
    co = coassignment(r)
    best, best_loss = None, np.inf
    for s in r.argmax(-1):
        m = (s[:, None] == s[None, :]).astype(float)
        loss = ((m - co) ** 2).sum()
        if loss < best_loss:
            best, best_loss = s, loss
    _, labels = np.unique(best, return_inverse=True)
    return labels


class HDPosterior:
    """Posterior samples of the HD prior's continuous sites (``v`` ``(S, K-1)``, ``m``
    ``(S, F)``, ``theta`` ``(S, K, F)``; ``gamma`` ``(S,)`` when learned) with the discrete
    assignments enumerated exactly given each sample. Returned by ``fit_hd_prior`` of either
    frontend; arrays stay in the backend they came from."""

    def __init__(self, samples: dict, ones: Array, counts: Array, alpha: float) -> None:
        self.samples, self.ones, self.counts, self.alpha = samples, ones, counts, float(alpha)
        self.theta = samples["theta"]
        k = int(self.theta.shape[-2])
        if k == 1:
            self.log_w = ops.zeros(tuple(self.theta.shape[:-2]) + (1,), self.theta)
        else:
            self.log_w = stick_breaking_log_weights(samples["v"])

    @property
    def num_samples(self) -> int:
        return int(self.theta.shape[0])

    def assignment_probs(self) -> Array:
        """``p(s_c = k | theta, w, data)`` per sample, ``(S, C, K)``."""
        ll = category_log_likelihood(self.ones, self.counts, self.theta, self.alpha)
        return ops.softmax(assignment_log_probs(self.log_w, ll))

    def coassignment(self) -> Any:
        """Posterior probability that two categories share a super-category ``(C, C)``."""
        return coassignment(self.assignment_probs())

    def clustering(self) -> Any:
        """A point estimate of the super-categories (:func:`point_clustering`), ``(C,)``."""
        return point_clustering(self.assignment_probs())

    def predictive_log_prob(self, x: Array, ones: Array, counts: Array) -> Array:
        """``log p(x_n | examples of new category q)`` ``(N, Q)`` averaged over the posterior
        samples (log-mean-exp of :func:`predictive_log_prob`, one sample at a time: a
        compiled ``lax.map`` in JAX, a loop in torch)."""

        alpha = self.alpha
        if ops.is_jax(self.theta):
            # lazy: keeps this module free of jax until that backend is used
            import jax

            per = jax.lax.map(
                lambda tw: predictive_log_prob(x, ones, counts, tw[0], tw[1], alpha),
                (self.theta, self.log_w),
            )
            return ops.logsumexp(per, axis=0) - math.log(self.num_samples)
        total = None
        for s in range(self.num_samples):
            lp = predictive_log_prob(x, ones, counts, self.theta[s], self.log_w[s], alpha)
            total = lp if total is None else ops.logsumexp(ops.concat([total[None], lp[None]]), 0)
        return total - math.log(self.num_samples)

    def sample_new_category(self, rng: Any, ones: Array, counts: Array, num: int) -> Any:
        """Features ``(num, F)`` of new members of a category known through examples
        (``ones`` ``(F,)``, ``counts`` a number): per draw a posterior sample, its
        super-category ``∝ w_k p(examples | theta_k)``, ``phi ~ Beta(alpha theta_k + k,
        alpha (1 - theta_k) + n - k)`` and ``z ~ Bernoulli(phi)``. ``rng`` is a
        ``numpy.random.Generator``; numpy output."""
        theta, log_w = _host(self.theta, np.float64), _host(self.log_w, np.float64)
        k1 = _host(ones, np.float64).reshape(1, -1)
        n = _host(counts, np.float64).reshape(1)
        out = []
        for _ in range(num):
            s = rng.integers(self.num_samples)
            a, b = self.alpha * theta[s], self.alpha * (1 - theta[s])
            # lazy: optional heavy dependency (scipy), loaded only when needed
            from scipy.special import betaln

            ll = (betaln(a + k1, b + n - k1) - betaln(a, b)).sum(-1) + log_w[s]
            p = np.exp(ll - ll.max())
            k = rng.choice(len(p), p=p / p.sum())
            phi = rng.beta(a[k] + k1[0], b[k] + n[0] - k1[0])
            out.append((rng.random(phi.shape) < phi).astype(np.float32))
        return np.stack(out)


def kmeans_init(ones: Any, counts: Any, num_super: int, seed: int = 0) -> dict:
    """Starting values of ``v``, ``m`` and ``theta`` (numpy) for the sampler: k-means of the
    categories' smoothed feature means into ``num_super`` groups (fewer if there are fewer
    categories), ``theta`` the group means, ``v`` the stick fractions of the group sizes in
    decreasing order, ``m`` the overall mean.

    A mixture posterior is multimodal; from a random start NUTS tends to put every category
    in one component and never split it (the other components get no responsibility, hence
    no gradient). Starting from a clustering avoids that trap; the sampler then moves the
    assignments and the parameters from there."""
    # lazy: optional heavy dependency (sklearn), loaded only when needed
    from sklearn.cluster import KMeans

    ones, counts = _host(ones, float), _host(counts, float)
    means = (ones + 0.5) / (counts[:, None] + 1.0)
    k = min(num_super, len(means))
    labels = KMeans(k, n_init=5, random_state=seed).fit(means).labels_
    sizes = np.bincount(labels, minlength=k)
    order = np.argsort(-sizes)
    theta = np.stack([means[labels == j].mean(0) for j in order])
    if k < num_super:  # unused components start at the overall mean
        theta = np.concatenate([theta, np.repeat(means.mean(0)[None], num_super - k, 0)])
    w = np.concatenate([sizes[order], np.zeros(num_super - k)]) + 0.5
    w = w / w.sum()
    rest = 1.0 - np.concatenate([[0.0], np.cumsum(w)[:-1]])
    v = (w[:-1] / rest[:-1]).clip(1e-3, 1 - 1e-3)
    eps = 1e-3
    return {
        "v": v.astype(np.float32),
        "m": means.mean(0).clip(eps, 1 - eps).astype(np.float32),
        "theta": theta.clip(eps, 1 - eps).astype(np.float32),
    }


def select_alpha(
    ones: Any,
    counts: Any,
    num_super: int,
    grid: Any = (0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0),
    seed: int = 0,
) -> tuple[float, dict]:
    """Empirical Bayes for the concentration ``alpha`` (how closely categories follow their
    super-category): the value on ``grid`` with the largest marginal likelihood of the
    categories (assignments summed out) at the :func:`kmeans_init` parameters. Returns
    ``(alpha, {alpha: log-likelihood})`` (numpy arithmetic)."""
    init = kmeans_init(ones, counts, num_super, seed)
    ones, counts = _host(ones, float), _host(counts, float)
    # lazy: keeps this module free of torch until that backend is used
    import torch

    # a small float64 computation on the host, whatever device the data came from
    cpu = torch.device("cpu")
    t = {k: torch.as_tensor(np.asarray(v, np.float64), device=cpu) for k, v in init.items()}
    o, c = torch.as_tensor(ones, device=cpu), torch.as_tensor(counts, device=cpu)
    log_w = stick_breaking_log_weights(t["v"]) if num_super > 1 else o.new_zeros(1)
    scores = {}
    for a in grid:
        ll = category_log_likelihood(o, c, t["theta"], float(a))
        scores[float(a)] = float(marginal_log_likelihood(log_w, ll))
    best = max(scores, key=scores.get)
    return best, scores


def hd_program(
    ppl: Any,
    ones: Array,
    counts: Array,
    num_super: int = 10,
    alpha: float = 5.0,
    a: float = 2.0,
    gamma: float | None = 1.0,
    assignments: Array | None = None,
) -> None:
    """The HD prior over the categories' top-level DBM features as a program of the PPL
    ``ppl`` (:mod:`ebm_ppl.pyro.ppl` or :mod:`ebm_ppl.numpyro.ppl`): sites ``v``
    (stick-breaking fractions of ``num_super`` super-categories), ``m`` (global feature means),
    ``theta`` (each super-category's feature distribution). Each category's feature
    probabilities are integrated out; its super-category ``s`` is summed out in a ``factor``
    (exact enumeration), unless ``assignments`` ``(C,)`` fixes it (then ``s`` is an observed
    ``Categorical`` site). ``gamma``: the stick-breaking concentration, ``v_k ~ Beta(1,
    gamma)``; ``None`` learns it, a scalar site ``gamma ~ Gamma(1, 1)`` (:func:`stick_sites`).
    ``ones`` ``(C, F)`` / ``counts`` ``(C,)``: per-category feature counts
    (:func:`category_counts`); a tensor keeps its device."""
    check_hd_args(num_super, alpha, a, gamma)
    ones = ppl.asarray(ones, None)
    counts = ppl.asarray(counts, None, like=ones)
    c, f = ones.shape
    one = ops.zeros((), like=ones) + 1.0
    log_w = stick_sites(ppl, num_super, gamma, ones)
    m = ppl.sample("m", ppl.dist.Beta(one, one).expand([f]).to_event(1))
    theta = ppl.sample(
        "theta", ppl.dist.Beta(a * m, a * (1.0 - m)).expand([num_super, f]).to_event(2)
    )
    ll = category_log_likelihood(ones, counts, theta, alpha)
    if assignments is None:
        ppl.factor("z", marginal_log_likelihood(log_w, ll))
        return
    s = ppl.asarray(assignments, "int", like=ones)
    with ppl.plate("categories", c):
        ppl.sample("s", ppl.dist.Categorical(logits=log_w), obs=s)
    ppl.factor("z", ll[ops.arange(c, like=s), s].sum())


def fit_hd(
    ppl: Any,
    model: Any,
    rng_key: Any,
    ones: Any,
    counts: Any,
    num_super: int = 10,
    alpha: float = 5.0,
    a: float = 2.0,
    gamma: float | None = 1.0,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 1,
    max_tree_depth: int = 10,
    init: str = "kmeans",
    progress_bar: bool = False,
) -> HDPosterior:
    """NUTS (``ppl.run_nuts``) over the continuous sites of ``model`` (a frontend's
    ``hd_prior``, i.e. :func:`hd_program` for ``ppl``) with the assignments enumerated out,
    started at the k-means fit (``init="kmeans"``) or uniformly (``"prior"``); returns an
    :class:`HDPosterior`. ``gamma=None``: the concentration is learned (a site, sampled by
    NUTS with the others; the k-means start puts it at :func:`gamma_start` of the k-means
    sticks), its draws in ``samples["gamma"]`` ``(S,)``."""
    check_init(init)
    check_hd_args(num_super, alpha, a, gamma)
    ones = ppl.asarray(ones, "float32")
    counts = ppl.asarray(counts, "float32", like=ones)
    values = kmeans_init(ones, counts, num_super) if init == "kmeans" else None
    values = _with_gamma_start(values, gamma)
    samples = _run_nuts(
        ppl,
        model,
        (ones, counts, num_super, alpha, a, gamma),
        rng_key,
        values,
        num_super,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        progress_bar=progress_bar,
        max_tree_depth=max_tree_depth,
    )
    return HDPosterior(samples, ones, counts, alpha)


def _with_gamma_start(values: dict | None, gamma: float | None) -> dict | None:
    """``values`` (a k-means start) with the learned ``gamma``'s start (:func:`gamma_start` of
    its ``v``) when ``gamma`` is ``None``; unchanged otherwise."""
    if values is not None and gamma is None and "v" in values:
        values["gamma"] = gamma_start(values["v"])
    return values


def _run_nuts(
    ppl: Any, model: Any, args: tuple, rng_key: Any, values: dict | None, num_super: int, **nuts
) -> dict:
    """``ppl.run_nuts`` of ``model(*args)`` from ``values`` (a k-means start, or ``None`` for
    the sampler's own), which with one super-category has no stick-breaking sites ``v`` and
    ``gamma``."""
    if values is not None and num_super == 1:
        values.pop("v", None)
        values.pop("gamma", None)
    return ppl.run_nuts(model, args, rng_key=rng_key, init_values=values, **nuts)


# ---- real-valued top-level features: the conjugate Normal HD prior ---------------------------
#
# Each image ``n`` of category ``c`` is a real vector ``x_n in R^F`` (for instance the
# standardised logits of a DBM's top-level mean-field marginals). Given its super-category
# ``k``, a category has its own mean ``nu_c ~ N(mu_k, tau_k^2)`` (per feature) and its images
# scatter around it, ``x_nf ~ N(nu_cf, sigma_kf^2)``: the super-category supplies both where a
# category lies (``mu_k``) and how its images vary (``sigma_k``), the two things one example
# cannot tell. ``nu_c`` is integrated out exactly (Normal-Normal conjugacy), so a category enters
# only through ``n_c``, ``s1_c = sum_n x_n`` and ``s2_c = sum_n x_n^2``; per feature
#
#   ``log p(x_c | k) = -n/2 log 2pi - (n-1)/2 log sigma^2 - 1/2 log(sigma^2 + n tau^2)
#                      - SS / (2 sigma^2) - (s1 - n mu)^2 / (2 n (sigma^2 + n tau^2))``
#
# with ``SS = s2 - s1^2 / n`` (:func:`normal_category_log_likelihood`). A new category known by
# ``n`` examples predicts ``x ~ N(m_post, 1 / prec + sigma^2)`` with ``prec = 1 / tau^2 +
# n / sigma^2`` and ``m_post = (mu / tau^2 + s1 / sigma^2) / prec``, its super-category summed
# out with posterior ``∝ w_k p(examples | k)`` (:func:`normal_predictive_log_prob`).

_LOG_2PI = math.log(2.0 * math.pi)


def _features_and_labels(
    features: Array, labels: Array, num_categories: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: real ``features`` ``(N, F)`` as numpy float64 and integer ``labels`` ``(N,)``
    in ``[0, num_categories)`` as numpy, checked (``ValueError`` naming the argument)."""
    x, y = _host(features, np.float64), _host(labels)
    if x.ndim != 2:
        raise ValueError(f"features must have shape (N, F), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features must be finite")
    if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be {x.shape[0]} integers, got shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= num_categories):
        raise ValueError(f"labels must lie in [0, {num_categories})")
    return x, y


def category_moments(features: Array, labels: Array, num_categories: int) -> tuple:
    """``(counts, sums, sumsq)`` of real features ``(N, F)`` per category: ``counts[c]`` the
    number of images of category ``c`` ``(C,)``, ``sums[c]`` and ``sumsq[c]`` ``(C, F)`` the sum
    of its images' features and of their squares. ``labels`` ``(N,)`` integers in
    ``[0, num_categories)``. Returns numpy float64 arrays."""
    x, y = _features_and_labels(features, labels, num_categories)
    sums = np.zeros((num_categories, x.shape[1]))
    sumsq = np.zeros((num_categories, x.shape[1]))
    np.add.at(sums, y, x)
    np.add.at(sumsq, y, x * x)
    counts = np.bincount(y, minlength=num_categories).astype(np.float64)
    return counts, sums, sumsq


def normal_category_log_likelihood(
    counts: Array, sums: Array, sumsq: Array, mu: Array, sigma2: Array, tau2: Array
) -> Array:
    """``log p(x_c | k)`` ``(..., C, K)`` of each category's images under each super-category,
    the category mean integrated out (comment above): ``counts`` ``(C,)`` (each ``>= 1``),
    ``sums``, ``sumsq`` ``(C, F)``; ``mu``, ``sigma2`` (within-category variance), ``tau2``
    (between-category variance) ``(..., K, F)``."""
    n = counts[:, None, None]  # (C, 1, 1)
    s1, s2 = sums[:, None, :], sumsq[:, None, :]  # (C, 1, F)
    mu, sigma2, tau2 = mu[..., None, :, :], sigma2[..., None, :, :], tau2[..., None, :, :]
    big = sigma2 + n * tau2
    ss = s2 - s1 * s1 / n  # within-category sum of squares
    ss = ops.where(ss > 0, ss, ops.zeros_like(ss))  # rounding can make it slightly negative
    d = s1 - n * mu
    lp = (
        -0.5 * n * _LOG_2PI
        - 0.5 * (n - 1.0) * ops.log(sigma2)
        - 0.5 * ops.log(big)
        - 0.5 * ss / sigma2
        - 0.5 * d * d / (n * big)
    )
    return lp.sum(-1)


def normal_predictive_log_prob(
    x: Array,
    counts: Array,
    sums: Array,
    sumsq: Array,
    mu: Array,
    sigma2: Array,
    tau2: Array,
    log_w: Array,
) -> Array:
    """``log p(x_n | examples of new category q)`` ``(..., N, Q)`` for test features ``x``
    ``(N, F)`` and new categories with example moments ``counts`` ``(Q,)``, ``sums``, ``sumsq``
    ``(Q, F)`` (:func:`category_moments`): the super-category of each new category summed out
    with its posterior ``∝ w_k p(examples | k)``; given it, ``x_f ~ N(m_post, 1 / prec +
    sigma^2)`` (comment above). ``mu``, ``sigma2``, ``tau2`` ``(..., K, F)``, ``log_w``
    ``(..., K)``."""
    ll = normal_category_log_likelihood(counts, sums, sumsq, mu, sigma2, tau2)
    post = assignment_log_probs(log_w, ll)  # (..., Q, K)
    n = counts[:, None, None]
    prec = 1.0 / tau2[..., None, :, :] + n / sigma2[..., None, :, :]  # (..., Q, K, F)
    mean = mu[..., None, :, :] / tau2[..., None, :, :] + sums[:, None, :] / sigma2[..., None, :, :]
    mean = mean / prec
    var = 1.0 / prec + sigma2[..., None, :, :]
    # sum_f (x_f - mean_f)^2 / var_f expanded into matrix products: (..., N, Q * K)
    shape = tuple(var.shape)
    inv = (1.0 / var).reshape(shape[:-3] + (shape[-3] * shape[-2], shape[-1]))
    mean = mean.reshape(inv.shape)
    quad = (
        (x * x) @ ops.transpose(inv)
        - 2.0 * (x @ ops.transpose(mean * inv))
        + (mean * mean * inv).sum(-1)[..., None, :]
    )
    log_det = (ops.log(var).sum(-1) + shape[-1] * _LOG_2PI).reshape(inv.shape[:-1])
    lp = -0.5 * (quad + log_det[..., None, :])
    lp = lp.reshape(tuple(lp.shape[:-1]) + shape[-3:-1])  # (..., N, Q, K)
    return ops.logsumexp(lp + post[..., None, :, :], axis=-1)


def _map_samples(fn: Callable, *per_sample: Array) -> Array:
    """``log mean_s exp fn(*(a[s] for a in per_sample))``: a compiled ``lax.map`` in JAX, a
    loop in torch."""
    num = int(per_sample[0].shape[0])
    if ops.is_jax(per_sample[0]):
        # lazy: keeps this module free of jax until that backend is used
        import jax

        per = jax.lax.map(lambda t: fn(*t), per_sample)
        return ops.logsumexp(per, axis=0) - math.log(num)
    total = None
    for s in range(num):
        lp = fn(*(a[s] for a in per_sample))
        total = lp if total is None else ops.logsumexp(ops.concat([total[None], lp[None]]), 0)
    return total - math.log(num)


def _per_super(x: Array, mu: Array) -> Array:
    """``x`` with a super-category axis: ``(..., F) -> (..., 1, F)`` when it has one axis
    fewer than ``mu``."""
    return x[..., None, :] if len(x.shape) == len(mu.shape) - 1 else x


class HDNormalPosterior:
    """Posterior samples of the Normal HD prior's continuous sites (``v`` ``(S, K-1)``;
    ``mu`` ``(S, K, F)``; ``sigma``, ``tau`` ``(S, K, F)``, or ``(S, F)`` when shared by all
    super-categories; the global sites; ``gamma`` ``(S,)`` when learned) with the discrete
    assignments enumerated exactly given each sample. Returned by ``fit_hd_normal_prior`` of
    either frontend; arrays stay in the backend they came from."""

    def __init__(self, samples: dict, counts: Array, sums: Array, sumsq: Array) -> None:
        self.samples, self.counts, self.sums, self.sumsq = samples, counts, sums, sumsq
        self.mu = samples["mu"]
        shape = tuple(self.mu.shape)
        # shared variances (``(S, F)``, one per feature) apply to every super-category
        self.sigma2 = ops.broadcast_to(_per_super(samples["sigma"], self.mu) ** 2, shape)
        self.tau2 = ops.broadcast_to(_per_super(samples["tau"], self.mu) ** 2, shape)
        k = int(self.mu.shape[-2])
        if k == 1:
            self.log_w = ops.zeros(tuple(self.mu.shape[:-2]) + (1,), self.mu)
        else:
            self.log_w = stick_breaking_log_weights(samples["v"])

    @property
    def num_samples(self) -> int:
        return int(self.mu.shape[0])

    def assignment_probs(self) -> Array:
        """``p(s_c = k | parameters, data)`` per sample, ``(S, C, K)``."""
        ll = normal_category_log_likelihood(
            self.counts, self.sums, self.sumsq, self.mu, self.sigma2, self.tau2
        )
        return ops.softmax(assignment_log_probs(self.log_w, ll))

    def coassignment(self) -> Any:
        """Posterior probability that two categories share a super-category ``(C, C)``."""
        return coassignment(self.assignment_probs())

    def clustering(self) -> Any:
        """A point estimate of the super-categories (:func:`point_clustering`), ``(C,)``."""
        return point_clustering(self.assignment_probs())

    def predictive_log_prob(self, x: Array, counts: Array, sums: Array, sumsq: Array) -> Array:
        """``log p(x_n | examples of new category q)`` ``(N, Q)`` averaged over the posterior
        samples (log-mean-exp of :func:`normal_predictive_log_prob`)."""
        return _map_samples(
            lambda mu, s2, t2, lw: normal_predictive_log_prob(
                x, counts, sums, sumsq, mu, s2, t2, lw
            ),
            self.mu,
            self.sigma2,
            self.tau2,
            self.log_w,
        )

    def sample_new_category(
        self, rng: Any, sums: Array, sumsq: Array, count: float, num: int
    ) -> Any:
        """Features ``(num, F)`` of new members of a category known through ``count``
        examples (``sums``, ``sumsq`` ``(F,)``): per draw a posterior sample, its
        super-category ``∝ w_k p(examples | k)``, the category mean from its conjugate
        posterior and ``x ~ N(nu, sigma_k^2)``. ``rng`` a ``numpy.random.Generator``; numpy
        output."""
        mu, s2, t2, log_w = (
            _host(a, np.float64) for a in (self.mu, self.sigma2, self.tau2, self.log_w)
        )
        n = np.full(1, float(count))
        s1 = _host(sums, np.float64).reshape(1, -1)
        sq = _host(sumsq, np.float64).reshape(1, -1)
        out = []
        for _ in range(num):
            s = rng.integers(self.num_samples)
            ll = normal_category_log_likelihood(n, s1, sq, mu[s], s2[s], t2[s])[0] + log_w[s]
            p = np.exp(ll - ll.max())
            k = rng.choice(len(p), p=p / p.sum())
            prec = 1.0 / t2[s, k] + n[0] / s2[s, k]
            mean = (mu[s, k] / t2[s, k] + s1[0] / s2[s, k]) / prec
            nu = mean + rng.standard_normal(mean.shape) / np.sqrt(prec)
            out.append(nu + rng.standard_normal(mean.shape) * np.sqrt(s2[s, k]))
        return np.stack(out)


def normal_kmeans_init(
    counts: Any,
    sums: Any,
    sumsq: Any,
    num_super: int,
    seed: int = 0,
    shared_variances: bool = False,
) -> dict:
    """Starting values (numpy) of the Normal HD program's sites: k-means of the category means
    into ``num_super`` groups (fewer if there are fewer categories); per group ``mu`` the mean
    of its categories' means, ``tau`` their spread, ``sigma`` the pooled within-category sd;
    ``v`` the stick fractions of the group sizes (largest first); the global sites their
    averages (with ``shared_variances``, ``sigma`` and ``tau`` ``(F,)``: the geometric means
    over the groups). See :func:`kmeans_init` for why the sampler starts from a clustering."""
    # lazy: optional heavy dependency (sklearn), loaded only when needed
    from sklearn.cluster import KMeans

    n = _host(counts, float)
    s1, s2 = _host(sums, float), _host(sumsq, float)
    means = s1 / n[:, None]
    within = np.maximum(s2 - s1 * s1 / n[:, None], 0.0)  # (C, F) sums of squares
    k = min(num_super, len(means))
    labels = KMeans(k, n_init=5, random_state=seed).fit(means).labels_
    sizes = np.bincount(labels, minlength=k)
    order = np.argsort(-sizes)
    floor = 0.05 * means.std(0).mean() + 1e-3
    glob_tau = np.maximum(means.std(0), floor)
    glob_sigma = np.sqrt(within.sum(0) / max(n.sum() - len(n), 1.0)) + 1e-3
    mu, sigma, tau = [], [], []
    for j in order:
        g = labels == j
        mu.append(means[g].mean(0))
        tau.append(np.sqrt((means[g].var(0) * g.sum() + glob_tau**2) / (g.sum() + 1.0)))
        dof = max(n[g].sum() - g.sum(), 0.0)
        sigma.append(np.sqrt((within[g].sum(0) + glob_sigma**2) / (dof + 1.0)) + 1e-3)
    for _ in range(num_super - k):  # unused components start at the global values
        mu.append(means.mean(0))
        tau.append(glob_tau)
        sigma.append(glob_sigma)
    w = np.concatenate([sizes[order], np.zeros(num_super - k)]) + 0.5
    w = w / w.sum()
    rest = 1.0 - np.concatenate([[0.0], np.cumsum(w)[:-1]])
    v = (w[:-1] / rest[:-1]).clip(1e-3, 1 - 1e-3)
    mu, sigma, tau = np.stack(mu), np.stack(sigma), np.stack(tau)
    f32 = np.float32
    if shared_variances:
        sigma, tau = (np.exp(np.log(a[:k]).mean(0)) for a in (sigma, tau))
        return {
            "v": v.astype(f32),
            "m": mu.mean(0).astype(f32),
            "lam": (mu.std(0) + floor).astype(f32),
            "mu": mu.astype(f32),
            "sigma": sigma.astype(f32),
            "tau": tau.astype(f32),
        }
    return {
        "v": v.astype(f32),
        "m": mu.mean(0).astype(f32),
        "lam": (mu.std(0) + floor).astype(f32),
        "mu": mu.astype(f32),
        "s": np.exp(np.log(sigma).mean(0)).astype(f32),
        "sigma": sigma.astype(f32),
        "t": np.exp(np.log(tau).mean(0)).astype(f32),
        "tau": tau.astype(f32),
    }


def hd_normal_program(
    ppl: Any,
    counts: Array,
    sums: Array,
    sumsq: Array,
    num_super: int = 10,
    gamma: float | None = 1.0,
    spread: float = 0.5,
    assignments: Array | None = None,
    shared_variances: bool = False,
    learn_spread: bool = False,
) -> None:
    """The Normal HD prior over real-valued top-level features (standardised: about zero
    mean, unit variance per feature) as a program of the PPL ``ppl``. Sites:

    * ``v`` ``(K-1,)`` stick-breaking fractions, ``Beta(1, gamma)``; with ``gamma=None`` the
      concentration is learned, a scalar site ``gamma ~ Gamma(1, 1)`` (:func:`stick_sites`);
    * ``m`` ``(F,)`` global mean, ``N(0, 1)``; ``lam`` ``(F,)`` how far super-categories lie
      from it, ``HalfNormal(1)``; ``mu`` ``(K, F)`` super-category means, ``N(m, lam^2)``;
    * ``s``, ``t`` ``(F,)`` typical within- and between-category sd, ``LogNormal(0, 1)``;
      ``sigma``, ``tau`` ``(K, F)`` each super-category's, ``LogNormal(log s, spread)`` and
      ``LogNormal(log t, spread)`` (``tau`` plays the part of the Beta model's concentration
      ``alpha``, ``lam`` that of ``a``: both are learned here, not set).

    With ``shared_variances=True`` the super-categories differ only in their means: ``sigma``
    and ``tau`` are ``(F,)`` sites, ``LogNormal(0, 1)``, shared by all of them (no ``s``, ``t``
    sites; ``spread`` unused).

    With ``learn_spread=True`` (free variances only) how far a super-category's variances may
    stray from the typical ones is learned too: scalar sites ``spread_sigma``, ``spread_tau``
    ``~ HalfNormal(spread)`` replace the fixed ``spread`` as the scales of ``log sigma`` and
    ``log tau`` around ``log s`` and ``log t`` (a small learned spread shrinks every
    super-category's metric to the global one; a large one lets them differ).

    Each category's mean is integrated out (:func:`normal_category_log_likelihood`); its
    super-category is summed out in a ``factor`` (exact enumeration) unless ``assignments``
    ``(C,)`` fixes it (then ``s`` is an observed ``Categorical`` site). ``counts``, ``sums``,
    ``sumsq``: :func:`category_moments`."""
    check_hd_args(num_super, 1.0, 1.0, gamma)
    if not isinstance(spread, (int, float)) or isinstance(spread, bool) or not spread > 0:
        raise ValueError(f"spread must be a positive number, got {spread!r}")
    if learn_spread and shared_variances:
        raise ValueError("learn_spread needs shared_variances=False (shared variances have none)")
    sums = ppl.asarray(sums, None)
    counts = ppl.asarray(counts, None, like=sums)
    sumsq = ppl.asarray(sumsq, None, like=sums)
    if ops.is_concrete(counts) and float(ops.to_numpy(counts).min()) < 1:
        raise ValueError("every category needs at least one image (counts >= 1)")
    c, f = sums.shape
    zero = ops.zeros((), like=sums)
    one = zero + 1.0
    d = ppl.dist
    log_w = stick_sites(ppl, num_super, gamma, sums)
    m = ppl.sample("m", d.Normal(zero, one).expand([f]).to_event(1))
    lam = ppl.sample("lam", d.HalfNormal(one).expand([f]).to_event(1))
    mu = ppl.sample("mu", d.Normal(m, lam).expand([num_super, f]).to_event(2))
    if shared_variances:
        sigma = ppl.sample("sigma", d.LogNormal(zero, one).expand([f]).to_event(1))[None]
        tau = ppl.sample("tau", d.LogNormal(zero, one).expand([f]).to_event(1))[None]
    else:
        if learn_spread:
            sp_sigma = ppl.sample("spread_sigma", d.HalfNormal(spread * one))
            sp_tau = ppl.sample("spread_tau", d.HalfNormal(spread * one))
        else:
            sp_sigma = sp_tau = spread * one
        s = ppl.sample("s", d.LogNormal(zero, one).expand([f]).to_event(1))
        sigma = ppl.sample(
            "sigma", d.LogNormal(ops.log(s), sp_sigma).expand([num_super, f]).to_event(2)
        )
        t = ppl.sample("t", d.LogNormal(zero, one).expand([f]).to_event(1))
        tau = ppl.sample("tau", d.LogNormal(ops.log(t), sp_tau).expand([num_super, f]).to_event(2))
    ll = normal_category_log_likelihood(counts, sums, sumsq, mu, sigma * sigma, tau * tau)
    if assignments is None:
        ppl.factor("x", marginal_log_likelihood(log_w, ll))
        return
    a = ppl.asarray(assignments, "int", like=sums)
    with ppl.plate("categories", c):
        ppl.sample("s_c", d.Categorical(logits=log_w), obs=a)
    ppl.factor("x", ll[ops.arange(c, like=a), a].sum())


def fit_hd_normal(
    ppl: Any,
    model: Any,
    rng_key: Any,
    counts: Any,
    sums: Any,
    sumsq: Any,
    num_super: int = 10,
    gamma: float | None = 1.0,
    spread: float = 0.5,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 1,
    max_tree_depth: int = 10,
    init: str = "kmeans",
    progress_bar: bool = False,
    shared_variances: bool = False,
    learn_spread: bool = False,
) -> HDNormalPosterior:
    """NUTS (``ppl.run_nuts``) over the continuous sites of ``model`` (a frontend's
    ``hd_normal_prior``, i.e. :func:`hd_normal_program` for ``ppl``) with the assignments
    enumerated out, started at :func:`normal_kmeans_init` (``init="kmeans"``) or uniformly
    (``"prior"``); returns an :class:`HDNormalPosterior`. ``learn_spread``: see
    :func:`hd_normal_program` (the k-means start puts ``spread_sigma`` and ``spread_tau`` at
    the spread of the groups' log variances around their geometric mean). ``gamma=None``: the
    stick-breaking concentration is learned, as in :func:`fit_hd`."""
    check_init(init)
    check_hd_args(num_super, 1.0, 1.0, gamma)
    sums = ppl.asarray(sums, "float32")
    counts = ppl.asarray(counts, "float32", like=sums)
    sumsq = ppl.asarray(sumsq, "float32", like=sums)
    values = None
    if init == "kmeans":
        values = normal_kmeans_init(
            counts, sums, sumsq, num_super, shared_variances=shared_variances
        )
        if learn_spread and not shared_variances:
            for site, typical in (("spread_sigma", "s"), ("spread_tau", "t")):
                dev = np.log(values[site[7:]]) - np.log(values[typical])
                values[site] = np.float32(np.clip(np.sqrt((dev**2).mean()), 0.05, 2.0 * spread))
    values = _with_gamma_start(values, gamma)
    samples = _run_nuts(
        ppl,
        model,
        (counts, sums, sumsq, num_super, gamma, spread, None, shared_variances, learn_spread),
        rng_key,
        values,
        num_super,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        progress_bar=progress_bar,
        max_tree_depth=max_tree_depth,
    )
    return HDNormalPosterior(samples, counts, sums, sumsq)
