"""Run-once steps keyed by config hashes: the resume mechanism of every stage.

A step writes into ``<work>/<name>-<key>/`` and, when it finishes, a ``_SUCCESS`` file holding
its JSON result. Asked again with the same key, the step is skipped and that result returned,
so a rerun skips finished work and a crashed run resumes at the first unfinished step. The
key must hash everything that decides the step's output (its config section and its input's key).

With a :class:`~cft_ray.storage.RunStore` (a run on object storage, ``work`` inside its local
working copy), a finished step's folder is uploaded before its remote ``_SUCCESS`` is written, and
a step done on the remote side but missing locally is downloaded instead of run again (paths in
its result are rebased onto this working copy).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

from cft_ray.storage import RunStore

log = logging.getLogger(__name__)

# Results name local paths; on the remote side they are relative to whichever working copy reads them.
RUN_PLACEHOLDER = "{cft-ray-working-copy}"


class StepRunner:
    """Runs named steps once per key under ``work``; ``results`` collects each step's result
    and ``timings`` the seconds each took in this process (0 when skipped)."""

    def __init__(self, work: str | Path, label: str, store: RunStore | None = None):
        self.work, self.label, self.store = Path(work), label, store
        self.results: dict[str, Any] = {}
        self.timings: dict[str, dict[str, Any]] = {}

    def run(self, name: str, key: str, fn: Callable[[Path], Any], also: tuple[Path, ...] = ()) -> Path:
        """``also``: more folders the step writes (shared with later steps), kept with it."""
        directory = self.work / f"{name}-{key}"
        done = directory / "_SUCCESS"
        started = time.perf_counter()
        remote_done = self.store.exists(self._relative(done)) if self.store else False
        if done.exists() or remote_done:
            if self.store and remote_done and not done.exists():
                for folder in (directory, *also):
                    self.store.download(self._relative(folder))
                done.write_text(done.read_text().replace(RUN_PLACEHOLDER, str(self.store.local)))
            result = json.loads(done.read_text())
            log.info("%s %s: finished before (%s), skipped", self.label, name, directory.name)
            skipped = True
        else:
            directory.mkdir(parents=True, exist_ok=True)
            log.info("%s %s: running -> %s", self.label, name, directory)
            result = fn(directory)
            marker = json.dumps(result, default=str)
            if self.store:  # the remote marker comes last: it vouches for the whole upload
                for folder in (directory, *also):
                    self.store.upload(self._relative(folder))
                self.store.write_text(self._relative(done), marker.replace(str(self.store.local), RUN_PLACEHOLDER))
            done.write_text(marker)
            skipped = False
        seconds = time.perf_counter() - started
        log.info("%s %s: %s in %.1f s", self.label, name, "skipped" if skipped else "done", seconds)
        self.results[name] = result
        self.timings[name] = {"seconds": round(seconds, 2), "skipped": skipped, "key": key}
        return directory

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.store.local).as_posix()
