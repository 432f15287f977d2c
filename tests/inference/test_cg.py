"""Conjugate-gradient fine-tuning: the minimizer (exact on quadratics, converges on Rosenbrock,
Wolfe–Powell conditions at accepted steps), ``fine_tune(optimizer="cg")`` in both backends
(it learns; the backends follow the same trajectory), bad arguments."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from ebm_ppl.inference import cg

# ---- the minimizer -------------------------------------------------------------------------


def quadratic(seed: int, n: int):
    """``f(x) = x.A.x / 2 - b.x`` with a well-conditioned SPD ``A``, and its minimizer."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, n))
    a = q @ q.T + 0.1 * n * np.eye(n)
    b = rng.standard_normal(n)

    def f_and_grad(x):
        return 0.5 * x @ a @ x - b @ x, a @ x - b

    return f_and_grad, np.linalg.solve(a, b)


def rosenbrock(x):
    r = x[1:] - x[:-1] ** 2
    f = np.sum(100 * r**2 + (1 - x[:-1]) ** 2)
    g = np.zeros_like(x)
    g[:-1] = -400 * x[:-1] * r - 2 * (1 - x[:-1])
    g[1:] += 200 * r
    return f, g


# near-exact line searches: on a quadratic, CG then ends at the minimizer after n searches
EXACT = cg.LineSearchOptions(sufficient_decrease=1e-8, curvature=1e-6, interp_limit=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n", [3, 8])
def test_quadratic_reaches_exact_minimizer_in_n_line_searches(seed, n):
    f_and_grad, x_star = quadratic(seed, n)
    state, infos = cg.minimize(f_and_grad, np.zeros(n), max_line_searches=n, options=EXACT)
    assert len(infos) == n and all(i.success for i in infos)
    np.testing.assert_allclose(state.position, x_star, rtol=0, atol=1e-10 * np.abs(x_star).max())


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n", [8, 20])
def test_quadratic_converges_with_default_line_search(seed, n):
    """The default (inexact, sigma = 0.1) searches lose exact n-step termination but still
    reach the minimizer to 1e-7 (30 problems tried: within 5.5 n searches for n = 8, 2.4 n
    for n = 20)."""
    f_and_grad, x_star = quadratic(seed, n)
    state, infos = cg.minimize(f_and_grad, np.zeros(n), max_line_searches=8 * n, gtol=1e-9)
    np.testing.assert_allclose(state.position, x_star, rtol=0, atol=1e-7 * np.abs(x_star).max())
    values = [i.value for i in infos]
    assert all(b <= a for a, b in zip(values, values[1:]))  # never goes up


@pytest.mark.parametrize("x0", [[-1.2, 1.0], [0.0] * 5, [-1.0] * 10])
def test_rosenbrock_converges(x0):
    state, infos = cg.minimize(rosenbrock, np.array(x0), max_line_searches=1000, gtol=1e-8)
    np.testing.assert_allclose(state.position, np.ones(len(x0)), atol=1e-6)
    assert state.value < 1e-12
    assert sum(i.num_evals for i in infos) < 3000


@pytest.mark.parametrize("problem", ["rosenbrock", "quadratic"])
def test_wolfe_powell_conditions_hold_at_accepted_steps(problem):
    if problem == "rosenbrock":
        f_and_grad, x = rosenbrock, np.array([-1.2, 1.0, 0.5, -0.3])
    else:
        f_and_grad, _ = quadratic(3, 12)
        x = np.ones(12)
    opts = cg.LineSearchOptions()
    rho, sig = opts.sufficient_decrease, opts.curvature
    state = cg.init(x, f_and_grad)
    accepted = 0
    for _ in range(40):
        if np.abs(state.grad).max() < 1e-6:  # converged: later searches meet rounding
            break
        slope0 = float(state.grad @ state.direction)
        old_x, old_f, d = state.position, state.value, state.direction
        state, info = cg.step(state, f_and_grad, opts)
        assert info.num_evals <= opts.max_evals
        if not info.success:
            assert state.value <= old_f  # a failed search returns its lowest point
            continue
        accepted += 1
        np.testing.assert_array_equal(state.position, old_x + info.step * d)
        f_new, g_new = f_and_grad(state.position)
        assert f_new == state.value and info.step > 0
        assert f_new <= old_f + rho * info.step * slope0  # sufficient decrease
        assert abs(g_new @ d) <= -sig * slope0  # (strong) curvature
        assert state.grad @ state.direction < 0  # the next direction descends
    assert accepted >= 10


def test_line_search_backs_off_from_non_finite_values_and_extrapolates():
    """Non-finite values beyond x = 2 make the search shrink its step; a far minimizer is
    reached by extrapolation (steps grow by at most 3x per evaluation)."""

    def f_and_grad(x):
        if x[0] > 2:
            return np.inf, np.full(1, np.nan)
        return float((x[0] - 1.5) ** 2), 2 * (x - 1.5)

    x0 = np.zeros(1)
    f0, g0 = f_and_grad(x0)
    res = cg.line_search(f_and_grad, x0, f0, g0, -g0, 10.0)
    assert res.success and abs(res.step * 3 - 1.5) < 0.15
    far = cg.line_search(f_and_grad, x0, f0, g0, -g0, 1e-3)
    assert far.success and far.num_evals <= 10


def test_stationary_point_and_non_descent_direction():
    f_and_grad, x_star = quadratic(0, 4)
    state, infos = cg.minimize(f_and_grad, x_star, max_line_searches=3, gtol=1e-12)
    assert infos == [] and state.value == f_and_grad(x_star)[0]
    s = cg.init(np.zeros(4), f_and_grad)
    uphill = s._replace(direction=-s.direction)  # step() restarts along steepest descent
    new, info = cg.step(uphill, f_and_grad)
    assert info.success and new.value < s.value


def test_minimize_minibatches_visits_batches_in_order():
    """Two quadratic objectives in turn: the first leaves us at its minimizer, the second
    starts there (recorded start values and aux) and ends at its own."""
    fs = [quadratic(s, 3) for s in (0, 1)]
    seen = []

    def evaluate(x, b):
        seen.append(b)
        f, g = fs[b][0](x)
        return f, g, 10.0 * b

    x, info = cg.minimize_minibatches(evaluate, np.zeros(3), 2, max_line_searches=3, options=EXACT)
    assert seen == sorted(seen) and set(seen) == {0, 1}
    np.testing.assert_allclose(x, fs[1][1], atol=1e-9)
    assert info.values[1] == pytest.approx(fs[1][0](fs[0][1])[0], abs=1e-9)
    assert list(info.aux) == [0.0, 10.0] and info.num_line_searches == 6
    assert info.num_failed == 0 and info.num_evals == len(seen)


def test_minimizer_bad_arguments():
    f_and_grad, _ = quadratic(0, 3)
    x0 = np.zeros(3)
    with pytest.raises(ValueError, match="max_line_searches must be a positive int"):
        cg.minimize(f_and_grad, x0, max_line_searches=0)
    with pytest.raises(ValueError, match="gtol must be"):
        cg.minimize(f_and_grad, x0, max_line_searches=1, gtol=-1.0)
    with pytest.raises(ValueError, match="position must be finite"):
        cg.minimize(f_and_grad, np.array([0.0, np.nan, 0.0]), max_line_searches=1)
    with pytest.raises(ValueError, match="position must be a non-empty 1-D array"):
        cg.minimize(f_and_grad, np.zeros((3, 1)), max_line_searches=1)
    with pytest.raises(ValueError, match="gradient of 2 entries for 3 parameters"):
        cg.minimize(lambda x: (0.0, np.zeros(2)), x0, max_line_searches=1)
    with pytest.raises(ValueError, match="must be finite at the starting position"):
        cg.minimize(lambda x: (np.nan, x), x0, max_line_searches=1)
    with pytest.raises(TypeError, match="f_and_grad must be a callable"):
        cg.minimize(None, x0, max_line_searches=1)
    bad = {
        "sufficient_decrease": (0.0, "sufficient_decrease must lie in"),
        "curvature": (0.01, "curvature must lie in"),  # below sufficient_decrease = 0.05
        "interp_limit": (0.5, "interp_limit must lie in"),
        "extrap_limit": (1.0, "extrap_limit must be"),
        "max_evals": (0, "max_evals must be a positive int"),
        "max_step_ratio": (np.inf, "max_step_ratio must be"),
    }
    for field, (value, msg) in bad.items():
        with pytest.raises(ValueError, match=msg):
            cg.minimize(
                f_and_grad,
                x0,
                max_line_searches=1,
                options=cg.LineSearchOptions()._replace(**{field: value}),
            )
    f0, g0 = f_and_grad(x0)
    with pytest.raises(ValueError, match="direction must be a descent direction"):
        cg.line_search(f_and_grad, x0, f0, g0, g0, 1.0)
    with pytest.raises(ValueError, match="step must be a finite number > 0"):
        cg.line_search(f_and_grad, x0, f0, g0, -g0, 0.0)
    with pytest.raises(ValueError, match="num_batches must be a positive int"):
        cg.minimize_minibatches(lambda x, b: (*f_and_grad(x), 0.0), x0, 0)


# ---- fine_tune(optimizer="cg") in both backends ---------------------------------------------


def classification_problem(seed: int, n: int = 200, dtype=np.float32):
    """A tiny 6-5-4 DBN's weights, a softmax output layer, and 3-class data."""
    rng = np.random.default_rng(seed)
    sizes = (6, 5, 4)
    ws = [rng.standard_normal((a, b)).astype(dtype) for a, b in zip(sizes, sizes[1:])]
    down = [(0.5 * rng.standard_normal(a)).astype(dtype) for a in sizes[:-1]]
    up = [(0.5 * rng.standard_normal(b)).astype(dtype) for b in sizes[1:]]
    out = (0.01 * rng.standard_normal((4, 3))).astype(dtype)
    x = rng.random((n, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > x[:, 2] + 0.5).astype(np.int64) + (x[:, 3] > 0.7)
    return (ws, down, up), out, x, y


def _x64():
    """JAX's float64 mode for the duration of a ``with`` block."""
    import jax

    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64  # older JAX

    return enable_x64(True)


def run_fine_tune(name: str, problem, float64: bool = False, **kw):
    """``fine_tune(optimizer="cg")`` in backend ``name`` from the problem's parameters.
    Returns (history, weight arrays after, (full-data loss before, after))."""
    (ws, down, up), out, x, y = problem
    if name == "torch":
        import torch

        import ebm_ppl.pyro as pe

        clf = pe.DBNClassifier(pe.DBN(*([torch.tensor(a) for a in t] for t in (ws, down, up))), 3)
        with torch.no_grad():
            clf.weights[-1].copy_(torch.tensor(out))
        xt, yt = torch.tensor(x).to(clf.weights[0].dtype), torch.tensor(y)

        def loss():
            with torch.no_grad():
                return float(torch.nn.functional.cross_entropy(clf(xt), yt))

        before = loss()
        hist = pe.fine_tune(clf, xt, yt, optimizer="cg", progress_bar=False, **kw)
        return hist, [w.detach().numpy() for w in clf.weights], (before, loss())
    import jax.numpy as jnp
    import optax

    import ebm_ppl.numpyro as npe

    with _x64() if float64 else contextlib.nullcontext():
        # the classifier_init layout, built directly (no float64 PRNG to compile)
        params = {
            "weights": [jnp.asarray(a) for a in [*ws, out]],
            "biases": [jnp.asarray(a) for a in [*up, np.zeros(3, out.dtype)]],
        }

        def loss(p):
            if float64:  # (spares the eager float64 compilations; not needed there)
                return None
            logits = npe.classifier_logits(p, jnp.asarray(x))
            return float(optax.softmax_cross_entropy_with_integer_labels(logits, y).mean())

        before = loss(params)
        params, hist = npe.fine_tune(params, x, y, "cg", progress_bar=False, **kw)
        return hist, [np.asarray(w) for w in params["weights"]], (before, loss(params))


def test_cg_fine_tuning_learns(backend):
    problem = classification_problem(0)
    hist, _, (before, after) = run_fine_tune(
        backend.name, problem, num_epochs=3, batch_size=100, seed=1
    )
    assert after < before - 0.1
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert all(0 < h["cg_evals"] for h in hist) and all(0 <= h["train_error"] <= 1 for h in hist)
    if backend.name == "torch":  # (no second JAX compilation: the test suite's time)
        # the default minibatch of the recipe is 1,000 (here: all 200 points, one batch)
        (rec,), _, _ = run_fine_tune(backend.name, problem, num_epochs=1, cg_line_searches=2)
        assert rec["cg_evals"] <= 1 + 2 * cg.LineSearchOptions().max_evals


def test_cg_fine_tuning_in_several_calls_equals_one_call():
    """Each minibatch starts afresh, so with first_epoch counting on, two one-epoch calls
    give the same network as one two-epoch call (as the benchmarks call it)."""
    import torch

    import ebm_ppl.pyro as pe

    (ws, down, up), out, x, y = classification_problem(3)
    dbn = pe.DBN(*([torch.tensor(a) for a in t] for t in (ws, down, up)))
    nets = [pe.DBNClassifier(dbn, 3, generator=torch.Generator().manual_seed(0)) for _ in "ab"]
    xt, yt = torch.tensor(x), torch.tensor(y)
    kw = dict(batch_size=100, seed=2, optimizer="cg", progress_bar=False)
    one = pe.fine_tune(nets[0], xt, yt, num_epochs=2, **kw)
    two = [pe.fine_tune(nets[1], xt, yt, num_epochs=1, first_epoch=e, **kw)[0] for e in (0, 1)]
    assert one == two
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_cg_fine_tuning_backends_agree_in_float64():
    """Same parameters, data and minibatch order: in float64 the torch and JAX trajectories
    are the same to rounding (the adapters run the same algorithm)."""
    problem = classification_problem(1, dtype=np.float64)
    kw = dict(num_epochs=2, batch_size=100, seed=1)
    hist_t, w_t, _ = run_fine_tune("torch", problem, **kw)
    hist_j, w_j, _ = run_fine_tune("jax", problem, float64=True, **kw)
    assert w_j[0].dtype == np.float64
    for a, b in zip(hist_t, hist_j):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-9)
        assert a["cg_evals"] == b["cg_evals"]
    for a, b in zip(w_t, w_j):
        np.testing.assert_allclose(a, b, atol=1e-7)


def test_cg_fine_tuning_backends_agree_in_float32():
    """In float32 the trajectories drift apart slowly: a line search's cubic fit divides small
    differences of float32 losses, so each search turns rounding (1e-7) into relative step
    differences of up to ~1e-4, which later searches carry on. Over one epoch of two
    minibatches (20 problems tried: at most 2e-5 apart in the recorded loss, 2e-3 in the final
    loss, 3% of the distance moved in the weights) they still follow the same path."""
    problem = classification_problem(2)
    (ws, _, _), out, _, _ = problem
    kw = dict(num_epochs=1, batch_size=100, seed=1)
    (rec_t,), w_t, (before_t, after_t) = run_fine_tune("torch", problem, **kw)
    (rec_j,), w_j, (before_j, after_j) = run_fine_tune("jax", problem, **kw)
    assert before_t == pytest.approx(before_j, abs=1e-6)
    assert rec_t["train_loss"] == pytest.approx(rec_j["train_loss"], abs=5e-4)
    assert after_t == pytest.approx(after_j, abs=5e-3)
    assert after_t < before_t - 0.02
    flat = [np.concatenate([a.ravel() for a in w]) for w in ([*ws, out], w_t, w_j)]
    assert np.linalg.norm(flat[1] - flat[2]) < 0.1 * np.linalg.norm(flat[1] - flat[0])


def test_cg_fine_tuning_bad_arguments():
    import torch

    import ebm_ppl.numpyro as npe
    import ebm_ppl.pyro as pe

    (ws, down, up), _, x, y = classification_problem(0)
    clf = pe.DBNClassifier(pe.DBN(*([torch.tensor(a) for a in t] for t in (ws, down, up))), 3)
    xt, yt = torch.tensor(x), torch.tensor(y)
    with pytest.raises(ValueError, match="optimizer must be 'sgd', 'cg' or an optimizer"):
        pe.fine_tune(clf, xt, yt, optimizer="bfgs", progress_bar=False)
    with pytest.raises(ValueError, match="cg_line_searches must be a positive int"):
        pe.fine_tune(clf, xt, yt, optimizer="cg", cg_line_searches=0, progress_bar=False)
    with pytest.raises(ValueError, match="weight_decay applies to the SGD optimizer only"):
        pe.fine_tune(clf, xt, yt, optimizer="cg", weight_decay=1e-3, progress_bar=False)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        pe.fine_tune(clf, xt, yt, optimizer="cg", batch_size=0, progress_bar=False)
    for p in clf.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no parameters with requires_grad"):
        pe.fine_tune(clf, xt, yt, optimizer="cg", progress_bar=False)

    import jax
    import jax.numpy as jnp

    dbn = npe.DBN(*([jnp.asarray(a) for a in t] for t in (ws, down, up)))
    params = npe.classifier_init(dbn, 3, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="optim must be 'sgd', 'cg' or an optimizer"):
        npe.fine_tune(params, x, y, "lbfgs", progress_bar=False)
    with pytest.raises(ValueError, match="cg_line_searches must be a positive int"):
        npe.fine_tune(params, x, y, "cg", cg_line_searches=1.5, progress_bar=False)
    with pytest.raises(ValueError, match=r"y must have shape \(200,\)"):
        npe.fine_tune(params, x, y[:10], "cg", progress_bar=False)
