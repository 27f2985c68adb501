"""fetch, verify_checksum and file_digest: file:// URLs, local paths, a local HTTP server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import logging
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from scdsec import InputError
from scdsec.io import fetch, file_digest, local_source, verify_checksum

PAYLOAD = bytes(range(256)) * 3000 + b"tail"  # ~750 kB, not a multiple of anything


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Talk to 127.0.0.1 directly whatever proxy the environment configures."""
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def served(tmp_path: Path) -> Path:
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "data.bin").write_bytes(PAYLOAD)
    return folder


class Server:
    def __init__(self, base: str, requests: list[str]) -> None:
        self.base = base
        self.requests = requests


@pytest.fixture
def server(served: Path) -> Iterator[Server]:
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            if self.path.startswith("/redirect?to="):  # /redirect?to=<url>: HTTP 302 there
                self.send_response(302)
                self.send_header("Location", self.path.split("=", 1)[1])
                self.end_headers()
                return
            if self.path == "/truncated":  # announces more bytes than it sends
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.write(b"x" * 10)
                return
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(served))
    )
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _leftovers(dest: Path) -> list[Path]:
    return [p for p in (dest, dest.with_name(dest.name + ".part")) if p.exists()]


# --------------------------------------------------------------------------- HTTP


def test_http_download_verified_then_cached(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "cache" / "sub" / "data.h5"
    url = f"{server.base}/data.bin"
    assert fetch(url, dest, f"sha256:{sha256(PAYLOAD)}") == dest
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_name("data.h5.part").exists()
    assert server.requests == ["/data.bin"]
    # second call: the existing, matching file is reused without a request
    assert fetch(url, dest, sha256(PAYLOAD)) == dest
    assert fetch(url, dest) == dest
    assert server.requests == ["/data.bin"]


def test_http_download_with_git_blob_id(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "blob.bin"
    fetch(f"{server.base}/data.bin", dest, f"gitblob:{git_blob_id(PAYLOAD)}")
    assert dest.read_bytes() == PAYLOAD
    assert file_digest(dest, "gitblob") == git_blob_id(PAYLOAD)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_blob_id_matches_git(tmp_path: Path) -> None:
    path = tmp_path / "payload"
    path.write_bytes(PAYLOAD)
    out = subprocess.run(
        ["git", "hash-object", str(path)], capture_output=True, text=True, check=True
    )
    blob_id = out.stdout.strip()
    assert file_digest(path, "gitblob") == blob_id
    verify_checksum(path, blob_id)  # bare 40 hex digits mean a git blob id


def test_checksum_mismatch_leaves_nothing(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    wrong = "0" * 64
    url = f"{server.base}/data.bin"
    with pytest.raises(InputError) as info:
        fetch(url, dest, wrong)
    message = str(info.value)
    assert url in message and f"sha256:{wrong}" in message and sha256(PAYLOAD) in message
    assert _leftovers(dest) == []
    assert server.requests == ["/data.bin"]


def test_stale_cached_file_is_downloaded_again(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    dest.write_bytes(b"an older, different file")
    fetch(f"{server.base}/data.bin", dest, sha256(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == ["/data.bin"]


def test_a_redirect_is_followed_logged_and_verified(
    server: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dest = tmp_path / "data.h5"
    target = f"{server.base}/data.bin"
    with caplog.at_level(logging.INFO, logger="scdsec"):
        fetch(f"{server.base}/redirect?to={target}", dest, sha256(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    assert f"redirected (HTTP 302) to {target}" in caplog.text


@pytest.mark.parametrize("target", ["ftp://127.0.0.1/data.bin", "file:///etc/passwd"])
def test_a_redirect_to_another_scheme_is_refused(
    server: Server, tmp_path: Path, target: str
) -> None:
    dest = tmp_path / "data.h5"
    url = f"{server.base}/redirect?to={target}"
    with pytest.raises(InputError, match=f"(refused redirect|Redirection) to (url ')?{target}"):
        fetch(url, dest)
    assert _leftovers(dest) == []


def test_http_404_names_the_url(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "missing.bin"
    url = f"{server.base}/no/such/file.h5"
    with pytest.raises(InputError, match="404") as info:
        fetch(url, dest)
    assert url in str(info.value)
    assert _leftovers(dest) == []


def test_truncated_download_is_an_error(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "short.bin"
    with pytest.raises(InputError, match="incomplete: 10 of 1000 bytes"):
        fetch(f"{server.base}/truncated", dest)
    assert _leftovers(dest) == []


def test_destination_folder_is_refused(server: Server, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a folder"):
        fetch(f"{server.base}/data.bin", tmp_path)
    assert server.requests == []


def test_unreachable_server(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="download failed"):
        fetch("http://127.0.0.1:1/data.bin", tmp_path / "x", timeout=5)


# --------------------------------------------------------------------------- local sources


def test_file_url_and_local_path_are_returned_untouched(served: Path, tmp_path: Path) -> None:
    source = served / "my data.bin"  # a space, percent-encoded in the URL
    source.write_bytes(PAYLOAD)
    dest = tmp_path / "never" / "written.bin"
    mtime = source.stat().st_mtime_ns
    assert fetch(source.as_uri(), dest, sha256(PAYLOAD)) == source
    assert fetch(str(source), dest, f"gitblob:{git_blob_id(PAYLOAD)}") == source
    assert fetch(str(source), dest) == source
    assert not dest.parent.exists()
    assert source.read_bytes() == PAYLOAD and source.stat().st_mtime_ns == mtime


def test_local_mismatch_keeps_the_input(served: Path, tmp_path: Path) -> None:
    source = served / "data.bin"
    with pytest.raises(InputError) as info:
        fetch(str(source), tmp_path / "d", "md5:" + "f" * 32)
    assert str(source) in str(info.value) and hashlib.md5(PAYLOAD).hexdigest() in str(info.value)
    assert source.read_bytes() == PAYLOAD


def test_local_folder(served: Path, tmp_path: Path) -> None:
    assert fetch(served.as_uri(), tmp_path / "d") == served
    with pytest.raises(InputError, match="folder"):
        fetch(str(served), tmp_path / "d", sha256(PAYLOAD))


def test_a_percent_encoded_file_url_is_decoded(tmp_path: Path) -> None:
    spaced = tmp_path / "Baron mouse1.zip"
    spaced.write_bytes(PAYLOAD)
    url = spaced.as_uri()
    assert "%20" in url
    assert local_source(url) == spaced
    assert fetch(url, tmp_path / "unused", sha256(PAYLOAD)) == spaced
    assert local_source("https://example.org/a%20b.h5") is None
    with pytest.raises(InputError, match="unsupported source"):
        local_source("ftp://example.org/data.h5")


def test_missing_local_source(tmp_path: Path) -> None:
    missing = tmp_path / "absent.h5"
    with pytest.raises(InputError, match="no such file") as info:
        fetch(str(missing), tmp_path / "d")
    assert str(missing) in str(info.value)
    with pytest.raises(InputError, match="no such file"):
        fetch(missing.as_uri(), tmp_path / "d")


def test_unsupported_scheme(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unsupported"):
        fetch("ftp://example.org/data.h5", tmp_path / "d")


# --------------------------------------------------------------------------- checksums


def test_file_digest_kinds(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(PAYLOAD)
    assert file_digest(path, "sha256") == sha256(PAYLOAD)
    assert file_digest(path, "md5") == hashlib.md5(PAYLOAD).hexdigest()
    assert file_digest(path, "gitblob") == git_blob_id(PAYLOAD)
    (tmp_path / "empty").write_bytes(b"")
    # git's well-known id of the empty blob
    assert file_digest(tmp_path / "empty", "gitblob") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    with pytest.raises(InputError, match="sha1"):
        file_digest(path, "sha1")


def test_verify_checksum_forms(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(PAYLOAD)
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    for good in (
        sha256(PAYLOAD),
        f"SHA256:{sha256(PAYLOAD).upper()}",
        md5,
        f"md5:{md5}",
        git_blob_id(PAYLOAD),
        f" gitblob:{git_blob_id(PAYLOAD)} ",
    ):
        verify_checksum(path, good)
    with pytest.raises(InputError, match="mismatch") as info:
        verify_checksum(path, "1" * 32)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "bad",
    ["", "sha256:xyz", "abc", "f" * 33, f"sha1:{'a' * 40}", f"md5:{'a' * 64}", "g" * 64],
)
def test_bad_checksum_syntax(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    with pytest.raises(InputError, match="not understood"):
        verify_checksum(path, bad)
    with pytest.raises(InputError, match="not understood"):
        fetch(str(path), tmp_path / "d", bad)


def test_content_digest_follows_content_not_mtime(tmp_path: Path, monkeypatch) -> None:
    import os

    from scdsec.io import download

    folder = tmp_path / "mtx"
    folder.mkdir()
    (folder / "matrix.mtx").write_text("a")
    (folder / "barcodes.tsv").write_text("b")
    cache = tmp_path / "cache.json"
    first = download.content_digest(folder, cache=cache)
    reads = []
    real = download.file_digest
    monkeypatch.setattr(download, "file_digest", lambda *a: reads.append(a) or real(*a))
    assert download.content_digest(folder, cache=cache) == first and reads == []  # cached
    os.utime(folder / "matrix.mtx", (1, 1))
    assert download.content_digest(folder, cache=cache) == first and len(reads) == 2
    (folder / "matrix.mtx").write_text("c")
    assert download.content_digest(folder, cache=cache) != first
    assert download.content_digest(folder / "matrix.mtx") != download.content_digest(folder)
