"""Larochelle's fixed binarization of MNIST (train/valid/test ``.amat`` files)."""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ebm_ppl.datasets.cache import DATA_ENV_VAR, _check_choice, _file_source

__all__ = [
    "BINARIZED_MNIST_MIRRORS",
    "BINARIZED_MNIST_SHA256",
    "load_binarized_mnist",
]

#: Mirrors of Larochelle's binarized MNIST ``.amat`` files, tried in order.
BINARIZED_MNIST_MIRRORS: tuple[str, ...] = (
    "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",
)

#: Published sha256 of the *decompressed* ``binarized_mnist_{split}.amat`` files.
BINARIZED_MNIST_SHA256: dict[str, str] = {
    "train": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
    "valid": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
    "test": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
}

_BINARIZED_MNIST_SIZES: dict[str, int] = {"train": 50000, "valid": 10000, "test": 10000}

_AMAT_LINE_BYTES = 2 * 784  # 784 digits, each followed by " " or "\n"


def _parse_amat(data: bytes, name: str, n_expected: int) -> np.ndarray:
    """Parse an ``.amat`` file of ``n`` lines of 784 space-separated 0/1 digits."""
    if len(data) != n_expected * _AMAT_LINE_BYTES:
        raise ValueError(
            f"{name}: {len(data)} bytes, expected {n_expected} lines of {_AMAT_LINE_BYTES} bytes"
        )
    buf = np.frombuffer(data, dtype=np.uint8).reshape(n_expected, _AMAT_LINE_BYTES)
    digits = buf[:, 0::2]
    seps = buf[:, 1::2]
    if not (np.all(seps[:, :-1] == ord(" ")) and np.all(seps[:, -1] == ord("\n"))):
        raise ValueError(f"{name}: not in the .amat layout ('0'/'1' separated by single spaces)")
    bits = digits - np.uint8(ord("0"))
    if bits.max(initial=0) > 1:
        raise ValueError(f"{name}: holds values other than 0 and 1")
    return bits.astype(np.float32)


def _gunzip_if_gz(path: Path, content: bytes) -> bytes:
    """``content`` decompressed when ``path`` is a ``.gz`` file, else as it is."""
    if not path.name.endswith(".gz"):
        return content
    try:
        return gzip.decompress(content)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(
            f"{str(path)!r} is not a valid gzip file ({exc}); it is corrupt or truncated. "
            f"Delete it, or set {DATA_ENV_VAR} to a folder holding a verified copy."
        ) from exc


def load_binarized_mnist(
    split: str = "train",
    root: str | os.PathLike | None = None,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
) -> np.ndarray:
    """Larochelle's fixed binarization of MNIST (as used by NADE and much later work).

    Note that row ``i`` is not MNIST image ``i``: don't join this with :func:`load_mnist` by
    index. There are no labels.

    Args:
        split: ``"train"`` (50000 images), ``"valid"`` (10000) or ``"test"`` (10000).
        root: folder holding ``binarized_mnist_{split}.amat`` or ``binarized_mnist_{split}.amat.gz``
            (the plain file is preferred when both exist); downloads go there too. When
            ``None``, files are looked for in ``$EBM_PPL_DATA`` (directly or in
            ``$EBM_PPL_DATA/binarized_mnist``) and then in the cache folder
            ``$XDG_CACHE_HOME/ebm_ppl/binarized_mnist`` (default
            ``~/.cache/ebm_ppl/binarized_mnist``), where downloads go.
        download: whether to download a missing file (the plain ``.amat``).
        mirrors: base URLs to download from, tried in order (default
            :data:`~ebm_ppl.datasets.binarized_mnist.BINARIZED_MNIST_MIRRORS`).

    Returns:
        float32 array of shape ``(n, 784)`` holding 0.0 and 1.0 (28x28 images, row-major).

    Raises:
        ValueError: the sha256 of the (decompressed) content does not match the published one.
        FileNotFoundError: the file is missing and ``download=False``.
        RuntimeError: the file is missing and no mirror could deliver it.
    """
    _check_choice("split", split, tuple(BINARIZED_MNIST_SHA256))
    source = _file_source("binarized_mnist", BINARIZED_MNIST_MIRRORS, root, download, mirrors)

    name = f"binarized_mnist_{split}.amat"
    path, content = source.read(
        name,
        BINARIZED_MNIST_SHA256[split],
        "decompressed content of",
        also=[name + ".gz"],
        decode=_gunzip_if_gz,
    )
    return _parse_amat(content, path.name, _BINARIZED_MNIST_SIZES[split])
