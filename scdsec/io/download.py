"""Fetch input files from URLs or local paths and verify their checksums.

Only the standard library is used (``urllib``), so proxies configured through the usual
``http_proxy`` / ``https_proxy`` / ``no_proxy`` environment variables apply.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .._errors import InputError

__all__ = ["content_digest", "fetch", "file_digest", "local_source", "verify_checksum"]

_log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_DIGEST_LENGTHS = {"sha256": 64, "md5": 32, "gitblob": 40}
_KIND_BY_LENGTH = {length: kind for kind, length in _DIGEST_LENGTHS.items()}
_HEX = re.compile(r"[0-9a-f]+")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_USER_AGENT = "scdsec (Python urllib)"


def content_digest(path: str | Path, cache: str | Path | None = None) -> str:
    """SHA-256 of a file's content, or of a folder's (every file's relative path and content).

    The workflow reruns a local dataset's steps when this changes, not when the file's
    modification time does (a copied or remounted folder keeps its content). With ``cache``, a
    JSON file, the digest is kept there under the path with its size and modification time and
    is computed again only when one of those changed, so unchanged large files are read once.

    Raises
    ------
    InputError
        The path cannot be read.
    """
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    try:
        stamp = [
            [
                str(f.relative_to(path) if path.is_dir() else f.name),
                f.stat().st_size,
                f.stat().st_mtime_ns,
            ]
            for f in files
        ]
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    key = str(path.resolve())
    known = _read_cache(cache)
    if known.get(key, {}).get("stamp") == stamp:
        return known[key]["sha256"]
    digest = hashlib.sha256()
    for (name, _, _), file in zip(stamp, files, strict=True):
        digest.update(name.encode() + b"\0" + file_digest(file, "sha256").encode())
    value = digest.hexdigest()
    if cache is not None:
        known[key] = {"stamp": stamp, "sha256": value}
        cache = Path(cache)
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f"{cache.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps(known, indent=1))
        os.replace(partial, cache)
    return value


def _read_cache(cache: str | Path | None) -> dict:
    try:
        known = json.loads(Path(cache).read_text()) if cache is not None else {}
    except (OSError, ValueError):  # absent or damaged: computed again
        return {}
    return known if isinstance(known, dict) else {}


def file_digest(path: str | Path, kind: str) -> str:
    """Hex digest of a file, read in chunks.

    Parameters
    ----------
    path
        The file.
    kind
        ``"sha256"``, ``"md5"`` or ``"gitblob"`` (git's blob id: SHA-1 of
        ``b"blob <size>\\0"`` followed by the content).

    Returns
    -------
    str
        Lower-case hex digest, without a ``kind:`` prefix.

    Raises
    ------
    InputError
        Unknown ``kind``, or the file cannot be read.
    """
    path = Path(path)
    if kind not in _DIGEST_LENGTHS:
        raise InputError(f"{path}: unknown digest kind {kind!r}; expected sha256, md5 or gitblob")
    try:
        with path.open("rb") as fh:
            if kind == "gitblob":
                digest = hashlib.sha1(usedforsecurity=False)
                digest.update(b"blob %d\0" % os.fstat(fh.fileno()).st_size)
            else:
                digest = hashlib.new(kind, usedforsecurity=False)
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return digest.hexdigest()


def verify_checksum(path: str | Path, checksum: str) -> None:
    """Raise unless the file's digest equals ``checksum``.

    Parameters
    ----------
    path
        The file.
    checksum
        ``sha256:<64 hex>``, ``md5:<32 hex>``, ``gitblob:<40 hex>``, or bare hex whose
        length picks the kind (64: sha256, 40: git blob id, 32: md5). Case-insensitive.

    Raises
    ------
    InputError
        Bad checksum syntax, unreadable file, or a mismatch (the message gives the
        expected and the actual digest).
    """
    kind, expected = _parse_checksum(checksum, str(path))
    actual = file_digest(path, kind)
    if actual != expected:
        raise InputError(
            f"{path}: checksum mismatch: expected {kind}:{expected}, actual {kind}:{actual}"
        )


def fetch(
    source: str, dest: str | Path, checksum: str | None = None, *, timeout: float = 60
) -> Path:
    """Make ``source`` available locally, verified against ``checksum``.

    Parameters
    ----------
    source
        An ``http://`` or ``https://`` URL, a ``file://`` URL, or a local path.
    dest
        Where a URL is downloaded to (a file path; parent folders are created). It is
        written through ``<dest>.part`` and renamed into place only once complete and
        verified, so an existing ``dest`` is a finished download: it is reused when it
        matches ``checksum`` (or when no checksum is given) and downloaded again when it
        does not. Ignored for local sources.
    checksum
        Expected digest, in the forms :func:`verify_checksum` accepts, or None.
    timeout
        Seconds to wait for the server at each step of the download.

    Returns
    -------
    pathlib.Path
        ``dest`` for a URL; for a local path or ``file://`` URL, that path itself,
        neither copied nor modified.

    Raises
    ------
    InputError
        Bad checksum syntax, unsupported URL scheme, missing local file, a checksum given
        for a folder, a failed or truncated download (HTTP errors included), or a checksum
        mismatch (the partial download is deleted).
    """
    parsed = None if checksum is None else _parse_checksum(checksum, source)
    local = local_source(source)
    if local is not None:
        return _check_local(local, source, parsed)
    return _download(source, Path(dest), parsed, timeout)


def local_source(source: str) -> Path | None:
    """The local path a source names, or None for an ``http(s)://`` URL.

    A ``file://`` URL is decoded as URL libraries do (``file:///data/Baron%20mouse1.zip``
    is ``/data/Baron mouse1.zip``); anything without a scheme is a path as written, with a
    leading ``~`` or ``~user`` expanded to the home folder as a shell does.

    Raises
    ------
    InputError
        Another scheme, or a ``file://`` URL on another host.
    """
    if not _URL.match(source):
        try:
            return Path(source).expanduser()
        except RuntimeError:  # ~user of no known user: the path as written, found missing
            return Path(source)
    url = urllib.parse.urlsplit(source)
    scheme = url.scheme.lower()
    if scheme in ("http", "https"):
        return None
    if scheme == "file" and url.netloc in ("", "localhost"):
        return Path(urllib.request.url2pathname(url.path))
    raise InputError(
        f"{source}: unsupported source; expected an http(s):// or file:// URL or a local path"
    )


def _parse_checksum(checksum: str, where: str) -> tuple[str, str]:
    """Split a checksum string into ``(kind, lower-case hex digest)``."""
    text = checksum.strip().lower()
    kind, colon, digest = text.partition(":")
    if not colon:
        kind, digest = _KIND_BY_LENGTH.get(len(text), ""), text
    if _DIGEST_LENGTHS.get(kind) != len(digest) or not _HEX.fullmatch(digest):
        raise InputError(
            f"{where}: checksum {checksum!r} not understood; expected 'sha256:<64 hex>', "
            "'md5:<32 hex>', 'gitblob:<40 hex>' or bare hex of 64, 40 or 32 digits"
        )
    return kind, digest


def _check_local(path: Path, source: str, checksum: tuple[str, str] | None) -> Path:
    if not path.exists():
        raise InputError(f"{source}: no such file or directory")
    if checksum is not None:
        if path.is_dir():
            raise InputError(f"{source}: is a folder; a checksum can only be verified for a file")
        _verify(path, source, *checksum)
    return path


def _verify(path: Path, source: str, kind: str, expected: str) -> None:
    actual = file_digest(path, kind)
    if actual != expected:
        raise InputError(
            f"{source}: checksum mismatch: expected {kind}:{expected}, actual {kind}:{actual}"
        )


def _download(url: str, dest: Path, checksum: tuple[str, str] | None, timeout: float) -> Path:
    if dest.is_dir():
        raise InputError(f"{dest}: is a folder; fetch needs a file path to download {url} to")
    if dest.is_file():
        if checksum is None:
            _log.info("%s: already downloaded (no checksum to verify)", dest)
            return dest
        if file_digest(dest, checksum[0]) == checksum[1]:
            _log.info("%s: already downloaded, checksum verified", dest)
            return dest
        _log.warning("%s: exists but its checksum differs; downloading %s again", dest, url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    _log.info("downloading %s to %s", url, dest)
    try:
        _stream(url, part, timeout)
        if checksum is not None:
            _verify(part, url, *checksum)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    return dest


class _RedirectPolicy(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to http(s), never from https down to http, and logs each.

    Data hosts (Zenodo, figshare, GEO) answer from storage hosts by redirect, so a redirect
    to another host is followed; the checksum, not the host, vouches for the content.
    """

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        allowed = ("https",) if old.scheme == "https" else ("http", "https")
        if new.scheme.lower() not in allowed:
            raise InputError(
                f"{req.full_url}: refused redirect to {newurl} (only to {' or '.join(allowed)})"
            )
        _log.info("%s: redirected (HTTP %s) to %s", req.full_url, code, newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_RedirectPolicy)


def _stream(url: str, part: Path, timeout: float) -> None:
    """Copy the response body to ``part`` in chunks; raise InputError on any failure."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    size = 0
    try:
        with _OPENER.open(request, timeout=timeout) as response, part.open("wb") as out:
            announced = response.headers.get("Content-Length")
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                size += len(chunk)
    except urllib.error.HTTPError as exc:
        raise InputError(f"{url}: download failed: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise InputError(f"{url}: download failed: {exc.reason}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise InputError(f"{url}: download failed: {exc!r}") from exc
    if announced is not None and size != int(announced):
        raise InputError(f"{url}: download incomplete: {size} of {announced} bytes received")
