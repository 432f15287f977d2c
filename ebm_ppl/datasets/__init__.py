"""Benchmark data sets for energy-based models, as plain numpy arrays.

Everything here is backend-neutral: images come back as ``float32`` numpy arrays of shape
``(n, n_pixels)`` with values in ``[0, 1]`` and labels as ``int64`` numpy arrays, ready to be
wrapped by ``torch.as_tensor`` or ``jax.numpy.asarray``.

Data sets
---------
* :func:`load_digits`: scikit-learn's 8x8 digits (ships with scikit-learn, no download).
* :func:`load_mnist`: the original MNIST IDX files (gray levels scaled to ``[0, 1]``).
* :func:`load_binarized_mnist`: Larochelle's fixed binarization of MNIST (train/valid/test).
* :func:`load_20news`: 20 Newsgroups word counts (ProdLDA preprocessing, 1,995 words).
* :func:`load_caltech101_silhouettes`: 28x28 binary silhouettes of 101 object classes.

Binarization helpers
--------------------
* :func:`binarize`: a threshold or one fixed Bernoulli draw.
* :class:`StochasticBinarization`: a fresh Bernoulli draw per epoch (dynamic binarization).

Where files are looked for
--------------------------
For each file, in this order:

1. ``root``, when the caller passes it (then only there; downloads go there too);
2. otherwise the folder named by the environment variable ``EBM_PPL_DATA``: the file may lie
   in it directly or in its data-set subfolder (``mnist/``, ``binarized_mnist/`` or
   ``20news_prodlda/``);
3. otherwise the cache folder ``$XDG_CACHE_HOME/ebm_ppl/<data set>`` (by default
   ``~/.cache/ebm_ppl/<data set>``), which is also where downloads go.

Every file is checked against its published sha256 before it is parsed; a file that does not
match raises :class:`ValueError` and is never used. A successful check is remembered in this
process for the file's path, size and modification time, so repeated loads skip the hashing.

Modules
-------
* :mod:`ebm_ppl.datasets.cache`: finding, verifying and downloading files.
* :mod:`ebm_ppl.datasets.digits`, :mod:`~ebm_ppl.datasets.mnist`,
  :mod:`~ebm_ppl.datasets.binarized_mnist`, :mod:`~ebm_ppl.datasets.news20`,
  :mod:`~ebm_ppl.datasets.caltech101_silhouettes`: one loader each.
* :mod:`ebm_ppl.datasets.binarization`: :func:`binarize`, :class:`StochasticBinarization`.
* Documented, seeded synthetic benchmarks, imported on their own (not by this package, which
  knows no model, while ``shaded_digits`` renders with a model's math):
  :mod:`ebm_ppl.datasets.tagged_digits` (MNIST with noisy word tags),
  :mod:`ebm_ppl.datasets.occlusions` (structured occlusions) and
  :mod:`ebm_ppl.datasets.shaded_digits` (digit albedos on random surfaces under random
  lights, rendered with :mod:`ebm_ppl.models.lambertian`).
"""

from __future__ import annotations

from ebm_ppl.datasets.binarization import StochasticBinarization, binarize
from ebm_ppl.datasets.binarized_mnist import (
    BINARIZED_MNIST_MIRRORS,
    BINARIZED_MNIST_SHA256,
    load_binarized_mnist,
)
from ebm_ppl.datasets.binarized_mnist import _parse_amat as _parse_amat
from ebm_ppl.datasets.cache import _VERIFIED as _VERIFIED
from ebm_ppl.datasets.cache import (
    DATA_ENV_VAR,
    DOWNLOAD_TIMEOUT_S,
    DownloadError,
    data_cache_dir,
)
from ebm_ppl.datasets.cache import _stat_key as _stat_key
from ebm_ppl.datasets.caltech101_silhouettes import (
    CALTECH101_SILHOUETTES_FILES,
    CALTECH101_SILHOUETTES_MIRRORS,
    load_caltech101_silhouettes,
)
from ebm_ppl.datasets.digits import load_digits
from ebm_ppl.datasets.mnist import MNIST_FILES, MNIST_MIRRORS, load_mnist
from ebm_ppl.datasets.mnist import _parse_idx as _parse_idx
from ebm_ppl.datasets.news20 import NEWS20_FILES, NEWS20_MIRRORS, load_20news

# Also reached through the package, as before the split: the private names ``_parse_idx``,
# ``_parse_amat`` (the file parsers), ``_stat_key`` and ``_VERIFIED`` (the verified-file memo).
__all__ = [
    "BINARIZED_MNIST_MIRRORS",
    "BINARIZED_MNIST_SHA256",
    "CALTECH101_SILHOUETTES_FILES",
    "CALTECH101_SILHOUETTES_MIRRORS",
    "NEWS20_FILES",
    "NEWS20_MIRRORS",
    "DATA_ENV_VAR",
    "DOWNLOAD_TIMEOUT_S",
    "DownloadError",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "StochasticBinarization",
    "binarize",
    "data_cache_dir",
    "load_20news",
    "load_binarized_mnist",
    "load_caltech101_silhouettes",
    "load_digits",
    "load_mnist",
]
