"""The constructed tagging process: deterministic per seed, and its documented statistics."""

from __future__ import annotations

import numpy as np
import pytest

from ebm_ppl.datasets.tagged_digits import (
    ATTRIBUTES,
    DISTRACTORS,
    SYNONYMS,
    VOCABULARY,
    TaggingProcess,
    average_precision,
    cosine_retrieval_map,
    make_tags,
    precision_at_k,
    relevant_words,
    standardize,
    synonym_words,
)

N = 20_000


def labels(seed=0, n=N):
    return np.random.default_rng(seed).integers(0, 10, n)


def test_vocabulary_and_determinism():
    assert len(VOCABULARY) == len(set(VOCABULARY)) == 54
    y = labels()
    a, b = make_tags(y, seed=3), make_tags(y, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, make_tags(y, seed=4))
    assert a.shape == (N, 54) and a.dtype == np.float32
    assert set(np.unique(a)) <= {0.0, 1.0}
    assert a.sum(1).max() <= TaggingProcess().max_tags


@pytest.mark.parametrize("seed", [0, 1])
def test_documented_statistics_hold(seed):
    """Untagged fraction, the chance a tagged image carries a synonym of its label, and the
    chance of each distractor all match the closed forms of the process within 4.5 standard
    errors; attribute words appear only on digits that have the attribute; the noise words
    are synonyms of other digits."""
    proc = TaggingProcess()
    y = labels(seed)
    t = make_tags(y, seed=seed)
    tagged = t.sum(1) > 0
    pn = proc.draw_count_probs()
    ns = np.arange(1, proc.max_tags + 1)

    def close(freq, p, n):
        assert abs(freq - p) <= 4.5 * np.sqrt(p * (1 - p) / n), (freq, p)

    close(1 - tagged.mean(), proc.p_untagged, N)
    syn = np.zeros_like(t, dtype=bool)
    for d in range(10):
        rows = np.flatnonzero(y == d)
        syn[np.ix_(rows, synonym_words(d))] = True
    has_syn = (t.astype(bool) & syn).any(1)
    close(
        has_syn[tagged].mean(), float((pn * (1 - (1 - proc.p_synonym) ** ns)).sum()), tagged.sum()
    )
    q = proc.p_distractor / len(DISTRACTORS)
    w = VOCABULARY.index("ink")
    close(t[tagged, w].mean(), float((pn * (1 - (1 - q) ** ns)).sum()), tagged.sum())
    for a, digits in ATTRIBUTES.items():
        col = t[:, VOCABULARY.index(a)] > 0
        assert set(np.unique(y[col])) <= set(digits)
    # a word of digit e on an image of digit d != e only comes from the noise branch
    q = proc.p_wrong / 9 / 3
    w = VOCABULARY.index(SYNONYMS[5][0])
    rows = tagged & (y == 2)
    close(t[rows, w].mean(), float((pn * (1 - (1 - q) ** ns)).sum()), rows.sum())


def test_relevant_words_and_metrics():
    r = relevant_words(np.array([0, 7]))
    assert r.shape == (2, 54)
    names0 = {VOCABULARY[i] for i in np.flatnonzero(r[0])}
    assert names0 == {"zero", "nought", "nil", "even", "round", "square", "small"}
    names7 = {VOCABULARY[i] for i in np.flatnonzero(r[1])}
    assert names7 == {"seven", "sieben", "lucky", "odd", "straight", "prime", "large"}
    scores = np.array([[0.9, 0.1, 0.8, 0.0], [0.1, 0.2, 0.3, 0.4]])
    rel = np.array([[True, False, False, True], [False, False, False, True]])
    assert precision_at_k(scores, rel, 2) == pytest.approx((0.5 + 0.5) / 2)
    # ranking [a, b, c, d] with relevant a and c: AP = (1/1 + 2/3) / 2
    assert average_precision(
        np.array([4.0, 3.0, 2.0, 1.0]), np.array([1, 0, 1, 0])
    ) == pytest.approx((1 + 2 / 3) / 2)
    x, m, s = standardize(np.array([[0.0, 1.0], [0.0, 3.0]]))
    np.testing.assert_allclose(x, [[0.0, -1.0], [0.0, 1.0]])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("centre", [True, False])
def test_cosine_retrieval_map_matches_query_by_query(seed, centre):
    """Against a loop over queries with :func:`average_precision` on the other items, with
    ties (repeated rows) and a zero row."""
    rng = np.random.default_rng(seed)
    n = 37
    y = rng.integers(0, 4, n)
    x = rng.standard_normal((n, 5))
    x[3] = x[7]  # a tie
    if not centre:
        x[5] = 0.0  # a row of zero norm
    want = []
    z = x - x.mean(0) if centre else x
    for i in range(n):
        others = np.delete(np.arange(n), i)
        q = z[i] / (np.linalg.norm(z[i]) or 1.0)
        d = z[others] / np.maximum(np.linalg.norm(z[others], axis=1, keepdims=True), 1e-300)
        d[np.linalg.norm(z[others], axis=1) == 0] = 0.0
        want.append(average_precision(d @ q, y[others] == y[i]))
    got = cosine_retrieval_map(x, y, centre=centre, chunk=8)
    assert got == pytest.approx(np.mean(want), abs=1e-12)
    # a representation that is the label one-hot retrieves perfectly
    assert cosine_retrieval_map(np.eye(4)[y], y, centre=False) == pytest.approx(1.0)


def test_bad_input():
    with pytest.raises(ValueError, match="labels"):
        make_tags(np.array([0, 10]))
    with pytest.raises(ValueError, match="representations"):
        cosine_retrieval_map(np.zeros((3, 2)), np.array([0, 1]))
    with pytest.raises(ValueError, match="p_untagged"):
        TaggingProcess(p_untagged=1.5)
    with pytest.raises(ValueError, match="at most 1"):
        TaggingProcess(p_synonym=0.6, p_attribute=0.5)
    with pytest.raises(TypeError, match="seed"):
        make_tags(np.array([1]), seed=1.5)
    with pytest.raises(ValueError, match="digit"):
        synonym_words(12)
