"""``audiocnn serve RUN``: a run's model behind a small HTTP API (FastAPI on uvicorn).

    POST /predict?top_k=3   body: an audio file's bytes (Content-Type audio/* or application/octet-stream),
                            or multipart/form-data with the file in the field ``file``
                            -> {"top": [[label, probability], ...], "duration_s": 1.0, "windows": 1}
    GET  /health            -> {"status": "ok", "batching": {...}, "in_flight": ...}
    GET  /labels            -> {"labels": [...]}

The model loads once; a request goes the way of ``audiocnn predict`` (the same decoding, checks, windows and
averaging: :meth:`Modality.read_bytes`, :func:`window_outputs`, :func:`describe_outputs`), except that the
windows of concurrent requests share forward passes (:class:`MicroBatcher`). A run of an image recipe takes
image bytes (``image/*``).

Limits: the body size (checked on ``Content-Length`` and again while the body streams in, before it is all
read), the time the body may take to arrive (a slow upload is a 408), the audio duration (by the header, before
decoding), requests handled at once and requests waiting for them (beyond: 503). A bad request is a 4xx with
``{"error": "..."}`` naming the problem; anything unexpected is a 500 whose traceback goes to the log only.
SIGINT or SIGTERM stops accepting, lets the requests in flight finish and exits 0.

There is no authentication and no TLS: the default host is loopback; anything wider belongs behind a reverse
proxy that authenticates.

FastAPI and uvicorn are an optional extra (``pip install audiocnn[serve]``), imported only when serving.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiocnn.audio import AudioError
from audiocnn.core.errors import ConfigError, EnvironmentFailure
from audiocnn.data.images import ImageError
from audiocnn.deploy.batching import MicroBatcher
from audiocnn.evaluation.predict import describe_outputs, window_outputs
from audiocnn.modalities import modality_of
from audiocnn.runs import LoadedRun, load_run

__all__ = ["ServeSettings", "build_app", "serve"]

log = logging.getLogger("audiocnn.serve")

OCTET_STREAM = "application/octet-stream"
MULTIPART = "multipart/form-data"
FILE_FIELD = "file"
QUERY_KEYS = ("top_k",)


@dataclass(frozen=True)
class ServeSettings:
    """The server's limits (command-line flags of the same names).

    Attributes:
        max_body_mb: largest request body, in MiB.
        max_batch: model inputs (windows) per forward pass.
        max_wait_ms: how long a request waits for others to share its forward pass while the model is idle.
        max_concurrency: requests read, decoded and predicted at once.
        max_queue: requests waiting for those; more at once are answered 503.
        body_timeout_s: seconds the whole body may take to arrive (slower: 408).
        max_duration_s: longest audio, by its header (a small compressed file can hold hours).
        top_k: labels answered when the request gives no ``top_k``.
        shutdown_timeout_s: on SIGTERM, how long requests in flight may still take.
    """

    max_body_mb: float = 16.0
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_concurrency: int = 16
    max_queue: int = 64
    body_timeout_s: float = 30.0
    max_duration_s: float = 300.0
    top_k: int = 3
    shutdown_timeout_s: float = 30.0

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


class RequestError(Exception):
    """A bad request: its HTTP status and a message naming the problem (``close``: end the connection too)."""

    def __init__(self, status: int, message: str, *, close: bool = False):
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close


def _require_stack():
    """The serving stack, or a one-line error saying how to install it."""
    try:  # optional extra: imported only when serving
        import fastapi
        import uvicorn
    except ImportError as e:
        raise ConfigError(f"audiocnn serve needs FastAPI and uvicorn ({e.name} is not installed): "
                          "pip install audiocnn[serve]") from None
    return fastapi, uvicorn


class _Gate:
    """At most ``limit`` requests inside, at most ``queue`` more waiting; beyond that a 503."""

    def __init__(self, limit: int, queue: int):
        self.limit, self.queue = limit, queue
        self.admitted = 0
        self._inside = asyncio.Semaphore(limit)

    @contextlib.asynccontextmanager
    async def enter(self):
        if self.admitted >= self.limit + self.queue:
            raise RequestError(503, f"server busy: {self.admitted} requests in flight or waiting (--max-concurrency "
                                    f"{self.limit}, --max-queue {self.queue}); retry later")
        self.admitted += 1
        try:
            async with self._inside:
                yield
        finally:
            self.admitted -= 1


class Predictor:
    """The loaded run and the way from a request to its answer.

    Args:
        run: the loaded run (:func:`load_run`).
        run_dir: its folder, for ``/health``.
        settings: the limits.
    """

    def __init__(self, run: LoadedRun, run_dir: str | Path, settings: ServeSettings):
        self.run, self.run_dir, self.settings = run, str(run_dir), settings
        self.modality = modality_of(run.cfg)
        self.outputs = len(run.labels) if run.task != "binary" else 2
        self.batcher: MicroBatcher | None = None
        self.gate: _Gate | None = None

    def start(self) -> asyncio.Task:
        """Inside the server's event loop: the batcher task."""
        s = self.settings
        model, task = self.run.model, self.run.task
        self.batcher = MicroBatcher(lambda x: window_outputs(model, task, x, batch_size=s.max_batch),
                                    max_batch=s.max_batch, max_wait_s=s.max_wait_ms / 1000)
        self.gate = _Gate(s.max_concurrency, s.max_queue)
        return asyncio.create_task(self.batcher.run(), name="audiocnn-batcher")

    def health(self) -> dict:
        cfg = self.run.cfg
        out: dict[str, Any] = {"status": "ok", "run": self.run_dir, "task": self.run.task, "modality": self.modality.name,
                               "labels": len(self.run.labels)}
        if self.modality.waveforms:
            out.update(sample_rate=cfg.data.sample_rate, window_s=cfg.data.duration)
        out["in_flight"] = self.gate.admitted if self.gate else 0
        out["batching"] = self.batcher.stats.as_dict() if self.batcher else {}
        out["limits"] = dataclasses.asdict(self.settings)
        return out

    async def predict(self, request) -> tuple[dict, int]:
        """The answer to ``POST /predict`` and how many requests shared its forward pass; :class:`RequestError`,
        :class:`AudioError` or :class:`ImageError` for a bad request."""
        top_k = self._top_k(request.query_params)
        kind = self._content_kind(request.headers.get("content-type"))
        async with self.gate.enter():
            body = await _read_body(request, self.settings)
            if kind == MULTIPART:
                body = await _multipart_file(request.headers, body)
            x, info = await asyncio.to_thread(self.modality.read_bytes, self.run.cfg, body,
                                              max_duration=self.settings.max_duration_s)
            rows, shared = await self.batcher.submit(x)
        probs = rows.mean(0).numpy()
        answer = describe_outputs(dict(info), probs, self.run.labels, self.run.task, top_k)
        return {k: answer[k] for k in ("top", "values", "duration_s", "windows") if k in answer}, shared

    def _top_k(self, query) -> int:
        unknown = sorted(set(query.keys()) - set(QUERY_KEYS))
        if unknown:
            raise RequestError(400, f"unknown query parameter {unknown[0]!r}; /predict takes: {', '.join(QUERY_KEYS)}")
        values = query.getlist("top_k")
        if not values:
            return min(self.settings.top_k, self.outputs)
        if len(values) > 1:
            raise RequestError(400, f"top_k given {len(values)} times; give it once")
        text = values[0]
        try:
            k = int(text)
        except ValueError:
            raise RequestError(400, f"top_k={text!r} is not an integer; give 1 to {self.outputs}") from None
        if not 1 <= k <= self.outputs:
            raise RequestError(400, f"top_k={k} is out of range: the model has {self.outputs} labels; give 1 to "
                                    f"{self.outputs}")
        return k

    def _content_kind(self, header: str | None) -> str:
        """``multipart/form-data``, or ``raw`` for the file's bytes; a 415 for anything else."""
        accepted = [f"{m}*" for m in self.modality.media_types] + [OCTET_STREAM, f"{MULTIPART} (field {FILE_FIELD!r})"]
        hint = f"send the file as one of: {', '.join(accepted)}"
        if not header:
            raise RequestError(415, f"no Content-Type header; {hint}")
        media = header.split(";", 1)[0].strip().lower()
        if media == MULTIPART:
            return MULTIPART
        if media == OCTET_STREAM or media.startswith(self.modality.media_types):
            return "raw"
        raise RequestError(415, f"Content-Type {media!r} is not accepted by this {self.modality.name} model; {hint}")


async def _read_body(request, settings: ServeSettings) -> bytes:
    """The body, refused (413) as soon as it is over ``max_body_mb`` and (408) when slower than ``body_timeout_s``."""
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and int(declared) > limit:  # uvicorn has checked it is a number
        raise RequestError(413, f"body of {int(declared)} bytes (Content-Length) is over the limit of {limit} bytes "
                                f"(--max-body-mb {settings.max_body_mb:g})", close=True)
    received = bytearray()

    async def receive_all() -> None:
        async for chunk in request.stream():
            received.extend(chunk)
            if len(received) > limit:
                raise RequestError(413, f"body over the limit of {limit} bytes (--max-body-mb {settings.max_body_mb:g})"
                                        f"; stopped reading at {len(received)} bytes", close=True)

    try:
        await asyncio.wait_for(receive_all(), settings.body_timeout_s)
    except TimeoutError:
        raise RequestError(408, f"the body did not arrive within {settings.body_timeout_s:g} s ({len(received)} bytes "
                                "received); send it at once", close=True) from None
    return bytes(received)


async def _multipart_file(headers, body: bytes) -> bytes:
    """The bytes of the ``file`` field of a ``multipart/form-data`` body (already read and size-checked)."""
    from starlette.formparsers import MultiPartException, MultiPartParser  # part of the serving extra

    async def stream():
        yield body
        yield b""

    try:
        form = await MultiPartParser(headers, stream(), max_files=1, max_fields=8, max_part_size=len(body) + 1).parse()
    except MultiPartException as e:
        raise RequestError(400, f"malformed multipart/form-data body: {e.message}") from None
    try:
        part = form.get(FILE_FIELD)
        if part is None:
            names = ", ".join(repr(k) for k in form.keys()) or "none"
            raise RequestError(400, f"multipart body has no field {FILE_FIELD!r} (fields: {names}); upload the file as "
                                    f"{FILE_FIELD}, e.g. curl -F {FILE_FIELD}=@clip.wav")
        if isinstance(part, str):
            raise RequestError(400, f"multipart field {FILE_FIELD!r} is text, not a file upload; e.g. curl -F "
                                    f"{FILE_FIELD}=@clip.wav")
        return await part.read()
    finally:
        await form.close()


def build_app(run_dir: str | Path, settings: ServeSettings | None = None, *, checkpoint: str = "best",
              device: str | None = None):
    """The FastAPI application serving ``run_dir`` (the model loads here, once)."""
    fastapi, _ = _require_stack()
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect

    settings = settings or ServeSettings()
    predictor = Predictor(load_run(run_dir, checkpoint=checkpoint, device=device), run_dir, settings)

    def error(status: int, message: str, *, close: bool = False, headers: dict | None = None):
        headers = dict(headers or {})
        if close:
            headers["Connection"] = "close"
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        task = predictor.start()
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            predictor.batcher.close()

    app = fastapi.FastAPI(title="audiocnn", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.predictor = predictor

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):  # unknown path, wrong method
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 404:
            message = f"no such endpoint: {where}; endpoints: POST /predict, GET /health, GET /labels"
        elif exc.status_code == 405:
            allowed = {k.lower(): v for k, v in (exc.headers or {}).items()}.get("allow", "?")
            message = f"method {request.method} is not allowed on {request.url.path}; allowed: {allowed}"
        else:
            message = f"{where}: {exc.detail}"
        return error(exc.status_code, message, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request, exc: Exception):
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error(500, "internal server error; the traceback is in the server's log")

    @app.get("/health")
    async def health():
        return predictor.health()

    @app.get("/labels")
    async def labels():
        return {"labels": list(predictor.run.labels), "task": predictor.run.task}

    async def predict(request):  # a plain Starlette route: the raw request, no parameter parsing by FastAPI
        try:
            answer, shared = await predictor.predict(request)
        except RequestError as e:
            return error(e.status, e.message, close=e.close)
        except (AudioError, ImageError) as e:
            return error(422, str(e))
        except ClientDisconnect:
            return error(400, "the client closed the connection before the body arrived", close=True)
        except Exception:  # noqa: BLE001 - a bug: logged with its traceback, never sent to the client
            log.exception("POST /predict failed")
            return error(500, "internal server error; the traceback is in the server's log")
        return JSONResponse(answer, headers={"X-Batch-Requests": str(shared)})

    app.add_route("/predict", predict, methods=["POST"])
    return app


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free one), or a one-line error."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except socket.gaierror as e:
        raise ConfigError(f"--host {host}: not an address this machine can listen on ({e.strerror})") from None
    except OSError as e:
        raise EnvironmentFailure(f"cannot listen on {host}:{port} ({e.strerror}); choose another --port or --host") \
            from None
    sock.listen(128)
    return sock


def serve(run_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000, settings: ServeSettings | None = None,
          checkpoint: str = "best", device: str | None = None, access_log: bool = False) -> int:
    """Serve ``run_dir`` until SIGINT or SIGTERM; returns 0 after a graceful shutdown.

    Prints ``serving RUN on http://HOST:PORT`` (the real port when ``port`` is 0) once it accepts requests.
    """
    _, uvicorn = _require_stack()
    settings = settings or ServeSettings()
    if not logging.getLogger().handlers and not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
    with _listen(host, port) as sock:  # first, so a busy port fails before the model loads
        app = build_app(run_dir, settings, checkpoint=checkpoint, device=device)
        config = uvicorn.Config(app, http="h11", lifespan="on", access_log=access_log, server_header=False,
                                timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout_s)), log_level="info")
        server = _server_class()(config)
        shown = f"[{host}]" if ":" in host else host
        print(f"serving {run_dir} on http://{shown}:{sock.getsockname()[1]} (no authentication: keep it on loopback "
              "or behind a proxy)", flush=True)
        server.run(sockets=[sock])
    return 0


def _server_class():
    _, uvicorn = _require_stack()

    class Server(uvicorn.Server):
        """uvicorn's server, whose graceful stop on SIGINT/SIGTERM ends in exit status 0 (uvicorn re-raises the
        signal once it has shut down, which would end the process with the signal's status)."""

        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server

