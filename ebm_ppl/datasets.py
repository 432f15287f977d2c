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
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import math
import numbers
import os
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BINARIZED_MNIST_MIRRORS",
    "BINARIZED_MNIST_SHA256",
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
    "load_digits",
    "load_mnist",
]

_log = logging.getLogger(__name__)


class DownloadError(RuntimeError):
    """A data file is not on this machine and no mirror could deliver it (offline, say).
    The message names the file, every mirror's failure, the checksum, and where to put a
    copy fetched by hand."""


#: Environment variable naming a folder that holds verified copies of the data files.
DATA_ENV_VAR = "EBM_PPL_DATA"

#: Seconds a download may stall (per network operation) before the mirror is given up.
DOWNLOAD_TIMEOUT_S = 60.0

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

_N_PIXELS_MNIST = 784
_AMAT_LINE_BYTES = 2 * _N_PIXELS_MNIST  # 784 digits, each followed by " " or "\n"

# (resolved path, size, mtime_ns, expected sha256) of files already verified in this process.
_VERIFIED: set[tuple[str, int, int, str]] = set()
_VERIFIED_LOCK = threading.Lock()


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {list(choices)}; got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}")
    return value


def _check_int(name: str, value: Any, *, minimum: int | None = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {type(value).__name__}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value}")
    return value


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool; got {type(value).__name__}")
    return bool(value)


def _check_root(root: Any) -> Path | None:
    if root is None:
        return None
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a str, an os.PathLike or None; got {type(root).__name__}")
    path = Path(os.fspath(root)).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"root must be a folder; {str(path)!r} exists and is not a folder")
    return path


def _check_mirrors(mirrors: Any, default: Sequence[str]) -> tuple[str, ...]:
    if mirrors is None:
        return tuple(default)
    if isinstance(mirrors, (str, bytes)) or not isinstance(mirrors, Sequence):
        raise TypeError(
            "mirrors must be a sequence of base URLs (e.g. a list of str), not "
            f"{type(mirrors).__name__}; wrap a single URL in a list"
        )
    if len(mirrors) == 0:
        raise ValueError("mirrors must hold at least one base URL; got an empty sequence")
    out = []
    for i, url in enumerate(mirrors):
        if not isinstance(url, str):
            raise TypeError(f"mirrors[{i}] must be a str URL; got {type(url).__name__}")
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme not in ("http", "https", "file"):
            raise ValueError(
                f"mirrors[{i}] must be an http://, https:// or file:// URL; got {url!r}"
            )
        out.append(url if url.endswith("/") else url + "/")
    return tuple(out)


def _as_probabilities(name: str, x: Any) -> np.ndarray:
    """``x`` as a numpy array, checked to be real, finite and within ``[0, 1]``."""
    try:
        if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch, on any device
            x = x.detach().cpu().numpy()
        arr = np.asarray(x)
    except Exception as exc:
        raise TypeError(
            f"{name} must be array-like (numpy, a torch tensor, a JAX array, nested lists); "
            f"could not convert {type(x).__name__}: {exc}"
        ) from exc
    if arr.dtype == np.bool_:
        arr = arr.astype(np.float32)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers; got an array of dtype {arr.dtype}")
    if arr.size:
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite; it holds NaN or infinite values")
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi > 1:
            raise ValueError(
                f"{name} must lie in [0, 1] (probabilities / intensities); "
                f"got values in [{lo}, {hi}]"
            )
    return arr


def _bernoulli(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One Bernoulli draw of the same shape as ``p``, as float32 0/1."""
    u = rng.random(p.shape, dtype=np.float32)
    return (u < p).astype(np.float32)


# --------------------------------------------------------------------------------------------
# scikit-learn digits
# --------------------------------------------------------------------------------------------


def load_digits(
    split: str = "all", test_size: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 handwritten digits (1797 images, no download needed).

    Args:
        split: ``"all"``, ``"train"`` or ``"test"``.
        test_size: fraction of the images in the test split, in ``(0, 1)``.
        seed: seed of the permutation that splits the data. The test split is the first
            ``round(test_size * n)`` images of ``np.random.default_rng(seed).permutation(n)``,
            the train split the rest (both in permutation order). ``split="all"`` returns the
            images in their original order and ignores ``test_size`` and ``seed``.

    Returns:
        ``(x, y)``: ``x`` float32 of shape ``(n, 64)``, intensities divided by 16 so they lie in
        ``[0, 1]``; ``y`` int64 of shape ``(n,)``, the digit 0-9. ``n`` is 1797 for ``"all"``.
    """
    _check_choice("split", split, ("all", "train", "test"))
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real):
        raise TypeError(f"test_size must be a float in (0, 1); got {type(test_size).__name__}")
    test_size = float(test_size)
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be a float in (0, 1); got {test_size}")
    seed = _check_int("seed", seed)

    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    x = (np.asarray(bunch.data, dtype=np.float64) / 16.0).astype(np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    if split == "all":
        return x, y

    n = x.shape[0]
    n_test = round(test_size * n)
    if n_test < 1 or n_test > n - 1:
        raise ValueError(
            f"test_size={test_size} leaves an empty split (round(test_size * {n}) = {n_test}); "
            f"choose test_size so that the test split has between 1 and {n - 1} images"
        )
    perm = np.random.default_rng(seed).permutation(n)
    idx = perm[:n_test] if split == "test" else perm[n_test:]
    return x[idx], y[idx]


# --------------------------------------------------------------------------------------------
# file lookup, verification, download
# --------------------------------------------------------------------------------------------


def data_cache_dir(dataset: str) -> Path:
    """The download cache folder of ``dataset``: ``$XDG_CACHE_HOME/ebm_ppl/<dataset>``.

    Falls back to ``~/.cache`` when ``XDG_CACHE_HOME`` is unset, empty or not absolute (as the
    XDG base-directory spec asks). The folder is not created here.
    """
    base = os.environ.get("XDG_CACHE_HOME", "")
    base_path = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return base_path / "ebm_ppl" / dataset


def _search_dirs(root: Path | None, subfolder: str) -> tuple[list[Path], Path]:
    """The folders to look in, in order, and the folder to download into."""
    if root is not None:
        return [root], root
    dirs: list[Path] = []
    env = os.environ.get(DATA_ENV_VAR, "")
    if env:
        env_path = Path(env).expanduser()
        dirs += [env_path, env_path / subfolder]
    cache = data_cache_dir(subfolder)
    dirs.append(cache)
    return dirs, cache


def _where_text(dirs: Sequence[Path]) -> str:
    return ", ".join(repr(str(d)) for d in dirs)


def _mismatch_error(path: Path | str, what: str, expected: str, actual: str) -> ValueError:
    return ValueError(
        f"sha256 mismatch for {what} {str(path)!r}: expected {expected}, got {actual}. "
        "The file is corrupt, truncated or not the original. Delete it (with download=True a "
        f"fresh copy is then downloaded), or set {DATA_ENV_VAR} to a folder holding a verified "
        "copy."
    )


def _stat_key(path: Path, expected: str) -> tuple[str, int, int, str] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, expected)


def _verify_bytes(path: Path, data: bytes, expected: str, what: str, key: Any) -> None:
    """Check ``sha256(data) == expected`` and remember success for ``key`` (a stat key)."""
    if key is not None:
        with _VERIFIED_LOCK:
            if key in _VERIFIED:
                return
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise _mismatch_error(path, what, expected, actual)
    # Only remember the check if the file did not change while it was read.
    if key is not None and _stat_key(path, expected) == key:
        with _VERIFIED_LOCK:
            _VERIFIED.add(key)


def _download(name: str, dest_dir: Path, mirrors: Sequence[str], expected: str) -> Path:
    """Download ``name`` from the first mirror that serves a copy with the expected sha256.

    The bytes go to a temporary file in ``dest_dir``; only a verified file is moved to
    ``dest_dir / name`` (with :func:`os.replace`), so nothing unverified is left behind.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / name
    failures: list[str] = []
    mismatches: list[str] = []
    for base in mirrors:
        url = urllib.parse.urljoin(base, name)
        _log.info("downloading %s to %s", url, dest)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest_dir)
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            with (
                os.fdopen(fd, "wb") as out,
                urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp,
            ):
                while chunk := resp.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            actual = digest.hexdigest()
            if actual != expected:
                mismatches.append(f"{url}: expected sha256 {expected}, got {actual}")
                continue
            os.replace(tmp, dest)
            return dest
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            # URLError/HTTPError, timeouts, refused connections, cut-off transfers, disk errors.
            failures.append(f"{url}: {type(exc).__name__}: {exc}")
        finally:
            if tmp.exists():
                tmp.unlink()

    hint = (
        f"Download the file yourself, check its sha256 ({expected}), and put it in "
        f"{str(dest_dir)!r} or in a folder named by the environment variable {DATA_ENV_VAR}."
    )
    if mismatches:
        raise ValueError(
            f"sha256 mismatch for downloaded file {name!r}; nothing was saved. "
            + "; ".join(mismatches + failures)
            + ". "
            + hint
        )
    raise DownloadError(
        f"could not download {name!r} from any mirror: " + "; ".join(failures) + ". " + hint
    )


def _locate(
    candidates: Sequence[str],
    dirs: Sequence[Path],
    download_dir: Path,
    download: bool,
    mirrors: Sequence[str],
    download_name: str,
    expected: str,
) -> Path:
    """The first existing file among ``candidates`` in ``dirs``, downloading it if allowed."""
    for d in dirs:
        for name in candidates:
            p = d / name
            if p.is_file():
                return p
    if not download:
        names = " or ".join(repr(c) for c in candidates)
        raise FileNotFoundError(
            f"{names} not found; looked in {_where_text(dirs)}. Pass download=True to fetch it, "
            f"pass root= a folder that holds it, or set the environment variable {DATA_ENV_VAR} "
            "to a folder with a verified copy (the file directly in it or in its data-set "
            "subfolder)."
        )
    return _download(download_name, download_dir, mirrors, expected)


# --------------------------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------------------------

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


def _read_mnist_file(path: Path, expected: str) -> bytes:
    """The decompressed content of a verified MNIST ``.gz`` file."""
    key = _stat_key(path, expected)
    raw = path.read_bytes()
    _verify_bytes(path, raw, expected, "MNIST file", key)
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
        mirrors: base URLs to download from, tried in order (default :data:`MNIST_MIRRORS`).
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
    root_path = _check_root(root)
    download = _check_bool("download", download)
    raw = _check_bool("raw", raw)
    mirror_list = _check_mirrors(mirrors, MNIST_MIRRORS)

    images_name, labels_name, n_expected = _MNIST_SPLITS[split]
    dirs, download_dir = _search_dirs(root_path, "mnist")
    arrays = []
    for name, magic in ((images_name, 2051), (labels_name, 2049)):
        expected = MNIST_FILES[name]
        path = _locate([name], dirs, download_dir, download, mirror_list, name, expected)
        arrays.append(_parse_idx(_read_mnist_file(path, expected), name, magic))
    images, labels = arrays

    if images.shape != (n_expected, 28, 28):
        raise ValueError(f"{images_name}: shape {images.shape}, expected ({n_expected}, 28, 28)")
    if labels.shape != (n_expected,):
        raise ValueError(f"{labels_name}: shape {labels.shape}, expected ({n_expected},)")

    flat = images.reshape(n_expected, _N_PIXELS_MNIST)
    x = flat.copy() if raw else flat.astype(np.float32) / np.float32(255.0)
    y = labels.astype(np.int64)
    return x, y


# --------------------------------------------------------------------------------------------
# binarized MNIST (Larochelle)
# --------------------------------------------------------------------------------------------


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
            :data:`BINARIZED_MNIST_MIRRORS`).

    Returns:
        float32 array of shape ``(n, 784)`` holding 0.0 and 1.0 (28x28 images, row-major).

    Raises:
        ValueError: the sha256 of the (decompressed) content does not match the published one.
        FileNotFoundError: the file is missing and ``download=False``.
        RuntimeError: the file is missing and no mirror could deliver it.
    """
    _check_choice("split", split, tuple(BINARIZED_MNIST_SHA256))
    root_path = _check_root(root)
    download = _check_bool("download", download)
    mirror_list = _check_mirrors(mirrors, BINARIZED_MNIST_MIRRORS)

    name = f"binarized_mnist_{split}.amat"
    expected = BINARIZED_MNIST_SHA256[split]
    dirs, download_dir = _search_dirs(root_path, "binarized_mnist")
    path = _locate([name, name + ".gz"], dirs, download_dir, download, mirror_list, name, expected)

    key = _stat_key(path, expected)
    content = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            content = gzip.decompress(content)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(
                f"{str(path)!r} is not a valid gzip file ({exc}); it is corrupt or truncated. "
                f"Delete it, or set {DATA_ENV_VAR} to a folder holding a verified copy."
            ) from exc
    _verify_bytes(path, content, expected, "decompressed content of", key)
    return _parse_amat(content, path.name, _BINARIZED_MNIST_SIZES[split])


# --------------------------------------------------------------------------------------------
# 20 Newsgroups
# --------------------------------------------------------------------------------------------


def _news20_file(
    name: str, root: Path | None, download: bool, mirrors: Sequence[str]
) -> tuple[Path, bytes]:
    expected = NEWS20_FILES[name]
    dirs, download_dir = _search_dirs(root, "20news_prodlda")
    path = _locate([name], dirs, download_dir, download, mirrors, name, expected)
    content = path.read_bytes()
    _verify_bytes(path, content, expected, "file", _stat_key(path, expected))
    return path, content


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
        download: whether to download missing files (from :data:`NEWS20_MIRRORS`).
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
    root_path = _check_root(root)
    download = _check_bool("download", download)
    mirror_list = _check_mirrors(mirrors, NEWS20_MIRRORS)
    _, vocab_bytes = _news20_file("vocab.new", root_path, download, mirror_list)
    vocab = [line.split()[0] for line in vocab_bytes.decode("utf-8").splitlines() if line.strip()]
    path, content = _news20_file(f"{split}.feat", root_path, download, mirror_list)
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


# --------------------------------------------------------------------------------------------
# Caltech-101 Silhouettes
# --------------------------------------------------------------------------------------------


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
        mirrors: base URLs to download from (default :data:`CALTECH101_SILHOUETTES_MIRRORS`).

    Returns:
        ``(images, labels, class_names)``: float32 images ``(n, 784)`` of 0.0/1.0 in row-major
        order (the file stores them column-major; they are transposed here so that
        ``images.reshape(-1, 28, 28)`` shows them upright), int64 labels ``0..100`` and the
        101 class names.

    Raises:
        ValueError: the sha256 does not match, or the content is malformed.
        FileNotFoundError / RuntimeError: as for :func:`load_mnist`.
    """
    import io as _io

    _check_choice("split", split, tuple(_CALTECH_SPLITS))
    root_path = _check_root(root)
    download = _check_bool("download", download)
    mirror_list = _check_mirrors(mirrors, CALTECH101_SILHOUETTES_MIRRORS)
    ((name, expected),) = CALTECH101_SILHOUETTES_FILES.items()
    dirs, download_dir = _search_dirs(root_path, "caltech101_silhouettes")
    path = _locate([name], dirs, download_dir, download, mirror_list, name, expected)
    content = path.read_bytes()
    _verify_bytes(path, content, expected, "file", _stat_key(path, expected))
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


# --------------------------------------------------------------------------------------------
# binarization
# --------------------------------------------------------------------------------------------


def binarize(
    x: Any,
    method: str = "threshold",
    threshold: float = 0.5,
    seed: int | np.random.Generator | None = None,
) -> np.ndarray:
    """Binarize intensities in ``[0, 1]``.

    Args:
        x: array-like of any shape with finite values in ``[0, 1]``.
        method: ``"threshold"``: ``1`` where ``x > threshold``, else ``0``. ``"sample"``: one
            Bernoulli draw with success probabilities ``x`` (a fixed binarization, the same for
            the same ``seed``).
        threshold: the cut for ``method="threshold"``, a finite number.
        seed: randomness for ``method="sample"``: an int (non-negative), a
            ``numpy.random.Generator`` (advanced by the draw) or ``None`` (fresh OS entropy).
            Ignored by ``"threshold"``.

    Returns:
        float32 array of the same shape as ``x`` holding 0.0 and 1.0.
    """
    _check_choice("method", method, ("threshold", "sample"))
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"threshold must be a real number; got {type(threshold).__name__}")
    if not math.isfinite(float(threshold)):
        raise ValueError(f"threshold must be finite; got {threshold}")
    if not (seed is None or isinstance(seed, np.random.Generator)):
        seed = _check_int("seed", seed)
    arr = _as_probabilities("x", x)
    if method == "threshold":
        return (arr > threshold).astype(np.float32)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return _bernoulli(arr, rng)


class StochasticBinarization:
    """Dynamic binarization: a fresh Bernoulli draw of ``x`` for every epoch.

    A trainer accepts an instance in place of a fixed data array: it calls ``data(epoch)`` at
    the start of each epoch to get that epoch's binary data set, so the model sees a new
    binarization of the gray-level images every epoch (the usual "dynamically binarized MNIST"
    protocol), while a run stays reproducible: the draw depends only on ``(seed, epoch)``.

    ``data(epoch)`` equals ``binarize(x, "sample", seed=np.random.default_rng([seed, epoch]))``.

    Args:
        x: array-like of shape ``(n, ...)`` with finite values in ``[0, 1]`` (the Bernoulli
            probabilities, e.g. MNIST gray levels from :func:`load_mnist`). Stored as float32.
        seed: non-negative int.
    """

    def __init__(self, x: Any, seed: int = 0) -> None:
        arr = _as_probabilities("x", x)
        if arr.ndim < 1:
            raise ValueError("x must have at least one dimension (examples first); got a scalar")
        self.seed: int = _check_int("seed", seed)
        self.probs: np.ndarray = np.array(arr, dtype=np.float32)  # a private copy
        self.probs.setflags(write=False)

    def __call__(self, epoch: int) -> np.ndarray:
        """The binarization of epoch ``epoch``: float32 0/1 of shape :attr:`shape`.

        Deterministic given ``(seed, epoch)``; different epochs give independent draws.
        """
        epoch = _check_int("epoch", epoch)
        return _bernoulli(self.probs, np.random.default_rng([self.seed, epoch]))

    def __len__(self) -> int:
        """The number of examples, ``shape[0]``."""
        return int(self.probs.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of every epoch's array (that of ``x``)."""
        return tuple(self.probs.shape)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, seed={self.seed})"
