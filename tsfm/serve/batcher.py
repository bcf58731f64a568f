"""Dynamic batching of concurrent requests on one model (asyncio; the model runs in a worker thread).

Requests are queued as :class:`Job` s with a ``key``: jobs with equal keys can share one model call.
A single loop task per model takes the oldest waiting job, waits until ``max_batch_size`` jobs of its
key are queued or ``max_wait_ms`` have passed (counted from that job's arrival, or from the end of the
previous model call if that is later), and runs the jobs of that key (oldest first, at most
``max_batch_size`` jobs, ``max_batch_series`` series and ``max_batch_cost`` summed job cost, e.g. the
share of the per-request memory limits each job uses, so that a merged call is never larger than the
largest single request allowed) in one call on the model's single worker
thread. While the model computes, the event loop keeps accepting, validating and answering requests,
and new jobs pile up for the next call, so batches grow with the load by themselves. Counting the wait
from the end of the previous call lets the clients answered by that call rejoin the next one (without
it, a steady set of clients splits into cohorts that alternate, each in half-full batches).

The worker thread may run at a lower CPU priority than the event loop (``thread_nice``, Linux: a
per-thread nice value, inherited by the OpenMP threads torch starts from that thread), so that on a
machine whose cores the model keeps busy, requests are still read and malformed ones answered at once.

``run`` answers each job separately (a result or an exception per job), so one bad request fails
alone. A job whose client went away (its future cancelled) is skipped when the batch is formed, and
its result is dropped if the batch was already running.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Job:
    """One request's work: ``payload`` for ``run``; ``size`` its number of series; ``cost`` what it
    counts against ``max_batch_cost``."""

    key: Hashable
    payload: Any
    size: int = 1
    cost: float = 0.0
    future: asyncio.Future | None = field(default=None, repr=False)
    enqueued: float = 0.0


class Batcher:
    """Queue + loop task + one worker thread for one model.

    ``run(payloads) -> results`` is called in the worker thread with the payloads of one batch and
    returns one result per payload; a result that is an ``Exception`` is raised to that job's caller.
    ``on_batch(n_jobs, n_series, seconds)`` is called (in the loop) after each model call.
    """

    def __init__(
        self,
        run: Callable[[list[Any]], Sequence[Any]],
        *,
        max_batch_size: int = 32,
        max_wait_ms: float = 5.0,
        max_batch_series: int | None = None,
        max_batch_cost: float | None = None,
        name: str = "model",
        on_batch: Callable[[int, int, float], None] | None = None,
        thread_nice: int = 0,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.run = run
        self.max_batch_size = int(max_batch_size)
        self.max_wait = float(max_wait_ms) / 1e3
        self.max_batch_series = max_batch_series
        self.max_batch_cost = max_batch_cost
        self.name = name
        self.on_batch = on_batch
        self._pending: list[Job] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.thread_nice = int(thread_nice)
        self._executor: ThreadPoolExecutor | None = None  # started with the loop task, ended by close()
        self._free_since = 0.0  # when the last model call ended (loop time)
        self.batches = 0  # model calls made
        self.busy = False  # a model call is running

    @property
    def failure(self) -> BaseException | None:
        """Why the loop task stopped, if it died (it is restarted by the next ``submit``)."""
        t = self._task
        if t is None or not t.done() or t.cancelled():
            return None
        return t.exception()

    @property
    def queued(self) -> int:
        return sum(1 for j in self._pending if not j.future.done())

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"tsfm-serve-{self.name}",
                                                initializer=_lower_priority, initargs=(self.thread_nice,))
        if self._task is None or self._task.done() or self._loop is not loop:
            self._loop = loop
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._serve(), name=f"tsfm-batcher-{self.name}")

    async def submit(self, job: Job) -> Any:
        """Queue ``job`` and wait for its result (cancelling the awaiting task drops the job)."""
        self._start()
        loop = asyncio.get_running_loop()
        job.future = loop.create_future()
        job.enqueued = loop.time()
        self._pending.append(job)
        self._wakeup.set()
        return await job.future

    async def close(self) -> None:
        """Stop the loop task (queued jobs fail) and the worker thread."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for j in self._pending:
            if j.future is not None and not j.future.done():
                j.future.set_exception(RuntimeError("the server is shutting down"))
        self._pending.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # -- the loop ---------------------------------------------------------------------------
    def _compatible(self, key: Hashable) -> int:
        return sum(1 for j in self._pending if j.key == key and not j.future.done())

    def _take(self, key: Hashable) -> list[Job]:
        batch: list[Job] = []
        keep: list[Job] = []
        series, cost = 0, 0.0
        for j in self._pending:
            if j.future.done():  # cancelled: its client went away
                continue
            fits = (len(batch) < self.max_batch_size and j.key == key
                    and (not batch or self.max_batch_series is None or series + j.size <= self.max_batch_series)
                    and (not batch or self.max_batch_cost is None or cost + j.cost <= self.max_batch_cost))
            if fits:
                batch.append(j)
                series += j.size
                cost += j.cost
            else:
                keep.append(j)
        self._pending = keep
        return batch

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._pending = [j for j in self._pending if not j.future.done()]
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            head = self._pending[0]
            deadline = max(head.enqueued, self._free_since) + self.max_wait
            while self._compatible(head.key) < self.max_batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0 or head.future.done():
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            batch = self._take(head.key)
            if not batch:
                continue
            t0 = time.perf_counter()
            self.busy = True
            try:
                results = await loop.run_in_executor(self._executor, self._run_safely, [j.payload for j in batch])
            except asyncio.CancelledError:
                for j in batch:
                    if not j.future.done():
                        j.future.set_exception(RuntimeError("the server is shutting down"))
                raise
            finally:
                self.busy = False
                self._free_since = loop.time()
            seconds = time.perf_counter() - t0
            self.batches += 1
            if self.on_batch is not None:
                try:
                    self.on_batch(len(batch), sum(j.size for j in batch), seconds)
                except Exception:  # noqa: BLE001 - metrics must never stop the loop
                    log.exception("on_batch hook failed")
            for j, r in zip(batch, results):
                if j.future.done():  # the client went away while the batch ran
                    continue
                if isinstance(r, BaseException):
                    j.future.set_exception(r)
                else:
                    j.future.set_result(r)

    def _run_safely(self, payloads: list[Any]) -> Sequence[Any]:
        try:
            results = list(self.run(payloads))
        except Exception as e:  # noqa: BLE001 - `run` should answer per job; never lose the jobs
            log.exception("batch of %d failed as a whole", len(payloads))
            return [e] * len(payloads)
        if len(results) != len(payloads):
            err = RuntimeError(f"batch runner returned {len(results)} results for {len(payloads)} jobs")
            return [err] * len(payloads)
        return results


def _lower_priority(nice: int) -> None:
    """Raise this thread's nice value by ``nice`` (Linux; elsewhere, or if refused, nothing happens)."""
    if nice <= 0:
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except (AttributeError, OSError) as e:  # not Linux, or not allowed
        log.debug("could not lower the inference thread's priority: %s", e)
