"""The batching engine: windows of many inputs go through the model together in batches of ``batch_size``
(:class:`WindowBatcher`), and each input's embeddings come back as an :class:`EmbeddingResult`, in input
order, as soon as its last window is through; a bad input is reported and never stops the others."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Literal

import numpy as np

from audiocnn.core.errors import ConfigError
from audiocnn.audio import AudioError
from audiocnn.embed.embedders import Embedder
from audiocnn.embed.windows import iter_windows

Pool = Literal["mean", "max", "none"]


@dataclass
class EmbeddingResult:
    """One wave's embeddings.

    Attributes:
        embeddings: ``(n, dim)`` float32, one row per window.
        starts / ends: ``(n,)`` seconds (a padded short clip ends at its own end).
        clip: ``(dim,)`` pooled over the windows, or None (``pool='none'`` or no window).
        duration: seconds of audio.
    """

    embeddings: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    clip: np.ndarray | None
    duration: float


@dataclass
class Job:
    index: int
    blocks: Callable[[], Iterable[np.ndarray]]
    parts: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    pending: int = 0
    samples: int = 0
    error: str | None = None
    reading: bool = True


def _pool(embeddings: np.ndarray, pool: Pool) -> np.ndarray | None:
    if pool == "none" or len(embeddings) == 0:
        return None
    if pool == "mean":
        return embeddings.mean(0, dtype=np.float64).astype(np.float32)
    if pool == "max":
        return embeddings.max(0)
    raise ConfigError(f"pool must be mean, max or none, got {pool!r}")


def _result(job: Job, emb: Embedder, window: int, pool: Pool) -> EmbeddingResult:
    if job.parts:
        starts = np.concatenate([s for s, _ in job.parts])
        embeddings = np.concatenate([e for _, e in job.parts]).astype(np.float32, copy=False)
    else:
        starts, embeddings = np.zeros(0, np.int64), np.zeros((0, emb.dim), np.float32)
    sr = emb.sample_rate
    ends = np.minimum(starts + window, max(job.samples, 1)) / sr
    return EmbeddingResult(embeddings, starts / sr, ends, _pool(embeddings, pool), job.samples / sr)


class WindowBatcher:
    """Stream every job's windows through the model in batches that span jobs; call ``on_done`` per job, in
    order, with its result (None and ``job.error`` set for a bad input).

    Jobs are read one after another; their windows wait in :attr:`queue` until a batch of ``batch_size`` is
    full (or the last jobs are read), and a job is handed to ``on_done`` once it is read and none of its
    windows wait, after every job before it.

    Attributes:
        emb: the embedder; its window length is used, ``hop`` replaces its hop.
        hop: samples between window starts.
        pad_short: a wave shorter than one window gives one zero-padded window instead of none.
        batch_size: windows per forward pass.
        pool: clip embedding, as :func:`_pool`.
        on_done: called with each finished job and its result.
        queue: ``(job, starts, windows)`` read and not yet through the model, oldest first.
        queued: how many windows :attr:`queue` holds.
        in_flight: jobs started and not yet handed to ``on_done``, in input order.
    """

    def __init__(self, emb: Embedder, *, hop: int, pad_short: bool, batch_size: int, pool: Pool,
                 on_done: Callable[[Job, EmbeddingResult | None], None]):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.emb = emb
        self.hop = hop
        self.pad_short = pad_short
        self.batch_size = batch_size
        self.pool = pool
        self.on_done = on_done
        self.queue: list[tuple[Job, np.ndarray, np.ndarray]] = []
        self.queued = 0
        self.in_flight: list[Job] = []

    def run(self, jobs: Iterable[Job]) -> None:
        """Embed every job, reporting each to ``on_done`` in order."""
        for job in jobs:
            self._read(job)
        self._flush(final=True)
        self._finish_ready()

    def _read(self, job: Job) -> None:
        """Queue the windows of one job, running full batches as they fill; a bad input drops its windows."""
        self.in_flight.append(job)
        windows = iter_windows(self._counted(job), window=self.emb.window, hop=self.hop, pad_short=self.pad_short)
        while True:
            try:
                item = next(windows)
            except StopIteration:
                break
            except AudioError as e:
                job.error = e.reason
                break
            except Exception as e:  # noqa: BLE001 - a bad input is reported, never stops the others
                job.error = f"{type(e).__name__}: {e}"
                break
            start, wins = item
            self.queue.append((job, start + self.hop * np.arange(len(wins)), wins))
            job.pending += len(wins)
            self.queued += len(wins)
            self._flush(final=False)
        job.reading = False
        if job.error:
            self._drop(job)
        self._finish_ready()

    @staticmethod
    def _counted(job: Job) -> Iterator[np.ndarray]:
        """``job``'s blocks, adding their lengths to ``job.samples``."""
        for block in job.blocks():
            job.samples += len(block)
            yield block

    def _drop(self, job: Job) -> None:
        """Forget a failed job's queued windows and embeddings."""
        dropped = sum(len(w) for j, _, w in self.queue if j is job)
        self.queue = [q for q in self.queue if q[0] is not job]
        self.queued -= dropped
        job.pending, job.parts = 0, []

    def _flush(self, final: bool) -> None:
        """Run every full batch through the model (with ``final``, the last partial one too)."""
        while self.queued >= self.batch_size or (final and self.queued):
            parts = self._take(min(self.batch_size, self.queued))
            out = self.emb.embed_windows(np.concatenate([w for _, _, w in parts]))
            i = 0
            for job, starts, wins in parts:
                job.parts.append((starts, out[i:i + len(wins)]))
                job.pending -= len(wins)
                i += len(wins)
            self._finish_ready()

    def _take(self, take: int) -> list[tuple[Job, np.ndarray, np.ndarray]]:
        """The oldest ``take`` queued windows as ``(job, starts, windows)`` pieces, removed from the queue."""
        parts = []
        while take:
            job, starts, wins = self.queue[0]
            k = min(take, len(wins))
            parts.append((job, starts[:k], wins[:k]))
            if k == len(wins):
                self.queue.pop(0)
            else:
                self.queue[0] = (job, starts[k:], wins[k:])
            take -= k
            self.queued -= k
        return parts

    def _finish_ready(self) -> None:
        """Hand the finished jobs at the head of :attr:`in_flight` to ``on_done``."""
        while self.in_flight and not self.in_flight[0].reading and self.in_flight[0].pending == 0:
            job = self.in_flight.pop(0)
            self.on_done(job, None if job.error else _result(job, self.emb, self.emb.window, self.pool))
