"""``audiocnn serve`` as a client sees it: a real server process on loopback, real HTTP (httpx and raw sockets).

A tiny run is trained here on generated data. Good answers are checked against ``audiocnn predict`` run as its own
process on the same files; bad requests must each get a 4xx JSON error naming the problem while the server keeps
answering; concurrent requests must be batched yet each get its own answer; SIGTERM lets requests in flight finish.
"""
from __future__ import annotations

import asyncio
import io
import json
import os
import queue
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from layouts import quickstart_run  # noqa: E402
from audiocnn.cli import main  # noqa: E402
from audiocnn.deploy.batching import MicroBatcher  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SR = 8000
MAX_BODY = 1024 * 1024  # --max-body-mb 1
BODY_TIMEOUT = 1.5
MAX_DURATION = 20


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return quickstart_run(tmp_path_factory.mktemp("serve"), num_per_class=6, epochs=1)


class Server:
    """``python -m audiocnn serve`` in a subprocess on a free loopback port (``--port 0``, read from its stdout)."""

    def __init__(self, run: Path, log: Path, *args: str):
        self.log = log
        self._err = open(log, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "audiocnn", "serve", str(run), "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=self._err, cwd=run.parent)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in self.proc.stdout], daemon=True).start()
        try:
            line = lines.get(timeout=120).decode()
        except queue.Empty:
            self.stop()
            raise AssertionError(f"the server printed nothing: {log.read_text()}") from None
        assert "serving" in line and "no authentication" in line, line
        self.port = int(line.split("http://127.0.0.1:")[1].split()[0])
        self.url = f"http://127.0.0.1:{self.port}"
        self.wait_ready()

    def wait_ready(self) -> None:
        for _ in range(200):
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError(f"the server never answered /health: {self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=60)
        finally:
            self._err.close()


@pytest.fixture(scope="module")
def server(run_dir, tmp_path_factory):
    srv = Server(run_dir, tmp_path_factory.mktemp("serve-log") / "server.log", "--max-body-mb", "1",
                 "--body-timeout-s", str(BODY_TIMEOUT), "--max-duration-s", str(MAX_DURATION), "--max-wait-ms", "100")
    yield srv
    assert srv.stop(signal.SIGINT) == 0  # Ctrl-C is a graceful stop too
    assert "Traceback" not in srv.log.read_text()  # no bad request reached the 500 path


# -- payloads -----------------------------------------------------------------------------------------------------

def tone(seconds: float, *, sr: int = SR, freq: float = 440.0, channels: int = 1, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * (freq + 300 * t) * t) + 0.02 * rng.standard_normal(len(t))
    x = x.astype(np.float32)
    return np.stack([x * (0.5 + 0.5 * c) for c in range(channels)], 1) if channels > 1 else x


def encode(x: np.ndarray, *, sr: int = SR, fmt: str = "WAV", subtype: str | None = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def patch_fmt(wav: bytes, offset: int, code: str, value: int) -> bytes:
    """Overwrite a field of the WAV ``fmt `` chunk (``offset`` from the chunk id)."""
    out = bytearray(wav)
    struct.pack_into(code, out, wav.find(b"fmt ") + offset, value)
    return bytes(out)


def multipart(field: str, content: bytes, *, filename: str | None = "clip.wav") -> tuple[dict, bytes]:
    boundary = "audiocnnboundary42"
    disposition = f'form-data; name="{field}"' + (f'; filename="{filename}"' if filename else "")
    body = (f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: audio/wav\r\n\r\n").encode() \
        + content + f"\r\n--{boundary}--\r\n".encode()
    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, body


GOOD = encode(tone(1.0))
WAV = {"Content-Type": "audio/wav"}

# name: (method, path, headers, body, status, words the error names)
BAD = {
    "empty body": ("POST", "/predict", WAV, b"", 422, "empty"),
    "text body": ("POST", "/predict", WAV, b"hello, this is not audio\n" * 20, 422, "text"),
    "random bytes": ("POST", "/predict", {"Content-Type": "application/octet-stream"},
                     np.random.default_rng(1).bytes(5000), 422, "not a readable audio file"),
    "truncated wav": ("POST", "/predict", WAV, GOOD[:len(GOOD) // 2], 422, "truncated"),
    "header-only wav": ("POST", "/predict", WAV, GOOD[:44], 422, "0 frames"),
    "riff garbage": ("POST", "/predict", WAV, b"RIFF\x10\x00\x00\x00WAVEfmt garbage", 422, "header"),
    "nan samples": ("POST", "/predict", WAV, encode(np.where(np.arange(SR) == 100, np.nan, tone(1.0)).astype(np.float32),
                                                    subtype="FLOAT"), 422, "NaN"),
    "inf samples": ("POST", "/predict", WAV, encode(np.where(np.arange(SR) == 7, -np.inf, tone(1.0)).astype(np.float32),
                                                    subtype="FLOAT"), 422, "Inf"),
    "too short": ("POST", "/predict", WAV, encode(tone(0.005)), 422, "too short"),
    "too long": ("POST", "/predict", WAV, encode(np.zeros(SR * (MAX_DURATION + 5), np.int16), subtype="PCM_16"),
                 422, f"limit of {MAX_DURATION} s"),
    "sample rate 0": ("POST", "/predict", WAV, patch_fmt(GOOD, 12, "<I", 0), 422, "sample rate 0"),
    "64-bit integer pcm claimed": ("POST", "/predict", WAV, patch_fmt(GOOD, 22, "<H", 64), 422, "unimplemented format"),
    "zero channels": ("POST", "/predict", WAV, patch_fmt(GOOD, 10, "<H", 0), 422, "Channel count is zero"),
    "65 channels": ("POST", "/predict", WAV, encode(np.zeros((800, 65), np.float32)), 422, "65 channels"),
    "text/plain": ("POST", "/predict", {"Content-Type": "text/plain"}, GOOD, 415, "'text/plain' is not accepted"),
    "form-urlencoded (curl -d)": ("POST", "/predict", {"Content-Type": "application/x-www-form-urlencoded"}, GOOD, 415,
                                  "application/x-www-form-urlencoded"),
    "no content type": ("POST", "/predict", {}, GOOD, 415, "no Content-Type"),
    "image on an audio model": ("POST", "/predict", {"Content-Type": "image/png"}, GOOD, 415, "audio model"),
    "wrong multipart field": ("POST", "/predict", *multipart("audio", GOOD), 400, "no field 'file'"),
    "multipart file is text": ("POST", "/predict", *multipart("file", b"hello", filename=None), 400, "is text"),
    "empty multipart file": ("POST", "/predict", *multipart("file", b""), 422, "empty"),
    "multipart without boundary": ("POST", "/predict", {"Content-Type": "multipart/form-data"}, GOOD, 400,
                                   "multipart"),
    "top_k=0": ("POST", "/predict?top_k=0", WAV, GOOD, 400, "top_k=0 is out of range"),
    "top_k=-1": ("POST", "/predict?top_k=-1", WAV, GOOD, 400, "top_k=-1 is out of range"),
    "top_k=abc": ("POST", "/predict?top_k=abc", WAV, GOOD, 400, "not an integer"),
    "top_k too large": ("POST", "/predict?top_k=99", WAV, GOOD, 400, "3 labels"),
    "top_k twice": ("POST", "/predict?top_k=1&top_k=2", WAV, GOOD, 400, "2 times"),
    "unknown query parameter": ("POST", "/predict?topk=2", WAV, GOOD, 400, "unknown query parameter 'topk'"),
    "GET /predict": ("GET", "/predict", {}, b"", 405, "allowed: POST"),
    "DELETE /predict": ("DELETE", "/predict", {}, b"", 405, "DELETE is not allowed"),
    "POST /health": ("POST", "/health", WAV, GOOD, 405, "not allowed on /health"),
    "unknown path": ("GET", "/predictions", {}, b"", 404, "no such endpoint: GET /predictions"),
}


def assert_alive(server: Server) -> None:
    r = httpx.get(server.url + "/health", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert server.proc.poll() is None


@pytest.mark.parametrize("name", list(BAD))
def test_bad_request_is_a_4xx_json_naming_the_problem(server, name):
    method, path, headers, body, status, words = BAD[name]
    r = httpx.request(method, server.url + path, headers=headers, content=body, timeout=30)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert words in error, error
    assert "Traceback" not in error
    assert_alive(server)


# -- raw sockets: what httpx does not send --------------------------------------------------------------------------

def raw_exchange(port: int, head: bytes, chunks=(), *, delay: float = 0.0, timeout: float = 20) -> tuple[int, dict]:
    """Send ``head`` then ``chunks`` (pausing ``delay`` s each) until the server answers; its status and JSON."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head)
        for chunk in chunks:
            if select.select([s], [], [], 0)[0]:  # it has answered: stop sending
                break
            s.sendall(chunk)
            time.sleep(delay)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            got = s.recv(65536)
            if not got:
                break
            data += got
    status_line, rest = data.split(b"\r\n", 1)
    return int(status_line.split()[1]), json.loads(rest.split(b"\r\n\r\n", 1)[1])


def _length(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    for line in head.split("\r\n"):
        if line.startswith("content-length:"):
            return int(line.split(":")[1])
    return 1 << 30


def test_declared_length_over_the_limit_is_refused_before_the_body(server):
    head = (f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\nContent-Length: {50 * MAX_BODY}\r\n\r\n"
            ).encode()
    status, body = raw_exchange(server.port, head)  # no body byte sent: the answer comes from the header alone
    assert status == 413 and f"{50 * MAX_BODY} bytes (Content-Length)" in body["error"] and "--max-body-mb" in body["error"]
    assert_alive(server)


def test_chunked_body_over_the_limit_is_stopped_while_streaming(server):
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\nTransfer-Encoding: chunked\r\n\r\n"
    piece = b"\0" * 65536
    chunks = [b"%x\r\n" % len(piece) + piece + b"\r\n"] * (MAX_BODY // len(piece) + 2)  # a little over the limit
    status, body = raw_exchange(server.port, head, chunks)
    assert status == 413 and "stopped reading at" in body["error"]
    assert_alive(server)


def test_slow_upload_is_a_408(server):
    head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\nContent-Length: {len(GOOD)}\r\n\r\n".encode()
    chunks = [GOOD[i:i + 100] for i in range(0, len(GOOD), 100)]  # 100 bytes every 0.1 s: ~16 s for the whole
    start = time.monotonic()
    status, body = raw_exchange(server.port, head, chunks, delay=0.1)
    assert status == 408 and f"within {BODY_TIMEOUT:g} s" in body["error"]
    assert time.monotonic() - start < BODY_TIMEOUT + 5
    assert_alive(server)


def test_body_shorter_than_its_content_length_times_out(server):
    head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\nContent-Length: {len(GOOD)}\r\n\r\n".encode()
    status, body = raw_exchange(server.port, head, [GOOD[:1000]])  # then silence: the rest never comes
    assert status == 408 and "1000 bytes received" in body["error"]
    assert_alive(server)


# -- good requests ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clips(tmp_path_factory, run_dir):
    """Files of several kinds, and ``audiocnn predict``'s answers for them from its own process."""
    folder = tmp_path_factory.mktemp("clips")
    train_clip = sorted((run_dir.parents[2] / "syn").rglob("*.wav"))[0]
    files = {
        "train.wav": train_clip.read_bytes(),
        "tone.wav": encode(tone(1.0, seed=1)),
        "long.flac": encode(tone(3.3, freq=900, seed=2), fmt="FLAC", subtype="PCM_16"),  # several windows, averaged
        "stereo44k.wav": encode(tone(1.5, sr=44100, channels=2, seed=3), sr=44100),  # mixed down and resampled
        "silence.wav": encode(np.zeros(2 * SR, np.float32)),
        "float.wav": encode(tone(0.4, seed=4), subtype="FLOAT"),  # shorter than a window: zero-padded
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    out = folder / "cli.json"
    done = subprocess.run([sys.executable, "-m", "audiocnn", "predict", str(run_dir), *(str(folder / n) for n in files),
                           "--top-k", "3", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    cli = {Path(r["path"]).name: r for r in json.loads(out.read_text())}
    return files, cli


def as_dict(top) -> dict[str, float]:
    return {label: p for label, p in top}


CONTENT_TYPES = {".wav": "audio/wav", ".flac": "audio/flac"}


def test_answers_equal_audiocnn_predict(server, clips):
    files, cli = clips
    for name, data in files.items():
        kind = "application/octet-stream" if name == "tone.wav" else CONTENT_TYPES[Path(name).suffix]
        r = httpx.post(server.url + "/predict?top_k=3", content=data, headers={"Content-Type": kind}, timeout=30)
        assert r.status_code == 200, (name, r.text)
        got, want = r.json(), cli[name]
        assert got["windows"] == want["windows"] and got["duration_s"] == pytest.approx(want["duration_s"])
        assert [label for label, _ in got["top"]] == [label for label, _ in want["top"]], name
        np.testing.assert_allclose([p for _, p in got["top"]], [p for _, p in want["top"]], atol=1e-6, rtol=0)
    assert cli["long.flac"]["windows"] > 1 and cli["stereo44k.wav"]["windows"] >= 2


def test_multipart_upload_and_default_top_k(server, clips):
    files, cli = clips
    r = httpx.post(server.url + "/predict", files={"file": ("clip.wav", files["tone.wav"], "audio/wav")}, timeout=30)
    assert r.status_code == 200
    assert len(r.json()["top"]) == 3  # --top-k's default, capped at the labels
    np.testing.assert_allclose(sorted(as_dict(r.json()["top"]).values()),
                               sorted(as_dict(cli["tone.wav"]["top"]).values()), atol=1e-6, rtol=0)
    r = httpx.post(server.url + "/predict?top_k=1", content=files["tone.wav"], headers=WAV, timeout=30)
    assert r.json()["top"][0][0] == cli["tone.wav"]["top"][0][0] and len(r.json()["top"]) == 1


def test_labels_and_health(server, run_dir):
    labels = json.loads((run_dir / "labels.json").read_text())["labels"]
    assert httpx.get(server.url + "/labels").json()["labels"] == labels
    health = httpx.get(server.url + "/health").json()
    assert health["sample_rate"] == SR and health["labels"] == len(labels) and health["modality"] == "audio"
    assert health["limits"]["max_body_mb"] == 1 and set(health["batching"]) >= {"batches", "largest_batch"}


def test_concurrent_requests_are_batched_and_not_mixed(server):
    payloads = [encode(tone(0.6 + 0.2 * i, freq=200 + 150 * i, seed=10 + i)) for i in range(12)]
    post = lambda data: httpx.post(server.url + "/predict?top_k=3", content=data, headers=WAV, timeout=60)  # noqa: E731
    solo = [post(p) for p in payloads]
    assert all(r.status_code == 200 for r in solo)
    before = httpx.get(server.url + "/health").json()["batching"]
    barrier = threading.Barrier(len(payloads))

    def together(data: bytes):
        barrier.wait()
        return post(data)

    with ThreadPoolExecutor(len(payloads)) as pool:
        answers = list(pool.map(together, payloads))
    shared = [int(r.headers["x-batch-requests"]) for r in answers]
    assert max(shared) > 1, shared  # some requests went through one forward pass together
    after = httpx.get(server.url + "/health").json()["batching"]
    assert after["requests"] - before["requests"] == len(payloads)
    assert after["batches"] - before["batches"] < len(payloads) and after["largest_batch"] > 1
    for alone, together_ in zip(solo, answers):
        assert together_.status_code == 200
        a, b = alone.json(), together_.json()
        assert a["windows"] == b["windows"]
        assert [label for label, _ in a["top"]] == [label for label, _ in b["top"]]
        np.testing.assert_allclose([p for _, p in a["top"]], [p for _, p in b["top"]], atol=1e-6, rtol=0)


# -- shutdown -------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_sigterm_finishes_requests_in_flight_then_exits_0(run_dir, tmp_path):
    # a long batching wait keeps the requests in flight when the signal arrives
    srv = Server(run_dir, tmp_path / "server.log", "--max-wait-ms", "2000", "--max-batch", "64")
    try:
        payloads = [encode(tone(1.0, freq=300 + 100 * i, seed=i)) for i in range(4)]
        with ThreadPoolExecutor(len(payloads)) as pool:
            futures = [pool.submit(httpx.post, srv.url + "/predict", content=p, headers=WAV, timeout=60)
                       for p in payloads]
            for _ in range(200):
                if httpx.get(srv.url + "/health").json()["in_flight"] == len(payloads):
                    break
                time.sleep(0.02)
            else:
                raise AssertionError("the requests never arrived")
            srv.proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            with pytest.raises(httpx.ConnectError):  # no longer accepting
                httpx.get(srv.url + "/health", timeout=2)
            answers = [f.result() for f in futures]
        assert [r.status_code for r in answers] == [200] * len(payloads)
        assert all(len(r.json()["top"]) == 3 for r in answers)
        assert srv.proc.wait(timeout=60) == 0
    finally:
        srv.stop()


# -- in-process pieces -----------------------------------------------------------------------------------------------

def test_unexpected_exception_is_a_500_logged_not_sent(run_dir, caplog):
    from fastapi.testclient import TestClient

    from audiocnn.deploy.serve import build_app

    app = build_app(run_dir)
    with TestClient(app, raise_server_exceptions=False) as client:
        def broken(x):
            raise RuntimeError("secret detail of a bug")

        app.state.predictor.batcher.forward = broken
        r = client.post("/predict", content=GOOD, headers=WAV)
        assert r.status_code == 500 and "log" in r.json()["error"]
        assert "secret detail" not in r.text and "Traceback" not in r.text
        assert client.get("/health").status_code == 200
    logged = [rec for rec in caplog.records if rec.name == "audiocnn.serve" and rec.exc_info]
    assert logged and "secret detail of a bug" in str(logged[0].exc_info[1])


def test_micro_batcher_splits_results_back_to_their_requests():
    calls: list[int] = []

    def forward(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return x * 2 + 1

    async def scenario():
        batcher = MicroBatcher(forward, max_batch=8, max_wait_s=0.05)
        task = asyncio.create_task(batcher.run())
        sizes = [3, 1, 4, 2, 12, 1]  # 12 > max_batch: alone
        inputs = [torch.full((n, 2), float(i)) + torch.arange(n)[:, None] for i, n in enumerate(sizes)]
        outs = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        task.cancel()
        batcher.close()
        return inputs, outs

    inputs, outs = asyncio.run(scenario())
    for x, (rows, shared) in zip(inputs, outs):
        torch.testing.assert_close(rows, x * 2 + 1)
    assert sum(calls) == 23 and 12 in calls and all(c <= 8 for c in calls if c != 12)
    assert len(calls) < 6 and max(shared for _, shared in outs) > 1


def test_missing_serving_stack_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    assert main(["serve", str(tmp_path), "--port", "0"]) == 2  # before anything is loaded
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install audiocnn[serve]" in err


@pytest.mark.slow
def test_the_rest_of_audiocnn_imports_without_the_serving_stack():
    code = ("import sys; sys.modules['fastapi'] = sys.modules['uvicorn'] = None; import audiocnn.cli, audiocnn.deploy.serve; "
            "print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr


def test_image_run_takes_image_bytes(tmp_path):
    from fastapi.testclient import TestClient
    from PIL import Image

    from audiocnn.config import load_config
    from audiocnn.deploy.serve import build_app
    from audiocnn.evaluation.predict import predict_files
    from audiocnn.pipelines import train
    from layouts import mnist

    mnist(tmp_path / "mnist", n_train=4, n_test=1)
    cfg = load_config(ROOT / "recipes" / "mnist_lenet.yaml", [f"data.root={tmp_path / 'mnist'}", "trainer.epochs=1",
                      f"trainer.output_dir={tmp_path / 'runs'}", "trainer.progress=never"])
    run = train(cfg, quiet=True)
    picture = np.random.default_rng(0).integers(0, 255, (56, 56), dtype=np.uint8)
    Image.fromarray(picture).save(tmp_path / "digit.png")  # resized to 28x28 as in predict
    (want,) = predict_files(run, [tmp_path / "digit.png"], top_k=3)
    with TestClient(build_app(run)) as client:
        r = client.post("/predict?top_k=3", content=(tmp_path / "digit.png").read_bytes(),
                        headers={"Content-Type": "image/png"})
        assert r.status_code == 200, r.text
        assert [label for label, _ in r.json()["top"]] == [label for label, _ in want["top"]]
        np.testing.assert_allclose([p for _, p in r.json()["top"]], [p for _, p in want["top"]], atol=1e-6, rtol=0)
        bad = client.post("/predict", content=b"not a png", headers={"Content-Type": "image/png"})
        assert bad.status_code == 422 and "not an image" in bad.json()["error"]
        wav = client.post("/predict", content=GOOD, headers=WAV)
        assert wav.status_code == 415 and "image model" in wav.json()["error"]


def test_busy_port_is_one_line_before_the_model_loads(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", str(tmp_path / "no-run"), "--port", str(port)]) == 3  # the run is never opened
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err


def test_gate_bounds_requests_inside_and_waiting():
    from audiocnn.deploy.serve import RequestError, _Gate

    async def scenario():
        gate = _Gate(1, 1)  # one inside, one waiting, the third is turned away
        inside, release = asyncio.Event(), asyncio.Event()

        async def hold():
            async with gate.enter():
                inside.set()
                await release.wait()

        first = asyncio.create_task(hold())
        await inside.wait()
        second = asyncio.create_task(hold())
        await asyncio.sleep(0)
        assert gate.admitted == 2
        with pytest.raises(RequestError) as busy:
            async with gate.enter():
                pass
        release.set()
        await asyncio.gather(first, second)
        async with gate.enter():  # room again
            pass
        return busy.value, gate.admitted

    busy, admitted = asyncio.run(scenario())
    assert busy.status == 503 and "retry later" in busy.message and admitted == 0
