"""Micro-batching: requests that arrive together share one model call.

Requests wait in a bounded queue. A batch starts when the rows waiting reach ``max_batch``
or the oldest has waited ``max_wait_s``; it takes whole requests, oldest first, while their
rows fit. The model runs on one thread of its own, off the event loop, so the server
answers other routes meanwhile; requests arriving during a call form the next batch.
A request whose caller stopped waiting (a timeout) is dropped from the queue and never run.
``state()`` says whether the loop is alive, how long the current call has run and how the
last one went: what ``/v1/health`` reports.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Sequence, TypeVar

log = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")


class BatcherStopped(Exception):
    """The batching loop has ended (a bug in it, or the server is stopping): nothing queued
    will run, so requests are refused at once rather than left to time out."""


class CallFailed(Exception):
    """The model call of a request's batch raised (a programming error or a broken device;
    its traceback is in the log): what each request of that batch gets."""


class QueueFull(Exception):
    """The queue holds ``max_queue`` requests; retry after ``retry_after`` seconds."""

    def __init__(self, waiting: int, retry_after: int):
        super().__init__(f"the queue is full ({waiting} requests waiting); retry after {retry_after} s")
        self.waiting, self.retry_after = waiting, retry_after


@dataclass
class _Pending(Generic[P]):
    payload: P
    rows: int
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


@dataclass
class BatchStats:
    """Counters since start: model calls, the rows and requests they held, the largest call,
    requests rejected with a full queue and requests dropped after their caller gave up."""

    batches: int = 0
    rows: int = 0
    requests: int = 0
    largest_batch: int = 0
    rejected: int = 0
    cancelled: int = 0
    failed: int = 0  # model calls that raised (each of their requests got the error)
    seconds_per_batch: float = 0.0  # moving average of the model calls' durations

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in self.__dict__.items()}


class MicroBatcher(Generic[P, R]):
    """Runs ``run(payloads) -> results`` (one result per payload, in order) on batches of
    submitted payloads. ``rows`` of a payload count against ``max_batch``; a payload of more
    rows than ``max_batch`` runs alone. ``max_queue`` bounds the requests waiting."""

    def __init__(self, run: Callable[[list[P]], Sequence[R]], max_batch: int, max_wait_s: float, max_queue: int):
        if max_batch < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError(
                f"batching needs max_batch >= 1, max_queue >= 1 and a wait >= 0 s, got {max_batch}, "
                f"{max_queue} and {max_wait_s}"
            )
        self.run_batch, self.max_batch, self.max_wait_s, self.max_queue = run, max_batch, max_wait_s, max_queue
        self._queue: deque[_Pending[P]] = deque()
        self._arrival = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="attngan-model")
        self._task: asyncio.Task | None = None
        self._call_started: float | None = None  # monotonic start of the call running now
        self._last_call: tuple[float, str | None] | None = None  # (its end, its error or None)
        self.stats = BatchStats()

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())
        self._task.add_done_callback(self._loop_ended)

    def _loop_ended(self, task: asyncio.Task) -> None:
        """A loop that ended on an error fails every request still waiting (they would
        otherwise wait for their timeout) and is logged; health reports it."""
        if not task.cancelled() and task.exception() is not None:
            log.error("the batching loop stopped", exc_info=task.exception())
        for p in self._queue:
            if not p.future.done():
                p.future.set_exception(BatcherStopped(self.stopped_reason()))
        self._queue.clear()

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def busy(self) -> bool:
        return self._call_started is not None

    def stopped_reason(self) -> str:
        if self._task is None:
            return "the batching loop was never started"
        if self._task.cancelled() or self._task.exception() is None:
            return "the batching loop was stopped"
        err = self._task.exception()
        return f"the batching loop stopped on {type(err).__name__}: {err}"

    def state(self) -> dict[str, Any]:
        """The loop's health now: alive (and why not), the running call's age, the last
        call's age and outcome, the queue."""
        now = time.monotonic()
        waiting = [p for p in self._queue if not p.future.done()]
        return {
            "alive": self.alive,
            "stopped": None if self.alive else self.stopped_reason(),
            "busy": self.busy,
            "call_running_s": None if self._call_started is None else round(now - self._call_started, 3),
            "last_call_age_s": None if self._last_call is None else round(now - self._last_call[0], 3),
            "last_call_error": None if self._last_call is None else self._last_call[1],
            "waiting": len(waiting),
            "oldest_waiting_s": round(now - waiting[0].arrived, 3) if waiting else None,
            "max_queue": self.max_queue,
        }

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True, cancel_futures=True)

    @property
    def waiting(self) -> int:
        return sum(1 for p in self._queue if not p.future.done())

    def retry_after(self) -> int:
        """Seconds until the queue has room, as the batches of the last calls would take."""
        rows = sum(p.rows for p in self._queue)
        per_batch = self.stats.seconds_per_batch or 1.0
        return max(1, math.ceil((rows / self.max_batch + 1) * per_batch))

    async def submit(self, payload: P, rows: int) -> R:
        """The result of ``payload``, after its batch ran; QueueFull when the queue is full,
        BatcherStopped when the loop has ended. Cancelling the caller (e.g. asyncio.timeout)
        takes the payload out of the queue."""
        if not self.alive:
            raise BatcherStopped(self.stopped_reason())
        if self.waiting >= self.max_queue:
            self.stats.rejected += 1
            raise QueueFull(self.waiting, self.retry_after())
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(payload, rows, future))
        self._arrival.set()
        try:
            return await future
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            future.cancel()
            raise

    def _drop_cancelled(self) -> None:
        self._queue = deque(p for p in self._queue if not p.future.done())

    async def _next_batch(self) -> list[_Pending[P]]:
        while True:
            self._drop_cancelled()
            if self._queue:
                break
            self._arrival.clear()
            await self._arrival.wait()
        close = self._queue[0].arrived + self.max_wait_s
        while sum(p.rows for p in self._queue) < self.max_batch and (left := close - time.monotonic()) > 0:
            self._arrival.clear()
            try:
                await asyncio.wait_for(self._arrival.wait(), left)
            except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11
                break
            self._drop_cancelled()
        self._drop_cancelled()
        batch, rows = [], 0
        while self._queue and (not batch or rows + self._queue[0].rows <= self.max_batch):
            pending = self._queue.popleft()
            batch.append(pending)
            rows += pending.rows
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            rows = sum(p.rows for p in batch)
            start = self._call_started = time.monotonic()
            try:
                results = await loop.run_in_executor(self._executor, self.run_batch, [p.payload for p in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"the model call gave {len(results)} results for {len(batch)} requests")
            except Exception as err:  # a programming error: logged, and every request of the batch fails
                log.exception("model call failed on a batch of %d rows", rows)
                self.stats.failed += 1
                self._last_call = (time.monotonic(), f"{type(err).__name__}: {err}")
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(CallFailed(self._last_call[1]))
                continue
            finally:
                self._call_started = None
            took = time.monotonic() - start
            self._last_call = (time.monotonic(), None)
            s = self.stats
            s.batches, s.rows, s.requests = s.batches + 1, s.rows + rows, s.requests + len(batch)
            s.largest_batch = max(s.largest_batch, rows)
            s.seconds_per_batch = took if s.batches == 1 else 0.8 * s.seconds_per_batch + 0.2 * took
            for p, result in zip(batch, results):
                if not p.future.done():
                    p.future.set_result(result)
