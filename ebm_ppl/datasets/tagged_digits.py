"""A constructed bimodal benchmark: MNIST digits with noisy word tags.

MIR-Flickr (the image-text data of the review's section 5) cannot be reached here, so this
module **constructs** a stand-in with the same shape of problem: each image comes with a small
set of tags drawn from a documented random process tied to its label. The tags are synthetic;
nothing about real user tagging is claimed. Results on it measure whether a model fuses two
modalities and fills in a missing one, on a problem whose ground truth is known exactly.

The vocabulary (:data:`VOCABULARY`, 54 words):

* three synonyms per digit (:data:`SYNONYMS`, 30 words), e.g. ``zero``, ``nought``, ``nil``;
* attributes shared across digits (:data:`ATTRIBUTES`, 9 words): parity (``even``/``odd``),
  shape (``round``, ``straight``, ``curvy``, ``square``), ``prime``, ``small``/``large``;
* distractors unrelated to the label (:data:`DISTRACTORS`, 15 words), e.g. ``photo``, ``ink``.

The tagging process (:class:`TaggingProcess`, defaults in brackets), per image with label
``y``, independently:

1. with probability ``p_untagged`` [0.2] the image has no tags at all;
2. otherwise ``n = min(1 + Poisson(extra_tags), max_tags)`` [2.0, 6] tags are drawn, each
   independently: a synonym of ``y`` (uniform over its three) with probability ``p_synonym``
   [0.5]; an attribute true of ``y`` (uniform over those) with probability ``p_attribute``
   [0.25]; a distractor (uniform) with probability ``p_distractor`` [0.15]; otherwise
   [0.1] a synonym of a uniformly chosen *other* digit (tag noise);
3. tags are a set, as on Flickr: a word drawn twice counts once, so the counts are 0/1 and
   the document length ``M`` is the number of distinct tags.

The *relevant* words of a label (:func:`relevant_words`) are its synonyms and true
attributes: what a perfect annotator would output, used for precision@k of generated tags.
:func:`make_tags` is deterministic given its seed (``numpy.random.default_rng(seed)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import exp, factorial
from typing import Any

import numpy as np

from ebm_ppl.datasets.mnist import load_mnist

SYNONYMS: dict[int, tuple[str, ...]] = {
    0: ("zero", "nought", "nil"),
    1: ("one", "single", "uno"),
    2: ("two", "pair", "deux"),
    3: ("three", "trio", "drei"),
    4: ("four", "quad", "vier"),
    5: ("five", "cinq", "fuenf"),
    6: ("six", "sechs", "halfdozen"),
    7: ("seven", "sieben", "lucky"),
    8: ("eight", "acht", "octo"),
    9: ("nine", "neun", "nueve"),
}
ATTRIBUTES: dict[str, frozenset[int]] = {
    "even": frozenset({0, 2, 4, 6, 8}),
    "odd": frozenset({1, 3, 5, 7, 9}),
    "round": frozenset({0, 3, 6, 8, 9}),
    "straight": frozenset({1, 4, 7}),
    "curvy": frozenset({2, 3, 5}),
    "square": frozenset({0, 1, 4, 9}),
    "prime": frozenset({2, 3, 5, 7}),
    "small": frozenset({0, 1, 2, 3, 4}),
    "large": frozenset({5, 6, 7, 8, 9}),
}
DISTRACTORS: tuple[str, ...] = (
    "photo",
    "scan",
    "ink",
    "paper",
    "pen",
    "handwriting",
    "digit",
    "number",
    "black",
    "white",
    "2007",
    "nikon",
    "art",
    "text",
    "sample",
)
VOCABULARY: tuple[str, ...] = (
    tuple(w for d in range(10) for w in SYNONYMS[d]) + tuple(ATTRIBUTES) + DISTRACTORS
)
_INDEX = {w: i for i, w in enumerate(VOCABULARY)}


@dataclass(frozen=True)
class TaggingProcess:
    """The parameters of the tagging process (see the module docstring)."""

    p_untagged: float = 0.2
    extra_tags: float = 2.0
    max_tags: int = 6
    p_synonym: float = 0.5
    p_attribute: float = 0.25
    p_distractor: float = 0.15

    def __post_init__(self) -> None:
        for name in ("p_untagged", "p_synonym", "p_attribute", "p_distractor"):
            p = getattr(self, name)
            if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
        if self.p_synonym + self.p_attribute + self.p_distractor > 1.0 + 1e-12:
            raise ValueError("p_synonym + p_attribute + p_distractor must be at most 1")
        if not isinstance(self.extra_tags, (int, float)) or self.extra_tags < 0:
            raise ValueError(f"extra_tags must be a non-negative number, got {self.extra_tags!r}")
        if (
            not isinstance(self.max_tags, int)
            or isinstance(self.max_tags, bool)
            or self.max_tags < 1
        ):
            raise ValueError(f"max_tags must be a positive int, got {self.max_tags!r}")

    @property
    def p_wrong(self) -> float:
        """Probability that a tag is a synonym of another digit (tag noise)."""
        return max(0.0, 1.0 - self.p_synonym - self.p_attribute - self.p_distractor)

    def draw_count_probs(self) -> np.ndarray:
        """``P(n)`` for ``n = 1..max_tags`` tag draws of a tagged image (the capped
        ``1 + Poisson(extra_tags)``)."""

        lam = float(self.extra_tags)
        p = np.array([exp(-lam) * lam**k / factorial(k) for k in range(self.max_tags)])
        p[-1] += max(0.0, 1.0 - p.sum())
        return p


def _check_labels(labels: Any) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or (y < 0).any() or (y > 9).any():
        raise ValueError("labels must be a 1-D integer array of digits 0-9")
    return y.astype(np.int64)


def relevant_words(labels: Any) -> np.ndarray:
    """``(N, K)`` boolean: the synonyms and true attributes of each label."""
    y = _check_labels(labels)
    table = np.zeros((10, len(VOCABULARY)), bool)
    for d in range(10):
        for w in SYNONYMS[d]:
            table[d, _INDEX[w]] = True
        for a, digits in ATTRIBUTES.items():
            table[d, _INDEX[a]] = d in digits
    return table[y]


def synonym_words(digit: int) -> list[int]:
    """Vocabulary indices of a digit's synonyms (the queries of tag-based retrieval)."""
    if not isinstance(digit, int) or not 0 <= digit <= 9:
        raise ValueError(f"digit must be an int in 0-9, got {digit!r}")
    return [_INDEX[w] for w in SYNONYMS[digit]]


def make_tags(labels: Any, seed: int = 0, process: TaggingProcess | None = None) -> np.ndarray:
    """Tags for images with the given ``labels`` ``(N,)``: a ``float32`` count matrix
    ``(N, K)`` of 0/1 entries over :data:`VOCABULARY`, drawn by the documented process
    (deterministic given ``seed``)."""
    y = _check_labels(labels)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    proc = TaggingProcess() if process is None else process
    if not isinstance(proc, TaggingProcess):
        raise TypeError(f"process must be a TaggingProcess, got {type(proc).__name__}")
    rng = np.random.default_rng(seed)
    n = len(y)
    k = len(VOCABULARY)
    syn = np.array([[_INDEX[w] for w in SYNONYMS[d]] for d in range(10)])  # (10, 3)
    attrs = [[_INDEX[a] for a, ds in ATTRIBUTES.items() if d in ds] for d in range(10)]
    dist = np.array([_INDEX[w] for w in DISTRACTORS])
    tagged = rng.random(n) >= proc.p_untagged
    draws = np.minimum(1 + rng.poisson(proc.extra_tags, n), proc.max_tags)
    draws = np.where(tagged, draws, 0)
    out = np.zeros((n, k), np.float32)
    cum = np.cumsum([proc.p_synonym, proc.p_attribute, proc.p_distractor])
    for t in range(proc.max_tags):
        active = draws > t
        u = rng.random(n)
        kind = np.searchsorted(cum, u, side="right")  # 0 syn, 1 attr, 2 distractor, 3 wrong
        pick = rng.random(n)
        other = (y + 1 + rng.integers(0, 9, n)) % 10
        word = np.empty(n, np.int64)
        word[kind == 0] = syn[y[kind == 0], (pick[kind == 0] * 3).astype(int)]
        idx = np.flatnonzero(kind == 1)
        for i in idx:
            a = attrs[y[i]]
            word[i] = a[int(pick[i] * len(a))]
        word[kind == 2] = dist[(pick[kind == 2] * len(dist)).astype(int)]
        word[kind == 3] = syn[other[kind == 3], (pick[kind == 3] * 3).astype(int)]
        rows = np.flatnonzero(active)
        out[rows, word[rows]] = 1.0
    return out


def standardize(images: np.ndarray, mean: Any = None, std: Any = None, eps: float = 0.05):
    """``(x - mean) / std`` per pixel (the statistics of ``images`` unless given; ``std``
    floored at ``eps`` so constant border pixels stay at 0): the real-valued input of a
    Gaussian pathway with ``sigma = 1``. Returns ``(x, mean, std)``."""
    x = np.asarray(images, np.float32)
    if x.ndim != 2:
        raise ValueError(f"images must have shape (N, D), got {x.shape}")
    m = x.mean(0) if mean is None else np.asarray(mean, np.float32)
    s = np.maximum(x.std(0), eps) if std is None else np.asarray(std, np.float32)
    return ((x - m) / s).astype(np.float32), m, s


def load_tagged_mnist(
    split: str = "train",
    seed: int = 0,
    root: Any = None,
    process: TaggingProcess | None = None,
    download: bool = True,
) -> dict:
    """MNIST images (gray levels in ``[0, 1]``) with constructed tags: a dict with
    ``images`` ``(N, 784)``, ``labels`` ``(N,)`` and ``tags`` ``(N, 54)``. The tags of the
    test split use ``seed + 1`` so they never repeat the training draws."""

    images, labels = load_mnist(split, root=root, download=download)
    tags = make_tags(labels, seed=seed if split == "train" else seed + 1, process=process)
    return {"images": images, "labels": labels, "tags": tags}


def precision_at_k(scores: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """Mean over rows of the fraction of the ``k`` highest-scoring words that are relevant."""
    scores, relevant = np.asarray(scores), np.asarray(relevant, bool)
    if scores.shape != relevant.shape or scores.ndim != 2:
        raise ValueError("scores and relevant must be (N, K) arrays of the same shape")
    top = np.argsort(-scores, axis=1)[:, :k]
    return float(np.take_along_axis(relevant, top, axis=1).mean())


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """Average precision of the ranking of items by ``scores`` (higher first) against the
    boolean ``relevant`` (1-D, same length): the mean, over the relevant items, of the
    precision at each one's rank."""
    scores, relevant = np.asarray(scores), np.asarray(relevant, bool)
    if scores.shape != relevant.shape or scores.ndim != 1:
        raise ValueError("scores and relevant must be 1-D arrays of the same length")
    order = np.argsort(-scores, kind="stable")
    hits = relevant[order]
    if not hits.any():
        return 0.0
    prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(prec[hits].mean())


def cosine_retrieval_map(
    representations: np.ndarray, labels: Any, centre: bool = True, chunk: int = 500
) -> float:
    """Mean average precision of retrieval in which every item queries all the others
    (Srivastava & Salakhutdinov 2012's multimodal queries when the rows are representations
    inferred from image + tags): the database of query ``i`` is the other ``N - 1`` rows,
    ranked by the cosine similarity of ``representations`` ``(N, F)`` (after subtracting the
    mean row when ``centre``; otherwise units on for every item dominate), and an item is
    relevant when it has the query's label. A row of zero norm scores 0 against every item;
    ties keep the database order (as :func:`average_precision`)."""
    x = np.asarray(representations, np.float64)
    labels = _check_labels(labels)
    if x.ndim != 2 or x.shape[0] != labels.shape[0] or x.shape[0] < 2:
        raise ValueError(
            f"representations must have shape (N, F) with N = len(labels) >= 2, got {x.shape}"
        )
    if centre:
        x = x - x.mean(0)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    x = np.where(norm > 0, x / np.where(norm > 0, norm, 1.0), 0.0)
    n, aps = x.shape[0], []
    for i in range(0, n, chunk):
        rows = np.arange(i, min(i + chunk, n))
        sims = x[rows] @ x.T
        # the query itself leaves its database: drop its column, keep the others' order
        keep = np.ones((len(rows), n), bool)
        keep[np.arange(len(rows)), rows] = False
        sims = sims[keep].reshape(len(rows), n - 1)
        lab = np.broadcast_to(labels, (len(rows), n))[keep].reshape(len(rows), n - 1)
        order = np.argsort(-sims, axis=1, kind="stable")
        hits = np.take_along_axis(lab, order, 1) == labels[rows, None]
        prec = np.cumsum(hits, 1) / np.arange(1, n)
        aps.append((prec * hits).sum(1) / np.maximum(hits.sum(1), 1))
    return float(np.concatenate(aps).mean())
