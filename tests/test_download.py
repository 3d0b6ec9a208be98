"""Downloads against a real HTTP server on 127.0.0.1: progress, resume, checksums, offline."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading

import pytest

from vpbench.data.download import RemoteFile, fetch
from vpbench.errors import DataError
from vpbench.events import Recorder

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD with Range support; the first plain request is cut off half-way."""

    log: list = []
    cut_first = True

    def do_GET(self):  # noqa: N802
        rng = self.headers.get("Range")
        Handler.log.append(rng)
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        body = PAYLOAD[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.end_headers()
        if Handler.cut_first and not rng:
            Handler.cut_first = False
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Handler.log, Handler.cut_first = [], True
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_interrupted_download_resumes_and_verifies(server, tmp_path):
    remote = RemoteFile("data.bin", (f"{server}/data.bin",), SHA)
    with pytest.raises(DataError, match="cannot download data.bin .*transfer ended after 524288 of 1048576 bytes"):
        fetch(remote, tmp_path, timeout=5)
    assert not (tmp_path / "data.bin").exists()  # the partial file never takes the real name
    assert (tmp_path / "data.bin.partial").stat().st_size == len(PAYLOAD) // 2
    events = Recorder()
    path = fetch(remote, tmp_path, events, timeout=5)
    assert path.read_bytes() == PAYLOAD and not (tmp_path / "data.bin.partial").exists()
    assert Handler.log == [None, f"bytes={len(PAYLOAD) // 2}-"]  # the second request resumed
    task = events.tasks["download:data.bin"]
    assert task["total"] == len(PAYLOAD) and task["completed"] == len(PAYLOAD)
    assert fetch(remote, tmp_path, timeout=5) == path and len(Handler.log) == 2  # present: no request


def test_checksum_mismatch_is_refused(server, tmp_path):
    Handler.cut_first = False
    remote = RemoteFile("data.bin", (f"{server}/data.bin",), "0" * 64)
    with pytest.raises(DataError, match="has sha256 .* expected 0000000000000000.*discarded"):
        fetch(remote, tmp_path, timeout=5)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "data.bin").write_bytes(b"not the file")
    with pytest.raises(DataError, match="corrupt or another version"):
        fetch(remote, tmp_path, timeout=5)
    assert (tmp_path / "data.bin").read_bytes() == b"not the file"  # never deleted


def test_unpinned_checksum_is_recorded_on_first_download(server, tmp_path):
    Handler.cut_first = False
    remote = RemoteFile("walking.zip", (f"{server}/walking.zip",))
    fetch(remote, tmp_path, timeout=5)
    import json

    assert json.loads((tmp_path / "checksums.json").read_text()) == {"walking.zip": SHA}
    (tmp_path / "walking.zip").write_bytes(b"tampered")
    with pytest.raises(DataError, match="corrupt or another version"):
        fetch(remote, tmp_path, timeout=5)


def test_offline_gives_one_clear_line(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    remote = RemoteFile("f.gz", (f"http://127.0.0.1:{port}/f.gz",), SHA)
    with pytest.raises(DataError) as err:
        fetch(remote, tmp_path, timeout=2)
    message = str(err.value)
    assert "Offline? Fetch http://127.0.0.1" in message and str(tmp_path / "f.gz") in message and SHA in message
    assert "\n" not in message


def test_present_file_with_right_checksum_needs_no_network(tmp_path):
    (tmp_path / "f.bin").write_bytes(PAYLOAD)
    remote = RemoteFile("f.bin", ("http://127.0.0.1:9/unreachable",), SHA)
    assert fetch(remote, tmp_path).read_bytes() == PAYLOAD
