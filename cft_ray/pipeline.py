"""The whole CFT loop as one Ray program:

    data (load -> noisy responses -> decontaminate -> teacher critiques -> build)
    -> train -> select checkpoint on ``eval.select_on`` -> full evaluation -> report

Every stage writes under ``<run_dir>/stages/<stage>-<key>/`` where the key (from the stage
contract, :mod:`cft_ray.stages`) hashes the config fields that shape its output plus its input's
key (:class:`cft_ray.steps.StepRunner`): a
rerun skips finished stages, a changed setting reruns only the stages downstream of it, and a
crashed run resumes at the stage that did not finish (stages resume internally too: the
teacher cache, training checkpoints, finished evaluation samples).

``output_dir`` may be object storage (``s3://``, ``gs://``): stages then work in a local working
copy (``work_dir``) and each finished stage is uploaded before its ``_SUCCESS`` marker
(:class:`cft_ray.storage.RunStore`); the teacher cache lives on the object store itself, so a
rerun on another machine skips finished stages (downloading what later stages read) and re-pays
no teacher call.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cft_ray.config import PipelineConfig
from cft_ray.core.checkpoints import Checkpoint
from cft_ray.stages import STAGES, pipeline_keys, run_stage
from cft_ray.steps import StepRunner
from cft_ray.storage import RunStore

log = logging.getLogger(__name__)


@dataclass
class PipelineResult:
    run_dir: Path  # local: the run, or the working copy of one on object storage
    run_uri: str | None  # the run on object storage, if it lives there
    report: Path
    stages: dict[str, dict[str, Any]]  # stage -> seconds, skipped, key
    results: dict[str, Any]  # stage -> its JSON result


def run_pipeline(config: PipelineConfig) -> PipelineResult:
    """Run (or resume) every stage; connects to Ray (the pipeline is an entry point)."""
    from cft_ray.data import training_set
    from cft_ray.raycluster import connect
    from cft_ray.report.run_report import write_report

    started = time.perf_counter()
    run_dir = config.run_dir
    store = RunStore(config.run_uri, run_dir) if config.run_uri else None
    # Paid answers go straight to the run's own folder (its storage, for a run on object
    # storage), outside every keyed stage: a rerun anywhere, with any settings, re-pays nothing.
    config = config.with_teacher_cache()
    config.write_resolved(run_dir)
    _publish(store, "config.yaml", "config.sha256")
    connect_started = time.perf_counter()
    connect(config.ray)
    ray_startup_s = time.perf_counter() - connect_started
    keys = pipeline_keys(config)
    steps = StepRunner(run_dir / "stages", "pipeline", store)

    def stage(name: str, output_dir: Path | None = None, also: tuple[Path, ...] = (), **inputs: Any):
        """Run one stage of the contract (skipped when done) and return its typed result."""
        steps.run(name, keys[name], lambda out: run_stage(name, config, output_dir or out, **inputs).model_dump(mode="json"),
                  also=also)
        return STAGES[name].result.model_validate(steps.results[name])

    data = stage("data")
    dataset = training_set(data.datasets, config.train.method, config.data.subset.sizes)
    trained = stage("train", dataset=dataset)
    # Selection and the final evaluation share one folder of graded samples, so the best
    # checkpoint's selection-benchmark samples are not generated twice.
    eval_dir = steps.work / f"eval-{keys['evaluate']}"
    selected = stage("select", eval_dir, also=(eval_dir,), checkpoints=trained.checkpoints)
    best = Checkpoint(name=selected.best.name, path=selected.best.path, step=selected.best.step)
    stage("evaluate", eval_dir, also=(eval_dir,), checkpoints=[best])

    report = write_report(config, steps.results, steps.timings, run_dir / "report")
    summary = {
        "config_sha256": config.sha256(),
        "seconds": round(time.perf_counter() - started, 2),
        "ray_startup_seconds": round(ray_startup_s, 2),
        "stages": steps.timings,
        "report": str(report),
    }
    (run_dir / "pipeline.json").write_text(json.dumps(summary, indent=2))
    _publish(store, "report", "pipeline.json")
    return PipelineResult(run_dir=run_dir, run_uri=config.run_uri, report=report, stages=steps.timings,
                          results=steps.results)


def _publish(store: RunStore | None, *names: str) -> None:
    """Upload files or folders of the run's top level when the run lives on object storage."""
    for name in names if store else ():
        store.upload(name)


def print_summary(result: PipelineResult) -> None:
    """What the run did, one line a stage, for the terminal."""
    print(f"\ncft-ray pipeline: {result.run_uri or result.run_dir}")
    for stage, timing in result.stages.items():
        state = "skipped (done before)" if timing["skipped"] else "ran"
        print(f"  {stage:9s} {state:22s} {timing['seconds']:8.1f} s   key {timing['key']}")
    print(f"  report:   {result.report}")
