"""A pool of killable worker processes: every job has a hard deadline, every worker a memory limit.

The grader runs its sympy comparisons here (sympy can hang or eat memory on hostile answers), but
nothing in it is specific to grading: give it any importable function and picklable jobs.
"""

from __future__ import annotations

import importlib
import multiprocessing
import multiprocessing.connection
import time
from collections import deque
from typing import Any

_READY = "ready"  # a worker's first message: its imports are done
_DIED = object()  # what _receive returns when a worker's pipe closed (it died)


def _serve(conn, function: str, on_error: Any, memory_limit_bytes: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    module, name = function.split(":")
    fn = getattr(importlib.import_module(module), name)
    conn.send(_READY)
    while True:
        job = conn.recv()
        if job is None:
            return
        try:
            result = fn(*job)
        except Exception:  # noqa: BLE001 - MemoryError, RecursionError...: the job's error value
            result = on_error
        conn.send(result)


class _Worker:
    def __init__(self, ctx, args: tuple):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, *args), daemon=True)
        self.process.start()
        child.close()
        self.ready = False  # set when the worker has sent "ready" (imports done)

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()


class TimeoutPool:
    """Worker processes that run ``function`` (``"module:function"``) on jobs, each job with a
    hard deadline and each worker with a memory limit.

    A worker that overruns is killed (SIGKILL: the job cannot ignore it) and replaced; its job is
    reported as timed out (None). A job that raises, or whose worker dies, gets ``on_error``.
    ``preload``: modules the fork server imports once, so every worker starts warm. Use as a
    context manager or call :meth:`close`.
    """

    def __init__(self, function: str, *, on_error: Any = None, preload: tuple[str, ...] = (), num_workers: int = 2,
                 timeout_s: float = 3.0, memory_limit_gib: float = 2.0):
        self.timeout_s, self.on_error = timeout_s, on_error
        # A fork server that has already imported the preloads: replacing a killed worker costs
        # milliseconds, and no worker is forked from a process running Ray/vLLM threads.
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(list(preload))
        self._args = (function, on_error, int(memory_limit_gib * 2**30))
        self._workers = [_Worker(self._ctx, self._args) for _ in range(num_workers)]
        self.timeouts = 0

    def map(self, jobs: list[tuple]) -> list[Any]:
        """The function's result per job; None where the job timed out."""
        results: list[Any] = [None] * len(jobs)
        pending = deque(enumerate(jobs))
        starting = {id(w.conn): w for w in self._workers if not w.ready}
        idle = [w for w in self._workers if w.ready]
        busy: dict[int, tuple[_Worker, int, float]] = {}
        while pending or busy:
            while pending and idle:
                worker = idle.pop()
                index, job = pending.popleft()
                worker.conn.send(job)
                busy[id(worker.conn)] = (worker, index, time.monotonic() + self.timeout_s)
            deadlines = [deadline for _, _, deadline in busy.values()]
            ready = multiprocessing.connection.wait(
                [w.conn for w, _, _ in busy.values()] + [w.conn for w in starting.values()],
                timeout=max(0.0, min(deadlines) - time.monotonic()) if deadlines else None,
            )
            for conn in ready:
                if id(conn) in starting:
                    worker = starting.pop(id(conn))
                    if self._receive(worker) == _READY:
                        worker.ready = True
                        idle.append(worker)
                    else:  # died while starting
                        fresh = self._replace(worker)
                        starting[id(fresh.conn)] = fresh
                    continue
                worker, index, _ = busy.pop(id(conn))
                result = self._receive(worker)
                results[index] = self.on_error if result is _DIED else result
                if result is _DIED:
                    fresh = self._replace(worker)
                    starting[id(fresh.conn)] = fresh
                else:
                    idle.append(worker)
            now = time.monotonic()
            for key, (worker, index, deadline) in list(busy.items()):
                if now >= deadline:
                    del busy[key]
                    self.timeouts += 1
                    fresh = self._replace(worker)
                    starting[id(fresh.conn)] = fresh
        # Workers still starting stay in self._workers and are used by the next map.
        return results

    @staticmethod
    def _receive(worker: _Worker):
        try:
            return worker.conn.recv()
        except (EOFError, OSError):
            return _DIED

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        fresh = _Worker(self._ctx, self._args)
        self._workers[self._workers.index(worker)] = fresh
        return fresh

    def close(self) -> None:
        for worker in self._workers:
            try:
                worker.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            worker.process.join(timeout=1)
            if worker.process.is_alive():
                worker.kill()

    def __enter__(self) -> "TimeoutPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
