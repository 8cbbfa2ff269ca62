"""Run-once steps keyed by config hashes: the resume mechanism of every stage.

A step writes into ``<work>/<name>-<key>/`` and, when it finishes, a ``_SUCCESS`` file holding
its JSON result. Asked again with the same key, the step is skipped and that result returned,
so a rerun skips finished work and a crashed run resumes at the first unfinished step. The
key must hash everything that decides the step's output (its config section and its input's key).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)


class StepRunner:
    """Runs named steps once per key under ``work``; ``results`` collects each step's result
    and ``timings`` the seconds each took in this process (0 when skipped)."""

    def __init__(self, work: str | Path, label: str):
        self.work, self.label = Path(work), label
        self.results: dict[str, Any] = {}
        self.timings: dict[str, dict[str, Any]] = {}

    def run(self, name: str, key: str, fn: Callable[[Path], Any]) -> Path:
        directory = self.work / f"{name}-{key}"
        done = directory / "_SUCCESS"
        started = time.perf_counter()
        if done.exists():
            result = json.loads(done.read_text())
            log.info("%s %s: finished before (%s), skipped", self.label, name, directory.name)
            skipped = True
        else:
            directory.mkdir(parents=True, exist_ok=True)
            log.info("%s %s: running -> %s", self.label, name, directory)
            result = fn(directory)
            done.write_text(json.dumps(result, default=str))
            skipped = False
        seconds = time.perf_counter() - started
        log.info("%s %s: %s in %.1f s", self.label, name, "skipped" if skipped else "done", seconds)
        self.results[name] = result
        self.timings[name] = {"seconds": round(seconds, 2), "skipped": skipped, "key": key}
        return directory
