"""Finding, verifying and downloading the data files of :mod:`ebm_ppl.datasets`.

For each file, in this order: ``root`` when the caller passes it (then only there; downloads
go there too); otherwise the folder named by the environment variable ``EBM_PPL_DATA`` (the
file directly in it or in its data-set subfolder); otherwise the cache folder
``$XDG_CACHE_HOME/ebm_ppl/<data set>`` (by default ``~/.cache/ebm_ppl/<data set>``), which is
also where downloads go. Every file is checked against its published sha256 before it is
parsed; a successful check is remembered in this process for the file's path, size and
modification time. The argument checks shared by the loaders live here too, and
:func:`_file_source`, the one place where a loader's ``root``/``download``/``mirrors`` become a
:class:`_FileSource` that finds, downloads and verifies its files.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import numbers
import os
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DATA_ENV_VAR",
    "DOWNLOAD_TIMEOUT_S",
    "DownloadError",
    "data_cache_dir",
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
# what the file loaders share: their checked arguments, and reading a verified file
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _FileSource:
    """Where one loader call finds its files and downloads them from (its checked arguments).

    ``flags`` holds the loader's own ``bool`` arguments, checked by :func:`_file_source`.
    """

    dirs: list[Path]
    download_dir: Path
    download: bool
    mirrors: tuple[str, ...]
    flags: Mapping[str, bool]

    def read(
        self,
        name: str,
        expected: str,
        what: str = "file",
        *,
        also: Sequence[str] = (),
        decode: Callable[[Path, bytes], bytes] | None = None,
    ) -> tuple[Path, bytes]:
        """The path and content of the first of ``name`` and ``also`` (other forms of the same
        file, say compressed) found in :attr:`dirs`, else of ``name`` downloaded (if allowed),
        checked against its sha256 ``expected``: that of the bytes read, or of
        ``decode(path, bytes)`` when ``decode`` is given (then the decoded content is
        returned). ``what`` names the file in a mismatch error."""
        path = _locate(
            [name, *also], self.dirs, self.download_dir, self.download, self.mirrors, name, expected
        )
        key = _stat_key(path, expected)
        content = path.read_bytes()
        if decode is not None:
            content = decode(path, content)
        _verify_bytes(path, content, expected, what, key)
        return path, content


def _file_source(
    subfolder: str,
    default_mirrors: Sequence[str],
    root: Any,
    download: Any,
    mirrors: Any,
    **flags: Any,
) -> _FileSource:
    """Check a file loader's ``root``, ``download``, its own ``bool`` arguments ``flags`` and
    ``mirrors`` (in that order), and say where its files lie: ``root``, or else
    ``$EBM_PPL_DATA`` and the cache folder of data set ``subfolder``."""
    root_path = _check_root(root)
    download = _check_bool("download", download)
    checked = {name: _check_bool(name, value) for name, value in flags.items()}
    mirror_list = _check_mirrors(mirrors, default_mirrors)
    dirs, download_dir = _search_dirs(root_path, subfolder)
    return _FileSource(dirs, download_dir, download, mirror_list, checked)
