"""20 Newsgroups as word counts (the ProdLDA preprocessing, 1,995 words)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ebm_ppl.datasets.cache import _check_choice, _file_source

__all__ = [
    "NEWS20_FILES",
    "NEWS20_MIRRORS",
    "load_20news",
]

#: Public copies of the 20 Newsgroups bag-of-words files of ProdLDA (Srivastava & Sutton
#: 2017) as published with the Dirichlet-VAE topic models (a fixed commit), tried in order.
NEWS20_MIRRORS: tuple[str, ...] = (
    "https://raw.githubusercontent.com/sophieburkhardt/dirichlet-vae-topic-models/"
    "3d3593654272b01877ae70a07f9e3b562987830d/data/20news/",
)

#: The 20 Newsgroups files and their sha256.
NEWS20_FILES: dict[str, str] = {
    "train.feat": "6c4b612d03bb54c68c923ae7b689398c4a7bd1046b0874332dfe0a0c42830143",
    "test.feat": "5e5beaff3c66affeb08aeefb69e40e3e1c52360cdad2df03e7df2ecb6b79fad0",
    "vocab.new": "75594f361e317a8c8fafca9846e903143ff25bb57ac4207ff850ef4245eb94bb",
}

_NEWS20_SIZES: dict[str, int] = {"train": 11258, "test": 7487}


def load_20news(
    split: str = "train",
    root: str | os.PathLike | None = None,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """20 Newsgroups as word-count vectors (the ProdLDA preprocessing: 1,995 words).

    Args:
        split: ``"train"`` (11,258 documents) or ``"test"`` (7,487 documents).
        root: folder holding ``train.feat``, ``test.feat`` and ``vocab.new``; otherwise
            ``$EBM_PPL_DATA`` (directly or in ``$EBM_PPL_DATA/20news_prodlda``) and the cache
            folder ``~/.cache/ebm_ppl/20news_prodlda``, where downloads go.
        download: whether to download missing files (from
            :data:`~ebm_ppl.datasets.news20.NEWS20_MIRRORS`).
        mirrors: base URLs to download from, tried in order.

    Returns:
        ``(counts, vocab)``: float32 counts of shape ``(n_documents, 1995)`` (column ``k`` is
        word ``vocab[k]``; the first word, ``_eos_``, never occurs) and the 1,995 words. The
        one empty document of each file is skipped.

    Raises:
        ValueError: a file's sha256 does not match, or its content is malformed.
        FileNotFoundError / RuntimeError: as for :func:`load_mnist`.
    """
    _check_choice("split", split, tuple(_NEWS20_SIZES))
    source = _file_source("20news_prodlda", NEWS20_MIRRORS, root, download, mirrors)
    _, vocab_bytes = source.read("vocab.new", NEWS20_FILES["vocab.new"])
    vocab = [line.split()[0] for line in vocab_bytes.decode("utf-8").splitlines() if line.strip()]
    path, content = source.read(f"{split}.feat", NEWS20_FILES[f"{split}.feat"])
    rows, cols, vals = [], [], []
    n = 0
    for line in content.decode("utf-8").splitlines():
        fields = line.split()
        if len(fields) < 2:  # an empty document (the placeholder "1" alone, or nothing)
            continue
        for item in fields[1:]:
            word, _, count = item.partition(":")
            rows.append(n)
            cols.append(int(word) - 1)
            vals.append(float(count))
        n += 1
    if n != _NEWS20_SIZES[split]:
        raise ValueError(f"{str(path)!r} holds {n} documents, expected {_NEWS20_SIZES[split]}")
    counts = np.zeros((n, len(vocab)), dtype=np.float32)
    np.add.at(counts, (np.asarray(rows), np.asarray(cols)), np.asarray(vals, np.float32))
    return counts, vocab
