"""Marlin's Caltech-101 Silhouettes: 28x28 binary images of 101 object classes."""

from __future__ import annotations

import io as _io
import os
from collections.abc import Sequence

import numpy as np

from ebm_ppl.datasets.cache import _check_choice, _file_source

__all__ = [
    "CALTECH101_SILHOUETTES_FILES",
    "CALTECH101_SILHOUETTES_MIRRORS",
    "load_caltech101_silhouettes",
]

#: Public copies of Marlin's Caltech-101 Silhouettes (28x28) at a fixed commit, tried in order.
CALTECH101_SILHOUETTES_MIRRORS: tuple[str, ...] = (
    "https://raw.githubusercontent.com/YingzhenLi/vae_renyi_divergence/"
    "f8c08e445567212a745c2f9981597f0d102c5ae8/data/silhouettes/",
)

#: The standard split's file and its sha256.
CALTECH101_SILHOUETTES_FILES: dict[str, str] = {
    "caltech101_silhouettes_28_split1.mat": (
        "eb6735e8d84b1850fabc5590124aab1755e90c9fd28123585324398405e1e42a"
    ),
}

_CALTECH_SPLITS: dict[str, tuple[str, int]] = {
    "train": ("train", 4100),
    "valid": ("val", 2264),
    "test": ("test", 2307),
}


def load_caltech101_silhouettes(
    split: str = "train",
    root: str | os.PathLike | None = None,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Marlin's Caltech-101 Silhouettes, 28x28 binary images of 101 object classes (the
    standard split of ``caltech101_silhouettes_28_split1.mat``).

    Args:
        split: ``"train"`` (4,100 images), ``"valid"`` (2,264) or ``"test"`` (2,307).
        root: folder holding the ``.mat`` file; otherwise ``$EBM_PPL_DATA`` (directly or in
            ``$EBM_PPL_DATA/caltech101_silhouettes``) and the cache folder
            ``~/.cache/ebm_ppl/caltech101_silhouettes``, where downloads go.
        download: whether to download a missing file.
        mirrors: base URLs to download from (default
            :data:`~ebm_ppl.datasets.caltech101_silhouettes.CALTECH101_SILHOUETTES_MIRRORS`).

    Returns:
        ``(images, labels, class_names)``: float32 images ``(n, 784)`` of 0.0/1.0 in row-major
        order (the file stores them column-major; they are transposed here so that
        ``images.reshape(-1, 28, 28)`` shows them upright), int64 labels ``0..100`` and the
        101 class names.

    Raises:
        ValueError: the sha256 does not match, or the content is malformed.
        FileNotFoundError / RuntimeError: as for :func:`load_mnist`.
    """

    _check_choice("split", split, tuple(_CALTECH_SPLITS))
    source = _file_source(
        "caltech101_silhouettes", CALTECH101_SILHOUETTES_MIRRORS, root, download, mirrors
    )
    ((name, expected),) = CALTECH101_SILHOUETTES_FILES.items()
    path, content = source.read(name, expected)
    # lazy: optional heavy dependency (scipy), loaded only when needed
    from scipy.io import loadmat

    mat = loadmat(_io.BytesIO(content))
    key, n = _CALTECH_SPLITS[split]
    x = np.asarray(mat[f"{key}_data"], dtype=np.float32)
    y = np.asarray(mat[f"{key}_labels"]).reshape(-1).astype(np.int64) - 1
    if x.shape != (n, 784) or y.shape != (n,):
        raise ValueError(
            f"{str(path)!r}: the {split} split has shape {x.shape}, expected ({n}, 784)"
        )
    x = x.reshape(n, 28, 28).transpose(0, 2, 1).reshape(n, 784)
    names = [str(np.asarray(c).reshape(-1)[0]) for c in np.asarray(mat["classnames"]).reshape(-1)]
    return np.ascontiguousarray(x), y, names
