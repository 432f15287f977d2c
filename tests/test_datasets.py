"""Tests of :mod:`ebm_ppl.datasets`.

The MNIST tests read the verified copies under ``<workplace>/shared/data`` (override with the
environment variable ``EBM_PPL_DATA``, read before any test changes it) and are skipped when
those are absent. Downloads are tested against a local ``http.server`` on 127.0.0.1; nothing
goes to the internet.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

from ebm_ppl import datasets
from ebm_ppl.datasets import (
    BINARIZED_MNIST_SHA256,
    CALTECH101_SILHOUETTES_FILES,
    MNIST_FILES,
    NEWS20_FILES,
    StochasticBinarization,
    binarize,
    load_20news,
    load_binarized_mnist,
    load_caltech101_silhouettes,
    load_digits,
    load_mnist,
)

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
FIRST_TEN_TRAIN_LABELS = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
TRAIN_PIXEL_SUM = 1_567_298_545
TEST_PIXEL_SUM = 264_923_200
BINARIZED_MEANS = {"train": 0.1306, "valid": 0.1311, "test": 0.1325}
BINARIZED_SIZES = {"train": 50000, "valid": 10000, "test": 10000}


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No test sees the user's EBM_PPL_DATA or writes to the user's real cache folder."""
    monkeypatch.delenv("EBM_PPL_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder with verified data copies (``$EBM_PPL_DATA`` or ``../../shared/data``)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"verified data folder {str(SHARED_DATA)!r} is absent; set EBM_PPL_DATA to a folder "
            "holding mnist/ and binarized_mnist/ to run this test"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def mnist_dir(shared_data) -> Path:
    path = shared_data / "mnist"
    missing = [name for name in MNIST_FILES if not (path / name).is_file()]
    if missing:
        pytest.skip(f"verified MNIST files {missing} are absent from {str(path)!r}")
    return path


@pytest.fixture(scope="session")
def binarized_dir(shared_data) -> Path:
    path = shared_data / "binarized_mnist"
    missing = [
        f"binarized_mnist_{s}.amat.gz"
        for s in BINARIZED_MNIST_SHA256
        if not (path / f"binarized_mnist_{s}.amat.gz").is_file()
        and not (path / f"binarized_mnist_{s}.amat").is_file()
    ]
    if missing:
        pytest.skip(f"verified binarized MNIST files {missing} are absent from {str(path)!r}")
    return path


@pytest.fixture(scope="module")
def mnist_train_raw(mnist_dir):
    return load_mnist("train", root=mnist_dir, download=False, raw=True)


@pytest.fixture(scope="module")
def mnist_test_raw(mnist_dir):
    return load_mnist("test", root=mnist_dir, download=False, raw=True)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def http_folder(tmp_path):
    """A folder served over HTTP on 127.0.0.1 (ephemeral port): yields ``(folder, base_url)``."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _copy_corrupted(src: Path, dst: Path, offset: int | None = None) -> Path:
    """Copy ``src`` to ``dst`` with one byte flipped (the middle one by default)."""
    data = bytearray(src.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    dst.write_bytes(bytes(data))
    return dst


# --------------------------------------------------------------------------------------------
# load_digits
# --------------------------------------------------------------------------------------------


def test_digits_all_shapes_and_range():
    x, y = load_digits()
    assert x.shape == (1797, 64) and x.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(y).tolist()) == set(range(10))
    # intensities are the 0..16 integers divided by 16
    np.testing.assert_array_equal(x * 16, np.round(x * 16))


def test_digits_split_is_the_documented_permutation():
    x, y = load_digits("all")
    xtr, ytr = load_digits("train", test_size=0.2, seed=3)
    xte, yte = load_digits("test", test_size=0.2, seed=3)
    n_test = round(0.2 * 1797)
    assert xte.shape == (n_test, 64) and xtr.shape == (1797 - n_test, 64)
    assert ytr.dtype == np.int64 and yte.dtype == np.int64
    perm = np.random.default_rng(3).permutation(1797)
    np.testing.assert_array_equal(xte, x[perm[:n_test]])
    np.testing.assert_array_equal(yte, y[perm[:n_test]])
    np.testing.assert_array_equal(xtr, x[perm[n_test:]])
    np.testing.assert_array_equal(ytr, y[perm[n_test:]])


def test_digits_splits_disjoint_and_cover_all():
    x, _ = load_digits("all")
    xtr, _ = load_digits("train", test_size=0.3, seed=1)
    xte, _ = load_digits("test", test_size=0.3, seed=1)
    train_rows = {row.tobytes() for row in xtr}
    test_rows = {row.tobytes() for row in xte}
    assert not train_rows & test_rows
    assert train_rows | test_rows == {row.tobytes() for row in x}


def test_digits_deterministic_given_seed():
    a = load_digits("train", seed=7)
    b = load_digits("train", seed=7)
    c = load_digits("train", seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"split": "valid"}, ValueError, "split"),
        ({"split": 1}, TypeError, "split"),
        ({"split": "test", "test_size": 0.0}, ValueError, "test_size"),
        ({"split": "test", "test_size": 1.5}, ValueError, "test_size"),
        ({"split": "test", "test_size": "0.2"}, TypeError, "test_size"),
        ({"split": "test", "test_size": 1e-6}, ValueError, "test_size"),
        ({"split": "test", "seed": -1}, ValueError, "seed"),
        ({"split": "test", "seed": 1.5}, TypeError, "seed"),
    ],
)
def test_digits_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        load_digits(**kwargs)


# --------------------------------------------------------------------------------------------
# binarize
# --------------------------------------------------------------------------------------------


def test_binarize_threshold():
    x = np.array([[0.0, 0.5, 0.51, 1.0], [0.2, 0.3, 0.9, 0.49]])
    out = binarize(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_array_equal(out, [[0, 0, 1, 1], [0, 0, 1, 0]])
    np.testing.assert_array_equal(binarize(x, threshold=0.25), [[0, 1, 1, 1], [0, 1, 1, 1]])
    # lists, ints and bools are accepted
    np.testing.assert_array_equal(binarize([0, 1, 1]), [0, 1, 1])
    np.testing.assert_array_equal(binarize(np.array([True, False])), [1, 0])


def test_binarize_sample_deterministic_and_unbiased():
    rng = np.random.default_rng(0)
    x = rng.random((500, 40)).astype(np.float32)
    a = binarize(x, "sample", seed=123)
    b = binarize(x, "sample", seed=123)
    c = binarize(x, "sample", seed=124)
    assert a.dtype == np.float32 and a.shape == x.shape
    assert set(np.unique(a).tolist()) <= {0.0, 1.0}
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # a Generator seed gives the same draw as the int it was made from
    np.testing.assert_array_equal(a, binarize(x, "sample", seed=np.random.default_rng(123)))
    assert abs(a.mean() - x.mean()) < 0.01
    # seed=None works (fresh entropy)
    assert binarize(x, "sample").shape == x.shape


def test_binarize_sample_extremes():
    x = np.array([0.0, 1.0] * 500)
    out = binarize(x, "sample", seed=0)
    np.testing.assert_array_equal(out, x.astype(np.float32))


@pytest.mark.parametrize(
    ("x", "kwargs", "error", "match"),
    [
        ([0.1, np.nan], {}, ValueError, "finite"),
        ([0.1, np.inf], {}, ValueError, "finite"),
        ([0.1, 1.5], {}, ValueError, r"\[0, 1\]"),
        ([-0.1, 0.5], {}, ValueError, r"\[0, 1\]"),
        (["a", "b"], {}, TypeError, "real numbers"),
        ([0.1, 0.2], {"method": "round"}, ValueError, "method"),
        ([0.1, 0.2], {"method": None}, TypeError, "method"),
        ([0.1, 0.2], {"threshold": float("nan")}, ValueError, "threshold"),
        ([0.1, 0.2], {"threshold": "0.5"}, TypeError, "threshold"),
        ([0.1, 0.2], {"method": "sample", "seed": 1.5}, TypeError, "seed"),
        ([0.1, 0.2], {"method": "sample", "seed": -3}, ValueError, "seed"),
    ],
)
def test_binarize_bad_input(x, kwargs, error, match):
    with pytest.raises(error, match=match):
        binarize(x, **kwargs)


# --------------------------------------------------------------------------------------------
# StochasticBinarization
# --------------------------------------------------------------------------------------------


def test_stochastic_binarization():
    rng = np.random.default_rng(1)
    x = rng.random((1000, 64))
    data = StochasticBinarization(x, seed=5)
    assert len(data) == 1000 and data.shape == (1000, 64)
    e0, e0_again, e1 = data(0), data(0), data(1)
    assert e0.dtype == np.float32 and e0.shape == (1000, 64)
    assert set(np.unique(e0).tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(e0, e0_again)
    assert not np.array_equal(e0, e1)
    # a new instance with the same seed reproduces the draws; another seed does not
    np.testing.assert_array_equal(StochasticBinarization(x, seed=5)(1), e1)
    assert not np.array_equal(StochasticBinarization(x, seed=6)(1), e1)
    # each epoch is an unbiased draw
    for epoch in (0, 1, 2):
        assert abs(data(epoch).mean() - x.mean()) < 0.01
    # per-pixel means over many epochs track x
    avg = np.mean([data(e) for e in range(40)], axis=0)
    assert np.abs(avg - x).mean() < 0.1
    # documented relation to binarize
    np.testing.assert_array_equal(
        data(3), binarize(x, "sample", seed=np.random.default_rng([5, 3]))
    )


def test_stochastic_binarization_keeps_a_copy():
    x = np.full((10, 3), 0.5)
    data = StochasticBinarization(x, seed=0)
    before = data(0)
    x[:] = 1.0
    np.testing.assert_array_equal(data(0), before)
    assert "StochasticBinarization" in repr(data)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((0.5,), ValueError, "dimension"),
        (([0.5, 2.0],), ValueError, r"\[0, 1\]"),
        (([0.5, np.nan],), ValueError, "finite"),
        (([0.5], -1), ValueError, "seed"),
        (([0.5], "1"), TypeError, "seed"),
    ],
)
def test_stochastic_binarization_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        StochasticBinarization(*args)


def test_stochastic_binarization_bad_epoch():
    data = StochasticBinarization([0.5, 0.5])
    with pytest.raises(ValueError, match="epoch"):
        data(-1)
    with pytest.raises(TypeError, match="epoch"):
        data(1.0)


# --------------------------------------------------------------------------------------------
# argument checks of the file loaders (no data needed)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loader", [load_mnist, load_binarized_mnist])
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"split": "validation"}, ValueError, "split"),
        ({"split": None}, TypeError, "split"),
        ({"root": 123}, TypeError, "root"),
        ({"download": "yes"}, TypeError, "download"),
        ({"mirrors": "http://example.org/"}, TypeError, "mirrors"),
        ({"mirrors": []}, ValueError, "mirrors"),
        ({"mirrors": ["ftp://example.org/"]}, ValueError, "mirrors"),
        ({"mirrors": [1]}, TypeError, "mirrors"),
    ],
)
def test_loaders_bad_arguments(loader, kwargs, error, match):
    with pytest.raises(error, match=match):
        loader(**kwargs)


@pytest.mark.parametrize("loader", [load_mnist, load_binarized_mnist])
def test_missing_file_without_download(loader, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="EBM_PPL_DATA") as info:
        loader("test", root=empty, download=False)
    assert str(empty) in str(info.value)


def test_root_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="root"):
        load_mnist("test", root=f, download=False)


def test_parse_idx_rejects_bad_data():
    header = (2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (2, 2, 2))
    good = header + bytes(range(8))
    assert datasets._parse_idx(good, "x", 2051).shape == (2, 2, 2)
    with pytest.raises(ValueError, match="magic"):
        datasets._parse_idx(good, "x", 2049)
    with pytest.raises(ValueError, match="body"):
        datasets._parse_idx(good[:-1], "x", 2051)
    with pytest.raises(ValueError, match="short"):
        datasets._parse_idx(b"\x00\x00", "x", 2051)


def test_parse_amat_rejects_bad_layout():
    line = " ".join(["1"] * 784) + "\n"
    good = (line * 2).encode()
    assert datasets._parse_amat(good, "x", 2).sum() == 2 * 784
    with pytest.raises(ValueError, match="bytes"):
        datasets._parse_amat(good[:-1], "x", 2)
    with pytest.raises(ValueError, match="layout"):
        datasets._parse_amat(good.replace(b" ", b",", 1), "x", 2)
    with pytest.raises(ValueError, match="0 and 1"):
        datasets._parse_amat(good.replace(b"1", b"2", 1), "x", 2)


# --------------------------------------------------------------------------------------------
# MNIST on the verified copy
# --------------------------------------------------------------------------------------------


def test_mnist_train_sanity_figures(mnist_train_raw):
    x, y = mnist_train_raw
    assert x.shape == (60000, 784) and x.dtype == np.uint8
    assert y.shape == (60000,) and y.dtype == np.int64
    assert np.bincount(y, minlength=10).tolist() == TRAIN_COUNTS
    assert y[:10].tolist() == FIRST_TEN_TRAIN_LABELS
    assert int(x.sum(dtype=np.int64)) == TRAIN_PIXEL_SUM


def test_mnist_test_sanity_figures(mnist_test_raw):
    x, y = mnist_test_raw
    assert x.shape == (10000, 784) and x.dtype == np.uint8
    assert y.shape == (10000,) and y.dtype == np.int64
    assert np.bincount(y, minlength=10).tolist() == TEST_COUNTS
    assert int(x.sum(dtype=np.int64)) == TEST_PIXEL_SUM


def test_mnist_float_images(mnist_dir, mnist_test_raw):
    x, y = load_mnist("test", root=mnist_dir, download=False)
    assert x.shape == (10000, 784) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_allclose(x, mnist_test_raw[0] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, mnist_test_raw[1])


def test_mnist_found_through_env_var(mnist_dir, mnist_test_raw, monkeypatch):
    # EBM_PPL_DATA pointing at a folder with an mnist/ subfolder ...
    monkeypatch.setenv("EBM_PPL_DATA", str(mnist_dir.parent))
    x, y = load_mnist("test", download=False, raw=True)
    np.testing.assert_array_equal(x, mnist_test_raw[0])
    np.testing.assert_array_equal(y, mnist_test_raw[1])
    # ... or holding the files directly
    monkeypatch.setenv("EBM_PPL_DATA", str(mnist_dir))
    _, y = load_mnist("test", download=False)
    np.testing.assert_array_equal(y, mnist_test_raw[1])


def test_mnist_found_in_xdg_cache(mnist_dir, mnist_test_raw, tmp_path):
    cache = Path(os.environ["XDG_CACHE_HOME"]) / "ebm_ppl" / "mnist"
    assert cache == datasets.data_cache_dir("mnist")
    cache.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(mnist_dir / name, cache / name)
    _, y = load_mnist("test", download=False)
    np.testing.assert_array_equal(y, mnist_test_raw[1])


def test_root_takes_precedence_over_env_var(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("EBM_PPL_DATA", str(mnist_dir))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError):
        load_mnist("test", root=empty, download=False)


def test_mnist_checksum_mismatch(mnist_dir, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(mnist_dir / "t10k-images-idx3-ubyte.gz", root)
    name = "t10k-labels-idx1-ubyte.gz"
    bad = _copy_corrupted(mnist_dir / name, root / name)
    with pytest.raises(ValueError, match="sha256 mismatch") as info:
        load_mnist("test", root=root, download=True, mirrors=["http://127.0.0.1:9/"])
    message = str(info.value)
    assert name in message and MNIST_FILES[name] in message and _sha256(bad) in message
    assert "Delete" in message and "EBM_PPL_DATA" in message


def test_verification_cache_notices_changed_file(mnist_dir, mnist_test_raw, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(mnist_dir / name, root / name)
    load_mnist("test", root=root, download=False)
    labels = root / "t10k-labels-idx1-ubyte.gz"
    key = datasets._stat_key(labels, MNIST_FILES[labels.name])
    assert key in datasets._VERIFIED
    # same size, new content and modification time: verified again, and rejected
    st = labels.stat()
    _copy_corrupted(mnist_dir / labels.name, labels)
    os.utime(labels, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(ValueError, match="sha256 mismatch"):
        load_mnist("test", root=root, download=False)


# --------------------------------------------------------------------------------------------
# binarized MNIST on the verified copy
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_binarized_mnist(binarized_dir, split):
    x = load_binarized_mnist(split, root=binarized_dir, download=False)
    assert x.shape == (BINARIZED_SIZES[split], 784) and x.dtype == np.float32
    assert set(np.unique(x).tolist()) == {0.0, 1.0}
    assert round(float(x.mean(dtype=np.float64)), 4) == BINARIZED_MEANS[split]


def test_binarized_mnist_plain_amat_and_env_var(binarized_dir, tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    sub = data_dir / "binarized_mnist"
    sub.mkdir(parents=True)
    src = binarized_dir / "binarized_mnist_test.amat.gz"
    (sub / "binarized_mnist_test.amat").write_bytes(gzip.decompress(src.read_bytes()))
    monkeypatch.setenv("EBM_PPL_DATA", str(data_dir))
    x = load_binarized_mnist("test", download=False)
    np.testing.assert_array_equal(x, load_binarized_mnist("test", root=binarized_dir))


def test_binarized_mnist_checksum_mismatch(binarized_dir, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    name = "binarized_mnist_valid.amat"
    content = bytearray(gzip.decompress((binarized_dir / (name + ".gz")).read_bytes()))
    # flip one bit value: the layout stays valid, only the checksum can tell
    content[0] = ord("1") if content[0] == ord("0") else ord("0")
    (root / name).write_bytes(bytes(content))
    with pytest.raises(ValueError, match="sha256 mismatch") as info:
        load_binarized_mnist("valid", root=root, download=False)
    assert BINARIZED_MNIST_SHA256["valid"] in str(info.value)


def test_binarized_mnist_corrupt_gzip(binarized_dir, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    name = "binarized_mnist_valid.amat.gz"
    _copy_corrupted(binarized_dir / name, root / name)
    with pytest.raises(ValueError, match=name):
        load_binarized_mnist("valid", root=root, download=False)


# --------------------------------------------------------------------------------------------
# downloads from a local HTTP server
# --------------------------------------------------------------------------------------------


def test_mnist_download(mnist_dir, mnist_test_raw, http_folder, tmp_path):
    served, url = http_folder
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(mnist_dir / name, served / name)
    root = tmp_path / "cache"  # does not exist yet: created by the download
    # the first mirror answers 404, the second one serves the files
    x, y = load_mnist("test", root=root, mirrors=[url + "nothing-here/", url], raw=True)
    np.testing.assert_array_equal(x, mnist_test_raw[0])
    np.testing.assert_array_equal(y, mnist_test_raw[1])
    assert sorted(p.name for p in root.iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    for p in root.iterdir():
        assert _sha256(p) == MNIST_FILES[p.name]
    # a second load uses the downloaded copies (the server is no longer needed)
    shutil.rmtree(served)
    _, y2 = load_mnist("test", root=root, mirrors=[url])
    np.testing.assert_array_equal(y2, mnist_test_raw[1])


def test_mnist_download_into_xdg_cache(mnist_dir, http_folder):
    served, url = http_folder
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(mnist_dir / name, served / name)
    load_mnist("test", mirrors=[url])
    cache = datasets.data_cache_dir("mnist")
    assert (cache / "t10k-labels-idx1-ubyte.gz").is_file()
    assert (cache / "t10k-images-idx3-ubyte.gz").is_file()


def test_mnist_download_corrupted(mnist_dir, http_folder, tmp_path):
    served, url = http_folder
    name = "t10k-images-idx3-ubyte.gz"
    bad = _copy_corrupted(mnist_dir / name, served / name)
    root = tmp_path / "cache"
    with pytest.raises(ValueError, match="sha256 mismatch") as info:
        load_mnist("test", root=root, mirrors=[url])
    assert MNIST_FILES[name] in str(info.value) and _sha256(bad) in str(info.value)
    assert list(root.iterdir()) == []  # nothing unverified left behind, not even a temp file


def test_download_all_mirrors_fail(http_folder, tmp_path):
    _, url = http_folder  # serves an empty folder: every request is a 404
    root = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="EBM_PPL_DATA") as info:
        load_mnist("test", root=root, mirrors=[url, url + "other/"])
    assert url in str(info.value) and url + "other/" in str(info.value)
    assert list(root.iterdir()) == []


def test_binarized_mnist_download(binarized_dir, http_folder, tmp_path):
    served, url = http_folder
    name = "binarized_mnist_valid.amat"
    (served / name).write_bytes(gzip.decompress((binarized_dir / (name + ".gz")).read_bytes()))
    root = tmp_path / "cache"
    x = load_binarized_mnist("valid", root=root, mirrors=[url])
    assert [p.name for p in root.iterdir()] == [name]
    assert _sha256(root / name) == BINARIZED_MNIST_SHA256["valid"]
    np.testing.assert_array_equal(x, load_binarized_mnist("valid", root=binarized_dir))


@pytest.fixture(scope="session")
def news20_dir(shared_data) -> Path:
    path = shared_data / "20news_prodlda"
    missing = [n for n in NEWS20_FILES if not (path / n).is_file()]
    if missing:
        pytest.skip(f"verified 20 Newsgroups files {missing} are absent from {str(path)!r}")
    return path


def test_20news_counts_and_vocabulary(news20_dir):
    """Sizes and token totals as documented in ../shared/data/README.md."""
    train, vocab = load_20news("train", root=news20_dir)
    test, vocab_test = load_20news("test", root=news20_dir)
    assert train.shape == (11258, 1995) and test.shape == (7487, 1995)
    assert train.dtype == np.float32 and vocab == vocab_test and len(vocab) == 1995
    assert train.sum() == 991_493 and test.sum() == 629_312
    assert vocab[:4] == ["_eos_", "write", "one", "use"] and train[:, 0].sum() == 0
    assert (train.sum(1) > 0).all() and (train == np.round(train)).all()
    # the most frequent words are the ones the data README names
    top = [vocab[k] for k in np.argsort(-train.sum(0))[:3]]
    assert set(top) <= {"write", "one", "use", "get", "say", "article", "know", "people"}


def test_20news_download_and_checksum(news20_dir, http_folder, tmp_path):
    served, url = http_folder
    for name in NEWS20_FILES:
        (served / name).write_bytes((news20_dir / name).read_bytes())
    root = tmp_path / "cache"
    x, _ = load_20news("test", root=root, mirrors=[url])
    assert sorted(p.name for p in root.iterdir()) == ["test.feat", "vocab.new"]
    np.testing.assert_array_equal(x, load_20news("test", root=news20_dir)[0])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "vocab.new").write_bytes((news20_dir / "vocab.new").read_bytes())
    (bad / "test.feat").write_bytes((news20_dir / "test.feat").read_bytes()[:-10])
    with pytest.raises(ValueError, match="sha256 mismatch"):
        load_20news("test", root=bad, download=False)
    with pytest.raises(ValueError, match="split"):
        load_20news("valid", root=news20_dir)


@pytest.fixture(scope="session")
def caltech_dir(shared_data) -> Path:
    path = shared_data / "caltech101_silhouettes"
    missing = [n for n in CALTECH101_SILHOUETTES_FILES if not (path / n).is_file()]
    if missing:
        pytest.skip(
            f"verified Caltech-101 Silhouettes files {missing} are absent from {str(path)!r}"
        )
    return path


def test_caltech_silhouettes_splits_and_cross_check(caltech_dir):
    """Split sizes, 101 classes, binary values, and (as in ../shared/data/README.md) the
    union of the three splits equals the unsplit file's (image, label) pairs."""
    from scipy.io import loadmat

    parts = [load_caltech101_silhouettes(s, root=caltech_dir) for s in ("train", "valid", "test")]
    assert [len(p[0]) for p in parts] == [4100, 2264, 2307]
    names = parts[0][2]
    assert len(names) == 101 and names == parts[1][2]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    assert set(np.unique(x)) == {0.0, 1.0} and y.min() == 0 and y.max() == 100
    assert len(np.unique(parts[0][1])) == 101
    full = loadmat(str(caltech_dir / "caltech101_silhouettes_28.mat"))
    fx = full["X"].reshape(-1, 28, 28).transpose(0, 2, 1).reshape(-1, 784).astype(np.float32)
    fy = full["Y"].reshape(-1).astype(np.int64) - 1

    def rows(a, b):
        return sorted(
            map(bytes, np.concatenate([a.astype(np.uint8), b[:, None].astype(np.uint8)], 1))
        )

    assert rows(x, y) == rows(fx, fy)


def test_caltech_silhouettes_download_and_checksum(caltech_dir, http_folder, tmp_path):
    served, url = http_folder
    (name,) = CALTECH101_SILHOUETTES_FILES
    (served / name).write_bytes((caltech_dir / name).read_bytes())
    root = tmp_path / "cache"
    x, y, _ = load_caltech101_silhouettes("valid", root=root, mirrors=[url])
    assert [p.name for p in root.iterdir()] == [name]
    np.testing.assert_array_equal(x, load_caltech101_silhouettes("valid", root=caltech_dir)[0])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / name).write_bytes((caltech_dir / name).read_bytes()[:-10])
    with pytest.raises(ValueError, match="sha256 mismatch"):
        load_caltech101_silhouettes("train", root=bad, download=False)
    with pytest.raises(ValueError, match="split"):
        load_caltech101_silhouettes("validation", root=caltech_dir)
