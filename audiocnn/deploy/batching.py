"""Dynamic micro-batching: the model inputs of concurrent requests go through one forward pass together.

Each request hands its inputs ``(n, ...)`` to :meth:`MicroBatcher.submit` and awaits its own ``(n, outputs)``.
One batcher task gathers the waiting requests, whole, until they hold ``max_batch`` inputs or ``max_wait_s``
has passed since the first arrived, runs the forward pass in a worker thread (the event loop keeps answering),
and hands each request its own rows back. While a pass runs, new requests queue up and form the next batch, so
under load the batches fill without any waiting. A request with more than ``max_batch`` inputs goes alone (the
forward function splits it).

    submit(x1) ─┐
    submit(x2) ─┼─> cat -> forward (worker thread) -> split -> x1's rows, x2's rows, x3's rows
    submit(x3) ─┘
"""
from __future__ import annotations

import asyncio
import concurrent.futures
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import torch

__all__ = ["BatchStats", "MicroBatcher"]


@dataclass
class BatchStats:
    """What the batcher has done so far (``GET /health`` shows it).

    Attributes:
        batches: forward passes run.
        requests: requests answered through them.
        inputs: model inputs (audio windows) in them.
        largest_batch: the most requests that shared one forward pass.
    """

    batches: int = 0
    requests: int = 0
    inputs: int = 0
    largest_batch: int = 0

    def as_dict(self) -> dict:
        return {"batches": self.batches, "requests": self.requests, "inputs": self.inputs,
                "largest_batch": self.largest_batch}


@dataclass
class _Job:
    x: torch.Tensor
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Gathers the inputs of concurrent requests into batches for one ``forward`` each (see the module docstring).

    Args:
        forward: ``(N, ...) -> (N, outputs)``, run in one worker thread, one call at a time.
        max_batch: inputs per forward pass (a request is never split across passes).
        max_wait_s: how long the first waiting request waits for others while the model is idle.

    Use inside a running event loop: ``task = asyncio.create_task(batcher.run())``, then ``await submit(x)``;
    :meth:`close` after the last request.
    """

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], *, max_batch: int, max_wait_s: float):
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait_s >= 0, got {max_batch}, {max_wait_s}")
        self.forward = forward
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.stats = BatchStats()
        self._pending: deque[_Job] = deque()
        self._arrived = asyncio.Event()
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="audiocnn-model")

    async def submit(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """``(n, outputs)`` for this request's ``(n, ...)`` inputs, and how many requests shared its forward pass.

        An exception of the forward pass is raised here, in every request of that batch.
        """
        job = _Job(x, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._arrived.set()
        return await job.future

    async def run(self) -> None:
        """The batcher task: forever gather, forward, split (cancel it to stop)."""
        loop = asyncio.get_running_loop()
        while True:
            await self._wait_for(lambda: bool(self._pending), None)
            deadline = loop.time() + self.max_wait_s
            await self._wait_for(lambda: self._waiting_inputs() >= self.max_batch, deadline)
            jobs = self._take()
            if not jobs:
                continue
            try:
                out = await loop.run_in_executor(self._worker, self.forward, torch.cat([j.x for j in jobs]))
            except Exception as e:  # noqa: BLE001 - handed to the requests, which answer 500 and log it
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(e)
                continue
            self._record(jobs)
            for j, rows in zip(jobs, torch.split(out, [len(j.x) for j in jobs])):
                if not j.future.done():  # a client that went away cancelled its future
                    j.future.set_result((rows, len(jobs)))

    def close(self) -> None:
        """Fail what still waits and stop the worker thread (after the batcher task is cancelled)."""
        while self._pending:
            job = self._pending.popleft()
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        self._worker.shutdown(wait=True)

    async def _wait_for(self, ready: Callable[[], bool], deadline: float | None) -> None:
        """Until ``ready()`` or the loop's clock passes ``deadline`` (``None``: no deadline)."""
        loop = asyncio.get_running_loop()
        while not ready():
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return

    def _waiting_inputs(self) -> int:
        return sum(len(j.x) for j in self._pending if not j.future.done())

    def _take(self) -> list[_Job]:
        """Whole requests, oldest first, up to ``max_batch`` inputs (at least one request)."""
        jobs: list[_Job] = []
        size = 0
        while self._pending:
            job = self._pending[0]
            if job.future.done():
                self._pending.popleft()
                continue
            if jobs and size + len(job.x) > self.max_batch:
                break
            jobs.append(self._pending.popleft())
            size += len(job.x)
        return jobs

    def _record(self, jobs: list[_Job]) -> None:
        s = self.stats
        s.batches += 1
        s.requests += len(jobs)
        s.inputs += sum(len(j.x) for j in jobs)
        s.largest_batch = max(s.largest_batch, len(jobs))
