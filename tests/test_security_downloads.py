"""Downloads and archives against bad responses, bad archives and full disks (review 2026-12:
M1, M2, M3, L8, L9), with real files, a real HTTP server on 127.0.0.1 and real resource limits."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import random
import struct
import subprocess
import sys
import tarfile
import textwrap
import threading
import zipfile
from pathlib import Path

import pytest

from vpbench.data.archive import extract
from vpbench.data.download import RemoteFile, fetch
from vpbench.errors import DataError
from vpbench.events import Recorder

BODY = bytes(range(256)) * 400  # 100 kB
SHA = hashlib.sha256(BODY).hexdigest()


class Server(http.server.BaseHTTPRequestHandler):
    """Serves ``body`` like S3 or nginx: ``Range`` honoured, 416 past the end. ``extra`` bytes are
    streamed after the body (a server that does not stop); ``hold`` delays the first request."""

    body = BODY
    extra = 0
    length = True
    hold: threading.Event | None = None
    log: list = []

    def do_GET(self):  # noqa: N802
        rng = self.headers.get("Range")
        Server.log.append(rng)
        if Server.hold is not None and len(Server.log) == 1:
            Server.hold.wait(30)
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        if start >= len(self.body):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(self.body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.body[start:] + b"\0" * self.extra
        self.send_response(206 if rng else 200)
        self.send_header("Content-Type", "application/octet-stream")
        if self.length:
            self.send_header("Content-Length", str(len(body)))
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(self.body) - 1}/{len(self.body)}")
        self.end_headers()
        for i in range(0, len(body), 1 << 16):
            try:
                self.wfile.write(body[i:i + (1 << 16)])
            except OSError:  # the client stopped reading
                return

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Server.body, Server.extra, Server.length, Server.hold, Server.log = BODY, 0, True, None, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Server)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/f.bin"
    if Server.hold is not None:
        Server.hold.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


# -- M1: trust on first use ------------------------------------------------------------------------
def test_an_html_page_is_never_recorded_and_the_real_file_is_taken_after(tmp_path):
    (tmp_path / "page.html").write_text("<html>quota exceeded</html>")
    (tmp_path / "page.bin").write_text("\n  <!DOCTYPE html><title>Google Drive</title>")  # sniffed by its body
    (tmp_path / "real.pt").write_bytes(b"x" * 1000)
    for page in ("page.html", "page.bin"):
        with pytest.raises(DataError, match=r"w\.pt from file:.*is a web page.*discarded") as err:
            fetch(RemoteFile("w.pt", ((tmp_path / page).as_uri(),)), tmp_path / "d")
        assert "\n" not in str(err.value)
        assert sorted(p.name for p in (tmp_path / "d").iterdir()) == []  # nothing recorded, no partial, no lock
    # a page from the first mirror does not stop the second one
    remote = RemoteFile("w.pt", ((tmp_path / "page.html").as_uri(), (tmp_path / "real.pt").as_uri()))
    assert fetch(remote, tmp_path / "d").read_bytes() == b"x" * 1000
    assert json.loads((tmp_path / "d" / "checksums.json").read_text()) == {"w.pt": hashlib.sha256(b"x" * 1000).hexdigest()}


def test_a_size_other_than_the_known_one_is_never_recorded(tmp_path):
    (tmp_path / "short.bin").write_bytes(b"x" * 10)
    with pytest.raises(DataError, match=r"w\.bin from file:.* is 10 bytes, not 1000; the download was discarded"):
        fetch(RemoteFile("w.bin", ((tmp_path / "short.bin").as_uri(),), size=1000), tmp_path / "d")
    assert list((tmp_path / "d").iterdir()) == []


def test_a_recorded_checksum_mismatch_names_checksums_json_and_how_to_accept_a_new_file(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"first version")
    remote = RemoteFile("w.bin", (src.as_uri(),))
    d = tmp_path / "d"
    fetch(remote, d)
    (d / "w.bin").unlink()
    src.write_bytes(b"second version")
    with pytest.raises(DataError) as err:
        fetch(remote, d)
    message = str(err.value)
    assert f"recorded in {d / 'checksums.json'} at the first download; none is published" in message
    assert 'delete the "w.bin" entry there to accept it' in message and "\n" not in message
    (d / "w.bin").write_bytes(b"second version")  # the present-file check says the same
    with pytest.raises(DataError, match=r'w\.bin has sha256 .*recorded in .*checksums\.json.*delete the "w\.bin" entry'):
        fetch(remote, d)
    (d / "w.bin").unlink()
    (d / "checksums.json").write_text("{}")  # as the message says: the new file is accepted
    assert fetch(remote, d).read_bytes() == b"second version"


# -- M2: a complete .partial ---------------------------------------------------------------------
@pytest.mark.parametrize("pinned", [True, False])
def test_a_complete_partial_is_checked_as_a_finished_file(server, tmp_path, pinned):
    (tmp_path / "f.bin.partial").write_bytes(BODY)  # killed after the transfer, before the rename
    remote = RemoteFile("f.bin", (server,), SHA if pinned else None)
    for _ in range(2):
        assert fetch(remote, tmp_path, timeout=5).read_bytes() == BODY
    assert Server.log == [f"bytes={len(BODY)}-"]  # one 416, then the file is present
    assert not (tmp_path / "f.bin.partial").exists()
    if not pinned:  # the 416's Content-Range gave the size
        assert json.loads((tmp_path / "checksums.json").read_text()) == {"f.bin": SHA}


def test_a_partial_that_fails_as_a_finished_file_is_started_over(server, tmp_path):
    (tmp_path / "f.bin.partial").write_bytes(b"y" * (len(BODY) + 10))  # longer than the remote file
    assert fetch(RemoteFile("f.bin", (server,), SHA), tmp_path, timeout=5).read_bytes() == BODY
    assert Server.log == [f"bytes={len(BODY) + 10}-", None]
    Server.log.clear()
    (tmp_path / "g.bin.partial").write_bytes(b"y" * len(BODY))  # full size, wrong bytes, size known: no range asked
    assert fetch(RemoteFile("g.bin", (server,), SHA, size=len(BODY)), tmp_path, timeout=5).read_bytes() == BODY
    assert Server.log == [None]


# -- L9: download edge cases ---------------------------------------------------------------------
@pytest.mark.parametrize("length", [False, True])
def test_a_server_streaming_past_the_known_size_is_stopped(server, tmp_path, length):
    Server.extra, Server.length = 40 << 20, length
    remote = RemoteFile("f.bin", (server,), size=len(BODY))
    with pytest.raises(DataError, match=rf"f\.bin from {server} (kept sending past|announces).* discarded"):
        fetch(remote, tmp_path, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_a_corrupt_checksums_json_is_an_error_and_left_as_it_is(server, tmp_path):
    (tmp_path / "checksums.json").write_text('{"other.zip": "ab')
    with pytest.raises(DataError, match=rf"{tmp_path / 'checksums.json'} is not a JSON object .*repair it, or delete it"):
        fetch(RemoteFile("f.bin", (server,)), tmp_path, timeout=5)
    assert (tmp_path / "checksums.json").read_text() == '{"other.zip": "ab'
    assert Server.log == [] and sorted(p.name for p in tmp_path.iterdir()) == ["checksums.json"]
    (tmp_path / "checksums.json").write_text('{"other.zip": "' + "a" * 64 + '"}')
    fetch(RemoteFile("f.bin", (server,)), tmp_path, timeout=5)  # the other file's record is kept
    assert json.loads((tmp_path / "checksums.json").read_text()) == {"other.zip": "a" * 64, "f.bin": SHA}


def test_plain_http_first_use_is_announced(server, tmp_path):
    events = Recorder()
    fetch(RemoteFile("f.bin", (server,)), tmp_path, events, timeout=5)
    assert any("plain http" in m and SHA in m and "unverified" in m for m in events.messages), events.messages


SECOND = textwrap.dedent("""
    import sys
    from pathlib import Path
    from vpbench.data.download import RemoteFile, fetch, sha256_file
    from vpbench.events import Events

    class Say(Events):
        def message(self, text):
            print("message:", text, flush=True)

    path = fetch(RemoteFile("f.bin", (sys.argv[1],), sys.argv[3]), Path(sys.argv[2]), Say(), timeout=30)
    print("done", sha256_file(path) == sys.argv[3], flush=True)
""")


def test_a_second_process_fetching_the_same_file_waits_for_the_first(server, tmp_path):
    Server.hold = threading.Event()  # the first transfer is held until the second process is waiting
    results: list = []
    first = threading.Thread(target=lambda: results.append(fetch(RemoteFile("f.bin", (server,), SHA), tmp_path, timeout=30)))
    first.start()
    while not Server.log:
        threading.Event().wait(0.01)
    second = subprocess.Popen([sys.executable, "-c", SECOND, server, str(tmp_path), SHA], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        line = second.stdout.readline()
    finally:
        Server.hold.set()
    out, err = second.communicate(timeout=60)
    first.join(30)
    assert line.startswith(f"message: another process is downloading {tmp_path / 'f.bin'}; waiting"), (line, err)
    assert second.returncode == 0 and out.strip() == "done True", err
    assert results == [tmp_path / "f.bin"] and Server.log == [None]  # one transfer, no second GET
    assert sorted(p.name for p in tmp_path.iterdir()) == [".f.bin.sha256", "f.bin"]  # no partial or lock left


# -- M3: a full disk while unpacking ---------------------------------------------------------------
FULL_DISK = textwrap.dedent("""
    import resource, signal, sys
    from pathlib import Path
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # as `ulimit -f 1024`
    from vpbench.data.archive import extract
    from vpbench.errors import DataError
    for archive in sys.argv[1:]:
        try:
            extract(Path(archive), Path(archive + ".out"))
            print("extracted")
        except DataError as exc:
            print(exc)
""")


def test_a_full_disk_while_unpacking_blames_the_disk_not_the_archive(tmp_path):
    data = os.urandom(1 << 16) * 48  # 3 MiB
    with zipfile.ZipFile(tmp_path / "a.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x/data.npz", data)
    with tarfile.open(tmp_path / "a.tar.gz", "w:gz") as tf:
        info = tarfile.TarInfo("x/data.npz")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    archives = [tmp_path / "a.zip", tmp_path / "a.tar.gz"]
    before = [p.read_bytes() for p in archives]
    run = subprocess.run([sys.executable, "-c", FULL_DISK, *map(str, archives)], capture_output=True, text=True, timeout=120)
    lines = run.stdout.splitlines()
    assert run.returncode == 0 and len(lines) == 2, run.stderr
    for archive, line in zip(archives, lines):
        assert line.startswith("cannot write ") and f"while unpacking {archive}: File too large" in line, line
        assert "the archive is intact (keep it)" in line and "download it again" not in line
        assert [p.name for p in (Path(f"{archive}.out") / "x").iterdir()] == []  # no half-written file
    assert [p.read_bytes() for p in archives] == before


# -- L8: archive edge cases -----------------------------------------------------------------------
def _tar_xz(path: Path, data: bytes) -> Path:
    with tarfile.open(path, "w:xz") as tf:
        info = tarfile.TarInfo("d/data.bin")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("data", ["compressed", "stored"])
def test_a_corrupt_tar_xz_is_a_bad_archive(tmp_path, data):
    r = random.Random(0)
    body = bytes(r.choice(b"abcdefgh") for _ in range(200_000)) if data == "compressed" else r.randbytes(200_000)
    raw = bytearray(_tar_xz(tmp_path / "a.tar.xz", body).read_bytes())
    mid = len(raw) // 2
    for i in range(mid, mid + 100):  # compressed: LZMAError while reading; stored: only the xz check tells
        raw[i] ^= 0xFF
    (tmp_path / "a.tar.xz").write_bytes(bytes(raw))
    with pytest.raises(DataError) as err:
        extract(tmp_path / "a.tar.xz", tmp_path / "out")
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'a.tar.xz'} is not a readable zip or tar archive (truncated or corrupt? ")
    assert ("LZMAError: Corrupt input data" if data == "compressed" else "LZMAError") in message
    assert "download it again" in message and "\n" not in message


@pytest.mark.parametrize("data", ["huffman", "stored"])
def test_corruption_inside_a_tgz_is_found_by_its_crc(tmp_path, data):
    r = random.Random(0)
    body = bytes(r.choice(b"abcdefgh") for _ in range(300_000)) if data == "huffman" else r.randbytes(300_000)
    with tarfile.open(tmp_path / "a.tgz", "w:gz") as tf:
        info = tarfile.TarInfo("data.bin")
        info.size = len(body)
        tf.addfile(info, io.BytesIO(body))
    raw = bytearray((tmp_path / "a.tgz").read_bytes())
    mid = len(raw) // 2
    raw[mid:mid + 64] = b"\xff" * 64  # decodes to other bytes: only the gzip CRC after the tar end marker tells
    (tmp_path / "a.tgz").write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"a\.tgz is not a readable zip or tar archive .*CRC check failed.*download it again"):
        extract(tmp_path / "a.tgz", tmp_path / "out")


def test_a_present_file_of_the_right_size_is_checked_against_the_archive(tmp_path):
    data = os.urandom(5000)
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
        zf.writestr("d/data.bin", data)
    tar = _tar_xz(tmp_path / "a.tar.xz", data)
    for archive in (tmp_path / "a.zip", tar):
        out = tmp_path / archive.name.replace(".", "_")
        (out / "d").mkdir(parents=True)
        (out / "d" / "data.bin").write_bytes(b"\0" * 5000)  # same size, other bytes
        assert extract(archive, out) == [out / "d" / "data.bin"]
        assert (out / "d" / "data.bin").read_bytes() == data
        mtime = (out / "d" / "data.bin").stat().st_mtime_ns
        extract(archive, out)
        assert (out / "d" / "data.bin").stat().st_mtime_ns == mtime  # the right file is left alone


def test_a_duplicate_member_keeps_the_first_even_with_the_present_file_check(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
        with pytest.warns(UserWarning, match="Duplicate name"):
            for data in (b"first", b"other"):
                zf.writestr("x", data)
    with tarfile.open(tmp_path / "a.tar", "w") as tf:
        for data in (b"first", b"other"):
            info = tarfile.TarInfo("x")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    for archive in (tmp_path / "a.zip", tmp_path / "a.tar"):
        for _ in range(2):
            assert extract(archive, tmp_path / archive.suffix) == [tmp_path / archive.suffix / "x"]
            assert (tmp_path / archive.suffix / "x").read_bytes() == b"first"


@pytest.mark.parametrize("order", [("a", "a/b"), ("a/b", "a")])
def test_a_member_that_is_both_file_and_folder_is_one_line(tmp_path, order):
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
        for name in order:
            zf.writestr(name, b"data")
    with pytest.raises(DataError) as err:
        extract(tmp_path / "a.zip", tmp_path / "out")
    message = str(err.value)
    assert message.startswith(f"cannot unpack member '{order[1]}' of {tmp_path / 'a.zip'}: ") and "\n" not in message


def _zip_declaring(path: Path, size: int) -> Path:
    """A stored one-member zip whose central directory declares ``size`` bytes (zip64), as a bomb would."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("bomb.bin", b"x")
    raw = path.read_bytes()
    cd = raw.index(b"PK\x01\x02")
    eocd = raw.index(b"PK\x05\x06")
    header = bytearray(raw[cd:cd + 46])
    header[24:28] = struct.pack("<I", 0xFFFFFFFF)  # uncompressed size: see the zip64 extra field
    name_len, extra_len = struct.unpack("<HH", header[28:32])
    zip64 = struct.pack("<HHQ", 1, 8, size)
    header[30:32] = struct.pack("<H", extra_len + len(zip64))
    entry = bytes(header) + raw[cd + 46:cd + 46 + name_len + extra_len] + zip64 + raw[cd + 46 + name_len + extra_len:eocd]
    end = bytearray(raw[eocd:])
    end[12:16] = struct.pack("<I", len(entry))
    path.write_bytes(raw[:cd] + entry + bytes(end))
    return path


def _tar_declaring(path: Path, size: int) -> Path:
    info = tarfile.TarInfo("bomb.bin")
    info.size = size
    path.write_bytes(info.tobuf(tarfile.GNU_FORMAT) + b"x" * 512 + b"\0" * 1024)
    return path


@pytest.mark.parametrize("make", [_zip_declaring, _tar_declaring])
def test_output_larger_than_the_free_space_is_refused_before_writing(tmp_path, make):
    archive = make(tmp_path / "bomb", 1 << 50)  # 1 PiB
    with pytest.raises(DataError, match=r"cannot unpack .*bomb into .*: its (files|member 'bomb\.bin' alone) need "
                                        r"1048576\.0 GiB but only .* is free there; the archive is intact"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
