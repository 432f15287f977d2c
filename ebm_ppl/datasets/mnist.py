"""The original MNIST handwritten digits, from the four IDX ``.gz`` files."""

from __future__ import annotations

import gzip
import math
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ebm_ppl.datasets.cache import _check_choice, _file_source

__all__ = [
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "load_mnist",
]

#: Public mirrors of the original MNIST files, tried in order.
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

#: The four MNIST files and the published sha256 of each (of the ``.gz`` file itself).
MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
    ),
    "train-labels-idx1-ubyte.gz": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
    ),
    "t10k-images-idx3-ubyte.gz": (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
    ),
}

_MNIST_SPLITS: dict[str, tuple[str, str, int]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}

_N_PIXELS_MNIST = 784

_IDX_DTYPES = {0x08: np.uint8}


def _parse_idx(data: bytes, name: str, expected_magic: int) -> np.ndarray:
    """Parse an (uncompressed) IDX file holding unsigned bytes into an array of its dims."""
    if len(data) < 4:
        raise ValueError(f"{name}: too short to be an IDX file ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise ValueError(f"{name}: IDX magic number is {magic}, expected {expected_magic}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[data[2]]
    count = math.prod(dims)
    if len(data) != header + count:
        raise ValueError(
            f"{name}: IDX body has {len(data) - header} bytes, the header {dims} implies {count}"
        )
    return np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)


def _gunzip_verified(path: Path, raw: bytes) -> bytes:
    """The decompressed content of a verified MNIST ``.gz`` file."""
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:  # cannot happen for a verified file
        raise ValueError(f"{str(path)!r} is not a valid gzip file: {exc}") from exc


def load_mnist(
    split: str = "train",
    root: str | os.PathLike | None = None,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    *,
    raw: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The MNIST handwritten digits, from the four original IDX ``.gz`` files.

    Args:
        split: ``"train"`` (60000 images) or ``"test"`` (10000 images).
        root: folder holding the files (``train-images-idx3-ubyte.gz``,
            ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
            ``t10k-labels-idx1-ubyte.gz``); downloads go there too. When ``None``, files are
            looked for in ``$EBM_PPL_DATA`` (directly or in ``$EBM_PPL_DATA/mnist``) and then
            in the cache folder ``$XDG_CACHE_HOME/ebm_ppl/mnist`` (default
            ``~/.cache/ebm_ppl/mnist``), where downloads go.
        download: whether to download missing files.
        mirrors: base URLs to download from, tried in order (default
            :data:`~ebm_ppl.datasets.mnist.MNIST_MIRRORS`).
        raw: return the images as the original uint8 gray levels 0-255 instead of float32.

    Returns:
        ``(x, y)``: ``x`` of shape ``(n, 784)`` (28x28 images, row-major), float32 in
        ``[0, 1]`` (gray level / 255) or uint8 when ``raw=True``; ``y`` int64 of shape
        ``(n,)``, the digit 0-9. ``n`` is 60000 for ``"train"`` and 10000 for ``"test"``.

    Raises:
        ValueError: a file's sha256 does not match the published one (local or downloaded).
        FileNotFoundError: a file is missing and ``download=False``.
        DownloadError: (a RuntimeError) a file is missing and no mirror could deliver it.
    """
    _check_choice("split", split, tuple(_MNIST_SPLITS))
    source = _file_source("mnist", MNIST_MIRRORS, root, download, mirrors, raw=raw)
    raw = source.flags["raw"]

    images_name, labels_name, n_expected = _MNIST_SPLITS[split]
    arrays = []
    for name, magic in ((images_name, 2051), (labels_name, 2049)):
        path, content = source.read(name, MNIST_FILES[name], "MNIST file")
        arrays.append(_parse_idx(_gunzip_verified(path, content), name, magic))
    images, labels = arrays

    if images.shape != (n_expected, 28, 28):
        raise ValueError(f"{images_name}: shape {images.shape}, expected ({n_expected}, 28, 28)")
    if labels.shape != (n_expected,):
        raise ValueError(f"{labels_name}: shape {labels.shape}, expected ({n_expected},)")

    flat = images.reshape(n_expected, _N_PIXELS_MNIST)
    x = flat.copy() if raw else flat.astype(np.float32) / np.float32(255.0)
    y = labels.astype(np.int64)
    return x, y
