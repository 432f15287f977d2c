"""The DBM and multimodal-DBM packages keep every name of the former modules, and the helpers
written once for both (mean-field helpers, layer splitting, the odd/even sweep, parameter
specs, the greedy layer program) behave as the code they replace."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ebm_ppl.models.dbm as dbm
import ebm_ppl.models.multimodal as mm
from ebm_ppl import ops
from ebm_ppl.models import specs, variational
from ebm_ppl.models.dbn import greedy_layer_model

OLD_DBM_NAMES = """Array DBMParams frozen _vin _gaussian_log_norm check_dbm layer_logits energy
_odd_free_energy log_partition _split_odd _odd_states exact_sample gibbs_sweep
_sample_visible_field _sample_layer mean_field data_input _mean_field_sweep bottom_up _entropy
mean_field_bound mean_field_contrast contrast_statistics doubling tile_rbm tied_copies_chain
TiedCopiesMethods combine_pretrained CARRY_CHOICES DBMBase DBMPath split_odd split_carried
_logits_or_bias _unary path_terms _log_f_from_terms path_log_f _draw path_sweep path_step
check_same_sizes _Unbatched check_layer_lists DBMMethods check_visible check_mean_field_args
mean_field_fixed_point max_abs_diff DBMVisibleMethods augmented_logits augmented_input_size
check_num_classes classifier_params""".split()

OLD_MULTIMODAL_NAMES = """Array MultimodalParams frozen chain_from_pathways pathways_from_chain
sizes _input doc_length layer_logits energy log_prob _gaussian_log_norm _odd_free_energy
log_partition check_total_count _sample_even gibbs_sweep _visible_mean mean_field_init
mean_field mean_field_bound mean_field_contrast check_image check_text _check_count_arg
MultimodalDBMMethods _stack MultimodalVisibleMethods combine_pretrained_pathways _entropy
check_mean_field_args max_abs_diff""".split()


@pytest.mark.parametrize(
    "module, names", [(dbm, OLD_DBM_NAMES), (mm, OLD_MULTIMODAL_NAMES)], ids=["dbm", "mm"]
)
def test_every_old_name_is_still_there(module, names):
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing
    assert set(names) <= set(module.__all__)


def test_private_helpers_have_a_public_home():
    assert dbm._entropy is variational.bernoulli_entropy
    assert mm._entropy is variational.bernoulli_entropy
    assert dbm.check_mean_field_args is variational.check_mean_field_args
    assert dbm.max_abs_diff is variational.max_abs_diff


def test_bernoulli_entropy():
    mu = torch.tensor([[0.5, 0.0, 1.0, 0.25]])
    want = -(0.5 * np.log(0.5) * 2) - (0.25 * np.log(0.25) + 0.75 * np.log(0.75))
    got = variational.bernoulli_entropy(mu)
    assert got.shape == (1,)
    assert float(got[0]) == pytest.approx(want, abs=1e-5)


def test_split_layers_inverts_concat():
    parts = [torch.randn(3, n) for n in (2, 4, 1)]
    out = dbm.split_layers(torch.cat(parts, -1), (2, 4, 1))
    assert all(torch.equal(a, b) for a, b in zip(out, parts))


def test_odd_even_sweep_order_and_keep():
    calls = []

    def draw(key, layers, i):
        calls.append(i)
        return layers[i] + 1

    out = dbm.odd_even_sweep(None, [torch.zeros(1)] * 5, draw, keep=(0,))
    assert calls == [1, 3, 2, 4]
    assert [float(x) for x in out] == [0.0, 1.0, 1.0, 1.0, 1.0]


def test_specs_tables_give_the_frontends_constraints():
    from pyro.distributions import constraints

    got = specs.arg_constraints(specs.GAUSSIAN_RBM_PARAMS, lambda k, d: (k, d))
    assert got == {
        "weights": ("real", 2),
        "visible_bias": ("real", 1),
        "hidden_bias": ("real", 1),
        "sigma": ("positive", 1),
    }
    from ebm_ppl.pyro import RBM

    assert RBM.arg_constraints["visible_bias"] is constraints.real_vector


class _FakePPL:
    def __init__(self):
        self.sites = {}

    def param(self, name, value):
        self.sites[name] = value
        return value

    def param_value(self, x):
        return x

    def plate(self, name, size):
        import contextlib

        return contextlib.nullcontext()

    def sample(self, name, d, obs=None):
        self.sites[name] = (d, obs)


def test_greedy_layer_model_doubles_the_input():
    ppl = _FakePPL()
    init = (torch.zeros(4, 3), torch.zeros(4), torch.zeros(3))
    model = greedy_layer_model(ppl, lambda w, lo, hi: (w, lo, hi), init, ("w", "b", "c"), "x", 2)
    model(torch.ones(5, 2))
    (w, lo, hi), obs = ppl.sites["x"]
    assert obs.shape == (5, 4) and w is init[0]


def test_param_value_copies_in_pyro():
    from ebm_ppl.numpyro import ppl as nppl
    from ebm_ppl.pyro import ppl as pppl

    x = torch.ones(2, requires_grad=True)
    y = pppl.param_value(x)
    assert torch.equal(x, y) and y is not x and not y.requires_grad
    a = np.ones(2)
    assert nppl.param_value(a) is a


def test_dbm_gibbs_sweep_unchanged_by_the_shared_sweep():
    """The shared sweep draws what the former loop drew for the same key."""
    import jax

    rng = np.random.default_rng(0)
    ws = [
        ops.asarray_like(rng.standard_normal(s).astype(np.float32), jax.numpy.zeros(1))
        for s in ((3, 4), (4, 2))
    ]
    bs = [jax.numpy.zeros(n) for n in (3, 4, 2)]
    params = dbm.DBMParams(tuple(ws), tuple(bs))
    layers = [jax.numpy.ones((5, n)) for n in (3, 4, 2)]
    key = jax.random.PRNGKey(1)
    got = dbm.gibbs_sweep(key, params, layers, clamp_v=True)
    k_odd, k_even = ops.split(key, 2)
    want = list(layers)
    keys = ops.split(k_odd, 3)
    want[1] = ops.bernoulli(keys[1], ops.sigmoid(dbm.layer_logits(params, want, 1)))
    keys = ops.split(k_even, 3)
    want[2] = ops.bernoulli(keys[2], ops.sigmoid(dbm.layer_logits(params, want, 2)))
    assert all(bool((a == b).all()) for a, b in zip(got, want))
