"""Tests for audiocnn.data.download against a loopback HTTP server (no other network is used).

Every archive here is built in the test to mimic the real one's layout; the published checksums
in SOURCES are swapped for the digests of these stand-ins, so the real download path runs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import socket
import stat
import struct
import tarfile
import threading
import time
import wave
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import audiocnn.data.download as dl
from audiocnn.cli import main
from audiocnn.core.errors import EnvironmentFailure
from audiocnn.data.download import SOURCES, DownloadError, Remote, download, fetch, safe_extract

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@pytest.fixture(autouse=True)
def _no_real_network(monkeypatch):
    """Name resolution fails for every host but loopback, so nothing can leave this machine."""
    real = socket.getaddrinfo

    def guarded(host, *args, **kwargs):
        if host not in _LOOPBACK:
            raise socket.gaierror(socket.EAI_NONAME, f"test: no resolution of {host!r} allowed")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", dl.MIRROR_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(dl, "_RETRY_DELAY", 0.0)


# ------------------------------------------------------------------------------------------
# loopback server with Range support and switches for the ways servers misbehave
# ------------------------------------------------------------------------------------------


class _State:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.ignore_range = False
        self.cut_after: int | None = None  # bytes sent before the connection is dropped
        self.cuts_left = 0
        self.send_length = True  # False: no Content-Length, the body ends where the connection closes
        self.reset = False  # a cut ends with a TCP reset instead of an orderly close
        self.garbage = False  # answer with lines that are not HTTP


def _handler(state: _State):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection, closed after the response

        def do_GET(self):  # noqa: N802 (http.server naming)
            state.requests.append((self.path, self.headers.get("Range")))
            if state.garbage:
                self.wfile.write(b"garbage\r\nmore garbage\r\n\r\n")
                return
            data = state.files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            status, body, extra = 200, data, {}
            rng = self.headers.get("Range")
            if rng and not state.ignore_range:
                start = int(rng.removeprefix("bytes=").rstrip("-"))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status, body = 206, data[start:]
                extra["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            if state.send_length:
                self.send_header("Content-Length", str(len(body)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            if state.cut_after is not None and state.cuts_left > 0:
                state.cuts_left -= 1
                self.wfile.write(body[: state.cut_after])
                if state.reset:
                    time.sleep(0.2)  # the client reads what was sent before the reset arrives
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.rfile.close()
                    self.connection.close()  # linger 0: RST, not FIN
                return  # HTTP/1.0: the connection closes here, short of Content-Length
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def server():
    state = _State()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------
# stand-in archives with each dataset's real layout
# ------------------------------------------------------------------------------------------


def _wav(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes((seed + i) % 256 for i in range(64)))
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _targz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


ESC_CSV = b"filename,fold,target,category,esc10,src_file,take\n1-100032-A-0.wav,1,0,dog,True,100032,A\n"

# name -> (archive bytes, a file that must exist under root afterwards)
ARCHIVES = {
    "fsdd": (
        _zip({
            "free-spoken-digit-dataset-1.0.10/README.md": b"FSDD",
            "free-spoken-digit-dataset-1.0.10/recordings/0_jackson_0.wav": _wav(0),
            "free-spoken-digit-dataset-1.0.10/recordings/1_theo_5.wav": _wav(1),
        }),
        "fsdd/recordings/0_jackson_0.wav",
    ),
    "esc50": (
        _zip({"ESC-50-master/meta/esc50.csv": ESC_CSV, "ESC-50-master/audio/1-100032-A-0.wav": _wav(2)}),
        "esc50/meta/esc50.csv",
    ),
    "esc10": (
        _zip({"ESC-50-master/meta/esc50.csv": ESC_CSV, "ESC-50-master/audio/1-100032-A-0.wav": _wav(2)}),
        "esc10/audio/1-100032-A-0.wav",
    ),
    "ravdess": (
        _zip({"Actor_01/03-01-01-01-01-01-01.wav": _wav(3), "Actor_24/03-01-08-02-02-02-24.wav": _wav(4)}),
        "ravdess/Actor_24/03-01-08-02-02-02-24.wav",
    ),
    "gtzan": (
        _targz({"genres/blues/blues.00000.wav": _wav(5), "genres/rock/rock.00099.wav": _wav(6)}),
        "gtzan/genres/blues/blues.00000.wav",
    ),
    "speech_commands": (
        _targz({
            "./yes/0a7c2a8d_nohash_0.wav": _wav(7),
            "./_background_noise_/white_noise.wav": _wav(8),
            "./validation_list.txt": b"yes/0a7c2a8d_nohash_0.wav\n",
            "./testing_list.txt": b"",
        }),
        "speech_commands/yes/0a7c2a8d_nohash_0.wav",
    ),
}


def _publish(monkeypatch, server: _State, name: str, data: bytes) -> None:
    """Serve ``data`` as the dataset's archive and make SOURCES expect exactly these bytes."""
    source = SOURCES[name]
    server.files[f"/mirror/{source.archive}"] = data
    first = source.remotes[0]
    if first.checksum is not None:  # keep the published algorithm; leave 'no checksum' entries alone
        algo = first.checksum.split(":")[0]
        first = dataclasses.replace(
            first,
            checksum=f"{algo}:{hashlib.new(algo, data).hexdigest()}",
            size=len(data) if first.size is not None else None,
        )
    monkeypatch.setitem(SOURCES, name, dataclasses.replace(source, remotes=(first, *source.remotes[1:])))


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if ".unpack-" in p.name or ".old-" in p.name or p.suffix == ".part")


# ------------------------------------------------------------------------------------------
# the whole flow
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ARCHIVES))
def test_download_checksum_and_layout(tmp_path, server, monkeypatch, name):
    data, expected_file = ARCHIVES[name]
    _publish(monkeypatch, server, name, data)
    root = tmp_path / "data"

    folder = download(name, root, mirror=f"{server.base}/mirror/", progress=False)

    source = SOURCES[name]
    assert folder == root / source.folder
    assert (root / expected_file).is_file()
    assert not dl._missing(folder, source.layout)
    archive = root / "downloads" / source.archive
    assert archive.read_bytes() == data
    marker = json.loads((folder / dl.MARKER).read_text())
    assert marker["url"] == f"{server.base}/mirror/{source.archive}"
    assert marker["checksum"].split(":")[1] in {
        hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest()
    }
    assert server.requests == [(f"/mirror/{source.archive}", None)]
    assert _leftovers(root) == []


def test_mirror_from_environment_and_progress_bar(tmp_path, server, monkeypatch, capsys):
    _publish(monkeypatch, server, "gtzan", ARCHIVES["gtzan"][0])
    monkeypatch.setenv(dl.MIRROR_ENV, f"{server.base}/mirror")
    download("gtzan", tmp_path, progress=True)
    assert (tmp_path / "gtzan/genres/rock/rock.00099.wav").is_file()
    assert "genres.tar.gz" in capsys.readouterr().err  # the tqdm bar is named after the archive


def test_already_present_makes_no_request(tmp_path, server, monkeypatch):
    _publish(monkeypatch, server, "esc50", ARCHIVES["esc50"][0])
    (tmp_path / "esc50/meta").mkdir(parents=True)
    (tmp_path / "esc50/meta/esc50.csv").write_bytes(ESC_CSV)
    (tmp_path / "esc50/audio").mkdir()
    (tmp_path / "esc50/audio/1-100032-A-0.wav").write_bytes(_wav())

    assert download("esc50", tmp_path, mirror=f"{server.base}/mirror") == tmp_path / "esc50"
    assert download("esc50", tmp_path) == tmp_path / "esc50"  # official URL: unreachable here, never tried
    assert server.requests == []
    assert not (tmp_path / "downloads").exists()


def test_second_call_and_force(tmp_path, server, monkeypatch):
    _publish(monkeypatch, server, "fsdd", ARCHIVES["fsdd"][0])
    mirror = f"{server.base}/mirror"
    download("fsdd", tmp_path, mirror=mirror)
    (tmp_path / "fsdd/recordings/stale.wav").write_bytes(b"x")
    download("fsdd", tmp_path, mirror=mirror)
    assert len(server.requests) == 1
    download("fsdd", tmp_path, mirror=mirror, force=True)
    assert len(server.requests) == 2
    assert not (tmp_path / "fsdd/recordings/stale.wav").exists()
    assert _leftovers(tmp_path) == []


def test_archive_placed_by_hand_is_used_without_network(tmp_path, monkeypatch):
    data = ARCHIVES["ravdess"][0]
    _publish(monkeypatch, _State(), "ravdess", data)
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads/Audio_Speech_Actors_01-24.zip").write_bytes(data)
    folder = download("ravdess", tmp_path, mirror=f"http://127.0.0.1:{_closed_port()}")
    assert (folder / "Actor_01/03-01-01-01-01-01-01.wav").is_file()


def test_wrong_archive_placed_by_hand_is_reported_and_kept(tmp_path, monkeypatch):
    _publish(monkeypatch, _State(), "ravdess", ARCHIVES["ravdess"][0])
    wrong = tmp_path / "downloads/Audio_Speech_Actors_01-24.zip"
    wrong.parent.mkdir()
    wrong.write_bytes(ARCHIVES["esc50"][0])
    with pytest.raises(DownloadError, match="delete it and rerun") as info:
        download("ravdess", tmp_path)
    assert str(wrong) in str(info.value)
    assert wrong.exists() and not (tmp_path / "ravdess").exists()


def test_foreign_folder_is_not_overwritten_without_force(tmp_path, server, monkeypatch):
    _publish(monkeypatch, server, "esc50", ARCHIVES["esc50"][0])
    (tmp_path / "esc50").mkdir()
    (tmp_path / "esc50/notes.txt").write_text("mine")
    with pytest.raises(DownloadError, match="force"):
        download("esc50", tmp_path, mirror=f"{server.base}/mirror")
    assert (tmp_path / "esc50/notes.txt").exists() and server.requests == []
    download("esc50", tmp_path, mirror=f"{server.base}/mirror", force=True)
    assert (tmp_path / "esc50/meta/esc50.csv").is_file() and not (tmp_path / "esc50/notes.txt").exists()


def test_unknown_dataset_suggests_a_name(tmp_path):
    with pytest.raises(ValueError, match="did you mean 'esc50'"):
        download("esc-50", tmp_path)


# ------------------------------------------------------------------------------------------
# fetch: resume, servers ignoring Range, checksums
# ------------------------------------------------------------------------------------------

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes
PAYLOAD_SHA = "sha256:" + hashlib.sha256(PAYLOAD).hexdigest()


def test_resume_after_interrupted_transfer(tmp_path, server):
    server.files["/blob.bin"] = PAYLOAD
    server.cut_after, server.cuts_left = 40_000, 1
    dest = tmp_path / "blob.bin"
    fetch(f"{server.base}/blob.bin", dest, checksum=PAYLOAD_SHA, size=len(PAYLOAD), progress=False)
    assert server.requests == [("/blob.bin", None), ("/blob.bin", "bytes=40000-")]
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "blob.bin.part").exists()


def test_part_file_from_an_earlier_run_is_resumed(tmp_path, server, monkeypatch):
    server.files["/blob.bin"] = PAYLOAD
    server.cut_after, server.cuts_left = 30_000, 99
    monkeypatch.setattr(dl, "_TRANSFER_ATTEMPTS", 1)
    dest = tmp_path / "blob.bin"
    with pytest.raises(DownloadError, match="rerun to resume"):
        fetch(f"{server.base}/blob.bin", dest, checksum=PAYLOAD_SHA, progress=False)
    assert (tmp_path / "blob.bin.part").stat().st_size == 30_000 and not dest.exists()

    server.cuts_left = 0
    fetch(f"{server.base}/blob.bin", dest, checksum=PAYLOAD_SHA, progress=False)
    assert server.requests[-1] == ("/blob.bin", "bytes=30000-")
    assert dest.read_bytes() == PAYLOAD


def test_connection_reset_keeps_what_arrived_for_resume(tmp_path, server, monkeypatch):
    server.files["/blob.bin"] = PAYLOAD
    server.cut_after, server.cuts_left, server.reset = 30_000, 99, True
    monkeypatch.setattr(dl, "_TRANSFER_ATTEMPTS", 1)
    dest, url = tmp_path / "blob.bin", f"{server.base}/blob.bin"
    with pytest.raises(DownloadError) as info:
        fetch(url, dest, checksum=PAYLOAD_SHA, progress=False)
    message = str(info.value)
    assert url in message and "30000 bytes are kept" in message and "rerun to resume" in message
    assert "\n" not in message
    assert (tmp_path / "blob.bin.part").stat().st_size == 30_000 and not dest.exists()

    server.cuts_left = 0
    fetch(url, dest, checksum=PAYLOAD_SHA, progress=False)
    assert server.requests[-1] == ("/blob.bin", "bytes=30000-")
    assert dest.read_bytes() == PAYLOAD


def test_nothing_received_leaves_no_part_file(tmp_path, server):
    server.garbage = True
    url = f"{server.base}/blob.bin"
    with pytest.raises(DownloadError) as info:
        fetch(url, tmp_path / "blob.bin", checksum=PAYLOAD_SHA, progress=False)
    message = str(info.value)
    assert url in message and "BadStatusLine: garbage)" in message and "nothing was received" in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full to fill a disk")
def test_disk_full_is_an_environment_failure_naming_the_path(tmp_path, server):
    server.files["/blob.bin"] = PAYLOAD
    part = tmp_path / "blob.bin.part"
    part.symlink_to("/dev/full")  # every write fails with ENOSPC, as on a full disk
    with pytest.raises(EnvironmentFailure) as info:
        fetch(f"{server.base}/blob.bin", tmp_path / "blob.bin", checksum=PAYLOAD_SHA, progress=False)
    assert str(part) in str(info.value) and "free some space" in str(info.value)
    assert info.value.exit_code == 3 and not (tmp_path / "blob.bin").exists()


def test_server_ignoring_range_restarts_cleanly(tmp_path, server):
    server.files["/blob.bin"] = PAYLOAD
    server.ignore_range = True
    (tmp_path / "blob.bin.part").write_bytes(b"not the start of the file")
    dest = tmp_path / "blob.bin"
    fetch(f"{server.base}/blob.bin", dest, checksum=PAYLOAD_SHA, progress=False)
    assert server.requests == [("/blob.bin", "bytes=25-")]
    assert dest.read_bytes() == PAYLOAD


def test_cut_then_range_ignored_restarts_cleanly(tmp_path, server):
    server.files["/blob.bin"] = PAYLOAD
    server.ignore_range = True
    server.cut_after, server.cuts_left = 50_000, 1
    dest = tmp_path / "blob.bin"
    fetch(f"{server.base}/blob.bin", dest, checksum=PAYLOAD_SHA, progress=False)
    assert [r for _, r in server.requests] == [None, "bytes=50000-"]
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_file_is_only_verified(tmp_path, server):
    server.files["/blob.bin"] = PAYLOAD
    (tmp_path / "blob.bin.part").write_bytes(PAYLOAD)
    fetch(f"{server.base}/blob.bin", tmp_path / "blob.bin", checksum=PAYLOAD_SHA, progress=False)
    assert [r for _, r in server.requests] == ["bytes=102400-"]  # answered 416: nothing left to send
    assert (tmp_path / "blob.bin").read_bytes() == PAYLOAD


def test_checksum_mismatch_raises_and_leaves_nothing(tmp_path, server):
    server.files["/blob.bin"] = PAYLOAD
    wrong = "sha256:" + "0" * 64
    url = f"{server.base}/blob.bin"
    with pytest.raises(DownloadError) as info:
        fetch(url, tmp_path / "blob.bin", checksum=wrong, progress=False)
    message = str(info.value)
    assert url in message and "0" * 64 in message and hashlib.sha256(PAYLOAD).hexdigest() in message
    assert list(tmp_path.iterdir()) == []


def test_checksum_mismatch_in_download_leaves_no_dataset(tmp_path, server, monkeypatch):
    data = ARCHIVES["speech_commands"][0]
    _publish(monkeypatch, server, "speech_commands", data)
    tampered = data[:-1] + bytes([data[-1] ^ 0xFF])  # same size, different bytes
    server.files["/mirror/speech_commands_v0.02.tar.gz"] = tampered
    with pytest.raises(DownloadError, match="checksum mismatch") as info:
        download("speech_commands", tmp_path, mirror=f"{server.base}/mirror")
    assert hashlib.sha256(tampered).hexdigest() in str(info.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["downloads"]


def test_wrong_size_is_refused_before_the_transfer(tmp_path, server):
    server.files["/blob.bin"] = PAYLOAD
    with pytest.raises(DownloadError, match="announces 102400 bytes but the published archive has 5"):
        fetch(f"{server.base}/blob.bin", tmp_path / "blob.bin", checksum=PAYLOAD_SHA, size=5, progress=False)
    assert not (tmp_path / "blob.bin").exists()


def test_http_error_is_not_called_offline(tmp_path, server, monkeypatch):
    _publish(monkeypatch, server, "esc50", ARCHIVES["esc50"][0])
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        download("esc50", tmp_path, mirror=f"{server.base}/elsewhere")
    assert "offline" not in str(info.value)
    assert str(tmp_path / "downloads" / "ESC-50-master.zip") in str(info.value)


# ------------------------------------------------------------------------------------------
# offline: fail fast, say where to put the files
# ------------------------------------------------------------------------------------------


def _assert_offline_message(message: str, root: Path, archive: str, layout_file: str) -> None:
    assert "offline" in message
    assert str(root / "downloads" / archive) in message
    assert str(root / layout_file) in message


def test_offline_closed_port_fails_fast(tmp_path):
    mirror = f"http://127.0.0.1:{_closed_port()}/data"
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        download("esc50", tmp_path, mirror=mirror)
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert f"{mirror}/ESC-50-master.zip" in message
    assert "https://github.com/karolpiczak/ESC-50" in message  # what to download by hand
    _assert_offline_message(message, tmp_path, "ESC-50-master.zip", "esc50/meta/esc50.csv")


def test_offline_unresolvable_host_fails_fast(tmp_path):
    # The autouse fixture makes resolution of nonexistent.invalid fail at once, without a query.
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        download("fsdd", tmp_path, mirror="http://nonexistent.invalid/audio")
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "http://nonexistent.invalid/audio/free-spoken-digit-dataset-1.0.10.zip" in message
    assert "cannot resolve" in message
    _assert_offline_message(message, tmp_path, "free-spoken-digit-dataset-1.0.10.zip", "fsdd/recordings/*.wav")


def test_offline_official_locations_all_tried(tmp_path):
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        download("gtzan", tmp_path)
    assert time.monotonic() - start < 5
    message = str(info.value)
    for remote in SOURCES["gtzan"].remotes:
        assert remote.url in message
    _assert_offline_message(message, tmp_path, "genres.tar.gz", "gtzan/genres/blues/blues.*")


# ------------------------------------------------------------------------------------------
# safe_extract: nothing may land outside the destination
# ------------------------------------------------------------------------------------------


def _zip_with(tmp: Path, name: str, data: bytes = b"evil", mode: int | None = None) -> Path:
    info = zipfile.ZipInfo(name)
    if mode is not None:
        info.external_attr = mode << 16
    path = tmp / "bad.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("ok/fine.txt", b"fine")
        z.writestr(info, data)
    return path


def _tar_with(tmp: Path, *members: tarfile.TarInfo) -> Path:
    path = tmp / "bad.tar.gz"
    with tarfile.open(path, "w:gz") as t:
        ok = tarfile.TarInfo("ok/fine.txt")
        ok.size = 4
        t.addfile(ok, io.BytesIO(b"fine"))
        for m in members:
            t.addfile(m, io.BytesIO(b"evil"[: m.size]) if m.isfile() else None)
    return path


def _tar_member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type = kind
    m.linkname = linkname
    m.size = 4 if kind == tarfile.REGTYPE else 0
    return m


def _unsafe_cases(outside: Path):
    return {
        "zip-dotdot": lambda t: _zip_with(t, "../evil.txt"),
        "zip-absolute": lambda t: _zip_with(t, str(outside / "evil.txt")),
        "zip-symlink": lambda t: _zip_with(t, "link", str(outside).encode(), mode=stat.S_IFLNK | 0o777),
        "tar-dotdot": lambda t: _tar_with(t, _tar_member("ok/../../evil.txt")),
        "tar-absolute": lambda t: _tar_with(t, _tar_member(str(outside / "evil.txt"))),
        "tar-symlink-out": lambda t: _tar_with(
            t, _tar_member("link", tarfile.SYMTYPE, "../outside"), _tar_member("link/evil.txt")
        ),
        "tar-symlink-abs": lambda t: _tar_with(t, _tar_member("link", tarfile.SYMTYPE, str(outside))),
        "tar-behind-link": lambda t: _tar_with(
            t, _tar_member("inner", tarfile.SYMTYPE, "ok"), _tar_member("inner/evil.txt")
        ),
        "tar-hardlink-out": lambda t: _tar_with(t, _tar_member("hard", tarfile.LNKTYPE, "../outside/evil.txt")),
        "tar-device": lambda t: _tar_with(t, _tar_member("dev", tarfile.CHRTYPE)),
    }


MEMBER_IN_MESSAGE = {
    "zip-dotdot": "../evil.txt", "zip-absolute": "evil.txt", "zip-symlink": "link",
    "tar-dotdot": "ok/../../evil.txt", "tar-absolute": "evil.txt", "tar-symlink-out": "link",
    "tar-symlink-abs": "link", "tar-behind-link": "inner/evil.txt", "tar-hardlink-out": "hard",
    "tar-device": "dev",
}


@pytest.mark.parametrize("with_data_filter", [True, False], ids=["data-filter", "own-checks-only"])
@pytest.mark.parametrize("case", sorted(MEMBER_IN_MESSAGE))
def test_unsafe_members_are_rejected(tmp_path, monkeypatch, case, with_data_filter):
    if not with_data_filter:  # as on Python < 3.11.4: only our own checks stand in the way
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = _unsafe_cases(outside)[case](work)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    with pytest.raises(DownloadError) as info:
        safe_extract(archive, work / "dest")

    assert repr(MEMBER_IN_MESSAGE[case])[1:-1] in str(info.value)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written anywhere


def test_unsafe_archive_is_quarantined_and_never_reused(tmp_path, server, monkeypatch):
    evil = _zip({"free-spoken-digit-dataset-1.0.10/recordings/0_a_0.wav": _wav(), "../../evil.txt": b"x"})
    _publish(monkeypatch, server, "fsdd", evil)
    root, mirror = tmp_path / "data", f"{server.base}/mirror"
    with pytest.raises(DownloadError, match="evil.txt") as info:
        download("fsdd", root, mirror=mirror)
    assert not (root / "fsdd").exists() and not (tmp_path / "evil.txt").exists()
    assert _leftovers(root) == []
    archive = root / "downloads" / SOURCES["fsdd"].archive
    kept = root / "downloads" / "quarantine" / archive.name
    assert not archive.exists() and kept.read_bytes() == evil
    message = str(info.value)
    assert str(kept) in message and "--mirror" in message and "delete it" in message

    server.files[f"/mirror/{archive.name}"] = ARCHIVES["fsdd"][0]  # a trusted copy
    download("fsdd", root, mirror=mirror)  # fetched again: the quarantined file is not picked up
    assert len(server.requests) == 2
    assert (root / "fsdd/recordings/0_jackson_0.wav").is_file() and kept.read_bytes() == evil


def test_unsafe_archive_placed_by_hand_is_quarantined(tmp_path):
    evil = _targz({"genres/blues/blues.00000.wav": _wav(), "/etc/evil.txt": b"x"})
    archive = tmp_path / "downloads" / "genres.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(evil)
    with pytest.raises(DownloadError, match="absolute path") as info:
        download("gtzan", tmp_path)  # no checksum matches, but the fallback publishes none
    kept = tmp_path / "downloads" / "quarantine" / "genres.tar.gz"
    assert str(kept) in str(info.value) and kept.read_bytes() == evil and not archive.exists()


def test_safe_extract_zip_and_tar(tmp_path):
    members = {"top/a.txt": b"a", "top/sub/b.txt": b"bb"}
    for kind, data in (("zip", _zip(members)), ("tar.gz", _targz(members))):
        archive = tmp_path / f"good.{kind}"
        archive.write_bytes(data)
        dest = safe_extract(archive, tmp_path / f"out-{kind}")
        assert (dest / "top/sub/b.txt").read_bytes() == b"bb"
    with tarfile.open(tmp_path / "link.tar", "w") as t:  # a link that stays inside is fine
        info = tarfile.TarInfo("top/a.txt")
        info.size = 1
        t.addfile(info, io.BytesIO(b"a"))
        link = tarfile.TarInfo("top/alias.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "a.txt"
        t.addfile(link)
    assert (safe_extract(tmp_path / "link.tar", tmp_path / "out-link") / "top/alias.txt").read_bytes() == b"a"
    for kind, mode in (("tar.bz2", "w:bz2"), ("tar.xz", "w:xz")):
        archive = tmp_path / f"good.{kind}"
        with tarfile.open(archive, mode) as t:
            info = tarfile.TarInfo("x.txt")
            info.size = 1
            t.addfile(info, io.BytesIO(b"x"))
        assert (safe_extract(archive, tmp_path / f"out-{kind}") / "x.txt").read_bytes() == b"x"


# ------------------------------------------------------------------------------------------
# no published checksum: the announced length and every member are checked before keeping it
# ------------------------------------------------------------------------------------------


def _damaged_esc50() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("ESC-50-master/meta/esc50.csv", ESC_CSV)
        z.writestr("ESC-50-master/audio/1-100032-A-0.wav", b"RIFF" + b"A" * 4000)
    data = bytearray(buf.getvalue())
    at = data.index(b"A" * 100)
    data[at : at + 4] = b"BBBB"  # the stored bytes no longer match the member's CRC-32
    return bytes(data)


def _assert_nothing_kept(root: Path, name: str) -> None:
    """No dataset folder, no finished archive, no staging folders."""
    assert not (root / SOURCES[name].folder).exists()
    assert not (root / "downloads" / SOURCES[name].archive).exists()
    assert not [p for p in root.rglob("*") if ".unpack-" in p.name or ".old-" in p.name]


def test_damaged_unchecksummed_archive_is_not_kept(tmp_path, server, monkeypatch):
    _publish(monkeypatch, server, "esc50", _damaged_esc50())  # ESC-50 has no published checksum
    with pytest.raises(DownloadError, match="damaged") as info:
        download("esc50", tmp_path, mirror=f"{server.base}/mirror")
    assert "1-100032-A-0.wav" in str(info.value) and "--mirror" in str(info.value)
    _assert_nothing_kept(tmp_path, "esc50")
    assert _leftovers(tmp_path) == []  # a complete (announced-length) transfer that is damaged is deleted


def test_tar_stream_crc_is_checked_where_no_checksum_is_published(tmp_path, server, monkeypatch):
    data = bytearray(ARCHIVES["gtzan"][0])
    data[-8] ^= 0xFF  # the gzip trailer's CRC-32: every tar member still reads, the stream does not
    server.files["/hub/genres.tar.gz"] = bytes(data)
    # As the Hugging Face fallback: no checksum, no size.
    remote = Remote(f"{server.base}/hub/genres.tar.gz")
    monkeypatch.setitem(SOURCES, "gtzan", dataclasses.replace(SOURCES["gtzan"], remotes=(remote,)))
    with pytest.raises(DownloadError, match="damaged or incomplete archive") as info:
        download("gtzan", tmp_path)
    assert remote.url in str(info.value)
    _assert_nothing_kept(tmp_path, "gtzan")


def test_cut_without_length_is_resumed_not_kept(tmp_path, server, monkeypatch):
    data = ARCHIVES["esc50"][0]
    _publish(monkeypatch, server, "esc50", data)
    server.send_length = False  # as GitHub's generated archives often are
    server.cut_after, server.cuts_left = len(data) // 2, 1
    download("esc50", tmp_path, mirror=f"{server.base}/mirror")
    path = "/mirror/ESC-50-master.zip"
    assert server.requests == [(path, None), (path, f"bytes={len(data) // 2}-")]
    assert (tmp_path / "downloads/ESC-50-master.zip").read_bytes() == data
    assert (tmp_path / "esc50/meta/esc50.csv").is_file()


def test_cut_without_length_is_never_kept_and_a_rerun_fetches_again(tmp_path, server, monkeypatch):
    data = ARCHIVES["esc50"][0]
    _publish(monkeypatch, server, "esc50", data)
    server.send_length, server.ignore_range = False, True
    server.cut_after, server.cuts_left = len(data) // 2, 99
    mirror = f"{server.base}/mirror"
    with pytest.raises(DownloadError) as info:
        download("esc50", tmp_path, mirror=mirror)
    message = str(info.value)
    assert f"{mirror}/ESC-50-master.zip" in message and "announced no length" in message and "rerun" in message
    _assert_nothing_kept(tmp_path, "esc50")

    server.cuts_left = 0
    download("esc50", tmp_path, mirror=mirror)
    assert (tmp_path / "downloads/ESC-50-master.zip").read_bytes() == data
    assert (tmp_path / "esc50/audio/1-100032-A-0.wav").is_file()


def test_damaged_archive_without_length_is_deleted_once_the_server_confirms_its_end(tmp_path, server, monkeypatch):
    data = _damaged_esc50()
    _publish(monkeypatch, server, "esc50", data)
    server.send_length = False
    with pytest.raises(DownloadError, match="damaged") as info:
        download("esc50", tmp_path, mirror=f"{server.base}/mirror")
    assert "deleted" in str(info.value)
    # Read to the close, failed the check, asked for more: 416, so that was the whole file.
    assert [r for _, r in server.requests] == [None, f"bytes={len(data)}-"]
    _assert_nothing_kept(tmp_path, "esc50")
    assert _leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------
# the command line: one error line, the error's exit status, never a traceback
# ------------------------------------------------------------------------------------------


def _broken(server: _State, how: str) -> None:
    data = ARCHIVES["esc10"][0]
    server.files["/mirror/ESC-50-master.zip"] = data
    if how == "garbage":
        server.garbage = True
    elif how == "reset":
        server.cut_after, server.cuts_left, server.reset = len(data) // 3, 99, True
        server.ignore_range = True  # nothing to resume from: every attempt breaks off
    elif how == "cut-without-length":
        server.send_length, server.ignore_range = False, True
        server.cut_after, server.cuts_left = len(data) // 2, 99


@pytest.mark.parametrize("how", ["garbage", "reset", "cut-without-length"])
def test_cli_broken_server_prints_one_error_line(tmp_path, server, capsys, how):
    _broken(server, how)
    argv = ["data", "download", "esc10", "--root", str(tmp_path), "--mirror", f"{server.base}/mirror"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "Traceback" not in err
    assert [line for line in lines if line.startswith("error:")] == lines[-1:]  # one, and it is the whole message
    assert f"{server.base}/mirror/ESC-50-master.zip" in lines[-1]
    _assert_nothing_kept(tmp_path, "esc10")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full to fill a disk")
def test_cli_disk_full_exits_3(tmp_path, server, capsys):
    server.files["/mirror/ESC-50-master.zip"] = ARCHIVES["esc10"][0]
    part = tmp_path / "downloads" / "ESC-50-master.zip.part"
    part.parent.mkdir()
    part.symlink_to("/dev/full")
    argv = ["data", "download", "esc10", "--root", str(tmp_path), "--mirror", f"{server.base}/mirror"]
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith(f"error: cannot write {part}")
