"""The loaders' shared argument checks and file reading (ebm_ppl.datasets.cache._file_source)."""

from __future__ import annotations

import hashlib

import pytest

from ebm_ppl.datasets import load_mnist
from ebm_ppl.datasets.cache import _file_source


def test_loader_flags_are_checked_after_download_and_before_mirrors():
    with pytest.raises(TypeError, match="raw"):
        load_mnist("test", raw="yes")
    # the order the loaders always used: root, download, the loader's own flags, mirrors
    with pytest.raises(TypeError, match="download"):
        _file_source("x", ["http://example.org/"], None, "yes", [1], raw="no")
    with pytest.raises(TypeError, match="raw"):
        _file_source("x", ["http://example.org/"], None, True, [1], raw="no")
    source = _file_source("x", (), None, False, ["http://example.org"], raw=True)
    assert source.flags == {"raw": True} and source.mirrors == ("http://example.org/",)


def test_read_prefers_name_then_also_and_verifies_the_decoded_content(tmp_path):
    (tmp_path / "a.txt.up").write_bytes(b"hello")
    expected = hashlib.sha256(b"HELLO").hexdigest()
    source = _file_source("x", ["http://example.org/"], tmp_path, False, None)
    path, content = source.read("a.txt", expected, also=["a.txt.up"], decode=lambda p, b: b.upper())
    assert path.name == "a.txt.up" and content == b"HELLO"
    (tmp_path / "a.txt").write_bytes(b"HELLO")
    assert source.read("a.txt", expected, also=["a.txt.up"])[0].name == "a.txt"
    with pytest.raises(ValueError, match="sha256 mismatch for some file"):
        source.read("a.txt", hashlib.sha256(b"hello").hexdigest(), "some file")
    with pytest.raises(FileNotFoundError, match="b.txt"):
        source.read("b.txt", expected)
